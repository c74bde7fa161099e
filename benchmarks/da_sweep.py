"""Choose each adaptation method's weight on target validation MAE alone.

For every adaptation regime of params.yaml (da, da_coral, da_rsd, da_daregram, da_dann; da_adabn
has no weight and is run once per seed for the record, as is the control no_da), train on a log
grid of weights over several seeds through the library's training loop, and pick, per method, the
weight with the lowest mean validation MAE over the seeds. The test split is never loaded into a
model here: this script prints and logs validation figures only.

Needs a workspace where `dvc repro` has built data/splits/<task> and data/cache/<task> (the demo
after `make demo`, or the real-face copy that benchmarks/faces.py keeps). Example:
    python benchmarks/da_sweep.py --repo . --task age --log benchmarks/da_sweep_demo_age.log
Writes the full grid and the choice to the log and to <log>.json; prints the chosen weights as
the YAML to paste under `regimes:`.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from _runs import load_task, train_run
from dareg.data import unscale
from dareg.train import predict

# Per method: the terms its weight w sets (as multiples of w) and the default log grid of w.
# da keeps the first seed's MMD : smoothing ratio (1000 : 100); DARE-GRAM its paper's
# angle : scale ratio (0.05 : 0.001).
METHODS = {
    "da": ({"mmd": 1.0, "smoothing": 0.1}, [0.01, 0.1, 1.0, 10.0]),
    "da_coral": ({"coral": 1.0}, [0.1, 1.0, 10.0, 100.0]),
    "da_rsd": ({"rsd": 1.0}, [1e-4, 1e-3, 1e-2, 1e-1]),
    "da_daregram": ({"daregram_angle": 1.0, "daregram_scale": 0.02}, [1e-3, 1e-2, 1e-1, 1.0]),
    "da_dann": ({"dann": 1.0}, [1e-3, 1e-2, 1e-1, 1.0]),
}
UNWEIGHTED = ("no_da", "da_adabn")  # run once per seed: the control and AdaBN


def weights_for(method: str, w: float) -> dict[str, float]:
    ratios, _ = METHODS[method]
    return {"supervised": 1.0, **{term: w * r for term, r in ratios.items()}}


def validation_diagnostics(model, data, scaling) -> dict:
    """Collapse ratio std(pred) / std(truth) on the validation split (test is never read)."""
    pred = unscale(predict(model, data["target_val"].images, "cpu"), scaling["target"])
    truth = unscale(data["target_val"].labels, scaling["target"])
    return {"val_collapse_ratio": float(np.std(pred) / np.std(truth))}


def run_config(p, name: str, weights: dict | None, data, scaling, seeds) -> dict:
    """One grid point over every seed: per-seed validation MAE, best epoch, the alignment terms'
    first and last epoch means (did the term fall?) and the validation collapse ratio."""
    regime = p.regimes[name] if weights is None else replace(p.regimes[name], weights=weights)
    rows = []
    for seed in seeds:
        r = train_run(p, regime, name, data, scaling, seed)
        row = {"seed": seed, "val_mae": r["val_mae"], "epoch": r["epoch"], "seconds": r["seconds"]}
        if "model" in r:
            terms = {k for k in r["history"][0] if k.startswith("train/")}
            row |= {"terms_first_last": {k: [r["history"][0][k], r["history"][-1][k]] for k in terms}}
            row |= validation_diagnostics(r["model"], data, scaling)
        else:
            row["error"] = r["error"]
        rows.append(row)
        print(f"  {name} {weights or ''} seed {seed}: val MAE {r['val_mae']:.3f} "
              f"(epoch {r['epoch']}, {r['seconds']:.0f} s)", flush=True)
    maes = np.array([row["val_mae"] for row in rows])
    return {"regime": name, "weights": weights or p.regimes[name].weights, "seeds": rows,
            "val_mae_mean": float(maes.mean()), "val_mae_sd": float(maes.std(ddof=1)) if len(maes) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="workspace with the task's cache")
    parser.add_argument("--task", default="age", choices=["age", "popularity"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--log", type=Path, required=True, help="text log; the JSON goes beside it")
    args = parser.parse_args()
    p, data, scaling = load_task(args.repo, args.task)
    lines = [f"da_sweep: {args.repo.resolve()} task {args.task}, seeds {args.seeds}, "
             f"{p.train.epochs} epochs x {p.train.steps_per_epoch} steps, model {p.model.backbone} "
             f"width {p.model.width} norm {p.model.norm}; selection: mean target-validation MAE "
             f"({scaling['unit']}), n_val = {len(data['target_val'])}", ""]
    grid = [run_config(p, name, None, data, scaling, args.seeds) for name in UNWEIGHTED]
    for method in args.methods:
        grid += [run_config(p, method, weights_for(method, w), data, scaling, args.seeds)
                 for w in METHODS[method][1]]
    control = grid[0]["val_mae_mean"]
    lines += [f"{'regime':12} {'weights':58} {'val MAE mean':>12} {'sd':>6} {'- no_da':>8} "
              f"{'val collapse':>12} epochs"]
    for g in grid:
        collapse = np.mean([s.get("val_collapse_ratio", np.nan) for s in g["seeds"]])
        weights = {k: v for k, v in g["weights"].items() if k != "supervised"}
        lines.append(f"{g['regime']:12} {json.dumps(weights):58} {g['val_mae_mean']:12.3f} "
                     f"{g['val_mae_sd']:6.3f} {g['val_mae_mean'] - control:+8.3f} {collapse:12.2f} "
                     f"{[s['epoch'] for s in g['seeds']]}")
    chosen = {m: min((g for g in grid if g["regime"] == m), key=lambda g: g["val_mae_mean"])
              for m in args.methods}
    lines += ["", "chosen (lowest mean validation MAE per method):"]
    lines += [f"  {m}: weights {json.dumps(g['weights'])}  # val MAE {g['val_mae_mean']:.3f}"
              for m, g in chosen.items()]
    args.log.write_text("\n".join(lines) + "\n")
    args.log.with_suffix(".json").write_text(json.dumps(
        {"task": args.task, "seeds": args.seeds, "grid": grid,
         "chosen": {m: g["weights"] for m, g in chosen.items()}}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
