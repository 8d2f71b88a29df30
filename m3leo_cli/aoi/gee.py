"""``m3leo gee``: per-chip downloads from Earth Engine into a local region.

Each chip is one ``image:computePixels`` request to the REST API (by default the high-volume
endpoint, which suits many small requests): the recipe's expression, the chip's own pixel grid
(``chip_px`` square on its lon/lat rectangle, EPSG:4326) and a GeoTIFF answer. Chips run
concurrently; quota answers (HTTP 429 / RESOURCE_EXHAUSTED) and 5xx are retried with backoff;
a request over Earth Engine's size limit is redone in band groups that fit and stacked; chips
already written are skipped, so an interrupted run resumes. Files carry the recipe's band names
as band descriptions, the layout m3leo's readers expect.

The earthengine-api library is only used, when installed (the ``gee`` extra), to read the
credentials ``earthengine authenticate`` saved; everything else is plain REST over httpx, which
is what lets the tests point it at a loopback server (see docs/aoi.md for why).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import EarthEngineError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .eeexpr import Recipe, encode
from .grid import Chip

SIZE_RE = re.compile(
    r"Total request size \((\d+) bytes\) must be less than or equal to (\d+) bytes"
)


def access_token(settings: Settings) -> str:
    """An OAuth token: ``M3LEO_EE_TOKEN``, else the credentials of ``earthengine authenticate``."""
    if settings.ee_token:
        return settings.ee_token
    hint = (
        "run `earthengine authenticate` (pip install 'm3leo-cli[gee]'), or set M3LEO_EE_TOKEN "
        "to an access token (`gcloud auth print-access-token`)"
    )
    try:
        import ee
        from google.auth.transport.requests import Request
    except ImportError:
        raise EarthEngineError("no Earth Engine credentials", hint) from None
    try:
        creds = ee.data.get_persistent_credentials()
        creds.refresh(Request())
        token = getattr(creds, "token", None)
    except Exception as exc:  # noqa: BLE001 - google-auth raises many kinds; all mean "no creds"
        raise EarthEngineError(f"no usable Earth Engine credentials ({exc})", hint) from None
    if not token:
        raise EarthEngineError("no Earth Engine credentials", hint)
    return str(token)


@dataclass
class _Counters:
    requests: int = 0
    retries: int = 0
    split_chips: int = 0
    lock: threading.Lock = threading.Lock()

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class ChipFetcher:
    """Fetches one chip's pixels for a recipe, with retries and band-group splitting."""

    def __init__(
        self,
        client: Any,
        url: str,
        token: str,
        recipe: Recipe,
        px: int,
        *,
        max_retries: int = 6,
        backoff: float = 1.0,
    ) -> None:
        self.client, self.url, self.recipe, self.px = client, url, recipe, px
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.expression = encode(recipe.image)
        self.max_retries, self.backoff = max_retries, backoff
        self.counters = _Counters()

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
        """The chip's array (bands, px, px) in the recipe's band order."""
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
            raise EarthEngineError(
                f"one band of chip {chip.tile_id} is over Earth Engine's request limit "
                f"({total} bytes for {len(bands)} bands, limit {limit})",
                "use a smaller --chip-px",
            )
        size = max(1, math.floor(limit / per_band))
        parts = [self._request(chip, bands[i : i + size]) for i in range(0, len(bands), size)]
        return np.concatenate(parts, axis=0)

    def _request(self, chip: Chip, band_ids: list[str]) -> Any:
        import httpx

        for attempt in range(self.max_retries + 1):
            self.counters.add(requests=1)
            try:
                resp = self.client.post(
                    self.url, json=self.body(chip, band_ids), headers=self.headers
                )
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise EarthEngineError(
                        f"cannot reach Earth Engine at {self.url}: {exc}",
                        "check the network or M3LEO_EE_ENDPOINT; re-run to resume",
                    ) from None
                self._sleep(attempt, None)
                continue
            if resp.status_code == 200:
                return self._decode(chip, resp.content, len(band_ids))
            message, status = _error_of(resp)
            if resp.status_code == 429 or status == "RESOURCE_EXHAUSTED" or resp.status_code >= 500:
                if attempt == self.max_retries:
                    if resp.status_code >= 500:
                        raise EarthEngineError(
                            f"Earth Engine failed {self.max_retries + 1} times: {message}",
                            "re-run later: finished chips are kept and skipped",
                        )
                    raise EarthEngineError(
                        f"Earth Engine quota exceeded ({self.max_retries + 1} tries): {message}",
                        "lower --workers, wait and re-run (finished chips are kept), or raise "
                        "your project's Earth Engine quota",
                    )
                self._sleep(attempt, resp.headers.get("Retry-After"))
                continue
            m = SIZE_RE.search(message)
            if resp.status_code == 400 and m:
                raise _TooLarge(int(m.group(1)), int(m.group(2)))
            if resp.status_code in (401, 403):
                raise EarthEngineError(
                    f"Earth Engine refused the credentials ({resp.status_code}): {message}",
                    "run `earthengine authenticate` again or set a fresh M3LEO_EE_TOKEN; check "
                    "that --project is registered for Earth Engine",
                )
            raise EarthEngineError(
                f"Earth Engine refused chip {chip.tile_id} ({resp.status_code}): {message}",
                "check the recipe (`m3leo gee --help`, docs/aoi.md)",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        self.counters.add(retries=1)
        delay = self.backoff * (2**attempt)
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = float(retry_after)  # the service said when: trust it
        time.sleep(min(delay, 60.0))

    def _decode(self, chip: Chip, data: bytes, nbands: int) -> Any:
        from rasterio.errors import RasterioError
        from rasterio.io import MemoryFile

        try:
            with MemoryFile(data) as mem, mem.open() as src:
                arr = src.read()
        except RasterioError as exc:
            raise EarthEngineError(
                f"Earth Engine sent chip {chip.tile_id} as something not a GeoTIFF ({exc})",
                "re-run; if it persists, check M3LEO_EE_ENDPOINT",
            ) from None
        if arr.shape != (nbands, self.px, self.px):
            raise EarthEngineError(
                f"Earth Engine sent chip {chip.tile_id} as {arr.shape}, "
                f"asked {(nbands, self.px, self.px)}",
                "re-run; if it persists, check M3LEO_EE_ENDPOINT",
            )
        return arr


class _TooLarge(Exception):
    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"{total} > {limit}")
        self.total, self.limit = total, limit


def _error_of(resp: Any) -> tuple[str, str]:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message", "")), str(err.get("status", ""))
    except (ValueError, AttributeError):
        return resp.text[:200], ""


def _finished(path: Path, nbands: int) -> bool:
    """A chip already written whole (resume skips it)."""
    import rasterio
    from rasterio.errors import RasterioError

    if not path.is_file():
        return False
    try:
        with rasterio.open(path) as src:
            return src.count == nbands
    except RasterioError:
        return False


def gee_download(
    settings: Settings,
    region: str,
    recipe: Recipe,
    *,
    project: str | None = None,
    chip_px: int | None = None,
    workers: int = 8,
    limit: int | None = None,
    backoff: float = 1.0,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Download ``recipe`` for every chip of local ``region`` (or the first ``limit``)."""
    import httpx
    import numpy as np

    from ..config import register_local
    from .ingest import write_chip
    from .local import load_chips, load_region, region_dir, save_region
    from .manifest import build_local_manifest

    reg = load_region(settings.data_dir, region)
    project = project or settings.ee_project
    if not project:
        raise EarthEngineError(
            "no Earth Engine project given",
            "pass --project ID (a Cloud project registered for Earth Engine) or set "
            "M3LEO_EE_PROJECT",
        )
    if workers < 1:
        raise EarthEngineError(f"--workers must be at least 1, not {workers}", "e.g. --workers 8")
    token = access_token(settings)
    px = chip_px or max(1, round(reg.chip_m / 10))
    chips = list(load_chips(settings.data_dir, reg))[: limit or None]
    folder = region_dir(settings.data_dir, region) / reg.partition / recipe.datakind
    todo = [c for c in chips if not _finished(folder / f"{c.tile_id}.tif", len(recipe.bands))]
    url = f"{settings.ee_endpoint.rstrip('/')}/v1/projects/{project}/image:computePixels"
    progress(ProgressEvent("start", phase="gee", total_files=len(todo)))
    with httpx.Client(timeout=settings.timeout) as client:
        fetcher = ChipFetcher(
            client, url, token, recipe, px, max_retries=settings.max_retries, backoff=backoff
        )

        def one(chip: Chip) -> None:
            arr = fetcher.fetch(chip).astype(recipe.dtype, copy=False)
            nodata = None if np.dtype(recipe.dtype).kind != "f" else float("nan")
            write_chip(folder / f"{chip.tile_id}.tif", arr, chip, recipe.bands, nodata)
            progress(ProgressEvent("advance", phase="gee", files=1))

        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(todo)))) as pool:
            futures = [pool.submit(one, c) for c in todo]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in done:
                exc = f.exception()
                if exc is not None:
                    raise exc
    progress(ProgressEvent("done", phase="gee"))
    if not recipe.published:
        reg.datakinds[recipe.datakind] = {
            "bands": list(recipe.bands),
            "dtype": recipe.dtype,
            "nodata": None,
            "resampling": "earth engine (per-chip computePixels)",
            "chip_px": px,
            "resolution_m": reg.chip_m / px,
            "label": recipe.label,
            "description": recipe.description,
        }
        save_region(settings.data_dir, reg)
    register_local(settings.data_dir)
    summary = build_local_manifest(settings.data_dir, reg)
    c = fetcher.counters
    return {
        "region": region,
        "datakind": recipe.datakind,
        "folder": str(folder),
        "chips": len(chips),
        "downloaded": len(todo),
        "skipped": len(chips) - len(todo),
        "requests": c.requests,
        "retries": c.retries,
        "split_chips": c.split_chips,
        "chip_px": px,
        "bands": list(recipe.bands),
        "manifest_tiles": summary["datakinds"].get(recipe.datakind, {}).get("tiles", 0),
    }
