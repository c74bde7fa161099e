"""Summary: the regimes side by side per task, as JSON and as a Markdown table."""
from __future__ import annotations


def collect(metrics: list[dict]) -> dict:
    """{task: {regime: metrics..., "baseline_train_mean": {...}}} from evaluate outputs."""
    summary: dict = {}
    for m in metrics:
        task = summary.setdefault(m["task"], {"unit": m["unit"], "n": m["n"], "regimes": {}})
        task["regimes"][m["regime"]] = {k: m[k] for k in ("mae", "rmse", "spearman", "pearson")}
        task["baseline_train_mean"] = m["baseline_train_mean"]
    return summary


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(summary: dict) -> str:
    """One table per task: a row per regime and one for the constant baseline."""
    lines = ["# dareg results", ""]
    for task, block in summary.items():
        lines += [f"## {task} (target test split, n = {block['n']}, MAE/RMSE in {block['unit']})", "",
                  "| regime | MAE | RMSE | Spearman | Pearson |", "|---|---|---|---|---|"]
        for regime, m in block["regimes"].items():
            lines.append(f"| {regime} | {_fmt(m['mae'])} | {_fmt(m['rmse'])} | "
                         f"{_fmt(m['spearman'])} | {_fmt(m['pearson'])} |")
        base = block["baseline_train_mean"]
        lines += [f"| baseline: training mean | {_fmt(base['mae'])} | {_fmt(base['rmse'])} | n/a | n/a |",
                  ""]
    return "\n".join(lines)
