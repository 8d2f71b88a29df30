"""Deterministic fault injection for the Hub server, and the request log tests assert on.

Every fault counts "the first N per path": the counters live next to the settings, so a test
knows exactly which request fails. Assigning ``server.faults`` (or calling ``reset()``) starts
the counts again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What to break, and for how many requests. All counts are per path, first N."""

    latency_ms: float = 0.0  # sleep before every answer (both origins)
    error_status: int = 503
    error_first: int = 0  # first N requests per URL path -> error_status
    rate_limit_first: int = 0  # first N requests per URL path -> 429 + Retry-After + RateLimit
    retry_after: int = 1
    cut_after_bytes: int | None = None  # drop the connection after N body bytes ...
    cut_first: int = 1  # ... for the first K GETs per file
    corrupt_first: int = 0  # flip one body byte, first K GETs per file
    ignore_range: bool = False  # answer Range with a full 200
    extra_bytes: int = 0  # junk beyond the announced Content-Length (then close)
    hostile_paths: tuple[str, ...] = ()  # extra file entries injected into tree listings
    garbage_json: bool = False  # API answers are not valid JSON
    status_for_paths: dict[str, int] = field(default_factory=dict)  # repo path -> status
    no_lfs_batch: bool = False  # the Git LFS batch API answers 404 (a mirror without it)
    lfs_batch_busy: int = 0  # the first N batch requests answer 429 + Retry-After


@dataclass
class RequestRecord:
    """One request as the server saw it (headers lower-cased, authorization included).

    Appended when the request arrives, so the log is in the order the server received them;
    ``status`` is 0 until the answer starts.
    """

    method: str
    path: str  # URL path, percent-decoded
    query: str  # raw query string
    status: int
    headers: dict[str, str]
    origin: str  # "hub" | "content"
    range: str | None  # the Range header, if any
    repo_path: str | None = None  # the repo file a resolve/content request was about
    bytes_sent: int = 0  # body bytes written (after any cut/junk fault)
    arrived: float = field(default_factory=time.monotonic)  # when the request was read


class FaultCounters:
    """Thread-safe "first N" bookkeeping for one Faults setting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def take(self, kind: str, key: str, first: int) -> bool:
        """True if this is among the first ``first`` events of ``kind`` for ``key``."""
        if first <= 0:
            return False
        with self._lock:
            n = self._counts[(kind, key)]
            if n >= first:
                return False
            self._counts[(kind, key)] = n + 1
            return True
