"""Loader threads (issue 28 item 6): the dataset holds BLAS / OpenMP to one thread while it
assembles samples, in DataLoader workers and in the main process, without any environment
variable; the main process gets its own pool back afterwards (the model keeps its threads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")
threadpoolctl = pytest.importorskip("threadpoolctl", reason="part of the train extra")


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


def _threads(sample: dict) -> dict:
    info = threadpoolctl.threadpool_info()
    sample["blas"] = torch.tensor(max(i["num_threads"] for i in info if i["user_api"] == "blas"))
    omp = [i["num_threads"] for i in info if i["user_api"] == "openmp"]
    sample["openmp"] = torch.tensor(max(omp) if omp else 1)
    return sample


def _dataset():
    from m3leo_cli.config import load_settings
    from m3leo_cli.train.dataset import StoreDataset
    from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec

    spec = DataSpec((InputSpec("s1grd-2020", ("winter_vvasc",)),),
                    TargetSpec("biomass-2020", "agb", "regression"), 16, normalize=False,
                    regions=("europe",))  # fmt: skip
    return StoreDataset(spec, "train", load_settings(), transforms=_threads)


def test_main_process_holds_blas_to_one_thread_while_assembling(store) -> None:
    import numpy  # noqa: F401  (its BLAS is the one resampling uses)

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        ds = _dataset()
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)))
        assert batch["blas"].tolist() == [1, 1]
        after = threadpoolctl.threadpool_info()
        assert max(i["num_threads"] for i in after if i["user_api"] == "blas") == 2


def test_workers_hold_blas_and_openmp_to_one_thread(store) -> None:
    ds = _dataset()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["blas"].tolist() == [1, 1] and batch["openmp"].tolist() == [1, 1]


def test_collate_stacks_on_one_torch_thread_and_restores_it() -> None:
    from m3leo_cli.train.threads import collate

    before = torch.get_num_threads()
    batch = [{"image": torch.full((2, 4, 4), float(i)), "tile_id": str(i)} for i in range(3)]
    out = collate(batch)
    want = torch.utils.data.default_collate(batch)
    assert torch.equal(out["image"], want["image"]) and out["tile_id"] == ["0", "1", "2"]
    assert torch.get_num_threads() == before


_LATE_BLAS = """
import json, sys
import numpy, threadpoolctl, torch
sys.path.insert(0, {tests!r})
import test_train_threads as t

ds = t._dataset()
first = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))  # limits set up here
import scipy.linalg  # a second BLAS, loaded after the first batch
before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
    later = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
print(json.dumps([first["blas"].tolist(), later["blas"].tolist(), len(before)]))
"""


def test_a_blas_loaded_after_the_first_batch_is_held_too(store) -> None:
    import subprocess
    import sys

    pytest.importorskip("scipy", reason="a second BLAS library to load late")
    script = _LATE_BLAS.format(tests=str(Path(__file__).parent))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    first, later, libraries = json.loads(res.stdout.strip().splitlines()[-1])
    assert libraries >= 2  # numpy's and scipy's BLAS: the case this test is about
    assert first == [1, 1] and later == [1, 1]
