"""Stage evaluate@{task}-{regime}: every seed's checkpoint on the target test split, in label units;
the mean over seeds with bootstrap intervals, the spread across seeds, the training-mean baseline,
the source/target feature MMD, and the last epoch's weights scored too (the papers report the end
of a fixed schedule). Labels with several factors (dsprites) are scored per factor as well."""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dareg import checkpoint, cli, evaluate, params
from dareg.data import Split, factors, load_split, unscale
from dareg.columns import label_columns
from dareg.io import read_json, write_csv, write_json
from dareg.train import describe_device, infer, pick_device

SCORES = ("mae", "rmse", "spearman", "pearson", "collapse_ratio")


def score(truth: np.ndarray, pred: np.ndarray, unit: str, names: list[str]) -> dict:
    """One seed's metrics in label units (truth (n,) or (n, K)); for ages also CS(5) and MAE by
    decade."""
    metrics = evaluate.factor_metrics(truth, pred, names)
    if unit == "years":
        metrics |= {"cs5": evaluate.cumulative_score(truth, pred, 5.0),
                    "mae_by_decade": evaluate.mae_by_decade(truth, pred)}
    return metrics


def run_seed(path: Path, test: Split, source: Split, cfg: params.Evaluate, device) -> dict:
    """One checkpoint: its scaled test predictions (N, K) with the chosen and with the last
    epoch's weights, metadata and source/target feature MMD, in the precision it was trained in
    (train.precision; CUDA only)."""
    ckpt = checkpoint.load(path)
    model, precision = checkpoint.restore_model(ckpt), ckpt["train"].get("precision", "bf16")
    scaled, test_features = infer(model, test.images, device, precision=precision)  # one pass
    source_features = infer(model, source.images, device, precision=precision)[1]
    alignment = evaluate.alignment_mmd(source_features, test_features, cfg.mmd_samples, cfg.seed)
    last = infer(checkpoint.restore_model(ckpt, "last_state"), test.images, device,
                 precision=precision)[0]
    return {"seed": ckpt["train"]["seed"], "scaled": scaled, "alignment": alignment,
            "scaled_last": last, "last_epoch": ckpt["last_epoch"],
            "last_val_mae": ckpt["last_val_mae"], "best_epoch": ckpt["epoch"], "val_mae": ckpt["val_mae"],
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
    per_label, unit, names = scaling["per_label"], scaling["unit"], factors(scaling)
    in_units = (lambda scaled: unscale(scaled, scaling["target"]) * per_label)
    train_table = pd.read_csv(args.splits / "target_train.csv")
    truth, train_truth = in_units(test.labels), train_table[label_columns(train_table)].to_numpy() * per_label
    preds = np.stack([in_units(r["scaled"]) for r in runs])  # (seeds, n, K)
    lasts = np.stack([in_units(r["scaled_last"]) for r in runs])
    if len(names) == 1:  # one label: (n,) and (seeds, n), as the single-label metrics have them
        truth, train_truth, preds, lasts = truth[:, 0], train_truth[:, 0], preds[..., 0], lasts[..., 0]
    per_seed = [{"seed": r["seed"], **score(truth, pred, unit, names), "ci95": evaluate.bootstrap_ci(
                    truth, pred, cfg.bootstrap_samples, cfg.seed), "best_epoch": r["best_epoch"],
                 "val_mae": r["val_mae"], "alignment": r["alignment"],
                 "last_epoch": last_epoch(r, truth, last, names)}
                for r, pred, last in zip(runs, preds, lasts)]
    mean = evaluate.mean_over_seeds([{k: v for k, v in s.items()
                                      if k not in ("seed", "ci95", "best_epoch", "last_epoch")}
                                     for s in per_seed])
    scores = SCORES + (("mae_sum",) if len(names) > 1 else ())
    metrics = {**mean, "unit": unit, **({"factors": names} if len(names) > 1 else {}),
               "ci95": evaluate.bootstrap_ci(truth, preds, cfg.bootstrap_samples, cfg.seed),
               "seed_spread": {k: evaluate.seed_spread([s[k] for s in per_seed]) for k in scores},
               "last_epoch": over_seeds([s["last_epoch"] for s in per_seed]),
               "normalized": evaluate.mean_over_seeds(
                   [evaluate.factor_metrics(test.labels, r["scaled"], names) for r in runs]),
               "baseline_train_mean": evaluate.baseline(truth, train_truth),
               "task": runs[0]["task"], "regime": runs[0]["regime"], "control": runs[0]["control"],
               "best_epochs": [s["best_epoch"] for s in per_seed], "per_seed": per_seed,
               **evaluate.provenance(Path.cwd(), [r["seed"] for r in runs], describe_device(device),
                                     [r["train_device"] for r in runs])}
    write_json(args.out, metrics)
    write_csv(args.predictions, predictions_table(metrics["seeds"], names, truth, preds))
    spread = (f"sd over {len(runs)} seeds {metrics['seed_spread']['mae']['std']:.3f}; "
              if len(runs) > 1 else "")
    print(f"evaluate@{metrics['task']}-{metrics['regime']}: MAE {metrics['mae']:.3f} {unit} "
          f"(95% CI {metrics['ci95']['mae']['low']:.3f}-{metrics['ci95']['mae']['high']:.3f}; "
          f"{spread}baseline "
          f"{metrics['baseline_train_mean']['mae']:.3f}), n={metrics['n']}, collapse ratio "
          f"{_fmt(metrics['collapse_ratio'])}, "
          f"source/target feature MMD {metrics['alignment']['mmd']:.4f}")


def last_epoch(run: dict, truth: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """The last epoch's weights of one seed on the test split: epoch, validation MAE, test MAE
    (and mae_sum with several factors)."""
    scores = evaluate.factor_metrics(truth, pred, names)
    return {"epoch": run["last_epoch"], "val_mae": run["last_val_mae"], "mae": scores["mae"],
            **({"mae_sum": scores["mae_sum"]} if "mae_sum" in scores else {})}


def over_seeds(records: list[dict]) -> dict:
    """The last epoch's test MAE (and mae_sum) as a mean over seeds with its spread, and the
    epochs."""
    keys = [k for k in ("mae", "mae_sum") if k in records[0]]
    return {**{k: float(np.mean([r[k] for r in records])) for k in keys},
            "seed_spread": {k: evaluate.seed_spread([r[k] for r in records]) for k in keys},
            "epochs": [r["epoch"] for r in records]}


def predictions_table(seeds: list[int], names: list[str], truth: np.ndarray,
                      preds: np.ndarray) -> pd.DataFrame:
    """Long form, rows in the same image order for every seed (and factor): seed, actual,
    predicted; with several factors seed, factor, actual, predicted (seed, then factor, then
    image)."""
    n = len(truth)
    if len(names) == 1:
        return pd.DataFrame({"seed": np.repeat(seeds, n), "actual": np.tile(truth, len(seeds)),
                             "predicted": preds.ravel()}).round(4)
    k = len(names)
    return pd.DataFrame({"seed": np.repeat(seeds, k * n), "factor": np.tile(np.repeat(names, n), len(seeds)),
                         "actual": np.tile(truth.T.ravel(), len(seeds)),
                         "predicted": preds.transpose(0, 2, 1).ravel()}).round(4)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    cli.run(main)
