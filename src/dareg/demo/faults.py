"""Faults the loopback stand-ins inject on demand, so that tests drive the real clients through them.

A FaultPlan maps an image path the stand-in serves to one fault from IMAGE_FAULTS, and lists faults
for the next API calls in order (API_FAULTS). Faults that say `_once` hit the first request only:
the retry then gets the real answer. The demo data's own faults (missing, not_image, truncated,
duplicate) are planted in the data itself by `social`.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from dareg.demo.social import Served

IMAGE_FAULTS = ("404", "500_once", "429_once", "slow", "stall", "redirect", "oversized")
API_FAULTS = ("500", "503", "429")
REDIRECT_MARK = "moved=1"


@dataclass
class FaultPlan:
    """What to break: `images` path -> fault; `api` faults for the next API calls, consumed in order.

    `slow_s` delays a slow answer (keep it under the client's read timeout); `stall_s` is how long a
    stalled answer hangs after its headers and first bytes (keep it over the read timeout);
    `oversized_bytes` is the body of an oversized image. `hits` counts requests per path.
    """

    images: dict[str, str] = field(default_factory=dict)
    api: list[str] = field(default_factory=list)
    slow_s: float = 0.3
    stall_s: float = 5.0
    oversized_bytes: int = 3_000_000
    hits: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        unknown = set(self.images.values()) - set(IMAGE_FAULTS) | set(self.api) - set(API_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {IMAGE_FAULTS} and {API_FAULTS}")

    def next_api_fault(self) -> str | None:
        """The fault for this API call, if one is still planned."""
        with self.lock:
            return self.api.pop(0) if self.api else None

    def image_fault(self, path: str, query: str) -> str | None:
        """Count a request for `path`; the fault to inject now, if any."""
        with self.lock:
            self.hits[path] += 1
            fault, hit = self.images.get(path), self.hits[path]
        if fault in ("500_once", "429_once") and hit > 1 or fault == "redirect" and REDIRECT_MARK in query:
            return None
        return fault


def send_api_fault(handler: BaseHTTPRequestHandler, fault: str) -> None:
    """Answer an API call with the planned HTTP error (429 with Retry-After: 1)."""
    headers = {"Retry-After": "1"} if fault == "429" else {}
    handler.send_body(int(fault), f"HTTP {fault}".encode(), "text/plain", headers)


def serve_image(handler: BaseHTTPRequestHandler, plan: FaultPlan, path: str, query: str,
                served: Served | None) -> None:
    """Answer an image request: the planned fault for `path` if any, else `served` (None: 404)."""
    fault = plan.image_fault(path, query)
    body, content_type = (served.body, served.content_type) if served else (b"", "image/jpeg")
    if fault == "slow":
        time.sleep(plan.slow_s)
    elif fault in ("404", "500_once", "429_once"):
        status = int(fault.removesuffix("_once"))
        return handler.send_body(status, b"fault", "text/plain", {"Retry-After": "1"} if status == 429 else {})
    elif fault == "redirect":
        return handler.send_body(302, b"", "text/plain", {"Location": f"{path}?{REDIRECT_MARK}"})
    elif fault == "oversized":
        return handler.send_body(200, body + b"\0" * plan.oversized_bytes, content_type)
    elif fault == "stall":
        return stall(handler, plan, body, content_type)
    if served is None:
        return handler.send_body(404, b"404 Not Found", "text/plain")
    return handler.send_body(served.status, served.body, served.content_type)


def stall(handler: BaseHTTPRequestHandler, plan: FaultPlan, body: bytes, content_type: str) -> None:
    """Send the headers and the first 100 bytes of `body`, then hang plan.stall_s and hang up."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[:100])
    handler.wfile.flush()
    time.sleep(plan.stall_s)
    handler.close_connection = True
