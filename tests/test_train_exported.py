"""The iterable dataset over webdataset and Parquet exports: same samples as the store dataset,
and an exact split over DataLoader workers and distributed ranks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.errors import TrainConfigError  # noqa: E402
from m3leo_cli.export import ExportOptions, run_export  # noqa: E402
from m3leo_cli.export.samples import plan_from_catalog  # noqa: E402
from m3leo_cli.selection import Selection  # noqa: E402
from m3leo_cli.train.dataset import StoreDataset  # noqa: E402
from m3leo_cli.train.exported import ExportDataset, block  # noqa: E402
from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec  # noqa: E402

ESAWC = TargetSpec("esaworldcover-2020", "Map", "classification", tuple(range(10, 101, 10)) + (95,))
AGB = TargetSpec("biomass-2020", "agb", "regression")
INPUTS = (
    InputSpec("s1grd-2020", ("winter_vvasc", "winter_vhasc")),
    InputSpec("s2rgbm-2020", ("06_red",)),
    InputSpec("gssic", ("coherence:summer:12",)),
)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both streaming formats, exported once from the prepared store (native grids kept)."""
    _, template = train_store(tmp_path_factory)
    out = tmp_path_factory.mktemp("train-exports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3LEO_DATA_DIR", str(template))
        sel = Selection(edition="miniset", regions=("europe", "conus"))
        plan = plan_from_catalog(
            load_settings(), sel, ["s1grd", "s2rgbm", "gssic"], ["esaworldcover", "biomass"]
        )
        for fmt in ("webdataset", "parquet"):
            run_export(plan, ExportOptions(fmt, out / fmt, shard_size=2, workers=1))
        opts = ExportOptions("webdataset", out / "normalized", shard_size=3, workers=1,
                             resample=32, normalize=True)  # fmt: skip
        run_export(plan, opts, settings=load_settings())
        sel = Selection(edition="miniset", regions=("conus",))
        plan = plan_from_catalog(load_settings(), sel, ["gunw"], ["esaworldcover"])
        for fmt in ("webdataset", "parquet"):
            run_export(plan, ExportOptions(fmt, out / f"gunw-{fmt}", shard_size=2, workers=1))
    names = ("webdataset", "parquet", "normalized", "gunw-webdataset", "gunw-parquet")
    return {name: out / name for name in names}


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


def _spec(target: TargetSpec) -> DataSpec:
    return DataSpec(INPUTS, target, 32, normalize=False, regions=("europe", "conus"))


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
@pytest.mark.parametrize("target", [ESAWC, AGB], ids=["classes", "regression"])
def test_export_samples_equal_store_samples(store, exports, fmt, target) -> None:
    ds = ExportDataset(exports[fmt], "train", _spec(target))
    ref = StoreDataset(_spec(target), "train")
    got = list(ds)
    assert [s["tile_id"] for s in got] == ref.tile_ids and len(ds) == len(ref)
    assert ds.channel_names == ref.channel_names
    key = "mask" if target is ESAWC else "target"
    for s, r in zip(got, (ref[i] for i in range(len(ref))), strict=True):
        assert set(s) == set(r)
        assert s["image"].dtype == torch.float32 and s["image"].shape == (4, 32, 32)
        assert s[key].dtype == r[key].dtype and s[key].shape == (32, 32)
        torch.testing.assert_close(s["image"], r["image"])
        torch.testing.assert_close(s[key], r[key], equal_nan=True)
        torch.testing.assert_close(s["bounds"], r["bounds"])


def test_parquet_null_layers_stream_as_zeros_like_the_store(store, tmp_path: Path) -> None:
    """`export --allow-missing` writes null cells; streamed, they are the store's zeros."""
    from dataclasses import replace

    sel = Selection(edition="miniset", regions=("europe", "conus"))
    plan = plan_from_catalog(
        load_settings(), sel, ["s1grd", "s2rgbm", "gssic"], ["esaworldcover"], allow_missing=True
    )
    assert any(s.missing == ("gssic",) for s in plan.samples if s.split == "train")
    run_export(plan, ExportOptions("parquet", tmp_path / "p", shard_size=3, workers=1))
    data = replace(_spec(ESAWC), allow_missing=True)
    got = list(ExportDataset(tmp_path / "p", "train", data))
    ref = StoreDataset(data, "train")
    assert [s["tile_id"] for s in got] == ref.tile_ids
    lacking = {s.tile_id for s in plan.samples if s.missing}
    for i, s in enumerate(got):
        torch.testing.assert_close(s["image"], ref[i]["image"])
        torch.testing.assert_close(s["mask"], ref[i]["mask"])
        if s["tile_id"] in lacking:
            assert torch.count_nonzero(s["image"][3]) == 0  # the gssic channel


def test_parquet_of_a_development_build_is_refused_with_a_hint(store, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "old" / "train").mkdir(parents=True)
    meta = {"format": "parquet", "layers": [{"name": "s1grd-2020", "bands": ["winter_vvasc"]},
            {"name": "esaworldcover-2020", "bands": ["Map"]}],
            "samples": [{"tile_id": "0", "split": "train", "region": "europe"}],
            "files": {"train/train-000000.parquet": {}}}  # fmt: skip
    (tmp_path / "old" / "metadata.json").write_text(json.dumps(meta))
    nested = pa.list_(pa.list_(pa.list_(pa.uint16())))
    schema = pa.schema(
        [
            pa.field("tile_id", pa.string()),
            pa.field("s1grd-2020", nested, metadata={"bands": '["winter_vvasc"]'}),
            pa.field("esaworldcover-2020", nested, metadata={"bands": '["Map"]'}),
        ]
    )
    pq.write_table(schema.empty_table(), tmp_path / "old" / "train" / "train-000000.parquet")
    data = DataSpec((InputSpec("s1grd-2020", ("winter_vvasc",)),), ESAWC, 32, normalize=False)
    with pytest.raises(TrainConfigError) as exc:
        ExportDataset(tmp_path / "old", "train", data)
    assert "nested lists" in str(exc.value) and "--overwrite" in exc.value.hint


def test_normalised_export_equals_normalised_store(store, exports) -> None:
    """`export --resample 32 --normalize` streamed as is == the store dataset normalising."""
    from dataclasses import replace

    data = replace(_spec(ESAWC), normalize=True)
    got = list(ExportDataset(exports["normalized"], "train", data))
    ref = StoreDataset(data, "train")
    assert [s["tile_id"] for s in got] == ref.tile_ids
    for i, s in enumerate(got):
        torch.testing.assert_close(s["image"], ref[i]["image"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s["mask"], ref[i]["mask"])


def test_gunw_date_pair_rules_per_tile_from_webdataset(store, exports) -> None:
    """Date pairs differ between tiles: rules pick per tile, as the store dataset does."""
    # the synthetic pairs here are all 6-day ones, on track-dependent dates: the third rule
    # matches no pair on any tile, so its channel is zeros (nodata)
    rules = ("unwrappedPhase:days=0-6", "coherence:days=1-10", "unwrappedPhase:days=7-30")
    data = DataSpec((InputSpec("gunw", rules),), ESAWC, 32, normalize=False, regions=("conus",))
    got = list(ExportDataset(exports["gunw-webdataset"], "train", data))
    ref = StoreDataset(data, "train")
    assert [s["tile_id"] for s in got] == ref.tile_ids and len(got) >= 2
    for i, s in enumerate(got):
        assert s["image"].shape == (3, 32, 32)
        torch.testing.assert_close(s["image"], ref[i]["image"])
    for channel in (0, 1):  # these rules found a pair on every tile
        assert all(torch.count_nonzero(s["image"][channel]) for s in got)
    assert not any(torch.count_nonzero(s["image"][2]) for s in got)
    with pytest.raises(TrainConfigError) as exc:
        ExportDataset(exports["gunw-parquet"], "train", data)
    assert "webdataset" in exc.value.hint


def test_block_partition_is_exact() -> None:
    for n in range(0, 23):
        for parts in range(1, 6):
            seen = [i for k in range(parts) for i in range(*block(n, parts, k))]
            assert seen == list(range(n))


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_two_workers_times_two_ranks_is_an_exact_partition(exports, fmt) -> None:
    data = _spec(ESAWC)
    everything = [s["tile_id"] for s in ExportDataset(exports[fmt], "train", data)]
    assert len(everything) >= 5  # more samples than consumers, across several shards
    seen: list[str] = []
    for rank in range(2):
        ds = ExportDataset(exports[fmt], "train", data, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
        mine = [t for batch in loader for t in batch["tile_id"]]
        assert len(mine) == len(ds)
        seen += mine
    counts = Counter(seen)
    assert all(c == 1 for c in counts.values())  # no duplicate
    assert sorted(counts) == sorted(everything)  # no gap


def test_datamodule_streams_an_export(exports) -> None:
    from m3leo_cli.train.datamodule import M3leoDataModule

    dm = M3leoDataModule(_spec(AGB), batch_size=3, export=exports["parquet"])
    dm.setup("fit")
    tiles = [t for b in dm.train_dataloader() for t in b["tile_id"]]
    in_order = [s["tile_id"] for s in ExportDataset(exports["parquet"], "train", _spec(AGB))]
    assert sorted(tiles) == sorted(in_order)  # the train split shuffled (per seed and epoch)
    assert dm.datasets["train"].shuffle and not dm.datasets["val"].shuffle
    batch = next(iter(dm.val_dataloader()))
    assert batch["target"].dtype == torch.float32 and batch["image"].shape[1:] == (4, 32, 32)
