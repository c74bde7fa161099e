"""Choose each adaptation method's weight on target validation MAE alone.

For every adaptation regime of params.yaml (da, da_coral, da_rsd, da_daregram, da_dann, da_dd; da_adabn
has no weight and is run once per seed for the record, as is the control no_da), train on a log
grid of weights over several seeds through the library's training loop, and pick, per method, the
weight with the lowest mean validation MAE over the seeds. The test split is never loaded into a
model here: this script prints and logs validation figures only.

Needs a workspace where `dvc repro` has built data/splits/<task> and data/cache/<task> (the demo
after `make demo`, or the real-face copy that benchmarks/faces.py keeps). Example:
    python benchmarks/da_sweep.py --repo . --task age --log benchmarks/da_sweep_demo_age.log
Writes the full grid and the choice to the log and to <log>.json; prints the chosen weights as
the YAML to paste under `regimes:`. params.yaml's regimes serve both demo tasks, so
    python benchmarks/da_sweep.py --combine da_sweep_demo_age.json da_sweep_demo_popularity.json
picks one weight per method from both (the lowest mean of val MAE relative to no_da's).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from _runs import load_task, train_run
from dareg.data import unscale
from dareg.train import predict

# Per method: the terms its weight w sets (as multiples of w) and the default log grid of w.
# da keeps the original codebase's MMD : smoothing ratio (1000 : 100); DARE-GRAM its paper's
# angle : scale ratio (0.05 : 0.001).
METHODS = {
    "da": ({"mmd": 1.0, "smoothing": 0.1}, [1e-3, 1e-2, 1e-1, 1.0]),
    "da_coral": ({"coral": 1.0}, [1e-2, 1e-1, 1.0, 10.0]),
    "da_rsd": ({"rsd": 1.0}, [1e-4, 1e-3, 1e-2, 1e-1]),
    "da_daregram": ({"daregram_angle": 1.0, "daregram_scale": 0.02}, [1e-3, 1e-2, 1e-1, 1.0]),
    "da_dann": ({"dann": 1.0}, [1e-3, 1e-2, 1e-1, 1.0]),
    "da_dd": ({"dd": 1.0}, [1e-3, 1e-2, 1e-1, 1.0]),
}
UNWEIGHTED = ("no_da", "da_adabn")  # run once per seed: the control and AdaBN


def shown(weights: dict) -> str:
    """Weights as the log shows them: three significant digits, `supervised` left out."""
    return json.dumps({k: float(f"{v:.3g}") for k, v in weights.items() if k != "supervised"})


def weights_for(method: str, w: float) -> dict[str, float]:
    ratios, _ = METHODS[method]
    return {"supervised": 1.0, **{term: w * r for term, r in ratios.items()}}


def validation_diagnostics(model, data, scaling) -> dict:
    """Collapse ratio std(pred) / std(truth) on the validation split (test is never read)."""
    pred = unscale(predict(model, data["target_val"].images, "cpu"), scaling["target"])
    truth = unscale(data["target_val"].labels, scaling["target"])
    return {"val_collapse_ratio": float(np.std(pred) / np.std(truth))}


def run_config(p, name: str, weights: dict | None, data, scaling, seeds, done: dict,
               cache: Path) -> dict:
    """One grid point over every seed: per-seed validation MAE, best epoch, the alignment terms'
    first and last epoch means (did the term fall?) and the validation collapse ratio. Runs
    already in `done` (read from `cache`, one JSON line per finished run) are not trained again."""
    regime = p.regimes[name] if weights is None else replace(p.regimes[name], weights=weights)
    rows = []
    for seed in seeds:
        key = json.dumps([name, asdict(regime), seed, asdict(p.train), asdict(p.model),
                          asdict(p.regime_losses(name))], sort_keys=True)
        if key in done:
            rows.append(done[key])
            continue
        r = train_run(p, regime, name, data, scaling, seed)
        row = {"seed": seed, "val_mae": r["val_mae"], "epoch": r["epoch"], "seconds": r["seconds"]}
        if "model" in r:
            terms = {k for k in r["history"][0] if k.startswith("train/")}
            row |= {"terms_first_last": {k: [r["history"][0][k], r["history"][-1][k]] for k in terms}}
            row |= validation_diagnostics(r["model"], data, scaling)
        else:
            row["error"] = r["error"]
        rows.append(row)
        with open(cache, "a") as f:
            f.write(json.dumps({"key": key, "row": row}) + "\n")
        print(f"  {name} {shown(regime.weights)} seed {seed}: val MAE {r['val_mae']:.3f} "
              f"(epoch {r['epoch']}, {r['seconds']:.0f} s)", flush=True)
    maes = np.array([row["val_mae"] for row in rows])
    return {"regime": name, "weights": weights or p.regimes[name].weights, "seeds": rows,
            "val_mae_mean": float(maes.mean()), "val_mae_sd": float(maes.std(ddof=1)) if len(maes) > 1 else 0.0}


def combine(paths: list[Path]) -> str:
    """One weight per method for several tasks (params.yaml's regimes serve both): the grid point
    with the lowest mean, over the tasks, of its validation MAE relative to no_da's on that task
    (MAEs in different units compare as ratios)."""
    sweeps = [json.loads(p.read_text()) for p in paths]
    relative: dict[tuple, list[float]] = {}
    for sweep in sweeps:
        control = next(g["val_mae_mean"] for g in sweep["grid"] if g["regime"] == "no_da")
        for g in sweep["grid"]:
            key = (g["regime"], json.dumps(g["weights"], sort_keys=True))
            relative.setdefault(key, []).append(g["val_mae_mean"] / control)
    lines = [f"combined over {', '.join(s['task'] for s in sweeps)}: mean of val MAE / no_da val MAE",
             *(f"  {r:12} {shown(json.loads(w)):58} {np.mean(v):.3f}  ({', '.join(f'{x:.3f}' for x in v)})"
               for (r, w), v in relative.items() if len(v) == len(sweeps)), "",
             "chosen, as `weights:` under regimes:"]
    for method in dict.fromkeys(r for r, _ in relative):
        if method in METHODS:
            (_, w), v = min(((k, v) for k, v in relative.items() if k[0] == method and len(v) == len(sweeps)),
                            key=lambda kv: np.mean(kv[1]))
            lines.append(f"  {method}: {{supervised: 1.0, {shown(json.loads(w))[1:-1].replace(chr(34), '')}}}"
                         f"  # {np.mean(v):.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combine", type=Path, nargs="+",
                        help="only choose one weight per method from these sweeps' JSON (one per task)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="workspace with the task's cache")
    parser.add_argument("--task", default="age", choices=["age", "popularity"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--grid", nargs="*", default=[], metavar="METHOD=W1,W2,...",
                        help="replace a method's grid, e.g. da_coral=0.01,0.1")
    parser.add_argument("--log", type=Path,
                        help="text log; <log>.json gets the grid and the choice, <log>.runs.jsonl "
                             "every finished run (a rerun skips runs of the same params and seed)")
    args = parser.parse_args()
    if args.combine:
        text = combine(args.combine)
        if args.log:
            args.log.write_text(text + "\n")
        return print(text)
    if args.log is None:
        parser.error("--log is required")
    for spec in args.grid:
        method, values = spec.split("=")
        METHODS[method] = (METHODS[method][0], [float(v) for v in values.split(",")])
    p, data, scaling = load_task(args.repo, args.task)
    cache = args.log.with_suffix(".runs.jsonl")
    done = {}
    if cache.exists():
        done = {line["key"]: line["row"] for line in map(json.loads, cache.read_text().splitlines())}
    lines = [f"da_sweep: {args.repo.resolve()} task {args.task}, seeds {args.seeds}, "
             f"{p.train.epochs} epochs x {p.train.steps_per_epoch} steps, model {p.model.backbone} "
             f"width {p.model.width} norm {p.model.norm}; selection: mean target-validation MAE "
             f"({scaling['unit']}), n_val = {len(data['target_val'])}",
             f"grids: {json.dumps({m: METHODS[m][1] for m in args.methods})}", ""]
    grid = [run_config(p, name, None, data, scaling, args.seeds, done, cache) for name in UNWEIGHTED]
    for method in args.methods:
        grid += [run_config(p, method, weights_for(method, w), data, scaling, args.seeds, done, cache)
                 for w in METHODS[method][1]]
    control = grid[0]["val_mae_mean"]
    lines += [f"{'regime':12} {'weights':58} {'val MAE mean':>12} {'sd':>6} {'- no_da':>8} "
              f"{'val collapse':>12} epochs"]
    for g in grid:
        collapse = np.mean([s.get("val_collapse_ratio", np.nan) for s in g["seeds"]])
        lines.append(f"{g['regime']:12} {shown(g['weights']):58} {g['val_mae_mean']:12.3f} "
                     f"{g['val_mae_sd']:6.3f} {g['val_mae_mean'] - control:+8.3f} {collapse:12.2f} "
                     f"{[s['epoch'] for s in g['seeds']]}")
    chosen = {m: min((g for g in grid if g["regime"] == m), key=lambda g: g["val_mae_mean"])
              for m in args.methods}
    lines += ["", "chosen (lowest mean validation MAE per method), as `weights:` under regimes:"]
    lines += [f"  {m}: {{supervised: 1.0, {shown(g['weights'])[1:-1].replace(chr(34), '')}}}"
              f"  # val MAE {g['val_mae_mean']:.3f}" for m, g in chosen.items()]
    args.log.write_text("\n".join(lines) + "\n")
    args.log.with_suffix(".json").write_text(json.dumps(
        {"task": args.task, "seeds": args.seeds, "grid": grid,
         "chosen": {m: g["weights"] for m, g in chosen.items()}}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
