"""Summary: the regimes side by side per task, with paired bootstrap comparisons of their MAE, as
JSON and as Markdown reports that link the PNG figures."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from dareg.errors import DataError
from dareg.evaluate import paired_mae_difference

REGIME_KEYS = ("mae", "rmse", "spearman", "pearson", "ci95", "cs5", "best_epoch", "val_mae")


def collect(metrics: list[dict]) -> dict:
    """{task: {unit, n, regimes: {regime: metrics...}, baseline_train_mean}} from evaluate outputs;
    each regime also carries its source/target feature MMD as `alignment_mmd`."""
    summary: dict = {}
    for m in metrics:
        task = summary.setdefault(m["task"], {"unit": m["unit"], "n": m["n"], "regimes": {}})
        task["regimes"][m["regime"]] = {**{k: m[k] for k in REGIME_KEYS if k in m},
                                        "alignment_mmd": m["alignment"]["mmd"]}
        task["baseline_train_mean"] = m["baseline_train_mean"]
    return summary


def paired_comparisons(predictions: dict[str, pd.DataFrame], samples: int, seed: int) -> dict:
    """{"da - no_da": MAE difference with its paired bootstrap interval, ...}: each regime against
    every regime listed before it, scored on the same test images (same `actual` column)."""
    regimes = list(predictions)
    truth = predictions[regimes[0]]["actual"].to_numpy()
    for regime in regimes[1:]:
        if not np.array_equal(predictions[regime]["actual"].to_numpy(), truth):
            raise DataError(f"predictions of {regime} and {regimes[0]} are not on the same test "
                            f"images in the same order; rerun their evaluate stages (dvc repro)")
    return {f"{b} - {a}": paired_mae_difference(truth, predictions[b]["predicted"].to_numpy(),
                                                predictions[a]["predicted"].to_numpy(), samples, seed)
            for a, b in combinations(regimes, 2)}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _with_ci(value, ci) -> str:
    return _fmt(value) if not ci else f"{_fmt(value)} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]"


def _regime_table(block: dict) -> list[str]:
    """Rows per regime and for the baseline; CS(5) only where the unit is years."""
    ages = block["unit"] == "years"
    head = "| regime | MAE [95% CI] | RMSE | Spearman [95% CI] | Pearson |" + (" CS(5) |" if ages else "")
    lines = [head + " feature MMD | best epoch |", "|---" * (head.count("|") + 1) + "|"]
    for regime, m in block["regimes"].items():
        cs5 = f" {_fmt(m.get('cs5'))} |" if ages else ""
        lines.append(f"| {regime} | {_with_ci(m['mae'], m['ci95']['mae'])} | {_fmt(m['rmse'])} | "
                     f"{_with_ci(m['spearman'], m['ci95']['spearman'])} | {_fmt(m['pearson'])} |"
                     f"{cs5} {m['alignment_mmd']:.4f} | {m['best_epoch']} |")
    base = block["baseline_train_mean"]
    lines.append(f"| baseline: training mean | {_fmt(base['mae'])} | {_fmt(base['rmse'])} | n/a | n/a |"
                 + (" n/a |" if ages else "") + " n/a | n/a |")
    return lines


def _comparison_table(comparisons: dict, unit: str) -> list[str]:
    lines = [f"| MAE difference ({unit}) | mean | 95% CI (paired bootstrap) | beyond noise |",
             "|---|---|---|---|"]
    for name, c in comparisons.items():
        verdict = "yes" if c["beyond_noise"] else "no (the interval holds 0)"
        lines.append(f"| {name} | {c['difference']:+.3f} | [{c['ci']['low']:+.3f}, "
                     f"{c['ci']['high']:+.3f}] | {verdict} |")
    return lines


def task_markdown(task: str, block: dict, figures: dict[str, str], heading: str = "#") -> str:
    """One task's report: the regime table, the paired comparisons and links to its figures."""
    lines = [f"{heading} {task} (target test split, n = {block['n']}, MAE/RMSE in {block['unit']})",
             "", *_regime_table(block), "",
             "Feature MMD: squared MMD between the network's features of source training and target "
             "test images (Gaussian kernel, median-heuristic bandwidth); lower means better aligned.",
             "", *_comparison_table(block["comparisons"], block["unit"]), "",
             "Negative: the first regime has the lower error.", ""]
    lines += [f"![{task}: {title}]({link})" for title, link in figures.items()]
    return "\n".join(lines) + "\n"
