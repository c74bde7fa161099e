"""Image cache: decode and resize every image once into a uint8 array (N, size, size, 3) on disk.

Reading: the raw images are members of tar shards (dareg.shards); each worker reads a member's
bytes at its offset (one pread, no extraction) and checks their sha256 before decoding.
Decoding: each image is read once. JPEGs go to simplejpeg (libjpeg-turbo), which scales in the
DCT domain by any n/8 and so decodes straight to the smallest scale whose short side is still at
least `size` (a 250 px photo at 5/8, 157 px, for size 128). Other formats, and JPEGs simplejpeg
rejects (its strict mode refuses some damage that Pillow tolerates), go to Pillow (JPEG draft
mode: 1/2, 1/4, 1/8 only). Either way the center square, located in the original's coordinates
(a scaled decode rounds its size up), is then resized to `size` by Pillow's antialiased bilinear
filter: within about one grey level of a full-size decode (tests/test_cache.py).

Memory grows with the chunk, not with the dataset: worker processes (one per available core)
each decode a chunk of images and write its rows into the .npy file at the chunk's own offset,
so rows never travel back through the parent. Plain writes, not a memory map, so written rows
leave the process (a memory map's dirty pages count in its RSS).
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

try:  # libjpeg-turbo's DCT-domain scaling; without it (a bare GPU machine) Pillow decodes all
    import simplejpeg
except ImportError:  # pragma: no cover - the project's install has it
    simplejpeg = None
from tqdm import tqdm

from dareg import shards
from dareg.errors import DataError
from dareg.hashes import sha256_bytes
from dareg.io import atomic_path

JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True, slots=True)  # slots: 60,000 of them stay small
class Member:
    """An image inside a tar shard (dareg.shards): its bytes are `size` at `offset` of `shard`;
    `sha256` is checked on the bytes read; `name` (its image name) is for messages."""

    shard: str
    offset: int
    size: int
    sha256: str
    name: str


def load_square(path: str, size: int) -> np.ndarray:
    """Decode the file `path`, center-crop to a square and resize to size x size RGB uint8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read image ({err}); remove it from the raw data "
                        f"or rerun the scrape/fetch stage") from None
    return square(data, size, path)


def load_member(member: Member, size: int, reader: shards.Reader | None = None) -> np.ndarray:
    """The image of a shard member, read by offset and checked against its sha256."""
    data = (reader.read if reader else shards.read_member)(member.shard, member.offset, member.size)
    if sha256_bytes(data) != member.sha256:
        raise DataError(f"{member.shard}: the bytes of {member.name} do not match its sha256 (the "
                        f"shard changed after the tables were made); run `dvc repro` (or `dvc "
                        f"pull`) to bring them together")
    return square(data, size, f"{member.name} (in {member.shard})")


def square(data: bytes, size: int, name: str) -> np.ndarray:
    """Encoded image bytes to size x size RGB uint8: decode, center square, resize."""
    try:
        img, (width, height) = _decode(data, size)
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
        return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise DataError(f"{name}: cannot decode image ({err}); remove it from the raw data "
                        f"or rerun the scrape/fetch stage") from None


def _decode(data: bytes, size: int) -> tuple[Image.Image, tuple[float, float]]:
    """An RGB image from file bytes, decoded as small as the format allows with short side >= size.

    Also returns the original's (width, height) in the decoded image's pixels: a scaled decode
    rounds its size up, so its last row and column may be partly beyond the original's edge.
    """
    # also CMYK and grayscale JPEGs: libjpeg-turbo converts them
    if simplejpeg is not None and data.startswith(JPEG_MAGIC):
        try:
            return _decode_turbo(data, size)
        except ValueError:
            pass  # libjpeg-turbo refuses it (e.g. stray bytes): Pillow decodes it or says why
    img = Image.open(io.BytesIO(data))
    drafted = img.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 1/2, 1/4, 1/8
    extent = drafted[1][2:] if drafted else img.size
    return img.convert("RGB"), extent


def _decode_turbo(data: bytes, size: int) -> tuple[Image.Image, tuple[float, float]]:
    """simplejpeg's decode at the smallest n/8 scale that keeps both sides >= size (see `_decode`)."""
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    array = simplejpeg.decode_jpeg(data, "RGB", min_width=size, min_height=size)
    eighths = next(n for n in range(8, 0, -1) if -(-width * n // 8) == array.shape[1])
    # frombuffer shares the decoded array's memory (fromarray would copy it: ~15% of the time)
    img = Image.frombuffer("RGB", (array.shape[1], array.shape[0]), array, "raw", "RGB", 0, 1)
    return img, (width * eighths / 8, height * eighths / 8)


def _write_rows(args: tuple[Path, int, list, int]) -> int:
    """Worker: decode `sources` (file paths or shard Members) and write their rows into the file
    `out` at byte `offset`."""
    out, offset, sources, size = args
    rows = np.empty((len(sources), size, size, 3), np.uint8)
    with shards.Reader() as reader:  # each shard opened once per chunk
        for i, source in enumerate(sources):
            rows[i] = (load_member(source, size, reader) if isinstance(source, Member)
                       else load_square(source, size))
    with open(out, "r+b") as f:
        f.seek(offset)
        f.write(rows.data)
    return len(sources)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build(paths: list, size: int, out: Path, workers: int | None = None,
          chunk: int = 64, desc: str = "cache") -> None:
    """Write images `paths` (file paths, or shard Members read by offset) as one
    (N, size, size, 3) uint8 .npy at `out`, atomically."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(paths), size, size, 3)}
    row = size * size * 3
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            start = f.tell()
            f.truncate(start + len(paths) * row)
        jobs = [(tmp, start + i * row, paths[i:i + chunk], size) for i in range(0, len(paths), chunk)]
        with ProcessPoolExecutor(workers or available_cores()) as pool, \
                tqdm(total=len(paths), desc=desc, unit="img") as bar:
            try:
                for count in pool.map(_write_rows, jobs):
                    bar.update(count)
            except BaseException:  # an unreadable image (or Ctrl-C): skip the chunks not started
                pool.shutdown(cancel_futures=True)
                raise
