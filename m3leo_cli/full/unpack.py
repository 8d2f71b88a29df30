"""Stream the rows of a full-edition shard back into the files they were made from.

Rows are read row group by row group, a few rows at a time, so memory stays at a few pages
whatever the shard size. Every row's ``path`` (``<region>/<partition>/<datakind>/<id>.<ext>``)
is checked before anything is written: it must stay inside the store, belong to the shard's
region, partition and datakind, and name a tile the caller expects. Each file is written as
``<dest>.part``, fsynced and renamed, and its size and sha256 are returned so ``verify`` can
check it later. A bad row is reported and skipped; a corrupt row group stops the shard with a
:class:`ShardError`, and nothing half-written is ever left at a final path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import DiskFullError, ShardError, StoreError, UnsafePathError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..selection import TILE_ID_RE
from ..store.integrity import flush as flush_records
from ..store.integrity import record
from ..store.journal import start_writeback
from ..store.layout import open_in_folder, safe_join
from .index import UNPACK_COLUMNS, footer_length

if TYPE_CHECKING:
    import pyarrow.parquet as pq

BATCH_ROWS = 4  # rows decoded at a time: memory ~ BATCH_ROWS tiles + one page
READ_BUFFER = 1 << 20
TILE_EXTS = ("tif", "nc")


@dataclass(frozen=True)
class UnpackedFile:
    path: str  # relative to the region folder: <partition>/<datakind>/<id>.<ext>
    size: int
    sha256: str


@dataclass
class UnpackReport:
    """What one shard gave: files written, rows refused (with why), expected tiles not found."""

    source: str
    region: str | None = None
    written: list[UnpackedFile] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (row path, reason)
    missing: list[str] = field(default_factory=list)  # expected tile ids absent from the shard
    skipped: int = 0  # rows of tiles nobody asked for
    row_groups: int = 0

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.written)


@dataclass(frozen=True)
class RowRules:
    """What the rows of one shard must look like.

    ``expected`` maps wanted tile ids to their relative path; None means "every valid row".
    ``known`` is every tile the map assigns to this shard (a row naming another is reported).
    """

    region: str | None = None
    datakind: str | None = None
    expected: dict[str, str] | None = None
    known: frozenset[str] | None = None


class _Refused(Exception):
    pass


def split_row_path(row_path: str, ds: str | None, rules: RowRules) -> tuple[str, str, str]:
    """(region, tile id, path relative to the region folder) of a row, or raise _Refused."""
    parts = row_path.split("/")
    if len(parts) != 4:
        raise _Refused("not <region>/<partition>/<datakind>/<id>.<ext>")
    region, partition, datakind, fname = parts
    if rules.region is not None and region != rules.region:
        raise _Refused(f"belongs to region {region!r}, not {rules.region!r}")
    reg = spec.REGIONS.get(region)
    if reg is None:
        raise _Refused(f"unknown region {region!r}")
    if partition != reg.partition:
        raise _Refused(f"partition {partition!r} is not {region}'s {reg.partition!r}")
    if rules.datakind is not None and datakind != rules.datakind:
        raise _Refused(f"names datakind {datakind!r}, the shard holds {rules.datakind!r}")
    if ds is not None and ds != datakind:
        raise _Refused(f"ds column says {ds!r} but the path says {datakind!r}")
    stem, dot, ext = fname.rpartition(".")
    if not dot or not TILE_ID_RE.match(stem) or ext not in TILE_EXTS:
        raise _Refused("file name is not <13-hex tile id>.tif|.nc")
    return region, stem, f"{partition}/{datakind}/{fname}"


def write_atomic(dest: Path, data: Any, durable: bool = True) -> str:
    """Write ``data`` to ``dest`` via ``<dest>.part`` + fsync + rename; return its sha256.

    ``durable=False`` skips the fsync: inside a run journal, which syncs once per checkpoint
    (the bytes are handed to the kernel's writeback at once, so that sync has little to do).
    """
    part = dest.with_name(dest.name + ".part")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        with os.fdopen(open_in_folder(part, flags, 0o666), "wb") as fh:  # as open(part, "wb")
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            else:
                start_writeback(fh.fileno(), 0)
        os.replace(part, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"disk full while writing {dest}") from None
        raise StoreError(
            f"cannot write {dest}: {exc.strerror or exc}", "check the folder's permissions"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    record(dest, digest)  # size, mtime and sha256: what every later read checks (cheaply)
    return digest


def open_local(path: Path, metadata: Any = None) -> pq.ParquetFile:
    """Open a local shard for streaming, with a one-line ShardError when it is not usable.

    With ``metadata`` (a shard's parsed footer) the file's own footer is not read: a sparse
    file holding only the fetched row groups opens the same way.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if metadata is None:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                fh.seek(max(0, size - 8))
                footer_length(fh.read(8), size, path.name)
        return pq.ParquetFile(
            path,
            metadata=metadata,
            buffer_size=READ_BUFFER,
            pre_buffer=False,
            page_checksum_verification=True,  # Spark (parquet-mr >= 1.12) writes page CRCs
        )
    except FileNotFoundError:
        err = ShardError(f"no such shard file: {path}", "check the path")
        err.exit_code = 2  # a path typed on the command line: a usage error
        raise err from None
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, ShardError):
            raise
        raise ShardError(
            f"shard {path.name} is unreadable: {str(exc).splitlines()[0][:120]}",
            "re-download it; a truncated or corrupt shard cannot be unpacked",
        ) from None


def first_row_region(pf: pq.ParquetFile) -> str | None:
    """The region named by the shard's first row (for shards unpacked without --region)."""
    if pf.metadata.num_rows == 0:
        return None
    for batch in pf.iter_batches(batch_size=1, row_groups=[0], columns=["path"], use_threads=False):
        if batch.num_rows:
            first = batch.column(0)[0].as_py()
            return str(first).split("/", 1)[0] if first else None
    return None


def unpack_parquet(
    pf: pq.ParquetFile,
    region_dir: Path,
    rules: RowRules,
    *,
    source: str,
    row_groups: Iterable[int] | None = None,
    progress: ProgressCallback = no_progress,
    before_row_group: Any = None,
    after_row_group: Any = None,
    report: UnpackReport | None = None,
    durable: bool = True,
) -> UnpackReport:
    """Unpack the wanted rows of ``pf`` under ``region_dir``.

    ``before_row_group(rg)``/``after_row_group(rg, paths)`` let the range reader prefetch and
    drop bytes and record the row paths it saw (the shard index). Pass ``report`` to keep what
    was written when a later row group turns out corrupt.
    """
    import pyarrow as pa

    if report is None:
        report = UnpackReport(source=source, region=rules.region)
    names = set(pf.schema_arrow.names)
    if "path" not in names or "content" not in names:
        raise ShardError(
            f"shard {source} has no path/content columns (has {', '.join(sorted(names))})",
            "this is not an M3LEO full-edition shard",
        )
    cols = [c for c in UNPACK_COLUMNS if c in names]
    seen: set[str] = set()
    folders: dict[Path, Path] = {}  # resolved once per folder (safe_join), not per file
    groups = list(range(pf.metadata.num_row_groups)) if row_groups is None else list(row_groups)
    with _Writer(report, progress, durable) as writer:
        for rg in groups:
            if before_row_group is not None:
                before_row_group(rg)
            paths: list[str] = []
            try:
                for batch in pf.iter_batches(
                    batch_size=BATCH_ROWS, row_groups=[rg], columns=cols, use_threads=False
                ):
                    _unpack_batch(
                        batch, cols, region_dir, rules, report, seen, paths, writer, folders
                    )
            except (OSError, pa.ArrowException) as exc:
                writer.drain()  # rows decoded before the damage are complete: keep them
                raise ShardError(
                    f"shard {source}: row group {rg} is corrupt ({str(exc).splitlines()[0][:100]})",
                    "re-run to re-fetch the shard (--fetch whole verifies it against its sha256)",
                ) from None
            writer.drain()
            report.row_groups += 1
            if after_row_group is not None:
                after_row_group(rg, paths)
    if rules.expected is not None:
        report.missing = sorted(set(rules.expected) - seen)
    flush_records()  # this shard's integrity records, now (a Dask worker may live on idle)
    return report


class _Writer:
    """Write files on two threads so decoding the next rows overlaps writing and fsyncing.

    At most ``MAX_PENDING`` rows are in flight (memory stays bounded); results are recorded
    in row order; the first write error is raised by :meth:`drain`.
    """

    WRITERS = 2
    MAX_PENDING = 4

    def __init__(self, report: UnpackReport, progress: ProgressCallback, durable: bool) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.durable = durable
        self.report = report
        self.progress = progress
        self.pool = ThreadPoolExecutor(self.WRITERS, thread_name_prefix="m3leo-unpack")
        self.pending: deque[tuple[Future[str], str, int]] = deque()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.drain()
        finally:
            self.pool.shutdown(wait=True)

    def submit(self, dest: Path, buf: Any, rel: str) -> None:
        while len(self.pending) >= self.MAX_PENDING:
            self._finish_one()
        fut = self.pool.submit(write_atomic, dest, memoryview(buf), self.durable)
        self.pending.append((fut, rel, buf.size))

    def _finish_one(self) -> None:
        fut, rel, size = self.pending.popleft()
        sha = fut.result()
        self.report.written.append(UnpackedFile(rel, size, sha))
        self.progress(ProgressEvent("advance", "unpack", files=1, extra={"written": size}))

    def drain(self) -> None:
        while self.pending:
            self._finish_one()


def _unpack_batch(
    batch: Any,
    cols: list[str],
    region_dir: Path,
    rules: RowRules,
    report: UnpackReport,
    seen: set[str],
    paths: list[str],
    writer: _Writer,
    folders: dict[Path, Path],
) -> None:
    path_col = batch.column(cols.index("path"))
    content_col = batch.column(cols.index("content"))
    ds_col = batch.column(cols.index("ds")) if "ds" in cols else None
    len_col = batch.column(cols.index("length")) if "length" in cols else None
    for i in range(batch.num_rows):
        row_path = path_col[i].as_py()
        paths.append(row_path or "")
        try:
            if not row_path:
                raise _Refused("empty path")
            ds = ds_col[i].as_py() if ds_col is not None else None
            region, tile, rel = split_row_path(row_path, ds, rules)
            if rules.expected is not None and rules.expected.get(tile) != rel:
                if rules.known is not None and tile not in rules.known:
                    raise _Refused("names a tile the map does not put in this shard")
                if tile in rules.expected:
                    raise _Refused(f"expected {rules.expected[tile]!r} for tile {tile}")
                report.skipped += 1
                continue
            if tile in seen:
                raise _Refused(f"tile {tile} appears twice in the shard")
            value = content_col[i]
            if not value.is_valid:
                raise _Refused("row has no content")
            buf = value.as_buffer()
            if len_col is not None and len_col[i].is_valid and len_col[i].as_py() != buf.size:
                raise _Refused(f"length column says {len_col[i].as_py()}, content has {buf.size}")
            dest = safe_join(region_dir, rel, folders)
        except _Refused as why:
            report.refused.append((str(row_path), str(why)))
            continue
        except UnsafePathError as exc:
            report.refused.append((str(row_path), exc.message))
            continue
        seen.add(tile)
        report.region = report.region or region
        writer.submit(dest, buf, rel)


def unpack_shard(
    path: Path,
    store_region_dir: Path,
    expected: dict[str, str] | None = None,
    progress: ProgressCallback = no_progress,
    *,
    region: str | None = None,
    datakind: str | None = None,
) -> UnpackReport:
    """Unpack one local shard under ``store_region_dir`` (``expected``: tile id -> rel path)."""
    with open_local(Path(path)) as pf:
        reg = region or first_row_region(pf)
        rules = RowRules(region=reg, datakind=datakind, expected=expected)
        return unpack_parquet(
            pf, store_region_dir, rules, source=Path(path).name, progress=progress
        )
