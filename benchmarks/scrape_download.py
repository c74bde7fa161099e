"""Benchmark: the shared downloader against 4 loopback image hosts that each add 50 ms per image.

1. Speed: dareg.download (download.workers threads, at most download.per_host per host) against a
   plain sequential `requests.get` loop over the same images; prints both, the ratio and the most
   connections any host saw at once.
2. Resume: a 2,000-image scrape SIGKILLed once half its items are in the manifest, then resumed,
   against an uninterrupted one: same manifest, same files, and how many images were fetched twice.

    python benchmarks/scrape_download.py [--images 400] [--resume-images 2000]
Works in a temporary folder; nothing is left behind.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator

import requests
from PIL import Image

from dareg import download
from dareg.download import Item
from dareg.loopback import QuietHandler, serve
from dareg.params import Download

DELAY_S = 0.05
CONFIG = Download(workers=16, per_host=4, connect_timeout=5.0, read_timeout=30.0, retries=2,
                  backoff=0.1, max_bytes=1_000_000)
CHILD = """
import json, sys
from dareg import download
from dareg.download import Item
from dareg.params import Download
config = Download(**json.loads(sys.argv[1]))
download.download_all([Item(*p) for p in json.loads(sys.argv[2])], sys.argv[3], config, sys.argv[4])
"""


def jpeg(k: int) -> bytes:
    """A small JPEG unique to k (its size)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64 + k % 200, 48 + k // 200), (30 + k % 200, 90, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


class Host(QuietHandler):
    """/<k>.jpg after DELAY_S; counts requests per path and the connections open at once."""

    disable_nagle_algorithm = True
    images: dict[str, bytes] = {}
    hits: Counter
    open_now = peak = 0
    lock: threading.Lock

    def setup(self):
        super().setup()
        with self.lock:
            type(self).open_now += 1
            type(self).peak = max(type(self).peak, type(self).open_now)

    def finish(self):
        super().finish()
        with self.lock:
            type(self).open_now -= 1

    def do_GET(self):  # noqa: N802
        with self.lock:
            self.hits[self.path] += 1
        time.sleep(DELAY_S)
        body = self.images.get(self.path)
        if body is None:
            return self.send_body(404, b"not found", "text/plain")
        return self.send_body(200, body, "image/jpeg")


def run_hosts(n_images: int, conn) -> None:
    """In a process of its own (as real hosts are elsewhere): serve n_images images round-robin over
    4 hosts, send their base URLs; at each "report", send (requests per path, peak connections since
    the last report); at "stop", end."""
    hosts = [type(f"Host{h}", (Host,), {"images": {}, "hits": Counter(), "lock": threading.Lock()})
             for h in range(4)]
    for k in range(n_images):
        hosts[k % 4].images[f"/{k}.jpg"] = jpeg(k)
    with ExitStack() as stack:
        conn.send([stack.enter_context(serve(host)) for host in hosts])
        while conn.recv() == "report":
            conn.send((sum((host.hits for host in hosts), Counter()), max(host.peak for host in hosts)))
            for host in hosts:
                host.peak = 0


@contextmanager
def hosts_elsewhere(n_images: int) -> Iterator[tuple[list[Item], Connection]]:
    """Start run_hosts in another process; yield the items and the pipe to it."""
    mine, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=run_hosts, args=(n_images, theirs), daemon=True)
    process.start()
    urls = mine.recv()
    try:
        yield [Item(f"img{k}", f"{urls[k % 4]}/{k}.jpg") for k in range(n_images)], mine
    finally:
        mine.send("stop")
        process.join(timeout=10)


def report(conn: Connection) -> tuple[Counter, int]:
    conn.send("report")
    return conn.recv()


def sequential(items: list[Item], folder: Path) -> None:
    """The baseline: one requests.get after another, each body written to a file."""
    folder.mkdir(parents=True)
    with requests.Session() as session:
        session.trust_env = False
        for item in items:
            response = session.get(item.url, timeout=30)
            response.raise_for_status()
            (folder / f"{item.id}.jpg").write_bytes(response.content)


def speed(n_images: int, work: Path) -> None:
    with hosts_elsewhere(n_images) as (items, conn):
        start = time.perf_counter()
        sequential(items, work / "sequential")
        plain = time.perf_counter() - start
        report(conn)  # resets the peak
        start = time.perf_counter()
        results = download.download_all(items, work / "ours", CONFIG, work / "ours-store")
        ours = time.perf_counter() - start
        _, peak = report(conn)
    assert all(r.outcome == "ok" for r in results), download.count_outcomes(results)
    print(f"{n_images} images over 4 hosts, {DELAY_S * 1000:.0f} ms each:")
    print(f"  sequential requests loop: {plain:.2f} s")
    print(f"  dareg.download ({CONFIG.workers} workers, per_host {CONFIG.per_host}): {ours:.2f} s")
    print(f"  ratio: {plain / ours:.1f}x; most connections open at once on one host: {peak}")


def killed_then_resumed(items: list[Item], work: Path) -> float:
    """Run in a child, SIGKILL it at half the manifest, resume here; seconds the resume took."""
    store = work / "killed-store"
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(CONFIG.__dict__),
                              json.dumps([[i.id, i.url] for i in items]), str(work / "killed"),
                              str(store)], stderr=subprocess.DEVNULL)
    manifest = store / "manifest.jsonl"
    while child.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= len(items) // 2:
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    if child.wait() != -signal.SIGKILL:
        raise SystemExit("the scrape finished before it could be killed")
    recorded = manifest.read_bytes().count(b"\n")
    print(f"  killed with {recorded} of {len(items)} items in the manifest")
    start = time.perf_counter()
    download.download_all(items, work / "killed", CONFIG, store)
    return time.perf_counter() - start


def resume(n_images: int, work: Path) -> None:
    print(f"{n_images} images, killed halfway and resumed, against an uninterrupted run:")
    with hosts_elsewhere(n_images) as (items, conn):
        resumed_s = killed_then_resumed(items, work)
        hits, _ = report(conn)
        download.download_all(items, work / "whole", CONFIG, work / "whole-store")
    same_manifest = (work / "killed-store" / "manifest.jsonl").read_bytes() == (
        work / "whole-store" / "manifest.jsonl").read_bytes()
    files = {p.name: p.read_bytes() for p in (work / "killed").iterdir()}
    same_files = files == {p.name: p.read_bytes() for p in (work / "whole").iterdir()}
    print(f"  resume took {resumed_s:.2f} s; requests in all: {sum(hits.values())} for {n_images} images "
          f"({sum(count > 1 for count in hits.values())} fetched twice: in flight at the kill)")
    print(f"  same manifest: {same_manifest}; same files: {same_files} ({len(files)} files)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--resume-images", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dareg-scrape-bench-") as tmp:
        speed(args.images, Path(tmp))
        resume(args.resume_images, Path(tmp))


if __name__ == "__main__":
    main()
