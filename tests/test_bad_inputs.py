"""Bad inputs to the stages, run as dvc runs them (the scripts in stages/, on the tiny pipeline's
real outputs): each ends in one line on stderr naming the file or key and the fix, exit status 2,
no traceback and no output written."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run, set_params


def stage(cwd: Path, script: str, *args) -> str:
    """Run stages/<script> in `cwd` (its params.yaml); assert the one-line error; return it."""
    result = run([sys.executable, str(ROOT / "stages" / script), *map(str, args)], cwd, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


@pytest.fixture
def work(pipeline, tmp_path) -> Path:
    """A folder with the pipeline's params.yaml and a copy of its age splits and cache."""
    shutil.copy(pipeline / "params.yaml", tmp_path / "params.yaml")
    for part in ("splits", "cache"):
        shutil.copytree(pipeline / "data" / part / "age", tmp_path / part)
    return tmp_path


def train_args(pipeline: Path, work: Path) -> list:
    return ["--task", "age", "--regime", "no_da", "--splits", work / "splits", "--cache",
            work / "cache", "--out", work / "models", "--live", work / "live", "--resume",
            work / "resume"]


def evaluate_args(pipeline: Path, work: Path) -> list:
    return ["--checkpoints", pipeline / "models" / "age" / "no_da", "--splits", work / "splits",
            "--cache", work / "cache", "--out", work / "metrics.json", "--predictions",
            work / "predictions.csv"]


def keep_rows(work: Path, split: str, rows: int) -> None:
    """Cut split `split` (its CSV and its cached images) to its first `rows` rows."""
    table = pd.read_csv(work / "splits" / f"{split}.csv")
    table.iloc[:rows].to_csv(work / "splits" / f"{split}.csv", index=False)
    images = np.load(work / "cache" / f"{split}.npy")
    np.save(work / "cache" / f"{split}.npy", images[:rows])


def test_zero_epochs_stops_the_train_stage_at_load(pipeline, work):
    set_params(work / "params.yaml", {"train.epochs": 0})
    line = stage(work, "train.py", *train_args(pipeline, work))
    assert "train.epochs: 0 is out of range; use an integer >= 1" in line
    assert not (work / "models").exists()


def test_a_malformed_params_file_stops_a_stage_naming_the_line(pipeline, work):
    text = (work / "params.yaml").read_text().replace("  epochs:", "   epochs:", 1)
    (work / "params.yaml").write_text(text)
    line = stage(work, "evaluate.py", *evaluate_args(pipeline, work))
    assert "params.yaml: not valid YAML at line" in line and "git checkout params.yaml" in line
    assert not (work / "metrics.json").exists()


def test_an_empty_validation_split_stops_training_naming_it(pipeline, work):
    keep_rows(work, "target_val", 0)
    line = stage(work, "train.py", *train_args(pipeline, work))
    assert "target_val.csv: the target_val split is empty" in line and "split.val_fraction" in line
    assert not (work / "models").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_label_that_is_not_finite_stops_training_naming_the_line(pipeline, work, bad):
    table = pd.read_csv(work / "splits" / "target_train.csv")
    table.loc[3, "label"] = bad
    table.to_csv(work / "splits" / "target_train.csv", index=False)
    line = stage(work, "train.py", *train_args(pipeline, work))
    assert f"target_train.csv: line 5 has label {bad} (1 rows not finite)" in line


def test_an_empty_test_split_stops_evaluation_naming_it(pipeline, work):
    keep_rows(work, "target_test", 0)
    line = stage(work, "evaluate.py", *evaluate_args(pipeline, work))
    assert "target_test.csv: the target_test split is empty" in line
    assert not (work / "metrics.json").exists() and not (work / "predictions.csv").exists()


@pytest.mark.parametrize("column, value, raw", [
    ("views", "n/a", "views, date_upload and scraped_at"),
    ("scraped_at", "last tuesday", "views, date_upload and scraped_at"),
    ("views", "inf", "views, date_upload and scraped_at"),
])
def test_a_raw_table_value_that_gives_no_finite_label_names_the_row(pipeline, tmp_path, column,
                                                                    value, raw):
    shutil.copy(pipeline / "params.yaml", tmp_path / "params.yaml")
    photos = pd.read_csv(pipeline / "data" / "raw" / "flickr" / "photos.csv", dtype=str)
    photos.loc[2, column] = value
    photos.to_csv(tmp_path / "photos.csv", index=False)
    line = stage(tmp_path, "labels.py", "--task", "popularity",
                 "--source", pipeline / "data" / "raw" / "reddit" / "posts.csv",
                 "--target", tmp_path / "photos.csv",
                 "--source-images", pipeline / "data" / "raw" / "reddit",
                 "--target-images", pipeline / "data" / "raw" / "flickr", "--out", tmp_path / "labels")
    assert f"photos.csv: id {photos.loc[2, 'id']} gives label" in line and raw in line
    assert not (tmp_path / "labels" / "labels.csv").exists()
