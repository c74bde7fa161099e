"""Stage evaluate@{task}-{regime}: every seed's checkpoint on the target test split, in label units;
the mean over seeds with bootstrap intervals, the spread across seeds, the training-mean baseline
and the source/target feature MMD."""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dareg import checkpoint, cli, evaluate, params
from dareg.data import Split, load_split, unscale
from dareg.io import read_json, write_csv, write_json
from dareg.train import describe_device, infer, pick_device

SCORES = ("mae", "rmse", "spearman", "pearson", "collapse_ratio")


def score(truth: np.ndarray, pred: np.ndarray, unit: str) -> dict:
    """One seed's metrics in label units; for ages also CS(5) and MAE by decade."""
    metrics = evaluate.regression_metrics(truth, pred)
    if unit == "years":
        metrics |= {"cs5": evaluate.cumulative_score(truth, pred, 5.0),
                    "mae_by_decade": evaluate.mae_by_decade(truth, pred)}
    return metrics


def run_seed(path: Path, test: Split, source: Split, cfg: params.Evaluate, device) -> dict:
    """One checkpoint: its scaled test predictions, metadata and source/target feature MMD, in
    the precision it was trained in (train.precision; CUDA only)."""
    ckpt = checkpoint.load(path)
    model, precision = checkpoint.restore_model(ckpt), ckpt["train"].get("precision", "bf16")
    scaled, test_features = infer(model, test.images, device, precision=precision)  # one pass
    source_features = infer(model, source.images, device, precision=precision)[1]
    alignment = evaluate.alignment_mmd(source_features, test_features, cfg.mmd_samples, cfg.seed)
    return {"seed": ckpt["train"]["seed"], "scaled": scaled, "alignment": alignment,
            "best_epoch": ckpt["epoch"], "val_mae": ckpt["val_mae"],
            "control": ckpt["regime_config"].get("control", ""),
            "train_device": ckpt.get("device", "unrecorded"),
            **{k: ckpt[k] for k in ("task", "regime", "scaling")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=Path, required=True,
                        help="models/{task}/{regime}: a seed-{seed}.pt per training seed")
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--cache", type=Path, required=True, help="data/cache/{task}")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", type=Path, required=True, help="plot data CSV to write")
    args = parser.parse_args()
    p = params.load()
    cfg, device = p.evaluate, pick_device(p.train.device)  # the same rule and param as training
    paths = checkpoint.seed_files(args.checkpoints)
    scaling = read_json(args.splits / "scaling.json")
    test = load_split(args.cache, args.splits, "target_test", scaling["target"], required=True)
    source = load_split(args.cache, args.splits, "source", None, required=True)
    runs = [run_seed(path, test, source, cfg, device) for path in paths]
    checkpoint.same_origin(runs, paths, scaling, args.splits / "scaling.json")
    per_label, unit = scaling["per_label"], scaling["unit"]
    truth = unscale(test.labels, scaling["target"]) * per_label
    preds = np.stack([unscale(r["scaled"], scaling["target"]) * per_label for r in runs])  # (seeds, n)
    train_truth = pd.read_csv(args.splits / "target_train.csv")["label"].to_numpy() * per_label
    per_seed = [{"seed": r["seed"], **score(truth, pred, unit), "ci95": evaluate.bootstrap_ci(
                    truth, pred, cfg.bootstrap_samples, cfg.seed), "best_epoch": r["best_epoch"],
                 "val_mae": r["val_mae"], "alignment": r["alignment"]} for r, pred in zip(runs, preds)]
    mean = evaluate.mean_over_seeds([{k: v for k, v in s.items() if k not in ("seed", "ci95", "best_epoch")}
                                     for s in per_seed])
    metrics = {**mean, "unit": unit,
               "ci95": evaluate.bootstrap_ci(truth, preds, cfg.bootstrap_samples, cfg.seed),
               "seed_spread": {k: evaluate.seed_spread([s[k] for s in per_seed]) for k in SCORES},
               "normalized": evaluate.mean_over_seeds(
                   [evaluate.regression_metrics(test.labels, r["scaled"]) for r in runs]),
               "baseline_train_mean": evaluate.baseline(truth, train_truth),
               "task": runs[0]["task"], "regime": runs[0]["regime"], "control": runs[0]["control"],
               "best_epochs": [s["best_epoch"] for s in per_seed], "per_seed": per_seed,
               **evaluate.provenance(Path.cwd(), [r["seed"] for r in runs], describe_device(device),
                                     [r["train_device"] for r in runs])}
    write_json(args.out, metrics)
    write_csv(args.predictions, pd.DataFrame({"seed": np.repeat(metrics["seeds"], len(truth)),
                                              "actual": np.tile(truth, len(runs)),
                                              "predicted": preds.ravel()}).round(4))
    spread = (f"sd over {len(runs)} seeds {metrics['seed_spread']['mae']['std']:.3f}; "
              if len(runs) > 1 else "")
    print(f"evaluate@{metrics['task']}-{metrics['regime']}: MAE {metrics['mae']:.3f} {unit} "
          f"(95% CI {metrics['ci95']['mae']['low']:.3f}-{metrics['ci95']['mae']['high']:.3f}; "
          f"{spread}baseline "
          f"{metrics['baseline_train_mean']['mae']:.3f}), n={metrics['n']}, collapse ratio "
          f"{_fmt(metrics['collapse_ratio'])}, "
          f"source/target feature MMD {metrics['alignment']['mmd']:.4f}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    cli.run(main)
