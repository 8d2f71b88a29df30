"""Per-band statistics over local tiles in one streaming, parallel pass with bounded memory.

Files are reduced in batches to the mergeable accumulators of :mod:`.accumulate` (in threads or
processes) and merged here. Values are the decoded physical values of
``tiles.decode`` (nodata, NaN and MODIS water excluded). Label layers also get class histograms.
Results are saved under ``<data_dir>/.m3leo/stats/`` for ``m3leo export --normalize``.
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
    finish_band,
    reduce_files,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..selection import Selection


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


def local_files(settings: Settings, selection: Selection) -> list[tuple[str, Path, str]]:
    """``(datakind, local path, tile id)`` of the selected tiles that exist in the store."""
    from ..catalog.query import select
    from ..store.layout import Store

    store = Store(settings.data_dir)
    table = select(settings, selection)
    cols = table.select(["edition", "region", "datakind", "path", "tile_id"]).to_pylist()
    out = []
    for row in cols:
        p = store.local_path(row["edition"], row["region"], row["path"])
        if p.is_file():
            out.append((row["datakind"], p, row["tile_id"]))
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
) -> BandStatsReport:
    """``m3leo stats --bands``: statistics of the selected local tiles, saved for export (in
    the store, in the user cache when the store is read-only, or in ``stats_file``).

    ``pool`` (e.g. ``dist.engine.open_engine``'s Dask executor) runs the file batches instead
    of local threads; the numbers are identical.
    """
    from ..errors import EmptySelectionError
    from .statsfile import save_band_stats

    t0 = time.perf_counter()
    files = local_files(settings, selection)
    if not files:
        raise EmptySelectionError(
            "none of the selected tiles is in the local store",
            "download them first: `m3leo download` with the same selection flags",
        )
    bands = compute_band_stats(
        [(dk, p) for dk, p, _ in files],
        percentiles=percentiles,
        workers=workers or min(settings.workers, os.cpu_count() or 1),
        executor=executor,
        progress=progress,
        pool=pool,
    )
    report = BandStatsReport(
        bands=bands,
        files=len(files),
        tiles=len({t for _, _, t in files}),
        seconds=time.perf_counter() - t0,
        edition=selection.edition,
        regions=selection.region_names,
        percentiles=tuple(percentiles),
    )
    if save:
        report.saved_to, report.saved_where = save_band_stats(
            settings, report, selection, stats_file
        )
    return report
