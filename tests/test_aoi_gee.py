"""`m3leo gee` against the loopback Earth Engine REST server: the chips of a small grid, quota
errors survived, requests over the size limit split by band groups, resume, bad input.
Recipes, masks and failures per chip: tests/test_aoi_gee_recipes.py; credentials, project,
timeouts and endpoints: tests/test_aoi_gee_auth.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from clirun import run

from m3leo_cli.aoi.eeexpr import encode
from m3leo_cli.aoi.recipes import builtin_recipe
from m3leo_cli.server.earthengine import EarthEngineServer, _check_expression, expected_pixels

AOI = "POLYGON ((7.1 45.8, 7.3 45.8, 7.3 45.95, 7.1 45.95, 7.1 45.8))"
PX = 8


@pytest.fixture
def region(capsys: pytest.CaptureFixture[str]) -> str:
    r = run(capsys, "grid", "ee", "--aoi", AOI, "--chip-size", "4480", "--bands", "5")
    assert r.code == 0, r.err
    return "ee"


@pytest.fixture
def ee(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> EarthEngineServer:
    # no real Earth Engine or gcloud credentials, stored project or key leak into a test
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("eehome")))
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG",
                "EE_PROJECT_ID"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path_factory.mktemp("gcloud")))
    with EarthEngineServer(token="tok") as server:
        monkeypatch.setenv("M3LEO_EE_ENDPOINT", server.url)
        monkeypatch.setenv("M3LEO_EE_TOKEN", "tok")
        monkeypatch.setenv("M3LEO_EE_PROJECT", "my-project")
        yield server


def expected_file(recipe_name: str, grid: dict, bands: list[str]) -> np.ndarray:
    """What a chip file holds: the server's pixels as Earth Engine sends them for the recipe
    (cast on the server), then written as the recipe writes its files."""
    rec = builtin_recipe(recipe_name) if "-" in recipe_name else None
    arr = expected_pixels(grid, bands)
    if rec is None or rec.sent_dtype.startswith("float"):
        sent = arr.astype("float32")
    else:
        sent = np.clip(np.trunc(arr), 0, np.iinfo(rec.sent_dtype).max).astype(rec.sent_dtype)
    return rec.to_file(sent) if rec is not None else sent


def _check_chips(folder: Path, bands: tuple[str, ...], dtype: str, recipe: str = "") -> int:
    n = 0
    for tif in sorted(folder.glob("*.tif")):
        with rasterio.open(tif) as src:
            assert src.descriptions == bands and src.dtypes[0] == dtype
            assert (src.width, src.height) == (PX, PX) and src.crs.to_epsg() == 4326
            t = src.transform
            grid = {"dimensions": {"width": PX, "height": PX},
                    "affineTransform": {"translateX": t.c, "translateY": t.f}}  # fmt: skip
            want = expected_file(recipe, grid, list(bands)).astype(dtype)
            assert np.array_equal(src.read(), want), tif.name
        n += 1
    return n


def test_gee_writes_every_chip_through_quota_errors_and_resumes(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer
) -> None:
    ee.quota_errors = 4
    ee.delay = 0.05
    r = run(capsys, "gee", region, "s1grd-2020", "--chip-px", str(PX), "--workers", "3", "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    chips = info["chips"]
    assert chips > 4 and info["downloaded"] == chips and info["retries"] == 4
    assert info["manifest_tiles"] == chips
    assert 1 < ee.max_in_flight <= 3  # --workers 3: concurrent, and no more than asked
    rec = builtin_recipe("s1grd-2020")
    assert _check_chips(Path(info["folder"]), rec.bands, "uint16", "s1grd-2020") == chips
    first = ee.requests[0]
    assert first["project"] == "my-project" and first["fileFormat"] == "GEO_TIFF"
    assert first["user_project"] == "my-project"  # X-Goog-User-Project, as earthengine-api
    assert first["grid"]["dimensions"] == {"width": PX, "height": PX}
    assert first["grid"]["crsCode"] == "EPSG:4326" and first["bandIds"] == list(rec.bands)
    assert first["expression"] == encode(rec.request_image())
    # resume: a finished chip is skipped, a deleted one is fetched again
    victim = sorted(Path(info["folder"]).glob("*.tif"))[0]
    victim.unlink()
    n_before = len(ee.requests)
    r = run(capsys, "gee", region, "s1grd-2020", "--chip-px", str(PX), "--json")
    info2 = json.loads(r.out)
    assert r.code == 0 and info2["downloaded"] == 1 and info2["skipped"] == chips - 1
    assert len(ee.requests) == n_before + 1 and victim.is_file()
    r = run(capsys, "stats", "--edition", "local", "--region", region, "--modality", "s1grd")
    assert r.code == 0, r.err


def test_gee_splits_requests_over_the_size_limit(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer
) -> None:
    ee.max_request_bytes = PX * PX * 4 * 10  # 10 of the 36 bands fit in one request
    r = run(capsys, "gee", region, "s2rgbm-2020", "--chip-px", str(PX), "--limit", "2", "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["split_chips"] == 2 and info["downloaded"] == 2
    rec = builtin_recipe("s2rgbm-2020")
    assert _check_chips(Path(info["folder"]), rec.bands, "uint8", "s2rgbm-2020") == 2
    sizes = [len(q["bandIds"]) for q in ee.requests]
    assert sizes.count(36) == 2  # one whole try per chip, then groups that fit
    assert all(n * PX * PX * 4 <= ee.max_request_bytes for n in sizes if n != 36)


def test_user_recipe_file(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str,
    ee: EarthEngineServer,
) -> None:  # fmt: skip
    f = tmp_path / "ndvi.toml"
    f.write_text(
        'datakind = "nirred-2021"\ncollection = "COPERNICUS/S2_SR_HARMONIZED"\n'
        'start = "2021-06-01"\nend = "2021-09-01"\nbands = ["B8", "B4"]\nnames = ["nir", "red"]\n'
        'reducer = "median"\n'
        'filters = [{property = "CLOUDY_PIXEL_PERCENTAGE", op = "lessThan", value = 20}]\n'
    )
    r = run(capsys, "gee", region, "--recipe", str(f), "--chip-px", str(PX), "--limit", "2")
    assert r.code == 0, r.err
    r = run(capsys, "stats", "--edition", "local", "--region", region, "--json")
    assert r.code == 0, r.err
    assert {row["modality"] for row in json.loads(r.out)["rows"]} == {"nirred-2021"}
    assert _check_chips(next(data_dir.rglob("nirred-2021")), ("nir", "red"), "float32") == 2


def test_recipe_expressions_are_well_formed() -> None:
    for name in ("s1grd-2020", "s1grd-median-2020", "s2rgbm-2020", "esaworldcover-2020",
                 "esaworldcover-2021"):  # fmt: skip
        assert _check_expression(encode(builtin_recipe(name).request_image())) is None, name


def test_gee_errors(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ee.quota_errors = 100
    monkeypatch.setenv("M3LEO_EE_MAX_RETRIES", "2")
    monkeypatch.setenv("M3LEO_EE_BACKOFF", "0.01")
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--limit", "3")
    assert r.code == 1 and "quota exceeded" in r.err and "--retry-failed" in r.err, r.err
    assert "3 of 3 chips failed" in r.err
    ee.quota_errors = 0
    monkeypatch.setenv("M3LEO_EE_TOKEN", "wrong")
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX))
    assert (
        r.code == 1 and "refused the credentials" in r.err and "earthengine authenticate" in r.err
    )
    monkeypatch.delenv("M3LEO_EE_TOKEN")
    r = run(capsys, "gee", region, "esaworldcover-2020")
    assert r.code == 1 and "no Earth Engine credentials" in r.err, r.err
    assert "M3LEO_EE_TOKEN" in r.err and "earthengine authenticate" in r.err
    monkeypatch.setenv("M3LEO_EE_TOKEN", "tok")
    monkeypatch.delenv("M3LEO_EE_PROJECT")
    r = run(capsys, "gee", region, "esaworldcover-2020")
    assert r.code == 1 and "no Earth Engine project" in r.err and "--project" in r.err
    r = run(capsys, "gee", region, "landsat-2020", "--project", "p")
    assert r.code == 1 and "no built-in recipe" in r.err and "--recipe" in r.err


def test_gee_layers_export_as_training_samples(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str,
    ee: EarthEngineServer,
) -> None:  # fmt: skip
    for layer in ("s1grd-2020", "esaworldcover-2020"):
        assert run(capsys, "gee", region, layer, "--chip-px", str(PX)).code == 0
    out = tmp_path / "wds"
    r = run(
        capsys,
        "export",
        "--edition",
        "local",
        "--region",
        region,
        "--modality",
        "s1grd",
        "--label",
        "esaworldcover",
        "--format",
        "webdataset",
        "--out",
        str(out),
        "--json",
    )
    assert r.code == 0, r.err
    assert sorted(out.rglob("*.tar")) and (out / "metadata.json").is_file()


def test_train_and_evaluate_on_a_local_region(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str,
    ee: EarthEngineServer,
) -> None:  # fmt: skip
    """The local edition reaches the training loop unchanged: one CPU epoch on chips that
    `m3leo gee` wrote, then the test split scored."""
    pytest.importorskip("m3leo_cli.train.tasks", reason="the train extra (lightning)")
    for layer in ("s1grd-2020", "esaworldcover-2020"):
        assert run(capsys, "gee", region, layer, "--chip-px", str(PX)).code == 0
    stats = run(
        capsys,
        "stats",
        "--bands",
        "--edition",
        "local",
        "--region",
        region,
        "--modality",
        "s1grd-2020",
    )  # fmt: skip  (the experiment normalises its inputs)
    assert stats.code == 0, stats.err
    run_dir = tmp_path / "run"
    r = run(capsys, "train", "experiment=esawc/s1grd", "data.edition=local",
            f"data.regions=[{region}]", "data.size=16", "model.base_channels=4", "model.depth=1",
            "trainer.max_epochs=1", "trainer.accelerator=cpu", "loader.batch_size=2",
            f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["epochs"] == 1 and summary["samples"]["train"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    r = run(capsys, "evaluate", str(run_dir), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["samples"] >= 1
