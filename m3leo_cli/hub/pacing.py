"""Politeness: a request pacer shared by all threads, and the bounded retry policy.

The Hub counts requests per 5-minute window in three buckets (resolvers, API, pages; see
``config.PLAN_QUOTAS``), and the client keeps one pacer per bucket.
:class:`Pacer` is a sliding window: a request may start only while fewer than
``budget`` requests started in the last ``window`` seconds, so a long run is paced under the
quota instead of discovering it through a storm of 429s. A ``RateLimit: ...;r=0;t=N`` or
``Retry-After`` answer pauses every thread, not just the one that got it.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

_RATELIMIT_R = re.compile(r"(?:^|[;,\s])r=(\d+)")
_RATELIMIT_T = re.compile(r"(?:^|[;,\s])t=(\d+)")


class Pacer:
    """Sliding-window limiter: at most ``budget`` request starts per ``window`` seconds."""

    def __init__(self, budget: int, window: float, clock=time.monotonic, sleep=time.sleep) -> None:
        self.budget = max(1, int(budget))
        self.window = float(window)
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._hold_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting for the budget or a server-requested pause

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and self._starts[0] <= now - self.window:
                    self._starts.popleft()
                wait = self._hold_until - now
                if wait <= 0 and len(self._starts) < self.budget:
                    self._starts.append(now)
                    return
                if wait <= 0:
                    wait = self._starts[0] + self.window - now
                self.waited += max(wait, 0.0)
            self._sleep(max(wait, 0.001))

    def hold(self, seconds: float) -> None:
        """Pause every request start for ``seconds`` (server asked us to back off)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or HTTP date), else
    ``RateLimit: "...";r=0;t=N`` (quota exhausted, resets in N seconds)."""
    ra = (headers.get("retry-after") or "").strip()
    if ra:
        if ra.isdigit():
            return float(ra)
        try:
            when = parsedate_to_datetime(ra).timestamp()
            return max(0.0, when - (time.time() if now is None else now))
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return ratelimit_reset(headers)


def ratelimit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until the quota resets when ``RateLimit: "<bucket>";r=0;t=N`` says none is left."""
    rl = headers.get("ratelimit")
    if rl:
        r, t = _RATELIMIT_R.search(rl), _RATELIMIT_T.search(rl)
        if r and t and int(r.group(1)) == 0:
            return float(t.group(1)) + 1.0  # t is rounded: one more second to be safe
    return None


class Retrier:
    """Bounded retries with exponential backoff and full jitter.

    ``again(status, headers)`` sleeps and returns True while attempts remain, else False.
    ``reset()`` is called when bytes arrive, so a slow but progressing transfer never runs out.
    """

    BASE = 0.5  # seconds; doubles per attempt
    CAP = 8.0
    MAX_SERVER_WAIT = 600.0  # never sleep longer than this on a server's say-so

    def __init__(self, max_retries: int, pacer: Pacer | None = None, sleep=time.sleep) -> None:
        self.max_retries = max(0, int(max_retries))
        self.pacer = pacer
        self.attempts = 0
        self._sleep = sleep
        self.slept = 0.0

    def reset(self) -> None:
        self.attempts = 0

    def delay(self, headers: Mapping[str, str] | None) -> float:
        backoff = min(self.CAP, self.BASE * (2**self.attempts))
        delay = random.uniform(backoff / 2, backoff)
        server = retry_after_seconds(headers) if headers is not None else None
        if server is not None:
            server = min(server, self.MAX_SERVER_WAIT)
            if self.pacer is not None:
                self.pacer.hold(server)
            delay = max(delay, server)
        return delay

    def again(self, status: int | None, headers: Mapping[str, str] | None) -> bool:
        if self.attempts >= self.max_retries:
            return False
        delay = self.delay(headers)
        self.attempts += 1
        self.slept += delay
        self._sleep(delay)
        return True
