"""How long clean_wiki takes on metadata of the real sizes: loadmat, then the cleaning after it.

Synthetic files in the exact layout (the demo's generator, with its dirt): wiki.mat with 62,328
entries (wiki_crop) and imdb.mat with 460,723 (imdb_crop; struct `imdb` with celeb_id). The
cleaning is timed twice: rules only, and with the stage's check that every image is in the raw
folder (reading a shards' index that lists every entry's image, then the set lookup). Best of --repeat runs; prints a Markdown table.

    python benchmarks/wiki_clean.py
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dareg import params, shards, wiki
from dareg.demo.faces import metadata_mat

SIZES = {"wiki": 62_328, "imdb": 460_723}
RULES = params.CleanWiki(min_face_score=1.0, single_face=True, age_min=0, age_max=100,
                         missing_images="drop")


def best_of(repeat: int, task) -> tuple[float, object]:
    """The shortest wall time of `repeat` calls of `task`, and its last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = task()
        times.append(time.perf_counter() - start)
    return min(times), result


def write_index(root: Path, paths: np.ndarray) -> None:
    """A shards' index listing every path, as fetch_wiki leaves it (dareg.shards)."""
    (root / shards.FOLDER).mkdir(exist_ok=True)
    pd.DataFrame({"member": paths, "shard": "shards/wiki-000000.tar", "offset": 512, "size": 10_000,
                  "sha256": "0" * 64}).to_csv(shards.index_path(root), index=False)


def measure(struct: str, entries: int, folder: Path, repeat: int) -> dict:
    mat = folder / f"{struct}.mat"
    mat.write_bytes(metadata_mat(entries, seed=0, struct=struct))
    load_s, loaded = best_of(repeat, lambda: wiki.read_struct(mat))
    rules_s, (kept, _) = best_of(repeat, lambda: wiki.clean(wiki.table(loaded, mat), RULES))
    write_index(folder, wiki.table(loaded, mat)["full_path"].to_numpy())
    disk_s, (kept_disk, counts) = best_of(repeat, lambda: wiki.clean(
        wiki.table(loaded, mat), RULES, set(shards.read_index(folder)["member"])))
    assert len(kept_disk) == len(kept) and counts["entries"] == entries
    return {"file": f"{struct}.mat", "entries": entries, "MB": mat.stat().st_size / 1e6,
            "loadmat_s": load_s, "clean_s": rules_s, "clean_with_images_s": disk_s,
            "kept": counts["kept"]["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for struct, entries in SIZES.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(struct, entries, Path(tmp), args.repeat))
    print("| file | entries | size | loadmat | cleaning after loadmat | same, images checked "
          "in the shards' index | kept |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['entries']:,} | {r['MB']:.0f} MB | {r['loadmat_s']:.2f} s | "
              f"{r['clean_s']:.2f} s | {r['clean_with_images_s']:.2f} s | {r['kept']:,} |")


if __name__ == "__main__":
    main()
