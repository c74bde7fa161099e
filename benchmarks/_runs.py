"""Shared by the adaptation benchmarks: load a task's splits and cache from a workspace where
`dvc repro` has built them, and train one regime for one seed through the library's loop."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dareg import params
from dareg.data import Split, factors, load_split, unscale
from dareg.io import read_json
from dareg.models import build_model
from dareg.params import Params, Regime
from dareg.train import TrainingError, fit, predict

SPLITS = (("source", "source"), ("target_train", "target"), ("target_unlabeled", "target"),
          ("target_val", "target"), ("target_test", "target"))


def load_task(repo: Path, task: str) -> tuple[Params, dict[str, Split], dict]:
    """The workspace's params, every split of `task` (images memory-mapped) and its scaling."""
    splits_dir, cache_dir = repo / "data" / "splits" / task, repo / "data" / "cache" / task
    if not (cache_dir / "source.npy").exists():
        raise SystemExit(f"{cache_dir}: no image cache; run `dvc repro cache@{task}` in {repo}")
    scaling = read_json(splits_dir / "scaling.json")
    data = {n: load_split(cache_dir, splits_dir, n, scaling[d]) for n, d in SPLITS}
    return params.load(repo / "params.yaml"), data, scaling


def mae(model, split: Split, scaling: dict) -> float:
    """MAE in label units (years for age; the mean over factors) of `model` on `split`."""
    pred = unscale(predict(model, split.images, "cpu"), scaling["target"])
    truth = unscale(split.labels, scaling["target"])
    return float(np.mean(np.abs(pred - truth))) * scaling["per_label"]


def train_run(p: Params, regime: Regime, loss_regime: str, data: dict[str, Split], scaling: dict,
              seed: int) -> dict:
    """Train `regime` (its losses as regime `loss_regime` has them) for one seed; the best epoch
    by target-validation MAE. Returns val_mae, epoch, seconds, history and the model (with the
    best weights) or, for a run whose loss stopped being finite, val_mae inf and the error."""
    start = time.perf_counter()
    model = build_model(p.model, data["source"].images.shape[1], seed, outputs=len(factors(scaling)))
    train_splits = {k: v for k, v in data.items() if k != "target_test"}  # the loop never sees test
    try:
        best = fit(model, train_splits, regime, replace(p.train, seed=seed), p.regime_losses(loss_regime),
                   lambda m: mae(m, data["target_val"], scaling), lambda epoch, values: None,
                   desc=f"seed {seed}")
    except TrainingError as err:
        return {"val_mae": float("inf"), "epoch": None, "error": str(err),
                "seconds": time.perf_counter() - start}
    model.load_state_dict(best["state"])
    return {"val_mae": best["val_mae"], "epoch": best["epoch"], "history": best["history"],
            "model": model.eval(), "seconds": time.perf_counter() - start}
