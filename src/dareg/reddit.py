"""Reddit scraper: praw 8 listings (or id look-ups) -> direct image posts -> downloads -> posts.csv rows.

Credentials arrive as arguments and are handed to praw only; nothing here logs or writes them.
"""
from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar
from urllib.parse import urlsplit

import pandas as pd
import praw
import prawcore
import requests

from dareg import download
from dareg.errors import DataError
from dareg.params import Download

CSV_COLUMNS = ["id", "url", "score", "num_comments", "created_utc", "subreddit", "scraped_at", "file", "shard", "offset", "size", "sha256"]
IMAGE_HOSTS = frozenset({"i.redd.it", "i.imgur.com"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
POST_ID = re.compile(r"^[a-z0-9]{1,13}$")
INFO_BATCH = 100  # ids per /api/info/ request, Reddit's most
T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    """Which posts to list: `limit` per subreddit listing, or exactly `ids` when given."""

    subreddits: list[str]
    listing: str
    time_filter: str
    limit: int
    ids: list[str] | None = None


def connect(client_id: str, client_secret: str, user_agent: str, base_url: str | None,
            session: requests.Session) -> praw.Reddit:
    """A read-only praw client; `base_url` None means the real service, else a stand-in's URL."""
    endpoints = {} if base_url is None else {"reddit_url": base_url, "oauth_url": base_url,
                                             "short_url": base_url}
    return praw.Reddit(client_id=client_id, client_secret=client_secret, user_agent=user_agent,
                       check_for_updates=False, requestor_kwargs={"session": session}, **endpoints)


@contextmanager
def api_errors(doing: str) -> Iterator[None]:
    """Turn prawcore failures into a DataError saying what was being done and what to check."""
    try:
        yield
    except prawcore.exceptions.ResponseException as err:
        status = err.response.status_code
        hint = ("check REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET" if status in (401, 403)
                else "check reddit.subreddits / reddit.ids_csv and reddit.base_url")
        raise DataError(f"Reddit answered HTTP {status} while {doing}; {hint}") from None
    except prawcore.exceptions.PrawcoreException as err:
        raise DataError(f"Reddit request failed while {doing} ({type(err).__name__}); "
                        "check reddit.base_url and the network") from None


def link_kind(post: dict) -> str:
    """'image' for a direct image link, else the reason to skip the post (gallery, video, ...)."""
    url = urlsplit(post.get("url") or "")
    if post.get("is_self"):
        return "self"
    if post.get("is_video") or url.netloc == "v.redd.it":
        return "video"
    if post.get("is_gallery") or url.path.startswith("/gallery/"):
        return "gallery"
    if url.netloc.endswith("imgur.com") and url.path.startswith(("/a/", "/gallery/")):
        return "album"
    if url.scheme in ("http", "https") and (url.netloc in IMAGE_HOSTS
                                            or url.path.lower().endswith(IMAGE_SUFFIXES)):
        return "image"
    return "not_image_link"


def retry_429(call: Callable[[], T], config: Download) -> T:
    """`call()`, asked again after a 429 (Reddit's rate limit) up to config.retries times in a row,
    waiting Retry-After or the jittered backoff, whichever is longer (prawcore retries 5xx itself)."""
    for attempt in itertools.count():
        try:
            return call()
        except prawcore.exceptions.TooManyRequests as err:
            if attempt >= config.retries:
                raise
            download.wait_to_retry(download.retry_after_seconds(err.retry_after), config.backoff, attempt)


def submissions(reddit: praw.Reddit, query: Query, config: Download) -> Iterator[praw.models.Submission]:
    """The listed submissions: each subreddit's listing, or the ids, 100 a request through /api/info/.

    A praw ListingGenerator can be asked again after a failed page, so a 429 loses no place."""
    if query.ids is not None:
        with api_errors(f"looking up {len(query.ids)} ids through /api/info/"):
            for start in range(0, len(query.ids), INFO_BATCH):
                names = [f"t3_{post_id}" for post_id in query.ids[start:start + INFO_BATCH]]
                yield from retry_429(lambda: list(reddit.info(fullnames=names)), config)
        return
    for name in query.subreddits:
        subreddit = reddit.subreddit(name)
        listing = (subreddit.top(time_filter=query.time_filter, limit=query.limit)
                   if query.listing == "top" else getattr(subreddit, query.listing)(limit=query.limit))
        with api_errors(f"reading r/{name}/{query.listing}"):
            while (submission := retry_429(lambda: next(listing, None), config)) is not None:
                yield submission


def post_row(submission: praw.models.Submission, scraped_at: str) -> dict:
    """The posts.csv fields of one submission, read from the fetched data only (no lazy fetch)."""
    data = vars(submission)
    return {"id": data["id"], "url": data["url"], "score": int(data["score"]),
            "num_comments": int(data["num_comments"]), "created_utc": int(data["created_utc"]),
            "subreddit": str(data["subreddit"]), "scraped_at": scraped_at}


def image_posts(listed: Iterable[praw.models.Submission],
                clock: Callable[[], float] = time.time) -> tuple[list[dict], Counter, int]:
    """Rows of direct-image posts (first of each id; scraped_at read from `clock` as each is
    listed), skip counts by reason, and how many were listed."""
    rows, skipped, seen, count = [], Counter(), set(), 0
    for submission in listed:
        count += 1
        data = vars(submission)
        kind = "repeated_id" if data["id"] in seen else link_kind(data)
        seen.add(data["id"])
        if kind == "image":
            rows.append(post_row(submission, download.utc_iso(clock())))
        else:
            skipped[kind] += 1
    return rows, skipped, count


def read_ids(path: str | Path) -> list[str]:
    """Submission ids from a CSV's `id` column (a leading t3_ is dropped), checked and de-duplicated."""
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot read ({err}); reddit.ids_csv must name a CSV file") from None
    if "id" not in frame.columns:
        raise DataError(f"{path}: no column 'id'; reddit.ids_csv needs a column of submission ids")
    ids = [str(value).strip().lower().removeprefix("t3_") for value in frame["id"].dropna()]
    bad = [value for value in ids if not POST_ID.match(value)]
    if bad:
        raise DataError(f"{path}: id {bad[0]!r} is not a Reddit submission id (base-36, like 2ab3cd)")
    return list(dict.fromkeys(ids))


def scrape(reddit: praw.Reddit, query: Query, out_dir: str | Path, config: Download,
           store: str | Path, clock: Callable[[], float] = time.time) -> tuple[pd.DataFrame, dict]:
    """List posts, download their images (through the download store `store`), packed into tar
    shards in out_dir/shards; the posts.csv table (scraped_at from `clock`) and metrics."""
    rows, skipped, listed = image_posts(submissions(reddit, query, config), clock)
    if query.ids is not None:
        skipped["missing_from_api"] = len(query.ids) - listed  # /api/info/ omits unknown ids
    items = [download.Item(row["id"], row["url"]) for row in rows]
    results, packed = download.download_all(items, Path(out_dir), config, store,
                                              desc="reddit images", prefix="reddit")
    kept = download.kept_rows(rows, results, packed)
    metrics = download.scrape_metrics(listed, {k: v for k, v in skipped.items() if v}, results)
    return pd.DataFrame(kept, columns=CSV_COLUMNS), metrics
