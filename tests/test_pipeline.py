"""The whole DAG on the tiny profile: what a user sees after `dvc repro` and after changing a param."""
import hashlib
import json
import re
import shutil

import pandas as pd
import pytest
import yaml

from dareg import shards

from conftest import can_isolate_network, run, set_params

pytestmark = pytest.mark.pipeline
TASKS = ("age", "popularity")


def listed_regimes(repo) -> list[str]:
    return yaml.safe_load((repo / "params.yaml").read_text())["run"]["regimes"]


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_demo_ran_offline(pipeline):
    """The run used no network but loopback: it happened inside a namespace with only `lo`."""
    if not can_isolate_network():
        pytest.skip("unshare --net is not permitted here; the demo ran with the host's network")
    assert "Running stage 'summary@age'" in (pipeline / "repro.log").read_text()


def test_metrics_show_lists_every_task_and_regime(pipeline):
    """Every regime of the contract is in run.regimes and trains and evaluates on both tasks."""
    assert set(listed_regimes(pipeline)) >= {"no_source", "no_da", "da", "da_coral", "da_rsd",
                                              "da_daregram", "da_dann", "da_adabn"}
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], pipeline).stdout)
    files = next(iter(shown.values()))["data"]
    for task in TASKS:
        for regime in listed_regimes(pipeline):
            data = files[f"metrics/{task}/{regime}.json"]["data"]
            assert {"mae", "rmse", "spearman", "pearson", "n"} <= set(data), (task, regime)
            assert data["n"] == 24 and data["mae"] >= 0


def test_summary_compares_regimes_per_task(pipeline):
    for task in TASKS:
        summary = json.loads((pipeline / "metrics" / "reports" / f"{task}.json").read_text())
        assert list(summary["regimes"]) == listed_regimes(pipeline)
        report = (pipeline / "metrics" / "reports" / f"{task}.md").read_text()
        assert "| da_adabn |" in report and "baseline: training mean" in report
    assert json.loads((pipeline / "metrics" / "reports" / "age.json").read_text())["unit"] == "years"


def test_status_is_clean_and_dag_has_every_stage(pipeline):
    assert "up to date" in run(["dvc", "status"], pipeline).stdout
    listed = run(["dvc", "stage", "list", "--name-only"], pipeline).stdout.split()
    expected = {"fetch_wiki", "scrape_reddit", "scrape_flickr", "clean_wiki", "fetch_dsprites"}
    expected |= {f"{s}@{t}" for s in ("labels", "split", "cache") for t in (*TASKS, "dsprites")}
    expected |= {f"summary@{t}" for t in TASKS}
    expected |= {f"{s}@{t}-{r}" for s in ("train", "evaluate") for t in TASKS
                 for r in listed_regimes(pipeline)}
    assert set(listed) == expected


def test_changing_one_regime_weight_reruns_only_what_depends_on_it(pipeline):
    """Only train/evaluate of `da` and the summary rerun; the next repro is a no-op."""
    params_file = pipeline / "params.yaml"
    original = params_file.read_text()
    set_params(params_file, {"regimes.da.weights.mmd": 123.0})
    try:
        ran = stages_run(run(["dvc", "repro"], pipeline).stdout)
        assert ran == {"train@age-da", "train@popularity-da", "evaluate@age-da",
                       "evaluate@popularity-da", "summary@age", "summary@popularity"}
        assert stages_run(run(["dvc", "repro"], pipeline).stdout) == set()
    finally:
        params_file.write_text(original)
        run(["dvc", "repro"], pipeline)


def test_a_regime_added_to_params_and_the_list_reaches_the_summary(pipeline, tmp_path):
    """The one-list rule: a params entry plus its name in run.regimes gives train and evaluate
    stages for both tasks and a row in each task's report, with no edit of dvc.yaml or code."""
    repo = tmp_path / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    set_params(repo / "params.yaml", {
        "regimes.da_mine": {"control": "no_da", "batch": {"source": 8, "target_labeled": 8,
                            "target_unlabeled": 4}, "weights": {"supervised": 1.0, "coral": 0.5}},
        "run.regimes": [*raw["run"]["regimes"], "da_mine"]})
    ran = stages_run(run(["dvc", "repro"], repo).stdout)
    assert ran == {"train@age-da_mine", "train@popularity-da_mine", "evaluate@age-da_mine",
                   "evaluate@popularity-da_mine", "summary@age", "summary@popularity"}
    for task in TASKS:
        report = (repo / "metrics" / "reports" / f"{task}.md").read_text()
        assert report.count("| da_mine |") == 1 and report.count("| da_mine - no_da (control) |") == 1


def test_image_folders_are_walked_only_as_outputs_and_hashes_carry_their_content(pipeline):
    """No stage depends on a raw image folder (at 60,000 files each such dependency costs a walk
    on every `dvc status`); the split CSVs carry each image's shard, offset and sha256 instead, and
    it is the hash of the bytes there."""
    lock = yaml.safe_load((pipeline / "dvc.lock").read_text())["stages"]
    folders = {"data/raw/wiki", "data/raw/reddit", "data/raw/flickr"}
    assert not [(name, d["path"]) for name, stage in lock.items() for d in stage.get("deps", [])
                if d["path"].rstrip("/") in folders]
    for task in TASKS:
        for split in ("source", "target_train", "target_test"):
            rows = pd.read_csv(pipeline / "data" / "splits" / task / f"{split}.csv")
            assert rows["sha256"].tolist() == [  # the bytes each row's shard holds at its offset
                hashlib.sha256(shards.read_member(pipeline / r.shard, r.offset, r.size)).hexdigest()
                for r in rows.itertuples()]
