"""The synthetic source matches the M3LEO format point by point (docs/format.md).

Every datakind is read back with rasterio / h5netcdf; root files, shards, identifiers, splits,
coverage and determinism are checked against what SourceInfo says was written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from datetime import date
from pathlib import Path

import h5netcdf
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio

from m3leo_cli import spec
from m3leo_cli.errors import UnknownRegionError, UsageError
from m3leo_cli.testing import geometry
from m3leo_cli.testing.synth import RepoInfo, SourceInfo, SynthConfig, write_source

REGION = "conus"  # has every GUNW period
TILE_ID = re.compile(r"^[0-3][0-9a-f]{12}$")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    return write_source(tmp_path_factory.mktemp("src"), SynthConfig(regions=(REGION,)))


@pytest.fixture(scope="module")
def mini(source: SourceInfo) -> RepoInfo:
    return source.repo("miniset", REGION)


@pytest.fixture(scope="module")
def full(source: SourceInfo) -> RepoInfo:
    return source.repo("full", REGION)


def _tile_file(repo: RepoInfo, datakind: str, index: int = 0) -> Path:
    tile_id = repo.coverage[datakind][index]
    return repo.root / repo.tile_path(datakind, tile_id)


def _tif_check(
    repo: RepoInfo, datakind: str, bands: tuple[str, ...], dtype: str, shape: tuple[int, int]
) -> np.ndarray:
    """Open every tile of a GeoTIFF datakind; check the common contract; return all data."""
    stack = []
    for tile_id in repo.coverage[datakind]:
        path = repo.root / repo.tile_path(datakind, tile_id)
        with rasterio.open(path) as ds:
            assert ds.driver == "GTiff"
            assert ds.descriptions == bands
            assert ds.count == len(bands)
            assert set(ds.dtypes) == {dtype}
            assert ds.shape == shape
            assert ds.crs.to_epsg() == 4326
            assert ds.compression is not None and ds.compression.value == "DEFLATE"
            assert ds.tags()["TIFFTAG_DATETIME"]
            w, s, e, n = repo.tiles[tile_id].bbox
            assert ds.bounds == pytest.approx((w, s, e, n), abs=1e-9)
            stack.append(ds.read())
    return np.stack(stack)


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    assert b"\r" not in raw  # LF line endings
    rows = list(csv.reader(io.StringIO(raw.decode())))
    return rows[0], rows[1:]


# ----------------------------------------------------------------------------- layout


def test_miniset_layout(mini: RepoInfo) -> None:
    reg = spec.REGIONS[REGION]
    assert mini.repo_id == "M3LEO-miniset/conus"
    assert mini.root.name == REGION and mini.root.parent.name == "M3LEO-miniset"
    top = sorted(p.name for p in mini.root.iterdir())
    assert top == sorted(
        [
            ".gitattributes",
            "README.md",
            reg.partition,
            f"{reg.partition}_miniset.geojson",
            f"{reg.partition}_splits_60bands_angle09_60-20-20_miniset.csv",
        ]
    )
    kinds = sorted(p.name for p in (mini.root / reg.partition).iterdir())
    assert tuple(kinds) == spec.expected_datakinds("miniset", REGION) == mini.datakinds
    for dk in kinds:
        ext = spec.parse_datakind(dk).ext
        names = sorted(p.name for p in (mini.root / reg.partition / dk).iterdir())
        assert names == sorted(f"{t}.{ext}" for t in mini.coverage[dk])
    # every file on disk is described, with its size and sha256
    on_disk = {p.relative_to(mini.root).as_posix(): p for p in mini.root.rglob("*") if p.is_file()}
    assert set(on_disk) == set(mini.files)
    for rel, p in on_disk.items():
        data = p.read_bytes()
        assert mini.files[rel].size == len(data)
        assert mini.files[rel].sha256 == hashlib.sha256(data).hexdigest()


def test_gitattributes_and_readme(mini: RepoInfo, full: RepoInfo) -> None:
    mini_lines = (mini.root / ".gitattributes").read_text().splitlines()
    full_lines = (full.root / ".gitattributes").read_text().splitlines()
    assert "*.parquet filter=lfs diff=lfs merge=lfs -text" in full_lines
    assert not any(".tif " in line for line in full_lines)
    tile_paths = [f.path for f in mini.files.values() if f.kind == "tile"]
    for path in tile_paths:  # the miniset lists every chip file individually
        assert f"{path} filter=lfs diff=lfs merge=lfs -text" in mini_lines
    assert mini_lines[: len(full_lines)] == full_lines
    for repo in (mini, full):
        text = (repo.root / "README.md").read_text()
        assert text.startswith("# M3LEO") and "gssic" in text


def test_full_layout(full: RepoInfo) -> None:
    reg = spec.REGIONS[REGION]
    assert full.repo_id == "M3LEO/conus"
    top = sorted(p.name for p in full.root.iterdir())
    assert top == sorted(
        [
            ".gitattributes",
            "README.md",
            reg.partition,
            f"{reg.partition}_splits_60bands_angle09_60-20-20.csv",
            f"{reg.partition}_splits_60bands_angle09_60-20-20_parquet.csv",
        ]
    )
    assert not list(full.root.glob("*.geojson"))
    kinds = sorted(p.name for p in (full.root / reg.partition).iterdir())
    assert tuple(kinds) == spec.expected_datakinds("full", REGION)
    shard_re = re.compile(r"^(train|val|test)_[0-9a-f]{12}\.zstd\.parquet$")
    for dk in kinds:
        for p in (full.root / reg.partition / dk).iterdir():
            assert shard_re.match(p.name), p.name
    on_disk = {p.relative_to(full.root).as_posix() for p in full.root.rglob("*") if p.is_file()}
    assert on_disk == set(full.files)


# ----------------------------------------------------------------------------- GeoTIFF kinds


def test_s1grd(mini: RepoInfo, tmp_path: Path) -> None:
    data = _tif_check(mini, "s1grd-2020", spec.S1GRD_BANDS, "uint16", (64, 64))
    db = data.view(np.int16)  # uint16 holds wrapped signed dB; int16 restores it
    assert db.max() < 0 and db.min() > -40
    vv, vh = db[:, 0].mean(), db[:, 2].mean()
    assert vh < vv  # cross-pol is darker
    info = write_source(
        tmp_path,
        SynthConfig(
            regions=(REGION,),
            editions=("miniset",),
            tiles=3,
            datakinds=("s1grd-2020",),
            s1grd_dtype="float32",
        ),
    )
    f32 = _tif_check(
        info.repo("miniset", REGION), "s1grd-2020", spec.S1GRD_BANDS, "float32", (64, 64)
    )
    assert -40 < f32.min() < f32.max() < 0


def test_s2rgbm(mini: RepoInfo) -> None:
    data = _tif_check(mini, "s2rgbm-2020", spec.S2RGBM_BANDS, "uint8", (64, 64))
    assert spec.S2RGBM_BANDS[:3] == ("01_red", "01_green", "01_blue")
    assert (data == 0).any()  # cloud-masked pixels
    assert (data > 0).mean() > 0.8 and data.std() > 5


def test_modis(mini: RepoInfo) -> None:
    data = _tif_check(mini, "modis44b006veg", spec.MODIS_BANDS, "uint8", (64, 64))
    assert spec.MODIS_BANDS[0] == "Percent_Tree_Cover_2016"
    assert (data == 200).any()  # water
    land = data[data != 200]
    assert land.max() <= 100 and land.std() > 5


def test_esaworldcover(mini: RepoInfo) -> None:
    data = _tif_check(mini, "esaworldcover-2020", spec.ESAWC_BANDS, "uint8", (64, 64))
    values = set(np.unique(data).tolist())
    assert values <= {0, *spec.ESA_WORLDCOVER_CLASSES}
    assert 0 in values  # some no data
    assert len(values - {0}) >= 4 and (data != 0).mean() > 0.8


def test_srtmdem(mini: RepoInfo) -> None:
    data = _tif_check(mini, "srtmdem", ("elevation", "slope"), "uint16", (64, 64))
    elevation, slope = data[:, 0], data[:, 1]
    assert elevation.min() > 0 and elevation.std() > 10
    assert slope.max() < 90


def test_ghsbuilts_native_grid(mini: RepoInfo) -> None:
    data = _tif_check(mini, "ghsbuilts-2020", spec.GHSBUILTS_BANDS, "uint16", (12, 15))
    assert data.max() > 0


def test_s2srm_full_only(full: RepoInfo, mini: RepoInfo) -> None:
    assert "s2srm-2020" in full.datakinds and "s2srm-2020" not in mini.datakinds
    shard = next(s for s in full.shards.values() if s.datakind == "s2srm-2019")
    content = pq.read_table(full.root / shard.path, columns=["content"])["content"][0].as_py()
    with rasterio.MemoryFile(content) as mem, mem.open() as ds:
        assert ds.descriptions == spec.S2SRM_BANDS
        assert ds.dtypes[0] == "uint8" and ds.crs.to_epsg() == 4326


# ----------------------------------------------------------------------------- netCDF kinds


def _labels(var: h5netcdf.Variable) -> list[object]:
    return [v.decode() if isinstance(v, bytes) else v for v in var[:].tolist()]


def test_gssic(mini: RepoInfo) -> None:
    path = _tile_file(mini, "gssic")
    with h5netcdf.File(path, "r") as f:
        assert not f.groups
        assert f["amplitude"].dimensions == ("season", "polarimetry", "y", "x")
        assert f["coherence"].dimensions == ("season", "deltadays", "y", "x")
        assert f["decaymodel"].dimensions == ("season", "param", "y", "x")
        assert f["geometry"].dimensions == ("feature", "y", "x")
        assert _labels(f["season"]) == ["winter", "spring", "summer", "fall"]
        assert _labels(f["polarimetry"]) == ["vv", "vh"]
        assert _labels(f["deltadays"]) == [12, 24, 36, 48]
        assert f["deltadays"].dtype.kind == "i"
        assert _labels(f["param"]) == ["rho", "tau", "rmse"]
        assert _labels(f["feature"]) == ["inc", "lsmap"]
        assert f["amplitude"].shape == (4, 2, 12, 15)
        assert f["amplitude"].dtype == np.float32
        assert f["y"].attrs["standard_name"] == "latitude"
        assert f["x"].attrs["units"] == "degrees_east"
        assert f["amplitude"].attrs["grid_mapping"] == "spatial_ref"
        coh = f["coherence"][:]
        assert 0 < coh.min() and coh.max() <= 1
    tile_id = path.stem
    with rasterio.open(f"netcdf:{path}:amplitude") as ds:
        assert ds.count == 8 and ds.shape == (12, 15)
        assert ds.crs.to_epsg() == 4326
        assert ds.bounds == pytest.approx(mini.tiles[tile_id].bbox, abs=1e-9)


def test_gunw(mini: RepoInfo) -> None:
    periods = spec.REGION_GUNW[REGION]
    assert len(periods) == 4
    for dk in periods:
        start, end = spec.parse_datakind(dk).period or ("", "")
        path = _tile_file(mini, dk)
        with h5netcdf.File(path, "r") as f:
            assert not f.variables  # everything lives in the group
            g = f["science/grids/data"]
            assert {"unwrappedPhase", "coherence", "amplitude"} <= set(g.variables)
            pairs = _labels(g["datepair"])
            assert len(pairs) == 32 and len(set(pairs)) == 32
            for pair in pairs:
                assert re.fullmatch(r"\d{8}_\d{8}", pair)
                later, earlier = (
                    date(int(p[:4]), int(p[4:6]), int(p[6:])) for p in pair.split("_")
                )
                assert later > earlier
                assert date.fromisoformat(start) <= earlier and later <= date.fromisoformat(end)
            for name in ("unwrappedPhase", "coherence", "amplitude"):
                var = g[name]
                assert var.dimensions == ("datepair", "y", "x")
                assert var.shape == (32, 12, 15) and var.dtype == np.float32
                fill = var.attrs["_FillValue"]
                values = var[:]
                assert (values == fill).any() and (values != fill).mean() > 0.7
        with rasterio.open(f"netcdf:{path}:/science/grids/data/unwrappedPhase") as ds:
            assert ds.count == 32 and ds.crs.to_epsg() == 4326
            assert ds.nodata == 0.0
            assert ds.bounds == pytest.approx(mini.tiles[path.stem].bbox, abs=1e-9)


def test_biomass(mini: RepoInfo) -> None:
    path = _tile_file(mini, "biomass-2020")
    with h5netcdf.File(path, "r") as f:
        assert {"agb", "agb_se"} <= set(f.variables)
        assert f["agb"].dimensions == ("y", "x") and f["agb"].shape == (12, 15)
        assert f["agb"].dtype == np.float32
        assert (f["agb_se"][:] >= 0).all()
    with rasterio.open(f"netcdf:{path}:agb") as ds:
        assert ds.crs.to_epsg() == 4326 and ds.count == 1


# ----------------------------------------------------------------------------- root files


def test_split_csvs(mini: RepoInfo, full: RepoInfo) -> None:
    reg = spec.REGIONS[REGION]
    header, rows = _csv(mini.root / reg.split_csv("miniset"))
    assert header == ["identifier", "split", "original_index"]
    assert [(r[0], r[1], int(r[2])) for r in rows] == [
        (t.tile_id, t.split, t.original_index) for t in mini.tiles.values()
    ]
    header, rows = _csv(full.root / reg.split_csv("full"))
    assert header == ["identifier", "split"]
    assert {r[0]: r[1] for r in rows} == {t: i.split for t, i in full.tiles.items()}
    header, rows = _csv(full.root / reg.parquet_csv())
    assert header == ["identifier", "split", "parquet_identifier"]
    for tile_id, split, pid in rows:
        assert pid.startswith(split + "_") and pid == full.parquet_ids[tile_id]


def test_geojson(mini: RepoInfo) -> None:
    doc = json.loads((mini.root / spec.REGIONS[REGION].geojson()).read_text())
    assert doc["type"] == "FeatureCollection"
    assert "CRS84" in doc["crs"]["properties"]["name"]
    assert len(doc["features"]) == len(mini.tiles)
    for feat in doc["features"]:
        props = feat["properties"]
        assert list(props) == ["area_km2", "identifier", "original_index"]
        assert 21.0 < props["area_km2"] < 22.5
        ring = feat["geometry"]["coordinates"][0]
        (x0, y0), (x1, y1), (x2, y2), (x3, y3), last = ring
        assert last == ring[0]
        assert x0 == x1 < x2 == x3 and y0 == y3 < y1 == y2  # (min,min)->(min,max)->(max,max)
        assert 0.039 < y1 - y0 < 0.042  # 4480 m of latitude
        assert mini.tiles[props["identifier"]].bbox == (x0, y0, x2, y2)


def _reference_id(ring: list[list[float]]) -> str:
    """geetiles' algorithm, written out again: sha256 of numpy's text of the rounded envelope.

    The envelope boundary is what shapely (GEOS) returns: (minx, miny) -> (maxx, miny) ->
    (maxx, maxy) -> (minx, maxy) -> (minx, miny).
    """
    xs, ys = [v[0] for v in ring], [v[1] for v in ring]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    envelope = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    text = str(np.array(envelope).round(5))
    return hex(int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 10**15)[2:].zfill(13)


def test_identifiers(mini: RepoInfo, source: SourceInfo) -> None:
    doc = json.loads((mini.root / spec.REGIONS[REGION].geojson()).read_text())
    ids = [f["properties"]["identifier"] for f in doc["features"]]
    assert len(set(ids)) == len(ids) == 10
    for feat, tile_id in zip(doc["features"], ids, strict=True):
        assert TILE_ID.match(tile_id)
        assert _reference_id(feat["geometry"]["coordinates"][0]) == tile_id
    # the same identifiers in both editions and every datakind
    assert set(source.repo("full", REGION).tiles) == set(ids)
    many = geometry.build_tiles("china", 400, seed=3)
    assert len({t.tile_id for t in many}) == 400
    assert all(TILE_ID.match(t.tile_id) for t in many)


@pytest.mark.parametrize(
    ("n", "expected"), [(3, (1, 1, 1)), (10, (6, 2, 2)), (50, (30, 10, 10)), (500, (300, 100, 100))]
)
def test_split_proportions(n: int, expected: tuple[int, int, int]) -> None:
    for region in ("europe", "china", "southamerica"):
        tiles = geometry.build_tiles(region, n, seed=0)
        split = geometry.assign_splits(tiles, spec.REGIONS[region].split_angle)
        counts = tuple(list(split.values()).count(s) for s in ("train", "val", "test"))
        assert counts == expected


def test_splits_are_stripes() -> None:
    """Along the region's angle the splits come in runs: train x3, test, val, repeated."""
    angle = spec.REGIONS["conus"].split_angle
    tiles = geometry.build_tiles("conus", 600, seed=1)
    split = geometry.assign_splits(tiles, angle)
    order = sorted(
        tiles, key=lambda t: t.centre[0] * math.cos(angle) + t.centre[1] * math.sin(angle)
    )
    runs = [split[order[0].tile_id]]
    for t in order[1:]:
        if split[t.tile_id] != runs[-1]:
            runs.append(split[t.tile_id])
    assert runs[:4] == ["train", "test", "val", "train"]
    assert len(runs) == 3 * 60 // 5  # 60 stripes, train stripes merge: 12 cycles of 3 runs


# ----------------------------------------------------------------------------- Parquet


def test_parquet_shards(full: RepoInfo, mini: RepoInfo) -> None:
    assert full.shards
    multi = 0
    for shard in full.shards.values():
        pf = pq.ParquetFile(full.root / shard.path)
        assert pf.schema_arrow.names == ["path", "ds", "content", "modificationTime", "length"]
        assert pf.schema_arrow.field("content").type == pa.binary()
        assert pa.types.is_timestamp(pf.schema_arrow.field("modificationTime").type)
        assert pf.schema_arrow.field("length").type == pa.int64()
        meta = pf.metadata
        for rg in range(meta.num_row_groups):
            for col in range(meta.num_columns):
                assert meta.row_group(rg).column(col).compression == "ZSTD"
        assert meta.num_row_groups == len(shard.row_groups)
        multi += meta.num_row_groups > 1
        table = pf.read()
        assert table["ds"].to_pylist() == [shard.datakind] * table.num_rows
        for row in table.to_pylist():
            tile_id = Path(row["path"]).stem
            assert row["path"] == f"{REGION}/{full.tile_path(shard.datakind, tile_id)}"
            assert row["length"] == len(row["content"])
            info = full.tile_files[(shard.datakind, tile_id)]
            assert info.size == len(row["content"])
            if shard.datakind in mini.datakinds:  # same bytes as the miniset file
                assert row["content"] == (mini.root / info.path).read_bytes()
        assert [Path(p).stem for p in table["path"].to_pylist()] == list(shard.tile_ids)
        assert len({r.as_py() for r in table["modificationTime"]}) == 1
    assert multi > 0


def test_parquet_csv_ids_are_in_their_shards(full: RepoInfo) -> None:
    reg = spec.REGIONS[REGION]
    _, rows = _csv(full.root / reg.parquet_csv())
    for dk in full.datakinds:
        for tile_id, split, pid in rows:
            shard = full.shard_for(dk, tile_id)
            if tile_id in full.coverage[dk]:
                assert shard is not None and shard.parquet_identifier == pid
                assert shard.split == split and tile_id in shard.tile_ids
                names = pq.read_table(full.root / shard.path, columns=["path"])["path"]
                assert f"{REGION}/{full.tile_path(dk, tile_id)}" in names.to_pylist()
            else:
                assert shard is None or tile_id not in shard.tile_ids
    pids = {pid for _, _, pid in rows}
    for pid in pids:
        split, hexpart = pid.split("_")
        base = {"train": 10_000_000_000, "val": 20_000_000_000, "test": 30_000_000_000}[split]
        assert 0 <= int(hexpart, 16) - base < 100


# ----------------------------------------------------------------------------- coverage etc.


def test_partial_coverage(mini: RepoInfo, full: RepoInfo) -> None:
    assert len(mini.coverage["gssic"]) == 8
    for dk in spec.REGION_GUNW[REGION]:
        assert len(mini.coverage[dk]) == 7
        assert len(mini.missing(dk)) == 3
        for tile_id in mini.missing(dk):
            assert not (mini.root / mini.tile_path(dk, tile_id)).exists()
            assert (dk, tile_id) not in full.tile_files
    assert len({mini.coverage[dk] for dk in spec.REGION_GUNW[REGION]}) > 1  # periods differ
    assert len(mini.coverage["s1grd-2020"]) == 10


def test_coverage_is_configurable(tmp_path: Path) -> None:
    cfg = SynthConfig(
        regions=("pakin",),
        editions=("miniset",),
        tiles=4,
        datakinds=("gssic", "gunw_2020-01-01_2020-03-31"),
        coverage={"gssic": 1.0, "gunw": 0.5},
    )
    repo = write_source(tmp_path, cfg).repo("miniset", "pakin")
    assert repo.datakinds == ("gssic", "gunw_2020-01-01_2020-03-31")
    assert len(repo.coverage["gssic"]) == 4
    assert len(repo.coverage["gunw_2020-01-01_2020-03-31"]) == 2


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_deterministic(tmp_path: Path) -> None:
    cfg = SynthConfig(regions=("pakin",), tiles=5, tiles_per_shard=2)
    first = write_source(tmp_path / "a", cfg)
    write_source(tmp_path / "b", cfg)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 50
    assert all(a[k] == b[k] for k in a)
    other = SynthConfig(regions=("pakin",), editions=("miniset",), tiles=5, seed=1)
    assert set(write_source(tmp_path / "c", other).repo("miniset", "pakin").tiles) != set(
        first.repo("miniset", "pakin").tiles
    )


def test_real_chip_size(tmp_path: Path) -> None:
    cfg = SynthConfig(
        regions=("europe",), editions=("miniset",), tiles=1, chip_px=448, datakinds=("s2rgbm-2020",)
    )
    repo = write_source(tmp_path, cfg).repo("miniset", "europe")
    data = _tif_check(repo, "s2rgbm-2020", spec.S2RGBM_BANDS, "uint8", (448, 448))
    assert data.shape == (1, 36, 448, 448)


def test_bad_config(tmp_path: Path) -> None:
    with pytest.raises(UnknownRegionError):
        write_source(tmp_path, SynthConfig(regions=("atlantis",)))
    with pytest.raises(UsageError, match="--tiles"):
        write_source(tmp_path, SynthConfig(tiles=0))
    with pytest.raises(UsageError, match="s1grd dtype"):
        write_source(tmp_path, SynthConfig(s1grd_dtype="int8"))
    assert not any(tmp_path.iterdir())
