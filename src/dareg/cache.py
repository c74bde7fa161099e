"""Image cache: decode and resize every image once into a uint8 array (N, size, size, 3) on disk.

Reading: the raw images are members of tar shards (dareg.shards), listed as `Members` (arrays,
one row per image); each worker reads a member's bytes at its offset (one pread, no extraction)
and checks their sha256 before decoding.
Decoding: each image is read once. JPEGs go to simplejpeg (libjpeg-turbo), which scales in the
DCT domain by any n/8 and so decodes straight to the smallest scale whose short side is still at
least `size` (a 250 px photo at 5/8, 157 px, for size 128). Other formats, and JPEGs simplejpeg
rejects (its strict mode refuses some damage that Pillow tolerates), go to Pillow (JPEG draft
mode: 1/2, 1/4, 1/8 only). Either way the center square, located in the original's coordinates
(a scaled decode rounds its size up), is then resized to `size` by Pillow's antialiased bilinear
filter: within about one grey level of a full-size decode (tests/test_cache.py).
Where a worker's time goes, per 250 px JPEG on one core (docs/benchmarks.md): the decode about
56%, Pillow's resize 30%, and sha256, Pillow's unpacking of the decoded pixels, `tobytes` and the
write the rest; the resized pixels go from Pillow's buffer to the file with no array in between.

dSprites (`build_rendered`): no files to decode; each image is rendered from its row (the base
sprite in the task's sprites file, its domain's style, its own seed, the painting: dareg.dsprites)
at 64 x 64 and resized like a photo.

Memory grows with the chunk, not with the dataset: worker processes (one per available core)
each decode a chunk of images and write its rows into the .npy file at the chunk's own offset,
so rows never travel back through the parent; the parent's list of images is a few arrays, not
an object per image. Plain writes, not a memory map, so written rows leave the process (a memory
map's dirty pages count in its RSS).
"""
from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

try:  # libjpeg-turbo's DCT-domain scaling; without it (a bare GPU machine) Pillow decodes all
    import simplejpeg
except ImportError:  # pragma: no cover - the project's install has it
    simplejpeg = None

from dareg import progress, shards
from dareg.errors import DataError
from dareg.hashes import sha256_bytes, sha256_file
from dareg.io import atomic_path

JPEG_MAGIC = b"\xff\xd8"
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, eq=False)
class Members:
    """Images inside tar shards (dareg.shards): image i's bytes are size[i] at offset[i] of
    shards[shard[i]], its sha256 is digest[i] and name[i] (UTF-8) names it in messages.

    Arrays, not an object per image: 52 bytes an image plus its name's length, where a Python
    object with its four strings took about 0.4 KB, in the parent and again in the resident set
    of every worker forked from it; a slice is a chunk, pickled in a few KB to a worker.
    """

    shards: tuple[str, ...]
    shard: np.ndarray  # (N,) int32, index into shards
    offset: np.ndarray  # (N,) int64
    size: np.ndarray  # (N,) int64
    digest: np.ndarray  # (N, 32) uint8
    name: np.ndarray  # (N,) bytes ("S")

    @classmethod
    def from_columns(cls, shard, offset, size, sha256, name) -> "Members":
        """From a table's columns, one value per image: shard paths, offsets, sizes, hex sha256s
        and names."""
        codes: dict[str, int] = {}
        index = np.fromiter((codes.setdefault(os.fspath(s), len(codes)) for s in shard), np.int32)
        names = [str(n) for n in name]
        return cls(tuple(codes), index, np.asarray(offset, np.int64), np.asarray(size, np.int64),
                   _digests(list(sha256), names), np.array([n.encode() for n in names], "S"))

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, rows: slice) -> "Members":
        return Members(self.shards, self.shard[rows], self.offset[rows], self.size[rows],
                       self.digest[rows], self.name[rows])


def _digests(hexes: list, names: list[str]) -> np.ndarray:
    """(N, 32) uint8 sha256 digests from hex strings, or a DataError naming the first bad one."""
    for name, value in zip(names, hexes):
        if not (isinstance(value, str) and len(value) == 64 and HEX_DIGITS.issuperset(value)):
            raise DataError(f"{name}: sha256 {value!r} is not 64 hex digits; rerun the stage that "
                            f"wrote its table (`dvc repro -f`)")
    return np.frombuffer(bytes.fromhex("".join(hexes)), np.uint8).reshape(len(hexes), 32)


def load_square(path: str, size: int) -> np.ndarray:
    """Decode the file `path`, center-crop to a square and resize to size x size RGB uint8."""
    return np.asarray(_square(_read_file(path), size, path), np.uint8)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read image ({err}); remove it from the raw data "
                        f"or rerun the scrape/fetch stage") from None


def _read_member(members: Members, i: int, reader: shards.Reader) -> tuple[bytes, str]:
    """Member i's bytes, checked against its sha256, and its name for messages."""
    shard = members.shards[members.shard[i]]
    data = reader.read(shard, int(members.offset[i]), int(members.size[i]))
    name = members.name[i].decode()
    if sha256_bytes(data) != members.digest[i].tobytes().hex():
        raise DataError(f"{shard}: the bytes of {name} do not match its sha256 (the shard changed "
                        f"after the tables were made); run `dvc repro` (or `dvc pull`) to bring "
                        f"them together")
    return data, f"{name} (in {shard})"


def _square_member(members: Members, i: int, size: int, reader: shards.Reader) -> Image.Image:
    data, name = _read_member(members, i, reader)
    return _square(data, size, name)


def _square(data: bytes, size: int, name: str) -> Image.Image:
    """Decode, center square, resize: a size x size RGB Pillow image."""
    try:
        img, (width, height) = _decode(data, size)
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
    except (OSError, ValueError) as err:
        raise DataError(f"{name}: cannot decode image ({err}); remove it from the raw data "
                        f"or rerun the scrape/fetch stage") from None
    except Image.DecompressionBombError as err:
        reason = str(err).rstrip(".")
        raise DataError(f"{name}: {reason}; remove it from the raw data (a face crop or a photo "
                        f"is far smaller)") from None


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
    img = Image.open(io.BytesIO(data))  # reads the header only
    refuse_bombs(*img.size)
    drafted = img.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 1/2, 1/4, 1/8
    extent = drafted[1][2:] if drafted else img.size
    return img.convert("RGB"), extent


def refuse_bombs(width: int, height: int) -> None:
    """A decompression bomb guard, before any pixel is decoded: images over Pillow's
    MAX_IMAGE_PIXELS (about 89 megapixels), the limit the downloader applies to scraped images,
    raise DecompressionBombError (Pillow itself only warns below twice that, and simplejpeg
    never checks)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise Image.DecompressionBombError(f"{width}x{height} pixels, over the {limit:,} allowed "
                                           f"(a decompression bomb guard)")


def _decode_turbo(data: bytes, size: int) -> tuple[Image.Image, tuple[float, float]]:
    """simplejpeg's decode at the smallest n/8 scale that keeps both sides >= size (see `_decode`)."""
    array, extent = decode_turbo_array(data, size)
    # Pillow unpacks RGB into its own 4-byte pixels (~18 us at 157 px): fromarray would copy first
    img = Image.frombuffer("RGB", (array.shape[1], array.shape[0]), array, "raw", "RGB", 0, 1)
    return img, extent


def decode_turbo_array(data: bytes, size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The (H, W, 3) uint8 array of `_decode_turbo`, and the original's extent in its pixels."""
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    refuse_bombs(width, height)
    array = simplejpeg.decode_jpeg(data, "RGB", min_width=size, min_height=size)
    eighths = next(n for n in range(8, 0, -1) if -(-width * n // 8) == array.shape[1])
    return array, (width * eighths / 8, height * eighths / 8)


def _write_rows(args: tuple[Path, int, Members | list[str], int]) -> int:
    """Worker: decode `images` (shard Members, or file paths) and write their rows into the file
    `out` at byte `offset`: each resized image's bytes straight from Pillow to the file."""
    out, offset, images, size = args
    if isinstance(images, Members):
        with shards.Reader() as reader:  # each shard opened once per chunk
            rows = [_square_member(images, i, size, reader).tobytes() for i in range(len(images))]
    else:
        rows = [_square(_read_file(path), size, path).tobytes() for path in images]
    with open(out, "r+b") as f:
        f.seek(offset)
        f.writelines(rows)
    return len(rows)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build(images: Members | list, size: int, out: Path, workers: int | None = None,
          chunk: int = 64, desc: str = "cache") -> None:
    """Write `images` (shard Members read by offset, or a list of file paths) as one
    (N, size, size, 3) uint8 .npy at `out`, atomically."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(images), size, size, 3)}
    row = size * size * 3
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            start = f.tell()
            f.truncate(start + len(images) * row)
        jobs = ((tmp, start + i * row, images[i:i + chunk], size)
                for i in range(0, len(images), chunk))
        cores = workers or available_cores()
        with ProcessPoolExecutor(cores) as pool, \
                progress.bar(total=len(images), desc=desc, unit="img") as bar:
            try:
                for count in _in_order(pool, jobs, window=2 * cores):
                    bar.update(count)
            except BaseException:  # an unreadable image (or Ctrl-C): skip the chunks not started
                pool.shutdown(cancel_futures=True)
                raise


def build_rendered(rows, size: int, out: Path, chunk: int = 512, desc: str = "cache") -> None:
    """Write dSprites images as one (N, size, size, 3) uint8 .npy at `out`, atomically: each row
    (sprites, row, style, seed, painting and the two files' sha256, as dareg.labels gives them)
    rendered by dareg.dsprites and resized by Pillow's antialiased bilinear filter. The files
    must still have the sha256 the rows carry."""
    from dareg import dsprites  # here: the photo tasks' workers need none of it

    if not len(rows):
        with atomic_path(out) as tmp, open(tmp, "wb") as f:  # np.save would add .npy to a name
            np.save(f, np.zeros((0, size, size, 3), np.uint8))
        return
    sprites, painting = _checked(rows, "sprites"), _checked(rows, "painting")
    packed, picture = np.load(sprites, mmap_mode="r"), dsprites.read_painting(painting)
    with atomic_path(out) as tmp:
        array = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(rows), size, size, 3))
        with progress.bar(total=len(rows), desc=desc, unit="img") as bar:
            for start in range(0, len(rows), chunk):
                part = rows.iloc[start:start + chunk]
                images = dsprites.render(packed[part["row"].to_numpy()], part["style"].tolist(),
                                         part["seed"].tolist(), picture)
                array[start:start + len(part)] = [_resized(image, size) for image in images]
                bar.update(len(part))
        array.flush()
        del array


def _checked(rows, column: str) -> str:
    """The one file the rows name in `column`, whose sha256 is still the one they carry."""
    files = rows[column].unique()
    if len(files) != 1:
        raise DataError(f"the split's rows name {len(files)} {column} files; expected one "
                        f"(rerun dvc repro from fetch_dsprites)")
    path, expected = str(files[0]), rows[f"{column}_sha256"].iloc[0]
    if sha256_file(path) != expected:
        raise DataError(f"{path}: its sha256 is not the one the split's rows carry (it changed "
                        f"after the tables were made); run `dvc repro` (or `dvc pull`)")
    return path


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _in_order(pool: ProcessPoolExecutor, jobs: Iterator, window: int) -> Iterator[int]:
    """`_write_rows` of each job, in order, with at most `window` submitted and not yet done:
    unlike pool.map, which submits them all at once, the parent holds a few chunks, not a
    future and a slice per chunk of the dataset."""
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.submit(_write_rows, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
