"""`m3leo ingest`: a synthetic mosaic cut onto a local region reads back with its own values,
and the local edition works with stats, verify, export, show and map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from clirun import run

from m3leo_cli.aoi.local import load_chips, load_region
from m3leo_cli.config import load_settings
from m3leo_cli.tiles.reader import read_tile


def from_origin(west: float, north: float, dx: float, dy: float) -> Affine:
    return Affine(dx, 0.0, west, 0.0, -dy, north)


AOI = "POLYGON ((7.1 45.8, 7.5 45.78, 7.6 46.05, 7.3 46.12, 7.1 45.8))"
RES = 0.0013  # incommensurate with the chips' pixels: every chip pixel samples a mosaic cell
W, N, NCOL, NROW = 7.0, 46.2, 520, 360
NODATA = -9999
HOLE = (slice(100, 140), slice(150, 200))


def _mosaic(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Two GeoTIFF pieces of one EPSG:4326 layer: unique int32 values, a nodata hole."""
    vals = np.arange(NROW * NCOL, dtype=np.int32).reshape(NROW, NCOL) + 1
    vals[HOLE] = NODATA
    paths, half = [], NCOL // 2
    for i, (c0, c1) in enumerate([(0, half), (half, NCOL)]):
        p = folder / f"piece-{i}.tif"
        profile = dict(driver="GTiff", width=c1 - c0, height=NROW, count=2, dtype="int32")
        profile.update(crs="EPSG:4326", transform=from_origin(W + c0 * RES, N, RES, RES))
        with rasterio.open(p, "w", nodata=NODATA, **profile) as d:
            d.write(vals[:, c0:c1], 1)
            d.write(np.where(vals[:, c0:c1] == NODATA, NODATA, vals[:, c0:c1] * 2), 2)
            d.set_band_description(1, "a")
            d.set_band_description(2, "b")
        paths.append(p)
    return paths, vals


@pytest.fixture
def region(capsys: pytest.CaptureFixture[str], data_dir: Path) -> str:
    r = run(capsys, "grid", "val", "--aoi", AOI, "--chip-size", "2000", "--bands", "10")
    assert r.code == 0, r.err
    return "val"


def test_ingested_mosaic_reads_back_exactly(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str
) -> None:
    paths, vals = _mosaic(tmp_path)
    px = 16
    r = run(capsys, "ingest", region, *map(str, paths), "--datakind", "myval", "--chip-px",
            str(px), "--json")  # fmt: skip
    assert r.code == 0, r.err
    info = json.loads(r.out)
    load_settings()  # registers the local datakind, as every command does
    reg = load_region(data_dir, region)
    chips = load_chips(data_dir, reg)
    assert info["chips_written"] == info["manifest_tiles"]
    assert info["chips_written"] + info["chips_without_data"] == len(chips)
    assert info["chips_without_data"] > 0  # chips inside the hole are not written
    folder = Path(info["folder"])
    saw_hole = False
    for chip in chips:
        x0, y0, x1, y1 = chip.bbox
        cx = x0 + (np.arange(px) + 0.5) * (x1 - x0) / px
        cy = y1 - (np.arange(px) + 0.5) * (y1 - y0) / px
        cols = np.floor((cx - W) / RES).astype(int)
        rows = np.floor((N - cy) / RES).astype(int)
        want = vals[np.ix_(rows, cols)]
        path = folder / f"{chip.tile_id}.tif"
        if (want == NODATA).all():
            assert not path.exists()
            continue
        tile = read_tile(path, "myval")
        assert tile.band_names == ("a", "b") and tile.data.dtype == np.int32
        assert np.array_equal(tile.data[0], want), chip.tile_id
        assert np.array_equal(tile.data[1], np.where(want == NODATA, NODATA, want * 2))
        if (want == NODATA).any():
            saw_hole = True
            assert tile.nodata is not None and np.array_equal(tile.nodata[0], want == NODATA)
    assert saw_hole
    meta = json.loads((data_dir / "local" / region / "m3leo-region.json").read_text())
    assert meta["datakinds"]["myval"]["resampling"] == "nearest"


def test_local_edition_commands(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str
) -> None:
    paths, _ = _mosaic(tmp_path)
    assert (
        run(capsys, "ingest", region, *map(str, paths), "-d", "myval", "--chip-px", "8").code == 0
    )
    r = run(capsys, "stats", "--edition", "local", "--region", region, "--json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)["rows"]
    assert {row["split"] for row in rows if row["modality"] == "myval"} == {"train", "val", "test"}
    assert all(row["tiles"] == row["local_tiles"] > 0 for row in rows)
    r = run(capsys, "verify", "--edition", "local", "--region", region)
    assert r.code == 0, r.err
    out = tmp_path / "exp"
    r = run(capsys, "export", "--format", "npz", "--out", str(out), "--edition", "local",
            "--region", region, "--modality", "myval", "--json")  # fmt: skip
    assert r.code == 0, r.err
    npz = sorted(out.rglob("*.npz"))
    assert npz and (out / "metadata.json").is_file()
    r = run(
        capsys, "map", "--edition", "local", "--region", region, "--out", str(tmp_path / "m.png")
    )
    assert r.code == 0, r.err
    # the local names are for the local edition only
    r = run(capsys, "stats", "--edition", "full", "--region", region)
    assert r.code != 0 and "unknown region" in r.err
    # a changed file is caught, and repair points at ingest
    tif = next((data_dir / "local" / region).rglob("*.tif"))
    tif.write_bytes(tif.read_bytes()[:-10] + b"0123456789")
    r = run(capsys, "verify", "--edition", "local", "--region", region)
    assert r.code == 1 and "1 corrupt" in r.out + r.err and "m3leo ingest" in r.err
    for args in (["verify", "--repair"], ["download"], ["catalog", "refresh"]):
        r = run(capsys, *args, "--edition", "local", "--region", region)
        assert r.code == 2 and "not on the Hub" in r.err and "m3leo ingest" in r.err, args


def test_ingest_bad_input(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str
) -> None:
    paths, _ = _mosaic(tmp_path)
    far = tmp_path / "far.tif"
    t = from_origin(100, 10, 0.01, 0.01)
    with rasterio.open(far, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=t, nodata=0) as d:  # fmt: skip
        d.write(np.ones((1, 4, 4), "uint8"))
        d.set_band_description(1, "x")
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       transform=from_origin(7, 46, 0.01, 0.01)) as d:  # fmt: skip
        d.write(np.ones((1, 4, 4), "uint8"))
    local = tmp_path / "localcs.tif"
    engineering = rasterio.crs.CRS.from_wkt(
        'LOCAL_CS["arbitrary",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    )
    with rasterio.open(
        local,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs=engineering,
        transform=from_origin(0, 4, 1, 1),
        nodata=0,
    ) as d:
        d.write(np.ones((1, 4, 4), "uint8"))
        d.set_band_description(1, "x")
    cases = [
        ([str(far), "-d", "far"], "do not overlap", "--region val"),
        ([str(local), "-d", "lcs"], "CRS without a definition", "gdalwarp -t_srs"),
        ([str(nocrs), "-d", "nocrs"], "no CRS definition", "gdal_edit.py -a_srs"),
        ([str(paths[0]), "-d", "s1grd-2020"], "clashes with a published", "--datakind"),
        ([str(paths[0]), "-d", "rgb"], "clashes with a published", "--datakind"),
        ([str(paths[0]), "-d", "x", "--band", "only-one"], "2 bands", "--band"),
        ([str(paths[0]), "-d", "x", "--resampling", "fancy"], "unknown resampling", "nearest"),
    ]
    for args, message, hint in cases:
        r = run(capsys, "ingest", "val", *args)
        lines = r.err.strip().splitlines()
        usage = message.startswith("unknown resampling")  # a flag's value: exit 2
        assert r.code == (2 if usage else 1), r.err
        assert lines[0].startswith("Error:") and message in lines[0], r.err
        assert lines[1].startswith("hint:") and hint in lines[1], r.err
    r = run(capsys, "ingest", "nosuch", str(paths[0]), "-d", "x")
    assert r.code == 1 and "no local region 'nosuch'" in r.err and "m3leo grid" in r.err


def test_ingest_reprojects_from_utm_within_bilinear_tolerance(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str
) -> None:
    """A linear field in UTM 32N: bilinear resampling reproduces it at every chip pixel centre
    (to a small fraction of a source pixel's change: GDAL's approximate transformer)."""
    from rasterio.warp import transform

    res, x0, y0, w, h = 30.0, 340000.0, 5125000.0, 2000, 1800
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    field = (0.5 * cols[None, :] + 0.25 * rows[:, None]).astype("float32")  # per pixel index
    src = tmp_path / "utm.tif"
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="float32",
        crs="EPSG:32632",
        transform=Affine(res, 0, x0, 0, -res, y0),
    ) as d:
        d.write(field, 1)
        d.set_band_description(1, "ramp")
    px = 10
    r = run(capsys, "ingest", region, str(src), "-d", "ramp", "--resampling", "bilinear",
            "--chip-px", str(px), "--json")  # fmt: skip
    assert r.code == 0, r.err
    load_settings()
    folder = Path(json.loads(r.out)["folder"])
    checked = 0
    for chip in load_chips(data_dir, load_region(data_dir, region)):
        path = folder / f"{chip.tile_id}.tif"
        if not path.exists():  # the raster covers part of the region
            continue
        tile = read_tile(path, "ramp")
        cw, cs, ce, cn = chip.bbox
        lon = cw + (np.arange(px) + 0.5) * (ce - cw) / px
        lat = cn - (np.arange(px) + 0.5) * (cn - cs) / px
        glon, glat = np.meshgrid(lon, lat)
        ux, uy = transform("EPSG:4326", "EPSG:32632", glon.ravel(), glat.ravel())
        c = (np.asarray(ux) - x0) / res
        rr = (y0 - np.asarray(uy)) / res
        inside = (c > 1) & (c < w - 1) & (rr > 1) & (rr < h - 1)
        want = (0.5 * c + 0.25 * rr).reshape(px, px)
        got = tile.data[0]
        ok = inside.reshape(px, px)
        assert np.allclose(got[ok], want[ok], atol=0.02), chip.tile_id  # 0.04 source px of x
        checked += int(ok.sum())
    assert checked > 20000  # most of the 268 chips x 100 pixels


def test_a_layer_of_your_own_exports_on_dask_workers_as_here(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str
) -> None:
    """Worker processes learn the local edition's regions and datakinds too (they do not
    load settings): a layer only `m3leo ingest` knows exports there byte for byte as here."""
    distributed = pytest.importorskip("distributed", reason="the dask extra")
    paths, _ = _mosaic(tmp_path)
    assert (
        run(capsys, "ingest", region, *map(str, paths), "-d", "myval", "--chip-px", "8").code == 0
    )
    outs = {}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        for name, extra in (("here", []), ("dask", ["--engine", "dask", "--scheduler",
                                                    lc.scheduler_address])):  # fmt: skip
            out = tmp_path / name
            r = run(capsys, "export", "--format", "npz", "--out", str(out), "--edition",
                    "local", "--region", region, "--modality", "myval", "--shard-size", "1",
                    *extra)  # fmt: skip
            assert r.code == 0, r.err
            outs[name] = {p.relative_to(out).as_posix(): p.read_bytes()
                          for p in sorted(out.rglob("*.npz"))}  # fmt: skip
    assert outs["dask"] == outs["here"] and outs["here"]


def _classes(folder: Path) -> Path:
    """A class raster of WorldCover codes 10 and 80 in 10-cell squares (uint8, nodata 0)."""
    y, x = np.mgrid[0:NROW, 0:NCOL]
    codes = np.where((y // 10 + x // 10) % 2 == 0, 10, 80).astype("uint8")
    p = folder / "lc.tif"
    t = from_origin(W, N, RES, RES)
    with rasterio.open(p, "w", driver="GTiff", width=NCOL, height=NROW, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=t, nodata=0) as d:  # fmt: skip
        d.write(codes, 1)
        d.set_band_description(1, "lc")
    return p


@pytest.mark.parametrize("method", ["bilinear", "cubic", "average", "lanczos"])
def test_a_label_refuses_resampling_that_invents_classes(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str, method: str
) -> None:
    lc = _classes(tmp_path)
    r = run(capsys, "ingest", region, str(lc), "-d", "mylc", "--label", "--resampling", method)
    assert r.code == 2 and "would invent class codes" in r.err, r.err
    assert "--resampling nearest" in r.err
    assert not list(data_dir.rglob("mylc"))  # nothing written
    r = run(capsys, "ingest", region, str(lc), "-d", "mylc", "--label", "--resampling", "mode",
            "--chip-px", "8")  # fmt: skip
    assert r.code == 0, r.err
    values = np.concatenate(
        [rasterio.open(f).read(1).ravel() for f in data_dir.rglob("mylc/*.tif")]
    )
    assert set(np.unique(values)) <= {0, 10, 80}


@pytest.mark.parametrize("px", ["0", "-1"])
def test_chip_px_must_be_positive(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str, px: str
) -> None:
    paths, _ = _mosaic(tmp_path)
    r = run(capsys, "ingest", region, *map(str, paths), "-d", "myval", "--chip-px", px)
    assert r.code == 2 and "--chip-px must be at least 1" in r.err, r.err
    assert not list(data_dir.rglob("myval"))


def test_ingest_never_writes_through_a_planted_link(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str
) -> None:
    paths, _ = _mosaic(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.tif"
    victim.write_bytes(b"precious")
    reg = load_region(data_dir, region)
    chips = load_chips(data_dir, reg)
    folder = data_dir / "local" / region / reg.partition / "myval"
    folder.mkdir(parents=True)
    for chip in chips:  # every chip's final name is a link out of the store
        (folder / f"{chip.tile_id}.tif").symlink_to(victim)
    r = run(capsys, "ingest", region, *map(str, paths), "-d", "myval", "--chip-px", "8")
    assert r.code == 0, r.err
    assert victim.read_bytes() == b"precious" and sorted(outside.iterdir()) == [victim]
    written = [p for p in folder.iterdir() if not p.is_symlink()]
    assert written and all(p.is_file() for p in written)
    # the datakind folder itself a link out of the region: refused, nothing written there
    (folder.parent / "other").symlink_to(outside, target_is_directory=True)
    r = run(capsys, "ingest", region, *map(str, paths), "-d", "other", "--chip-px", "8")
    assert r.code == 1 and "outside the region" in r.err, r.err
    assert sorted(outside.iterdir()) == [victim]
