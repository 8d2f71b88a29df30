"""Per-band statistics over local tiles in one streaming, parallel pass with bounded memory.

Files are reduced in batches to the mergeable accumulators of :mod:`.accumulate` (in threads or
processes) and merged here. Values are the decoded physical values of
``tiles.decode`` (nodata, NaN and MODIS water excluded). Label layers also get class histograms.
Derived bands (S1 GRD ``<season>_vv-vh<orbit>``) get statistics like stored ones, so a model
reading them can be normalised. Results are saved under ``<data_dir>/.m3leo/stats/``, with
their provenance (regions, splits, tiles per modality), for ``m3leo export --normalize`` and
``m3leo train``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..progress import ProgressCallback, ProgressEvent, no_progress
from .accumulate import (
    DEFAULT_PERCENTILES,
    Accumulator,
    BandStats,
    BandStatsReport,
    band_key,
    finish_band,
    reduce_band,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..selection import Selection
    from ..store.layout import Locate


def reduce_files(batch: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Accumulator]:
    """Accumulators for every stored and derived band of a batch of ``(datakind, path)`` files
    (the worker entry): each file is read once, its derived bands computed from that read."""
    from .reader import band_names, derived_band_names, read_tile

    out: dict[tuple[str, str], Accumulator] = {}
    for datakind, path in batch:
        stored = band_names(Path(path), datakind)
        derived = derived_band_names(datakind, stored)
        tile = read_tile(Path(path), datakind, [*stored, *derived] if derived else None)
        seen: set[tuple[str, str]] = set()
        for i, name in enumerate(tile.band_names):
            key = band_key(datakind, name)
            mask = tile.nodata[i] if tile.nodata is not None else None
            acc = reduce_band(tile.family, tile.data[i], mask, out.get(key))
            if key in seen:
                acc.files -= 1  # a pooled GUNW variable counts its file once
            seen.add(key)
            out[key] = acc
    return out


def _batches(files: Sequence[tuple[str, Path]], size: int) -> Iterator[list[tuple[str, str]]]:
    for i in range(0, len(files), size):
        yield [(dk, str(p)) for dk, p in files[i : i + size]]


def _executor(kind: str, workers: int) -> Executor | None:
    if kind == "serial" or workers <= 1:
        return None
    if kind == "process":
        import multiprocessing

        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(workers, thread_name_prefix="m3leo-stats")


def compute_band_stats(
    files: Sequence[tuple[str, Path]],
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    workers: int = 2,
    executor: str = "thread",
    batch_size: int = 8,
    progress: ProgressCallback = no_progress,
    pool: Executor | None = None,
) -> list[BandStats]:
    """Statistics of every band of ``files`` (``(datakind, path)`` pairs), in one pass.

    At most ``workers + 1`` batches are in flight, so memory is bounded by the batch size and
    the per-band accumulators (a 65,536-bin histogram each), not by the number of files.
    ``executor`` is "thread" (rasterio and numpy release the GIL), "process" or "serial";
    a ``pool`` given by the caller (e.g. the Dask engine's) replaces it and is left open.
    Batches are merged in file order whatever finishes first, so every engine gives the same
    numbers to the last bit.
    """
    total: dict[tuple[str, str], Accumulator] = {}
    progress(ProgressEvent("start", phase="stats", total_files=len(files)))

    def absorb(part: dict[tuple[str, str], Accumulator], nfiles: int) -> None:
        for key, acc in part.items():
            if key in total:
                total[key].merge(acc)
            else:
                total[key] = acc
        progress(ProgressEvent("advance", phase="stats", files=nfiles))

    own = pool is None
    if pool is None:
        pool = _executor(executor, workers)
    else:
        workers = getattr(pool, "workers", workers)
    try:
        if pool is None:
            for batch in _batches(files, batch_size):
                absorb(reduce_files(batch), len(batch))
        else:
            pending: list[tuple[Future[dict[tuple[str, str], Accumulator]], int]] = []
            for batch in _batches(files, batch_size):
                pending.append((pool.submit(reduce_files, batch), len(batch)))
                if len(pending) > workers:
                    fut, n = pending.pop(0)
                    absorb(fut.result(), n)
            for fut, n in pending:
                absorb(fut.result(), n)
    finally:
        if pool is not None and own:
            pool.shutdown(wait=True, cancel_futures=True)
    progress(ProgressEvent("done", phase="stats"))
    return [finish_band(key, total[key], percentiles) for key in sorted(total, key=lambda k: k[0])]


# --------------------------------------------------------------------------- store level


def local_files(
    settings: Settings, selection: Selection, locate: Locate | None = None
) -> list[tuple[str, Path, str, str]]:
    """``(datakind, local path, tile id, region)`` of the selected tiles in the store (or
    where ``locate(edition, region, path)`` says they are: a stream's cache)."""
    from ..catalog.query import select
    from ..store.layout import Store

    store = Store(settings.data_dir)
    table = select(settings, selection)
    cols = table.select(["edition", "region", "datakind", "path", "tile_id"]).to_pylist()
    out = []
    for row in cols:
        if locate is not None:
            found = locate(row["edition"], row["region"], row["path"])
            if found is not None:
                out.append((row["datakind"], found, row["tile_id"], row["region"]))
            continue
        p = store.local_path(row["edition"], row["region"], row["path"])
        if p.is_file():
            out.append((row["datakind"], p, row["tile_id"], row["region"]))
    return out


def sample_files(
    files: Sequence[tuple[str, Path, str, str]], sample: int, seed: int
) -> list[tuple[str, Path, str, str]]:
    """At most ``sample`` tiles per (datakind, region), drawn at random with ``seed`` from the
    files in manifest order (``numpy.random.default_rng(seed).permutation``)."""
    import numpy as np

    groups: dict[tuple[str, str], list[tuple[str, Path, str, str]]] = {}
    for f in files:
        groups.setdefault((f[0], f[3]), []).append(f)
    out: list[tuple[str, Path, str, str]] = []
    for key in sorted(groups):
        group = groups[key]
        if len(group) > sample:
            idx = np.random.default_rng(seed).permutation(len(group))[:sample]
            group = [group[i] for i in sorted(idx)]
        out.extend(group)
    return out


def provenance(files: Sequence[tuple[str, Path, str, str]]) -> dict[str, dict[str, object]]:
    """datakind -> the regions and the number of tiles its statistics were computed on."""
    out: dict[str, dict[str, object]] = {}
    for dk in sorted({f[0] for f in files}):
        mine = [f for f in files if f[0] == dk]
        out[dk] = {"regions": sorted({f[3] for f in mine}), "tiles": len({f[2] for f in mine})}
    return out


def band_stats(
    settings: Settings,
    selection: Selection,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    workers: int | None = None,
    executor: str = "thread",
    save: bool = True,
    stats_file: Path | None = None,
    progress: ProgressCallback = no_progress,
    pool: Executor | None = None,
    sample: int | None = None,
    seed: int = 0,
    locate: Locate | None = None,
) -> BandStatsReport:
    """``m3leo stats --bands``: statistics of the selected local tiles, saved for export (in
    the store, in the user cache when the store is read-only, or in ``stats_file``).

    ``pool`` (e.g. ``dist.engine.open_engine``'s Dask executor) runs the file batches instead
    of local threads; the numbers are identical. ``sample``: at most that many random tiles
    per modality and region (``sample_files``); the saved provenance records it.
    """
    from ..errors import EmptySelectionError
    from .statsfile import save_band_stats

    t0 = time.perf_counter()
    files = local_files(settings, selection, locate)
    if not files:
        raise EmptySelectionError(
            "none of the selected tiles is in the local store",
            "download them first: `m3leo download` with the same selection flags",
        )
    if sample is not None:
        files = sample_files(files, sample, seed)
    bands = compute_band_stats(
        [(dk, p) for dk, p, _, _ in files],
        percentiles=percentiles,
        workers=workers or min(settings.workers, os.cpu_count() or 1),
        executor=executor,
        progress=progress,
        pool=pool,
    )
    report = BandStatsReport(
        bands=bands,
        files=len(files),
        tiles=len({t for _, _, t, _ in files}),
        seconds=time.perf_counter() - t0,
        edition=selection.edition,
        regions=selection.region_names,
        percentiles=tuple(percentiles),
        extra={"provenance": provenance(files), "sample": sample},
    )
    if save:
        report.saved_to, report.saved_where = save_band_stats(
            settings, report, selection, stats_file
        )
    return report
