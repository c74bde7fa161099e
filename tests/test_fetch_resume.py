"""Resuming the wiki_crop download for real: a dropped connection, then a killed process."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from dareg.demo.files import parse_range
from dareg.errors import DataError
from dareg.fetch import download
from dareg.loopback import QuietHandler, serve

DATA = os.urandom(1 << 20)  # 1 MiB
SHA256 = hashlib.sha256(DATA).hexdigest()
HALF = len(DATA) // 2


class FlakyServer:
    """Serves DATA with Range support; while `cut` is set, a response stops after HALF bytes
    of the file, then the connection is closed (`stall` False) or left hanging (`stall` True)."""

    def __init__(self, cut: bool, stall: bool = False):
        self.cut, self.stall, self.ranges, self.release = cut, stall, [], threading.Event()

    def handler(self) -> type[QuietHandler]:
        server = self

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 - name fixed by http.server
                header = self.headers.get("Range")
                server.ranges.append(header)
                first, last = parse_range(header, len(DATA)) or (0, len(DATA) - 1)
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(last - first + 1))
                if header:
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(DATA)}")
                self.end_headers()
                end = max(first, HALF) if server.cut else last + 1
                self.wfile.write(DATA[first:end])
                self.wfile.flush()
                if server.cut and server.stall:
                    server.release.wait(30)
                self.close_connection = True

        return Handler


def test_a_dropped_connection_is_resumed_by_the_next_run(tmp_path):
    """The first run fails with one clear error and keeps the bytes it wrote (all but the last
    unfinished chunk); the rerun asks only for the rest (Range) and the file's sha256 matches."""
    flaky = FlakyServer(cut=True)
    with serve(flaky.handler()) as base_url:
        with pytest.raises(DataError, match="download failed .* run again .* is resumed"):
            download(f"{base_url}/wiki_crop.tar", tmp_path / "wiki_crop.tar", sha256=SHA256,
                     chunk=4096)
        kept = (tmp_path / "wiki_crop.tar.part").stat().st_size
        assert HALF - 4096 <= kept <= HALF and not (tmp_path / "wiki_crop.tar").exists()
        flaky.cut = False
        done = download(f"{base_url}/wiki_crop.tar", tmp_path / "wiki_crop.tar", sha256=SHA256)
    assert flaky.ranges == [None, f"bytes={kept}-"]
    assert hashlib.sha256(done.read_bytes()).hexdigest() == SHA256
    assert not (tmp_path / "wiki_crop.tar.part").exists()


def _wait_for_size(path, size, process, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= size):
        assert process.poll() is None and time.monotonic() < deadline, "download never got there"
        time.sleep(0.05)


def test_a_killed_download_continues_where_it_stopped(tmp_path):
    """SIGKILL in the middle of a download (as when a stage is killed; bytes still in the
    killed process's buffers are lost): the next run resumes from the bytes on disk."""
    flaky = FlakyServer(cut=True, stall=True)
    dest = tmp_path / "wiki_crop.tar"
    with serve(flaky.handler()) as base_url:
        url = f"{base_url}/wiki_crop.tar"
        code = f"from dareg.fetch import download; download({url!r}, {str(dest)!r}, chunk=4096)"
        process = subprocess.Popen([sys.executable, "-c", code])
        try:
            _wait_for_size(dest.with_suffix(".tar.part"), HALF // 2, process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            flaky.release.set()
        kept = dest.with_suffix(".tar.part").stat().st_size
        assert HALF // 2 <= kept <= HALF and not dest.exists()
        flaky.cut = False
        download(url, dest, sha256=SHA256)
    assert flaky.ranges == [None, f"bytes={kept}-"]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA256
