"""The shared image downloader against a loopback server that misbehaves in every way it counts."""
import io
import tarfile
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from dareg import download
from dareg.errors import DataError
from dareg.download import Item
from dareg.loopback import QuietHandler, serve
from dareg.params import Download

CONFIG = Download(workers=4, per_host=2, connect_timeout=2.0, read_timeout=2.0, retries=2,
                  backoff=0.01, max_bytes=50_000)


def jpeg(color, size=(160, 120)) -> bytes:
    """A JPEG of `color` with a noise patch, so that most of the file is scan data."""
    image = Image.new("RGB", size, color)
    image.paste(Image.effect_noise((80, 60), 60).convert("RGB"), (40, 30))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


RED, BLUE, GREEN = jpeg((200, 40, 40)), jpeg((20, 20, 220)), jpeg((20, 200, 20))
TRUNCATED = RED[: len(RED) * 2 // 3]


class Handler(QuietHandler):
    """Routes by path; counts hits per path and the most requests in flight at once."""

    disable_nagle_algorithm = True
    hits: dict = {}
    in_flight = peak = 0  # of /slowish/ requests only
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        counted = self.path.startswith("/slowish/")
        with self.lock:
            Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
            Handler.in_flight += counted
            Handler.peak = max(Handler.peak, Handler.in_flight)
        try:
            self.route(Handler.hits[self.path])
        finally:
            with self.lock:
                Handler.in_flight -= counted

    def route(self, hit: int):
        path = self.path
        if path.startswith("/ok/") or path.startswith("/slowish/"):
            time.sleep(0.1 if path.startswith("/slowish/") else 0)
            return self.send_body(200, RED if "red" in path else BLUE, "image/jpeg")
        if path == "/late-first":
            time.sleep(0.3)
            return self.send_body(200, RED, "image/jpeg")
        if path == "/html":
            return self.send_body(200, b"<html>removed</html>", "text/html; charset=utf-8")
        if path == "/garbage":
            return self.send_body(200, b"\x00" * 500, "image/jpeg")
        if path == "/truncated":
            return self.send_body(200, TRUNCATED, "image/jpeg")
        if path == "/big":
            return self.send_body(200, b"\xff" * 60_000, "image/jpeg")
        if path == "/big-unannounced":
            return self.stream_without_length(b"\xff" * 60_000)
        if path == "/429-then-ok" and hit == 1:
            return self.send_body(429, b"slow down", "text/plain", {"Retry-After": "1"})
        if path == "/500-then-ok" and hit == 1:
            return self.send_body(500, b"oops", "text/plain")
        if path in ("/429-then-ok", "/500-then-ok"):
            return self.send_body(200, BLUE if path == "/429-then-ok" else GREEN, "image/jpeg")
        if path == "/always-503":
            return self.send_body(503, b"down", "text/plain")
        if path == "/slow":
            time.sleep(1.5)
            return self.send_body(200, RED, "image/jpeg")
        return self.send_body(404, b"not found", "text/plain")

    def stream_without_length(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


@pytest.fixture(scope="module")
def base_url():
    with serve(Handler) as url:
        yield url


def fetch_all(base_url: str, folder: Path, paths: dict, config: Download = CONFIG):
    items = [Item(item_id, base_url + path) for item_id, path in paths.items()]
    store = folder.parent / f"{folder.name}-store"  # beside, so the folder holds the shards only
    return {r.id: r for r in download.download_all(items, folder, config, store)[0]}


def members(folder: Path) -> dict[str, bytes]:
    """What the kept images' shards hold, read back through tar: {name: bytes}."""
    out = {}
    for shard in sorted((folder / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            out |= {m.name: tar.extractfile(m).read() for m in tar}
    return out


def test_each_failure_gets_its_outcome_and_only_ok_items_leave_files(base_url, tmp_path):
    """ok, not_found, not_image, corrupt (truncated), too_large: one outcome each, files for ok only."""
    results = fetch_all(base_url, tmp_path, {
        "good": "/ok/red.jpg", "gone": "/nothing-here", "page": "/html", "noise": "/garbage",
        "cut": "/truncated", "huge": "/big", "huge2": "/big-unannounced"})
    outcomes = {item_id: r.outcome for item_id, r in results.items()}
    assert outcomes == {"good": "ok", "gone": "not_found", "page": "not_image", "noise": "not_image",
                        "cut": "corrupt", "huge": "too_large", "huge2": "too_large"}
    assert results["good"].file == "good.jpg"
    assert members(tmp_path) == {"good.jpg": RED}
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "images-000000.tar", "index.csv"]  # no temp files either


def test_truncated_jpeg_passes_verify_but_not_the_downloader(base_url, tmp_path):
    """Pillow's verify() accepts the truncated JPEG; the downloader's full load() rejects it."""
    with Image.open(io.BytesIO(TRUNCATED)) as image:
        image.verify()
    assert fetch_all(base_url, tmp_path, {"cut": "/truncated"})["cut"].outcome == "corrupt"


def test_identical_bytes_keep_the_first_id_in_input_order(base_url, tmp_path):
    """The first id wins even when it finishes last; later copies are `duplicate` with no file."""
    results = fetch_all(base_url, tmp_path, {"first": "/late-first", "second": "/ok/red.jpg",
                                             "other": "/ok/blue.jpg"})
    assert results["first"].outcome == "ok" and results["other"].outcome == "ok"
    assert results["second"].outcome == "duplicate" and "first" in results["second"].detail
    assert sorted(members(tmp_path)) == ["first.jpg", "other.jpg"]


def test_429_with_retry_after_and_500_are_retried(base_url, tmp_path):
    """A 429 waits its Retry-After and succeeds; a 500 is retried with backoff and succeeds."""
    start = time.monotonic()
    results = fetch_all(base_url, tmp_path, {"rate": "/429-then-ok", "flaky": "/500-then-ok"})
    assert {r.outcome for r in results.values()} == {"ok"}
    assert time.monotonic() - start >= 1.0
    assert Handler.hits["/429-then-ok"] == 2 and Handler.hits["/500-then-ok"] == 2


def test_retries_run_out_as_error_and_slow_servers_as_timeout(base_url, tmp_path):
    """A server that stays down ends `error` after retries+1 tries; one that never answers, `timeout`."""
    config = Download(workers=2, per_host=2, connect_timeout=1.0, read_timeout=0.3, retries=1,
                      backoff=0.01, max_bytes=50_000)
    results = fetch_all(base_url, tmp_path, {"down": "/always-503", "slow": "/slow"}, config)
    assert results["down"].outcome == "error" and results["down"].detail == "HTTP 503"
    assert Handler.hits["/always-503"] == 2
    assert results["slow"].outcome == "timeout"


def test_unsafe_ids_are_refused_before_any_request(base_url, tmp_path):
    """Ids that could name a path outside the folder are rejected and nothing is written."""
    folder = tmp_path / "images"
    results = fetch_all(base_url, folder, {"../evil": "/ok/red.jpg", "a/b": "/ok/red.jpg",
                                           ".hidden": "/ok/red.jpg", "": "/ok/red.jpg"})
    assert {r.outcome for r in results.values()} == {"error"}
    assert list(tmp_path.rglob("*.jpg")) == [] and members(folder) == {}


def test_per_host_limit_caps_requests_in_flight(base_url, tmp_path):
    """With 4 workers and per_host 2, the server never sees more than 2 requests at once."""
    paths = {f"n{k}": f"/slowish/{k}.jpg" for k in range(8)}
    fetch_all(base_url, tmp_path, paths)
    assert Handler.peak == CONFIG.per_host


def test_decompression_bombs_count_as_too_large(base_url, tmp_path, monkeypatch):
    """An image with more pixels than Image.MAX_IMAGE_PIXELS is refused before decoding."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert fetch_all(base_url, tmp_path, {"bomb": "/ok/red.jpg"})["bomb"].outcome == "too_large"


def test_counts_and_kept_rows_follow_the_results():
    """count_outcomes lists every outcome; kept_rows keeps ok rows with their relative file
    and its content hash."""
    results = [download.Result("a", "u", "ok", file="a.jpg", sha256="f0"),
               download.Result("b", "u", "not_found")]
    counts = download.count_outcomes(results)
    assert list(counts) == list(download.OUTCOMES) and counts["ok"] == counts["not_found"] == 1
    packed = {"a": {"member": "a.jpg", "shard": "shards/x-000000.tar", "offset": 512, "size": 9,
                    "sha256": "f0"}}
    rows = download.kept_rows([{"id": "a"}, {"id": "b"}], results, packed)
    assert rows == [{"id": "a", "file": "a.jpg", "shard": "shards/x-000000.tar", "offset": 512,
                     "size": 9, "sha256": "f0"}]
    with pytest.raises(DataError, match="a.jpg changed on disk after it was downloaded"):
        download.kept_rows([{"id": "a"}], results, {"a": {**packed["a"], "sha256": "ee"}})


def test_retry_after_accepts_seconds_and_http_dates():
    assert download.retry_after_seconds("3") == 3.0
    assert download.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert download.retry_after_seconds(None) == download.retry_after_seconds("soon") == 0.0


def test_sessions_ignore_proxy_variables():
    """trust_env off: HTTP(S)_PROXY and REQUESTS_CA_BUNDLE cannot reroute or re-verify traffic."""
    assert download.make_session(4).trust_env is False
