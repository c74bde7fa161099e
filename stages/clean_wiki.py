"""Stage clean_wiki: the standard IMDB-WIKI cleaning, split by gender; drop counts by reason."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from dareg import hashes, params, shards, wiki
from dareg.cli import run
from dareg.io import write_csv, write_json

log = logging.getLogger("clean_wiki")


def with_shards(kept, index):
    """Each kept entry's shard (relative to the raw folder, as `path` is), offset, size and
    sha256, from the shards' index (which holds every kept entry: clean checked that): what the
    cache stage reads and what makes it rebuild when an image changes."""
    found = index.set_index("member").loc[kept["path"]]
    return kept.assign(shard=found["shard"].to_numpy(),
                       offset=found["offset"].to_numpy(np.int64),
                       size=found["size"].to_numpy(np.int64), sha256=found["sha256"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True,
                        help="data/raw/wiki: wiki.mat (or imdb.mat), SHA256SUMS, shards/")
    parser.add_argument("--out", type=Path, required=True, help="folder for female.csv, male.csv")
    parser.add_argument("--metrics", type=Path, required=True, help="counts JSON to write")
    args = parser.parse_args()
    cfg = params.load().clean_wiki
    entries = wiki.load_mat(wiki.mat_file(args.raw))
    hashes.read_sums(args.raw)  # fetch_wiki finished the folder (this file is its last word)
    index = shards.read_index(args.raw)
    kept, counts = wiki.clean(entries, cfg, set(index["member"]), str(shards.index_path(args.raw)))
    kept = with_shards(kept, index)
    for gender in ("female", "male"):
        write_csv(args.out / f"{gender}.csv", kept[kept["gender"] == gender])
    write_json(args.metrics, counts)
    dropped = ", ".join(f"{reason} {n}" for reason, n in counts["dropped"].items() if n)
    log.info("%d entries: kept %d female, %d male; dropped %s", counts["entries"],
             counts["kept"]["female"], counts["kept"]["male"], dropped or "none")


if __name__ == "__main__":
    run(main)
