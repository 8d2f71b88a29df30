"""Where an export's units are written: in this process (samples decoded by threads, in order)
or as tasks on an executor (the Dask engine's), each writing its own files; and, for an
object-store ``--out``, the upload of a finished unit before it counts as done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from ..progress import ProgressCallback, ProgressEvent
from .base import Exporter, ExportOptions, Unit, UnitResult
from .outputs import discard, part_path
from .state import is_done
from .target import RemoteTarget

Commit = Callable[[Unit, UnitResult], None]


def run_here(
    exporter: Exporter,
    todo: list[Unit],
    workers: int,
    commit: Commit,
    committed: set[str],
    progress: ProgressCallback,
    size: dict[int, int],
    remote: RemoteTarget | None = None,
) -> None:
    """This process: samples decoded by ``workers`` threads in order, units written here; each
    sample reported as it arrives (samples and source bytes), so the bar moves from the first."""
    from .decode import ordered_map

    flat = (s for u in todo for s in u.samples)
    processed = ordered_map(exporter.process, flat, workers)

    def pulled(unit: Unit) -> Iterator[Any]:
        for s in unit.samples:
            item = next(processed)
            progress(ProgressEvent("advance", phase="export", files=1, bytes=size[id(s)]))
            yield item

    try:
        for unit in todo:
            commit(unit, published(exporter.write(unit, pulled(unit)), exporter.out, remote))
    except BaseException:
        processed.close()  # stop the workers now (interrupt, full disk), not at garbage collection
        for unit in todo:  # workers may have finished .part files of units never committed
            if unit.key not in committed:
                for path in exporter.outputs(unit):
                    discard(part_path(path))
        raise
    processed.close()


def run_on_pool(
    pool: Executor,
    exporter: Exporter,
    todo: list[Unit],
    commit: Commit,
    progress: ProgressCallback,
    size: dict[int, int],
    remote: RemoteTarget | None = None,
) -> None:
    """Each unit a task on the pool; results committed in unit order as they arrive."""
    args = (exporter.name, exporter.out, exporter.layers, exporter.options)
    state = (exporter.stats, exporter.layer_info)
    url = remote.url if remote is not None else None
    futures = [pool.submit(write_unit, *args, *state, unit, url) for unit in todo]
    try:
        for unit, fut in zip(todo, futures, strict=True):
            commit(unit, fut.result())
            nbytes = sum(size[id(s)] for s in unit.samples)
            progress(
                ProgressEvent("advance", phase="export", files=len(unit.samples), bytes=nbytes)
            )
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise


def write_unit(
    fmt: str,
    out: Path,
    layers: list[Any],
    options: ExportOptions,
    stats: Any,
    layer_info: Any,
    unit: Unit,
    remote_url: str | None = None,
) -> UnitResult:
    """One unit start to finish on whatever process runs it (a Dask worker): decode its
    samples, write its files (``.part`` then rename), upload them to an object store."""
    from .registry import get_exporter

    exporter = get_exporter(fmt)(Path(out), layers, options)
    exporter.stats = stats
    exporter.layer_info = layer_info
    try:
        res = exporter.write(unit, (exporter.process(s) for s in unit.samples))
    except BaseException:
        for path in exporter.outputs(unit):
            discard(part_path(path))
        raise
    return published(res, Path(out), RemoteTarget(remote_url) if remote_url else None)


def published(res: UnitResult, out: Path, remote: RemoteTarget | None) -> UnitResult:
    """Upload a finished unit's files (object-store exports) before it counts as done."""
    if remote is not None:
        for rel in res.files:
            remote.publish(out / rel, rel)
    return res


def finished(out: Path, remote: RemoteTarget | None, res: UnitResult | None) -> bool:
    """A unit recorded as done whose outputs are all still there (locally or in the store)."""
    if remote is None or res is None or res.failures:
        return is_done(out, res)
    return remote.has_files(res.files)
