"""One chip's pixels from Earth Engine: an ``image:computePixels`` request, retried as the
service asks, split by band groups when over the size limit.

What is retried, and how:

- 429 / ``RESOURCE_EXHAUSTED`` and 5xx answers, timeouts and dropped connections: up to
  ``ee_max_retries`` times, after a jittered exponential backoff (``ee_backoff`` seconds,
  doubling, each wait drawn between half and all of it, at most 60 s) or the ``Retry-After``
  the service gave;
- 401: the token is refreshed once, then the request is sent again;
- a refused connection: one quick retry, then the run stops (:class:`RunStopped`): an endpoint
  that refuses connections refuses them for every chip.

A 403 (the project is not registered, the credentials lack a permission) also stops the run;
any other refusal is this chip's failure (:class:`ChipFailed`), which the run records and
goes on from. The read timeout is ``ee_timeout`` (300 s): a large composite takes minutes.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .eeauth import ChipFailed, RunStopped, TokenSource
from .eeexpr import encode
from .grid import Chip
from .recipes import Recipe

SIZE_RE = re.compile(
    r"Total request size \((\d+) bytes\) must be less than or equal to (\d+) bytes"
)
MAX_WAIT = 60.0  # the longest backoff between two tries
CONNECT_RETRY_WAIT = 0.5  # the one quick retry after a refused connection


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0
    split_chips: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class _TooLarge(Exception):
    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"{total} > {limit}")
        self.total, self.limit = total, limit


class ChipFetcher:
    """Fetches one chip's pixels for a recipe, with retries and band-group splitting."""

    def __init__(
        self,
        client: Any,
        url: str,
        tokens: TokenSource,
        project: str,
        recipe: Recipe,
        px: int,
        *,
        max_retries: int = 6,
        backoff: float = 1.0,
    ) -> None:
        self.client, self.url, self.tokens, self.recipe, self.px = client, url, tokens, recipe, px
        self.project = project
        self.expression = encode(recipe.request_image())
        self.max_retries, self.backoff = max_retries, backoff
        self.counters = Counters()

    def body(self, chip: Chip, band_ids: Sequence[str]) -> dict[str, Any]:
        w, s, e, n = chip.bbox
        return {
            "expression": self.expression,
            "fileFormat": "GEO_TIFF",
            "bandIds": list(band_ids),
            "grid": {
                "dimensions": {"width": self.px, "height": self.px},
                "affineTransform": {
                    "scaleX": (e - w) / self.px,
                    "shearX": 0.0,
                    "translateX": w,
                    "shearY": 0.0,
                    "scaleY": (s - n) / self.px,
                    "translateY": n,
                },
                "crsCode": "EPSG:4326",
            },
        }

    def fetch(self, chip: Chip) -> Any:
        """The chip's array (bands, px, px) in the recipe's band order, as Earth Engine sent it."""
        bands = list(self.recipe.bands)
        try:
            return self._request(chip, bands)
        except _TooLarge as big:
            self.counters.add(split_chips=1)
            return self._by_groups(chip, bands, big.total, big.limit)

    def _by_groups(self, chip: Chip, bands: list[str], total: int, limit: int) -> Any:
        import numpy as np

        per_band = 1.5 * total / len(bands)  # headroom for the GeoTIFF's own overhead
        if per_band > limit:
            raise ChipFailed(
                f"one band of chip {chip.tile_id} is over Earth Engine's request limit "
                f"({total} bytes for {len(bands)} bands, limit {limit})",
                "use a smaller --chip-px",
            )
        size = max(1, math.floor(limit / per_band))
        parts = []
        for i in range(0, len(bands), size):
            try:
                parts.append(self._request(chip, bands[i : i + size]))
            except _TooLarge as again:
                raise ChipFailed(
                    f"chip {chip.tile_id}: a band group is still over the limit ({again})",
                    "use a smaller --chip-px",
                ) from None
        return np.concatenate(parts, axis=0)

    def _headers(self) -> tuple[dict[str, str], str]:
        token = self.tokens.token()
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Goog-User-Project": self.project,
        }, token

    def _request(self, chip: Chip, band_ids: list[str]) -> Any:
        import httpx

        attempt = connect_fails = 0
        refreshed = False
        while True:
            headers, token = self._headers()
            self.counters.add(requests=1)
            try:
                resp = self.client.post(self.url, json=self.body(chip, band_ids), headers=headers)
            except httpx.ConnectError as exc:
                connect_fails += 1
                if connect_fails > 1:
                    raise RunStopped(
                        f"cannot connect to Earth Engine at {self.url}: {exc}",
                        "check the network, and M3LEO_EE_ENDPOINT (unset it for Google's "
                        "endpoint); finished chips are kept",
                    ) from None
                self.counters.add(retries=1)
                time.sleep(CONNECT_RETRY_WAIT)
                continue
            except httpx.TransportError as exc:  # timeouts, dropped connections
                if attempt >= self.max_retries:
                    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
                    raise ChipFailed(
                        f"chip {chip.tile_id}: Earth Engine {kind} {attempt + 1} times "
                        f"({type(exc).__name__}: {exc})",
                        "for slow composites raise M3LEO_EE_TIMEOUT (seconds; 0: no limit)",
                    ) from None
                self._sleep(attempt, None)
                attempt += 1
                continue
            if resp.status_code == 200:
                return self._decode(chip, resp.content, len(band_ids))
            message, status = _error_of(resp)
            if resp.status_code == 401 and not refreshed and self.tokens.refresh_after_401(token):
                refreshed = True
                continue
            if resp.status_code in (401, 403):
                raise RunStopped(
                    f"Earth Engine refused the credentials ({resp.status_code}): {message}",
                    "run `earthengine authenticate` again, give a service-account key "
                    "(--credentials FILE) or a fresh M3LEO_EE_TOKEN; check that --project is "
                    "registered for Earth Engine",
                )
            quota = resp.status_code == 429 or status == "RESOURCE_EXHAUSTED"
            if quota or resp.status_code >= 500:
                if attempt >= self.max_retries:
                    if quota:
                        raise ChipFailed(
                            f"chip {chip.tile_id}: Earth Engine quota exceeded "
                            f"({attempt + 1} tries): {message}",
                            "lower --workers and wait, or raise your project's Earth Engine quota",
                        )
                    raise ChipFailed(
                        f"chip {chip.tile_id}: Earth Engine failed {attempt + 1} times "
                        f"({resp.status_code}): {message}",
                        "Earth Engine's own trouble: wait a while",
                    )
                self._sleep(attempt, resp.headers.get("Retry-After"))
                attempt += 1
                continue
            m = SIZE_RE.search(message)
            if resp.status_code == 400 and m:
                raise _TooLarge(int(m.group(1)), int(m.group(2)))
            raise ChipFailed(
                f"Earth Engine refused chip {chip.tile_id} ({resp.status_code}): {message}",
                "check the recipe (`m3leo gee --help`, docs/aoi.md)",
            )

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        self.counters.add(retries=1)
        delay = self.backoff * (2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = float(retry_after)  # the service said when: trust it
        time.sleep(min(delay, MAX_WAIT))

    def _decode(self, chip: Chip, data: bytes, nbands: int) -> Any:
        from rasterio.errors import RasterioError
        from rasterio.io import MemoryFile

        try:
            with MemoryFile(data) as mem, mem.open() as src:
                arr = src.read()
        except RasterioError as exc:
            raise ChipFailed(
                f"Earth Engine sent chip {chip.tile_id} as something not a GeoTIFF ({exc})",
                "if it persists, check M3LEO_EE_ENDPOINT",
            ) from None
        if arr.shape != (nbands, self.px, self.px):
            raise ChipFailed(
                f"Earth Engine sent chip {chip.tile_id} as {arr.shape}, "
                f"asked {(nbands, self.px, self.px)}",
                "if it persists, check M3LEO_EE_ENDPOINT",
            )
        if str(arr.dtype) != self.recipe.sent_dtype:
            raise ChipFailed(
                f"Earth Engine sent chip {chip.tile_id} as {arr.dtype}, "
                f"asked {self.recipe.sent_dtype}",
                "if it persists, check M3LEO_EE_ENDPOINT",
            )
        return arr


def _error_of(resp: Any) -> tuple[str, str]:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message", "")), str(err.get("status", ""))
    except (ValueError, AttributeError):
        return resp.text[:200], ""
