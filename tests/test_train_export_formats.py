"""`m3leo train` streams every export format (npz, zarr, tfrecord, hf as well as webdataset and
Parquet): the same samples as the store dataset, and an exact split over workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.export import ExportOptions, run_export  # noqa: E402
from m3leo_cli.export.samples import plan_from_catalog  # noqa: E402
from m3leo_cli.selection import Selection  # noqa: E402
from m3leo_cli.train.dataset import StoreDataset  # noqa: E402
from m3leo_cli.train.exported import ExportDataset  # noqa: E402
from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec  # noqa: E402

ESAWC = TargetSpec("esaworldcover-2020", "Map", "classification", tuple(range(10, 101, 10)) + (95,))
INPUTS = (
    InputSpec("s1grd-2020", ("winter_vvasc", "winter_vhasc")),
    InputSpec("s2rgbm-2020", ("06_red",)),
    InputSpec("gssic", ("coherence:summer:12",)),
)
FORMATS = ("npz", "zarr", "tfrecord", "hf", "litdata")
NEEDS = {"npz": "numpy", "zarr": "zarr", "tfrecord": "tfrecord", "hf": "datasets",
         "litdata": "litdata"}  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    _, template = train_store(tmp_path_factory)
    out = tmp_path_factory.mktemp("train-export-formats")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3LEO_DATA_DIR", str(template))
        sel = Selection(edition="miniset", regions=("europe",))
        plan = plan_from_catalog(load_settings(), sel, ["s1grd", "s2rgbm", "gssic"],
                                 ["esaworldcover"])  # fmt: skip
        for fmt in FORMATS:
            pytest.importorskip(NEEDS[fmt])
            run_export(plan, ExportOptions(fmt, out / fmt, shard_size=2, workers=1))
    return {fmt: out / fmt for fmt in FORMATS}


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


def _spec() -> DataSpec:
    return DataSpec(INPUTS, ESAWC, 32, normalize=False, regions=("europe",))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_streams_the_store_samples(store, exports, fmt) -> None:
    ds = ExportDataset(exports[fmt], "train", _spec())
    ref = StoreDataset(_spec(), "train")
    got = list(ds)
    assert [s["tile_id"] for s in got] == ref.tile_ids and len(ds) == len(ref)
    assert ds.channel_names == ref.channel_names
    for s, r in zip(got, (ref[i] for i in range(len(ref))), strict=True):
        assert set(s) == set(r)
        torch.testing.assert_close(s["image"], r["image"])
        torch.testing.assert_close(s["mask"], r["mask"])
        torch.testing.assert_close(s["bounds"], r["bounds"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_workers_split_every_format_exactly(store, exports, fmt) -> None:
    ds = ExportDataset(exports[fmt], "train", _spec())
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    ids = [s["tile_id"] for s in loader]
    assert sorted(ids) == sorted(StoreDataset(_spec(), "train").tile_ids)
