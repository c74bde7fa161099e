"""Stage evaluate@{task}-{regime}: metrics of a checkpoint on the target test split, in label units,
with bootstrap intervals, the training-mean baseline and the source/target feature MMD."""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dareg import checkpoint, cli, evaluate, params
from dareg.data import load_split, unscale
from dareg.io import write_csv, write_json
from dareg.train import infer, pick_device


def label_metrics(truth: np.ndarray, pred: np.ndarray, unit: str, cfg: params.Evaluate) -> dict:
    """Metrics in label units, their bootstrap intervals and, for ages, CS(5) and MAE by decade."""
    metrics = {**evaluate.regression_metrics(truth, pred), "unit": unit,
               "ci95": evaluate.bootstrap_ci(truth, pred, cfg.bootstrap_samples, cfg.seed)}
    if unit == "years":
        metrics["cs5"] = evaluate.cumulative_score(truth, pred, 5.0)
        metrics["mae_by_decade"] = evaluate.mae_by_decade(truth, pred)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--cache", type=Path, required=True, help="data/cache/{task}")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", type=Path, required=True, help="plot data CSV to write")
    args = parser.parse_args()
    cfg = params.load().evaluate
    ckpt = checkpoint.load(args.checkpoint)
    scaling, device = ckpt["scaling"], pick_device("auto")
    test = load_split(args.cache, args.splits, "target_test", scaling["target"])
    source = load_split(args.cache, args.splits, "source", None)
    model = checkpoint.restore_model(ckpt)
    scaled_pred, test_features = infer(model, test.images, device)  # one pass for both
    per_label = scaling["per_label"]
    truth = unscale(test.labels, scaling["target"]) * per_label
    pred = unscale(scaled_pred, scaling["target"]) * per_label
    train_truth = pd.read_csv(args.splits / "target_train.csv")["label"].to_numpy() * per_label
    alignment = evaluate.alignment_mmd(infer(model, source.images, device)[1], test_features,
                                       cfg.mmd_samples, cfg.seed)
    metrics = {**label_metrics(truth, pred, scaling["unit"], cfg),
               "normalized": evaluate.regression_metrics(test.labels, scaled_pred),
               "baseline_train_mean": evaluate.baseline(truth, train_truth),
               "alignment": alignment, "task": ckpt["task"], "regime": ckpt["regime"],
               "best_epoch": ckpt["epoch"], "val_mae": ckpt["val_mae"],
               **evaluate.provenance(Path.cwd(), ckpt["train"]["seed"])}
    write_json(args.out, metrics)
    write_csv(args.predictions, pd.DataFrame({"actual": truth, "predicted": pred}).round(4))
    print(f"evaluate@{ckpt['task']}-{ckpt['regime']}: MAE {metrics['mae']:.3f} {scaling['unit']} "
          f"(95% CI {metrics['ci95']['mae']['low']:.3f}-{metrics['ci95']['mae']['high']:.3f}; baseline "
          f"{metrics['baseline_train_mean']['mae']:.3f}), n={metrics['n']}, "
          f"source/target feature MMD {alignment['mmd']:.4f}")


if __name__ == "__main__":
    cli.run(main)
