"""Benchmark: the cache's resize (Pillow's antialiased bilinear) against the alternatives at hand,
one core, on the same 250 px photo-like JPEGs as benchmarks/cache_build.py.

Each method takes the JPEG bytes to the 128 x 128 RGB rows the cache stores, decoding with
simplejpeg at the cache's n/8 scale; the figures are microseconds an image (best of 5 passes) and
the mean absolute difference from the full-size reference (a full decode resized by Pillow, what
tests/test_cache.py compares against; they allow 1.5 grey levels). Square images only: torch's
resize takes no box, so it cannot crop at the fractional offsets non-square images need.
Needs the bench extra (opencv):
    python benchmarks/resize_alternatives.py
    python benchmarks/resize_alternatives.py --images 100
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cache_build import write_jpeg  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from dareg import cache


def reference(data: bytes, size: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.BILINEAR))


def methods(size: int) -> dict:
    import cv2
    import simplejpeg
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    def torch_rows(data: bytes) -> bytes:
        array, (side, _) = cache.decode_turbo_array(data, size)
        x = torch.from_numpy(array).permute(2, 0, 1)[None]
        y = torch.nn.functional.interpolate(x, scale_factor=size / side, mode="bilinear",
                                            antialias=True, recompute_scale_factor=False)
        return y[0, :, :size, :size].permute(1, 2, 0).numpy().tobytes()

    def cv2_rows(flag):
        def rows(data: bytes) -> bytes:
            array, (side, _) = cache.decode_turbo_array(data, size)
            whole = int(side)  # cv2 takes no fractional box: the whole decoded pixels
            return cv2.resize(array[:whole, :whole], (size, size), interpolation=flag).tobytes()
        return rows

    return {
        "simplejpeg decode alone (no resize)":
            lambda d: simplejpeg.decode_jpeg(d, "RGB", min_width=size, min_height=size),
        "the cache: Pillow's antialiased bilinear": lambda d: cache._square(d, size, "x").tobytes(),
        "torch interpolate, bilinear, antialias": torch_rows,
        "cv2.resize INTER_AREA": cv2_rows(cv2.INTER_AREA),
        "cv2.resize INTER_LINEAR (no antialiasing)": cv2_rows(cv2.INTER_LINEAR),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        datas = [Path(write_jpeg((Path(work) / f"{i}.jpg", i, 250))).read_bytes()
                 for i in range(args.images)]
    refs = [reference(d, args.size).astype(np.float32) for d in datas]
    for name, method in methods(args.size).items():
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            outs = [method(d) for d in datas]
            best = min(best, time.perf_counter() - start)
        shape = (args.size, args.size, 3)
        diffs = [np.abs(np.frombuffer(o, np.uint8).reshape(shape) - r).mean()
                 for o, r in zip(outs, refs) if len(o) == r.size]
        quality = f"{np.mean(diffs):5.2f} grey levels from the reference" if diffs else ""
        print(f"one core: {name:45s} {best / len(datas) * 1e6:7.1f} us an image  {quality}")


if __name__ == "__main__":
    main()
