"""A run killed after an epoch and resumed ends with the same weights as an uninterrupted one."""
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dareg import checkpoint, params, train
from dareg.data import Split
from dareg.models import build_model

from conftest import env, run as run_cmd

ROOT = Path(__file__).resolve().parents[1]


class Killed(Exception):
    pass


def tiny_splits():
    rng = np.random.default_rng(0)
    def split(n, labeled=True):
        return Split(rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8),
                     rng.random(n, dtype=np.float32) if labeled else None)
    return {"source": split(20), "target_train": split(12), "target_unlabeled": split(10, False),
            "target_val": split(6)}


def run(p, resume, validate, log):
    model = build_model(p.model, 64, seed=0)
    best = train.fit(model, tiny_splits(), p.regimes["da"], p.train, p.losses, validate, log,
                     resume=resume)
    return model, best


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, optimizer):
    base = params.load(ROOT / "params.yaml")
    p = replace(base, model=replace(base.model, width=0.125, dropout=0.5),  # dropout: RNG matters
                train=replace(base.train, epochs=3, steps_per_epoch=2, device="cpu",
                              optimizer=optimizer))
    maes = [3.0, 1.0, 2.0]
    whole, whole_best = run(p, None, (lambda m, it=iter(maes): next(it)), lambda e, v: None)

    calls = iter(maes)
    def validate_then_die(model):  # the kill comes during epoch 2's validation
        mae = next(calls)
        if mae == 1.0:
            raise Killed
        return mae
    state = tmp_path / "resume" / "state.pt"
    with pytest.raises(Killed):
        run(p, state, validate_then_die, lambda e, v: None)
    assert state.exists()
    logged = []
    resumed, resumed_best = run(p, state, (lambda m, it=iter(maes[1:]): next(it)),
                                lambda e, v: logged.append(v))
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_best["epoch"] == whole_best["epoch"] == 2
    assert [v["val/mae"] for v in logged] == maes  # epoch 1 re-logged from the state


def test_resume_key_changes_with_params_and_with_data(tmp_path):
    data = tmp_path / "source.csv"
    data.write_text("label\n0.5\n")
    key = checkpoint.resume_key({"train": {"lr": 0.001}}, [data])
    assert checkpoint.resume_key({"train": {"lr": 0.001}}, [data]) == key
    assert checkpoint.resume_key({"train": {"lr": 0.01}}, [data]) != key
    data.write_text("label\n0.6\n")
    assert checkpoint.resume_key({"train": {"lr": 0.001}}, [data]) != key


@pytest.mark.pipeline
def test_a_train_stage_killed_in_its_second_seed_keeps_the_first(pipeline, tmp_path):
    """SIGKILL once seed 0 is done: the rerun trains seed 1 only, seed 0's checkpoint is the one
    saved before the kill, its curve is replayed into DVCLive, and no resume file is left."""
    repo = tmp_path / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    text = (repo / "params.yaml").read_text().replace("steps_per_epoch: 3", "steps_per_epoch: 40")
    (repo / "params.yaml").write_text(text)
    resume = repo / "data/resume/age-no_source"
    shutil.rmtree(resume, ignore_errors=True)
    cmd = ["python", "stages/train.py", "--task", "age", "--regime", "no_source", "--splits",
           "data/splits/age", "--cache", "data/cache/age", "--out", "models/age/no_source",
           "--live", "metrics/train/age/no_source", "--resume", str(resume)]
    shutil.rmtree(repo / "models/age/no_source")
    proc = subprocess.Popen(cmd, cwd=repo, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(resume.glob("*.done.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list(resume.glob("*.done.pt"))
    assert len(done) == 1 and not (repo / "models/age/no_source").exists(), "killed too late"
    saved = done[0].read_bytes()
    rerun = run_cmd(cmd, repo)
    assert "seed 1: best epoch" in rerun.stdout and "seed 0: best epoch" not in rerun.stdout
    assert (repo / "models/age/no_source/seed-0.pt").read_bytes() == saved
    assert not list(resume.iterdir())
    curve = (repo / "metrics/train/age/no_source/plots/metrics/seed-0/val/mae.tsv").read_text()
    assert len(curve.splitlines()) == 1 + 2  # header and both epochs, replayed


def test_equal_checkpoints_are_equal_bytes_wherever_they_are_saved(tmp_path):
    """The same checkpoint saved twice (each through its own random temporary name) gives the
    same bytes, so a rerun that trains the same weights leaves DVC's hash of models/ unchanged."""
    state = {"format": "dareg-checkpoint-1", "weights": torch.arange(6.0).reshape(2, 3), "epoch": 3,
             "history": [{"val/mae": 1.5}]}
    checkpoint.save(state, tmp_path / "a" / "seed-0.pt")
    checkpoint.save(state, tmp_path / "b" / "seed-0.pt")
    first, second = ((tmp_path / d / "seed-0.pt").read_bytes() for d in "ab")
    assert first == second and torch.equal(checkpoint.load(tmp_path / "a" / "seed-0.pt")["weights"],
                                           state["weights"])
