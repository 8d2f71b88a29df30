"""``m3leo gee``: per-chip downloads from Earth Engine into a local region.

Each chip is one ``image:computePixels`` request to the REST API (``eefetch``): the recipe's
expression (masked pixels filled, cast on the server to one dtype), the chip's own pixel grid
(``chip_px`` square on its lon/lat rectangle, EPSG:4326) and a GeoTIFF answer. Chips run
``workers`` at a time; chips already written are skipped, so an interrupted run resumes.

A chip that fails (any exception while fetching or writing it) is recorded with its reason and
the run goes on; the run's report (``.gee-<datakind>.json`` in the region folder) lists the
failed chips, ``retry_failed`` re-runs only those, and a plain re-run takes them last, so one
bad chip never stands in front of the others. Failures every chip would meet (credentials, the
project, an endpoint refusing connections) stop the run instead.

The standard endpoint is the default (Google's advice for computations such as composites);
the high-volume one is opt-in, per recipe (``high_volume = true``) or setting.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import EarthEngineError, UsageError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .eeauth import ChipFailed, RunStopped, resolve_project, token_source
from .grid import Chip
from .recipes import Recipe

STANDARD_ENDPOINT = "https://earthengine.googleapis.com"
HIGH_VOLUME_ENDPOINT = "https://earthengine-highvolume.googleapis.com"


def endpoint_for(settings: Settings, recipe: Recipe) -> str:
    """The base URL: the one set, else high-volume when the recipe or setting asks, else the
    standard endpoint."""
    if settings.source_of("ee_endpoint") != "default":
        return settings.ee_endpoint.rstrip("/")
    if settings.ee_high_volume or recipe.high_volume:
        return HIGH_VOLUME_ENDPOINT
    return settings.ee_endpoint.rstrip("/")


def report_path(region_root: Path, datakind: str) -> Path:
    return region_root / f".gee-{datakind}.json"


def _read_report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _positive(flag: str, value: int | None, example: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be at least 1, not {value}", f"e.g. {flag} {example}")


def gee_download(
    settings: Settings,
    region: str,
    recipe: Recipe,
    *,
    project: str | None = None,
    chip_px: int | None = None,
    workers: int = 8,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Download ``recipe`` for every chip of local ``region`` (or the first ``limit``).

    Returns the run's summary; ``failed`` lists the chips that failed, with their reasons.
    """
    import httpx

    from ..config import register_local
    from ..store.layout import write_text_atomic
    from .chipfile import chip_folder, finished_chip
    from .eefetch import ChipFetcher
    from .local import load_chips, load_region, region_dir, save_region
    from .manifest import build_local_manifest

    _positive("--limit", limit, "10")
    _positive("--workers", workers, "8")
    _positive("--chip-px", chip_px, "448")
    reg = load_region(settings.data_dir, region)
    root = region_dir(settings.data_dir, region)
    report = report_path(root, recipe.datakind)
    earlier = {f["tile_id"]: f for f in _read_report(report).get("failed", [])}
    chips = list(load_chips(settings.data_dir, reg))
    if retry_failed:
        if not earlier:
            raise UsageError(
                f"no failed chips recorded for {recipe.datakind} in region {region!r}",
                f"run `m3leo gee {region} {recipe.datakind}` (without --retry-failed)",
            )
        chips = [c for c in chips if c.tile_id in earlier]
    if limit is not None:
        chips = chips[:limit]
    tokens = token_source(settings)
    project = resolve_project(settings, project, tokens)
    px = chip_px or max(1, round(reg.chip_m / 10))
    folder = chip_folder(root, root / reg.partition / recipe.datakind)
    todo = [
        c
        for c in chips
        if not finished_chip(folder / f"{c.tile_id}.tif", recipe.bands, recipe.dtype)
    ]
    # chips that failed last time go last: they never hold up the others twice
    todo.sort(key=lambda c: c.tile_id in earlier)
    base = endpoint_for(settings, recipe)
    url = f"{base}/v1/projects/{project}/image:computePixels"
    failed: dict[str, dict[str, str]] = {}
    stopped: list[EarthEngineError] = []
    stop = threading.Event()
    lock = threading.Lock()
    written = 0
    tried: set[str] = set()
    timeout = httpx.Timeout(10.0, read=settings.ee_timeout or None, write=60.0, pool=None)
    progress(ProgressEvent("start", phase="gee", total_files=len(todo)))
    with httpx.Client(timeout=timeout) as client:
        fetcher = ChipFetcher(
            client, url, tokens, project, recipe, px,
            max_retries=settings.ee_max_retries, backoff=settings.ee_backoff,
        )  # fmt: skip

        def one(chip: Chip) -> None:
            nonlocal written
            if stop.is_set():
                return
            with lock:
                tried.add(chip.tile_id)
            from .chipfile import write_chip

            try:
                arr = recipe.to_file(fetcher.fetch(chip))
                write_chip(folder / f"{chip.tile_id}.tif", arr, chip, recipe.bands,
                           recipe.file_nodata)  # fmt: skip
            except RunStopped as exc:
                with lock:
                    stopped.append(exc)
                    tried.discard(chip.tile_id)  # not this chip's fault: it stays as it was
                stop.set()
                return
            except Exception as exc:  # noqa: BLE001 - any failure is this chip's, counted
                if isinstance(exc, ChipFailed | EarthEngineError):
                    why = {"reason": exc.message, "hint": exc.hint}
                else:
                    why = {"reason": f"{type(exc).__name__}: {exc}", "hint": ""}
                with lock:
                    failed[chip.tile_id] = why
            else:
                with lock:
                    written += 1
            progress(ProgressEvent("advance", phase="gee", files=1))

        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(todo)))) as pool:
            list(pool.map(one, todo))
    progress(ProgressEvent("done", phase="gee"))
    not_tried = len(todo) - written - len(failed)
    if written and not recipe.published:
        reg.datakinds[recipe.datakind] = {
            "bands": list(recipe.bands),
            "dtype": recipe.dtype,
            "nodata": recipe.nodata,
            "resampling": "earth engine (per-chip computePixels)",
            "chip_px": px,
            "resolution_m": reg.chip_m / px,
            "label": recipe.label,
            "description": recipe.description,
        }
        save_region(settings.data_dir, reg)
    # what still needs fetching: this run's failures, and earlier ones this run did not reach
    still = {k: v for k, v in earlier.items() if k not in tried and not finished_chip(
        folder / f"{k}.tif", recipe.bands, recipe.dtype)}  # fmt: skip
    still.update(failed)
    write_text_atomic(
        report,
        json.dumps(
            {
                "datakind": recipe.datakind,
                "endpoint": base,
                "project": project,
                "failed": [{**v, "tile_id": k} for k, v in sorted(still.items())],
            },
            indent=1,
        ),
    )
    summary_tiles = 0
    if written:
        register_local(settings.data_dir)
        summary = build_local_manifest(settings.data_dir, reg)
        summary_tiles = summary["datakinds"].get(recipe.datakind, {}).get("tiles", 0)
    c = fetcher.counters
    info = {
        "region": region,
        "datakind": recipe.datakind,
        "folder": str(folder),
        "endpoint": base,
        "project": project,
        "chips": len(chips),
        "downloaded": written,
        "skipped": len(chips) - len(todo),
        "failed": [{"tile_id": k, **v} for k, v in sorted(failed.items())],
        "not_tried": not_tried,
        "report": str(report),
        "requests": c.requests,
        "retries": c.retries,
        "split_chips": c.split_chips,
        "token_refreshes": tokens.refreshes,
        "chip_px": px,
        "bands": list(recipe.bands),
        "manifest_tiles": summary_tiles,
    }
    if stopped:
        info["stopped"] = {"message": stopped[0].message, "hint": stopped[0].hint}
    return info


def run_error(info: dict[str, Any], again: str) -> EarthEngineError | None:
    """The error a run ends with (exit 1), or None when every chip was written. ``again`` is
    the command that ran (``m3leo gee lux s1grd-2020``)."""
    if "stopped" in info:
        s = info["stopped"]
        return EarthEngineError(s["message"], s["hint"])
    if info["failed"]:
        n, first = len(info["failed"]), info["failed"][0]
        others = "the others are written, " if n < info["chips"] else ""
        return EarthEngineError(
            f"{n} of {info['chips']} chips failed (first: {first['reason']}); {others}"
            f"the list is in {info['report']}",
            "; ".join(
                h
                for h in (first.get("hint", ""), f"then `{again} --retry-failed` re-runs them")
                if h
            ),
        )
    return None
