"""The whole DAG on the tiny profile: what a user sees after `dvc repro` and after changing a param."""
import json
import re

import pandas as pd
import pytest
import yaml

from dareg import hashes

from conftest import can_isolate_network, run

pytestmark = pytest.mark.pipeline
TASKS, REGIMES = ("age", "popularity"), ("no_source", "no_da", "da")


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_demo_ran_offline(pipeline):
    """The run used no network but loopback: it happened inside a namespace with only `lo`."""
    if not can_isolate_network():
        pytest.skip("unshare --net is not permitted here; the demo ran with the host's network")
    assert "Running stage 'summary'" in (pipeline / "repro.log").read_text()


def test_metrics_show_lists_six_task_regime_rows(pipeline):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], pipeline).stdout)
    files = next(iter(shown.values()))["data"]
    for task in TASKS:
        for regime in REGIMES:
            data = files[f"metrics/{task}/{regime}.json"]["data"]
            assert {"mae", "rmse", "spearman", "pearson", "n"} <= set(data), (task, regime)
            assert data["n"] == 24 and data["mae"] >= 0


def test_summary_compares_regimes_per_task(pipeline):
    summary = json.loads((pipeline / "metrics" / "summary.json").read_text())
    assert set(summary) == set(TASKS)
    assert set(summary["age"]["regimes"]) == set(REGIMES)
    report = (pipeline / "metrics" / "summary.md").read_text()
    assert "| da |" in report and "baseline: training mean" in report
    assert summary["age"]["unit"] == "years"


def test_status_is_clean_and_dag_has_every_stage(pipeline):
    assert "up to date" in run(["dvc", "status"], pipeline).stdout
    listed = run(["dvc", "stage", "list", "--name-only"], pipeline).stdout.split()
    expected = {"fetch_wiki", "scrape_reddit", "scrape_flickr", "clean_wiki", "summary"}
    expected |= {f"{s}@{t}" for s in ("labels", "split", "cache") for t in TASKS}
    expected |= {f"{s}@{t}-{r}" for s in ("train", "evaluate") for t in TASKS for r in REGIMES}
    assert set(listed) == expected


def test_changing_one_regime_weight_reruns_only_what_depends_on_it(pipeline):
    """Only train/evaluate of `da` and the summary rerun; the next repro is a no-op."""
    params_file = pipeline / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    original = params_file.read_text()
    weights = params["regimes"]["da"]["weights"]
    text = original.replace(f"mmd: {weights['mmd']}", "mmd: 123.0")
    assert text != original
    params_file.write_text(text)
    ran = stages_run(run(["dvc", "repro"], pipeline).stdout)
    assert ran == {"train@age-da", "train@popularity-da", "evaluate@age-da",
                   "evaluate@popularity-da", "summary"}
    assert stages_run(run(["dvc", "repro"], pipeline).stdout) == set()


def test_image_folders_are_walked_only_as_outputs_and_hashes_carry_their_content(pipeline):
    """No stage depends on a raw image folder (at 60,000 files each such dependency costs a walk
    on every `dvc status`); the split CSVs carry each image's sha256 instead, and it is the file's."""
    lock = yaml.safe_load((pipeline / "dvc.lock").read_text())["stages"]
    folders = {"data/raw/wiki", "data/raw/reddit", "data/raw/flickr"}
    assert not [(name, d["path"]) for name, stage in lock.items() for d in stage.get("deps", [])
                if d["path"].rstrip("/") in folders]
    for task in TASKS:
        for split in ("source", "target_train", "target_test"):
            rows = pd.read_csv(pipeline / "data" / "splits" / task / f"{split}.csv")
            assert rows["sha256"].tolist() == [hashes.sha256_file(pipeline / p) for p in rows["image"]]
