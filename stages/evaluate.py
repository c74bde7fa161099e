"""Stage evaluate@{task}-{regime}: metrics of a checkpoint on the target test split, in label units."""
import argparse
from pathlib import Path

import pandas as pd

from dareg import checkpoint, cli, evaluate
from dareg.data import load_split, unscale
from dareg.io import write_csv, write_json
from dareg.train import pick_device, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--cache", type=Path, required=True, help="data/cache/{task}")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", type=Path, required=True, help="plot data CSV to write")
    args = parser.parse_args()
    ckpt = checkpoint.load(args.checkpoint)
    scaling = ckpt["scaling"]
    test = load_split(args.cache, args.splits, "target_test", scaling["target"])
    model = checkpoint.restore_model(ckpt)
    scaled_pred = predict(model, test.images, pick_device("auto"))
    per_label = scaling["per_label"]
    truth = unscale(test.labels, scaling["target"]) * per_label
    pred = unscale(scaled_pred, scaling["target"]) * per_label
    train_truth = pd.read_csv(args.splits / "target_train.csv")["label"].to_numpy() * per_label
    metrics = {**evaluate.regression_metrics(truth, pred), "unit": scaling["unit"],
               "normalized": evaluate.regression_metrics(test.labels, scaled_pred),
               "baseline_train_mean": evaluate.baseline(truth, train_truth),
               "task": ckpt["task"], "regime": ckpt["regime"], "best_epoch": ckpt["epoch"],
               "val_mae": ckpt["val_mae"]}
    write_json(args.out, metrics)
    write_csv(args.predictions, pd.DataFrame({"actual": truth, "predicted": pred}).round(4))
    print(f"evaluate@{ckpt['task']}-{ckpt['regime']}: MAE {metrics['mae']:.3f} {scaling['unit']} "
          f"(baseline {metrics['baseline_train_mean']['mae']:.3f}), n={metrics['n']}")


if __name__ == "__main__":
    cli.run(main)
