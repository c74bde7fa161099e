"""Progress bars that suit where they are read: tqdm's live bar on a terminal; in a log (`dvc
repro` captures stderr, CI, `> log`) a line at most every LOG_INTERVAL seconds and none for work
that ends sooner, instead of a carriage return every tenth of a second that makes one endless line.
"""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between lines when stderr is not a terminal


class _Lines:
    """A stream for tqdm that writes each refresh as its own line (no carriage returns)."""

    def __init__(self, stream):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip("\n").rstrip()
        if text.strip() and text != self.last:  # tqdm's close repeats the final refresh
            self.stream.write(text + "\n")
            self.last = text

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Any = None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs) for a terminal; when stderr is not one, a few whole lines: the
    first after LOG_INTERVAL seconds, then one every LOG_INTERVAL, and a last one when done."""
    stream = kwargs.pop("file", None) or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, **kwargs)
    kwargs.update(mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL, delay=LOG_INTERVAL,
                  ncols=100, ascii=True, leave=True)
    return tqdm(iterable, file=_Lines(stream), **kwargs)
