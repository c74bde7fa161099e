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
    parser.add_argument("--regimes", nargs="+", required=True, help="run.regimes, in report order")
    parser.add_argument("--reference", required=True, help="run.reference: compared with every regime")
    parser.add_argument("--tasks", nargs="+", required=True, help="age popularity")
    parser.add_argument("--metrics", type=Path, required=True,
                        help="folder of {task}/{regime}.json and {task}/predictions/{regime}.csv")
    parser.add_argument("--curves", type=Path, required=True,
                        help="folder of the DVCLive curves, {task}/{regime}/plots/metrics")
    parser.add_argument("--task-reports", type=Path, required=True, help="folder for {task}.md")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON")
    parser.add_argument("--report", type=Path, required=True, help="Markdown report of all tasks")
    parser.add_argument("--plots", type=Path, required=True, help="folder for the PNG figures")
    args = parser.parse_args()
    cfg = params.load().evaluate
    runs = {task: [(read_metrics(args.metrics / task / f"{regime}.json"),
                    args.metrics / task / "predictions" / f"{regime}.csv",
                    args.curves / task / regime / "plots" / "metrics") for regime in args.regimes]
            for task in args.tasks}
    table = summary.collect([m for task_runs in runs.values() for m, _, _ in task_runs])
    sections = ["# dareg results", ""]
    for task, block in table.items():
        predictions = {m["regime"]: pd.read_csv(p) for m, p, _ in runs[task]}
        pairs = summary.comparison_pairs(args.regimes, {m["regime"]: m.get("control", "")
                                                        for m, _, _ in runs[task]}, args.reference)
        block["comparisons"] = summary.paired_comparisons(predictions, pairs, cfg.bootstrap_samples,
                                                          cfg.seed)
        figures = draw(task, block, runs[task], predictions, args.plots)
        task_report = args.task_reports / f"{task}.md"
        write_text(task_report, summary.task_markdown(
            task, block, {t: os.path.relpath(p, task_report.parent) for t, p in figures.items()}))
        sections.append(summary.task_markdown(
            task, block, {t: os.path.relpath(p, args.report.parent) for t, p in figures.items()}, "##"))
    write_json(args.out, table)
    write_text(args.report, "\n".join(sections))
    print("\n".join(sections))


def read_metrics(path: Path) -> dict:
    """An evaluate stage's metrics file; a missing one names the stage that writes it."""
    if not path.exists():
        task, regime = path.parent.name, path.stem
        raise DataError(f"{path}: not found; run `dvc repro evaluate@{task}-{regime}` (is "
                        f"{regime} in run.regimes?)")
    return read_json(path)


if __name__ == "__main__":
    cli.run(main)
