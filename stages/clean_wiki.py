"""Stage clean_wiki: the standard IMDB-WIKI cleaning, split by gender; drop counts by reason."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dareg import hashes, params, wiki
from dareg.cli import run
from dareg.errors import DataError
from dareg.io import write_csv, write_json

log = logging.getLogger("clean_wiki")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True,
                        help="wiki_crop folder (wiki.mat, NN/) or imdb_crop folder (imdb.mat)")
    parser.add_argument("--out", type=Path, required=True, help="folder for female.csv, male.csv")
    parser.add_argument("--metrics", type=Path, required=True, help="counts JSON to write")
    args = parser.parse_args()
    cfg = params.load().clean_wiki
    entries = wiki.load_mat(wiki.mat_file(args.raw))
    kept, counts = wiki.clean(entries, cfg, image_root=args.raw)
    kept = kept.assign(sha256=kept["path"].map(hashes.read_sums(args.raw)))  # images' content
    if kept["sha256"].isna().any():
        missing = kept["path"][kept["sha256"].isna()].iloc[0]
        raise DataError(f"{args.raw / hashes.SUMS}: lists no hash for {missing} (the folder "
                        f"changed after fetch_wiki wrote it); run `dvc repro -f fetch_wiki`")
    for gender in ("female", "male"):
        write_csv(args.out / f"{gender}.csv", kept[kept["gender"] == gender])
    write_json(args.metrics, counts)
    dropped = ", ".join(f"{reason} {n}" for reason, n in counts["dropped"].items() if n)
    log.info("%d entries: kept %d female, %d male; dropped %s", counts["entries"],
             counts["kept"]["female"], counts["kept"]["male"], dropped or "none")


if __name__ == "__main__":
    run(main)
