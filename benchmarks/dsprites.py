"""The dSprites benchmark: the six transfer pairs of Color, Noisy and Scream, every regime of
profiles/dsprites.yaml, in copies of this project with that profile (one per pair).

    python benchmarks/dsprites.py sweep --keep /tmp/dsprites --log benchmarks/dsprites_sweep.log
    python benchmarks/dsprites.py table --keep /tmp/dsprites --weights benchmarks/dsprites_sweep.json \\
        --publish docs/dsprites

`sweep` chooses every method's weight on target validation alone: per pair, `dvc repro
cache@dsprites` builds the data, then each method trains through the library's loop for each
weight of its grid (one seed) and source_only once; a method's weight is the grid point with the
lowest mean over the pairs of its validation MAE relative to source_only's (test never loaded).
`table` writes the chosen weights into each copy's params and runs `dvc repro summary@dsprites`
there (every regime, train.repeats seeds, the official test split), two pairs at a time on one
core each, and prints the table of the README: per pair mean MAE over factors +- sd over seeds,
the paired difference with source_only, the share of the source_only-to-oracle gap closed, the
training-mean baseline, beside tllib's published ERM and DD rows as relative reductions.
The Scream comes from ../shared/data/dsprites/scream.jpg (--painting); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import GIT_IDENTITY, copy_project, env, set_params  # noqa: E402

DOMAINS = {"color": "C", "noisy": "N", "scream": "S"}
PAIRS = [(s, t) for s in DOMAINS for t in DOMAINS if s != t]  # C->N, C->S, N->C, N->S, S->C, S->N
# tllib's README (ResNet-18, 128 px, mean MAE over scale, x, y on the official test split)
TLLIB = {"ERM": [0.232, 0.271, 0.081, 0.220, 0.038, 0.092],
         "DD": [0.047, 0.080, 0.030, 0.095, 0.053, 0.037]}
# Per method: the terms its weight w sets (as multiples of w) and its log grid of w. da keeps the
# original codebase's MMD : smoothing ratio (1000 : 100); DARE-GRAM the papers' C->N angle : scale
# ratio (0.1 : 0.001, the scale times the batch, 32: dareg's Gram matrix is divided by it); RSD its
# base-mismatch trade-off (losses.rsd_tradeoff).
METHODS = {
    "da": ({"mmd": 1.0, "smoothing": 0.1}, [0.01, 0.1, 1.0, 10.0]),
    "da_coral": ({"coral": 1.0}, [0.01, 0.1, 1.0, 10.0]),
    "da_rsd": ({"rsd": 1.0}, [1e-4, 1e-3, 1e-2, 1e-1]),
    "da_daregram": ({"daregram_angle": 1.0, "daregram_scale": 0.32}, [0.001, 0.01, 0.1, 1.0]),
    "da_dann": ({"dann": 1.0}, [0.001, 0.01, 0.1, 1.0]),
    "da_dd": ({"dd": 1.0}, [0.01, 0.1, 1.0, 10.0]),
}
# A method's other setting chosen with its weight, on validation too: DD's warm start of the
# reversal (tllib: 1,000 of its 20,000 steps) scaled to this profile's 1,200 steps.
VARIANTS = {"da_dd warm 60": ("da_dd", {"dd_grl_steps": 60})}
VARIANT_KEYS = {key for _, losses in VARIANTS.values() for key in losses}
UNWEIGHTED = ("source_only", "mixed_batch", "da_adabn", "oracle")
NOT_METHODS = ("source_only", "mixed_batch", "oracle")  # controls and the reference, not adaptation


def pair_name(source: str, target: str) -> str:
    return f"{DOMAINS[source]}{DOMAINS[target]}"


def sh(args: list[str], cwd: Path, threads: int = 1) -> str:
    run_env = {**env(), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(args, cwd=cwd, env=run_env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(args)} in {cwd} failed:\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return result.stdout


def prepare(dest: Path, source: str, target: str, painting: Path, overrides: dict) -> Path:
    """A copy of the project with profiles/dsprites.yaml, the pair, the painting and `overrides`
    (dotted params keys), committed; made once, then brought up to date with this checkout's
    code and profile (DVC reruns only what changed)."""
    dest.mkdir(parents=True, exist_ok=True)
    copy_project(dest, "dsprites")
    set_params(dest / "params.yaml", {"dsprites.source_domain": source, "dsprites.target_domain": target,
                                      "dsprites.painting": "path",
                                      "dsprites.painting_path": str(painting.resolve()), **overrides})
    sh(["git", *GIT_IDENTITY, "commit", "-qam", f"dsprites {pair_name(source, target)}",
        "--allow-empty"], dest)
    return dest


# ----- sweep ---------------------------------------------------------------------------------------

def sweep_job(job: tuple) -> dict:
    """One training run (worker process, one thread): validation MAE of `regime` with `weights`."""
    import torch

    from _runs import load_task, train_run

    torch.set_num_threads(1)
    repo, pair, name, weights, seed = job
    p, data, scaling = load_task(Path(repo), "dsprites")
    base, losses = VARIANTS.get(name, (name, {}))
    # The copy's profile may carry a variant's setting already (the one chosen before): the plain
    # method runs with the params' defaults for every setting that a variant changes.
    own = {k: v for k, v in p.regimes[base].losses.items() if k not in VARIANT_KEYS}
    regime = replace(p.regimes[base], losses={**own, **losses})
    regime = regime if weights is None else replace(regime, weights=weights)
    p = replace(p, regimes={**p.regimes, base: regime})
    r = train_run(p, regime, base, data, scaling, seed)
    terms = {k: [h[k] for h in r.get("history", [])] for k in r.get("history", [{}])[0]
             if k.startswith("train/")}
    return {"pair": pair, "regime": name, "grid": weights, "weights": regime.weights, "seed": seed,
            "losses": losses,
            "val_mae": r["val_mae"], "epoch": r["epoch"], "seconds": r["seconds"], "terms": terms,
            **({"error": r["error"]} if "error" in r else {})}


def sweep(args) -> None:
    repos = {pair_name(s, t): prepare(args.keep / pair_name(s, t), s, t, args.painting, {})
             for s, t in PAIRS if pair_name(s, t) in args.pairs}
    for repo in repos.values():
        sh(["dvc", "repro", "cache@dsprites"], repo, threads=2)
    jobs = [(str(repo), pair, name, None, 0) for pair, repo in repos.items() for name in UNWEIGHTED]
    grids = {**METHODS, **{v: METHODS[base] for v, (base, _) in VARIANTS.items()}}
    jobs += [(str(repo), pair, method, {"supervised": 1.0, **{t: w * r for t, r in ratios.items()}}, 0)
             for pair, repo in repos.items() for method, (ratios, grid) in grids.items()
             if VARIANTS.get(method, (method,))[0] in args.methods for w in grid]
    runs_file = args.log.with_suffix(".runs.jsonl")
    done = [json.loads(line) for line in runs_file.read_text().splitlines()] if runs_file.exists() else []
    finished = {json.dumps([r["pair"], r["regime"], r["grid"], r["seed"]], sort_keys=True) for r in done}
    todo = [j for j in jobs if json.dumps(list(j[1:]), sort_keys=True) not in finished]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(sweep_job, todo):
            done.append(row)
            with open(runs_file, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {row['pair']} {row['regime']} {shown(row['weights'])}: val MAE "
                  f"{row['val_mae']:.4f} (epoch {row['epoch']}, {row['seconds']:.0f} s)", flush=True)
    write_sweep(args.log, done, sorted(repos), time.perf_counter() - start)


def shown(weights: dict) -> str:
    return json.dumps({k: float(f"{v:.3g}") for k, v in weights.items() if k != "supervised"})


def write_sweep(log: Path, rows: list[dict], pairs: list[str], seconds: float) -> None:
    """The grid per pair, relative to source_only, and one weight per method: the lowest mean
    relative validation MAE over the pairs."""
    control = {r["pair"]: r["val_mae"] for r in rows if r["regime"] == "source_only"}
    grid: dict[tuple, dict] = {}
    for r in rows:
        if r["pair"] in pairs:
            grid.setdefault((r["regime"], shown(r["weights"])), {})[r["pair"]] = r["val_mae"]
    lines = [f"dsprites sweep: validation MAE (mean over factors), seed 0, pairs {', '.join(pairs)}; "
             f"relative = val MAE / source_only's on the pair; {len(rows)} runs, {seconds / 60:.1f} "
             f"min this call", "",
             f"{'regime':12} {'weights':44} " + " ".join(f"{p:>6}" for p in pairs) + "  mean rel"]
    for (regime, weights), vals in grid.items():
        rel = [vals[p] / control[p] for p in pairs if p in vals and p in control]
        lines.append(f"{regime:12} {weights:44} " + " ".join(f"{vals.get(p, np.nan):6.4f}" for p in pairs)
                     + f"  {np.mean(rel):.3f}")
    chosen, chosen_losses = {}, {}
    for method in METHODS:
        options = [(np.mean([v[p] / control[p] for p in pairs]), w, m) for (m, w), v in grid.items()
                   if VARIANTS.get(m, (m,))[0] == method and all(p in v for p in pairs)]
        if options:
            _, weights, variant = min(options)
            chosen[method] = {"supervised": 1.0, **json.loads(weights)}
            if variant in VARIANTS:
                chosen_losses[method] = VARIANTS[variant][1]
    lines += ["", "chosen (lowest mean relative validation MAE), as `weights:` (and `losses:`) under regimes:"]
    lines += [f"  {m}: {json.dumps(w)}" + (f" losses {json.dumps(chosen_losses[m])}" if m in chosen_losses else "")
              for m, w in chosen.items()]
    log.write_text("\n".join(lines) + "\n")
    log.with_suffix(".json").write_text(json.dumps({"pairs": pairs, "chosen": chosen,
                                                    "losses": chosen_losses}, indent=1) + "\n")
    print("\n".join(lines))


# ----- table ---------------------------------------------------------------------------------------

def table_pair(job: tuple) -> dict:
    """`dvc repro summary@dsprites` in one pair's copy (one thread); its metrics and comparisons."""
    repo, pair = Path(job[0]), job[1]
    start = time.perf_counter()
    sh(["dvc", "repro", "summary@dsprites"], repo)
    report = json.loads((repo / "metrics" / "reports" / "dsprites.json").read_text())
    return {"pair": pair, "seconds": time.perf_counter() - start, "report": report}


def table(args) -> None:
    sweep = json.loads(args.weights.read_text()) if args.weights else {}
    chosen = sweep.get("chosen", {})
    overrides = {**{f"regimes.{m}.weights": w for m, w in chosen.items()},
                 **{f"regimes.{m}.losses": v for m, v in sweep.get("losses", {}).items()}}
    repos = {pair_name(s, t): prepare(args.keep / pair_name(s, t), s, t, args.painting, overrides)
             for s, t in PAIRS if pair_name(s, t) in args.pairs}
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(table_pair, [(str(r), p) for p, r in repos.items()]))
    total = time.perf_counter() - start
    text = table_markdown(results, total)
    print(text)
    if args.publish:
        args.publish.mkdir(parents=True, exist_ok=True)
        (args.publish / "table.md").write_text(text)
        (args.publish / "results.json").write_text(json.dumps(
            {"minutes": total / 60, "weights": chosen, "pairs": {r["pair"]: r for r in results}},
            indent=1) + "\n")
        for r in results:
            out = args.publish / r["pair"]
            shutil.copytree(repos[r["pair"]] / "metrics" / "plots" / "dsprites", out / "plots",
                            dirs_exist_ok=True)
            shutil.copy(repos[r["pair"]] / "metrics" / "reports" / "dsprites.md", out / "report.md")


def gap_closed(block: dict, regime: str) -> float:
    """(MAE_source_only - MAE_regime) / (MAE_source_only - MAE_oracle)."""
    so, orc = block["regimes"]["source_only"]["mae"], block["regimes"]["oracle"]["mae"]
    return (so - block["regimes"][regime]["mae"]) / (so - orc)


def meets_target(block: dict, regime: str) -> bool:
    """The issue's target for one pair: at least 50% of the gap closed, better than source_only
    beyond noise (paired 95% bootstrap), and below the training-mean baseline."""
    m, diff = block["regimes"][regime], block["comparisons"].get(f"{regime} - source_only", {}).get("mae")
    return bool(gap_closed(block, regime) >= 0.5 and diff and diff["beyond_noise"]
                and diff["difference"] < 0 and m["mae"] < block["baseline_train_mean"]["mae"])


def table_markdown(results: list[dict], seconds: float) -> str:
    """Per pair and regime: MAE mean +- sd [paired difference with source_only, 95% CI], share
    of the gap closed; the baseline; tllib's rows as relative reductions; last-epoch MAEs."""
    order = [pair_name(s, t) for s, t in PAIRS]
    results = sorted(results, key=lambda r: order.index(r["pair"]))
    pairs = [r["pair"] for r in results]
    regimes = list(results[0]["report"]["regimes"])
    columns = " | ".join(f"{p[0]}→{p[1]}" for p in pairs)
    lines = [f"| regime | {columns} | pairs met |", "|---" * (len(pairs) + 2) + "|"]
    for regime in regimes:
        cells = []
        for r in results:
            block, m = r["report"], r["report"]["regimes"][regime]
            sd = (m.get("seed_spread") or {}).get("mae") or {}
            cell = f"{m['mae']:.3f} ± {sd.get('std', 0):.3f}"
            diff = block["comparisons"].get(f"{regime} - source_only", {}).get("mae")
            if diff:
                cell += f"<br>{diff['difference']:+.3f}{'*' if diff['beyond_noise'] else ''}"
            if regime not in ("source_only", "oracle"):
                cell += f"<br>{gap_closed(block, regime):.0%} of gap"
            cells.append(cell)
        met = (str(sum(meets_target(r["report"], regime) for r in results))
               if regime not in ("source_only", "oracle") else "")
        lines.append(f"| {regime} | " + " | ".join(cells) + f" | {met} |")
    lines.append("| predicting the training mean | " + " | ".join(
        f"{r['report']['baseline_train_mean']['mae']:.3f}" for r in results) + " | |")
    for name, values in TLLIB.items():
        lines.append(f"| tllib {name} (ResNet-18, published) | " + " | ".join(
            f"{values[order.index(p)]:.3f}" for p in pairs) + " | |")
    methods = [g for g in regimes if g not in NOT_METHODS]
    best = {r["pair"]: min(methods, key=lambda g: r["report"]["regimes"][g]["val_mae"]) for r in results}
    reduction = (lambda r, g: 1 - r["report"]["regimes"][g]["mae"] / r["report"]["regimes"]["source_only"]["mae"])
    met = [meets_target(r["report"], best[r["pair"]]) for r in results]
    lines += ["", "The adaptation regime with the best validation MAE on each pair, its relative reduction "
              "of the error from source only (1 - MAE / source_only's) and its share of the gap, beside "
              "tllib's DD against its ERM:", "", f"| | {columns} |", "|---" * (len(pairs) + 1) + "|",
              "| best on validation | " + " | ".join(best[r["pair"]] for r in results) + " |",
              "| its reduction; share of the gap | " + " | ".join(
                  f"{reduction(r, best[r['pair']]):.0%}; {gap_closed(r['report'], best[r['pair']]):.0%}"
                  for r in results) + " |",
              "| target met | " + " | ".join("yes" if m else "no" for m in met) + " |",
              "| tllib DD vs ERM (reduction) | " + " | ".join(
                  f"{1 - TLLIB['DD'][order.index(p)] / TLLIB['ERM'][order.index(p)]:.0%}" for p in pairs) + " |",
              "", f"Target met on {sum(met)} of {len(met)} pairs.", "",
              "Last epoch (no selection, as the papers report): test MAE, mean over seeds:", "",
              f"| regime | {columns} |", "|---" * (len(pairs) + 1) + "|"]
    lines += [f"| {g} | " + " | ".join(f"{r['report']['regimes'][g]['last_epoch']['mae']:.3f}"
                                        for r in results) + " |" for g in regimes]
    lines += ["", f"Each cell: test MAE, mean over factors (scale, x, y), mean ± sd over seeds; then "
              f"the paired difference with source_only (* : the 95% bootstrap interval over test "
              f"images and seeds excludes 0); then (MAE_source_only - MAE) / (MAE_source_only - "
              f"MAE_oracle). `pairs met`: the pairs where the regime closes at least 50% of the gap, "
              f"beats source_only beyond noise and ends below the training mean. "
              f"{sum(r['seconds'] for r in results) / 60:.0f} min of runs, {seconds / 60:.1f} min wall."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["sweep", "table"])
    parser.add_argument("--keep", type=Path, required=True, help="folder of the pair copies (made if absent)")
    parser.add_argument("--painting", type=Path, default=ROOT.parent / "shared/data/dsprites/scream.jpg")
    parser.add_argument("--pairs", nargs="+", default=[pair_name(s, t) for s, t in PAIRS])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--log", type=Path, default=ROOT / "benchmarks" / "dsprites_sweep.log")
    parser.add_argument("--weights", type=Path, help="sweep's JSON: its chosen weights go into the copies")
    parser.add_argument("--publish", type=Path, help="folder for the table, the figures and the reports")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sweep(args) if args.command == "sweep" else table(args)


if __name__ == "__main__":
    main()
