"""The store loader's batched fetch (issue 28, the loader at the bare loop's pace): images are
assembled straight into one batch tensor and passed on without a stacked copy, with the same
values, in the main process and in DataLoader workers; the decoding folded into normalisation
gives the same bits as decoding then subtracting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

from m3leo_cli.train.dataset import StoreDataset  # noqa: E402
from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec  # noqa: E402
from m3leo_cli.train.threads import collate  # noqa: E402

ESAWC = TargetSpec("esaworldcover-2020", "Map", "classification", tuple(range(10, 101, 10)) + (95,))
S1 = InputSpec("s1grd-2020", tuple(f"{s}_{p}asc" for p in ("vv", "vh")
                                   for s in ("winter", "spring", "summer", "fall")))  # fmt: skip
S2 = InputSpec("s2rgbm-2020", ("03_red", "03_green", "03_blue"))
SEASONS = ("winter", "spring", "summer", "fall")
GSSIC = InputSpec("gssic", tuple(f"coherence:{s}:36" for s in SEASONS))


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


AGB = TargetSpec("biomass-2020", "agb", "regression")


def _dataset(normalize: bool = True, transforms=None, target=ESAWC, **kw) -> StoreDataset:  # type: ignore[no-untyped-def]
    data = DataSpec((S1, S2, GSSIC), target, 24, normalize=normalize, regions=("europe",), **kw)
    return StoreDataset(data, "train", transforms=transforms)


def _expected(ds: StoreDataset, indices: list[int]) -> dict:
    items = [ds[i] for i in indices]  # one sample at a time, stacked by torch
    return torch.utils.data.default_collate(items)


CASES = {
    "classes": {},
    "regression": {"target": AGB},
    "paper regression (45 x 55)": {"target": AGB, "normalize": False, "preprocessing": "paper"},
}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("case", list(CASES))
def test_batches_equal_the_samples_stacked(store, workers: int, case: str) -> None:
    ds = _dataset(**CASES[case])
    key = "mask" if "target" not in CASES[case] else "target"
    assert len(ds) >= 3
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate)
    seen = 0
    for batch in loader:
        want = _expected(ds, list(range(seen, seen + len(batch["tile_id"]))))
        assert list(batch) == list(want)  # same keys, same order
        assert torch.equal(batch["image"], want["image"])
        assert batch[key].dtype == want[key].dtype and batch[key].shape == want[key].shape
        assert torch.equal(batch[key].nan_to_num(-7.0), want[key].nan_to_num(-7.0))
        assert batch["tile_id"] == want["tile_id"]
        assert torch.equal(batch["bounds"], want["bounds"])
        seen += len(batch["tile_id"])
    assert seen == len(ds)


def test_the_batch_is_the_tensor_the_images_were_written_into(store) -> None:
    ds = _dataset()
    samples = ds.__getitems__([0, 1, 2])
    batch = collate(samples)
    assert batch["image"].data_ptr() == samples[0]["image"].data_ptr()  # no stacked copy
    assert batch["mask"].data_ptr() == samples[0]["mask"].data_ptr()
    assert torch.equal(batch["image"][2], samples[2]["image"])
    # torch's own collate gives the same batch from the same samples (a copy)
    assert torch.equal(torch.utils.data.default_collate(samples)["image"], batch["image"])


def test_a_transform_that_makes_another_view_is_stacked(store) -> None:
    def transpose(sample: dict) -> dict:
        sample["image"] = sample["image"].transpose(1, 2)  # square: same shape, other strides
        return sample

    ds = _dataset(transforms=transpose)
    samples = ds.__getitems__([0, 1])
    batch = collate(samples)
    want = torch.stack([_dataset()[i]["image"].transpose(1, 2) for i in (0, 1)])
    assert torch.equal(batch["image"], want)


def test_decoding_folded_into_normalisation_gives_the_same_bits() -> None:
    from m3leo_cli.tiles.model import decode_into
    from m3leo_cli.train.assemble import _decode_minus

    rng = np.random.default_rng(0)
    cases = [("s1grd", rng.integers(0, 65535, (8, 16, 16), dtype=np.uint16)),
             ("s2rgbm", rng.integers(0, 256, (12, 16, 16), dtype=np.uint8)),
             ("gssic", rng.normal(size=(4, 16, 16)).astype(np.float32)),
             ("modis44b006veg", rng.integers(0, 201, (1, 16, 16), dtype=np.uint8)),
             ("biomass", rng.normal(size=(1, 16, 16)))]  # fmt: skip
    for family, data in cases:
        mean = rng.normal(size=(data.shape[0], 1, 1)).astype(np.float32)
        got, want = np.empty(data.shape, np.float32), np.empty(data.shape, np.float32)
        _decode_minus(got, data, family, mean)
        decode_into(want, data, family)
        want -= mean
        assert np.array_equal(got, want, equal_nan=True), family


def test_normalised_integer_inputs_stay_finite_and_float_ones_are_cleaned() -> None:
    from m3leo_cli.train.assemble import _bounded

    mean = np.zeros((2, 1, 1), np.float32)
    assert _bounded(np.dtype(np.uint16), mean, np.ones((2, 1, 1), np.float32))
    assert not _bounded(np.dtype(np.uint16), mean, np.zeros((2, 1, 1), np.float32))
    assert not _bounded(np.dtype(np.int16), mean, np.full((2, 1, 1), 1e-38, np.float32))
    assert not _bounded(np.dtype(np.float32), mean, np.ones((2, 1, 1), np.float32))
    assert not _bounded(np.dtype(np.uint8), np.full((2, 1, 1), np.nan, np.float32), mean + 1)
