"""A fast path for the layer columns of ``--format hf`` exports: their values straight from the
Parquet data pages.

An hf layer is nested fixed-size lists, (bands, H, W). pyarrow rebuilds such a column from a
repetition and a definition level per value, about 8 ns a value: 25-30 ms for one
16 x 448 x 448 S1 sample, longer than the bare loop's whole read of a sample
(docs/benchmarks.md). Yet the values lie in the pages one after the other, PLAIN-encoded, row
after row. So :func:`layer_values` reads a column chunk's bytes, walks its page headers (Thrift
compact protocol), decompresses each page with pyarrow's codec, decodes only the definition
levels (runs of them: which rows are null) and copies the values into one NumPy array.

Anything else (a dictionary page, another encoding or physical type, levels that are not
one whole row or one null row at a time, counts that do not add up) returns None, and the
caller reads the column with pyarrow: this path never guesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

PLAIN, RLE = 0, 3  # parquet.thrift Encoding
DATA_PAGE, DATA_PAGE_V2 = 0, 3  # PageType
PHYSICAL = {"INT32": "<i4", "INT64": "<i8", "FLOAT": "<f4", "DOUBLE": "<f8"}
CODECS = {"UNCOMPRESSED": None, "SNAPPY": "snappy", "ZSTD": "zstd", "GZIP": "gzip",
          "BROTLI": "brotli", "LZ4_RAW": "lz4_raw"}  # fmt: skip


class _Unsupported(Exception):
    """Not a layout this reader knows: the caller uses pyarrow."""


def leaf_columns(metadata: Any) -> dict[str, int]:
    """Top-level column name -> the index of its one leaf column (names with several leaves,
    structs, are left out)."""
    seen: dict[str, list[int]] = {}
    for i in range(metadata.num_columns):
        seen.setdefault(metadata.schema.column(i).path.split(".")[0], []).append(i)
    return {name: idx[0] for name, idx in seen.items() if len(idx) == 1}


def layer_values(
    fh: IO[bytes], metadata: Any, group: int, column: int, dtype: Any, shape: Sequence[int]
) -> tuple[Any, Any] | None:
    """Row group ``group``'s leaf ``column`` (nested fixed-size lists of ``shape`` whose
    values have NumPy ``dtype``) -> ((valid rows, *shape) array, per row: valid), or None."""
    import numpy as np
    import pyarrow as pa

    info = metadata.schema.column(column)
    chunk = metadata.row_group(group).column(column)
    codec = CODECS.get(chunk.compression, "?")
    physical = PHYSICAL.get(info.physical_type)
    dtype = np.dtype(dtype)
    if (
        codec == "?"
        or physical is None
        or chunk.has_dictionary_page
        or info.max_repetition_level != len(shape)
        or np.dtype(physical).itemsize < dtype.itemsize
        or (dtype.kind == "f") != (physical[1] == "f")
    ):
        return None
    fh.seek(chunk.data_page_offset)
    data = fh.read(chunk.total_compressed_size)
    rows = metadata.row_group(group).num_rows
    size = int(np.prod(shape))
    try:
        runs, out, count = _pages(data, codec, physical, info, dtype, rows * size)
        valid = _rows(runs, rows, size, info.max_definition_level)
    except (_Unsupported, IndexError, KeyError, ValueError, NotImplementedError, pa.ArrowException):
        return None
    if count != int(valid.sum()) * size:
        return None
    return out[:count].reshape(-1, *shape), valid


def _pages(
    data: bytes, codec: str | None, physical: str, info: Any, dtype: Any, room: int
) -> tuple[list[tuple[int, int]], Any, int]:
    """Every data page of a chunk: (definition level runs, the values, how many)."""
    import numpy as np
    import pyarrow as pa

    buf = _bytes(data)
    out = np.empty(room, dtype)
    runs: list[tuple[int, int]] = []
    width = info.max_definition_level.bit_length()
    pos = count = 0
    while pos < len(buf):
        head, pos = _struct(buf, pos)
        kind, full, packed = head[1], head[2], head[3]  # a KeyError: not a page header
        body = buf[pos : pos + packed]
        pos += packed
        if kind == DATA_PAGE:
            page = head[5]
            if page.get(2) != PLAIN or page.get(3) != RLE or page.get(4) != RLE:
                raise _Unsupported("encoding")
            raw = _bytes(body if codec is None else pa.decompress(body, full, codec=codec))
            at = 0
            for level, has in ((0, info.max_repetition_level), (1, info.max_definition_level)):
                if has:
                    n = int.from_bytes(raw[at : at + 4], "little")
                    if level:
                        runs += _levels(raw[at + 4 : at + 4 + n], width, page[1])
                    at += 4 + n
            values = raw[at:]
        elif kind == DATA_PAGE_V2:
            page = head[8]
            if page.get(4) != PLAIN:
                raise _Unsupported("encoding")
            rep, dfn = page[6], page[5]
            runs += _levels(body[rep : rep + dfn], width, page[1])
            values = body[rep + dfn :]
            if codec is not None and page.get(7, True):
                values = _bytes(pa.decompress(values, full - rep - dfn, codec=codec))
        else:
            raise _Unsupported(f"page type {kind}")
        got = np.frombuffer(values, physical)
        if count + len(got) > room:
            raise _Unsupported("more values than rows")
        if dtype.kind == "u" and got.dtype.kind == "i":  # unsigned types: the same bits
            got = got.view(got.dtype.str.replace("i", "u"))
        out[count : count + len(got)] = got
        count += len(got)
    return runs, out, count


def _rows(runs: list[tuple[int, int]], rows: int, size: int, top: int) -> Any:
    """Which rows are valid, from the definition level runs: a valid row is ``size`` values
    at the top level, a null row one level 0; anything else is not this layout."""
    import numpy as np

    valid = np.zeros(rows, bool)
    k, left = 0, runs[0][1] if runs else 0
    for r in range(rows):
        if k >= len(runs):
            raise _Unsupported("fewer levels than rows")
        level = runs[k][0]
        need = size if level == top else 1
        if level not in (top, 0):
            raise _Unsupported("an empty or null list inside a row")
        valid[r] = level == top
        while need:
            if k >= len(runs) or runs[k][0] != level:
                raise _Unsupported("a row cut short")
            take = min(need, left)
            need, left = need - take, left - take
            if not left:
                k += 1
                left = runs[k][1] if k < len(runs) else 0
    if k < len(runs):
        raise _Unsupported("more levels than rows")
    return valid


def _levels(buf: memoryview, width: int, count: int) -> list[tuple[int, int]]:
    """``count`` levels of the RLE / bit-packed hybrid encoding, as (level, repeats) runs."""
    import numpy as np

    runs: list[tuple[int, int]] = []
    pos, got, nbytes = 0, 0, (width + 7) // 8
    while got < count:
        header, pos = _varint(buf, pos)
        if not header & 1:  # a repeated value
            n = min(header >> 1, count - got)
            value = int.from_bytes(buf[pos : pos + nbytes], "little")
            pos += nbytes
            if n:
                runs.append((value, n))
        else:  # groups of 8 values, ``width`` bits each, least significant bit first
            groups = header >> 1
            packed = np.frombuffer(buf[pos : pos + groups * width], np.uint8)
            pos += groups * width
            bits = np.unpackbits(packed, bitorder="little").reshape(-1, width)
            values = (bits.astype(np.int64) << np.arange(width)).sum(axis=1)[: count - got]
            n = len(values)
            cut = np.flatnonzero(np.diff(values)) + 1
            for a, b in zip([0, *cut], [*cut, n], strict=True):
                runs.append((int(values[a]), int(b - a)))
        if not n:
            raise _Unsupported("an empty level run")
        got += n
    merged: list[tuple[int, int]] = []
    for value, n in runs:
        if merged and merged[-1][0] == value:
            merged[-1] = (value, merged[-1][1] + n)
        else:
            merged.append((value, n))
    return merged


def _bytes(data: Any) -> memoryview:
    """Unsigned bytes (a pyarrow Buffer's memoryview holds signed chars)."""
    return memoryview(data).cast("B")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        out |= (byte & 0x7F) << shift
        if byte < 0x80:
            return out, pos
        shift += 7


def _zigzag(buf: memoryview, pos: int) -> tuple[int, int]:
    v, pos = _varint(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def _struct(buf: memoryview, pos: int) -> tuple[dict[int, Any], int]:
    """A Thrift compact struct: field id -> integer, bool or nested struct (others skipped)."""
    out: dict[int, Any] = {}
    last = 0
    while True:
        byte = buf[pos]
        pos += 1
        if byte == 0:
            return out, pos
        kind, delta = byte & 0x0F, byte >> 4
        if delta:
            field = last + delta
        else:
            field, pos = _zigzag(buf, pos)
        last = field
        if kind in (1, 2):
            out[field] = kind == 1
        elif kind in (4, 5, 6):
            out[field], pos = _zigzag(buf, pos)
        elif kind == 12:
            out[field], pos = _struct(buf, pos)
        else:
            pos = _skip(buf, pos, kind)


def _skip(buf: memoryview, pos: int, kind: int) -> int:
    if kind == 3:
        return pos + 1
    if kind == 7:
        return pos + 8
    if kind == 8:
        n, pos = _varint(buf, pos)
        return pos + n
    if kind in (9, 10):  # list, set
        head = buf[pos]
        pos += 1
        n, elem = head >> 4, head & 0x0F
        if n == 15:
            n, pos = _varint(buf, pos)
        for _ in range(n):
            pos = pos + 1 if elem in (1, 2) else _skip(buf, pos, elem)
        return pos
    if kind in (4, 5, 6):
        return _varint(buf, pos)[1]
    if kind == 12:
        return _struct(buf, pos)[1]
    raise _Unsupported(f"thrift type {kind}")
