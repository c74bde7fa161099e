"""Loopback stand-in for Reddit's OAuth API and image host, speaking the wire format praw 8 expects.

Serves: POST /api/v1/access_token (client credentials over HTTP Basic), GET /r/{sub}/{top,hot,new}
and GET /api/info/ (bearer token required, Listing JSON, X-Ratelimit-* headers), and the images
under /i/ (public, like i.redd.it). Not a model of Reddit's ranking: top sorts by score, hot by
Reddit's classic hot formula, new by creation time.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from dareg.demo.faults import FaultPlan, send_api_fault, serve_image
from dareg.demo.social import SocialDemo
from dareg.loopback import QuietHandler, serve

WINDOW_S = 600          # Reddit's rate-limit window
PAGE_MAX = 100          # items per listing page, whatever `limit` asks for
LISTING_MAX = 1000      # listings end near 1,000 items
TIME_FILTERS = {"hour": 3600, "day": 86400, "week": 604800, "month": 2592000, "year": 31536000}
LISTING_PATH = re.compile(r"^/r/([A-Za-z0-9_]+)/(top|hot|new)/?$")


@dataclass
class _State:
    """What one running stand-in knows: the posts, the credentials, tokens issued, requests used."""

    demo: SocialDemo
    client_id: str
    client_secret: str
    quota: int
    now: Callable[[], float] = time.time
    faults: FaultPlan = field(default_factory=FaultPlan)
    tokens: set[str] = field(default_factory=set)
    used: int = 0
    window_start: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_request(self) -> tuple[dict[str, str], bool]:
        """Count one API request; return Reddit's X-Ratelimit-* headers and whether it is over quota."""
        with self.lock:
            elapsed = time.monotonic() - self.window_start
            if elapsed >= WINDOW_S:
                self.window_start, self.used, elapsed = time.monotonic(), 0, 0.0
            self.used += 1
            return {"X-Ratelimit-Used": str(self.used),
                    "X-Ratelimit-Remaining": f"{max(self.quota - self.used, 0):.1f}",
                    "X-Ratelimit-Reset": str(int(WINDOW_S - elapsed))}, self.used > self.quota


def _hot(post: dict) -> float:
    """Reddit's classic hot rank: log10 of the score plus creation time in 12.5-hour units."""
    score = post["score"]
    sign = (score > 0) - (score < 0)
    return sign * math.log10(max(abs(score), 1)) + (post["created_utc"] - 1134028003) / 45000


def listing_order(posts: list[dict], sort: str, time_filter: str, now: float) -> list[dict]:
    """Posts of one subreddit in listing order, `t` applied to `top`, cut at LISTING_MAX."""
    if sort == "top" and time_filter in TIME_FILTERS:
        posts = [p for p in posts if p["created_utc"] >= now - TIME_FILTERS[time_filter]]
    keys = {"top": lambda p: (-p["score"], p["id"]), "hot": lambda p: (-_hot(p), p["id"]),
            "new": lambda p: (-p["created_utc"], p["id"])}
    return sorted(posts, key=keys[sort])[:LISTING_MAX]


def listing(children: list[dict], after: str | None, base_url: str) -> dict:
    """Reddit's Listing JSON around t3 children; relative links are made absolute on `base_url`."""
    wrapped = [{"kind": "t3", "data": {**post, "url": base_url + post["url"]
                                       if post["url"].startswith("/") else post["url"]}}
               for post in children]
    return {"kind": "Listing", "data": {"after": after, "dist": len(wrapped), "modhash": None,
                                        "geo_filter": "", "children": wrapped, "before": None}}


def page_after(ordered: list[dict], after: str | None, limit: int) -> tuple[list[dict], str | None]:
    """One page of `limit` items after the fullname `after`; the next page's `after` or None."""
    start = 0
    if after:
        names = [post["name"] for post in ordered]
        start = names.index(after) + 1 if after in names else len(ordered)
    page = ordered[start:start + limit]
    more = start + limit < len(ordered)
    return page, (page[-1]["name"] if page and more else None)


class _RedditHandler(QuietHandler):
    state: _State
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls

    def _json(self, status: int, payload: dict, headers: dict | None = None):
        self.send_body(status, json.dumps(payload).encode(), "application/json; charset=UTF-8", headers)

    def do_POST(self):  # noqa: N802 - name fixed by http.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if urlsplit(self.path).path.rstrip("/") != "/api/v1/access_token":
            return self._json(404, {"message": "Not Found", "error": 404})
        if self._basic_auth() != (self.state.client_id, self.state.client_secret):
            return self._json(401, {"message": "Unauthorized", "error": 401})
        if parse_qs(body).get("grant_type") != ["client_credentials"]:
            return self._json(200, {"error": "unsupported_grant_type"})
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.tokens.add(token)
        return self._json(200, {"access_token": token, "token_type": "bearer",
                                "expires_in": 86400, "scope": "*"})

    def _basic_auth(self) -> tuple[str, str] | None:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password

    def _bearer_ok(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token in self.state.tokens

    def do_GET(self):  # noqa: N802 - name fixed by http.server
        url = urlsplit(self.path)
        if url.path.startswith("/i/"):
            return serve_image(self, self.state.faults, url.path, url.query, self.state.demo.files.get(url.path))
        if not self._bearer_ok():
            return self._json(401, {"message": "Unauthorized", "error": 401})
        fault = self.state.faults.next_api_fault()
        if fault:
            return send_api_fault(self, fault)
        headers, over_quota = self.state.count_request()
        if over_quota:
            return self._json(429, {"message": "Too Many Requests", "error": 429}, headers)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        status, payload = self._api(url.path, query)
        return self._json(status, payload, headers)

    def _api(self, path: str, query: dict) -> tuple[int, dict]:
        base_url = f"http://{self.headers['Host']}"
        posts = self.state.demo.items
        if path.rstrip("/") == "/api/info":
            wanted = [name for name in query.get("id", "").split(",") if name]
            if len(wanted) > PAGE_MAX:
                return 400, {"message": "Bad Request", "error": 400}
            by_name = {post["name"]: post for post in posts}
            return 200, listing([by_name[n] for n in wanted if n in by_name], None, base_url)
        match = LISTING_PATH.match(path)
        if not match:
            return 404, {"message": "Not Found", "error": 404}
        subreddit, sort = match.group(1).lower(), match.group(2)
        ordered = listing_order([p for p in posts if p["subreddit"].lower() == subreddit], sort,
                                query.get("t", "day"), self.state.now())
        limit = min(max(int(query.get("limit", 25)), 1), PAGE_MAX)
        page, after = page_after(ordered, query.get("after"), limit)
        return 200, listing(page, after, base_url)


@contextmanager
def reddit_server(demo: SocialDemo, client_id: str, client_secret: str, quota: int = 1000,
                  faults: FaultPlan | None = None, now: Callable[[], float] = time.time) -> Iterator[str]:
    """Serve `demo` as Reddit on 127.0.0.1; yield the base URL for reddit_url/oauth_url/short_url.

    `quota` is the requests allowed per 10-minute window, announced in X-Ratelimit-* headers
    (prawcore paces itself to spread them over the window; Reddit's own is 1,000). `faults` plans
    errors for API calls and images (see dareg.demo.faults); `now` is the clock that `top`'s time
    filters count back from (the rate-limit window runs on the monotonic clock).
    """
    state = _State(demo=demo, client_id=client_id, client_secret=client_secret, quota=quota,
                   now=now, faults=faults or FaultPlan())
    handler = type("RedditHandler", (_RedditHandler,), {"state": state})
    with serve(handler) as base_url:
        yield base_url
