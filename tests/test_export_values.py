"""What an export does to values: labels untouched, --dtype in physical units, bounded sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_source import FAST_LAYERS, plan_for, shared_source, source_array

from m3leo_cli import spec
from m3leo_cli.errors import DtypeRangeError, TooLargeError, UsageError
from m3leo_cli.export import ExportOptions, LayerSpec, run_export


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


def _opts(out: Path, **kw) -> ExportOptions:
    kw.setdefault("command", ("m3leo", "export"))
    return ExportOptions("npz", out, **kw)


def _arrays(out: Path, tile_id: str) -> dict[str, np.ndarray]:
    f = next(out.rglob(f"{tile_id}.npz"))
    with np.load(f) as z:
        return {k: z[k] for k in z.files}


def _layers(out: Path) -> dict[str, dict]:
    meta = json.loads((out / "metadata.json").read_text())
    return {lay["name"]: lay for lay in meta["layers"]}


def test_dtype_converts_physical_values_and_never_touches_the_label(source, tmp_path) -> None:
    """Issue 12 items 1 and 2: --dtype float32 on S1 gives dB (-31..-8), not 65505..65528;
    the ESA WorldCover label keeps its uint8 class codes."""
    plan = plan_for(source, FAST_LAYERS)
    out = tmp_path / "o"
    run_export(plan, _opts(out, dtype="float32"))
    s = plan.samples[0]
    got = _arrays(out, s.tile_id)
    s1 = got["s1grd-2020"]
    assert s1.dtype == np.float32 and np.nanmax(s1) < 0  # signed dB, not the uint16 code
    stored = source_array(plan, s.tile_id, "s1grd-2020")
    np.testing.assert_array_equal(s1, stored.view(np.int16).astype(np.float32))
    s2 = got["s2rgbm-2020"]
    assert s2.dtype == np.float32 and 0 <= np.nanmin(s2) and np.nanmax(s2) <= 1
    wc = got["esaworldcover-2020"]
    assert wc.dtype == np.uint8
    np.testing.assert_array_equal(wc, source_array(plan, s.tile_id, "esaworldcover-2020"))
    assert set(np.unique(wc)) <= set(spec.ESA_WORLDCOVER_CLASSES) | {0}
    layers = _layers(out)
    assert layers["s1grd-2020"]["values"] == "decoded"
    assert layers["s1grd-2020"]["units"] == "dB (backscatter)"
    assert layers["s1grd-2020"]["cast"] == "float32"
    assert layers["esaworldcover-2020"]["values"] == "stored"
    assert layers["esaworldcover-2020"]["cast"] is None
    assert layers["esaworldcover-2020"]["dtype"] == "uint8"


def test_s2_float32_is_named_for_what_it_is_not_physical_reflectance(source, tmp_path) -> None:
    """Issue 27 finding 9: S2 --dtype float32 is stored/255 (the authors' scale, kept as it is),
    but metadata.json called it "physical"; reflectance is stored/255 x 0.3."""
    plan = plan_for(source, FAST_LAYERS)
    out = tmp_path / "o"
    run_export(plan, _opts(out, dtype="float32"))
    s = plan.samples[0]
    stored = source_array(plan, s.tile_id, "s2rgbm-2020")
    s2 = _arrays(out, s.tile_id)["s2rgbm-2020"]
    np.testing.assert_array_equal(s2, stored.astype(np.float32) / np.float32(255))  # unchanged
    lay = _layers(out)["s2rgbm-2020"]
    assert lay["values"] == "decoded" and "physical" not in json.dumps(lay)
    assert lay["units"].startswith("stored / 255")
    assert "not reflectance" in lay["units"] and "x 0.3" in lay["units"]
    from m3leo_cli.tiles.reader import DECODING

    assert "reflectance = decoded x 0.3" in DECODING["s2rgbm"]  # what `m3leo info` prints


def test_dtype_that_cannot_hold_the_values_is_refused(source, tmp_path) -> None:
    """Issue 12 item 2: --dtype uint8 on S1 made every pixel 255; now it is refused."""
    plan = plan_for(source, FAST_LAYERS)
    with pytest.raises(DtypeRangeError) as exc:
        run_export(plan, _opts(tmp_path / "u8", dtype="uint8"))
    assert "s1grd-2020" in exc.value.message and "do not fit uint8" in exc.value.message
    assert "--dtype float32" in exc.value.hint and exc.value.exit_code == 2
    assert not (tmp_path / "u8").exists()  # refused before --out is touched: a fixed re-run
    run_export(plan, _opts(tmp_path / "u8", dtype="float32"))  # works without --overwrite
    s2_only = (LayerSpec("s2rgbm-2020", "input"),)
    with pytest.raises(DtypeRangeError, match="not whole numbers"):  # 0..1 reflectance
        run_export(plan_for(source, s2_only), _opts(tmp_path / "i16", dtype="int16"))


def test_integer_dtype_that_holds_the_dB_values_is_exact(source, tmp_path) -> None:
    plan = plan_for(source, (LayerSpec("s1grd-2020", "input"),))
    out = tmp_path / "o"
    run_export(plan, _opts(out, dtype="int16"))
    s = plan.samples[0]
    got = _arrays(out, s.tile_id)["s1grd-2020"]
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, source_array(plan, s.tile_id, "s1grd-2020").view(np.int16))


def test_class_codes_as_an_input_are_not_cast_either(source, tmp_path) -> None:
    layers = (LayerSpec("s1grd-2020", "input"), LayerSpec("esaworldcover-2020", "input"))
    out = tmp_path / "o"
    run_export(plan_for(source, layers), _opts(out, dtype="float16"))
    meta = _layers(out)
    assert meta["esaworldcover-2020"]["dtype"] == "uint8"
    assert meta["esaworldcover-2020"]["note"] == "class codes: never normalised or cast"
    assert meta["s1grd-2020"]["dtype"] == "float16"


@pytest.mark.parametrize("size", [100_000, 5000])
def test_resample_is_bounded_before_any_work(source, tmp_path, size: int) -> None:
    """Issue 12 item 4: --resample 100000 died with a numpy out-of-memory traceback."""
    plan = plan_for(source, FAST_LAYERS)
    with pytest.raises(UsageError) as exc:
        run_export(plan, _opts(tmp_path / "o", resample=size))
    assert "--resample" in exc.value.message and exc.value.exit_code == 2
    assert "--resample" in exc.value.hint
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.npz"))


def test_resample_memory_is_preflighted(source) -> None:
    """A size under the cap that still does not fit this machine's memory is refused, from
    the band counts alone (nothing decoded)."""
    from m3leo_cli.export.run import preflight_memory

    plan = plan_for(source, FAST_LAYERS)
    opts = _opts(Path("unused"), resample=2048, workers=2)
    with pytest.raises(TooLargeError) as exc:
        preflight_memory(plan, opts, workers=2, available=64 * 2**20)  # a 64 MiB machine
    assert "GiB" in exc.value.message and "--workers" in exc.value.hint
    assert "--resample" in exc.value.hint
    preflight_memory(plan, opts, workers=2, available=2**40)  # fits: no error


def test_progress_counts_samples_and_bytes_as_they_arrive(source, tmp_path) -> None:
    """Issue 12 item 12: the bar was percent-only and sat at 0% until a whole shard was
    written. Now every sample advances it with its source bytes, inside one big shard."""
    from m3leo_cli.progress import ProgressEvent

    plan = plan_for(source, FAST_LAYERS)
    events: list[ProgressEvent] = []
    out = tmp_path / "o"
    opts = ExportOptions("webdataset", out, shard_size=1000, command=("m3leo", "export"))
    run_export(plan, opts, progress=events.append)
    start = next(e for e in events if e.kind == "start")
    advances = [e for e in events if e.kind == "advance"]
    want = sum(lf.size or lf.path.stat().st_size for s in plan.samples for lf in s.files.values())
    assert start.total_files == len(plan.samples) and start.total_bytes == want
    assert [e.files for e in advances] == [1] * len(plan.samples)  # one shard, many steps
    assert sum(e.bytes for e in advances) == want and all(e.bytes > 0 for e in advances)
    assert len(list(out.rglob("*.tar"))) == len(plan.splits)  # one unit per split
