"""Parallel experiments: queue runs with -S overrides, run them two at a time, list the results."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from committed import committed_copy
from conftest import env, run

pytestmark = pytest.mark.pipeline
MMD = ["0.0123", "0.0456"]  # regimes.da.weights.mmd: only train@*-da, evaluate@*-da and summary rerun


def wait_for_queue(repo: Path, timeout: float = 600) -> str:
    """Poll `dvc queue status` until nothing is queued or running; returns the last status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(2)
    raise AssertionError(f"experiments still queued or running after {timeout} s:\n{status}")


def start_workers(repo: Path, jobs: int) -> None:
    """`dvc queue start -j jobs`. Its workers outlive it and inherit its stdout and stderr, so
    those go to a file: captured in pipes, a worker left idle kept them open and subprocess.run
    waited on it for good (seen once: the queue done, the test hung)."""
    with open(repo.parent / "queue-start.log", "w") as log:
        subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=repo, env=env(), stdout=log,
                       stderr=subprocess.STDOUT, check=True)


def experiments(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json` as {experiment name: its params and metrics} (baselines left out)."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    return {exp["name"]: exp["revs"][0]["data"]
            for baseline in shown for exp in baseline.get("experiments") or []}


def test_queued_experiments_run_two_at_a_time(pipeline, tmp_path):
    """Two queued overrides of a downstream param run on two workers; exp show lists both."""
    repo = committed_copy(pipeline, tmp_path / "exp")
    for i, mmd in enumerate(MMD):
        run(["dvc", "exp", "run", "--queue", "-n", f"mmd-{i}", "-S", f"regimes.da.weights.mmd={mmd}"], repo)
    try:
        start_workers(repo, 2)
        status = wait_for_queue(repo)
    finally:
        run(["dvc", "queue", "stop"], repo, check=False)
    assert status.count("Success") == 2 and "Failed" not in status, status
    log = run(["dvc", "queue", "logs", "mmd-0"], repo).stdout
    assert "Running stage 'train@age-da'" in log and "Running stage 'summary@age'" in log, log
    assert "Running stage 'train@age-no_da'" not in log and "Running stage 'cache@age'" not in log, log
    shown = experiments(repo)
    assert sorted(shown) == ["mmd-0", "mmd-1"], shown
    for i, mmd in enumerate(MMD):
        params = shown[f"mmd-{i}"]["params"]["params.yaml"]["data"]
        assert params["regimes"]["da"]["weights"]["mmd"] == float(mmd)
        assert shown[f"mmd-{i}"]["metrics"]["metrics/age/da.json"]["data"]["mae"] > 0
