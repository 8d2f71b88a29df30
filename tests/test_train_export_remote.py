"""`data.export=s3://...`: ExportDataset streams an export from an object store (moto's
S3-compatible server on loopback, not a mock) through fsspec, with the same rank x worker split
as a folder, and the train split's order shuffled per (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")
pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
pytest.importorskip("s3fs", reason="s3fs is in the dev extra")

from s3kit import empty_bucket, moto_endpoint  # noqa: E402

from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.errors import TrainConfigError  # noqa: E402
from m3leo_cli.export import ExportOptions, run_export  # noqa: E402
from m3leo_cli.export.samples import plan_from_catalog  # noqa: E402
from m3leo_cli.selection import Selection  # noqa: E402
from m3leo_cli.train.dataset import StoreDataset  # noqa: E402
from m3leo_cli.train.exported import ExportDataset  # noqa: E402
from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec  # noqa: E402

BUCKET = "m3leo-train"
ESAWC = TargetSpec("esaworldcover-2020", "Map", "classification", tuple(range(10, 101, 10)) + (95,))
INPUTS = (InputSpec("s1grd-2020", ("winter_vvasc", "winter_vhasc")),
          InputSpec("gssic", ("coherence:summer:12",)))  # fmt: skip
FORMATS = ("webdataset", "parquet", "npz", "zarr", "tfrecord", "hf", "litdata")
NEEDS = {"zarr": "zarr", "tfrecord": "tfrecord", "hf": "datasets", "litdata": "litdata"}


def _spec() -> DataSpec:
    return DataSpec(INPUTS, ESAWC, 32, normalize=False, regions=("europe", "conus"))


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture(scope="module")
def exports(s3: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The train store exported in every format into one bucket (shards of 2 samples)."""
    _, template = train_store(tmp_path_factory)
    staging = tmp_path_factory.mktemp("staging")
    with pytest.MonkeyPatch.context() as mp:
        empty_bucket(s3, BUCKET, mp)
        mp.setenv("M3LEO_DATA_DIR", str(template))
        sel = Selection(edition="miniset", regions=("europe", "conus"))
        plan = plan_from_catalog(load_settings(), sel, ["s1grd", "gssic"], ["esaworldcover"])
        settings = load_settings({"data_dir": staging})
        urls = {}
        for fmt in FORMATS:
            if fmt in NEEDS:
                pytest.importorskip(NEEDS[fmt])
            urls[fmt] = f"s3://{BUCKET}/{fmt}"
            opts = ExportOptions(fmt, urls[fmt], shard_size=2, workers=1)
            assert run_export(plan, opts, settings=settings).complete
    return urls


@pytest.fixture
def store(s3: str, tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
          monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3}  # fmt: skip
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    try:  # litdata fetches chunks through obstore, which refuses moto's plain-http endpoint
        import litdata.streaming.downloader as downloader  # (its boto3 path reads the same)

        monkeypatch.setattr(downloader, "_OBSTORE_AVAILABLE", False)
    except ImportError:
        pass
    return info


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_on_s3_streams_the_store_samples(store, exports, fmt) -> None:
    ds = ExportDataset(exports[fmt], "train", _spec())
    ref = StoreDataset(_spec(), "train")
    got = list(ds)
    assert [s["tile_id"] for s in got] == ref.tile_ids and len(ds) == len(ref)
    for s, r in zip(got, (ref[i] for i in range(len(ref))), strict=True):
        torch.testing.assert_close(s["image"], r["image"])
        torch.testing.assert_close(s["mask"], r["mask"])
        torch.testing.assert_close(s["bounds"], r["bounds"])


def _epoch(url: str, epoch: int, seed: int = 7, buffer: int = 3) -> list[list[str]]:
    """The tile ids each of 2 simulated ranks reads (2 DataLoader workers each) in ``epoch``."""
    out = []
    for rank in (0, 1):
        ds = ExportDataset(url, "train", _spec(), rank=rank, world_size=2, shuffle=True,
                           seed=seed, shuffle_buffer=buffer)  # fmt: skip
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        out.append([s["tile_id"] for s in loader])
    return out


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_ranks_and_workers_read_every_sample_once_in_a_per_epoch_order(store, exports,
                                                                         fmt) -> None:  # fmt: skip
    every = sorted(StoreDataset(_spec(), "train").tile_ids)
    first = _epoch(exports[fmt], 1)
    assert sorted(first[0] + first[1]) == every  # exactly once across 2 ranks x 2 workers
    assert not set(first[0]) & set(first[1])
    assert _epoch(exports[fmt], 1) == first  # reproducible per (seed, epoch)
    second = _epoch(exports[fmt], 2)
    assert sorted(second[0] + second[1]) == every
    assert second != first  # another epoch, another order
    assert _epoch(exports[fmt], 1, seed=8) != first  # and another seed


def test_epochs_advance_by_themselves_without_workers(store, exports) -> None:
    ds = ExportDataset(exports["parquet"], "train", _spec(), shuffle=True, seed=7)
    one, two = [s["tile_id"] for s in ds], [s["tile_id"] for s in ds]
    assert sorted(one) == sorted(two) and one != two
    ds.set_epoch(0)
    assert [s["tile_id"] for s in ds] == one
    plain = ExportDataset(exports["parquet"], "train", _spec())  # val / test: the export's order
    assert [s["tile_id"] for s in plain] == StoreDataset(_spec(), "train").tile_ids


def test_a_prefix_without_an_export_is_one_error(store, exports) -> None:
    with pytest.raises(TrainConfigError) as exc:
        ExportDataset(f"s3://{BUCKET}/nothing-here", "train", _spec())
    assert "no metadata.json" in str(exc.value) and "data.export" in exc.value.hint
