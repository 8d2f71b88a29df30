"""tiles.read_tile on every datakind of the synthetic source, checked against direct reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5netcdf
import numpy as np
import pytest
import rasterio

from m3leo_cli import spec
from m3leo_cli.errors import CorruptTileError, TileError, TileNotLocalError, UnknownBandError
from m3leo_cli.testing.synth import RepoInfo, SynthConfig, write_source
from m3leo_cli.tiles.reader import band_names, decode, read_tile

GUNW = "gunw_2020-01-01_2020-03-31"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> RepoInfo:
    root = tmp_path_factory.mktemp("src")
    cfg = SynthConfig(regions=("conus",), editions=("miniset",), tiles=5, gunw_datepairs=4)
    return write_source(root, cfg).repo("miniset", "conus")


def files_of(repo: RepoInfo, datakind: str) -> list[tuple[str, Path]]:
    return [(t, repo.root / fi.path) for (dk, t), fi in repo.tile_files.items() if dk == datakind]


def one(repo: RepoInfo, datakind: str) -> tuple[str, Path]:
    return files_of(repo, datakind)[0]


@pytest.mark.parametrize(
    "datakind, names",
    [
        ("s1grd-2020", spec.S1GRD_BANDS),
        ("s2rgbm-2020", spec.S2RGBM_BANDS),
        ("modis44b006veg", spec.MODIS_BANDS),
        ("srtmdem", spec.SRTM_BANDS),
        ("esaworldcover-2020", spec.ESAWC_BANDS),
    ],
)
def test_geotiff_bands_values_and_georeferencing(
    repo: RepoInfo, datakind: str, names: tuple[str, ...]
) -> None:
    tile_id, path = one(repo, datakind)
    tile = read_tile(path, datakind)
    assert tile.band_names == names == band_names(path, datakind)
    assert tile.tile_id == tile_id and tile.datakind == datakind
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(tile.data, src.read())
        assert tile.data.dtype == src.dtypes[0]
        assert tile.transform == tuple(src.transform)[:6]
    assert tile.crs == "EPSG:4326"
    np.testing.assert_allclose(tile.bounds, repo.tiles[tile_id].bbox, atol=1e-9)


def test_esaworldcover_code_zero_is_nodata(repo: RepoInfo) -> None:
    tile = read_tile(one(repo, "esaworldcover-2020")[1], "esaworldcover-2020")
    assert tile.nodata is not None
    np.testing.assert_array_equal(tile.nodata, tile.data == 0)
    assert set(np.unique(tile.data)) <= {0} | set(spec.ESA_WORLDCOVER_CLASSES)


def test_gssic_flattened_labels(repo: RepoInfo) -> None:
    _, path = one(repo, "gssic")
    tile = read_tile(path, "gssic")
    assert len(tile.band_names) == 38 and tile.data.shape[0] == 38
    assert tile.band_names[:2] == ("amplitude:winter:vv", "amplitude:winter:vh")
    assert "coherence:winter:12" in tile.band_names
    assert "decaymodel:fall:rmse" in tile.band_names
    assert tile.band_names[-2:] == ("geometry:inc", "geometry:lsmap")
    with h5netcdf.File(path, "r") as f:
        seasons = [
            s.decode() if isinstance(s, bytes) else str(s) for s in f.variables["season"][...]
        ]
        i = seasons.index("summer")
        dd = list(f.variables["deltadays"][...]).index(24)
        expected = f.variables["coherence"][i, dd, :, :]
    np.testing.assert_array_equal(tile.band("coherence:summer:24"), expected)
    assert tile.crs == "EPSG:4326"
    assert tile.data.shape[1:] == (12, 15)


def test_gssic_band_subsets_by_variable_and_prefix(repo: RepoInfo) -> None:
    _, path = one(repo, "gssic")
    t = read_tile(path, "gssic", ["coherence:winter", "geometry:inc"])
    assert t.band_names == tuple(f"coherence:winter:{d}" for d in (12, 24, 36, 48)) + (
        "geometry:inc",
    )
    assert read_tile(path, "gssic", ["coherence"]).data.shape[0] == 16
    assert read_tile(path, "gssic", ["decaymodel:spring:tau"]).data.shape[0] == 1


def test_gunw_group_datepairs_and_fill_values(repo: RepoInfo) -> None:
    _, path = one(repo, GUNW)
    tile = read_tile(path, GUNW)
    assert tile.data.shape[0] == 3 * 4
    first = tile.band_names[0]
    var, pair = first.split(":")
    assert var == "unwrappedPhase"
    later, earlier = pair.split("_")
    assert later > earlier  # later date first
    with h5netcdf.File(path, "r") as f:
        g = f["science"]["grids"]["data"]
        raw = g.variables["unwrappedPhase"][0, :, :]
        fill = g.variables["unwrappedPhase"].attrs["_FillValue"]
    np.testing.assert_array_equal(tile.data[0], raw)
    expect_mask = (raw == fill) | np.isnan(raw)
    got = tile.nodata[0] if tile.nodata is not None else np.zeros_like(expect_mask)
    np.testing.assert_array_equal(got, expect_mask)
    assert np.isnan(decode(tile)[0][expect_mask]).all()


def test_biomass_variables(repo: RepoInfo) -> None:
    tile = read_tile(one(repo, "biomass-2020")[1], "biomass-2020")
    assert tile.band_names == ("agb", "agb_se")
    assert tile.crs == "EPSG:4326"


def test_s1grd_decoding_and_derived_vv_minus_vh(repo: RepoInfo) -> None:
    _, path = one(repo, "s1grd-2020")
    tile = read_tile(path, "s1grd-2020", ["winter_vv-vhasc", "winter_vvasc", "winter_vhasc"])
    assert tile.band_names == ("winter_vv-vhasc", "winter_vvasc", "winter_vhasc")
    assert tile.data.dtype == np.uint16
    db = decode(tile)
    assert db[1].max() < 5 and db[1].min() > -60  # signed dB, not 65k
    np.testing.assert_array_equal(db[0], db[1] - db[2])


def test_s1grd_float32_files_decode_as_is(tmp_path: Path) -> None:
    cfg = SynthConfig(
        editions=("miniset",), tiles=3, s1grd_dtype="float32", datakinds=("s1grd-2020",)
    )
    repo = write_source(tmp_path, cfg).repo("miniset", "europe")
    _, path = one(repo, "s1grd-2020")
    tile = read_tile(path, "s1grd-2020", ["spring_vv-vhdes", "spring_vvdes", "spring_vhdes"])
    assert tile.data.dtype == np.float32
    np.testing.assert_allclose(decode(tile)[0], tile.data[1] - tile.data[2], rtol=1e-6)


def test_s2rgbm_and_modis_decoding(repo: RepoInfo) -> None:
    s2 = read_tile(one(repo, "s2rgbm-2020")[1], "s2rgbm-2020", ["07_red"])
    np.testing.assert_allclose(decode(s2)[0], s2.data[0] / 255.0, rtol=1e-6)
    mo = read_tile(one(repo, "modis44b006veg")[1], "modis44b006veg")
    dec = decode(mo)
    np.testing.assert_array_equal(np.isnan(dec), mo.data == spec.MODIS_WATER)


def test_band_names_are_case_insensitive(repo: RepoInfo) -> None:
    t = read_tile(one(repo, "modis44b006veg")[1], "modis44b006veg", ["percent_tree_cover_2019"])
    assert t.band_names == ("Percent_Tree_Cover_2019",)


def test_unknown_band_lists_valid_ones(repo: RepoInfo) -> None:
    with pytest.raises(UnknownBandError) as exc:
        read_tile(one(repo, "gssic")[1], "gssic", ["coherance"])
    assert "coherance" in exc.value.message
    assert exc.value.hint.startswith("valid bands: coherence")
    with pytest.raises(UnknownBandError) as exc2:
        read_tile(one(repo, "s1grd-2020")[1], "s1grd-2020", ["winter_hh"])
    assert "winter_vvasc" in exc2.value.hint


@pytest.mark.parametrize("datakind", ["s1grd-2020", "gssic", GUNW])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_files_name_the_file(
    repo: RepoInfo, tmp_path: Path, datakind: str, damage: str
) -> None:
    _, src = one(repo, datakind)
    bad = tmp_path / src.name
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00junk" * 100)
    with pytest.raises(CorruptTileError) as exc:
        read_tile(bad, datakind)
    assert str(bad) in exc.value.message
    assert "m3leo verify --repair" in exc.value.hint


def test_missing_file_is_not_local(tmp_path: Path) -> None:
    with pytest.raises(TileNotLocalError):
        read_tile(tmp_path / "0123456789abc.tif", "srtmdem")


def test_geotiff_nodata_value_becomes_the_mask(repo: RepoInfo, tmp_path: Path) -> None:
    _, src_path = one(repo, "srtmdem")
    with rasterio.open(src_path) as src:
        data, profile, descs = src.read(), src.profile, src.descriptions
    value = int(data[0, 0, 0])
    profile.update(nodata=value)
    copy = tmp_path / src_path.name
    with rasterio.open(copy, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descs, 1):
            dst.set_band_description(i, d)
    tile = read_tile(copy, "srtmdem", ["slope", "elevation"])
    assert tile.band_names == ("slope", "elevation")
    assert tile.nodata is not None
    np.testing.assert_array_equal(tile.nodata[1], data[0] == value)
    np.testing.assert_array_equal(tile.nodata[0], data[1] == value)
    assert np.isnan(decode(tile)[1][data[0] == value]).all()


def test_netcdf3_files_are_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "0123456789abc.nc"
    path.write_bytes(b"CDF\x01" + b"\x00" * 60)  # the netCDF-3 classic magic
    with pytest.raises(TileError) as exc:
        read_tile(path, "biomass-2020")
    assert "netCDF-3" in exc.value.message and "nccopy" in exc.value.hint


def _south_up(src: Path, dst: Path) -> None:
    """Issue 27 finding 4's rewrite: the same geography, rows stored south to north."""
    import h5netcdf

    shutil.copyfile(src, dst)
    with h5netcdf.File(dst, "a") as g:
        g["y"][...] = g["y"][...][::-1]
        for v in ("amplitude", "coherence", "decaymodel", "geometry"):
            g[v][...] = g[v][...][..., ::-1, :]


def test_a_south_up_netcdf_tile_reads_north_up(repo: RepoInfo, tmp_path: Path) -> None:
    """Finding 4: latitude stored ascending was drawn and resampled upside down."""
    tile, path = one(repo, "gssic")
    flipped = tmp_path / path.name
    _south_up(path, flipped)
    a, b = read_tile(path, "gssic"), read_tile(flipped, "gssic")
    assert a.transform[4] < 0 and b.transform[4] < 0  # row 0 is the northernmost
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.transform, b.transform)
    assert a.bounds == pytest.approx(b.bounds)
    assert (a.nodata is None) == (b.nodata is None)
    if a.nodata is not None:
        np.testing.assert_array_equal(a.nodata, b.nodata)
    assert b.data.flags.c_contiguous  # torch.from_numpy takes it as it is


def test_the_training_fast_netcdf_path_leaves_south_up_tiles_to_the_reader(
    repo: RepoInfo, tmp_path: Path
) -> None:
    from m3leo_cli.train import ncfast

    tile, path = one(repo, "gssic")
    flipped = tmp_path / path.name
    _south_up(path, flipped)
    bands = ["coherence:winter:12", "amplitude:summer:vv"]
    bands = [b for b in bands if b in band_names(path, "gssic")] or list(
        band_names(path, "gssic")[:2]
    )
    plan = ncfast.make_plan(path, "gssic", bands)
    assert plan is not None and plan.rows
    got = ncfast.read_with_plan(plan, path)
    assert got is not None
    np.testing.assert_array_equal(got[0], read_tile(path, "gssic", bands).data)
    assert ncfast.read_with_plan(plan, flipped) is None  # the dataset then uses read_tile
