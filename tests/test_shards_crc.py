"""Page CRCs: damaged shard bytes are caught on the ranges path, where no sha256 covers them.

The synthetic shards carry page CRCs as Spark writes them. A whole shard is checked against its
sha256; a range read is not, and the chips are already deflate-compressed, so zstd stores them
as raw blocks and a flipped byte decodes without error. Only the page CRC catches it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from m3leo_cli.config import Settings, load_settings
from m3leo_cli.errors import ShardError
from m3leo_cli.fetch.runner import DownloadSummary
from m3leo_cli.full.download import FullDownloadPlan
from m3leo_cli.full.index import load_index
from m3leo_cli.full.plan import ShardTask, fetch_index
from m3leo_cli.full.unpack import unpack_shard
from m3leo_cli.full.unpacked import recorded_checksums
from m3leo_cli.mirror.download import download
from m3leo_cli.progress import ProgressEvent
from m3leo_cli.selection import build_selection
from m3leo_cli.server import Faults, HubServer
from m3leo_cli.testing.synth import ShardInfo, SourceInfo, SynthConfig, write_source

REGION = "europe"
DK = "s1grd-2020"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(regions=(REGION,), tiles=8, datakinds=(DK,), tiles_per_shard=8,
                      rows_per_row_group=1, chip_px=32)  # fmt: skip
    return write_source(tmp_path_factory.mktemp("src"), cfg)


def _shard(source: SourceInfo) -> ShardInfo:
    return max(source.repo("full", REGION).shards.values(), key=lambda i: len(i.tile_ids))


def _flip_in_chunk(data: bytearray, path: Path, rg: int, column: str) -> None:
    """Flip one byte three quarters into a column chunk's dictionary page (the values).

    Not in the data page: its header holds page statistics, which no CRC covers.
    """
    md = pq.read_metadata(path)
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    cc = md.row_group(rg).column(names.index(column))
    assert cc.has_dictionary_page  # pyarrow dictionary-encodes path and content
    start, end = cc.dictionary_page_offset, cc.data_page_offset
    data[start + (end - start) * 3 // 4] ^= 0x01


def _settings(tmp_path: Path, srv: HubServer) -> Settings:
    return load_settings({"data_dir": tmp_path / "data", "endpoint": srv.url, "max_retries": 3})


def test_synthetic_shards_carry_page_crcs(source: SourceInfo, tmp_path: Path) -> None:
    shard = _shard(source)
    path = source.repo("full", REGION).root / shard.path
    data = bytearray(path.read_bytes())
    _flip_in_chunk(data, path, 1, "content")
    damaged = tmp_path / "damaged.zstd.parquet"
    damaged.write_bytes(bytes(data))
    # the same damage goes unnoticed without verification: the CRC is what catches it
    plain = pq.ParquetFile(damaged, page_checksum_verification=False)
    content = plain.read_row_group(1, columns=["content"]).column(0)[0].as_py()
    mini = source.repo("miniset", REGION)
    rel = source.repo("full", REGION).tile_path(DK, shard.row_groups[1][0])
    assert content != (mini.root / rel).read_bytes()
    with pytest.raises(ShardError, match=r"row group 1 is corrupt \(.*CRC"):
        unpack_shard(damaged, tmp_path / "out", region=REGION)
    report = unpack_shard(path, tmp_path / "clean", region=REGION)  # the intact shard unpacks
    assert len(report.written) == len(shard.tile_ids) and not report.refused


def test_a_damaged_content_range_is_caught_and_the_whole_shard_used(
    source: SourceInfo, tmp_path: Path
) -> None:
    shard = _shard(source)
    tile = shard.row_groups[4][0]
    with HubServer(source.root) as srv:
        s = _settings(tmp_path, srv)
        sel = build_selection(edition="full", regions=[REGION], modalities=[DK], tiles=tile)
        plan = download(s, sel, workers=2, fetch="ranges", dry_run=True)  # footer + paths cached
        assert isinstance(plan, FullDownloadPlan) and plan.shards[0]["mode"] == "ranges"
        srv.clear_log()
        srv.faults = Faults(corrupt_first=1)  # the first GET of every file comes back damaged
        messages: list[str] = []

        def progress(e: ProgressEvent) -> None:
            if e.kind == "message" and e.message:
                messages.append(e.message)

        res = download(s, sel, workers=2, fetch="ranges", progress=progress)
        gets = [r for r in srv.log if r.repo_path == shard.path and r.method == "GET"]
    assert isinstance(res, DownloadSummary)
    assert res.failed == 0, res.failures
    assert gets[0].range and gets[-1].range is None  # the damaged range, then the whole shard
    assert any("CRC" in m and "fetching the whole shard instead" in m for m in messages), messages
    full, mini = source.repo("full", REGION), source.repo("miniset", REGION)
    rel = full.tile_path(DK, tile)
    data = (s.data_dir / "full" / REGION / rel).read_bytes()
    assert data == (mini.root / rel).read_bytes()
    assert recorded_checksums(s, "full", REGION)[rel] == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert not list((s.data_dir / "full").rglob("*.part"))


def test_a_damaged_path_chunk_fails_planning_with_the_crc(
    source: SourceInfo, tmp_path: Path
) -> None:
    shard = _shard(source)
    full = source.repo("full", REGION)
    path = full.root / shard.path
    clean = path.read_bytes()
    damaged = bytearray(clean)
    rg = 3
    _flip_in_chunk(damaged, path, rg, "path")
    calls: list[tuple[int, int]] = []

    def read_range(start: int, end: int) -> bytes:
        calls.append((start, end))
        return bytes(damaged[start : end + 1])

    tile = shard.row_groups[rg][0]
    wanted = {tile: full.tile_path(DK, tile)}
    task = ShardTask(REGION, shard.path, DK, shard.size, shard.sha256, "0" * 40, wanted,
                     known=frozenset(shard.tile_ids))  # fmt: skip
    with pytest.raises(ShardError, match=rf"path column in row group {rg} \(.*CRC"):
        fetch_index(task, read_range, tmp_path / "index")
    assert len(calls) >= 2  # the footer, then the path chunk
    assert load_index(tmp_path / "index", shard.sha256) is None  # nothing damaged is cached

    calls.clear()
    task.index = None

    def intact(start: int, end: int) -> bytes:
        calls.append((start, end))
        return clean[start : end + 1]

    idx = fetch_index(task, intact, tmp_path / "index")
    assert idx.locate(f"{REGION}/{full.tile_path(DK, tile)}") == (rg, 0)
