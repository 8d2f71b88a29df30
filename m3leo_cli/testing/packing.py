"""Full-edition Parquet shards: which tiles go in which shard, and the shard bytes.

A shard is ``<partition>/<datakind>/<split>_<12hex>.zstd.parquet``; its name is the
``parquet_identifier`` (``f"{split}_{base + k:012x}"``, base 10e9 / 20e9 / 30e9 for train / val /
test). The same identifiers are reused in every datakind folder; a datakind that lacks every
tile of a shard (partial coverage) has no file for it. Rows are the raw chip files, like Spark's
``binaryFile`` source: path, ds, content, modificationTime, length. Every page carries a CRC,
so a reader of byte ranges (no whole-file sha256 to check) can still detect damaged bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

SPLIT_BASE = {"train": 10_000_000_000, "val": 20_000_000_000, "test": 30_000_000_000}
MODIFICATION_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def parquet_identifier(split: str, k: int) -> str:
    return f"{split}_{SPLIT_BASE[split] + k:012x}"


def plan_shards(
    tiles_in_order: Sequence[tuple[str, str]], tiles_per_shard: int
) -> dict[str, tuple[str, ...]]:
    """parquet_identifier -> tile ids, chunking each split's tiles in the given order."""
    by_split: dict[str, list[str]] = {s: [] for s in SPLIT_BASE}
    for tile_id, split in tiles_in_order:
        by_split[split].append(tile_id)
    plan: dict[str, tuple[str, ...]] = {}
    for split, ids in by_split.items():
        for k, start in enumerate(range(0, len(ids), tiles_per_shard)):
            plan[parquet_identifier(split, k)] = tuple(ids[start : start + tiles_per_shard])
    return plan


def shard_bytes(rows: Sequence[tuple[str, str, bytes]], rows_per_row_group: int) -> bytes:
    """Encode rows (path, ds, content) as zstd Parquet: small row groups, page CRCs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            pa.field("path", pa.string()),
            pa.field("ds", pa.string()),
            pa.field("content", pa.binary()),
            pa.field("modificationTime", pa.timestamp("us", tz="UTC")),
            pa.field("length", pa.int64()),
        ]
    )
    table = pa.table(
        {
            "path": [r[0] for r in rows],
            "ds": [r[1] for r in rows],
            "content": [r[2] for r in rows],
            "modificationTime": [MODIFICATION_TIME] * len(rows),
            "length": [len(r[2]) for r in rows],
        },
        schema=schema,
    )
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        row_group_size=max(1, rows_per_row_group),
        write_statistics=["path", "ds", "modificationTime", "length"],
        write_page_checksum=True,  # page CRCs, as Spark (parquet-mr >= 1.12) writes by default
    )
    return buf.getvalue()
