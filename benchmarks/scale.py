"""Benchmark: DVC at the real datasets' size, 60,000 small JPEGs tracked as one directory output.

A temporary project mirrors the pipeline's layout: a stage writes data/raw/wiki (NN/*.jpg, as
IMDB-WIKI's wiki_crop) as ONE directory output, and a downstream stage depends on that folder.
Times `dvc status`, a no-op `dvc repro`, `dvc push` and `dvc pull` (into an empty cache and
workspace, as a team member's fresh clone) against a local folder remote:
    python benchmarks/scale.py                     # 60,000 images
    python benchmarks/scale.py --layout manifest --cache-type hardlink
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import env  # noqa: E402  (the stages' environment: this venv on PATH)

MAKE_RAW = '''"""Write N small distinct JPEGs into NN/ subfolders of the output folder."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

out, count = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
names = []
for i in range(count):
    folder = out / f"{i % 100:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smooth once upscaled: ~2 KB each
    Image.fromarray(small).resize((80, 80), Image.BILINEAR).save(folder / f"{i}_crop.jpg", quality=90)
    names.append(f"{i % 100:02d}/{i}_crop.jpg")
if len(sys.argv) > 3:  # the manifest layout: a small file listing what the folder holds
    Path(sys.argv[3]).write_text("\\n".join(names) + "\\n")
'''

INDEX = '''"""List the images of a folder into a CSV (a stand-in for clean_wiki/labels)."""
import sys
from pathlib import Path

names = sorted(str(p.relative_to(sys.argv[1])) for p in Path(sys.argv[1]).rglob("*.jpg"))
Path(sys.argv[2]).write_text("image\\n" + "\\n".join(names) + "\\n")
'''

DVC_YAML = {  # folder: downstream stages depend on the image folder, as dvc.yaml does today
    "folder": '''stages:
  fetch:
    cmd: python make_raw.py data/raw/wiki {images}
    deps: [make_raw.py]
    outs: [data/raw/wiki]
  index:
    cmd: python index.py data/raw/wiki data/index.csv
    deps: [index.py, data/raw/wiki]
    outs: [data/index.csv]
''',  # manifest: the producing stage also writes a small manifest; downstream depends on that
    "manifest": '''stages:
  fetch:
    cmd: python make_raw.py data/raw/wiki {images} data/raw/wiki.manifest
    deps: [make_raw.py]
    outs: [data/raw/wiki, data/raw/wiki.manifest]
  index:
    cmd: python index.py data/raw/wiki data/index.csv
    deps: [index.py, data/raw/wiki.manifest]
    outs: [data/index.csv]
'''}


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run a command; returns (seconds, output); a failure stops the benchmark with its output."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def make_project(repo: Path, remote: Path, images: int, cache_type: str, layout: str) -> None:
    (repo / "make_raw.py").write_text(MAKE_RAW)
    (repo / "index.py").write_text(INDEX)
    (repo / "dvc.yaml").write_text(DVC_YAML[layout].format(images=images))
    (repo / ".gitignore").write_text("/data/\n")
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"],
                 ["dvc", "config", "core.analytics", "false"],
                 ["dvc", "config", "cache.type", cache_type],
                 ["dvc", "remote", "add", "-d", "team", str(remote)]):
        timed(args, repo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--cache-type", default="reflink,copy", help="DVC's cache.type")
    parser.add_argument("--layout", choices=sorted(DVC_YAML), default="folder",
                        help="what the downstream stage depends on: the image folder or a manifest")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dareg-scale-"))
    repo, remote = work / "repo", work / "remote"
    repo.mkdir()
    try:
        make_project(repo, remote, args.images, args.cache_type, args.layout)
        figures = {"dvc repro (writes and hashes the images)": timed(["dvc", "repro"], repo)[0]}
        figures["dvc status"], status = timed(["dvc", "status"], repo)
        figures["dvc repro (no-op)"], noop = timed(["dvc", "repro"], repo)
        assert "Running stage" not in noop and "up to date" in status, noop + status
        figures["dvc push (to an empty local remote)"] = timed(["dvc", "push"], repo)[0]
        shutil.rmtree(repo / ".dvc" / "cache")
        shutil.rmtree(repo / "data")
        figures["dvc pull (empty cache and workspace)"] = timed(["dvc", "pull"], repo)[0]
        figures["dvc repro (first no-op after the pull)"], noop = timed(["dvc", "repro"], repo)
        assert "Running stage" not in noop, noop
        figures["dvc repro (next no-op)"] = timed(["dvc", "repro"], repo)[0]
        files = sum(1 for _ in (repo / "data" / "raw" / "wiki").rglob("*.jpg"))
        size = sum(p.stat().st_size for p in (repo / "data" / "raw" / "wiki").rglob("*.jpg"))
        print(f"{files} JPEGs, {size / 2**20:.0f} MiB, one directory output; "
              f"layout {args.layout}; cache.type {args.cache_type}")
        for what, seconds in figures.items():
            print(f"{what:45s} {seconds:8.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
