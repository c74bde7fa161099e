"""Summary stage: regimes compared per task, paired comparisons, reports that link real PNGs."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from dareg import plots, summary
from dareg.errors import DataError

from conftest import run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PAIRS = [("da", "no_da", "control")]


def test_each_regime_is_compared_with_its_control_and_the_reference_once():
    regimes = ["no_source", "no_da", "da", "no_da_seed", "da_seed"]
    controls = {"da": "no_da", "da_seed": "no_da_seed"}
    assert summary.comparison_pairs(regimes, controls, "no_da") == [
        ("no_source", "no_da", "reference"), ("da", "no_da", "control"),
        ("no_da_seed", "no_da", "reference"), ("da_seed", "no_da_seed", "control"),
        ("da_seed", "no_da", "reference")]


def test_collapsed_regimes_are_flagged_in_the_report():
    outputs = [evaluate_output("age", r, m) for r, m in (("no_da", 6.0), ("da", 4.0))]
    outputs[0]["collapse_ratio"], outputs[1]["collapse_ratio"] = 0.2, 0.9
    block = summary.collect(outputs)["age"]
    block["comparisons"] = {}
    report = summary.task_markdown("age", block, {})
    assert summary.collapsed(block) == ["no_da"]
    assert "| 0.20: **collapsed** |" in report and "| 0.90 |" in report
    assert "Collapsed here: no_da." in report


def evaluate_output(task: str, regime: str, mae: float) -> dict:
    ci = {"mae": {"low": mae - 1, "high": mae + 1}, "spearman": {"low": 0.5, "high": 0.9}}
    return {"task": task, "regime": regime, "unit": "years", "n": 10, "mae": mae, "rmse": mae + 1,
            "spearman": 0.7, "pearson": 0.8, "ci95": ci, "cs5": 0.4, "best_epochs": [3], "val_mae": 5.0, "seeds": [0],
            "alignment": {"mmd": 0.01}, "baseline_train_mean": {"mae": 12.0, "rmse": 14.0},
            "mae_by_decade": {"20-29": {"n": 6, "mae": mae}, "30-39": {"n": 4, "mae": mae + 2}}}


def predictions(truth: np.ndarray, noise: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"actual": truth, "predicted": truth + rng.normal(0, noise, len(truth))})


def test_report_shows_intervals_baseline_and_the_verdict_of_each_comparison():
    block = summary.collect([evaluate_output("age", r, m) for r, m in (("no_da", 6.0), ("da", 4.0))])
    truth = np.linspace(20, 60, 200)
    block["age"]["comparisons"] = summary.paired_comparisons(
        {"no_da": predictions(truth, 8, 0), "da": predictions(truth, 2, 1)}, PAIRS, 1000, 0)
    report = summary.task_markdown("age", block["age"], {"predicted vs true": "../plots/x.png"})
    assert "| da | 4.000 [3.000, 5.000] |" in report and "| baseline: training mean | 12.000 |" in report
    assert re.search(r"\| da - no_da \(control\) \| -\d\.\d{3} \[-\d\.\d{3}, -\d\.\d{3}\] \| yes \| "
                     r"\+\d\.\d{3} \[\+\d\.\d{3}, \+\d\.\d{3}\] \| yes \|", report)
    assert "CS(5)" in report and "![age: predicted vs true](../plots/x.png)" in report
    assert "One training seed (0)" in report


def seeded(truth: np.ndarray, noises: list[float]) -> pd.DataFrame:
    """A predictions CSV in long form: one block of rows per seed."""
    return pd.concat([predictions(truth, noise, s).assign(seed=s) for s, noise in enumerate(noises)])


def test_report_with_several_seeds_shows_their_spread_and_each_best_epoch():
    outputs = [evaluate_output("age", r, m) for r, m in (("no_da", 6.0), ("da", 4.0))]
    for m in outputs:
        m |= {"seeds": [0, 1, 2], "best_epochs": [3, 5, 4],
              "seed_spread": {"mae": {"std": 0.25}, "spearman": {"std": 0.02}}}
    block = summary.collect(outputs)["age"]
    truth = np.linspace(20, 60, 100)
    block["comparisons"] = summary.paired_comparisons(
        {"no_da": seeded(truth, [8, 7, 9]), "da": seeded(truth, [2, 3, 2])}, PAIRS, 1000, 0)
    report = summary.task_markdown("age", block, {})
    assert "| da | 4.000 ± 0.250 [3.000, 5.000] |" in report and "| 3, 5, 4 |" in report
    assert "trained 3 times (seeds 0, 1, 2)" in report and block["comparisons"]["da - no_da"]["mae"]["beyond_noise"]


def test_comparisons_refuse_seeds_scored_on_different_images():
    frame = seeded(np.arange(10.0), [1, 1])
    frame.loc[frame["seed"] == 1, "actual"] += 1
    with pytest.raises(DataError, match="its seeds are not on the same test images"):
        summary.paired_comparisons({"da": frame, "no_da": seeded(np.arange(10.0), [1, 1])}, PAIRS, 200, 0)


def test_learning_curves_are_read_per_seed_from_dvclive_folders(tmp_path):
    for seed, maes in ((0, [9.0, 7.0]), (1, [8.0, 6.0])):
        (tmp_path / f"seed-{seed}" / "val").mkdir(parents=True)
        (tmp_path / f"seed-{seed}" / "val" / "mae.tsv").write_text(
            "timestamp\tstep\tmae\n" + "".join(f"{t}\t{i}\t{m}\n" for i, (t, m) in enumerate(zip([1, 2], maes))))
    curves = plots.read_curves(tmp_path)
    assert list(curves) == ["val/mae"]
    assert curves["val/mae"].to_dict("list") == {"step": [0, 1], "seed-0": [9.0, 7.0], "seed-1": [8.0, 6.0]}
    plots.save(plots.learning_curves({"da": curves}, "age", "years"), tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


def test_comparisons_refuse_predictions_on_different_images():
    truth = np.arange(10.0)
    with pytest.raises(DataError, match="same test images"):
        summary.paired_comparisons({"no_da": predictions(truth, 1, 0),
                                    "da": predictions(truth[::-1], 1, 0)}, PAIRS, 200, 0)


def test_figures_render_as_png(tmp_path):
    """Each figure kind renders offline to a PNG file, error bars and missing decades included."""
    block = summary.collect([evaluate_output("age", r, m) for r, m in (("no_da", 6.0), ("da", 4.0))])
    truth = np.linspace(20, 60, 50)
    curve = pd.DataFrame({"step": [0, 1, 2], "mae": [9.0, 7.0, 6.0]})
    figures = {
        "side": plots.regimes_side_by_side(block["age"], "age"),
        "scatter": plots.predicted_vs_actual({"da": predictions(truth, 2, 0)}, "age", "years"),
        "curves": plots.learning_curves({"da": {"val/mae": curve}, "no_da": {}}, "age", "years"),
        "decades": plots.error_by_decade({"da": {"20-29": {"n": 3, "mae": 2.0}},
                                          "no_da": {"70-79": {"n": 1, "mae": 9.0}}}, 12.0),
    }
    for name, fig in figures.items():
        plots.save(fig, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert (tmp_path / f"{name}.png").stat().st_size > 5000


@pytest.mark.pipeline
def test_summary_stage_writes_reports_whose_figure_links_resolve(pipeline):
    table = {task: json.loads((pipeline / "metrics" / "reports" / f"{task}.json").read_text())
             for task in ("age", "popularity")}
    regimes = yaml.safe_load((pipeline / "params.yaml").read_text())["run"]["regimes"]
    assert set(table["age"]["comparisons"]) == {"no_source - no_da"} | {
        f"{r} - no_da" for r in regimes if r.startswith("da")}
    assert set(table["popularity"]["comparisons"]["da - no_da"]) == {"mae", "spearman", "against"}
    for report in ("metrics/reports/age.md", "metrics/reports/popularity.md"):
        path = pipeline / report
        links = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", path.read_text())
        assert len(links) >= 3, report
        for link in links:
            assert (path.parent / link).read_bytes()[:8] == PNG_MAGIC, (report, link)
    assert (pipeline / "metrics" / "plots" / "age" / "error_by_age_decade.png").exists()
    assert not (pipeline / "metrics" / "plots" / "popularity" / "error_by_age_decade.png").exists()


@pytest.mark.pipeline
def test_plots_are_git_tracked_not_dvc_cached(pipeline):
    """PNGs and plot data live in git (cache: false): a fresh clone has them without a remote."""
    for path in ("metrics/plots/age/regimes_side_by_side.png", "metrics/age/predictions/da.csv",
                 "metrics/reports/age.md"):
        assert run(["git", "check-ignore", "-q", path], pipeline, check=False).returncode == 1, path
