"""Per shard, decide how to get the wanted tiles with the fewest bytes: whole shard or ranges.

A shard is fetched whole (one verified download) unless the wanted rows are a small part of it:
then only the footer, the ``path`` chunks of the row groups whose statistics may hold the
wanted rows, and the wanted row groups' column chunks are read with HTTP range requests. The
choice needs the footer, which is cached (``shardindex``), so planning a second selection in
the same shard sends nothing. ``--fetch whole|ranges`` forces either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ShardError, UsageError
from ..hub.pacing import Retrier
from .index import (
    FOOTER_TAIL,
    RangeBytes,
    RangeFile,
    RangeNotHonoredError,
    ShardIndex,
    coalesce,
    load_index,
    read_footer,
    save_index,
)

if TYPE_CHECKING:
    from ..hub.client import HubClient
    from .index import ReadRange

FETCH_MODES = ("auto", "whole", "ranges")
RANGES_BELOW = 0.5  # auto: use ranges when they need less than this fraction of the shard
MAX_BATCH = 32 * 1024 * 1024  # consecutive row groups fetched in one request up to this size
GAP = 64 * 1024  # spans closer than this are fetched as one


def check_fetch_mode(fetch: str) -> str:
    if fetch not in FETCH_MODES:
        raise UsageError(
            f"unknown fetch mode {fetch!r}",
            "use auto, whole or ranges (M3LEO_FETCH, or fetch = ... in the config file)",
        )
    return fetch


@dataclass
class ShardTask:
    """One shard of one region and the tiles wanted from it."""

    region: str
    shard: str  # repo path
    datakind: str
    size: int
    sha256: str  # hex
    commit: str
    wanted: dict[str, str]  # tile id -> path relative to the region folder (not yet local)
    known: frozenset[str]  # every tile the map puts in this shard
    present: int = 0  # wanted tiles already unpacked earlier
    mode: str = "whole"  # "whole" | "ranges" | "skip"
    row_groups: list[int] = field(default_factory=list)
    bytes: int = 0  # to fetch
    requests: int = 0  # to send
    index: ShardIndex | None = None
    absent: list[str] = field(default_factory=list)  # wanted tiles the shard does not hold
    index_bytes: int = 0  # spent reading the footer and path chunks while planning
    index_requests: int = 0
    reader: Any = field(default=None, repr=False)  # the HttpRanges used to plan (URL remembered)

    def row_path(self, tile: str) -> str:
        return f"{self.region}/{self.wanted[tile]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "shard": self.shard,
            "datakind": self.datakind,
            "size": self.size,
            "mode": self.mode,
            "tiles": len(self.wanted),
            "present": self.present,
            "row_groups": self.row_groups,
            "bytes": self.bytes,
            "requests": self.requests,
            "absent": self.absent,
        }


INTO_CHUNK = 1 << 20  # bytes read from the socket and handed on at a time by HttpRanges


class HttpRanges:
    """``read_range`` over HTTP for one shard: 206 required, retried, redirect remembered.

    After the first answer the content URL the Hub redirected to is reused, so later ranges
    cost no resolver request; if it stops working the resolve URL is used again.
    """

    def __init__(self, client: HubClient, url: str) -> None:
        self.client = client
        self.resolve_url = url
        self.url = url

    def __call__(self, start: int, end: int) -> RangeBytes:
        """Bytes ``start..end`` (inclusive), in one buffer of their size."""
        buf = bytearray(end - start + 1)

        def sink(pos: int, chunk: memoryview) -> None:
            buf[pos - start : pos - start + len(chunk)] = chunk

        self._fetch(start, end, sink, lambda n: None)
        return buf

    def into(self, fd: int, start: int, end: int, on_bytes: Any) -> int:
        """Write bytes ``start..end`` (inclusive) into ``fd`` at their own offsets, a MiB at a
        time: nothing of the range is held in memory. Returns the requests it took."""
        import os

        def sink(pos: int, chunk: memoryview) -> None:
            done = 0
            while done < len(chunk):  # pwrite may write less than asked
                done += os.pwrite(fd, chunk[done:], pos + done)

        return self._fetch(start, end, sink, on_bytes)

    def _fetch(self, start: int, end: int, sink: Any, on_bytes: Any) -> int:
        """GET the range with 206 required, handing each chunk to ``sink(offset, bytes)``; a
        dropped connection resumes at the byte it reached. Returns the requests it took."""
        from ..errors import HubError
        from ..hub.wire import RemoteProtocolError, TransportError

        retrier = Retrier(self.client.settings.max_retries, self.client.pacer)
        view = memoryview(bytearray(min(INTO_CHUNK, end - start + 1)))
        pos, requests = start, 0
        while pos <= end:
            before = pos
            try:
                requests += 1
                with self.client.stream(
                    "GET", self.url, headers={"range": f"bytes={pos}-{end}"}
                ) as resp:
                    cr = resp.headers.get("content-range", "")
                    if resp.status_code != 206:
                        raise RangeNotHonoredError(
                            f"the server answered a Range request with {resp.status_code}"
                        )
                    if not cr.startswith(f"bytes {pos}-"):
                        raise RangeNotHonoredError(f"wrong Content-Range {cr!r} for {pos}-{end}")
                    while pos <= end:
                        k = resp.readinto(view[: min(len(view), end - pos + 1)])
                        if not k:
                            raise RemoteProtocolError("short range body", self.url)
                        sink(pos, view[:k])
                        pos += k
                        on_bytes(k)
                    self.url = resp.url
            except TransportError as exc:
                if pos > before:
                    retrier.reset()  # progress was made: the budget starts again
                if not retrier.again(None, None):
                    raise self.client.connection_error(exc, self.url) from None
            except HubError:
                if self.url == self.resolve_url:
                    raise
                self.url = self.resolve_url  # the remembered content URL expired
        return requests


def fetch_index(task: ShardTask, read_range: ReadRange, cache_dir: Path) -> ShardIndex:
    """The shard's index with every row group that may hold a wanted tile read (cached)."""
    idx = task.index or load_index(cache_dir, task.sha256)
    rf = RangeFile(read_range, task.size, task.shard)
    if idx is None:
        tail = min(FOOTER_TAIL, max(4096, task.size // 32))
        counted: list[int] = []

        def counting(s: int, e: int) -> RangeBytes:
            data = read_range(s, e)
            counted.append(len(data))
            return data

        footer = read_footer(counting, task.size, task.shard, tail)
        task.index_requests += len(counted)
        task.index_bytes += sum(counted)
        idx = ShardIndex(task.shard, task.size, footer, sha256=task.sha256)
    task.index = idx
    wanted_paths = [task.row_path(t) for t in task.wanted]
    missing = [p for p in wanted_paths if idx.locate(p) is None]
    todo = idx.candidates(missing) if missing else []
    if todo:
        import pyarrow.parquet as pq

        rf.prefetch(coalesce((s for rg in todo for s in idx.span(rg, ["path"])), GAP, MAX_BATCH))
        pf = pq.ParquetFile(
            rf, metadata=idx.metadata, pre_buffer=False, page_checksum_verification=True
        )
        for rg in todo:
            try:
                col = pf.read_row_group(rg, columns=["path"], use_threads=False).column(0)
            except Exception as exc:  # noqa: BLE001 - any decode error means corrupt bytes
                raise ShardError(
                    f"shard {task.shard}: unreadable path column in row group {rg} ({exc})",
                    "re-run; --fetch whole verifies the shard against its sha256",
                ) from None
            idx.rows[rg] = [str(p) for p in col.to_pylist()]
        task.index_requests += rf.requests
        task.index_bytes += rf.fetched
    save_index(cache_dir, idx)
    return idx


def plan_ranges(task: ShardTask, idx: ShardIndex) -> None:
    """Fill in the row groups, bytes and requests of a ranges fetch, and the absent tiles."""
    groups: set[int] = set()
    absent = set(task.absent)
    for tile in sorted(task.wanted):
        where = idx.locate(task.row_path(tile))
        if where is None:
            absent.add(tile)
        else:
            groups.add(where[0])
    task.absent = sorted(absent)
    task.row_groups = sorted(groups)
    batches = row_group_batches(idx, task.row_groups)
    task.bytes = sum(e - s for b in batches for s, e in b[1])
    task.requests = sum(len(b[1]) for b in batches)


def row_group_batches(
    idx: ShardIndex, groups: list[int]
) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Consecutive row groups grouped into fetches of at most MAX_BATCH bytes (with spans)."""
    out: list[tuple[list[int], list[tuple[int, int]]]] = []
    for rg in groups:
        spans = idx.unpack_spans(rg)
        if out and out[-1][0][-1] == rg - 1:
            merged = coalesce(out[-1][1] + spans, GAP, MAX_BATCH)
            if len(merged) == 1:
                out[-1] = (out[-1][0] + [rg], merged)
                continue
        out.append(([rg], coalesce(spans, GAP, MAX_BATCH)))
    return out


def drop_absent(task: ShardTask) -> None:
    """Tiles the shard is known not to hold leave ``wanted``; nothing left to get -> skip."""
    for tile in task.absent:
        task.wanted.pop(tile, None)
    if not task.wanted:
        task.mode, task.bytes, task.requests, task.row_groups = "skip", 0, 0, []


def choose(task: ShardTask, fetch: str, read_range: ReadRange, cache_dir: Path) -> None:
    """Set ``task.mode`` (and the ranges plan) for ``fetch`` = auto | whole | ranges.

    Wanted tiles the shard's index shows it does not hold end up in ``task.absent`` (and out
    of ``wanted``): they are not published for this datakind, there is nothing to fetch.
    """
    _choose(task, fetch, read_range, cache_dir)
    drop_absent(task)


def _choose(task: ShardTask, fetch: str, read_range: ReadRange, cache_dir: Path) -> None:
    if not task.wanted:
        task.mode = "skip"
        return
    whole_bytes, whole_requests = task.size, 1
    cached = load_index(cache_dir, task.sha256)
    if cached is not None:  # tiles a previous run proved absent cost nothing, whatever --fetch
        task.absent = sorted(set(task.absent) | {
            t for t in task.wanted if cached.lacks(task.row_path(t))
        })  # fmt: skip
        drop_absent(task)
        if task.mode == "skip":
            task.index = cached
            return
    if fetch == "whole":
        task.mode, task.bytes, task.requests = "whole", whole_bytes, whole_requests
        return
    if fetch == "auto" and cached is None and task.known:
        # no footer yet: when most of the shard is wanted anyway, do not spend a request on it
        if len(task.wanted) >= RANGES_BELOW * len(task.known):
            task.mode, task.bytes, task.requests = "whole", whole_bytes, whole_requests
            return
    task.index = cached
    idx = fetch_index(task, read_range, cache_dir)
    plan_ranges(task, idx)
    if fetch == "ranges" or task.bytes < RANGES_BELOW * task.size:
        task.mode = "ranges"
    else:
        task.mode, task.bytes, task.requests = "whole", whole_bytes, whole_requests
