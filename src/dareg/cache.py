"""Image cache: decode and resize every image once into a uint8 array (N, size, size, 3) on disk.

Memory grows with the chunk, not with the dataset: worker processes (one per available core)
decode chunks of images, JPEGs at a reduced size where the decoder can (draft mode), and the
parent appends each chunk's bytes to the .npy file after its header. Plain writes, not a
memory map, so written rows leave the process (a memory map's dirty pages count in its RSS).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dareg.errors import DataError
from dareg.io import atomic_path


def load_square(path: str, size: int) -> np.ndarray:
    """Decode `path`, center-crop to a square and resize to size x size RGB uint8."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 1/2, 1/4, 1/8
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot decode image ({err}); remove it from the raw data "
                        f"or rerun the scrape/fetch stage") from None


def _load_many(args: tuple[list[str], int]) -> np.ndarray:
    paths, size = args
    return np.stack([load_square(p, size) for p in paths]) if paths else np.zeros((0, size, size, 3), np.uint8)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build(paths: list[str], size: int, out: Path, workers: int | None = None,
          chunk: int = 64, desc: str = "cache") -> None:
    """Write images `paths` as one (N, size, size, 3) uint8 .npy at `out`, atomically."""
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(paths), size, size, 3)}
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        with ProcessPoolExecutor(workers or available_cores()) as pool, \
                tqdm(total=len(paths), desc=desc, unit="img") as bar:
            for block in pool.map(_load_many, [(c, size) for c in chunks]):
                f.write(np.ascontiguousarray(block).data)
                bar.update(len(block))
