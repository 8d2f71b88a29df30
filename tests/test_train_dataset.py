"""The map-style dataset over the store: keys, shapes, dtypes, values, join rules, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.errors import (  # noqa: E402
    EmptySplitError,
    NoLabelsError,
    UnknownBandError,
)
from m3leo_cli.train.dataset import StoreDataset  # noqa: E402
from m3leo_cli.train.layers import (  # noqa: E402
    IGNORE_INDEX,
    DataSpec,
    InputSpec,
    TargetSpec,
)

ESAWC = TargetSpec("esaworldcover-2020", "Map", "classification", tuple(range(10, 101, 10)) + (95,))
AGB = TargetSpec("biomass-2020", "agb", "regression")
VV = tuple(f"{s}_vvasc" for s in ("winter", "spring", "summer", "fall"))


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


def _spec(inputs, target=ESAWC, regions=("europe",), **kw) -> DataSpec:
    return DataSpec(tuple(inputs), target, kw.pop("size", 32), regions=regions, **kw)


FAMILIES = [
    ("s1grd", InputSpec("s1grd-2020", VV), 4, ("europe",)),
    ("s2rgbm", InputSpec("s2rgbm-2020", ("03_red", "03_green", "03_blue")), 3, ("europe",)),
    ("gssic", InputSpec("gssic", tuple(f"coherence:{s}:36" for s in
                                       ("winter", "spring", "summer", "fall"))), 4, ("europe",)),
    ("gunw", InputSpec("gunw", ("unwrappedPhase:days=0-60", "coherence:days=0-400")), 2,
     ("conus",)),
]  # fmt: skip


@pytest.mark.parametrize("family,inp,channels,regions", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_samples_have_documented_keys_shapes_dtypes(store, family, inp, channels, regions):
    for target, key, dtype in ((ESAWC, "mask", torch.int64), (AGB, "target", torch.float32)):
        ds = StoreDataset(_spec([inp], target, regions), "train")
        assert len(ds) > 0 and len(ds.channel_names) == channels
        s = ds[0]
        assert set(s) == {"image", key, "tile_id", "bounds"}
        assert s["image"].dtype == torch.float32 and s["image"].shape == (channels, 32, 32)
        assert s[key].dtype == dtype and s[key].shape == (32, 32)
        assert s["bounds"].dtype == torch.float64 and s["bounds"].shape == (4,)
        assert torch.isfinite(s["image"]).all()
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
        assert batch["image"].shape == (2, channels, 32, 32) and len(batch["tile_id"]) == 2


def test_values_normalised_labels_untouched(store, data_dir: Path) -> None:
    from m3leo_cli.tiles.reader import read_tile

    ds = StoreDataset(_spec([InputSpec("s1grd-2020", VV)], size=32), "train")
    s = ds[0]
    # inputs: normalised with the saved stats (roughly zero mean over the split)
    means = torch.stack([ds[i]["image"].mean(dim=(1, 2)) for i in range(len(ds))]).mean(0)
    assert means.abs().max() < 1.5
    # labels: class index of the stored code, never normalised; nodata -> ignore
    tile = read_tile(ds.plan.samples[0].files["esaworldcover-2020"].path, "esaworldcover-2020")
    codes = tile.data[0]
    assert codes.shape == (32, 32)
    classes = list(ESAWC.classes)
    expected = np.array([[classes.index(c) if c in classes else IGNORE_INDEX for c in row]
                         for row in codes])  # fmt: skip
    np.testing.assert_array_equal(s["mask"].numpy(), expected)
    # regression target: decoded agb, nearest-resampled onto the grid, NaN only at nodata
    ds2 = StoreDataset(_spec([InputSpec("s1grd-2020", VV)], AGB), "train")
    agb = read_tile(ds2.plan.samples[0].files["biomass-2020"].path, "biomass-2020", ["agb"])
    t = ds2[0]["target"].numpy()
    assert set(np.unique(t[np.isfinite(t)])) <= set(np.unique(agb.data.astype(np.float32)))


def test_join_leaves_out_tiles_lacking_an_input(store) -> None:
    repo = store.repo("miniset", "europe")
    gssic = InputSpec("gssic", ("coherence:winter:36",))
    ds = StoreDataset(_spec([gssic]), "train")
    want = sorted(set(repo.tiles_in("train")) & set(repo.coverage["gssic"]))
    assert ds.tile_ids == want
    kept = StoreDataset(_spec([gssic], allow_missing=True), "train")
    assert kept.tile_ids == sorted(repo.tiles_in("train"))
    lacking = next(i for i, t in enumerate(kept.tile_ids) if t not in want)
    assert torch.count_nonzero(kept[lacking]["image"]) == 0


def test_band_not_in_store_lists_valid_names(store) -> None:
    with pytest.raises(UnknownBandError) as exc:
        StoreDataset(_spec([InputSpec("s1grd-2020", ("winter_hh",))]), "train")
    assert "winter_vvasc" in exc.value.hint


def test_modality_not_downloaded_names_the_download(store, data_dir: Path) -> None:
    import shutil

    for p in data_dir.glob("miniset/europe/*/gssic"):
        shutil.rmtree(p)
    with pytest.raises(EmptySplitError) as exc:
        StoreDataset(_spec([InputSpec("gssic", ("coherence:winter:36",))]), "train")
    assert "m3leo download" in exc.value.hint and "gssic" in exc.value.hint


def test_target_without_labels(store, data_dir: Path) -> None:
    for p in data_dir.glob("miniset/europe/*/biomass-2020/*.nc"):
        p.unlink()
    with pytest.raises(NoLabelsError) as exc:
        StoreDataset(_spec([InputSpec("s1grd-2020", VV)], AGB), "val")
    assert "m3leo download" in exc.value.hint and "biomass-2020" in exc.value.hint
    assert load_settings()  # the store itself is untouched otherwise


def test_datamodule_splits_come_from_the_split_csv(store) -> None:
    from m3leo_cli.train.datamodule import M3leoDataModule

    repo = store.repo("miniset", "europe")
    dm = M3leoDataModule(_spec([InputSpec("s1grd-2020", VV)]), batch_size=4, seed=3)
    dm.setup()
    for split in ("train", "val", "test"):
        assert dm.dataset(split).tile_ids == sorted(repo.tiles_in(split))
    assert dm.num_channels == 4
    first = [t for b in dm.train_dataloader() for t in b["tile_id"]]
    again = [t for b in dm.train_dataloader() for t in b["tile_id"]]
    assert sorted(first) == sorted(repo.tiles_in("train"))  # shuffled, every tile once
    assert len(again) == len(first)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape[1:] == (4, 32, 32) and batch["mask"].dtype == torch.int64
