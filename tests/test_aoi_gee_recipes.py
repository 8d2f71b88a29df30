"""`m3leo gee` recipes against geetiles' definitions and the loopback Earth Engine server:
s1grd as the published files encode it, s2rgbm's month table, masks, recipe validation,
failures per chip with --retry-failed, and writes that never follow a planted link."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import test_aoi_gee as base
from clirun import run

from m3leo_cli import spec
from m3leo_cli.aoi.chipfile import chip_transform, write_chip
from m3leo_cli.aoi.eeexpr import Call, Func
from m3leo_cli.aoi.grid import Chip
from m3leo_cli.aoi.local import load_chips, load_region
from m3leo_cli.aoi.recipes import S1_NODATA, builtin_recipe
from m3leo_cli.server.earthengine import EarthEngineServer, chip_key
from m3leo_cli.tiles.model import decode
from m3leo_cli.tiles.reader import read_tile

PX = base.PX
region, ee = base.region, base.ee  # the fixtures: a small grid, the loopback server


def _calls(root: object) -> list[Call]:
    out, todo = [], [root]
    while todo:
        node = todo.pop()
        if isinstance(node, Call):
            out.append(node)
            todo.extend(node.args.values())
        elif isinstance(node, Func):
            todo.append(node.body)
        elif isinstance(node, list | tuple):
            todo.extend(node)
    return out


def test_s1grd_is_the_seasonal_mean_and_decodes_like_a_published_file(tmp_path: Path) -> None:
    rec = builtin_recipe("s1grd-2020")
    names = {c.name for c in _calls(rec.image)}
    assert "reduce.mean" in names and "reduce.median" not in names
    assert "reduce.median" in {c.name for c in _calls(builtin_recipe("s1grd-median-2020").image)}
    assert rec.dtype == "uint16" and rec.bands == spec.S1GRD_BANDS
    # dB as Earth Engine sends them: fractions, negatives, and values between -1 and 0
    rng = np.random.default_rng(7)
    values = rng.uniform(-30, 3, size=(16, 6, 6)).astype(np.float32)
    values[0, 0, :3] = [-15.7, -0.4, 2.9]
    ours = rec.to_file(values)
    assert ours[0, 0, 0] == 65521 and ours[0, 0, 1] == 0  # -15.7 -> -15 -> 65521; -0.4 -> 0
    nan = values.copy()
    nan[1, 2, 3] = np.nan
    assert rec.to_file(nan)[1, 2, 3] == S1_NODATA  # a NaN is no value, never a cast's guess
    # a published file made from the same values: geetiles' astype('uint16') of the downloaded
    # float dB, i.e. C's float -> integer truncation, then the 16 low bits
    published = values.astype(np.int64).astype(np.uint16)
    chip = Chip(tile_id="0123456789abc", bbox=(7.0, 45.0, 7.05, 45.04), area_km2=20.0)
    (tmp_path / "ours").mkdir()
    write_chip(tmp_path / "ours" / "t.tif", ours, chip, spec.S1GRD_BANDS, rec.file_nodata)
    with rasterio.open(tmp_path / "published.tif", "w", driver="GTiff", width=6, height=6,
                       count=16, dtype="uint16", crs="EPSG:4326",
                       transform=chip_transform(chip, 6, 6)) as dst:  # fmt: skip
        dst.write(published)
        for i, name in enumerate(spec.S1GRD_BANDS, start=1):
            dst.set_band_description(i, name)
    a = decode(read_tile(tmp_path / "ours" / "t.tif", "s1grd-2020"))
    b = decode(read_tile(tmp_path / "published.tif", "s1grd-2020"))
    assert np.array_equal(a, b) and np.array_equal(a, np.trunc(values))


def test_s2rgbm_month_table_and_qa60_years() -> None:
    rec = builtin_recipe("s2rgbm-2020")
    ranges = [(c.args["start"], c.args["end"]) for c in _calls(rec.image) if c.name == "DateRange"]
    assert sorted(set(ranges))[1] == ("2020-02-01", "2020-02-28")  # not 02-29 in a leap year
    assert ("2020-01-01", "2020-01-31") in ranges and ("2020-12-01", "2020-12-31") in ranges
    lt = [c for c in _calls(rec.image) if c.name.startswith("Filter.") and "Value" in str(c.args)]
    assert {c.name for c in lt} >= {"Filter.lessThan"}  # ee.Filter.lt, as the server names it
    for year in (2022, 2023, 2024):
        with pytest.raises(Exception, match="QA60"):
            builtin_recipe(f"s2rgbm-{year}")
    assert builtin_recipe("s2rgbm-2021").datakind == "s2rgbm-2021"


def test_requests_unmask_and_cast_on_the_server() -> None:
    for name, cast, fill in (
        ("s1grd-2020", "Image.toFloat", -3.0e38),
        ("s1grd-median-2020", "Image.toFloat", -3.0e38),
        ("s2rgbm-2020", "Image.toUint8", 0),
        ("esaworldcover-2020", "Image.toUint8", 0),
    ):
        top = builtin_recipe(name).request_image()
        assert top.name == cast, name
        assert top.args["input"].name == "Image.unmask"
        assert top.args["input"].args["value"].args["value"] == fill


def test_masked_pixels_become_nan_or_the_declared_nodata(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer
) -> None:
    ee.masked = True  # the server masks the first row of every chip
    for layer, dtype, nodata in (
        ("s1grd-median-2020", "float32", None),
        ("s1grd-2020", "uint16", S1_NODATA),
        ("esaworldcover-2020", "uint8", 0),
    ):
        r = run(capsys, "gee", region, layer, "--chip-px", str(PX), "--limit", "2", "--json")
        assert r.code == 0, r.err
        folder = Path(json.loads(r.out)["folder"])
        tifs = sorted(folder.glob("*.tif"))
        assert len(tifs) == 2
        for tif in tifs:
            with rasterio.open(tif) as src:
                arr = src.read()
                assert src.dtypes[0] == dtype
                if nodata is None:
                    assert np.isnan(src.nodata) and np.isnan(arr[:, 0, :]).all()
                    assert not np.isnan(arr[:, 1:, :]).any()  # EE's 0 never stands for "masked"
                else:
                    assert src.nodata == nodata and (arr[:, 0, :] == nodata).all()
                    assert not (arr[:, 1:, :] == nodata).any()
            if layer == "s1grd-2020":
                decoded = decode(read_tile(tif, layer))
                assert np.isnan(decoded[:, 0, :]).all() and not np.isnan(decoded[:, 1:]).any()


def test_recipe_validation_before_any_request(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str,
    ee: EarthEngineServer,
) -> None:  # fmt: skip
    head = (
        'datakind = "mine-2021"\ncollection = "COPERNICUS/S2_SR_HARMONIZED"\n'
        'start = "2021-06-01"\nend = "2021-09-01"\nbands = ["B8", "B4"]\n'
    )
    f = tmp_path / "r.toml"
    f.write_text(head + 'filters = [{property = "CLOUDY_PIXEL_PERCENTAGE", op = "below", '
                 "value = 20}]\n")  # fmt: skip
    r = run(capsys, "gee", region, "--recipe", str(f), "--chip-px", str(PX))
    assert r.code == 1 and "unknown filter op 'below'" in r.err and "lessThan" in r.err
    f.write_text(head + 'dtype = "uint16"\n')
    r = run(capsys, "gee", region, "--recipe", str(f), "--chip-px", str(PX))
    assert r.code == 1 and "needs a nodata value" in r.err and "nodata = V" in r.err
    f.write_text(head + 'dtype = "uint8"\nnodata = -1\n')
    r = run(capsys, "gee", region, "--recipe", str(f), "--chip-px", str(PX))
    assert r.code == 1 and "nodata -1 is not a uint8 value" in r.err
    f.write_text(head + 'dtype = "complex64"\n')
    r = run(capsys, "gee", region, "--recipe", str(f), "--chip-px", str(PX))
    assert r.code == 1 and "unknown dtype" in r.err
    assert ee.requests == []  # refused before any request
    # ee's client names are mapped to the server's; the declared dtype is cast on the server
    lt = 'filters = [{property = "CLOUDY_PIXEL_PERCENTAGE", op = "lt", value = 20}]\n'
    f.write_text(head + 'dtype = "uint16"\nnodata = 0\n' + lt)
    r = run(capsys, "gee", region, "--recipe", str(f), "--chip-px", str(PX), "--limit", "1")
    assert r.code == 0, r.err
    expr = ee.requests[-1]["expression"]
    names = json.dumps(expr)
    assert '"Filter.lessThan"' in names and '"Filter.lt"' not in names
    assert expr["values"][expr["result"]]["functionInvocationValue"]["functionName"] == (
        "Image.toUint16"
    )
    with rasterio.open(next(data_dir.rglob("mine-2021/*.tif"))) as src:
        assert src.dtypes == ("uint16", "uint16") and src.nodata == 0


def test_one_refused_chip_is_recorded_the_others_written_then_retried(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer
) -> None:
    chips = list(load_chips(data_dir, load_region(data_dir, region)))
    bad = chips[1]
    ee.refused_chips = {chip_key(bad.bbox[0], bad.bbox[3])}
    args = ("gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--workers", "1")
    r = run(capsys, *args, "--json")
    assert r.code == 1
    info = json.loads(r.out)
    assert info["downloaded"] == len(chips) - 1
    assert [f["tile_id"] for f in info["failed"]] == [bad.tile_id]
    assert "did not match any bands" in info["failed"][0]["reason"]
    assert f"1 of {len(chips)} chips failed" in r.err and "--retry-failed" in r.err
    report = json.loads(Path(info["report"]).read_text())
    assert [f["tile_id"] for f in report["failed"]] == [bad.tile_id]
    # a plain re-run with the fault still there takes the failed chip last
    folder = Path(info["folder"])
    for c in (chips[0], chips[2]):
        (folder / f"{c.tile_id}.tif").unlink()
    n = len(ee.requests)
    r = run(capsys, *args)
    assert r.code == 1 and "1 of" in r.err
    order = [q["grid"]["affineTransform"]["translateX"] for q in ee.requests[n:]]
    assert order[-1] == bad.bbox[0] and len(order) == 3
    # the fault cleared: --retry-failed fetches that chip alone
    ee.refused_chips = set()
    n = len(ee.requests)
    r = run(capsys, *args, "--retry-failed", "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["downloaded"] == 1 and info["failed"] == [] and len(ee.requests) == n + 1
    assert len(list(folder.glob("*.tif"))) == len(chips)
    r = run(capsys, *args, "--retry-failed")
    assert r.code == 2 and "no failed chips recorded" in r.err


def test_any_exception_is_that_chips_failure(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer
) -> None:
    chips = list(load_chips(data_dir, load_region(data_dir, region)))
    reg = load_region(data_dir, region)
    folder = data_dir / "local" / region / reg.partition / "esaworldcover-2020"
    (folder / f"{chips[0].tile_id}.tif").mkdir(parents=True)  # os.replace onto it fails
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--json")
    assert r.code == 1
    info = json.loads(r.out)
    assert info["downloaded"] == len(chips) - 1
    assert info["failed"][0]["tile_id"] == chips[0].tile_id
    assert "Error" in info["failed"][0]["reason"]  # IsADirectoryError / OSError, named


def test_gee_never_writes_through_a_planted_link(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str,
    ee: EarthEngineServer,
) -> None:  # fmt: skip
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.tif"
    victim.write_bytes(b"precious")
    chips = list(load_chips(data_dir, load_region(data_dir, region)))
    reg = load_region(data_dir, region)
    folder = data_dir / "local" / region / reg.partition / "esaworldcover-2020"
    folder.mkdir(parents=True)
    (folder / f"{chips[0].tile_id}.tif").symlink_to(victim)
    (folder / f"{chips[1].tile_id}.tif").symlink_to(outside / "new.tif")
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--limit", "3")
    assert r.code == 0, r.err
    assert victim.read_bytes() == b"precious" and sorted(outside.iterdir()) == [victim]
    for c in chips[:2]:
        p = folder / f"{c.tile_id}.tif"
        assert p.is_file() and not p.is_symlink()
    # a datakind folder that is a link out of the region: refused, nothing written there
    linked = folder.parent / "s1grd-median-2020"
    linked.symlink_to(outside, target_is_directory=True)
    r = run(capsys, "gee", region, "s1grd-median-2020", "--chip-px", str(PX), "--limit", "2")
    assert r.code == 1 and "outside the region" in r.err, r.err
    assert sorted(outside.iterdir()) == [victim]


def test_a_stopped_run_keeps_the_failures_it_did_not_reach(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    chips = list(load_chips(data_dir, load_region(data_dir, region)))
    bad = chips[0]
    ee.refused_chips = {chip_key(bad.bbox[0], bad.bbox[3])}
    args = ("gee", region, "esaworldcover-2020", "--chip-px", str(PX))
    assert run(capsys, *args).code == 1
    report = Path(data_dir / "local" / region / ".gee-esaworldcover-2020.json")
    assert [f["tile_id"] for f in json.loads(report.read_text())["failed"]] == [bad.tile_id]
    monkeypatch.setenv("M3LEO_EE_ENDPOINT", "http://127.0.0.1:9")  # refused: the run stops
    r = run(capsys, *args, "--retry-failed")
    assert r.code == 1 and "cannot connect" in r.err
    assert [f["tile_id"] for f in json.loads(report.read_text())["failed"]] == [bad.tile_id]


def test_unknown_algorithms_are_refused_before_any_request() -> None:
    from m3leo_cli.aoi.eeexpr import check_graph, filter_op
    from m3leo_cli.errors import EarthEngineError

    img = Call("Image.load", id="X")
    check_graph(Call("Image.toFloat", input=img))
    with pytest.raises(EarthEngineError, match="no algorithm 'Image.median'"):
        check_graph(Call("Image.toFloat", input=Call("Image.median", image=img)))
    assert filter_op("gte") == "greaterThanOrEquals" and filter_op("eq") == "equals"
    with pytest.raises(EarthEngineError, match="unknown filter op"):
        filter_op("inList")


def test_a_chip_an_older_recipe_wrote_is_fetched_again(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer
) -> None:
    """m3leo used to write s1grd-YYYY as float32 medians: a re-run must not keep them under
    the name of the published (uint16 mean) layer."""
    chips = list(load_chips(data_dir, load_region(data_dir, region)))
    reg = load_region(data_dir, region)
    folder = data_dir / "local" / region / reg.partition / "s1grd-2020"
    folder.mkdir(parents=True)
    old = np.full((16, PX, PX), -12.5, dtype="float32")
    write_chip(folder / f"{chips[0].tile_id}.tif", old, chips[0], spec.S1GRD_BANDS, float("nan"))
    r = run(capsys, "gee", region, "s1grd-2020", "--chip-px", str(PX), "--limit", "2", "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["downloaded"] == 2 and info["skipped"] == 0
    with rasterio.open(folder / f"{chips[0].tile_id}.tif") as src:
        assert src.dtypes[0] == "uint16"
    r = run(capsys, "gee", region, "s1grd-2020", "--chip-px", str(PX), "--limit", "2", "--json")
    assert json.loads(r.out)["skipped"] == 2  # what this recipe wrote is kept
