"""Run an export: plan units, skip finished ones, decode in parallel, write, record, describe."""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TileError, TooLargeError, UsageError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .base import Exporter, ExportOptions, Failure, Unit, UnitResult
from .metadata import METADATA, build_metadata, layer_entry, write_metadata
from .samples import Sample, SamplePlan
from .state import ProgressLog, export_lock, load_results, prepare_out, same_export
from .target import RemoteTarget, is_url, staging_dir

MAX_RESAMPLE = 4096  # pixels a side; ~9x the 448-px chips, far beyond any native grid
CHIP_PX = 448
LINK_WARNING = (
    "--link: the exported files are hard links to the store where it is on the same "
    "filesystem; editing one edits the store (`m3leo verify` then calls it corrupt)"
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..selection import Selection


@dataclass
class ExportSummary:
    out: Path | str  # a folder, or the object-store URL given as --out
    format: str
    samples: int  # samples in the whole export plan
    written: int  # samples written by this run
    units_total: int  # units of this job (after --num-shards/--shard-index)
    units_written: int
    units_skipped: int  # already finished by an earlier run
    files: int
    bytes: int
    seconds: float
    complete: bool  # every unit of every job finished (metadata.json written)
    metadata_path: Path | str | None
    part: tuple[int, int]
    skipped_missing: dict[str, int] = field(default_factory=dict)
    not_downloaded: dict[str, int] = field(default_factory=dict)
    not_published: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    allow_missing: bool = False
    bare: int = 0  # of the skipped tiles, those with no local layer at all

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "format": self.format,
            "samples": self.samples,
            "written": self.written,
            "units_total": self.units_total,
            "units_written": self.units_written,
            "units_skipped": self.units_skipped,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            "metadata": str(self.metadata_path) if self.metadata_path else None,
            "part": {"index": self.part[0], "of": self.part[1]},
            "skipped_missing_layer": self.skipped_missing,
            "not_downloaded": self.not_downloaded,
            "not_published": self.not_published,
            "failed": [f.as_dict() for f in self.failures],
        }


def check_options(options: ExportOptions, exporter_cls: type[Exporter]) -> None:
    if options.num_shards < 1:
        raise UsageError(
            f"--num-shards must be at least 1, not {options.num_shards}",
            "give --num-shards K (K jobs) and --shard-index i with 0 <= i < K; 1 is one job",
        )
    if not 0 <= options.shard_index < options.num_shards:
        raise UsageError(
            f"--shard-index {options.shard_index} is outside 0..{options.num_shards - 1}",
            "give --num-shards K and --shard-index i with 0 <= i < K (e.g. $SLURM_ARRAY_TASK_ID)",
        )
    if options.shard_size < 1:
        raise UsageError(
            f"--shard-size must be at least 1, not {options.shard_size}", "e.g. --shard-size 256"
        )
    if options.resample is not None and not 1 <= options.resample <= MAX_RESAMPLE:
        raise UsageError(
            f"--resample must be 1..{MAX_RESAMPLE}, not {options.resample}",
            f"e.g. --resample 64 (chips are {CHIP_PX} px; at most --resample {MAX_RESAMPLE})",
        )
    if options.dtype is not None:
        import numpy as np

        try:
            dt = np.dtype(options.dtype)
        except TypeError:
            dt = None
        if dt is None or dt.kind not in "uif":
            raise UsageError(
                f"unknown --dtype {options.dtype!r}",
                "use a numeric numpy dtype: float32, float16, uint16, int16, uint8, ...",
            )
    if options.stats_file is not None and not options.normalize:
        raise UsageError("--stats FILE goes with --normalize", "add --normalize, or leave it out")
    if options.link and exporter_cls.name != "geotiff":
        raise UsageError(
            f"--link goes with --format geotiff (the original files), not {exporter_cls.name}",
            "leave --link out, or use --format geotiff",
        )
    if options.link and is_url(options.out):
        raise UsageError(
            "--link needs a local --out (an object store holds copies)", "leave --link out"
        )
    if not exporter_cls.decodes and (options.resample or options.normalize or options.dtype):
        raise UsageError(
            f"--format {exporter_cls.name} copies the original files: --resample, --normalize "
            "and --dtype do not apply",
            "use --format npz, webdataset or parquet to transform values",
        )


def available_memory() -> int:
    """Bytes of memory this machine can still give (MemAvailable; all RAM as a fallback)."""
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 1 << 62


def preflight_memory(
    plan: SamplePlan, options: ExportOptions, workers: int, available: int | None = None
) -> None:
    """Refuse a --resample size whose decoding cannot fit in memory (TooLargeError), judged
    from each layer's band count in its first file, before anything is decoded."""
    if not options.resample:
        return
    from ..tiles.reader import read_tile

    n2 = options.resample**2
    out_bytes = temp_bytes = 0
    for lay in plan.layers:
        bands = 0
        for s in plan.samples:
            if lay.name in s.files:
                try:
                    bands = read_tile(s.files[lay.name].path, lay.name).data.shape[0]
                except TileError:
                    continue
                break
        out_bytes += bands * n2 * 8  # at most 8 bytes a value once done
        temp_bytes = max(temp_bytes, bands * n2 * 8 * 4)  # float64 sums, weights, result
    need = workers * temp_bytes + 2 * workers * out_bytes  # decoding + the ordered window
    have = available if available is not None else available_memory()
    if need > have:
        raise TooLargeError(
            f"--resample {options.resample} needs about {need / 2**30:.1f} GiB of memory with "
            f"{workers} worker(s); {have / 2**30:.1f} GiB is available",
            "lower --resample (e.g. --resample 448) or --workers",
        )


def probe_layers(exporter: Exporter, plan: SamplePlan) -> dict[str, dict[str, Any]]:
    """Band names and output dtype of every layer, from the first readable tile holding it."""
    from .decode import decode_sample, nodata_value

    info: dict[str, dict[str, Any]] = {}
    for lay in plan.layers:
        for s in plan.samples:
            if lay.name not in s.files:
                continue
            one = type(s)(s.tile_id, s.split, s.region, {lay.name: s.files[lay.name]})
            if exporter.decodes:
                d = decode_sample(one, [lay], exporter.options, exporter.stats)
                if isinstance(d, Failure):
                    continue
                a = d.layers[lay.name]
                info[lay.name] = layer_entry(
                    a.band_names, str(a.data.dtype), a.source_dtype, nodata_value(a.data, a.nodata)
                )
            else:
                from ..tiles.reader import read_tile

                try:
                    t = read_tile(s.files[lay.name].path, lay.name)
                except TileError:
                    continue
                dt = str(t.data.dtype)
                info[lay.name] = layer_entry(t.band_names, dt, dt, nodata_value(t.data, t.nodata))
            break
        else:
            info[lay.name] = layer_entry([], "", "", None)
    return info


def _source_bytes(sample: Sample) -> int:
    """Bytes of the sample's source files (the manifest's sizes; a stat where it has none)."""
    n = 0
    for lf in sample.files.values():
        if lf.size is not None:
            n += lf.size
        else:
            try:
                n += lf.path.stat().st_size
            except OSError:
                pass
    return n


def _workers(options: ExportOptions, settings: Settings | None) -> int:
    if options.workers:
        return max(1, options.workers)
    import os

    return max(1, min(os.cpu_count() or 1, settings.workers if settings else 4))


def run_export(
    plan: SamplePlan,
    options: ExportOptions,
    *,
    settings: Settings | None = None,
    progress: ProgressCallback = no_progress,
    pool: Executor | None = None,
) -> ExportSummary:
    """Export the joined samples of ``plan`` as ``options.format`` into ``options.out``.

    With a ``pool`` (the Dask engine's executor) each unit is a task that decodes and writes its
    own output files (``execute.write_unit``); results are recorded here in unit order and the
    metadata last, so the output is byte for byte the local engine's. An fsspec URL as
    ``options.out`` is staged locally and uploaded unit by unit (``target``).
    """
    from .registry import get_exporter

    started = time.monotonic()
    cls = get_exporter(options.format)
    check_options(options, cls)
    remote = RemoteTarget(str(options.out)) if is_url(options.out) else None
    if remote is not None:
        out = staging_dir(remote.url, settings.data_dir if settings is not None else None)
    else:
        out = Path(options.out)
    exporter = cls(out, plan.layers, options)
    if options.normalize:
        from .normalize import load_stats

        if settings is None:
            raise UsageError(
                "--normalize needs the store's saved statistics (no settings given)",
                "pass settings= so the statistics of `m3leo stats --bands` can be found",
            )
        from .convert import keeps_values

        wanted = [lay.name for lay in plan.layers if not keeps_values(lay)]
        exporter.stats = load_stats(settings, plan, wanted, options.stats_file) if wanted else {}
    workers = _workers(options, settings)
    preflight_memory(plan, options, workers)
    # probing decodes one tile per layer: a --dtype refusal comes before --out is touched
    exporter.layer_info = probe_layers(exporter, plan)
    with export_lock(out, options.shard_index, options.num_shards):
        return _run_locked(plan, options, settings, progress, pool, exporter, remote, out, workers,
                           started)  # fmt: skip


def _run_locked(
    plan: SamplePlan,
    options: ExportOptions,
    settings: Settings | None,
    progress: ProgressCallback,
    pool: Executor | None,
    exporter: Exporter,
    remote: RemoteTarget | None,
    out: Path,
    workers: int,
    started: float,
) -> ExportSummary:
    """The rest of :func:`run_export`, while this job of the export holds its lock."""
    from .execute import finished, published, run_here, run_on_pool

    cls = type(exporter)
    if remote is not None:
        remote.claim(resuming=same_export(out, plan, options), overwrite=options.overwrite)
    prepare_out(out, plan, options, shown=remote.url if remote is not None else None)
    if options.link:
        progress(ProgressEvent("message", message=LINK_WARNING))

    units: list[Unit] = []
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        units.extend(exporter.units(split, samples, len(units)))
    mine = [u for u in units if u.index % options.num_shards == options.shard_index]
    done = load_results(out)
    todo = [u for u in mine if not finished(out, remote, done.get(u.key))]
    log = ProgressLog(out, options.shard_index, options.num_shards)

    total = sum(len(u.samples) for u in todo)
    size = {id(s): _source_bytes(s) for u in todo for s in u.samples}
    progress(
        ProgressEvent("start", phase="export", total_files=total, total_bytes=sum(size.values()))
    )

    written = files = nbytes = 0
    failures: list[Failure] = []
    committed: set[str] = set()

    def commit(unit: Unit, res: UnitResult) -> None:
        nonlocal written, files, nbytes
        log.record(res)
        done[unit.key] = res
        committed.add(unit.key)
        written += len(res.samples)
        files += len(res.files)
        nbytes += sum(int(i["size"]) for i in res.files.values())
        failures.extend(res.failures)
        for f in res.failures:
            progress(ProgressEvent("message", message=f"skipped {f.tile_id}: {f.path}: {f.reason}"))

    if pool is not None:
        run_on_pool(pool, exporter, todo, commit, progress, size, remote)
    else:
        run_here(exporter, todo, workers, commit, committed, progress, size, remote)
    progress(ProgressEvent("done", phase="export"))

    complete = all(u.key in done for u in units)
    meta_path: Path | str | None = None
    if complete:
        results = {u.key: done[u.key] for u in units}
        last = published(UnitResult("", exporter.finish(results)), out, remote)  # index files
        results[""] = last
        doc = build_metadata(plan, options, exporter.layer_info, results, exporter.stats)
        meta_path = write_metadata(out, doc)
        if remote is not None:
            remote.publish(meta_path, METADATA)
            meta_path = f"{remote.url.rstrip('/')}/{METADATA}"
        failures = [f for u in mine for f in done[u.key].failures]
    return ExportSummary(
        out=remote.url if remote is not None else out,
        format=cls.name,
        samples=len(plan.samples),
        written=written,
        units_total=len(mine),
        units_written=len(todo),
        units_skipped=len(mine) - len(todo),
        files=files,
        bytes=nbytes,
        seconds=time.monotonic() - started,
        complete=complete,
        metadata_path=meta_path,
        part=(options.shard_index, options.num_shards),
        skipped_missing={k: len(v) for k, v in sorted(plan.skipped.items())},
        not_downloaded={k: len(v) for k, v in sorted(plan.not_local.items())},
        not_published={k: len(v) for k, v in sorted(plan.unpublished.items())},
        failures=failures,
        allow_missing=options.allow_missing,
        bare=len(plan.bare),
    )


def export(
    settings: Settings,
    selection: Selection,
    options: ExportOptions,
    progress: ProgressCallback = no_progress,
    pool: Executor | None = None,
) -> ExportSummary:
    """`m3leo export`: join the local tiles of ``selection`` and write them as ``options.format``.

    ``options.inputs`` default to ``selection.modalities``. Corrupt source tiles are skipped and
    listed in ``summary.failures``; a full disk raises DiskFullError (finished units are kept).
    """
    from dataclasses import replace

    from .registry import get_exporter
    from .samples import plan_from_catalog

    cls = get_exporter(options.format)
    defaulted = not options.inputs and bool(selection.modalities)
    if defaulted:  # the selection's modalities, a label among them staying a label
        options = replace(options, inputs=tuple(selection.modalities))
    check_options(options, cls)
    plan = plan_from_catalog(
        settings,
        selection,
        options.inputs,
        options.labels,
        allow_missing=options.allow_missing,
        labels_win=defaulted,
    )
    return run_export(plan, options, settings=settings, progress=progress, pool=pool)
