"""Flickr scraper: flickrapi 2.4.0 photos.search over an upload window -> downloads -> photos.csv rows.

Flickr answers at most 4,000 results a query (later pages repeat), so the window is halved until
each slice's total fits; pages are walked by hand (flickrapi's walk() breaks on Python >= 3.9).
flickrapi posts every call through the session it is given; ours asks again after a connection
error, HTTP 429 or 5xx (waiting Retry-After when the answer has one) and prepares each attempt
anew, so every retry carries a fresh OAuth nonce and timestamp (a replayed nonce may be refused).
Credentials arrive as arguments and are handed to flickrapi only; nothing here logs or writes them.
"""
from __future__ import annotations

import calendar
import itertools
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import flickrapi
import pandas as pd
import requests

from dareg import download
from dareg.errors import DataError
from dareg.params import Download, Flickr

CSV_COLUMNS = ["id", "owner", "views", "date_upload", "scraped_at", "url", "file", "shard", "offset", "size", "sha256"]
SEARCH_CAP = 4000
PHOTO_ID = re.compile(r"^\d{1,20}$")
AUTH_CODES = {"96", "97", "98", "100"}  # bad signature, missing signature, bad login, bad key
TRANSIENT_CODES = {"105", "106"}  # service unavailable, write failed: sent with HTTP 200


@dataclass(frozen=True)
class Search:
    """One photos.search: the inclusive upload window (unix seconds) and the filters."""

    min_upload: int
    max_upload: int
    text: str
    tags: str
    license: str
    content_type: int
    url_size: str
    per_page: int
    max_photos: int
    result_cap: int = SEARCH_CAP

    @classmethod
    def from_params(cls, cfg: Flickr) -> "Search":
        """The search the `flickr` params describe, with the window's dates parsed."""
        return cls(parse_date(cfg.min_upload_date, "flickr.min_upload_date"),
                   parse_date(cfg.max_upload_date, "flickr.max_upload_date"), cfg.text, cfg.tags,
                   cfg.license, cfg.content_type, cfg.url_size, cfg.per_page, cfg.max_photos)


def parse_date(value: str | int, key: str) -> int:
    """Unix seconds from unix seconds, 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' (UTC); `key` names it."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    raise DataError(f"{key}: {value!r} is not a date; write YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or unix seconds")


def connect(api_key: str, api_secret: str, rest_url: str, session: requests.Session,
            timeout: float, retries: int = 0, backoff: float = 0.0) -> flickrapi.FlickrAPI:
    """A flickrapi client that signs every call, keeps no token file and posts through `session`
    (as `ResigningSession`: up to `retries` retries, each signed anew)."""
    flickr = flickrapi.FlickrAPI(api_key, api_secret, format="parsed-json", store_token=False,
                                 timeout=timeout)
    flickr.REST_URL = rest_url  # a class attribute of FlickrAPI; set per instance
    # set per instance: else one class-wide Session that trusts proxy variables
    flickr.flickr_oauth.session = ResigningSession(session, retries, backoff)
    return flickr


class ResigningSession:
    """`session`, for flickrapi's POSTs to the REST URL, with retries that sign each attempt anew.

    A connection error, a lost answer, HTTP 429 or 5xx is asked again up to `retries` times, after
    the answer's Retry-After where it has one (at most download.MAX_RETRY_AFTER_S), else after
    download.wait_to_retry's jittered backoff from `backoff`, as for images. Each attempt goes
    through `requests.Session.post` again, which applies flickrapi's OAuth1 auth again: a fresh
    nonce and timestamp (urllib3's Retry, below the auth, would resend the same signed bytes).
    POST is safe to repeat here: the scraper only reads (photos.search). The last answer is
    passed on, so flickrapi still names its status once the retries are spent."""

    def __init__(self, session: requests.Session, retries: int, backoff: float):
        self.session, self.retries, self.backoff = session, retries, backoff

    def post(self, url: str, **kwargs) -> requests.Response:
        for attempt in range(self.retries):
            try:
                response = self.session.post(url, **kwargs)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError):
                retry_after = 0.0
            else:
                if response.status_code not in download.RETRY_STATUSES:
                    return response
                retry_after = download.retry_after_seconds(response.headers.get("Retry-After"))
            download.wait_to_retry(retry_after, self.backoff, attempt)
        return self.session.post(url, **kwargs)  # the last try: its answer, or its error, stands

    def __getattr__(self, name: str):  # anything else flickrapi might use: the session's own
        return getattr(self.session, name)


class Pacer:
    """Spaces calls at least 1 / per_second seconds apart (Flickr allows 3,600 calls an hour), and
    says how often a call that Flickr failed for a passing reason is tried again (`retries`,
    `backoff`)."""

    def __init__(self, per_second: float, retries: int = 0, backoff: float = 0.5):
        self.interval, self.last = 1.0 / per_second, float("-inf")
        self.retries, self.backoff = retries, backoff

    def wait(self) -> None:
        time.sleep(max(self.last + self.interval - time.monotonic(), 0.0))
        self.last = time.monotonic()


def transient(err: Exception) -> bool:
    """Whether Flickr's answer says try later: 105/106 (service unavailable / write operation
    failed), sent with HTTP 200, so the session's retries (by HTTP status) never see them."""
    return str(getattr(err, "code", "")) in TRANSIENT_CODES


def search_call(flickr: flickrapi.FlickrAPI, search: Search, low: int, high: int, page: int) -> dict:
    """One photos.search call for photos uploaded in [low, high]; raises what flickrapi raises."""
    return flickr.photos.search(
        min_upload_date=low, max_upload_date=high, page=page, per_page=search.per_page,
        text=search.text or None, tags=search.tags or None, license=search.license or None,
        content_type=search.content_type, sort="date-posted-asc",
        extras=f"views,date_upload,owner_name,url_{search.url_size}")["photos"]


def search_page(flickr: flickrapi.FlickrAPI, search: Search, low: int, high: int, page: int,
                pacer: Pacer) -> dict:
    """One page of photos uploaded in [low, high]: Flickr's `photos` object (page, pages, total...).

    Flickr's transient errors are retried up to pacer.retries times after a random share of
    pacer.backoff * 2**attempt seconds (full jitter); HTTP-level retries happen below, in the
    session (connect)."""
    for attempt in itertools.count():
        pacer.wait()
        try:
            return search_call(flickr, search, low, high, page)
        except (flickrapi.exceptions.FlickrError, requests.RequestException) as err:
            if attempt < pacer.retries and transient(err):
                time.sleep(random.uniform(0, pacer.backoff * 2**attempt))
                continue
            if isinstance(err, requests.RequestException):
                raise DataError(f"Flickr unreachable ({type(err).__name__}); check flickr.rest_url") from None
            hint = ("check FLICKR_API_KEY and FLICKR_API_SECRET" if str(err.code) in AUTH_CODES
                    else "check the flickr params and flickr.rest_url")
            raise DataError(f"Flickr photos.search failed ({err}); {hint}") from None


def window_photos(flickr: flickrapi.FlickrAPI, search: Search, low: int, high: int,
                  pacer: Pacer) -> Iterator[dict]:
    """Every photo uploaded in [low, high], halving the window while its total exceeds the cap."""
    first = search_page(flickr, search, low, high, 1, pacer)
    if int(first["total"]) > search.result_cap and high > low:
        middle = (low + high) // 2
        yield from window_photos(flickr, search, low, middle, pacer)
        yield from window_photos(flickr, search, middle + 1, high, pacer)
        return
    yield from first["photo"]
    reachable = min(int(first["pages"]), -(-search.result_cap // search.per_page))
    for page in range(2, reachable + 1):
        yield from search_page(flickr, search, low, high, page, pacer)["photo"]


def photo_row(photo: dict, url_size: str, scraped_at: str) -> dict | str:
    """The photos.csv fields of one listed photo, or the reason it is skipped."""
    url = photo.get(f"url_{url_size}")
    if not PHOTO_ID.match(str(photo.get("id", ""))):
        return "bad_id"
    if not url:
        return "no_url"
    return {"id": str(photo["id"]), "owner": photo["owner"], "views": int(photo["views"]),
            "date_upload": int(photo["dateupload"]), "scraped_at": scraped_at, "url": url}


def collect(flickr: flickrapi.FlickrAPI, search: Search, pacer: Pacer,
            clock: Callable[[], float] = time.time) -> tuple[list[dict], Counter, int]:
    """Up to search.max_photos rows, first of each id, scraped_at read from `clock` as each photo
    is listed; skip counts by reason; photos listed."""
    rows, skipped, seen, listed = [], Counter(), set(), 0
    for photo in window_photos(flickr, search, search.min_upload, search.max_upload, pacer):
        listed += 1
        row = ("repeated_id" if photo.get("id") in seen
               else photo_row(photo, search.url_size, download.utc_iso(clock())))
        seen.add(photo.get("id"))
        if isinstance(row, str):
            skipped[row] += 1
            continue
        rows.append(row)
        if len(rows) >= search.max_photos:
            break
    return rows, skipped, listed


def scrape(flickr: flickrapi.FlickrAPI, search: Search, out_dir: str | Path, config: Download,
           calls_per_second: float, store: str | Path,
           clock: Callable[[], float] = time.time) -> tuple[pd.DataFrame, dict]:
    """Search, download the images (through the download store `store`), packed into tar shards
    in out_dir/shards; the photos.csv table (scraped_at from `clock`) and metrics."""
    pacer = Pacer(calls_per_second, config.retries, config.backoff)
    rows, skipped, listed = collect(flickr, search, pacer, clock)
    items = [download.Item(row["id"], row["url"]) for row in rows]
    results, packed = download.download_all(items, Path(out_dir), config, store,
                                              desc="flickr images", prefix="flickr")
    kept = download.kept_rows(rows, results, packed)
    return pd.DataFrame(kept, columns=CSV_COLUMNS), download.scrape_metrics(listed, dict(skipped), results)
