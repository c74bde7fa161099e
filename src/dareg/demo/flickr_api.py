"""Loopback stand-in for Flickr's REST API and photo host, as flickrapi 2.4.0 talks to it.

POST /services/rest/ checks the API key and the OAuth1 HMAC-SHA1 signature of every call (with
oauthlib's own signature functions; a nonce seen before gets HTTP 401, as a strict OAuth1 server
may answer a replay) and answers flickr.photos.search in the JSON of
format=json&nojsoncallback=1: upload-date window, paging (at most 500 a page), the 4,000-result cap
(later pages repeat the last one inside it), and the extras asked for. `views` grows with the time
since upload, as on the real service. Photos are served at /{server}/{id}_{secret}_{size}.jpg.
The search filters text, tags and license are accepted and ignored (the demo photos have none).
"""
from __future__ import annotations

import calendar
import json
import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

from oauthlib.common import Request
from oauthlib.oauth1.rfc5849 import signature, utils

from dareg.demo.faults import FaultPlan, send_api_fault, serve_image
from dareg.demo.social import SocialDemo
from dareg.loopback import QuietHandler, serve

SEARCH_CAP = 4000
PER_PAGE_MAX = 500
PHOTO_PATH = re.compile(r"^(/\d+/\d+_[0-9a-f]+)_[a-z]\.jpg$")


@dataclass(frozen=True)
class _State:
    demo: SocialDemo
    api_key: str
    api_secret: str
    cap: int
    now: Callable[[], float]
    faults: FaultPlan
    nonces: set = field(default_factory=set)  # every oauth_nonce seen: a replay is refused


def fail(code: int, message: str) -> dict:
    """Flickr's error answer (sent with HTTP 200, as Flickr does)."""
    return {"stat": "fail", "code": code, "message": message}


def parse_upload_date(text: str) -> int:
    """A Flickr upload-date argument: unix seconds, or a MySQL datetime / date (UTC)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    fmt = "%Y-%m-%d %H:%M:%S" if " " in text else "%Y-%m-%d"
    return calendar.timegm(time.strptime(text, fmt))


def oauth_params(authorization: str) -> dict[str, str]:
    """The oauth_* parameters of an `Authorization: OAuth ...` header; {} for any other header."""
    if not authorization.startswith("OAuth "):
        return {}
    return dict(utils.parse_authorization_header(authorization))


def signature_valid(method: str, uri: str, body: str, authorization: str, secret: str) -> bool:
    """Whether `authorization` carries a valid OAuth1 HMAC-SHA1 signature over the request."""
    oauth = oauth_params(authorization)
    if not oauth:
        return False
    request = Request(uri, method, body, {"Authorization": authorization})
    request.params = signature.collect_parameters(uri_query=urlsplit(uri).query, body=body,
                                                  headers={"Authorization": authorization})
    request.signature = utils.unescape(oauth.get("oauth_signature", ""))
    return (oauth.get("oauth_signature_method") == "HMAC-SHA1"
            and signature.verify_hmac_sha1(request, client_secret=secret))


def photo_json(photo: dict, extras: set[str], base_url: str, now: float) -> dict:
    """One photo as photos.search lists it; views and dateupload are strings, as on Flickr."""
    out = {key: photo[key] for key in ("id", "owner", "secret", "server", "farm", "title")}
    out.update(ispublic=1, isfriend=0, isfamily=0)
    if "views" in extras:
        days = max(now - photo["dateupload"], 0) / 86400
        out["views"] = str(round(photo["view_rate"] * days))
    if "date_upload" in extras:
        out["dateupload"] = str(photo["dateupload"])
    if "owner_name" in extras:
        out["ownername"] = photo["ownername"]
    for size in sorted(e[4:] for e in extras if e.startswith("url_")):
        out[f"url_{size}"] = base_url + photo["url_path"].replace("_n.jpg", f"_{size}.jpg")
        out[f"height_{size}"], out[f"width_{size}"] = photo["height"], photo["width"]
    return out


def search(photos: list[dict], args: dict, cap: int) -> tuple[list[dict], dict]:
    """photos.search: the page's photos and the paging header; pages past `cap` repeat the last."""
    low = parse_upload_date(args.get("min_upload_date", "0"))
    high = parse_upload_date(args.get("max_upload_date", str(2**40)))
    matches = sorted((p for p in photos if low <= p["dateupload"] <= high),
                     key=lambda p: (p["dateupload"], p["id"]),
                     reverse=args.get("sort", "date-posted-desc") != "date-posted-asc")
    per_page = min(max(int(args.get("per_page", 100)), 1), PER_PAGE_MAX)
    page = max(int(args.get("page", 1)), 1)
    reachable = min(len(matches), cap)
    start = min((page - 1) * per_page, max(reachable - 1, 0) // per_page * per_page)
    header = {"page": page, "pages": math.ceil(len(matches) / per_page), "perpage": per_page,
              "total": len(matches)}
    return matches[start:min(start + per_page, reachable)], header


class _FlickrHandler(QuietHandler):
    state: _State
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls

    def do_POST(self):  # noqa: N802 - name fixed by http.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if urlsplit(self.path).path.rstrip("/") != "/services/rest":
            return self.send_body(404, b"Not Found", "text/plain")
        nonce = oauth_params(self.headers.get("Authorization", "")).get("oauth_nonce")
        if nonce in self.state.nonces:  # RFC 5849 3.3: a server may refuse a nonce it has seen
            return self.send_body(401, b"oauth_problem=nonce_used", "text/plain")
        if nonce:
            self.state.nonces.add(nonce)
        fault = self.state.faults.next_api_fault()
        if fault:
            return send_api_fault(self, fault)
        answer = self._answer(body, dict(parse_qsl(body)))
        return self.send_body(200, json.dumps(answer).encode(), "application/json; charset=utf-8")

    def _answer(self, body: str, args: dict) -> dict:
        authorization = self.headers.get("Authorization", "")
        oauth = oauth_params(authorization)
        if oauth.get("oauth_consumer_key", args.get("api_key")) != self.state.api_key:
            return fail(100, "Invalid API Key (Key has invalid format)")
        uri = f"http://{self.headers['Host']}{self.path}"
        if not signature_valid("POST", uri, body, authorization, self.state.api_secret):
            return fail(96, "Invalid signature")
        if args.get("method") != "flickr.photos.search":
            return fail(112, f"Method \"{args.get('method')}\" not found")
        try:
            page, header = search(self.state.demo.items, args, self.state.cap)
        except ValueError:
            return fail(3, "Invalid argument: a date or a number could not be read")
        extras = {e.strip() for e in args.get("extras", "").split(",") if e.strip()}
        base_url, now = f"http://{self.headers['Host']}", self.state.now()
        photos = [photo_json(p, extras, base_url, now) for p in page]
        return {"photos": {**header, "photo": photos}, "stat": "ok"}

    def do_GET(self):  # noqa: N802 - name fixed by http.server
        url = urlsplit(self.path)
        match = PHOTO_PATH.match(url.path)
        served = self.state.demo.files.get(match.group(1) + "_n.jpg") if match else None
        return serve_image(self, self.state.faults, url.path, url.query, served)


@contextmanager
def flickr_server(demo: SocialDemo, api_key: str, api_secret: str, cap: int = SEARCH_CAP,
                  now: Callable[[], float] = time.time, faults: FaultPlan | None = None) -> Iterator[str]:
    """Serve `demo` as Flickr on 127.0.0.1; yield the base URL (REST at base + /services/rest/).

    `cap` is the most results a search reaches; `now` is the clock that views are counted to;
    `faults` plans errors for API calls and images (see dareg.demo.faults).
    """
    state = _State(demo=demo, api_key=api_key, api_secret=api_secret, cap=cap, now=now,
                   faults=faults or FaultPlan())
    handler = type("FlickrHandler", (_FlickrHandler,), {"state": state})
    with serve(handler) as base_url:
        yield base_url
