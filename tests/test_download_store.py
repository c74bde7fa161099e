"""The download store: a rerun fetches nothing, a killed run resumes with nothing lost or twice."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from dareg import download, shards
from dareg.download import Item
from dareg.download_store import Store
from dareg.loopback import QuietHandler, serve
from dareg.params import Download

CONFIG = Download(workers=4, per_host=4, connect_timeout=2.0, read_timeout=2.0, retries=0,
                  backoff=0.01, max_bytes=50_000)
N_KILL = 160


def jpeg(k: int) -> bytes:
    """A small JPEG unique to k (its width)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8 + k, 8), (200, 40, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


class Handler(QuietHandler):
    """/img/<k>.jpg after `delay` seconds; /flaky/ fails until `healed`; counts hits per path."""

    disable_nagle_algorithm = True
    hits: dict = {}
    delay = 0.0
    healed = False
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        with self.lock:
            Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        time.sleep(self.delay)
        name = self.path.rsplit("/", 1)[-1].removesuffix(".jpg")
        if self.path.startswith("/flaky/") and not Handler.healed:
            return self.send_body(503, b"down", "text/plain")
        if self.path.startswith(("/img/", "/flaky/", "/moved/")) and name.isdigit():
            return self.send_body(200, jpeg(int(name)), "image/jpeg")
        return self.send_body(404, b"not found", "text/plain")


@pytest.fixture
def base_url():
    Handler.hits, Handler.delay, Handler.healed = {}, 0.0, False
    with serve(Handler) as url:
        yield url


def run(items, tmp_path: Path, name: str = "run"):
    return download.download_all(items, tmp_path / name / "images", CONFIG, tmp_path / name / "store")[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """The packed output: every shard's and the index's bytes (deterministic for the same images)."""
    return {path.name: path.read_bytes() for path in sorted((folder / "shards").iterdir())}


def test_a_rerun_of_a_finished_scrape_requests_nothing(base_url, tmp_path):
    """Second run: zero requests, the same results, the same files (also after DVC deleted them)."""
    items = [Item(f"p{k}", f"{base_url}/img/{k}.jpg") for k in range(6)] + [Item("gone", f"{base_url}/x")]
    first = run(items, tmp_path)
    hits = dict(Handler.hits)
    files = snapshot(tmp_path / "run" / "images")
    shutil.rmtree(tmp_path / "run" / "images")  # what `dvc repro` does to a stage's outputs first
    assert run(items, tmp_path) == first
    assert Handler.hits == hits and set(hits.values()) == {1}
    assert snapshot(tmp_path / "run" / "images") == files and len(files) == 2  # a shard, the index
    assert len(shards.read_index(tmp_path / "run" / "images")) == 6


def test_transient_failures_new_urls_and_lost_files_are_fetched_again(base_url, tmp_path):
    """error/timeout are retried next run; a changed URL or a deleted store file is refetched."""
    items = [Item("a", f"{base_url}/flaky/1.jpg"), Item("b", f"{base_url}/img/2.jpg"),
             Item("c", f"{base_url}/img/3.jpg")]
    assert [r.outcome for r in run(items, tmp_path)] == ["error", "ok", "ok"]
    Handler.healed = True
    (tmp_path / "run" / "store" / "files" / "c.jpg").unlink()
    moved = [items[0], Item("b", f"{base_url}/moved/2.jpg"), items[2]]
    assert [r.outcome for r in run(moved, tmp_path)] == ["ok", "ok", "ok"]
    assert Handler.hits == {"/flaky/1.jpg": 2, "/img/2.jpg": 1, "/moved/2.jpg": 1, "/img/3.jpg": 2}


def test_a_torn_last_manifest_line_is_ignored(base_url, tmp_path):
    items = [Item("a", f"{base_url}/img/1.jpg"), Item("b", f"{base_url}/img/2.jpg")]
    run(items, tmp_path)
    manifest = tmp_path / "run" / "store" / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed mid-write
    assert [r.outcome for r in run(items, tmp_path)] == ["ok", "ok"]
    assert sum(Handler.hits.values()) == 3
    assert len(Store(tmp_path / "run" / "store").entries()) == 2


def test_a_killed_runs_temporaries_are_removed_and_its_manifest_kept(base_url, tmp_path):
    items = [Item("a", f"{base_url}/img/1.jpg")]
    run(items, tmp_path)
    store = tmp_path / "run" / "store"
    manifest = (store / "manifest.jsonl").read_text()
    half_rewrite = store / ".manifest.jsonl.k1ll3d00.tmp"  # compact() killed before its rename
    half_file = store / "files" / ".b.jpg.k1ll3d00.tmp"  # a download killed mid-write
    half_rewrite.write_text(manifest[:10])
    half_file.write_bytes(b"\xff\xd8")
    assert [r.outcome for r in run(items, tmp_path)] == ["ok"]
    assert not half_rewrite.exists() and not half_file.exists()
    assert (store / "manifest.jsonl").read_text() == manifest
    assert sum(Handler.hits.values()) == 1  # the kept entry was reused, nothing fetched again


CHILD = """
import json, sys
from dareg import download
from dareg.download import Item
from dareg.params import Download
config = Download(**json.loads(sys.argv[1]))
items = [Item(*pair) for pair in json.loads(sys.argv[2])]
download.download_all(items, sys.argv[3], config, sys.argv[4])
"""


def test_killed_halfway_and_resumed_loses_nothing_and_fetches_nothing_twice(base_url, tmp_path):
    """SIGKILL a scrape once half its items are in the manifest, resume: the same manifest and files
    as an uninterrupted run; items recorded before the kill are never requested again."""
    Handler.delay = 0.02
    items = [Item(f"p{k}", f"{base_url}/img/{k}.jpg") for k in range(N_KILL)]
    store, images = tmp_path / "killed" / "store", tmp_path / "killed" / "images"
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(CONFIG.__dict__),
                              json.dumps([[i.id, i.url] for i in items]), str(images), str(store)],
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        manifest = store / "manifest.jsonl"  # read, not opened as a Store (that would compact it)
        if manifest.exists() and manifest.read_text().count("\n") >= N_KILL // 2:
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert child.wait(10) == -signal.SIGKILL, "the scrape finished before it could be killed"
    recorded = set(Store(store).entries())
    assert N_KILL // 2 <= len(recorded) < N_KILL
    hits_before = dict(Handler.hits)
    resumed = run(items, tmp_path, "killed")
    assert all(Handler.hits[f"/img/{key[1:]}.jpg"] == hits_before[f"/img/{key[1:]}.jpg"] for key in recorded)
    assert max(Handler.hits.values()) <= 2  # only items in flight at the kill went out twice
    assert sum(Handler.hits.values()) - N_KILL <= CONFIG.workers
    Handler.delay = 0.0
    whole = run(items, tmp_path, "whole")
    assert [r.outcome for r in resumed] == ["ok"] * N_KILL and resumed == whole
    assert snapshot(images) == snapshot(tmp_path / "whole" / "images")
    assert (store / "manifest.jsonl").read_text() == (tmp_path / "whole" / "store" / "manifest.jsonl").read_text()


def test_a_manifest_entry_cannot_point_outside_the_store(base_url, tmp_path):
    """An ok entry whose file is not a bare name is not trusted: the item is fetched again."""
    store = Store(tmp_path / "store")
    (tmp_path / "evil.jpg").write_bytes(jpeg(1))
    entry = {"id": "a", "url": f"{base_url}/img/1.jpg", "outcome": "ok", "file": "../../evil.jpg",
             "sha256": "0", "detail": "", "size": len(jpeg(1))}
    store.manifest.write_text(json.dumps(entry) + "\n")
    results = download.download_all([Item("a", entry["url"])], tmp_path / "images", CONFIG, store.root)[0]
    assert results[0].file == "a.jpg" and Handler.hits == {"/img/1.jpg": 1}
