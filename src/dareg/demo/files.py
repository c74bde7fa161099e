"""A loopback static file server for one folder: GET and HEAD, single byte ranges, 404 and 416.

Enough of HTTP for resumable downloads to be exercised for real (206 + Content-Range); not a
general web server (no directory listings, no multi-range responses, no caching headers).
"""
from __future__ import annotations

import mimetypes
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

from dareg.loopback import QuietHandler, serve

CHUNK = 1 << 16
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `Range: bytes=a-b` header, or None for the whole file.

    Raises ValueError for a range that is malformed or starts past the end (answered with 416).
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise ValueError(header)
    first, last = match.groups()
    if first == "":  # a suffix: the last `last` bytes
        return max(size - int(last), 0), size - 1
    last = min(int(last), size - 1) if last else size - 1
    if int(first) >= size or int(first) > last:
        raise ValueError(header)
    return int(first), last


def _handler(root: Path) -> type[QuietHandler]:
    """A handler class serving the files under `root`."""

    class FileHandler(QuietHandler):
        def do_HEAD(self):  # noqa: N802 - name fixed by http.server
            self.do_GET()

        def do_GET(self):  # noqa: N802 - name fixed by http.server
            path = (root / unquote(urlsplit(self.path).path).lstrip("/")).resolve()
            if not path.is_file() or not path.is_relative_to(root):
                self.send_body(404, b"not found\n", "text/plain")
                return
            size = path.stat().st_size
            try:
                span = parse_range(self.headers.get("Range"), size)
            except ValueError:
                self.send_body(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                return
            self._send_file(path, size, span)

        def _send_file(self, path: Path, size: int, span: tuple[int, int] | None):
            first, last = span or (0, size - 1)
            self.send_response(206 if span else 200)
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0]
                             or "application/octet-stream")
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            if span:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            with open(path, "rb") as f:
                f.seek(first)
                left = last - first + 1
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    self.wfile.write(chunk)
                    left -= len(chunk)

    return FileHandler


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve the files under `folder` on 127.0.0.1; yield the base URL (no trailing slash)."""
    with serve(_handler(Path(folder).resolve())) as base_url:
        yield base_url
