"""Exports at scale: deterministic, partitionable, resumable, and honest about bad input."""

from __future__ import annotations

import json
import resource
import signal
from pathlib import Path

import numpy as np
import pytest
from export_source import (
    FAST_LAYERS,
    plan_for,
    private_copy,
    shared_source,
    source_array,
    tree_bytes,
)

from m3leo_cli.errors import DiskFullError, OutputExistsError, UsageError
from m3leo_cli.export import ExportOptions, run_export
from m3leo_cli.progress import ProgressEvent


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


def _opts(fmt: str, out: Path, **kw) -> ExportOptions:
    kw.setdefault("shard_size", 2)
    kw.setdefault("command", ("m3leo", "export"))
    return ExportOptions(fmt, out, **kw)


@pytest.mark.parametrize("fmt", ["npz", "webdataset", "parquet"])
def test_same_input_same_bytes_whatever_the_workers(source, tmp_path: Path, fmt: str) -> None:
    plan = plan_for(source, FAST_LAYERS)
    run_export(plan, _opts(fmt, tmp_path / "a", workers=1))
    run_export(plan, _opts(fmt, tmp_path / "b", workers=3))
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a == b and "metadata.json" in a


def test_partitions_are_disjoint_and_add_up_to_the_whole(source, tmp_path: Path) -> None:
    plan = plan_for(source, FAST_LAYERS)
    whole = tmp_path / "whole"
    run_export(plan, _opts("webdataset", whole))
    parts = tmp_path / "parts"
    first = run_export(plan, _opts("webdataset", parts, num_shards=3, shard_index=0))
    assert not first.complete and first.metadata_path is None
    written = {first.written}
    for i in (2, 1):
        s = run_export(plan, _opts("webdataset", parts, num_shards=3, shard_index=i))
        written.add(s.written)
    assert s.complete  # the last job to finish writes metadata.json
    assert tree_bytes(parts) == tree_bytes(whole)
    assert sum(len(list((parts / sp).glob("*.tar"))) for sp in plan.splits) == len(
        list(whole.rglob("*.tar"))
    )


def test_bad_partition_is_a_usage_error(source, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as exc:
        run_export(
            plan_for(source, FAST_LAYERS), _opts("npz", tmp_path / "o", num_shards=2, shard_index=2)
        )
    assert "0 <= i < K" in exc.value.hint


def test_an_interrupted_export_completes_without_redoing_finished_shards(
    source, tmp_path: Path
) -> None:
    plan = plan_for(source, FAST_LAYERS)
    out = tmp_path / "o"

    def stop_after_two(event: ProgressEvent) -> None:
        # progress advances per sample: stop on the first sample after two finished shards
        if event.kind == "advance" and len(list(out.rglob("*.parquet"))) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_export(plan, _opts("parquet", out), progress=stop_after_two)
    assert not (out / "metadata.json").exists()
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert len(done) == 2
    mtimes = {p: (out / p).stat().st_mtime_ns for p in done}
    (out / "val").mkdir(exist_ok=True)
    (out / "val" / "val-000000.parquet.part").write_bytes(b"half a shard")  # a crash's leftover
    again = run_export(plan, _opts("parquet", out))
    assert again.units_skipped == 2 and again.complete
    assert {p: (out / p).stat().st_mtime_ns for p in done} == mtimes  # not rewritten
    assert not list(out.rglob("*.part"))
    run_export(plan, _opts("parquet", tmp_path / "fresh"))
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")


def test_a_corrupt_tile_is_skipped_named_and_redone_once_repaired(source, tmp_path: Path) -> None:
    root = private_copy(source, tmp_path / "repo")
    plan = plan_for(source, FAST_LAYERS, root=root)
    victim = plan.samples[1]
    path = victim.files["s1grd-2020"].path
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])
    out = tmp_path / "o"
    s = run_export(plan, _opts("webdataset", out))
    assert [f.tile_id for f in s.failures] == [victim.tile_id]
    assert s.failures[0].layer == "s1grd-2020" and str(path) in s.failures[0].path
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["counts"]["failed"] == 1
    assert meta["skipped"]["failed"][0]["tile_id"] == victim.tile_id
    assert victim.tile_id not in [x["tile_id"] for x in meta["samples"]]
    assert meta["counts"]["samples"] == len(plan.samples) - 1
    path.write_bytes(good)  # `m3leo verify --repair`
    again = run_export(plan, _opts("webdataset", out))
    assert not again.failures and again.units_written == 1  # only the shard that lacked it
    assert json.loads((out / "metadata.json").read_text())["counts"]["failed"] == 0


def test_geotiff_refuses_a_file_that_differs_from_the_manifest(source, tmp_path: Path) -> None:
    root = private_copy(source, tmp_path / "repo")
    plan = plan_for(source, FAST_LAYERS, root=root)
    victim = plan.samples[0]
    path = victim.files["esaworldcover-2020"].path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    s = run_export(plan, _opts("geotiff", tmp_path / "o"))
    assert [f.tile_id for f in s.failures] == [victim.tile_id]
    assert "sha256" in s.failures[0].reason
    assert not (tmp_path / "o" / victim.split / "s1grd-2020" / f"{victim.tile_id}.tif").exists()


def test_an_output_folder_holding_something_else_is_refused(source, tmp_path: Path) -> None:
    plan = plan_for(source, FAST_LAYERS)
    out = tmp_path / "o"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError) as exc:
        run_export(plan, _opts("npz", out))
    assert "not an m3leo export" in exc.value.message and "--overwrite" in exc.value.hint
    other = tmp_path / "other"
    run_export(plan, _opts("npz", other))
    with pytest.raises(OutputExistsError) as exc:
        run_export(plan, _opts("parquet", other))
    assert "different export" in exc.value.message
    s = run_export(plan, _opts("parquet", other, overwrite=True))
    assert s.complete and not list(other.rglob("*.npz"))
    s = run_export(plan, _opts("npz", out, overwrite=True))  # foreign files are never deleted
    assert s.complete and (out / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    ("fmt", "workers", "final"), [("webdataset", 1, "*.tar"), ("npz", 2, "*.npz")]
)
def test_disk_full_leaves_no_half_written_shard(
    source, tmp_path: Path, fmt, workers, final
) -> None:
    plan = plan_for(source, FAST_LAYERS)
    out = tmp_path / "o"
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # writes past 20 kB fail: EFBIG
    try:
        with pytest.raises(DiskFullError) as exc:
            run_export(plan, _opts(fmt, out, shard_size=4, workers=workers))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "disk full while writing" in exc.value.message and "re-run" in exc.value.hint
    assert not list(out.rglob(final)) and not list(out.rglob("*.part"))
    s = run_export(plan, _opts(fmt, out, shard_size=4, workers=workers))
    assert s.complete and not s.failures


def test_resample_puts_every_layer_on_one_grid(source, tmp_path: Path) -> None:
    plan = plan_for(source)
    run_export(plan, _opts("npz", tmp_path / "o", resample=8))
    s = plan.samples[0]
    with np.load(tmp_path / "o" / s.split / f"{s.tile_id}.npz") as z:
        for name in ("s1grd-2020", "gssic", "esaworldcover-2020"):
            src = source_array(plan, s.tile_id, name)
            assert z[name].shape == (src.shape[0], 8, 8) and z[name].dtype == src.dtype
        # labels: nearest neighbour, so only class codes the source has
        label = source_array(plan, s.tile_id, "esaworldcover-2020")
        assert set(np.unique(z["esaworldcover-2020"])) <= set(np.unique(label))
        # 16 -> 8: nearest picks pixel 1 of every 2x2 block
        np.testing.assert_array_equal(z["esaworldcover-2020"], label[:, 1::2, 1::2])


def test_bilinear_resampling_of_a_smooth_field_is_close(tmp_path: Path) -> None:
    from m3leo_cli.export.resample import resample

    y, x = np.mgrid[0:12, 0:15].astype(np.float32)
    data = (2 * y + 3 * x)[None]
    out, mask = resample(data, 24, nearest=False)
    assert out.shape == (1, 24, 24) and out.dtype == np.float32 and mask is None
    assert abs(float(out.mean()) - float(data.mean())) < 0.5
    nodata = np.zeros_like(data, dtype=bool)
    nodata[0, :6] = True
    out, mask = resample(np.where(nodata, -9999.0, data).astype(np.float32), 6, nearest=False,
                         nodata=nodata)  # fmt: skip
    assert mask is not None and mask[0, :2].all() and not mask[0, 4:].any()
    assert (out[0, 4:] > -1).all()  # valid pixels never mix in the fill value


def test_dtype_casts_and_geotiff_refuses_value_options(source, tmp_path: Path) -> None:
    plan = plan_for(source, FAST_LAYERS)
    run_export(plan, _opts("npz", tmp_path / "o", dtype="float32"))
    s = plan.samples[0]
    with np.load(tmp_path / "o" / s.split / f"{s.tile_id}.npz") as z:
        assert z["s1grd-2020"].dtype == np.float32
        stored = source_array(plan, s.tile_id, "s1grd-2020")  # uint16 holding signed dB
        np.testing.assert_array_equal(z["s1grd-2020"], stored.view(np.int16).astype(np.float32))
    with pytest.raises(UsageError):
        run_export(plan, _opts("geotiff", tmp_path / "g", resample=8))
    with pytest.raises(UsageError) as exc:
        run_export(plan, _opts("npz", tmp_path / "d", dtype="complex64"))
    assert "float32" in exc.value.hint


@pytest.mark.parametrize("workers", [1, 3])
def test_decoding_keeps_order_and_a_bounded_window(workers: int) -> None:
    from m3leo_cli.export.decode import ordered_map

    pulled: list[int] = []

    def items():  # type: ignore[no-untyped-def]
        for i in range(50):
            pulled.append(i)
            yield i

    out = []
    for r in ordered_map(lambda x: x * x, items(), workers, window=4):
        assert len(pulled) - len(out) <= 4  # never more than the window in flight
        out.append(r)
    assert out == [i * i for i in range(50)]


def test_s1grd_is_interpolated_as_the_signed_db_it_encodes() -> None:
    from m3leo_cli.export.resample import resample

    db = np.array([[[-2, 2], [-2, 2]]], dtype=np.int16)  # -2 dB wraps to 65534 in uint16
    out, _ = resample(db.view(np.uint16), 4, nearest=False, family="s1grd")
    assert out.dtype == np.uint16
    signed = out.view(np.int16)
    assert signed.min() >= -2 and signed.max() <= 2  # never a value between 2 and 65534
    assert (signed[0, :, 0] == -2).all() and (signed[0, :, -1] == 2).all()
