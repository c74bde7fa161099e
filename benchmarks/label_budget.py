"""When does adaptation pay? Target test MAE against the number of labeled target images used
in training, with the target validation split (which picks each run's epoch) held fixed.

For each budget b, the first b images of a fixed shuffle of the target training split are used
(nested: a larger budget holds the smaller ones). At b = 0 no target label is drawn: the labeled
target images of each step are replaced by source images (no_da is then source only, the classic
unsupervised setting; no_source does not exist there). Each regime keeps its params otherwise.
Test MAE is reported, with 95% bootstrap intervals over test images and seeds, and the paired
difference against no_da at the same budget; nothing here is chosen on test scores (the regimes
to plot are named on the command line, chosen beforehand on validation by da_sweep.py).

    python benchmarks/label_budget.py --repo /tmp/faces-bench --regimes no_da da da_daregram no_source \
        --out benchmarks/label_budget_faces.json --plot docs/figures/label_budget_faces.png

(/tmp/faces-bench: the copy `benchmarks/faces.py --keep /tmp/faces-bench` leaves; da and
da_daregram are the two adaptation regimes with the best validation MAE in da_sweep_faces.log.)
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from _runs import load_task, train_run  # noqa: E402
from dareg.data import Split, unscale  # noqa: E402
from dareg.evaluate import bootstrap_ci, paired_difference  # noqa: E402
from dareg.train import predict  # noqa: E402


def with_budget(data: dict[str, Split], budget: int, seed: int = 0) -> dict[str, Split]:
    """The splits with target_train cut to its first `budget` images of a fixed shuffle."""
    order = np.sort(np.random.default_rng(seed).permutation(len(data["target_train"]))[:budget])
    train = data["target_train"]
    return {**data, "target_train": Split(train.images[order], train.labels[order])}


def budget_regime(regime, budget: int):
    """At budget 0 the step's labeled target images become source images."""
    if budget:
        return regime
    batch = dict(regime.batch)
    batch["source"] = batch.get("source", 0) + batch.pop("target_labeled", 0)
    return replace(regime, batch=batch)


def predict_test(model, data, scaling) -> np.ndarray:
    return unscale(predict(model, data["target_test"].images, "cpu"), scaling["target"]) * scaling["per_label"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--task", default="age", choices=["age", "popularity"])
    parser.add_argument("--regimes", nargs="+", required=True)
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 25, 50, 100, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True, help="JSON of every figure")
    parser.add_argument("--plot", type=Path, required=True, help="PNG of the curve")
    args = parser.parse_args()
    p, data, scaling = load_task(args.repo, args.task)
    truth = unscale(data["target_test"].labels, scaling["target"]) * scaling["per_label"]
    if max(args.budgets) > len(data["target_train"]):
        raise SystemExit(f"budget {max(args.budgets)} > {len(data['target_train'])} target training images")
    results, start = {}, time.perf_counter()
    for budget in args.budgets:
        cut = with_budget(data, budget)
        preds = {}
        for name in args.regimes:
            if budget == 0 and p.regimes[name].batch.get("source", 0) == 0:
                continue  # no_source has nothing to train on without target labels
            regime = budget_regime(p.regimes[name], budget)
            runs = [train_run(p, regime, name, cut, scaling, seed) for seed in args.seeds]
            preds[name] = np.stack([predict_test(r["model"], data, scaling) for r in runs])
            ci = bootstrap_ci(truth, preds[name], p.evaluate.bootstrap_samples, p.evaluate.seed)
            results.setdefault(name, {})[budget] = {
                "mae": float(np.abs(preds[name] - truth).mean()), "ci95": ci["mae"],
                "per_seed_mae": np.abs(preds[name] - truth).mean(1).tolist(),
                "val_mae": [r["val_mae"] for r in runs], "epochs": [r["epoch"] for r in runs]}
            print(f"budget {budget:4d} {name:12} test MAE {results[name][budget]['mae']:.3f} "
                  f"[{ci['mae']['low']:.3f}, {ci['mae']['high']:.3f}] ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        for name in preds:
            if name != "no_da" and "no_da" in preds:
                results[name][budget]["minus_no_da"] = paired_difference(
                    truth, preds[name], preds["no_da"], p.evaluate.bootstrap_samples, p.evaluate.seed)
    args.out.write_text(json.dumps({"task": args.task, "seeds": args.seeds, "budgets": args.budgets,
                                    "n_val": len(data["target_val"]), "n_test": len(truth),
                                    "unit": scaling["unit"], "results": results,
                                    "seconds": time.perf_counter() - start}, indent=1))
    plot(results, scaling["unit"], args, len(data["target_val"]))
    print(table(results, args.budgets))


def table(results: dict, budgets: list[int]) -> str:
    """Markdown: test MAE [95% CI] per regime and budget; (+d*) marks a paired difference
    against no_da beyond noise."""
    lines = ["| regime | " + " | ".join(f"{b} labels" for b in budgets) + " |",
             "|---" * (len(budgets) + 1) + "|"]
    for name, by_budget in results.items():
        cells = []
        for b in budgets:
            r = by_budget.get(b)
            if r is None:
                cells.append("n/a")
                continue
            diff = r.get("minus_no_da")
            mark = f" ({diff['difference']:+.2f}{'*' if diff['beyond_noise'] else ''})" if diff else ""
            cells.append(f"{r['mae']:.2f} [{r['ci95']['low']:.2f}, {r['ci95']['high']:.2f}]{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, unit: str, args, n_val: int) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    positions = {b: i for i, b in enumerate(args.budgets)}
    for i, (name, by_budget) in enumerate(results.items()):
        budgets = sorted(by_budget)
        x = np.array([positions[b] for b in budgets]) + (i - len(results) / 2) * 0.06
        y = [by_budget[b]["mae"] for b in budgets]
        err = np.array([[by_budget[b]["mae"] - by_budget[b]["ci95"]["low"],
                         by_budget[b]["ci95"]["high"] - by_budget[b]["mae"]] for b in budgets]).T
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=name)
    ax.set_xticks(range(len(args.budgets)), [str(b) for b in args.budgets])
    ax.set(xlabel="labeled target images used in training", ylabel=f"target test MAE ({unit})",
           title=f"{args.task}: label budget (seeds {args.seeds}; validation fixed, n = {n_val}; 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
