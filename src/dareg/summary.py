"""Summary: the regimes side by side per task, each compared (paired bootstrap of MAE and Spearman)
with its control and with the reference regime, as JSON and as Markdown reports that link the PNG
figures; a regime whose predictions have collapsed is flagged."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dareg.errors import DataError
from dareg.evaluate import paired_difference

REGIME_KEYS = ("mae", "rmse", "spearman", "pearson", "ci95", "cs5", "val_mae", "seed_spread", "seeds",
               "best_epochs", "collapse_ratio", "control", "mae_sum", "last_epoch")
COLLAPSED_BELOW = 0.5  # collapse ratio std(predicted) / std(actual) under which a regime is flagged


def collect(metrics: list[dict]) -> dict:
    """{task: {unit, n, regimes: {regime: metrics...}, baseline_train_mean}} from evaluate outputs
    (with several factors also `factors`, and each regime's metrics per factor); each regime also
    carries its source/target feature MMD as `alignment_mmd`."""
    summary: dict = {}
    for m in metrics:
        task = summary.setdefault(m["task"], {"unit": m["unit"], "n": m["n"], "regimes": {},
                                              **({"factors": m["factors"]} if "factors" in m else {})})
        task["regimes"][m["regime"]] = {**{k: m[k] for k in (*REGIME_KEYS, *m.get("factors", []))
                                           if k in m},
                                        "alignment_mmd": m["alignment"]["mmd"]}
        task["baseline_train_mean"] = m["baseline_train_mean"]
    return summary


def by_seed(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth (n,), predictions (seeds, n)) from a predictions CSV in long form (seed, actual,
    predicted; no seed column: one seed); with a factor column, (truth (n, K), predictions
    (seeds, n, K)), factors in their order of appearance."""
    groups = [g for _, g in frame.groupby("seed", sort=True)] if "seed" in frame else [frame]
    columns = (lambda g, c: g[c].to_numpy()) if "factor" not in frame else \
        (lambda g, c: np.stack([g.loc[g["factor"] == f, c].to_numpy()
                                for f in pd.unique(frame["factor"])], axis=1))
    truth = columns(groups[0], "actual")
    if any(not np.array_equal(columns(g, "actual"), truth) for g in groups[1:]):
        raise DataError(f"predictions of {name}: its seeds are not on the same test images in the "
                        f"same order; rerun its evaluate stage (dvc repro)")
    return truth, np.stack([columns(g, "predicted") for g in groups])


def comparison_pairs(regimes: list[str], controls: dict[str, str], reference: str
                     ) -> list[tuple[str, str, str]]:
    """(regime, baseline, why) for every comparison the reports show: each regime against its
    control (why: "control") and against the reference regime ("reference"), once each."""
    pairs = []
    for name in regimes:
        for baseline, why in ((controls.get(name), "control"), (reference, "reference")):
            if baseline and baseline != name and baseline in regimes \
                    and not any(p[:2] == (name, baseline) for p in pairs):
                pairs.append((name, baseline, why))
    return pairs


def paired_comparisons(predictions: dict[str, pd.DataFrame], pairs: list[tuple[str, str, str]],
                       samples: int, seed: int) -> dict:
    """{"da - no_da": {"mae": ..., "spearman": ..., "against": "control"}, ...}: the paired
    bootstrap (dareg.evaluate.paired_difference) of each pair's MAE and Spearman differences on
    the same test images (same `actual` column); with several training seeds the bootstrap
    resamples seeds as well as images."""
    regimes = {name: by_seed(frame, name) for name, frame in predictions.items()}
    first, (truth, _) = next(iter(regimes.items()))
    for regime, (actual, _) in regimes.items():
        if not np.array_equal(actual, truth):
            raise DataError(f"predictions of {regime} and {first} are not on the same test "
                            f"images in the same order; rerun their evaluate stages (dvc repro)")
    return {f"{a} - {b}": {stat: paired_difference(truth, regimes[a][1], regimes[b][1], samples,
                                                    seed, stat) for stat in ("mae", "spearman")}
                          | {"against": why}
            for a, b, why in pairs}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _with_spread(m: dict, key: str) -> str:
    """value, ± its standard deviation over seeds (several seeds only), [95% CI over images]."""
    spread = (m.get("seed_spread") or {}).get(key)
    sd = f" ± {_fmt(spread['std'])}" if spread and len(m.get("seeds", [])) > 1 else ""
    ci = m["ci95"].get(key)
    return f"{_fmt(m[key])}{sd}" + (f" [{_fmt(ci['low'])}, {_fmt(ci['high'])}]" if ci else "")


def _factor_table(block: dict) -> list[str]:
    """Several factors: per regime the MAE of each factor, their mean and sum, and the last
    epoch's test MAE (what the papers, which select nothing, report)."""
    names = block["factors"]
    lines = [f"| regime | MAE, mean over factors [95% CI] | {' | '.join(f'MAE {f}' for f in names)} | "
             f"MAE sum | last epoch: MAE | Spearman, mean [95% CI] | feature MMD | collapse ratio | "
             f"best epoch |", "|---" * (len(names) + 9) + "|"]
    for regime, m in block["regimes"].items():
        last = m["last_epoch"]
        spread = (last["seed_spread"]["mae"] or {}).get("std") if len(m.get("seeds", [])) > 1 else None
        lines.append(f"| {regime} | {_with_spread(m, 'mae')} | "
                     f"{' | '.join(_fmt(m[f]['mae']) for f in names)} | {_fmt(m['mae_sum'])} | "
                     f"{_fmt(last['mae'])}{'' if spread is None else f' ± {_fmt(spread)}'} | "
                     f"{_with_spread(m, 'spearman')} | {m['alignment_mmd']:.4f} | {_collapse(m)} | "
                     f"{', '.join(map(str, m.get('best_epochs', [])))} |")
    base = block["baseline_train_mean"]
    lines.append(f"| baseline: training mean | {_fmt(base['mae'])} | " + "n/a | " * len(names)
                 + f"{_fmt(base['mae_sum'])} | n/a | n/a | n/a | 0 | n/a |")
    return lines


def _regime_table(block: dict) -> list[str]:
    """Rows per regime and for the baseline; CS(5) only where the unit is years; per factor
    (_factor_table) where the label has several."""
    if "factors" in block:
        return _factor_table(block)
    ages = block["unit"] == "years"
    head = "| regime | MAE [95% CI] | RMSE | Spearman [95% CI] | Pearson |" + (" CS(5) |" if ages else "")
    lines = [head + " feature MMD | collapse ratio | best epoch |", "|---" * (head.count("|") + 2) + "|"]
    for regime, m in block["regimes"].items():
        cs5 = f" {_fmt(m.get('cs5'))} |" if ages else ""
        epochs = ", ".join(map(str, m.get("best_epochs", [])))
        lines.append(f"| {regime} | {_with_spread(m, 'mae')} | {_fmt(m['rmse'])} | "
                     f"{_with_spread(m, 'spearman')} | {_fmt(m['pearson'])} |"
                     f"{cs5} {m['alignment_mmd']:.4f} | {_collapse(m)} | {epochs} |")
    base = block["baseline_train_mean"]
    lines.append(f"| baseline: training mean | {_fmt(base['mae'])} | {_fmt(base['rmse'])} | n/a | n/a |"
                 + (" n/a |" if ages else "") + " n/a | 0 | n/a |")
    return lines


def collapsed(block: dict) -> list[str]:
    """The regimes whose test predictions spread less than COLLAPSED_BELOW times the labels."""
    return [r for r, m in block["regimes"].items() if "collapse_ratio" in m
            and (m["collapse_ratio"] is None or m["collapse_ratio"] < COLLAPSED_BELOW)]


def _collapse(m: dict) -> str:
    if "collapse_ratio" not in m:
        return "n/a"
    ratio = m["collapse_ratio"]
    if ratio is None:
        return "0: **collapsed** (constant)"
    return f"{ratio:.2f}" + (": **collapsed**" if ratio < COLLAPSED_BELOW else "")


def _seeds_note(block: dict) -> str:
    seeds = next(iter(block["regimes"].values())).get("seeds", [])
    if len(seeds) > 1:
        return (f"Each regime trained {len(seeds)} times (seeds {', '.join(map(str, seeds))}): values "
                f"are means over the seeds, ± the standard deviation across them, [95% CI] over "
                f"test images (bootstrap); best epoch per seed.")
    return (f"One training seed ({', '.join(map(str, seeds))}): the [95% CI] covers test images, "
            f"not training noise; set `train.repeats` for several seeds.")


def _comparison_table(comparisons: dict, unit: str) -> list[str]:
    lines = [f"| comparison (against) | MAE difference ({unit}) [95% CI] | beyond noise | "
             f"Spearman difference [95% CI] | beyond noise |", "|---|---|---|---|---|"]
    for name, c in comparisons.items():
        cells = []
        for stat in ("mae", "spearman"):
            d = c[stat]
            cells += (["n/a (constant predictions)", "n/a"] if d is None else
                      [f"{d['difference']:+.3f} [{d['ci']['low']:+.3f}, {d['ci']['high']:+.3f}]",
                       "yes" if d["beyond_noise"] else "no"])
        lines.append(f"| {name} ({c['against']}) | " + " | ".join(cells) + " |")
    return lines


def task_markdown(task: str, block: dict, figures: dict[str, str], heading: str = "#") -> str:
    """One task's report: the regime table, the paired comparisons and links to its figures."""
    lines = [f"{heading} {task} (target test split, n = {block['n']}, MAE/RMSE in {block['unit']})",
             "", *_regime_table(block), "", _seeds_note(block), "",
             "Feature MMD: squared MMD between the network's features of source training and target "
             "test images (Gaussian kernel, median-heuristic bandwidth); lower means better aligned.",
             f"Collapse ratio: std(predicted) / std(true) on the test split, the mean over seeds; "
             f"under {COLLAPSED_BELOW} the regime is flagged as collapsed (it predicts nearly the "
             f"same value for every image)." + (f" Collapsed here: {', '.join(collapsed(block))}."
                                                if collapsed(block) else " None collapsed here."),
             "", *_comparison_table(block["comparisons"], block["unit"]), "",
             "Each regime against its control (same labeled images a step, no alignment) and "
             "against the reference regime, on the same test images. MAE: negative means the first "
             "regime has the lower error; Spearman: positive means it ranks better. Beyond noise: "
             "the 95% paired-bootstrap interval (test images and seeds) excludes 0.", ""]
    lines += [f"![{task}: {title}]({link})" for title, link in figures.items()]
    return "\n".join(lines) + "\n"
