"""Benchmark: our image cache build (from tar shards, as the pipeline reads them, and from loose
files) against the seed's code path and against the decode-only rate, on the same JPEGs.

The seed's path: `skimage.io.imread` each file, `cv2.resize` it to the training size and store
it in a float64 array of the whole dataset. Ours: `dareg.cache.build` (parallel over the cores;
JPEGs decoded by simplejpeg at a reduced n/8 scale, then Pillow's antialiased bilinear resize;
each worker writes its uint8 rows into the .npy on disk). Each runs in its own process (this
script with --run, which leaves the harness's psutil and demo_repro unimported); the time is that
process's wall time, start-up included; peak memory is its tree's RSS, sampled every 0.1 s (the
pages a forked worker shares with the parent count in both: what `ps` and `top` show). The
decode-only, shards and files runs alternate --repeats times and each keeps its fastest (on a
shared machine the fastest is the one least slowed by others); the seed's runs once.
Needs the bench extra (`pip install -e '.[bench]'`):
    python benchmarks/cache_build.py                          # 10,000 and 60,000 250x250 JPEGs
    python benchmarks/cache_build.py --counts 2000 --size 64 --repeats 1

Each run first prints where a worker's time goes per image on one core (each step alone, on the
first 400 images), then the builds.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dareg import cache, shards
from dareg.hashes import sha256_bytes

MEMBER_ARRAYS = ["shard", "offset", "size", "digest", "name"]  # cache.Members' fields after shards


def write_jpeg(args: tuple[Path, int, int]) -> str:
    """One distinct photo-like JPEG: smooth random colours plus fine noise, `side` pixels square."""
    path, index, side = args
    rng = np.random.default_rng(index)
    coarse = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
    noisy = np.asarray(coarse, np.int16) + rng.integers(-12, 13, (side, side, 3))
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return str(path)


def make_images(folder: Path, count: int, side: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"{i}.jpg", i, side) for i in range(count)]
    with ProcessPoolExecutor(cache.available_cores()) as pool:
        return list(pool.map(write_jpeg, jobs, chunksize=256))


def seed_build(paths: list[str], size: int) -> np.ndarray:
    """The seed's code path: the whole dataset as float64 in memory."""
    import cv2
    from skimage import io
    images = np.zeros((len(paths), size, size, 3))
    for i, path in enumerate(paths):
        images[i] = cv2.resize(io.imread(path), (size, size))
    return images


def _decode_only(args: tuple[list[str], int]) -> int:
    import simplejpeg
    paths, size = args
    for path in paths:
        with open(path, "rb") as f:
            simplejpeg.decode_jpeg(f.read(), "RGB", min_width=size, min_height=size)
    return len(paths)


def run_one(method: str, listing: Path, size: int, out: Path) -> None:
    """The measured process: build one cache with `method` from the paths listed in `listing`
    (for `shards`: the members' arrays, an .npz of cache.Members)."""
    if method == "shards":
        return cache.build(load_members(listing), size, out)
    lines = listing.read_text().splitlines()
    if method == "seed":
        np.save(out, seed_build(lines, size))
    elif method == "files":
        cache.build(lines, size, out)
    else:  # decode: the JPEG decode alone at the same n/8 scale, on every core (the ceiling)
        chunks = [(lines[i:i + 64], size) for i in range(0, len(lines), 64)]
        with ProcessPoolExecutor(cache.available_cores()) as pool:
            sum(pool.map(_decode_only, chunks))
        np.save(out, np.zeros(1))


def pack(paths: list[str], folder: Path) -> Path:
    """The JPEGs packed into tar shards as the producers pack them; their cache.Members saved
    as arrays (what the stage builds from a split's columns), to load without a row of objects."""
    with shards.ShardWriter(folder, "bench") as writer:
        rows = [writer.add(Path(p).name, Path(p).read_bytes()) for p in paths]
    members = cache.Members.from_columns([str(folder / r["shard"]) for r in rows],
                                         *([r[k] for r in rows] for k in ["offset", "size", "sha256", "member"]))
    listing = folder / "members.npz"
    np.savez(listing, shards=np.array(members.shards),
             **{k: getattr(members, k) for k in MEMBER_ARRAYS})
    return listing


def load_members(listing: Path) -> cache.Members:
    with np.load(listing) as arrays:
        return cache.Members(tuple(map(str, arrays["shards"])), *(arrays[k] for k in MEMBER_ARRAYS))


def measure(method: str, listing: Path, size: int, out: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS of one measured process (it imports nothing of the harness's)."""
    from demo_repro import run_sampled  # benchmarks/ is on sys.path when run as a script
    cmd = [sys.executable, __file__, "--run", method, "--listing", str(listing),
           "--size", str(size), "--out", str(out)]
    seconds, peak, _ = run_sampled(cmd, out.parent)
    out.unlink()
    return seconds, peak


def compare(work: Path, paths: list[str], size: int, repeats: int) -> None:
    listing = work / f"paths-{len(paths)}.txt"
    listing.write_text("\n".join(paths))
    members = pack(paths, work / f"raw-{len(paths)}")
    sources = {"decode": listing, "shards": members, "files": listing}
    runs = {method: [] for method in sources}
    for _ in range(repeats):  # alternating, so a burst of load elsewhere slows all three alike
        for method, source in sources.items():
            runs[method].append(measure(method, source, size, work / f"{method}.npy"))
    # the fastest time and the highest peak of each method's runs
    figures = {method: (min(t for t, _ in times), max(p for _, p in times))
               for method, times in runs.items()}
    seed_bytes = len(paths) * size * size * 3 * 8
    import psutil  # harness only, like demo_repro: not in the measured processes' start-up
    if seed_bytes < 0.7 * psutil.virtual_memory().available:
        figures["seed"] = measure("seed", listing, size, work / "seed.npy")
    for method, (seconds, peak) in figures.items():
        each = ", ".join(f"{t:.2f} s {p / 2**20:.0f} MiB" for t, p in runs.get(method, []))
        print(f"{len(paths):7d} images  {method:6s} {len(paths) / seconds:8.0f} images/s  "
              f"{seconds:7.2f} s  peak {peak / 2**20:6.0f} MiB   runs: {each or 'one'}")
    print(f"{len(paths):7d} images  shards at {figures['decode'][0] / figures['shards'][0]:.0%} of the "
          f"decode-only rate; files at {figures['decode'][0] / figures['files'][0]:.0%}")
    if "seed" in figures:
        print(f"{len(paths):7d} images  speed-up over the seed: shards "
              f"x{figures['seed'][0] / figures['shards'][0]:.1f}, files "
              f"x{figures['seed'][0] / figures['files'][0]:.1f}")
    else:
        print(f"{len(paths):7d} images  seed   not run: its float64 array alone needs "
              f"{seed_bytes / 2**30:.1f} GiB, more than 70% of the free memory")


def per_image_us(step, items: list, rounds: int = 5) -> float:
    """Microseconds a call of `step` takes per item, the best of `rounds` passes (one core)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            step(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def steps(listing: Path, size: int, out: Path) -> None:
    """Where a worker's time goes per image, one core: each step of `cache._write_rows` alone on
    the members in `listing` (a JPEG's path through it), then the whole worker on them."""
    import simplejpeg
    members = load_members(listing)
    with shards.Reader() as reader:
        datas = [reader.read(members.shards[s], int(o), int(n))
                 for s, o, n in zip(members.shard, members.offset, members.size)]
    decoded = [simplejpeg.decode_jpeg(d, "RGB", min_width=size, min_height=size) for d in datas]
    wrapped = [cache._decode_turbo(d, size) for d in datas]  # Pillow images, original extents
    boxes = [(0, 0, min(extent), min(extent)) for _, extent in wrapped]  # square JPEGs: no offset
    resized = [img.resize((size, size), Image.BILINEAR, box=box)
               for (img, _), box in zip(wrapped, boxes)]
    figures = {
        "sha256 of the bytes": per_image_us(sha256_bytes, datas),
        f"simplejpeg decode at the cache's n/8 scale ({decoded[0].shape[1]} px)":
            per_image_us(lambda d: simplejpeg.decode_jpeg(d, "RGB", min_width=size,
                                                          min_height=size), datas),
        "Image.frombuffer (Pillow unpacks RGB into 4-byte pixels)":
            per_image_us(lambda a: Image.frombuffer("RGB", a.shape[1::-1], a, "raw", "RGB", 0, 1),
                         decoded),
        f"Pillow's antialiased bilinear resize to {size}":
            per_image_us(lambda pair: pair[0][0].resize((size, size), Image.BILINEAR, box=pair[1]),
                         list(zip(wrapped, boxes))),
        "tobytes (packed RGB rows for the file)": per_image_us(lambda img: img.tobytes(), resized),
        "(for comparison: simplejpeg's full-size decode)":
            per_image_us(lambda d: simplejpeg.decode_jpeg(d, "RGB"), datas),
    }
    out.write_bytes(b"\0" * (len(datas) * size * size * 3))
    figures["the whole worker (pread, sha256, decode, resize, write)"] = per_image_us(
        lambda chunk: cache._write_rows((out, 0, chunk, size)), [members]) / len(datas)
    for name, us in figures.items():
        print(f"one core: {name:62s} {us:7.1f} us an image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 60_000])
    parser.add_argument("--side", type=int, default=250, help="JPEG width and height")
    parser.add_argument("--size", type=int, default=128, help="training size (the seeds' 128)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each of ours and decode-only")
    parser.add_argument("--run", choices=["files", "shards", "decode", "seed"], help=argparse.SUPPRESS)
    parser.add_argument("--listing", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run_one(args.run, args.listing, args.size, args.out)
    work = Path(tempfile.mkdtemp(prefix="dareg-cache-bench-"))
    try:
        paths = make_images(work / "images", max(args.counts), args.side)
        print(f"{args.side}x{args.side} JPEGs -> {args.size}x{args.size}, "
              f"{cache.available_cores()} cores")
        steps(pack(paths[:400], work / "raw-steps"), args.size, work / "steps.bin")
        for count in sorted(args.counts):
            compare(work, paths[:count], args.size, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
