"""The documented DEX command runs in the pipeline: `dvc exp run -S model.head=dex`."""
import json
import shutil

import torch

from conftest import run


def test_dex_experiment_trains_and_evaluates(pipeline, tmp_path):
    """On a copy of the tiny pipeline, one regime: a DEX checkpoint and finite test metrics."""
    repo = tmp_path / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    run(["dvc", "exp", "run", "-S", "model.head=dex", "-S", "model.bins=5", "evaluate@age-da"], repo)
    ckpt = torch.load(repo / "models/age/da/seed-0.pt", weights_only=True)
    assert ckpt["model"]["head"] == "dex" and ckpt["model_state"]["head.bin_means"].shape == (5,)
    metrics = json.loads((repo / "metrics/age/da.json").read_text())
    assert 0 < metrics["mae"] < 101
