"""One regime trained once per seed, resumably: what the train@{task}-{regime} stage runs.

Each seed's per-epoch state (<key>.pt) and finished checkpoint (<key>.done.pt) wait in the resume
folder, outside DVC's outputs, until every seed is done; then the checkpoints are published to the
output folder as seed-{seed}.pt together. A stage killed in a later seed does not retrain the
earlier ones (their curves are replayed to the logger instead).
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from dareg import checkpoint, distributed
from dareg.data import factors
from dareg.io import atomic_path
from dareg.models import build_model
from dareg.params import Params
from dareg.train import describe_device, fit, pick_device

Logger = Callable[[int, int, dict], None]  # (seed, epoch, values)


def resume_config(p: Params, regime: str, seed: int) -> dict:
    """What a seed's resume files are keyed on: the params of its run (not train.repeats)."""
    train = {k: v for k, v in asdict(replace(p.train, seed=seed)).items() if k != "repeats"}
    return {"model": asdict(p.model), "losses": asdict(p.regime_losses(regime)),
            "regime": asdict(p.regimes[regime]), "train": train}


def train_seeds(task: str, regime: str, p: Params, splits: dict, scaling: dict, validate,
                log: Logger, resume_dir: Path, inputs: list[Path], out: Path) -> None:
    """Train `regime` on `task` for every seed in train.seeds and publish out/seed-{seed}.pt.
    `inputs`: the split and cache files, whose bytes key the resume state with the params."""
    states = {seed: resume_dir / checkpoint.resume_key(resume_config(p, regime, seed), inputs)
              for seed in p.train.seeds}  # each seed's resume files: <key>.pt, then <key>.done.pt
    for seed, state in states.items():
        train_seed(task, regime, seed, p, splits, scaling, validate, log, state)
    if distributed.world()[0] == 0:
        publish({seed: state.with_suffix(".done.pt") for seed, state in states.items()}, out)


def train_seed(task: str, regime: str, seed: int, p: Params, splits: dict, scaling: dict,
               validate, log: Logger, state: Path) -> None:
    """Train one seed and keep its best checkpoint in <state>.done.pt until every seed is done;
    if that file is there already (the stage was killed in a later seed), replay its curve."""
    done = state.with_suffix(".done.pt")
    if done.exists():
        for epoch, values in enumerate(checkpoint.load(done)["history"]):
            log(seed, epoch, values)
        return
    cfg, image_size = replace(p.train, seed=seed), splits["source"].images.shape[1]
    loss_cfg = p.regime_losses(regime)
    model = build_model(p.model, image_size, seed=seed, outputs=len(factors(scaling)))
    best = fit(model, splits, p.regimes[regime], cfg, loss_cfg, validate,
               lambda epoch, values: log(seed, epoch, values),
               desc=f"{task}-{regime} seed {seed}", resume=state.with_suffix(".pt"))
    if distributed.world()[0] == 0:
        last = best["last"]
        meta = {"task": task, "regime": regime, "epoch": best["epoch"], "val_mae": best["val_mae"],
                "last_epoch": last["epoch"], "last_val_mae": last["val_mae"],
                "history": best["history"], "train": asdict(cfg), "losses": asdict(loss_cfg),
                "regime_config": asdict(p.regimes[regime]),
                "device": describe_device(pick_device(p.train.device))}
        checkpoint.save(checkpoint.make(best["state"], p.model, image_size, scaling, meta,
                                        last["state"]), done)
        state.with_suffix(".pt").unlink(missing_ok=True)
        print(f"train@{task}-{regime} seed {seed}: best epoch {best['epoch']}, "
              f"validation MAE {best['val_mae']:.3f} {scaling['unit']}")


def publish(finished: dict[int, Path], out: Path) -> None:
    """Copy each seed's checkpoint to out/seed-{seed}.pt, then drop the resume copies."""
    for seed, done in finished.items():
        with atomic_path(out / f"seed-{seed}.pt") as tmp:
            shutil.copyfile(done, tmp)
    for done in finished.values():
        done.unlink()
