"""Benchmark: the shard size swept. DVC's costs and the cache build's rate at several shard sizes,
on the same synthetic stand-in for IMDB-WIKI's Wikipedia crops (62,328 JPEGs of 250x250, about
800 MB like wiki_crop.tar's 811 MB).

For each size, the images are packed by dareg.shards.ShardWriter into data/raw/wiki of a small
DVC project where that folder is ONE `dvc add` output. Timed: the pack, `dvc add`, `dvc status`
(median of --repeats); in --transfer-repeats rounds that alternate the sizes (medians), `dvc
push` to an empty local folder remote and `dvc pull` into a fresh `git clone` (the disk synced
before each, so neither waits on the writes of the step before); then one changed image (the
middle crop re-encoded at quality 95, so its size changes, as a fixed crop would): re-pack +
`dvc add`, and `dvc push` to the remote holding the rest, with the bytes it uploaded and the
shards that changed. Last, the image cache build from each size's shards on every core
(`dareg.cache.build` with `cache.Members.from_columns`, as stages/cache.py does; in its own
process, as benchmarks/cache_build.py measures it), --cache-repeats rounds alternating the sizes,
each size's fastest kept. The load average before and after is printed: the machine is shared.

    python benchmarks/shard_size.py                                # about 5 minutes on 2 cores
    python benchmarks/shard_size.py --images 5000 --sizes 1 4 16 --cache-repeats 1   # quick
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from dareg import cache, shards
from cache_build import MEMBER_ARRAYS, measure  # noqa: E402  (benchmarks/ on sys.path)
from scale import timed  # noqa: E402

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@dareg.invalid"]
WIKI = Path("data/raw/wiki")


def make_crop(index: int, side: int = 250, quality: int = 85) -> tuple[str, bytes]:
    """One distinct photo-like JPEG under an IMDB-WIKI name: smooth random colours plus fine noise
    of a random strength, so sizes vary (9-15 KB, 12.9 KB on average, as wiki_crop's 13 KB)."""
    rng = np.random.default_rng(index)
    amplitude = int(rng.integers(1, 9))
    coarse = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
    noisy = np.asarray(coarse, np.int16) + rng.integers(-amplitude, amplitude + 1, (side, side, 3), dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return f"{index % 100:02d}/{index}_1981-05-05_2009.jpg", buffer.getvalue()


def make_crops(count: int) -> list[tuple[str, bytes]]:
    with ProcessPoolExecutor(cache.available_cores()) as pool:
        return list(pool.map(make_crop, range(count), chunksize=256))


def changed(crops: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The same crops with the middle one re-encoded at quality 95 (its bytes and size change)."""
    middle = len(crops) // 2
    buffer = io.BytesIO()
    Image.open(io.BytesIO(crops[middle][1])).save(buffer, format="JPEG", quality=95)
    return [*crops[:middle], (crops[middle][0], buffer.getvalue()), *crops[middle + 1:]]


def pack(crops: list[tuple[str, bytes]], folder: Path, max_bytes: int) -> tuple[float, list[dict]]:
    """Seconds to pack `crops` into folder/shards (index written, every shard fsynced) and the rows."""
    start = time.perf_counter()
    with shards.ShardWriter(folder, "wiki", max_bytes) as writer:
        rows = [writer.add(name, data) for name, data in crops]
    return time.perf_counter() - start, rows


def make_project(repo: Path) -> None:
    repo.mkdir(parents=True)
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        timed(args, repo)


def add_and_commit(repo: Path, message: str) -> tuple[float, dict[str, str]]:
    """`dvc add` the wiki folder and commit its .dvc file; seconds, and each file's md5 (from the
    folder's .dir object in the cache)."""
    seconds = timed(["dvc", "add", str(WIKI)], repo)[0]
    timed([*GIT, "add", "-A"], repo)
    timed([*GIT, "commit", "-qm", message], repo)
    md5 = yaml.safe_load((repo / f"{WIKI}.dvc").read_text())["outs"][0]["md5"]  # "<hex>.dir"
    listing = json.loads((repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_text())
    return seconds, {entry["relpath"]: entry["md5"] for entry in listing}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prepare(work: Path, crops: list, mib: int, repeats: int) -> tuple[dict, dict[str, str]]:
    """A project at one shard size, packed, added and committed; its figures and file md5s."""
    repo = work / f"{mib}MiB"
    make_project(repo)
    out = {}
    out["pack s"], _ = pack(crops, repo / WIKI, mib << 20)
    out["shards"] = len(list((repo / WIKI / shards.FOLDER).glob("*.tar")))
    out["index.csv MiB"] = shards.index_path(repo / WIKI).stat().st_size / 2**20
    out["dvc add s"], md5s = add_and_commit(repo, "packed")
    out["dvc status s"] = statistics.median(timed(["dvc", "status"], repo)[0] for _ in range(repeats))
    return out, md5s


def transfer(work: Path, mib: int, number: int) -> dict:
    """One round: `dvc push` to an empty folder remote, `dvc pull` into a fresh clone (the disk
    synced first, so each starts with no other writes pending)."""
    repo, remote, clone = work / f"{mib}MiB", work / f"remote-{mib}-{number}", work / f"clone-{mib}"
    shutil.rmtree(work / f"remote-{mib}-{number - 1}", ignore_errors=True)  # the last round's
    timed(["dvc", "remote", "add", "-f", "-d", "team", str(remote)], repo)
    os.sync()
    out = {"dvc push s": timed(["dvc", "push"], repo)[0]}
    timed(["git", "clone", "-q", str(repo), str(clone)], work)
    timed(["dvc", "remote", "add", "-f", "-d", "team", str(remote)], clone)
    os.sync()
    out["dvc pull s"] = timed(["dvc", "pull"], clone)[0]
    assert folder_bytes(clone / WIKI) == folder_bytes(repo / WIKI), "the pull is incomplete"
    shutil.rmtree(clone)
    return out


def edit(work: Path, crops: list, mib: int, md5s: dict[str, str], number: int) -> tuple[dict, list]:
    """One crop changed: re-pack + `dvc add`, then `dvc push` to the remote that holds the rest;
    the figures and the new index rows (the shards left for the cache build)."""
    repo, remote = work / f"{mib}MiB", work / f"remote-{mib}-{number}"
    pushed = folder_bytes(remote)
    repack, rows = pack(changed(crops), repo / WIKI, mib << 20)
    add, after = add_and_commit(repo, "one image changed")
    out = {"edit: re-pack + add s": repack + add,
           "edit: shards changed": sum(md5s.get(f) != md5 for f, md5 in after.items() if f.endswith(".tar"))}
    os.sync()
    out["edit: dvc push s"] = timed(["dvc", "push"], repo)[0]
    out["edit: pushed MiB"] = (folder_bytes(remote) - pushed) / 2**20
    shutil.rmtree(remote)
    shutil.rmtree(repo / ".dvc" / "cache")  # the workspace's shards stay for the cache build
    return out, rows


def measure_dvc(work: Path, crops: list, sizes: list[int], repeats: int, transfer_repeats: int
                ) -> tuple[dict[int, dict], dict[int, list], dict[int, Path]]:
    """Every DVC figure of every size (push and pull the medians of rounds alternating the
    sizes, so load elsewhere hits all alike), the rounds, and the members left for the cache build."""
    figures, md5s = {}, {}
    for mib in sizes:
        figures[mib], md5s[mib] = prepare(work, crops, mib, repeats)
    rounds = {mib: [] for mib in sizes}
    for number in range(transfer_repeats):
        for mib in sizes:
            rounds[mib].append(transfer(work, mib, number))
    listings = {}
    for mib in sizes:
        figures[mib].update({k: statistics.median(r[k] for r in rounds[mib]) for k in rounds[mib][0]})
        changes, rows = edit(work, crops, mib, md5s[mib], transfer_repeats - 1)
        figures[mib].update(changes)
        listings[mib] = members_listing(rows, work / f"{mib}MiB" / WIKI)
        print(f"{mib} MiB: {figures[mib]}", flush=True)
    return figures, rounds, listings


def members_listing(rows: list[dict], folder: Path) -> Path:
    """The shards' members as cache_build.py's measured process loads them (cache.Members' arrays)."""
    members = cache.Members.from_columns([str(folder / r["shard"]) for r in rows],
                                         *([r[k] for r in rows] for k in ["offset", "size", "sha256", "member"]))
    listing = folder / "members.npz"
    np.savez(listing, shards=np.array(members.shards), **{k: getattr(members, k) for k in MEMBER_ARRAYS})
    return listing


def measure_cache(work: Path, listings: dict[int, Path], count: int, size: int, repeats: int
                  ) -> dict[int, list]:
    """Images a second of each size's cache build of `count` images, every round (the rounds
    alternate the sizes)."""
    rates = {mib: [] for mib in listings}
    for _ in range(repeats):
        for mib, listing in listings.items():
            rates[mib].append(count / measure("shards", listing, size, work / "cache.npy")[0])
    return rates


def report(figures: dict[int, dict], rounds: dict[int, list], rates: dict[int, list], crops: list,
           load: tuple) -> None:
    total = sum(len(data) for _, data in crops)
    print(f"\n{len(crops):,} JPEGs, {total / 2**20:.0f} MiB, {cache.available_cores()} cores; "
          f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load)}, "
          f"after {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'shard size':24s}" + "".join(f"{f'{mib} MiB':>10s}" for mib in figures))
    for name in next(iter(figures.values())):
        print(f"{name:24s}" + "".join(f"{f[name]:10d}" if isinstance(f[name], int) else f"{f[name]:10.2f}"
                                      for f in figures.values()))
    print(f"{'cache build images/s':24s}" + "".join(f"{max(r):10.0f}" for r in rates.values()))
    for mib in figures:
        push, pull = ([f"{r[k]:.2f}" for r in rounds[mib]] for k in ["dvc push s", "dvc pull s"])
        print(f"{mib:5d} MiB rounds: push {', '.join(push)} s; pull {', '.join(pull)} s; "
              f"cache build {', '.join(f'{x:.0f}' for x in rates[mib])} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=62_328, help="crops (wiki_crop has 62,328)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024], help="MiB a shard")
    parser.add_argument("--repeats", type=int, default=3, help="runs of `dvc status` (median)")
    parser.add_argument("--transfer-repeats", type=int, default=3,
                        help="rounds of push and pull, the sizes alternating (medians)")
    parser.add_argument("--cache-repeats", type=int, default=2, help="rounds of cache builds (fastest)")
    parser.add_argument("--size", type=int, default=128, help="the cache's image size")
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="dareg-shard-size-"))
    try:
        crops = make_crops(args.images)
        print(f"{len(crops):,} crops made in {time.perf_counter() - started:.1f} s", flush=True)
        figures, rounds, listings = measure_dvc(work, crops, args.sizes, args.repeats,
                                                args.transfer_repeats)
        rates = measure_cache(work, listings, len(crops), args.size, args.cache_repeats)
        report(figures, rounds, rates, crops, load)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
