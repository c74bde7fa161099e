"""Content hashes of a data folder, in `sha256sum`'s format (`sha256sum -c SHA256SUMS` checks them).

Why: `dvc status` and `dvc repro` walk every folder that a stage lists as a dependency, and at
the real datasets' size (60,000 files) each walk costs a second. The stage that fills a folder
writes its SHA256SUMS (or, for the scrapers, a sha256 column in its CSV) and downstream stages
depend on that small file, so a folder is walked once, as its producer's output, and a stage
still reruns when any file's content changes.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dareg import progress
from dareg.errors import DataError
from dareg.io import write_text

SUMS = "SHA256SUMS"


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    """The same hex digest for bytes already in memory (a downloaded or shard-read image)."""
    return hashlib.sha256(data).hexdigest()


def write_sums(folder: Path, name: str = SUMS) -> Path:
    """Hash every file under `folder` (but the list itself) into folder/name, sorted by path;
    threads hash in parallel (hashlib releases the GIL on whole files)."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != name)
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        digests = list(progress.bar(pool.map(lambda f: sha256_file(folder / f), files), total=len(files),
                            desc=f"sha256 {folder}", unit="file", mininterval=1.0))
    write_text(folder / name, "".join(f"{d}  {f}\n" for d, f in zip(digests, files)))
    return folder / name


def read_sums(folder: Path, name: str = SUMS) -> dict[str, str]:
    """{relative path: sha256} from folder/name."""
    path = folder / name
    if not path.is_file():
        raise DataError(f"{path}: not found; rerun the stage that fills {folder} (dvc repro -f)")
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, file = line.partition("  ")
        if not sep or len(digest) != 64:
            raise DataError(f"{path}, line {number}: expected '<sha256>  <path>'; rerun the stage "
                            f"that fills {folder}")
        sums[file] = digest
    return sums
