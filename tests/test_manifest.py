"""The manifest file (schema, atomic write, validated reads) and the pure build from a listing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from catalog_source import listing_from_folder, shared_source

from m3leo_cli.catalog import manifest
from m3leo_cli.catalog.build import build_manifest, definition_files
from m3leo_cli.errors import HubProtocolError, ManifestCorruptError
from m3leo_cli.hub.client import TreeEntry
from m3leo_cli.testing.synth import RepoInfo


def _build(repo: RepoInfo, extra: list[TreeEntry] | None = None):
    entries = listing_from_folder(repo.root) + (extra or [])
    roles = definition_files(repo.edition, [e.path for e in entries if e.type == "file"])
    files = {role: (repo.root / p).read_bytes() for role, p in roles.items()}
    return build_manifest(repo.edition, repo.region, "c" * 40, entries, files)


@pytest.fixture
def mini(tmp_path_factory: pytest.TempPathFactory) -> RepoInfo:
    return shared_source(tmp_path_factory).repo("miniset", "europe")


@pytest.fixture
def full(tmp_path_factory: pytest.TempPathFactory) -> RepoInfo:
    return shared_source(tmp_path_factory).repo("full", "europe")


def test_schema_is_the_contract() -> None:
    assert manifest.SCHEMA.names == [
        "edition", "region", "kind", "datakind", "family", "year", "tile_id", "split", "path",
        "size", "checksum_kind", "checksum", "shard", "row_group", "row",
        "lon_min", "lat_min", "lon_max", "lat_max", "commit",
    ]  # fmt: skip
    assert manifest.SCHEMA.field("year").type == pa.int16()
    assert manifest.SCHEMA.field("checksum").type == pa.binary()
    assert not manifest.SCHEMA.field("commit").nullable


def test_miniset_build_has_every_file_with_split_bbox_checksum(mini: RepoInfo) -> None:
    built = _build(mini)
    t = built.table
    assert built.warnings == []
    tiles = t.filter(pc.field("kind") == "tile")
    assert tiles.num_rows == len(mini.tile_files)
    for row in tiles.to_pylist():
        fi = mini.tile_files[(row["datakind"], row["tile_id"])]
        assert row["path"] == fi.path and row["size"] == fi.size
        assert row["checksum_kind"] == "sha256" and row["checksum"].hex() == fi.sha256
        assert row["split"] == mini.split_of(row["tile_id"])
        box = mini.tiles[row["tile_id"]].bbox
        assert (row["lon_min"], row["lat_min"], row["lon_max"], row["lat_max"]) == pytest.approx(
            box
        )
    aux = t.filter(pc.field("kind") == "aux")
    assert set(aux["path"].to_pylist()) == {p for p, f in mini.files.items() if f.kind == "aux"}
    assert set(aux["checksum_kind"].to_pylist()) == {"git-sha1"}


def test_full_build_tiles_times_datakinds_with_shards(full: RepoInfo) -> None:
    t = _build(full).table
    shards = t.filter(pc.field("kind") == "shard")
    assert {r["path"]: r["size"] for r in shards.to_pylist()} == {
        p: s.size for p, s in full.shards.items()
    }
    assert set(shards["split"].to_pylist()) <= {"train", "val", "test"}
    tiles = t.filter(pc.field("kind") == "tile")
    assert tiles.num_rows == len(full.tiles) * len(full.datakinds)
    for row in tiles.to_pylist():
        assert row["path"] == full.tile_path(row["datakind"], row["tile_id"])
        shard = full.shard_for(row["datakind"], row["tile_id"])
        assert row["shard"] == (shard.path if shard else None)
        assert row["size"] is None and row["checksum"] is None


def test_hostile_paths_are_dropped_with_a_warning(mini: RepoInfo) -> None:
    bad = [
        TreeEntry(p, "file", 1, "0" * 40, None) for p in ("../evil.tif", "/etc/passwd", "a/../../b")
    ]
    built = _build(mini, bad)
    paths = built.table["path"].to_pylist()
    assert not any(".." in p or p.startswith("/") for p in paths)
    assert sum("escape the store" in w for w in built.warnings) == 3


def test_duplicate_listing_entries_become_one_row_with_a_warning(mini: RepoInfo) -> None:
    """B9: a listing that names every file twice plans one transfer per file, not two on one
    part file."""
    entries = listing_from_folder(mini.root)
    built = _build(mini, [e for e in entries if e.type == "file"])
    paths = built.table["path"].to_pylist()
    assert len(paths) == len(set(paths))
    dup = [w for w in built.warnings if "duplicate listing entr" in w]
    assert len(dup) == 1 and str(sum(e.type == "file" for e in entries)) in dup[0]


def test_an_over_long_listing_path_is_dropped_like_other_unsafe_ones(mini: RepoInfo) -> None:
    """B12: one path past what a file system allows is dropped with a warning, not the end of
    the refresh (ENAMETOOLONG)."""
    long_name = "europe_partitions_aschips_2f8bd3f01ddd5/" + "b" * 5000 + "/0000000000000.tif"
    built = _build(mini, [TreeEntry(long_name, "file", 1, "0" * 40, None)])
    assert long_name not in built.table["path"].to_pylist()
    assert sum("longer than a file system allows" in w for w in built.warnings) == 1


def test_numeric_looking_ids_stay_strings(tmp_path: Path) -> None:
    csv = b"identifier,split,parquet_identifier\n0123456789012,train,train_0002540be400\n"
    part = "europe_partitions_aschips_2f8bd3f01ddd5"
    entries = [
        TreeEntry(f"{part}/gssic/train_0002540be400.zstd.parquet", "file", 10, "1" * 40, "ab" * 32)
    ]
    t = build_manifest("full", "europe", "c" * 40, entries, {"parquet": csv}).table
    tile = t.filter(pc.field("kind") == "tile").to_pylist()[0]
    assert tile["tile_id"] == "0123456789012"
    assert tile["path"] == f"{part}/gssic/0123456789012.nc"
    assert tile["shard"] == entries[0].path


def test_garbage_definition_files_raise_protocol_errors() -> None:
    with pytest.raises(HubProtocolError, match="_parquet.csv"):
        build_manifest("full", "europe", "c" * 40, [], {"parquet": b"a,b\n1,2\n"})
    with pytest.raises(HubProtocolError, match="GeoJSON"):
        build_manifest("miniset", "europe", "c" * 40, [], {"geojson": b"{not json"})


def test_write_is_sorted_atomic_and_validated(
    mini: RepoInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _build(mini).table
    path = tmp_path / "m" / "manifest.parquet"
    manifest.write_manifest(path, t, {"commit": "c" * 40})
    assert manifest.read_summary(path) == {"commit": "c" * 40}
    back = manifest.read_manifest([path])
    assert back.num_rows == t.num_rows
    keys = list(zip(*(back[k].to_pylist() for k in manifest.SORT_KEYS), strict=True))
    assert keys == sorted(keys, key=lambda k: tuple((v is not None, v or "") for v in k))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]  # no temp left

    before = path.read_bytes()

    def crash(table: pa.Table, where, **kw: object) -> None:  # the disk fills mid-write
        where.write(b"PAR1 half a manifest")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest.pq, "write_table", crash)
    with pytest.raises(OSError, match="No space"):
        manifest.write_manifest(path, t, {"commit": "d" * 40})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]


def test_pushdown_filter_reads_only_matching_rows(mini: RepoInfo, tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    manifest.write_manifest(path, _build(mini).table, {})
    expr = (pc.field("kind") == "tile") & manifest.in_set("datakind", ["gssic"])
    expr = expr & manifest.in_set("split", ["train", "val"])
    got = manifest.read_manifest([path], filter=expr, columns=["tile_id", "split"])
    want = [t for t in mini.coverage["gssic"] if mini.split_of(t) in ("train", "val")]
    assert sorted(got["tile_id"].to_pylist()) == sorted(want)


@pytest.mark.parametrize(
    "content",
    [b"not parquet at all", None],  # None: a valid Parquet file that is not ours
)
def test_foreign_or_corrupt_files_are_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "manifest.parquet"
    if content is None:
        pq.write_table(pa.table({"a": [1, 2]}), path)
    else:
        path.write_bytes(content)
    with pytest.raises(ManifestCorruptError, match="not an m3leo manifest") as err:
        manifest.read_manifest([path])
    assert "refresh" in err.value.hint


def test_wrong_version_or_columns_are_refused(mini: RepoInfo, tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    t = _build(mini).table
    pq.write_table(t.replace_schema_metadata({manifest.VERSION_KEY: b"999"}), path)
    with pytest.raises(ManifestCorruptError, match="version"):
        manifest.read_summary(path)
    pq.write_table(
        t.drop_columns(["row"]).replace_schema_metadata({manifest.VERSION_KEY: b"1"}), path
    )
    with pytest.raises(ManifestCorruptError, match="columns"):
        manifest.read_summary(path)


def test_built_tables_are_already_in_sort_order(mini: RepoInfo, full: RepoInfo) -> None:
    for repo in (mini, full):
        t = _build(repo).table
        assert t.equals(manifest.sort_manifest(t)), repo.edition
