"""Stage train@{task}-{regime}: train one regime on one task and save the best checkpoint."""
import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
from dvclive import Live

from dareg import checkpoint, cli, params
from dareg.data import load_split, unscale
from dareg.io import read_json
from dareg.models import build_model
from dareg.params import ParamsError
from dareg.train import fit, pick_device, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=["age", "popularity"], required=True)
    parser.add_argument("--regime", required=True, help="a key under `regimes` in params.yaml")
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--cache", type=Path, required=True, help="data/cache/{task}")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder for curves")
    args = parser.parse_args()
    p = params.load()
    if args.regime not in p.regimes:
        raise ParamsError(f"regimes.{args.regime}: not defined; known: {sorted(p.regimes)}")
    regime = p.regimes[args.regime]
    scaling = read_json(args.splits / "scaling.json")
    splits = {name: load_split(args.cache, args.splits, name, scaling[domain])
              for name, domain in (("source", "source"), ("target_train", "target"),
                                   ("target_unlabeled", "target"), ("target_val", "target"))}
    image_size = splits["source"].images.shape[1]
    model = build_model(p.model, image_size, seed=p.train.seed)
    val = splits["target_val"]
    val_truth = unscale(val.labels, scaling["target"]) * scaling["per_label"]
    device = pick_device(p.train.device)

    def validate(net) -> float:  # MAE in label units on the target validation split
        pred = unscale(predict(net, val.images, device), scaling["target"]) * scaling["per_label"]
        return float(np.mean(np.abs(pred - val_truth)))

    with Live(str(args.live), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        def log(epoch: int, values: dict) -> None:
            for name, value in values.items():
                live.log_metric(name, value)
            live.next_step()

        best = fit(model, splits, regime, p.train, p.losses, validate, log,
                   desc=f"{args.task}-{args.regime}")
    meta = {"task": args.task, "regime": args.regime, "epoch": best["epoch"],
            "val_mae": best["val_mae"], "train": asdict(p.train), "losses": asdict(p.losses),
            "regime_config": asdict(regime)}
    checkpoint.save(checkpoint.make(best["state"], p.model, image_size, scaling, meta), args.out)
    print(f"train@{args.task}-{args.regime}: best epoch {best['epoch']}, "
          f"validation MAE {best['val_mae']:.3f} {scaling['unit']}")


if __name__ == "__main__":
    cli.run(main)
