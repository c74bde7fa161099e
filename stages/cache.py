"""Stage cache@{task}: decode and resize each split's images once into data/cache/{task}/*.npy."""
import argparse
from pathlib import Path

import pandas as pd

from dareg import cache, cli, params
from dareg.splits import SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    size = params.load().cache.image_size
    for name in SPLITS:
        paths = pd.read_csv(args.splits / f"{name}.csv")["image"].tolist()
        cache.build(paths, size, args.out / f"{name}.npy", desc=f"cache {name}")


if __name__ == "__main__":
    cli.run(main)
