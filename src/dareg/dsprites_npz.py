"""Reading DeepMind's dSprites npz (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz, or any subset
of its rows in the same layout) without holding its 3 GB of `imgs`: the latents (35 MB each) are
loaded whole and checked against the grid, the sprites streamed from the zip member and only the
rows asked for kept.

Fields read: `imgs` (N, 64, 64) uint8 in {0, 1}, `latents_classes` (N, 6) int64 and
`latents_values` (N, 6) float64 (colour, shape, scale, orientation, posX, posY). `metadata` is a
pickle, never loaded: unpickling a downloaded file can run code.
"""
from __future__ import annotations

import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np

from dareg import dsprites, progress
from dareg.errors import DataError

FIELDS = {"imgs": (np.dtype(np.uint8), (dsprites.SIDE, dsprites.SIDE)),
          "latents_classes": (np.dtype(np.int64), (6,)),
          "latents_values": (np.dtype(np.float64), (6,))}
LAYOUT = ("expected DeepMind's dSprites npz: imgs (N, 64, 64) uint8, latents_classes (N, 6) int64, "
          "latents_values (N, 6) float64")
BLOCK_ROWS = 1024  # sprites decompressed per read (4 MiB)


def read_sprites(path: Path, indices: Sequence[int]) -> np.ndarray:
    """(n, 64, 64) uint8 sprites of dSprites `indices` (in that order) from the npz at `path`."""
    path = Path(path)
    with _archive(path) as archive:
        count = _check_layout(path, archive)
        file_rows = _rows_of(path, _grid_indices(path, archive, count), indices)
        with _member(path, archive, "imgs") as member:
            _read_header(path, "imgs", member)
            return _stream(path, member, file_rows)


@contextmanager
def _archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """The npz opened as the zip it is; a DataError when it is missing or not a zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except FileNotFoundError:
        raise DataError(f"{path}: not found; point dsprites.images_path at DeepMind's "
                        "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz, or set dsprites.images: "
                        "generate") from None
    except zipfile.BadZipFile as err:
        raise DataError(f"{path}: not an npz ({err}); {LAYOUT}; download it again") from None


@contextmanager
def _member(path: Path, archive: zipfile.ZipFile, field: str) -> Iterator[IO[bytes]]:
    """The member `field`.npy, open for reading; a DataError naming the field when it is absent."""
    try:
        member = archive.open(f"{field}.npy")
    except KeyError:
        raise DataError(f"{path}: field {field!r} missing; {LAYOUT}") from None
    with member:
        yield member


def _read_header(path: Path, field: str, member: IO[bytes]) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from a .npy header, leaving `member` at its first data byte."""
    try:
        version = np.lib.format.read_magic(member)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, fortran_order, dtype = read(member)
    except (ValueError, KeyError, EOFError) as err:
        raise DataError(f"{path}: field {field!r} is not a readable .npy array ({err}); "
                        f"{LAYOUT}") from None
    if fortran_order and len(shape) > 1:
        raise DataError(f"{path}: field {field!r} is stored in Fortran order; save it again "
                        "with numpy.savez (C order)")
    return shape, dtype


def _check_layout(path: Path, archive: zipfile.ZipFile) -> int:
    """The number of images N, once every field has its dtype and shape (N, ...) as DeepMind's."""
    counts = set()
    for field, (dtype, row_shape) in FIELDS.items():
        with _member(path, archive, field) as member:
            shape, found = _read_header(path, field, member)
        if found != dtype or tuple(shape[1:]) != row_shape:
            raise DataError(f"{path}: field {field!r} is {found} {tuple(shape)}, not {dtype} "
                            f"(N, {', '.join(map(str, row_shape))}); {LAYOUT}")
        counts.add(shape[0])
    if len(counts) > 1:
        raise DataError(f"{path}: the fields hold different numbers of images {sorted(counts)}; "
                        f"{LAYOUT}, all with the same N")
    return counts.pop()


def _load(path: Path, archive: zipfile.ZipFile, field: str) -> np.ndarray:
    """A whole (small) field, pickles refused."""
    with _member(path, archive, field) as member:
        try:
            return np.lib.format.read_array(member, allow_pickle=False)
        except (ValueError, EOFError) as err:
            raise DataError(f"{path}: field {field!r} is truncated or unreadable ({err}); "
                            "download it again") from None


def _grid_indices(path: Path, archive: zipfile.ZipFile, count: int) -> np.ndarray:
    """(N,) dSprites index of each row, once its latents are checked to lie on DeepMind's grid:
    colour class 0, each other class within its size, each value the one its class has."""
    classes = _load(path, archive, "latents_classes")
    values = _load(path, archive, "latents_values")
    sizes = np.array((1, *dsprites.SIZES))
    bad = np.flatnonzero(((classes < 0) | (classes >= sizes)).any(axis=1))
    if len(bad):
        raise DataError(f"{path}: row {bad[0]} of latents_classes, {classes[bad[0]].tolist()}, is "
                        f"off the grid (class sizes {sizes.tolist()}); {len(bad)} rows so; "
                        "use DeepMind's file as published")
    expected = dsprites.latent_values(classes[:, 1:])
    bad = np.flatnonzero(~np.isclose(values, expected, rtol=0, atol=1e-6).all(axis=1))
    if len(bad):
        raise DataError(f"{path}: row {bad[0]} of latents_values, {values[bad[0]].tolist()}, "
                        f"disagrees with its classes {classes[bad[0]].tolist()} (expected "
                        f"{expected[bad[0]].round(6).tolist()}); {len(bad)} rows so; use "
                        "DeepMind's file as published")
    index = dsprites.latents_to_index(classes[:, 1:])
    unique, first = np.unique(index, return_index=True)
    if len(unique) < count:
        twice = np.setdiff1d(np.arange(count), first)[0]
        raise DataError(f"{path}: row {twice} repeats the latents of an earlier row "
                        f"{classes[twice].tolist()}; each image must appear once")
    return index


def _rows_of(path: Path, file_index: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """The file row of each dSprites index asked for; a DataError naming those not in the file."""
    wanted = np.asarray(indices, dtype=np.int64)
    order = np.argsort(file_index)
    at = np.minimum(np.searchsorted(file_index, wanted, sorter=order), len(order) - 1)
    found = file_index[order[at]] == wanted if len(order) else np.zeros(len(wanted), dtype=bool)
    missing = np.unique(wanted[~found])
    if len(missing):
        raise DataError(f"{path}: {len(missing)} of the dSprites images asked for are not in the "
                        f"file (indices {missing[:5].tolist()}...); use DeepMind's full file, or "
                        "set dsprites.images: generate")
    return order[at]


def _stream(path: Path, member: IO[bytes], file_rows: np.ndarray) -> np.ndarray:
    """The sprites at `file_rows`, read in one sequential pass over the member (stopping after the
    last one); each kept sprite checked to be binary."""
    row_bytes = dsprites.SIDE * dsprites.SIDE
    sprites = np.empty((len(file_rows), dsprites.SIDE, dsprites.SIDE), dtype=np.uint8)
    order = np.argsort(file_rows, kind="stable")
    last = int(file_rows.max(initial=-1))
    with progress.bar(total=last + 1, unit="sprite", desc=f"read {path.name}",
                      mininterval=1.0) as bar:
        for start in range(0, last + 1, BLOCK_ROWS):
            rows = min(BLOCK_ROWS, last + 1 - start)
            block = member.read(rows * row_bytes)
            if len(block) < rows * row_bytes:
                raise DataError(f"{path}: imgs ends before row {last}; the file is truncated, "
                                "download it again")
            block = np.frombuffer(block, np.uint8).reshape(rows, dsprites.SIDE, dsprites.SIDE)
            _keep(path, block, start, file_rows, order, sprites)
            bar.update(rows)
    return sprites


def _keep(path: Path, block: np.ndarray, start: int, file_rows: np.ndarray, order: np.ndarray,
          sprites: np.ndarray) -> None:
    """Copy into `sprites` the rows of `block` (file rows start, start + 1, ...) that are asked
    for; `order` sorts `file_rows`."""
    low, high = np.searchsorted(file_rows[order], [start, start + len(block)])
    picked = order[low:high]
    kept = block[file_rows[picked] - start]
    if kept.max(initial=0) > 1:
        row = int(file_rows[picked][np.flatnonzero(kept.reshape(len(kept), -1).max(1) > 1)[0]])
        raise DataError(f"{path}: imgs row {row} is not binary (values above 1); expected "
                        "DeepMind's sprites, 0 and 1 only")
    sprites[picked] = kept
