"""Stage cache@{task}: decode (or, for dsprites, render) and resize each split's images once into
data/cache/{task}/*.npy."""
import argparse
from pathlib import Path

import pandas as pd

from dareg import cache, cli, params, shards
from dareg.columns import DSPRITES_RENDER
from dareg.labels import require_columns
from dareg.splits import SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", type=Path, required=True, help="data/splits/{task}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    size = params.load().cache.image_size
    tables = {name: pd.read_csv(args.splits / f"{name}.csv", dtype={"sha256": str}) for name in SPLITS}
    if "style" in tables["source"]:  # dsprites: rendered from the rows, no image files
        for name, table in tables.items():
            require_columns(table, DSPRITES_RENDER, str(args.splits / f"{name}.csv"))
            cache.build_rendered(table, size, args.out / f"{name}.npy", desc=f"cache {name}")
        return
    for name, table in tables.items():
        require_columns(table, ["image", "shard", "offset", "size", "sha256"],
                        str(args.splits / f"{name}.csv"))
    # every shard is there and long enough, before any decoding starts
    shards.check_shards(pd.concat(tables.values()).rename(columns={"image": "member"}))
    for name, table in tables.items():
        members = cache.Members.from_columns(*(table[c] for c in ["shard", "offset", "size",
                                                                  "sha256", "image"]))
        cache.build(members, size, args.out / f"{name}.npy", desc=f"cache {name}")


if __name__ == "__main__":
    cli.run(main)
