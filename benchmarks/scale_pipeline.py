"""Benchmark: the real pipeline (this dvc.yaml) with datasets of the real sizes in place, then
`dvc status` and a no-op `dvc repro` timed: 62,328 Wikipedia entries (about 60,000 crops on
disk), 10,000 Reddit posts and 12,000 Flickr photos, all from the offline demo generators.

    python benchmarks/scale_pipeline.py                 # about 10 minutes on 2 cores
    python benchmarks/scale_pipeline.py --wiki 20000    # smaller
    python benchmarks/scale_pipeline.py --keep /tmp/scale   # keep the copy; a rerun only re-times

Runs in a fresh copy of the repository (demo profile, larger demo sources); the working tree is
untouched. The full `dvc repro` is timed too, but most of it is generating and scraping the
synthetic data; the figures this script is for are the no-op ones.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from dareg import profile
from demo_repro import copy_project, run_sampled  # noqa: E402  (benchmarks/ is on sys.path)


def sized_overlay(path: Path, wiki: int, reddit: int, flickr: int) -> Path:
    """A params overlay with the real datasets' sizes for the demo sources."""
    path.write_text(f"wiki:\n  demo_entries: {wiki}\nreddit:\n  demo_posts: {reddit}\n"
                    f"  limit: {reddit}\nflickr:\n  demo_photos: {flickr}\n"
                    f"  calls_per_second: 20.0\n")
    return path


def timed(repo: Path, cmd: list[str], repeats: int) -> list[float]:
    return [run_sampled(cmd, repo)[0] for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wiki", type=int, default=62_328, help="entries in wiki.mat")
    parser.add_argument("--reddit", type=int, default=10_000, help="Reddit posts")
    parser.add_argument("--flickr", type=int, default=12_000, help="Flickr photos")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it; if it already "
                        "holds a run, only time status and the no-op again")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dareg-scale-"))
    repo = work / "repo"
    try:
        if not (repo / "dvc.lock").exists():
            repo.mkdir(parents=True, exist_ok=True)
            copy_project(repo, None)
            overlay = sized_overlay(work / "sizes.yaml", args.wiki, args.reddit, args.flickr)
            profile.apply(repo / "params.yaml", overlay, repo / "params.yaml")
            full, peak, _ = run_sampled(["dvc", "repro"], repo)
            print(f"dvc repro (full, data generated and scraped): {full:7.1f} s, "
                  f"peak {peak / 2**30:.2f} GiB")
        files = {src: sum(1 for p in (repo / "data/raw" / src).rglob("*") if p.is_file())
                 for src in ("wiki", "reddit", "flickr")}
        status = timed(repo, ["dvc", "status"], args.repeats)
        noop = timed(repo, ["dvc", "repro"], args.repeats)
        print(f"cpus: {os.cpu_count()}; files in data/raw: {files} ({sum(files.values()):,} in all)")
        for name, runs in (("dvc status", status), ("dvc repro (no-op)", noop)):
            print(f"{name:18s} median {statistics.median(runs):5.2f} s  "
                  f"runs {', '.join(f'{t:.2f}' for t in runs)}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
