"""Where things are inside a full-edition Parquet shard, learnt from as few bytes as possible.

A shard's footer (the Thrift ``FileMetaData`` at its end) gives every column chunk's byte range,
so one tail read plus the ``path`` chunks of the candidate row groups tell which row groups hold
the wanted tiles. :class:`ShardIndex` keeps what was learnt (footer + row paths per row group)
and is cached on disk by the shard's sha256, so a second selection in the same shard costs no
footer request. :class:`RangeFile` is a read-only file over byte ranges that pyarrow reads
column chunks from; it fetches what it is asked for through a ``read_range(start, end)``
callable (inclusive ``end``, like HTTP ``Range``), and counts requests and bytes.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ShardError
from ..store.layout import write_text_atomic

if TYPE_CHECKING:
    import pyarrow.parquet as pq

# what a range read returns: bytes, or the buffer the body was read straight into
RangeBytes = bytes | bytearray
ReadRange = Callable[[int, int], RangeBytes]
"""``read_range(start, end) -> bytes`` with an inclusive ``end`` (HTTP ``Range`` semantics)."""

MAGIC = b"PAR1"
FOOTER_TAIL = 64 * 1024  # one speculative tail read usually holds the whole footer
INDEX_VERSION = 1
# the columns unpacking reads; `modificationTime` sits between them and is tiny
UNPACK_COLUMNS = ("path", "ds", "content", "length")


class RangeNotHonoredError(ShardError):
    """The server answered a byte-range request with something else (e.g. the whole file)."""

    default_hint = "the server ignores Range requests; use --fetch whole"


def _truncated(name: str, why: str) -> ShardError:
    return ShardError(
        f"shard {name} is truncated or not Parquet: {why}",
        "re-download it (`m3leo download --edition full` re-fetches and verifies shards)",
    )


def footer_length(tail: bytes, size: int, name: str) -> int:
    """Length of the Thrift footer from the last 8 bytes of a shard (validates the magic)."""
    if size < 12 or len(tail) < 8:
        raise _truncated(name, f"only {size} bytes")
    if tail[-4:] != MAGIC:
        raise _truncated(name, "no PAR1 magic at the end")
    (n,) = struct.unpack("<I", tail[-8:-4])
    if n <= 0 or n + 12 > size:
        raise _truncated(name, f"footer length {n} does not fit in {size} bytes")
    return n


def read_footer(
    read_range: ReadRange, size: int, name: str, tail_bytes: int = FOOTER_TAIL
) -> bytes:
    """The footer plus the 8 trailing bytes, usually in one request (two for huge footers)."""
    start = max(0, size - tail_bytes)
    tail = bytes(read_range(start, size - 1))  # a small footer: a copy costs nothing
    if len(tail) != size - start:
        raise RangeNotHonoredError(
            f"shard {name}: asked for {size - start} tail bytes, got {len(tail)}"
        )
    n = footer_length(tail, size, name)
    if n + 8 > len(tail):
        head = bytes(read_range(size - 8 - n, start - 1))
        if len(head) != start - (size - 8 - n):
            raise RangeNotHonoredError(f"shard {name}: footer range answered with {len(head)} B")
        tail = head + tail
    return tail[-(n + 8) :]


def parse_footer(footer: bytes, name: str) -> pq.FileMetaData:
    """``FileMetaData`` from raw footer bytes (offsets stay those of the real shard)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(pa.BufferReader(MAGIC + footer))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ShardError(
            f"shard {name}: corrupt Parquet footer ({str(exc).splitlines()[0][:120]})",
            "re-run to re-fetch the shard, or --fetch whole to verify it against its sha256",
        ) from None


def chunk_span(md: pq.FileMetaData, rg: int, column: str) -> tuple[int, int]:
    """Byte span ``[start, end)`` of one column chunk (dictionary page included)."""
    rgm = md.row_group(rg)
    for c in range(rgm.num_columns):
        cc = rgm.column(c)
        if cc.path_in_schema == column:
            start = cc.data_page_offset
            if cc.has_dictionary_page and cc.dictionary_page_offset is not None:
                start = min(start, cc.dictionary_page_offset)
            return start, start + cc.total_compressed_size
    raise KeyError(column)


def coalesce(
    spans: Iterable[tuple[int, int]], gap: int = 64 * 1024, max_span: int | None = None
) -> list[tuple[int, int]]:
    """Merge ``[start, end)`` spans closer than ``gap`` bytes (never past ``max_span`` long)."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1] + gap and (max_span is None or e - out[-1][0] <= max_span):
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


@dataclass
class ShardIndex:
    """What is known about one shard: its footer and the row paths of the row groups read."""

    name: str  # repo path (or file name) for messages
    size: int
    footer: bytes
    sha256: str | None = None
    rows: dict[int, list[str]] = field(default_factory=dict)

    @cached_property
    def metadata(self) -> pq.FileMetaData:
        return parse_footer(self.footer, self.name)

    @property
    def num_row_groups(self) -> int:
        return int(self.metadata.num_row_groups)

    def columns(self) -> list[str]:
        schema = self.metadata.schema
        return [schema.column(i).path for i in range(len(schema))]

    def span(self, rg: int, columns: Sequence[str]) -> list[tuple[int, int]]:
        have = set(self.columns())
        return [chunk_span(self.metadata, rg, c) for c in columns if c in have]

    def unpack_spans(self, rg: int) -> list[tuple[int, int]]:
        return self.span(rg, UNPACK_COLUMNS)

    def row_group_bytes(self, rg: int) -> int:
        return sum(e - s for s, e in coalesce(self.unpack_spans(rg)))

    def candidates(self, paths: Iterable[str]) -> list[int]:
        """Row groups whose ``path`` statistics may hold any of ``paths`` and are not read yet."""
        wanted = sorted(set(paths))
        out = []
        for rg in range(self.num_row_groups):
            if rg in self.rows:
                continue
            lo, hi = self._path_bounds(rg)
            if lo is None or any(lo <= p <= hi for p in wanted):  # type: ignore[operator]
                out.append(rg)
        return out

    def _path_bounds(self, rg: int) -> tuple[str | None, str | None]:
        rgm = self.metadata.row_group(rg)
        for c in range(rgm.num_columns):
            cc = rgm.column(c)
            if cc.path_in_schema == "path":
                st = cc.statistics
                if st is not None and st.has_min_max:
                    lo, hi = st.min, st.max
                    if isinstance(lo, bytes):
                        lo, hi = lo.decode("utf-8", "replace"), hi.decode("utf-8", "replace")
                    return str(lo), str(hi)
        return None, None

    def locate(self, path: str) -> tuple[int, int] | None:
        for rg, paths in self.rows.items():
            if path in paths:
                return rg, paths.index(path)
        return None

    def lacks(self, path: str) -> bool:
        """True when what is known proves the shard has no row ``path`` (rows read, statistics).

        The footer and the row paths are the shard's own account of what it holds, so a tile
        the map lists but the shard lacks is "not published" for that datakind, not a failure.
        """
        return self.locate(path) is None and not self.candidates([path])

    def complete(self) -> bool:
        return len(self.rows) == self.num_row_groups

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "version": INDEX_VERSION,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "footer": base64.b64encode(self.footer).decode("ascii"),
            "rows": {str(k): v for k, v in sorted(self.rows.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardIndex:
        if data.get("version") != INDEX_VERSION:
            raise ValueError("index version")
        return cls(
            name=str(data["name"]),
            size=int(data["size"]),
            footer=base64.b64decode(data["footer"]),
            sha256=data.get("sha256"),
            rows={int(k): list(v) for k, v in data["rows"].items()},
        )


def index_path(cache_dir: Path, sha256: str) -> Path:
    return cache_dir / f"{sha256}.json"


def load_index(cache_dir: Path, sha256: str | None) -> ShardIndex | None:
    """The cached index of the shard with this sha256, or None (a bad cache entry is ignored)."""
    if not sha256:
        return None
    p = index_path(cache_dir, sha256)
    try:
        idx = ShardIndex.from_json(json.loads(p.read_text(encoding="utf-8")))
        idx.metadata  # noqa: B018 - parse now so a damaged entry is dropped here
        return idx
    except (OSError, ValueError, KeyError, TypeError, ShardError):
        return None


def save_index(cache_dir: Path, index: ShardIndex) -> None:
    """Write the index atomically (keyed by sha256; shards without one are not cached)."""
    if not index.sha256:
        return
    write_text_atomic(index_path(cache_dir, index.sha256), json.dumps(index.to_json()))


class RangeFile(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes whose content comes from ``read_range``.

    :meth:`prefetch` fetches coalesced spans up front; a read outside them is fetched on demand
    (and counted). :meth:`drop` forgets fetched bytes so memory stays at one batch of spans.
    """

    def __init__(self, read_range: ReadRange, size: int, name: str = "shard") -> None:
        super().__init__()
        self._read_range = read_range
        self._size = size
        self._pos = 0
        self._parts: list[tuple[int, RangeBytes]] = []
        self.name_ = name
        self.requests = 0
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def size(self) -> int:
        return self._size

    def _fetch(self, start: int, end: int) -> RangeBytes:
        data = self._read_range(start, end - 1)
        self.requests += 1
        self.fetched += len(data)
        if len(data) != end - start:
            raise RangeNotHonoredError(
                f"shard {self.name_}: asked for bytes {start}-{end - 1}, got {len(data)} bytes"
            )
        return data

    def add(self, start: int, data: RangeBytes) -> None:
        self._parts.append((start, data))
        self._parts.sort(key=lambda p: p[0])

    def prefetch(self, spans: Iterable[tuple[int, int]]) -> None:
        for s, e in spans:
            if not self._covered(s, e):
                self.add(s, self._fetch(s, e))

    def drop(self) -> None:
        self._parts.clear()

    def _covered(self, s: int, e: int) -> memoryview | None:
        for ps, data in self._parts:
            if ps <= s and e <= ps + len(data):
                return memoryview(data)[s - ps : e - ps]  # no copy of a fetched span
        return None

    def readinto(self, b: Any) -> int:
        n = min(len(b), max(0, self._size - self._pos))
        if n == 0:
            return 0
        s, e = self._pos, self._pos + n
        chunk = self._covered(s, e)
        memoryview(b)[:n] = chunk if chunk is not None else self._fetch(s, e)
        self._pos = e
        return n
