"""The one image downloader behind both scrapers: retries, limits, full decode, dedupe, atomic files.

Every item ends with exactly one outcome from OUTCOMES. A file is written (atomically) only for `ok`;
its name is the item's id, checked against SAFE_ID, plus the extension of the decoded format, so
nothing a server sends can choose where a file goes. Identical bytes under several ids keep the
first id in input order (not completion order) and count the rest as `duplicate`. Files and a
manifest go to a download_store.Store first (so a killed run resumes and a rerun fetches nothing);
the kept files are then linked into the output folder.
"""
from __future__ import annotations

import io
import itertools
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import fields, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from dareg import io as atomic
from dareg import progress, shards
from dareg.download_store import Item, Result, Store
from dareg.errors import DataError
from dareg.hashes import sha256_bytes
from dareg.params import Download, utc_seconds

OUTCOMES = ("ok", "duplicate", "not_found", "not_image", "too_large", "corrupt", "timeout", "error")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}
CHUNK = 65536


class Failed(Exception):
    """An attempt that ends the item with `outcome`; `retry_after` set means it may be retried."""

    def __init__(self, outcome: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.outcome, self.detail, self.retry_after = outcome, detail, retry_after


def make_session(pool_size: int) -> requests.Session:
    """A pooled session that ignores proxy and CA-bundle variables (trust_env off), no auto-retry."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def retry_after_seconds(value: str | None) -> float:
    """Seconds asked by a Retry-After header (delta seconds or an HTTP date); 0 if absent or bad."""
    if not value:
        return 0.0
    if value.strip().isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _check_response(response: requests.Response, max_bytes: int) -> None:
    """Raise Failed for a status, Content-Type or Content-Length that rules the body out."""
    status = response.status_code
    if status in RETRY_STATUSES:
        raise Failed("error", f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
    if status in (404, 410):
        raise Failed("not_found", f"HTTP {status}")
    if status != 200:
        raise Failed("error", f"HTTP {status}")
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise Failed("not_image", f"Content-Type {kind}")
    if int(response.headers.get("Content-Length") or 0) > max_bytes:
        raise Failed("too_large", f"Content-Length over {max_bytes} bytes")


def fetch_once(session: requests.Session, url: str, config: Download) -> bytes:
    """One GET of `url`, streamed and cut off past config.max_bytes; raises Failed."""
    try:
        with session.get(url, stream=True, timeout=(config.connect_timeout, config.read_timeout)) as response:
            _check_response(response, config.max_bytes)
            body = bytearray()
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > config.max_bytes:
                    raise Failed("too_large", f"body over {config.max_bytes} bytes")
            return bytes(body)
    except requests.Timeout as err:
        raise Failed("timeout", type(err).__name__, retry_after=0.0) from None
    except requests.ConnectionError as err:
        timed_out = bool(err.args) and isinstance(err.args[0], ReadTimeoutError)
        raise Failed("timeout" if timed_out else "error", type(err).__name__, retry_after=0.0) from None
    except requests.RequestException as err:
        raise Failed("error", type(err).__name__) from None


def fetch(session: requests.Session, url: str, config: Download, slot: threading.Semaphore) -> bytes:
    """GET with up to config.retries retries: exponential backoff with full jitter, or Retry-After."""
    for attempt in itertools.count():
        try:
            with slot:  # the per-host limit; released while waiting to retry
                return fetch_once(session, url, config)
        except Failed as failure:
            if failure.retry_after is None or attempt >= config.retries:
                raise
            wait_to_retry(failure.retry_after, config.backoff, attempt)


def wait_to_retry(retry_after: float, backoff: float, attempt: int) -> None:
    """Sleep the longer of `retry_after` and a random share of backoff * 2**attempt (full jitter),
    at most MAX_RETRY_AFTER_S."""
    time.sleep(min(max(retry_after, random.uniform(0, backoff * 2**attempt)), MAX_RETRY_AFTER_S))


def image_extension(data: bytes) -> str:
    """Fully decode `data` (load(), which catches truncation that verify() misses); its extension."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and image.width * image.height > limit:
                raise Failed("too_large", f"{image.width}x{image.height} pixels, over {limit}")
            if image.format not in EXTENSIONS:
                raise Failed("not_image", f"unsupported format {image.format}")
            image.load()
            return EXTENSIONS[image.format]
    except UnidentifiedImageError:
        raise Failed("not_image", "not a recognised image") from None
    except Image.DecompressionBombError as err:
        raise Failed("too_large", str(err)) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise Failed("corrupt", str(err)[:200]) from None


def download_one(session: requests.Session, item: Item, store: Store, config: Download,
                 slot: threading.Semaphore) -> Result:
    """Fetch, check and atomically write one item into the store, then record it; never raises."""
    if not SAFE_ID.match(item.id):
        return Result(item.id, item.url, "error", detail="unsafe id (allowed: letters, digits, _ and -)")
    if urlsplit(item.url).scheme not in ("http", "https"):
        return Result(item.id, item.url, "error", detail="not an http(s) URL")
    try:
        data = fetch(session, item.url, config, slot)
        name = item.id + image_extension(data)
    except Failed as failure:
        result = Result(item.id, item.url, failure.outcome, detail=failure.detail)
        store.record(result, None)
        return result
    atomic.write_bytes(store.files / name, data)
    result = Result(item.id, item.url, "ok", file=name, sha256=sha256_bytes(data))
    store.record(result, len(data))
    return result


def drop_duplicates(results: list[Result]) -> list[Result]:
    """Keep the first of each id and of each sha256 in input order; mark the later ones duplicate."""
    first_by_hash, seen_ids, kept = {}, set(), []
    for result in results:
        if result.id in seen_ids:
            result = replace(result, outcome="duplicate", detail="repeated id")
        elif result.outcome == "ok" and result.sha256 in first_by_hash:
            result = replace(result, outcome="duplicate", file=None,
                             detail=f"same bytes as {first_by_hash[result.sha256]}")
        elif result.outcome == "ok":
            first_by_hash[result.sha256] = result.id
        seen_ids.add(result.id)
        kept.append(result)
    return kept


def fetch_missing(items: list[Item], store: Store, config: Download, session: requests.Session,
                  desc: str) -> dict[str, Result]:
    """Results by id for the first item of each id: from the manifest where reusable, else fetched."""
    done, first = store.entries(), {}
    for item in items:
        first.setdefault(item.id, item)
    by_id = {key: Result(**{f.name: done[key][f.name] for f in fields(Result)})
             for key, item in first.items() if store.reusable(done.get(key), item.url)}
    todo = [item for key, item in first.items() if key not in by_id]
    slots = {host: threading.Semaphore(config.per_host) for host in {urlsplit(i.url).netloc for i in todo}}
    with ThreadPoolExecutor(max_workers=config.workers) as pool, \
            progress.bar(total=len(todo), desc=desc, unit="img", mininterval=1.0) as bar:
        futures = [pool.submit(download_one, session, item, store, config,
                               slots[urlsplit(item.url).netloc]) for item in todo]
        for future in as_completed(futures):
            result = future.result()
            by_id[result.id] = result
            bar.update()
    return by_id


def download_all(items: list[Item], folder: str | Path, config: Download, store: str | Path,
                 session: requests.Session | None = None, desc: str = "images",
                 prefix: str = "images") -> tuple[list[Result], dict[str, dict]]:
    """Download `items` through the store at `store` and pack the kept files, in input order,
    into tar shards in `folder` (folder/shards/<prefix>-NNNNNN.tar and its index; dareg.shards).

    Uses config.workers threads, at most config.per_host requests per host at once; items the
    store's manifest settles are not requested. Returns one Result per item, in input order, and
    each kept item's shard index row by id.
    """
    folder, store = Path(folder), Store(store)
    folder.mkdir(parents=True, exist_ok=True)
    by_id = fetch_missing(items, store, config, session or make_session(config.workers), desc)
    store.compact()
    results = drop_duplicates([by_id[item.id] for item in items])
    packed = {}
    with shards.ShardWriter(folder, prefix) as writer:
        for result in results:
            if result.outcome == "ok":
                packed[result.id] = writer.add(result.file, (store.files / result.file).read_bytes())
    return results, packed


SHARD_FIELDS = ("shard", "offset", "size", "sha256")


def count_outcomes(results: list[Result]) -> dict[str, int]:
    """Results counted by outcome, every outcome listed (zeros included), in OUTCOMES order."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[result.outcome] += 1
    return counts


def utc_iso(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC to the second, e.g. 2026-11-23T11:00:00Z (scraped_at)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def scrape_clock(source: str, demo_now: str) -> Callable[[], float]:
    """The clock a scrape reads "now" from: the real one for source `api`; for the demo,
    `demo_now` (ISO 8601 UTC, checked when params load), fixed, so that two demo runs write the
    same tables."""
    fixed = utc_seconds(demo_now, "demo_now")
    return time.time if source == "api" else lambda: fixed


def kept_rows(rows: list[dict], results: list[Result], packed: dict[str, dict]) -> list[dict]:
    """Rows whose image came out `ok`, each with `file` (its member name in the shards), shard,
    offset, size and sha256 (what downstream stages depend on instead of the images); input
    order."""
    kept = {result.id: result for result in results if result.outcome == "ok"}
    out = []
    for row in rows:
        if row["id"] in kept:
            where = packed[row["id"]]
            if where["sha256"] != kept[row["id"]].sha256:
                raise DataError(f"download store: {where['member']} changed on disk after it was "
                                f"downloaded; delete it from the store and scrape again")
            out.append({**row, "file": where["member"], **{k: where[k] for k in SHARD_FIELDS}})
    return out


def scrape_metrics(listed: int, skipped: dict[str, int], results: list[Result]) -> dict:
    """The metrics a scrape stage reports: listed, skipped by reason, outcomes, kept."""
    outcomes = count_outcomes(results)
    return {"listed": listed, "skipped": dict(sorted(skipped.items())),
            "downloaded": len(results), "outcomes": outcomes, "kept": outcomes["ok"]}
