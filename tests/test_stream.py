"""Streaming samples from the Hub's shards (``data.source=hub``, issue 26), against
``m3leo serve`` of a synthetic full edition: exact shares over workers and ranks, the same
tensors as the store, reproducible per-epoch order, resume mid-epoch, the cache, faults."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from clirun import run  # noqa: E402

from m3leo_cli.cli import main  # noqa: E402
from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.errors import M3leoError, StreamError, TrainConfigError  # noqa: E402
from m3leo_cli.selection import Selection  # noqa: E402
from m3leo_cli.server import HubServer  # noqa: E402
from m3leo_cli.server.faults import Faults  # noqa: E402
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source  # noqa: E402
from m3leo_cli.train.dataset import StoreDataset  # noqa: E402
from m3leo_cli.train.layers import DataSpec, data_spec  # noqa: E402
from m3leo_cli.train.streamed import M3LEOStream, StreamLoader  # noqa: E402
from m3leo_cli.train.threads import collate  # noqa: E402

REGIONS = ("europe", "conus")
CLASSES = [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(regions=REGIONS, editions=("full",), tiles=10, chip_px=32,
                      native_shape=(6, 8), datakinds=("s1grd-2020", "esaworldcover-2020"),
                      tiles_per_shard=4, rows_per_row_group=2)  # fmt: skip
    return write_source(tmp_path_factory.mktemp("stream-src"), cfg)


@pytest.fixture
def hub(source: SourceInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer(source.root, keep_log=True) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        yield srv


def spec(normalize: bool = False) -> DataSpec:
    return data_spec({
        "edition": "full", "regions": list(REGIONS), "size": 32, "normalize": normalize,
        "inputs": [{"modality": "s1grd", "bands": None}],
        "target": {"modality": "esaworldcover", "band": "map", "classes": CLASSES},
    })  # fmt: skip


def fetched(srv: HubServer) -> list[str]:
    """Shard bytes asked for (range GETs of .parquet files), as the server logged them."""
    return [r.path for r in srv.log if r.method == "GET" and r.range and ".parquet" in r.path]


def store_samples(tmp_path: Path, data: DataSpec, split: str) -> dict[str, dict]:
    """The same split read by the store dataset, from a downloaded copy of the same tiles."""
    other = tmp_path / "store"
    os.environ["M3LEO_DATA_DIR"] = str(other)
    try:
        sel = ["--edition", "full", *[a for r in REGIONS for a in ("--region", r)]]
        assert main(["download", *sel, "-m", "s1grd", "-m", "esaworldcover"]) == 0
        ds = StoreDataset(data, split)
        return {s["tile_id"]: s for s in (ds[i] for i in range(len(ds)))}
    finally:
        os.environ["M3LEO_DATA_DIR"] = str(tmp_path / "data")


def test_two_workers_times_two_ranks_see_every_tile_once_with_the_store_s_tensors(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    data = spec()
    seen: Counter[str] = Counter()
    got: dict[str, dict] = {}
    lengths = []
    for rank in range(2):
        ds = M3LEOStream(data, "train", seed=3, rank=rank, world_size=2)
        lengths.append(len(ds))
        loader = StreamLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
        for batch in loader:
            for k, tile in enumerate(batch["tile_id"]):
                seen[tile] += 1
                got[tile] = {"image": batch["image"][k], "mask": batch["mask"][k]}
    everyone = set(ds.tile_ids)
    assert len(everyone) == 12 and set(seen) == everyone  # two regions' train split
    assert set(seen.values()) == {1}  # exactly once across 2 ranks x 2 workers
    assert lengths == [6, 6]
    want = store_samples(tmp_path, data, "train")
    for tile, sample in got.items():
        assert torch.equal(sample["image"], want[tile]["image"]), tile
        assert torch.equal(sample["mask"], want[tile]["mask"]), tile


def test_order_differs_per_epoch_reproducibly_and_epoch_two_fetches_nothing(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    ds = M3LEOStream(spec(), "train", seed=5)
    loader = StreamLoader(ds, batch_size=1, num_workers=0, collate_fn=collate)
    hub.clear_log()
    first = [b["tile_id"][0] for b in loader]
    assert fetched(hub), "epoch 1 streams from the Hub"
    hub.clear_log()
    second = [b["tile_id"][0] for b in loader]
    assert fetched(hub) == [] and hub.log == []  # epoch 2: the cache, nothing asked
    assert sorted(first) == sorted(second) and first != second
    again = M3LEOStream(spec(), "train", seed=5)  # a new process's view of the same seed
    loader2 = StreamLoader(again, batch_size=1, num_workers=0, collate_fn=collate)
    assert [b["tile_id"][0] for b in loader2] == first
    assert [b["tile_id"][0] for b in loader2] == second


def test_resume_mid_epoch_yields_exactly_the_remaining_samples(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    ds = M3LEOStream(spec(), "train", seed=9)
    loader = StreamLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    full = [t for b in loader for t in b["tile_id"]]  # epoch 0, whole
    it = iter(loader)  # epoch 1
    head = [t for _ in range(3) for t in next(it)["tile_id"]]
    state = loader.state_dict()
    del it
    assert state["epoch"] == 1 and sum(state["consumed"].values()) == len(head)
    fresh = StreamLoader(
        M3LEOStream(spec(), "train", seed=9), batch_size=2, num_workers=2, collate_fn=collate
    )
    fresh.load_state_dict(state)
    rest = [t for b in fresh for t in b["tile_id"]]
    assert sorted(head + rest) == sorted(full) and not set(head) & set(rest)
    whole = StreamLoader(
        M3LEOStream(spec(), "train", seed=9), batch_size=2, num_workers=2, collate_fn=collate
    )
    whole.load_state_dict({**state, "consumed": {}})
    epoch1 = [t for b in whole for t in b["tile_id"]]
    assert Counter(head + rest) == Counter(epoch1)
    bad = StreamLoader(
        M3LEOStream(spec(), "train", seed=9), batch_size=2, num_workers=1, collate_fn=collate
    )
    with pytest.raises(StreamError, match="workers"):
        bad.load_state_dict(state)


def test_a_small_cache_evicts_old_row_groups_and_still_streams_everything(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    probe = M3LEOStream(spec(), "train", cache_dir=tmp_path / "c1")
    largest = max(probe.stream_plan.group_bytes.values())
    budget = 6 * largest
    ds = M3LEOStream(
        spec(), "train", cache_dir=tmp_path / "c2", cache_bytes=budget, prefetch_bytes=largest
    )
    tiles = [s["tile_id"] for s in ds]
    assert sorted(tiles) == sorted(ds.tile_ids)
    assert ds.cache.index.total() <= budget
    assert ds.stream_plan.total_bytes > budget  # the selection did not fit: entries went


def test_a_cache_that_cannot_hold_the_working_set_is_refused_with_the_sizes(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(StreamError) as exc:
        M3LEOStream(spec(), "train", cache_bytes=1000)
    assert "needs at least" in exc.value.message and "the budget is" in exc.value.message
    assert "data.cache_dir=" in exc.value.hint


def test_a_corrupt_range_is_fetched_again_and_a_lasting_one_is_counted(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    ds = M3LEOStream(spec(), "val", shuffle=False)  # the plan (and first row group) first
    shutil.rmtree(ds.cache.root)
    ds.cache = type(ds.cache)(ds.cache.root, ds.cache.budget)
    hub.faults = Faults(corrupt_first=1)
    tiles = [s["tile_id"] for s in ds]
    assert sorted(tiles) == sorted(ds.tile_ids) and ds.failures == []
    shutil.rmtree(ds.cache.root)
    ds.cache = type(ds.cache)(ds.cache.root, ds.cache.budget)
    hub.faults = Faults(corrupt_first=1000)
    ds.failures_path = tmp_path / "failures.jsonl"
    tiles = [s["tile_id"] for s in ds]
    assert tiles == [] and len(ds.failures) == len(ds.tile_ids)
    assert "row group" in ds.failures[0][1]
    assert len(ds.failures_path.read_text().splitlines()) == len(ds.tile_ids)


def test_dropped_connections_resume_by_range(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    hub.faults = Faults(cut_after_bytes=300, cut_first=1)
    ds = M3LEOStream(spec(), "train")
    tiles = [s["tile_id"] for s in ds]
    assert sorted(tiles) == sorted(ds.tile_ids) and ds.failures == []


def test_a_repo_that_moved_on_is_refused_unless_the_revision_is_pinned(
    hub, source, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    M3LEOStream(spec(), "val")  # the manifest is cached at the current commit
    repo = next(p for p in source.root.rglob("*") if p.is_dir() and p.name.endswith("europe"))
    old = hub.commit(f"M3LEO/{repo.name}")
    (repo / "NOTES.md").write_text("a new commit\n")
    try:
        with pytest.raises(StreamError, match="may have changed") as exc:
            M3LEOStream(spec(), "val")
        assert "M3LEO_REVISION=main" in exc.value.hint and old[:12] in exc.value.message
        monkeypatch.setenv("M3LEO_REVISION", "main")
        ds = M3LEOStream(spec(), "val")
        assert {g.commit for g in ds.stream_plan.groups if g.region == "europe"} == {old}
    finally:
        (repo / "NOTES.md").unlink()


def test_miniset_and_offline_without_cache_are_refused(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(TrainConfigError) as bad:
        M3LEOStream(data_spec({**_cfg(), "edition": "miniset"}), "train")
    assert "data.source=store" in bad.value.hint
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(M3leoError) as exc:
        M3LEOStream(spec(), "train")
    from m3leo_cli.mirror.download import download

    with pytest.raises(M3leoError) as same:
        download(load_settings(), Selection(edition="full", regions=REGIONS))
    assert type(exc.value) is type(same.value) and exc.value.message == same.value.message
    assert "offline" in exc.value.message


def _cfg() -> dict:
    return {
        "regions": list(REGIONS), "size": 32, "normalize": False,
        "inputs": [{"modality": "s1grd", "bands": None}],
        "target": {"modality": "esaworldcover", "band": "map", "classes": CLASSES},
    }  # fmt: skip


def test_train_streams_an_epoch_and_epoch_two_fetches_nothing(
    capsys, hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    args = ["train", "experiment=esawc/s1grd", "data.source=hub", "data.edition=full",
            "data.regions=[europe,conus]", "data.size=32", "model.depth=2",
            "model.base_channels=4", "loader.batch_size=4", "trainer.max_epochs=1",
            "hydra.run.dir=run1"]  # fmt: skip
    res = run(capsys, *args)
    assert res.code == 0, res.err
    assert (tmp_path / "run1" / "run.json").is_file()
    assert "band statistics of s1grd-2020: computed" in res.err
    hub.clear_log()
    res = run(capsys, *args[:-2], "trainer.max_epochs=2", "hydra.run.dir=run2")
    assert res.code == 0, res.err
    assert fetched(hub) == []  # every row group came from the cache


def test_train_refuses_hub_source_on_the_miniset(capsys, hub, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = run(capsys, "train", "experiment=esawc/s1grd", "data.source=hub")
    assert res.code == 2
    assert "Error: data.source=hub streams the full edition" in res.err
    assert "hint: add data.edition=full, or read downloaded tiles with data.source=store" in (
        res.err
    )


def test_lightning_resumes_mid_epoch_from_a_checkpoint_with_exactly_the_rest(
    hub, tmp_path, monkeypatch
) -> None:
    """Lightning saves the StreamLoader's state in its checkpoints and restores it: a run
    resumed from a mid-epoch checkpoint trains on exactly the samples that epoch had left."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from m3leo_cli.train.datamodule import M3leoDataModule
    from m3leo_cli.train.run import quiet_lightning
    from m3leo_cli.train.tasks import M3leoTask

    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    seen: list[list[str]] = []

    class Recording(M3leoTask):
        def training_step(self, batch, i):  # type: ignore[no-untyped-def]
            seen.append(list(batch["tile_id"]))
            return super().training_step(batch, i)

    def fit(ckpt: Path | None, callbacks: list) -> None:
        dm = M3leoDataModule(spec(), batch_size=2, num_workers=2, source="hub", seed=1)
        model = Recording(16, "classification", len(CLASSES), 4, 2, 1e-3, 0.0, 1.0, "m3leo")
        with quiet_lightning():  # Lightning's own deprecation chatter, as m3leo train does
            trainer = L.Trainer(max_epochs=2, limit_val_batches=0, callbacks=callbacks,
                                enable_checkpointing=bool(callbacks), logger=False,
                                default_root_dir=tmp_path, enable_progress_bar=False,
                                enable_model_summary=False)  # fmt: skip
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt)

    fit(None, [ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=2, save_top_k=-1)])
    whole = seen[:]
    assert len(whole) == 12  # 2 epochs x 12 samples / batch 2
    seen.clear()
    fit(tmp_path / "ck" / "epoch=1-step=8.ckpt", [])  # 2 of epoch 1's 6 batches done
    done, rest = whole[6:8], seen
    flat = [t for b in done + rest for t in b]
    assert sorted(flat) == sorted(t for b in whole[6:] for t in b) and len(set(flat)) == 12


def test_tiles_already_in_the_store_are_read_there_never_fetched(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    assert main(["download", "--edition", "full", "--region", "europe", "-m", "s1grd", "-q"]) == 0
    hub.clear_log()
    ds = M3LEOStream(spec(), "train")
    tiles = [s["tile_id"] for s in ds]
    assert sorted(tiles) == sorted(ds.tile_ids)
    plan = ds.stream_plan
    assert plan.local and {r for r, _ in plan.local} == {"europe"}
    assert all("s1grd" in p for _, p in plan.local)
    assert not any(g.region == "europe" and "s1grd" in g.shard for g in plan.groups)
    assert not any("europe" in p and "s1grd" in p for p in fetched(hub))
    store = tmp_path / "data" / "full" / "europe"
    europe = next(s for s in ds.inner.plan.samples if s.region == "europe")
    assert europe.files["s1grd-2020"].path.is_relative_to(store)  # read from the store


def test_a_fetched_row_group_keeps_every_row_for_other_splits_and_selections(
    hub, tmp_path, monkeypatch
) -> None:
    """Spark's row groups may mix splits: every row of a fetched group goes into the cache, so
    a val pass (or another selection) in the same shards reads it locally."""
    from m3leo_cli.full.index import load_index

    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    train = M3LEOStream(spec(), "train")
    list(train)
    index_dir = tmp_path / "data" / ".m3leo" / "shard-index"
    for g in train.stream_plan.groups:
        rows = load_index(index_dir, g.sha256).rows[g.rg]  # type: ignore[union-attr]
        held = set(train.cache.listed(g))
        assert held == {r.split("/", 1)[1] for r in rows}, g.label
        assert set(train.stream_plan.groups[g].values()) <= held


def test_ranks_get_equal_shares_padded_like_distributed_sampler() -> None:
    """Under DDP every rank takes the same number of steps: 13 samples over 2 ranks x 2
    workers give 7 per rank, every sample at least once, one read twice; 1 rank: exact."""
    from m3leo_cli.stream.order import components, rank_samples, share_order

    comps = components([[k // 3] for k in range(13)])  # 3 samples a row group
    per_rank = []
    for rank in range(2):
        got = [i for w in range(2) for i in share_order(comps, seed=1, epoch=2, shuffle=True,
               buffer=4, rank=rank, world=2, worker=w, workers=2)]  # fmt: skip
        per_rank.append(got)
        assert len(got) == rank_samples(13, rank, 2) == 7
    both = per_rank[0] + per_rank[1]
    assert set(both) == set(range(13)) and len(both) == 14
    single = [i for w in range(2) for i in share_order(comps, seed=1, epoch=2, shuffle=True,
              buffer=4, rank=0, world=1, worker=w, workers=2)]  # fmt: skip
    assert sorted(single) == list(range(13))


def test_samples_skipped_in_workers_are_counted_and_the_loader_warns(
    hub, tmp_path, monkeypatch
) -> None:
    """A worker process's skipped samples reach the user: the loader warns after the epoch
    and the failures file lists each with its reason."""
    monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "data"))
    ds = M3LEOStream(spec(), "val", shuffle=False)
    shutil.rmtree(ds.cache.root)
    ds.cache = type(ds.cache)(ds.cache.root, ds.cache.budget)
    hub.faults = Faults(corrupt_first=1000)
    loader = StreamLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    with pytest.warns(RuntimeWarning, match=f"{len(ds.tile_ids)} samples of the val split"):
        assert list(loader) == []
    assert ds.skipped() == len(ds.tile_ids)
