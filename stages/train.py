"""Stage train@{task}-{regime}: train one regime on one task, once per seed in train.seeds, and save
each run's best checkpoint as {out}/seed-{seed}.pt.

With train.processes > 1 it relaunches itself under torchrun (one process per GPU, or gloo on CPU).
"""
import argparse
import contextlib
import os
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from dvclive import Live

from dareg import checkpoint, cli, distributed, params
from dareg.data import load_split, unscale
from dareg.io import atomic_path, read_json
from dareg.models import build_model
from dareg.params import ParamsError
from dareg.train import fit, pick_device, predict

SPLIT_DOMAINS = (("source", "source"), ("target_train", "target"),
                 ("target_unlabeled", "target"), ("target_val", "target"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=["age", "popularity"], required=True)
    parser.add_argument("--regime", required=True, help="a key under `regimes` in params.yaml")
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--cache", type=Path, required=True, help="data/cache/{task}")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the checkpoints, one seed-{seed}.pt per training seed")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder for curves")
    parser.add_argument("--resume", type=Path, required=True,
                        help="folder for the per-epoch resume state (not a DVC output)")
    return parser.parse_args()


def relaunch_under_torchrun(processes: int) -> None:
    from torch.distributed.run import main as torchrun
    torchrun(["--standalone", f"--nproc_per_node={processes}", __file__, *sys.argv[1:]])


def main() -> None:
    args = parse_args()
    p = params.load()
    if p.train.processes > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch_under_torchrun(p.train.processes)
    if args.regime not in p.regimes:
        raise ParamsError(f"regimes.{args.regime}: not defined; known: {sorted(p.regimes)}")
    scaling = read_json(args.splits / "scaling.json")
    splits = {name: load_split(args.cache, args.splits, name, scaling[domain])
              for name, domain in SPLIT_DOMAINS}
    val = splits["target_val"]
    val_truth = unscale(val.labels, scaling["target"]) * scaling["per_label"]
    device = distributed.setup(pick_device(p.train.device))
    rank = distributed.world()[0]

    def validate(net) -> float:  # MAE in label units on the target validation split
        pred = unscale(predict(net, val.images, device), scaling["target"]) * scaling["per_label"]
        return float(np.mean(np.abs(pred - val_truth)))

    inputs = [f for d in (args.splits, args.cache) for f in d.iterdir() if f.is_file()]
    states = {seed: args.resume / checkpoint.resume_key(resume_config(p, args.regime, seed), inputs)
              for seed in p.train.seeds}  # each seed's resume files: <key>.pt, then <key>.done.pt
    live_or_none = (Live(str(args.live), dvcyaml=None, save_dvc_exp=False, report=None)
                    if rank == 0 else contextlib.nullcontext())  # rank 0 alone logs and saves
    with live_or_none as live:
        for seed, state in states.items():
            train_seed(args.task, args.regime, seed, p, splits, scaling, validate, live, state)
    if rank == 0:
        publish({seed: state.with_suffix(".done.pt") for seed, state in states.items()}, args.out)


def resume_config(p: params.Params, regime: str, seed: int) -> dict:
    """What a seed's resume files are keyed on: the params of its run (not train.repeats)."""
    train = {k: v for k, v in asdict(replace(p.train, seed=seed)).items() if k != "repeats"}
    return {"model": asdict(p.model), "losses": asdict(p.losses),
            "regime": asdict(p.regimes[regime]), "train": train}


def train_seed(task: str, regime: str, seed: int, p: params.Params, splits: dict, scaling: dict,
               validate, live: Live | None, state: Path) -> None:
    """Train one seed and keep its best checkpoint in <state>.done.pt until every seed is done;
    if that file is there already (the stage was killed in a later seed), replay its curve."""
    done = state.with_suffix(".done.pt")
    if done.exists():
        for epoch, values in enumerate(checkpoint.load(done)["history"]):
            log_epoch(live, seed, epoch, values)
        return
    cfg, image_size = replace(p.train, seed=seed), splits["source"].images.shape[1]
    best = fit(build_model(p.model, image_size, seed=seed), splits, p.regimes[regime], cfg, p.losses,
               validate, lambda epoch, values: log_epoch(live, seed, epoch, values),
               desc=f"{task}-{regime} seed {seed}", resume=state.with_suffix(".pt"))
    if distributed.world()[0] == 0:
        meta = {"task": task, "regime": regime, "epoch": best["epoch"], "val_mae": best["val_mae"],
                "history": best["history"], "train": asdict(cfg), "losses": asdict(p.losses),
                "regime_config": asdict(p.regimes[regime])}
        checkpoint.save(checkpoint.make(best["state"], p.model, image_size, scaling, meta), done)
        state.with_suffix(".pt").unlink(missing_ok=True)
        print(f"train@{task}-{regime} seed {seed}: best epoch {best['epoch']}, "
              f"validation MAE {best['val_mae']:.3f} {scaling['unit']}")


def log_epoch(live: Live | None, seed: int, epoch: int, values: dict) -> None:
    """One epoch's values as DVCLive step `epoch`, named seed-{seed}/{name} (rank 0 only)."""
    if live is None:
        return
    live.step = epoch
    for name, value in values.items():
        live.log_metric(f"seed-{seed}/{name}", value)
    live.next_step()


def publish(finished: dict[int, Path], out: Path) -> None:
    """Copy each seed's checkpoint to out/seed-{seed}.pt, then drop the resume copies."""
    for seed, done in finished.items():
        with atomic_path(out / f"seed-{seed}.pt") as tmp:
            shutil.copyfile(done, tmp)
    for done in finished.values():
        done.unlink()


if __name__ == "__main__":
    cli.run(main)
