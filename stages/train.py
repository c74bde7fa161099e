"""Stage train@{task}-{regime}: train one regime on one task and save the best checkpoint.

With train.processes > 1 it relaunches itself under torchrun (one process per GPU, or gloo on CPU).
"""
import argparse
import contextlib
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from dvclive import Live

from dareg import checkpoint, cli, distributed, params
from dareg.data import load_split, unscale
from dareg.io import read_json
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
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
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
    regime = p.regimes[args.regime]
    scaling = read_json(args.splits / "scaling.json")
    splits = {name: load_split(args.cache, args.splits, name, scaling[domain])
              for name, domain in SPLIT_DOMAINS}
    image_size = splits["source"].images.shape[1]
    model = build_model(p.model, image_size, seed=p.train.seed)
    val = splits["target_val"]
    val_truth = unscale(val.labels, scaling["target"]) * scaling["per_label"]
    device = distributed.setup(pick_device(p.train.device))
    rank = distributed.world()[0]

    def validate(net) -> float:  # MAE in label units on the target validation split
        pred = unscale(predict(net, val.images, device), scaling["target"]) * scaling["per_label"]
        return float(np.mean(np.abs(pred - val_truth)))

    config = {"model": asdict(p.model), "train": asdict(p.train), "losses": asdict(p.losses),
              "regime": asdict(regime)}
    inputs = [f for d in (args.splits, args.cache) for f in d.iterdir() if f.is_file()]
    state_file = args.resume / f"{checkpoint.resume_key(config, inputs)}.pt"
    live_or_none = (Live(str(args.live), dvcyaml=None, save_dvc_exp=False, report=None)
                    if rank == 0 else contextlib.nullcontext())  # rank 0 alone logs and saves
    with live_or_none as live:
        def log(epoch: int, values: dict) -> None:
            for name, value in (values.items() if live else ()):
                live.log_metric(name, value)
            if live:
                live.next_step()

        best = fit(model, splits, regime, p.train, p.losses, validate, log,
                   desc=f"{args.task}-{args.regime}", resume=state_file)
    if rank == 0:
        meta = {"task": args.task, "regime": args.regime, "epoch": best["epoch"],
                "val_mae": best["val_mae"], "train": asdict(p.train), "losses": asdict(p.losses),
                "regime_config": asdict(regime)}
        ckpt = checkpoint.make(best["state"], p.model, image_size, scaling, meta)
        checkpoint.save(ckpt, args.out)
        state_file.unlink(missing_ok=True)
        print(f"train@{args.task}-{args.regime}: best epoch {best['epoch']}, "
              f"validation MAE {best['val_mae']:.3f} {scaling['unit']}")


if __name__ == "__main__":
    cli.run(main)
