"""Image cache: decode and resize every image once into a uint8 array (N, size, size, 3) on disk.

Memory stays flat as the dataset grows: rows are streamed into a memory-mapped .npy file.
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


def build(paths: list[str], size: int, out: Path, workers: int | None = None,
          chunk: int = 64, desc: str = "cache") -> None:
    """Write images `paths` as one (N, size, size, 3) uint8 .npy at `out`, atomically."""
    workers = workers or min(4, os.cpu_count() or 1)
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with atomic_path(out) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(len(paths), size, size, 3))
        with ProcessPoolExecutor(workers) as pool, tqdm(total=len(paths), desc=desc, unit="img") as bar:
            start = 0
            for block in pool.map(_load_many, [(c, size) for c in chunks]):
                array[start:start + len(block)] = block
                start += len(block)
                bar.update(len(block))
        array.flush()
        del array
