"""Resumable download state, kept outside DVC's outputs: <store>/files/ and <store>/manifest.jsonl.

DVC deletes a stage's declared outputs before running it, so what a scrape has fetched lives in a
store of its own (the stages use data/downloads/<source>/, not a DVC output) and the stage links the
kept files into its output folder. The manifest holds one JSON line per finished item, appended and
flushed as each item ends, so a killed run loses at most the items in flight (a torn last line is
ignored); the last line of an id wins. An entry is reused, without any request, when its URL is the
one asked for now, its outcome is FINAL and, for `ok`, its file is still there with its size.
`timeout`, `error` and `too_large` (download.max_bytes may have changed) are tried again.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from dareg import io as atomic


@dataclass(frozen=True)
class Item:
    """One image to fetch: the id that names its file, and where it lives."""

    id: str
    url: str


@dataclass(frozen=True)
class Result:
    """What became of one item: an outcome from download.OUTCOMES, the file name (ok only), and why."""

    id: str
    url: str
    outcome: str
    file: str | None = None
    sha256: str | None = None
    detail: str = ""


FINAL = frozenset({"ok", "not_found", "not_image", "corrupt"})
FIELDS = ("id", "url", "outcome", "file", "sha256", "detail", "size")


class Store:
    """A download store at `root`: `files/` named by validated id, and the manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.files = self.root / "files"
        self.manifest = self.root / "manifest.jsonl"
        self.files.mkdir(parents=True, exist_ok=True)
        # half-written files of a killed run, and a manifest rewrite it never renamed
        for leftover in [*self.files.glob(".*.tmp"), *self.root.glob(f".{self.manifest.name}.*.tmp")]:
            leftover.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self.compact()  # drops a torn last line, so that appends start on a fresh line

    def entries(self) -> dict[str, dict]:
        """The manifest as id -> entry (last line wins); torn or foreign lines are skipped."""
        found: dict[str, dict] = {}
        if not self.manifest.exists():
            return found
        for line in self.manifest.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and set(FIELDS) <= set(entry):
                found[entry["id"]] = entry
        return found

    def reusable(self, entry: dict | None, url: str) -> bool:
        """Whether `entry` settles the item at `url` for good (ok entries: file present, same size)."""
        if entry is None or entry["url"] != url or entry["outcome"] not in FINAL:
            return False
        if entry["outcome"] != "ok":
            return True
        if Path(str(entry["file"])).name != entry["file"]:  # only a bare name may point into files/
            return False
        path = self.files / entry["file"]
        return path.is_file() and path.stat().st_size == entry["size"]

    def record(self, result: Result, size: int | None) -> None:
        """Append one finished item and flush it to the OS at once (`size`: bytes of an ok file)."""
        line = json.dumps({**asdict(result), "size": size}, sort_keys=True) + "\n"
        with self._lock, open(self.manifest, "a", encoding="utf-8") as out:
            out.write(line)
            out.flush()

    def compact(self) -> None:
        """Rewrite the manifest atomically with one line per id, sorted by id (deterministic)."""
        entries = self.entries()
        if not entries and not self.manifest.exists():
            return
        text = "".join(json.dumps(entries[key], sort_keys=True) + "\n" for key in sorted(entries))
        atomic.write_text(self.manifest, text)

    def place(self, name: str, folder: Path) -> None:
        """Put the stored file `name` into `folder` atomically: a hard link, or a copy across devices."""
        with atomic.atomic_path(folder / name) as tmp:
            tmp.unlink()
            try:
                os.link(self.files / name, tmp)
            except OSError:
                shutil.copyfile(self.files / name, tmp)
