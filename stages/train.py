"""Stage train@{task}-{regime}: train one regime on one task, once per seed in train.seeds, and save
each run's best checkpoint as {out}/seed-{seed}.pt.

With train.processes > 1 it relaunches itself under torchrun (one process per GPU, or gloo on CPU).
"""
import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np
from dvclive import Live

from dareg import cli, distributed, params, runs
from dareg.data import load_split, unscale
from dareg.io import read_json
from dareg.params import ParamsError
from dareg.train import pick_device, predict

SPLIT_DOMAINS = (("source", "source"), ("target_train", "target"),
                 ("target_unlabeled", "target"), ("target_val", "target"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=params.TASKS, required=True)
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
    splits = {name: load_split(args.cache, args.splits, name, scaling[domain],
                               required=name != "target_unlabeled")
              for name, domain in SPLIT_DOMAINS}
    val = splits["target_val"]
    val_truth = unscale(val.labels, scaling["target"]) * scaling["per_label"]
    device = distributed.setup(pick_device(p.train.device))

    def validate(net) -> float:  # MAE in label units on the target validation split (mean over factors)
        pred = predict(net, val.images, device, precision=p.train.precision)
        pred = unscale(pred, scaling["target"]) * scaling["per_label"]
        return float(np.mean(np.abs(pred - val_truth)))

    inputs = [f for d in (args.splits, args.cache) for f in d.iterdir() if f.is_file()]
    rank_zero = distributed.world()[0] == 0  # rank 0 alone logs and saves
    with (Live(str(args.live), dvcyaml=None, save_dvc_exp=False, report=None) if rank_zero
          else contextlib.nullcontext()) as live:
        runs.train_seeds(args.task, args.regime, p, splits, scaling, validate,
                         lambda seed, epoch, values: log_epoch(live, seed, epoch, values),
                         args.resume, inputs, args.out)


def log_epoch(live: Live | None, seed: int, epoch: int, values: dict) -> None:
    """One epoch's values as DVCLive step `epoch`, named seed-{seed}/{name} (rank 0 only)."""
    if live is None:
        return
    live.step = epoch
    for name, value in values.items():
        live.log_metric(f"seed-{seed}/{name}", value)
    live.next_step()


if __name__ == "__main__":
    cli.run(main)
