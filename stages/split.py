"""Stage split@{task}: grouped splits and per-domain label scaling into data/splits/{task}/."""
import argparse
from pathlib import Path

import pandas as pd

from dareg import cli, params, splits
from dareg.io import read_json, write_csv, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=params.TASKS, required=True)
    parser.add_argument("--labels", type=Path, required=True, help="data/labels/{task}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    p = params.load().split
    sizes = getattr(p, args.task)
    table = pd.read_csv(args.labels / "labels.csv")
    parts = splits.split(table, sizes, p.val_fraction, p.seed, args.task)
    for name, frame in parts.items():
        write_csv(args.out / f"{name}.csv", frame)
    write_json(args.out / "scaling.json",
               splits.scaling(parts, sizes.scale, read_json(args.labels / "units.json")))
    print(f"split@{args.task}: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()))


if __name__ == "__main__":
    cli.run(main)
