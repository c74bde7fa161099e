"""Stage summary@{task}: one task's regimes side by side: a JSON summary, a Markdown report and PNG
figures (regimes side by side, predicted vs true (per factor), error by age decade or per factor,
learning curves)."""
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
    figures = {"regimes side by side": plots.regimes_side_by_side(block, task)}
    if "factors" in block:
        figures["error per factor"] = plots.factor_errors(block, task)
        for factor in block["factors"]:
            figures[f"predicted vs true {factor}"] = plots.predicted_vs_actual(
                {r: f[f["factor"] == factor] for r, f in predictions.items()}, f"{task}, {factor}",
                block["unit"])
    else:
        figures["predicted vs true"] = plots.predicted_vs_actual(predictions, task, block["unit"])
    figures["learning curves"] = plots.learning_curves(
        {m["regime"]: plots.read_curves(c) for m, _, c in runs}, task, block["unit"])
    if block["unit"] == "years":
        figures["error by age decade"] = plots.error_by_decade(
            {m["regime"]: m["mae_by_decade"] for m, _, _ in runs}, block["baseline_train_mean"]["mae"])
    paths = {}
    for title, fig in figures.items():
        paths[title] = folder / f"{title.replace(' ', '_')}.png"
        plots.save(fig, paths[title])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, help="a task in run.tasks")
    parser.add_argument("--metrics", type=Path, required=True,
                        help="folder of the task's {regime}.json and predictions/{regime}.csv")
    parser.add_argument("--curves", type=Path, required=True,
                        help="folder of the task's DVCLive curves, {regime}/plots/metrics")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON")
    parser.add_argument("--report", type=Path, required=True, help="Markdown report")
    parser.add_argument("--plots", type=Path, required=True, help="folder for the PNG figures")
    args = parser.parse_args()
    p = params.load()
    cfg, regimes = p.evaluate, p.run.regimes  # in report order
    runs = [(read_metrics(args.metrics / f"{regime}.json", args.task),
             args.metrics / "predictions" / f"{regime}.csv",
             args.curves / regime / "plots" / "metrics") for regime in regimes]
    block = summary.collect([m for m, _, _ in runs])[args.task]
    predictions = {m["regime"]: pd.read_csv(p) for m, p, _ in runs}
    pairs = summary.comparison_pairs(regimes, {m["regime"]: m.get("control", "")
                                               for m, _, _ in runs}, p.run.reference)
    block["comparisons"] = summary.paired_comparisons(predictions, pairs, cfg.bootstrap_samples,
                                                      cfg.seed)
    figures = draw(args.task, block, runs, predictions, args.plots)
    report = summary.task_markdown(args.task, block, {t: os.path.relpath(p, args.report.parent)
                                                      for t, p in figures.items()})
    write_json(args.out, block)
    write_text(args.report, report)
    print(report)


def read_metrics(path: Path, task: str) -> dict:
    """An evaluate stage's metrics file; a missing one names the stage that writes it."""
    if not path.exists():
        raise DataError(f"{path}: not found; run `dvc repro evaluate@{task}-{path.stem}` (is "
                        f"{path.stem} in run.regimes?)")
    return read_json(path)


if __name__ == "__main__":
    cli.run(main)
