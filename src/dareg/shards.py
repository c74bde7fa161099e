"""Raw images packed in uncompressed tar shards, with an index of where each member's bytes lie.

Layout of a raw folder (data/raw/wiki, data/raw/reddit, data/raw/flickr):

    shards/<prefix>-000000.tar, <prefix>-000001.tar, ...   plain POSIX tar files (WebDataset's
                                                          layout: numbered, uncompressed)
    shards/index.csv   member, shard, offset, size, sha256: one row per member, written last,
                       so a folder whose index.csv is missing is not complete

Members keep the datasets' own names (IMDB-WIKI's `17/10000217_1981-05-05_2009.jpg`), so
`tar -tf` lists and `tar -xf` gives back the original files. Why shards: DVC tracks every file of
an output folder as its own object, so 77,000 loose images cost seconds on every `dvc status`
and a request each on a remote (treeverse/dvc#6222); a few hundred-megabyte shards cost
nothing. Why the standard library's tarfile and not the webdataset package: readers here fetch
one member's bytes at its offset (os.pread, in parallel, no extraction), which needs the index,
while webdataset reads shards as streams grouped by sample key; and tarfile needs no install.

Shards are written deterministically (mtime 0, no owner, members in the order given), so the same
images give byte-identical shards and DVC sees no change; each shard appears under its final
name only when complete (written as .<name>.tmp, then renamed).
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from dareg.errors import DataError
from dareg.hashes import sha256_bytes
from dareg.io import atomic_path

if TYPE_CHECKING:  # imported where used: pandas takes ~0.3 s, and the cache's workers need none of it
    import pandas as pd

# 64 MiB a shard, from benchmarks/shard_size.py (docs/benchmarks.md, "Shard size"): on ~800 MB of
# crops (the real Wikipedia size) 16, 64, 256 and 1024 MiB gave the same `dvc status`, push, pull
# and cache-build rate (DVC's start-up dominates; readers go by offset, so the shard count does not
# limit their parallelism), but a changed image re-uploads its whole shard: 72 MiB with the index
# at 64 MiB, 264 at 256. The Wikipedia crops make 13 shards: DVC handles tens of files, not 77,000.
SHARD_BYTES = 64 << 20
FOLDER = "shards"
INDEX = "index.csv"
INDEX_COLUMNS = ["member", "shard", "offset", "size", "sha256"]


def safe_member_name(name: str, where: str) -> str:
    """`name` as a relative '/'-separated path without `..`, or a DataError naming it."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or name.endswith("/"):
        raise DataError(f"{where}: member name {name!r} is not a plain relative path; refusing it "
                        f"(fetch the data again from a trusted source)")
    return path.as_posix()


class ShardWriter:
    """Fill folder/shards (emptied first): add members one by one; shards of at most `max_bytes`
    (a member larger than that gets a shard of its own) appear as they fill; `close` writes the
    index. Use as a context manager: on an error nothing that looks complete is left (no index,
    no half shard)."""

    def __init__(self, folder: Path, prefix: str, max_bytes: int = SHARD_BYTES):
        self.root, self.prefix, self.max_bytes = Path(folder), prefix, max_bytes
        shutil.rmtree(self.root / FOLDER, ignore_errors=True)  # the writer owns folder/shards
        (self.root / FOLDER).mkdir(parents=True)
        self.rows: list[dict] = []
        self.names: set[str] = set()
        self.number, self.file, self.tar, self.tmp = -1, None, None, None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self._abandon()

    def add(self, member: str, data: bytes) -> dict:
        """Append one member; returns its index row."""
        member = safe_member_name(member, f"{self.root}")
        if member in self.names:
            raise DataError(f"{self.root}: member {member!r} twice; each image must have one name")
        self.names.add(member)
        padded = -(-len(data) // 512) * 512
        if self.tar is None or (self.file.tell() + padded > self.max_bytes and self._members > 0):
            self._next_shard()
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self.tar.addfile(info, io.BytesIO(data))
        offset = self.tar.offset - padded  # where the member's bytes start in the shard
        row = {"member": member, "shard": self._shard_name(), "offset": offset, "size": len(data),
               "sha256": sha256_bytes(data)}
        self.rows.append(row)
        self._members += 1
        return row

    def close(self) -> pd.DataFrame:
        """Finish the last shard and write the index; returns it."""
        import pandas as pd
        self._finish_shard()
        index = pd.DataFrame(self.rows, columns=INDEX_COLUMNS)
        with atomic_path(self.root / FOLDER / INDEX) as tmp:
            index.to_csv(tmp, index=False)
        return index

    def _shard_name(self) -> str:
        return f"{FOLDER}/{self.prefix}-{self.number:06d}.tar"

    def _next_shard(self) -> None:
        self._finish_shard()
        self.number += 1
        final = self.root / self._shard_name()
        self.tmp = final.with_name(f".{final.name}.tmp")
        self.file = open(self.tmp, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.PAX_FORMAT)
        self._members = 0

    def _finish_shard(self) -> None:
        if self.tar is None:
            return
        self.tar.close()  # the end-of-archive blocks
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.root / self._shard_name())
        self.tar = self.file = self.tmp = None

    def _abandon(self) -> None:
        if self.file is not None:
            self.file.close()
            Path(self.tmp).unlink(missing_ok=True)
        self.tar = self.file = self.tmp = None


def index_path(folder: Path) -> Path:
    return Path(folder) / FOLDER / INDEX


def read_index(folder: Path) -> pd.DataFrame:
    """The index of a raw folder's shards; a one-line error for a folder in the old layout (loose
    NN/*.jpg, made before shards) or without shards."""
    import pandas as pd
    folder = Path(folder)
    path = index_path(folder)
    if not path.is_file():
        if folder.is_dir() and any(p.is_dir() and p.name != FOLDER for p in folder.iterdir()):
            raise DataError(f"{folder}: loose image folders and no {FOLDER}/{INDEX}: this is the "
                            f"layout before tar shards; rebuild it with `dvc repro -f "
                            f"{_stage_of(folder)}`")
        raise DataError(f"{path}: not found; the images of {folder} are packed in "
                        f"{FOLDER}/*.tar with this index: rerun `dvc repro -f {_stage_of(folder)}`")
    index = pd.read_csv(path, dtype={"member": str, "shard": str, "sha256": str})
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} missing; rerun `dvc repro -f "
                        f"{_stage_of(folder)}`")
    return index


def _stage_of(folder: Path) -> str:
    """The stage that writes a raw folder, told by what it holds (or its name)."""
    folder = Path(folder)
    by_file = {"wiki.mat": "fetch_wiki", "imdb.mat": "fetch_wiki", "posts.csv": "scrape_reddit",
               "photos.csv": "scrape_flickr"}
    by_name = {"wiki": "fetch_wiki", "reddit": "scrape_reddit", "flickr": "scrape_flickr"}
    found = [stage for name, stage in by_file.items() if (folder / name).is_file()]
    return (found or [by_name.get(folder.name, f"<the stage that writes {folder}>")])[0]


def check_shards(rows: pd.DataFrame, root: Path = Path(".")) -> None:
    """Every shard `rows` (columns shard, offset, size; shard relative to `root`) need exists and
    holds their bytes; else a DataError naming the shard and how many rows (and which) need it."""
    for shard, group in rows.groupby("shard", sort=True):
        path = Path(root) / shard
        need = int((group["offset"] + group["size"]).max())
        have = path.stat().st_size if path.is_file() else None
        if have is None or have < need:
            names = ", ".join(map(str, group.get("member", group.index)[:3]))
            state = "is missing" if have is None else f"is truncated ({have} of at least {need} bytes)"
            raise DataError(f"{path} {state}; {len(group)} image(s) need it ({names}"
                            f"{', ...' if len(group) > 3 else ''}); rerun the stage that wrote it "
                            f"(`dvc repro -f {_stage_of(path.parent.parent)}`) or `dvc pull`")


class Reader:
    """Reads members by offset, keeping each shard open until closed (a context manager): a
    batch of reads from a few shards opens each once."""

    def __init__(self):
        self.fds: dict[str, int] = {}

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def read(self, path: str | os.PathLike, offset: int, size: int) -> bytes:
        key = os.fspath(path)
        if key not in self.fds:
            self.fds[key] = os.open(key, os.O_RDONLY)
        return _checked(os.pread(self.fds[key], size, offset), path, offset, size)


def read_member(path: str | os.PathLike, offset: int, size: int) -> bytes:
    """`size` bytes at `offset` of shard `path` (one pread; no extraction)."""
    with Reader() as reader:
        return reader.read(path, offset, size)


def _checked(data: bytes, path, offset: int, size: int) -> bytes:
    if len(data) != size:
        raise DataError(f"{path}: truncated (wanted {size} bytes at {offset}, got {len(data)}); "
                        f"rerun the stage that wrote it or `dvc pull`")
    return data


def extract_one(shard: Path, member: str, out: Path) -> Path:
    """Write one member of a shard to `out` (python -m dareg.shards SHARD MEMBER OUT)."""
    with tarfile.open(shard) as tar:
        try:
            data = tar.extractfile(member)
        except KeyError:
            raise DataError(f"{shard}: no member {member!r}; `tar -tf {shard}` lists them") from None
        Path(out).write_bytes(data.read())
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dareg.shards",
                                     description="copy one image out of a shard for a look")
    parser.add_argument("shard", type=Path)
    parser.add_argument("member", help="its name inside the shard, as `tar -tf` lists it")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(extract_one(args.shard, args.member, args.out))


if __name__ == "__main__":
    from dareg import cli

    cli.run(main)
