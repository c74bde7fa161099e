"""Stage summary: metrics/summary.json, a Markdown report per task and for all tasks, and PNG
figures (predicted vs true, error by age decade, learning curves, regimes side by side)."""
import argparse
import os
from pathlib import Path

import pandas as pd

from dareg import cli, params, plots, summary
from dareg.errors import DataError
from dareg.io import read_json, write_json, write_text


def draw(task: str, block: dict, runs: list[tuple[dict, Path, Path]],
         predictions: dict[str, pd.DataFrame], folder: Path) -> dict[str, Path]:
    """Render one task's figures into `folder`; {title: path}."""
    figures = {"regimes side by side": plots.regimes_side_by_side(block, task),
               "predicted vs true": plots.predicted_vs_actual(predictions, task, block["unit"]),
               "learning curves": plots.learning_curves(
                   {m["regime"]: plots.read_curves(c) for m, _, c in runs}, task, block["unit"])}
    if block["unit"] == "years":
        figures["error by age decade"] = plots.error_by_decade(
            {m["regime"]: m["mae_by_decade"] for m, _, _ in runs}, block["baseline_train_mean"]["mae"])
    paths = {}
    for title, fig in figures.items():
        paths[title] = folder / f"{task}_{title.replace(' ', '_')}.png"
        plots.save(fig, paths[title])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, nargs="+", required=True,
                        help="metrics/{task}/{regime}.json files")
    parser.add_argument("--predictions", type=Path, nargs="+", required=True,
                        help="their prediction CSVs, in the same order")
    parser.add_argument("--curves", type=Path, nargs="+", required=True,
                        help="their DVCLive plots/metrics folders, in the same order")
    parser.add_argument("--task-reports", type=Path, nargs="+", required=True,
                        help="a Markdown report per task, in the order tasks first appear")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON")
    parser.add_argument("--report", type=Path, required=True, help="Markdown report of all tasks")
    parser.add_argument("--plots", type=Path, required=True, help="folder for the PNG figures")
    args = parser.parse_args()
    if not len(args.metrics) == len(args.predictions) == len(args.curves):
        raise DataError("--metrics, --predictions and --curves need one entry per task and regime each")
    cfg = params.load().evaluate
    metrics = [read_json(p) for p in args.metrics]
    table = summary.collect(metrics)
    if len(args.task_reports) != len(table):
        raise DataError(f"--task-reports lists {len(args.task_reports)} files for tasks {list(table)}")
    sections = ["# dareg results", ""]
    for (task, block), task_report in zip(table.items(), args.task_reports):
        runs = [r for r in zip(metrics, args.predictions, args.curves) if r[0]["task"] == task]
        predictions = {m["regime"]: pd.read_csv(p) for m, p, _ in runs}
        block["comparisons"] = summary.paired_comparisons(predictions, cfg.bootstrap_samples, cfg.seed)
        figures = draw(task, block, runs, predictions, args.plots)
        write_text(task_report, summary.task_markdown(
            task, block, {t: os.path.relpath(p, task_report.parent) for t, p in figures.items()}))
        sections.append(summary.task_markdown(
            task, block, {t: os.path.relpath(p, args.report.parent) for t, p in figures.items()}, "##"))
    write_json(args.out, table)
    write_text(args.report, "\n".join(sections))
    print("\n".join(sections))


if __name__ == "__main__":
    cli.run(main)
