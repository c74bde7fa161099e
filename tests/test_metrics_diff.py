"""Comparing branches: two commits with different params, compared by `dvc metrics diff`."""
import json
import shutil

import pytest
import yaml

from conftest import set_params, run

pytestmark = pytest.mark.pipeline
GIT = ["git", "-c", "user.name=dareg-tests", "-c", "user.email=tests@dareg.invalid"]


def test_metrics_diff_shows_what_a_param_change_moved_and_nothing_else(pipeline, tmp_path):
    """A new `da` MMD weight changes the `da` metrics and the summary; `no_da` is not listed,
    and every changed metric carries both commits' values (git-tracked, no remote needed)."""
    repo = tmp_path / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    run([*GIT, "add", "-A"], repo)
    run([*GIT, "commit", "-qm", "first run"], repo)
    params_file = repo / "params.yaml"
    assert yaml.safe_load(params_file.read_text())["regimes"]["da"]["weights"]["mmd"] != 0.5
    set_params(params_file, {"regimes.da.weights.mmd": 0.5})
    run(["dvc", "repro"], repo)
    run([*GIT, "commit", "-qam", "da with mmd 0.5"], repo)

    diff = json.loads(run(["dvc", "metrics", "diff", "--json", "HEAD~1", "HEAD"], repo).stdout)
    assert "metrics/age/no_da.json" not in diff and "metrics/popularity/no_source.json" not in diff
    for task in ("age", "popularity"):
        changed = diff[f"metrics/{task}/da.json"]
        assert changed["git_commit"]["old"] != changed["git_commit"]["new"]
        moved = [k for k in ("mae", "rmse", "alignment.mmd") if k in changed]
        assert moved, changed
        for key in moved:
            assert changed[key]["old"] is not None and changed[key]["new"] is not None
    assert any(k.startswith("regimes.da.") for k in diff["metrics/reports/age.json"])
    params = json.loads(run(["dvc", "params", "diff", "--json", "HEAD~1", "HEAD"], repo).stdout)
    assert params["params.yaml"]["regimes.da.weights.mmd"]["new"] == 0.5
