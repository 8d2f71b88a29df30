"""`m3leo grid`: chips, identifiers, file hash and splits exactly as geetiles makes them.

The reference values in fixtures/geetiles_grid.json were written by running geetiles' own
``make_grid`` and ``split`` (unmodified, from its repository) on the AOIs recorded there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run

from m3leo_cli.aoi.grid import build_grid, read_grid_geojson
from m3leo_cli.aoi.ids import utm_zone
from m3leo_cli.aoi.shape import load_aoi
from m3leo_cli.aoi.split import assign_splits, chip_positions, parse_split_spec, stripe_ids

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "geetiles_grid.json").read_text())
CASES = {c["name"]: c for c in FIXTURE["cases"]}


@pytest.mark.parametrize("name", sorted(CASES))
def test_grid_matches_geetiles(name: str) -> None:
    case = CASES[name]
    grid = build_grid(load_aoi(case["wkt"]), case["chip"], name)
    assert [c.tile_id for c in grid.chips] == case["identifiers"]
    assert grid.geojson_name == case["file"]
    for chip, area in zip(grid.chips, case["area_km2"], strict=True):
        assert chip.area_km2 == pytest.approx(area, abs=1e-6)


@pytest.mark.parametrize(
    "name,i", [(n, i) for n, c in sorted(CASES.items()) for i in range(len(c["splits"]))]
)
def test_split_matches_geetiles(name: str, i: int) -> None:
    case = CASES[name]
    ref = case["splits"][i]
    grid = build_grid(load_aoi(case["wkt"]), case["chip"], name)
    spec = parse_split_spec(ref["bands"], ref["angle"], ref["split"])
    splits = assign_splits(grid.chips, spec)
    assert [splits[c.tile_id] for c in grid.chips] == ref["values"]
    assert ref["csv_columns"] == ["identifier", "split"]


def test_cli_grid_writes_local_region(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    case = CASES["pampa"]
    r = run(capsys, "grid", "pampa", "--aoi", case["wkt"], "--angle", "1.5", "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    folder = data_dir / "local" / "pampa"
    assert Path(info["geojson"]) == folder / case["file"]
    stem = case["file"].removesuffix(".geojson")
    csv = folder / f"{stem}_splits_60bands_angle15_60-20-20.csv"
    assert Path(info["split_csv"]) == csv
    lines = csv.read_text().splitlines()
    assert lines[0] == "identifier,split"
    assert [ln.split(",") for ln in lines[1:]] == [
        [i, s] for i, s in zip(case["identifiers"], case["splits"][0]["values"], strict=True)
    ]
    doc = json.loads((folder / case["file"]).read_text())
    assert list(doc["features"][0]["properties"]) == ["area_km2", "identifier"]
    back = read_grid_geojson(folder / case["file"], "pampa")
    assert [c.tile_id for c in back.chips] == case["identifiers"]


def test_bbox_and_geojson_inputs(tmp_path: Path) -> None:
    from_bbox = build_grid(load_aoi(bbox="5.9,49.5,6.2,49.7"), 4480, "box")
    poly = {
        "type": "Polygon",
        "coordinates": [[[5.9, 49.5], [6.2, 49.5], [6.2, 49.7], [5.9, 49.7], [5.9, 49.5]]],
    }
    f = tmp_path / "aoi.geojson"
    f.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": poly}],
            }
        )
    )
    from_file = build_grid(load_aoi(str(f)), 4480, "box")
    assert [c.tile_id for c in from_bbox.chips] == [c.tile_id for c in from_file.chips]
    assert len(from_bbox.chips) > 10


def test_a_failed_stripe_search_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES["alps"]  # geetiles puts all 274 chips in train with 60 stripes at 0.9
    grid = build_grid(load_aoi(case["wkt"]), 4480, "alps")
    assert len(set(stripe_ids(chip_positions(grid.chips), 60, 0.9))) < 60
    r = run(capsys, "grid", "alps", "--aoi", case["wkt"])
    assert r.code == 1
    assert "leaves val and test empty" in r.err and "hint: try fewer --bands" in r.err


def test_utm_zone_edges_follow_proj_database() -> None:
    assert utm_zone(6.0, 45) == 32631  # on a zone edge the western zone comes first
    assert utm_zone(7, 0.0) == 32632  # on the equator the northern one
    assert utm_zone(-180, 10) == 32601 and utm_zone(180, 10) == 32660
    assert utm_zone(7, -45) == 32732 and utm_zone(7, 85) is None


@pytest.mark.parametrize(
    "args,message,hint",
    [
        (["--aoi", "POLYGON EMPTY"], "has no area", "Polygon or MultiPolygon"),
        (["--aoi", "POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))"], "not a valid polygon", "Fix geometries"),
        (
            ["--aoi", "POLYGON ((170 0, -170 0, -170 10, 170 10, 170 0))"],
            "antimeridian",
            "split it at 180",
        ),
        (["--bbox", "-120,30,-10,40"], "too wide for one UTM zone", "split it east-west"),
        (["--bbox", "5,85,6,86"], "beyond UTM's latitudes", "80 S and 84 N"),
        (["--bbox", "6,49.5,6.01,49.51"], "no 4480 m chip fits", "--chip-size"),
        (["--bbox", "7,49,6,50"], "is empty", "--bbox W,S,E,N"),
        (["--aoi", "no-such-file.wkt"], "neither a file nor WKT", "--aoi"),
        (["--bbox", "6,49,7,50", "--split", "70-20-20"], "add up to 100", "--split 60-20-20"),
        (["--bbox", "6,49,7,50", "--angle", "0.95"], "whole tenths", "--angle"),
    ],
)
def test_bad_aoi_input(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str, hint: str
) -> None:
    r = run(capsys, "grid", "x", *args)
    assert r.code == 1, r.err
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("Error:") and message in lines[0], r.err
    assert lines[1].startswith("hint:") and hint in lines[1], r.err


def test_bad_region_name(capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "grid", "my_area", "--bbox", "6,49,7,50")
    assert r.code == 1 and "bad region name" in r.err and "no '_'" in r.err
    r = run(capsys, "grid", "2lux", "--bbox", "6,49,7,50")
    assert r.code == 1 and "bad region name" in r.err
    r = run(capsys, "grid", "europe", "--bbox", "6,49,7,50")
    assert r.code == 1 and "is a published M3LEO region" in r.err and "my-europe" in r.err


def test_grid_out_folder(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    case = CASES["twoislands"]
    r = run(capsys, "grid", "twoislands", "--aoi", case["wkt"], "--chip-size", "2000",
            "--bands", "10", "--angle", "0.2", "--out", str(tmp_path))  # fmt: skip
    assert r.code == 0, r.err
    assert (tmp_path / case["file"]).is_file()
    assert (
        tmp_path / case["file"].replace(".geojson", "_splits_10bands_angle02_60-20-20.csv")
    ).is_file()
    assert not (data_dir / "local").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--chip-size", "0"], "--chip-size must be more than 1 metre"),
        (["--chip-size", "-4480"], "--chip-size must be more than 1 metre"),
        (["--bands", "0"], "--bands must be at least 1"),
        (["--bands", "-1"], "--bands must be at least 1"),
    ],
)
def test_counts_must_be_positive(
    capsys: pytest.CaptureFixture[str], data_dir: Path, args: list[str], message: str
) -> None:
    r = run(capsys, "grid", "x", "--bbox", "6,49,7,50", *args)
    assert r.code == 2 and r.err.startswith(f"Error: {message}"), r.err
    assert not (data_dir / "local").exists()


LUX = [[5.9, 49.5], [6.5, 49.5], [6.5, 50.1], [5.9, 50.1], [5.9, 49.5]]


def test_swapped_geojson_is_caught_not_swapped(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    ok, swapped, bad = tmp_path / "ok.geojson", tmp_path / "swapped.geojson", tmp_path / "b.json"
    ok.write_text(json.dumps({"type": "Polygon", "coordinates": [LUX]}))
    swapped.write_text(json.dumps({"type": "Polygon", "coordinates": [[p[::-1] for p in LUX]]}))
    r = run(capsys, "grid", "lux", "--aoi", str(ok))
    assert r.code == 0 and "AOI centre 6.20 E, 49.80 N" in r.err and "note:" not in r.err
    r = run(capsys, "grid", "luxs", "--aoi", str(swapped), "--json")
    assert r.code == 0, r.err  # gridded as given: m3leo never swaps by itself
    info = json.loads(r.out)
    assert info["centre"] == [49.8, 6.2] and info["utm_epsg"] == 32639
    assert "note:" in r.err and "6.20 E, 49.80 N" in r.err and "swap them" in r.err
    # latitudes beyond 90 that make sense swapped: refused, nothing written
    far = [[10.0, 95.0], [10.5, 95.0], [10.5, 95.5], [10.0, 95.5], [10.0, 95.0]]
    bad.write_text(json.dumps({"type": "Polygon", "coordinates": [far]}))
    r = run(capsys, "grid", "far", "--aoi", str(bad))
    assert r.code == 2 and "look like latitude-first" in r.err and "swap each pair" in r.err
    assert not (data_dir / "local" / "far").exists()


def test_missing_shapely_names_an_install_line_that_works(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "shapely", None)  # as if the aoi extra were not installed
    r = run(capsys, "grid", "x", "--bbox", "6,49,7,50")
    assert r.code == 2 and "shapely" in r.err  # nothing done: the install line fixes it
    hint = r.err.split("hint:", 1)[1]
    assert "pip install '.[aoi]'" in hint, r.err  # from a clone (errors.install_hint)
