"""Synthetic Reddit posts and Flickr photos whose images carry their popularity, for the offline demo.

Each item has two latent traits drawn N(0, 1): `u`, drawn as the objects (more, larger, more
saturated objects for larger u), and `v`, drawn as the background brightness. The label depends on
them differently per domain (a shifted content->label relationship):

    reddit popularity  = u + 0.35 e                    (brightness is a nuisance)
    flickr popularity  = 0.45 u + 0.9 v + owner + 0.3 e

and the styles differ visibly (Reddit: warm gradients and round objects; Flickr: cool striped
backgrounds and boxes). A model trained on Reddit alone therefore misses half of Flickr's signal.
This module only builds data; `reddit_api` and `flickr_api` serve it in the real wire formats.
"""
from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

from dareg.errors import DataError

WIDTH, HEIGHT = 160, 120
REDDIT_KIND_SHARES = {"image": 0.88, "gallery": 0.04, "video": 0.03, "self": 0.03, "album": 0.02}
REDDIT_FAULTS = {"missing": 4, "not_image": 1, "truncated": 1, "duplicate": 1}
FLICKR_FAULTS = {"missing": 3, "not_image": 1, "truncated": 1, "duplicate": 1}
MIN_ITEMS = 20  # room for the planted faults and enough good images
REDDIT_EPOCH = (1356998400, 1420070400)  # 2013-01-01 .. 2015-01-01, around the Deza & Parikh set
DEMO_ORIGIN = "http://demo.invalid"  # the stand-ins' origin in the tables (RFC 2606: never resolves)


class Served(NamedTuple):
    """One file the stand-in serves: HTTP status, Content-Type and body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class SocialDemo:
    """Items in the service's own field names, plus the files served under `path` on the stand-in.

    An item's `url` (Reddit) or `url_path` (Flickr) that starts with '/' is relative to the stand-in.
    """

    items: list[dict]
    files: dict[str, Served]


@dataclass(frozen=True)
class Style:
    hues: tuple[float, float]       # background hue range
    object_hue_shift: float         # object hue relative to the background
    shape: str                      # "ellipse" or "box"
    stripes: bool                   # striped background texture


REDDIT_STYLE = Style(hues=(0.0, 0.12), object_hue_shift=0.5, shape="ellipse", stripes=False)
FLICKR_STYLE = Style(hues=(0.5, 0.68), object_hue_shift=0.45, shape="box", stripes=True)


def stable_url(url: str, stand_in: str) -> str:
    """`url` with the origin of the stand-in at `stand_in` (127.0.0.1 and a new port each run)
    replaced by DEMO_ORIGIN, so that a rerun writes the same posts.csv / photos.csv."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(stand_in))
    return DEMO_ORIGIN + url[len(origin):] if url.startswith(origin + "/") else url


def _background(rng: np.random.Generator, style: Style, v: float) -> np.ndarray:
    """A vertical two-colour gradient whose brightness encodes v; (HEIGHT, WIDTH, 3) float."""
    value = float(np.clip(0.5 + 0.17 * v, 0.12, 0.92))
    hue_top, hue_bottom = rng.uniform(*style.hues, size=2)
    top = np.array(colorsys.hsv_to_rgb(hue_top, 0.45, value))
    bottom = np.array(colorsys.hsv_to_rgb(hue_bottom, 0.55, value * 0.85))
    ramp = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    image = (1 - ramp) * top + ramp * bottom
    if style.stripes:
        period = rng.integers(6, 14)
        image = image * (0.9 + 0.1 * (np.arange(HEIGHT) // period % 2))[:, None, None]
    return np.broadcast_to(image, (HEIGHT, WIDTH, 3)) * 255.0


def _draw_objects(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style, u: float):
    """Draw salient objects: count, size and saturation grow with u."""
    count = int(np.clip(round(3 + 1.5 * u + rng.normal(0, 0.6)), 1, 9))
    saturation = float(np.clip(0.55 + 0.2 * u, 0.1, 1.0))
    for _ in range(count):
        radius = float(np.clip(9 + 3.0 * u + rng.normal(0, 1.5), 4, 24))
        x, y = rng.uniform(radius, WIDTH - radius), rng.uniform(radius, HEIGHT - radius)
        hue = (np.mean(style.hues) + style.object_hue_shift + rng.normal(0, 0.05)) % 1.0
        rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, rng.uniform(0.7, 1.0)))
        box = (x - radius, y - radius * rng.uniform(0.7, 1.0), x + radius, y + radius)
        (draw.ellipse if style.shape == "ellipse" else draw.rectangle)(box, fill=rgb)


def render_image(rng: np.random.Generator, style: Style, u: float, v: float) -> bytes:
    """Render one WIDTH x HEIGHT JPEG encoding u (objects) and v (brightness), with pixel noise."""
    canvas = Image.fromarray(_background(rng, style, v).astype(np.uint8), "RGB")
    _draw_objects(ImageDraw.Draw(canvas), rng, style, u)
    pixels = np.asarray(canvas, dtype=np.int16) + rng.normal(0, 6, (HEIGHT, WIDTH, 1)).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return text or "0"


def _faulty(files: dict[str, Served], paths: list[str], faults: dict[str, int]) -> None:
    """Break the first few image paths in place: missing (404), not_image, truncated, duplicate."""
    cursor = iter(paths)
    for fault, count in faults.items():
        for _ in range(count):
            path = next(cursor)
            if fault == "missing":
                del files[path]
            elif fault == "not_image":
                files[path] = Served(200, "text/html", b"<html><body>Image removed</body></html>")
            elif fault == "truncated":
                files[path] = files[path]._replace(body=files[path].body[: len(files[path].body) // 2])
            else:  # duplicate: a repost of the last image, byte for byte
                files[path] = files[paths[-1]]


def _reddit_url(kind: str, post_id: str, subreddit: str) -> str:
    """Where a post of this kind links to; image posts link to the stand-in's /i/ folder."""
    return {
        "image": f"/i/{post_id}.jpg",
        "gallery": f"https://www.reddit.com/gallery/{post_id}",
        "video": f"https://v.redd.it/{post_id}",
        "self": f"https://www.reddit.com/r/{subreddit}/comments/{post_id}/",
        "album": f"https://imgur.com/a/{post_id}",
    }[kind]


def _reddit_post(rng: np.random.Generator, post_id: str, subreddit: str, kind: str, pop: float) -> dict:
    """One post in Reddit's t3 field names; score and comments grow with popularity."""
    score = int(round(np.exp(3.2 + 1.4 * pop)))
    if rng.random() < 0.02:
        score = int(rng.integers(-3, 1))  # a few buried posts
    return {
        "id": post_id, "name": f"t3_{post_id}", "title": f"My photo {post_id}",
        "subreddit": subreddit, "author": f"user_{rng.integers(1, 400)}",
        "score": score, "ups": max(score, 0),
        "num_comments": int(max(score, 0) * rng.uniform(0.02, 0.15)),
        "created_utc": float(rng.integers(*REDDIT_EPOCH)),
        "url": _reddit_url(kind, post_id, subreddit),
        "is_video": kind == "video", "is_self": kind == "self", "is_gallery": kind == "gallery",
        "over_18": False, "post_hint": "image" if kind == "image" else "link",
        "permalink": f"/r/{subreddit}/comments/{post_id}/my_photo_{post_id}/",
    }


def reddit_demo(n_posts: int, seed: int, subreddits: list[str]) -> SocialDemo:
    """`n_posts` synthetic Reddit posts spread over `subreddits`, with their images and faults."""
    if n_posts < MIN_ITEMS:
        raise DataError(f"reddit.demo_posts: {n_posts} is too few; the demo needs at least {MIN_ITEMS}")
    rng = np.random.default_rng(seed)
    numbers = rng.choice(36**6 - 36**5, size=n_posts, replace=False) + 36**5
    kinds = rng.choice(list(REDDIT_KIND_SHARES), size=n_posts, p=list(REDDIT_KIND_SHARES.values()))
    items, files = [], {}
    for number, kind in zip(numbers, kinds):
        u, v, noise = rng.normal(size=3)
        post = _reddit_post(rng, _base36(int(number)), str(rng.choice(subreddits)), str(kind), u + 0.35 * noise)
        if kind == "image":
            files[post["url"]] = Served(200, "image/jpeg", render_image(rng, REDDIT_STYLE, u, v))
        items.append(post)
    _faulty(files, list(files), REDDIT_FAULTS)
    return SocialDemo(items=items, files=files)


def _flickr_photo(rng: np.random.Generator, photo_id: int, owner: str, window: tuple[int, int],
                  pop: float) -> dict:
    """One photo in flickr.photos.search field names; `view_rate` is views per day online."""
    secret = rng.bytes(5).hex()
    server = str(rng.integers(2800, 7900))
    return {
        "id": str(photo_id), "owner": owner, "ownername": f"photographer {owner[:4]}",
        "secret": secret, "server": server, "farm": 66, "title": f"IMG_{photo_id % 10000:04d}",
        "dateupload": int(rng.integers(*window)), "view_rate": float(np.exp(0.5 + 1.2 * pop)),
        "url_path": f"/{server}/{photo_id}_{secret}_n.jpg",
        "width": WIDTH, "height": HEIGHT,
    }


def flickr_demo(n_photos: int, seed: int, window: tuple[int, int]) -> SocialDemo:
    """`n_photos` synthetic Flickr photos uploaded in [window[0], window[1]) unix seconds.

    Owners hold several photos each and share a popularity offset, so splits must group by owner.
    """
    if n_photos < MIN_ITEMS:
        raise DataError(f"flickr.demo_photos: {n_photos} is too few; the demo needs at least {MIN_ITEMS}")
    rng = np.random.default_rng(seed)
    n_owners = max(1, n_photos // 6)
    owners = [f"{rng.integers(10**7, 10**8)}@N0{k % 8}" for k in range(n_owners)]
    owner_effect = rng.normal(0, 0.3, size=n_owners)
    ids = 12_000_000_000 + np.cumsum(rng.integers(1, 50_000, size=n_photos))
    items, files = [], {}
    for photo_id in ids:
        k = int(rng.integers(n_owners))
        u, v, noise = rng.normal(size=3)
        pop = 0.45 * u + 0.9 * v + owner_effect[k] + 0.3 * noise
        photo = _flickr_photo(rng, int(photo_id), owners[k], window, pop)
        files[photo["url_path"]] = Served(200, "image/jpeg", render_image(rng, FLICKR_STYLE, u, v))
        items.append(photo)
    _faulty(files, list(files), FLICKR_FAULTS)
    return SocialDemo(items=items, files=files)
