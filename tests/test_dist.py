"""The Dask engine on a real 2-worker LocalCluster (processes, loopback): the same bytes and
the same numbers as the local engine, progress from workers, and the bad-input paths."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra: pip install -e '.[dask]'")

from clirun import run as run_cli  # noqa: E402

from m3leo_cli.config import Settings, load_settings  # noqa: E402
from m3leo_cli.dist.engine import open_engine  # noqa: E402
from m3leo_cli.export import ExportOptions  # noqa: E402
from m3leo_cli.progress import ProgressCallback, ProgressEvent  # noqa: E402
from m3leo_cli.selection import build_selection  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        yield lc.scheduler_address


from export_source import FAST_LAYERS, plan_for, shared_source, tree_bytes  # noqa: E402


@contextmanager
def killable_cluster() -> Iterator[tuple[str, ProgressCallback, threading.Event]]:
    """A 2-worker LocalCluster of its own, and a progress callback that SIGKILLs one worker
    process at the first file finished (the event says it happened)."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc) as c,
    ):
        pids = list(c.run(os.getpid).values())
        killed = threading.Event()

        def progress(event: ProgressEvent) -> None:
            if event.kind == "advance" and event.files and not killed.is_set():
                killed.set()
                os.kill(pids[0], signal.SIGKILL)

        yield lc.scheduler_address, progress, killed


from m3leo_cli.export import run_export  # noqa: E402
from m3leo_cli.tiles.bandstats import compute_band_stats  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


def _settings(tmp_path: Path, scheduler: str, **kw: object) -> Settings:
    return load_settings(
        {"data_dir": tmp_path / "data", "engine": "dask", "scheduler": scheduler, **kw}
    )


def _opts(fmt: str, out: Path, **kw: object) -> ExportOptions:
    return ExportOptions(format=fmt, out=out, shard_size=2, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["npz", "webdataset", "parquet", "geotiff"])
def test_export_on_two_workers_writes_the_local_bytes(
    source, cluster: str, tmp_path: Path, fmt: str
) -> None:
    plan = plan_for(source, FAST_LAYERS)
    local = run_export(plan, _opts(fmt, tmp_path / "local"))
    events: list[ProgressEvent] = []
    with open_engine(_settings(tmp_path, cluster), progress=events.append) as pool:
        assert pool is not None and pool.workers == 2
        remote = run_export(plan, _opts(fmt, tmp_path / "dask"), pool=pool, progress=events.append)
    assert remote.complete and remote.units_written == local.units_written > 1
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    advanced = sum(e.files for e in events if e.kind == "advance")
    assert advanced == len(plan.samples)


def test_band_statistics_on_two_workers_are_identical(source, cluster: str, tmp_path) -> None:
    repo = source.repo("miniset", "europe")
    files = [(dk, repo.root / fi.path) for (dk, _), fi in sorted(repo.tile_files.items())]
    local = compute_band_stats(files, executor="serial", batch_size=3)
    with open_engine(_settings(tmp_path, cluster)) as pool:
        remote = compute_band_stats(files, batch_size=3, pool=pool)
    assert [b.as_dict() for b in remote] == [b.as_dict() for b in local]


def test_a_worker_killed_mid_export_and_a_rerun_leave_the_local_bytes(
    source, tmp_path: Path
) -> None:
    """A worker process dies while units are running: Dask reruns its task elsewhere; an
    interrupted client re-run redoes only unfinished units; output equals the local engine's."""
    plan = plan_for(source, FAST_LAYERS)
    local = run_export(plan, ExportOptions(format="npz", out=tmp_path / "local", shard_size=1))
    with killable_cluster() as (address, progress, killed):
        out = tmp_path / "dask"
        with open_engine(_settings(tmp_path, address)) as pool:
            first = run_export(
                plan, ExportOptions(format="npz", out=out, shard_size=1), pool=pool,
                progress=progress,
            )  # fmt: skip
        assert killed.is_set() and first.complete
        assert tree_bytes(out) == tree_bytes(tmp_path / "local")
        with open_engine(_settings(tmp_path, address)) as pool:
            again = run_export(plan, ExportOptions(format="npz", out=out, shard_size=1), pool=pool)
    assert again.units_written == 0 and again.units_skipped == local.units_written
    assert not list(out.rglob("*.part"))


def test_unreachable_scheduler_is_one_error_with_a_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M3LEO_TIMEOUT", "2")
    r = run_cli(capsys, "stats", "--bands", "--edition", "miniset", "--engine", "dask",
                "--scheduler", "tcp://127.0.0.1:9")  # fmt: skip
    assert r.code == 1
    assert r.err.startswith("Error: cannot start the Dask engine on tcp://127.0.0.1:9")
    assert "hint: check --scheduler" in r.err and "--engine local" in r.err


def test_unknown_engine_and_engine_without_bands_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = run_cli(capsys, "stats", "--bands", "--edition", "miniset", "--engine", "spark")
    assert r.code == 2 and "unknown engine 'spark'" in r.err and "--engine dask" in r.err
    r = run_cli(capsys, "stats", "--edition", "miniset", "--engine", "dask")
    assert r.code == 2 and "add --bands" in r.err


def _tree(root: Path) -> dict[str, bytes]:
    """Every store file except run state that names times or hosts (locks, reports, logs, the
    integrity record of each file's mtime)."""
    skip = ("reports", "integrity")
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(s in p.parts for s in skip) and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize("fetch", ["whole", "ranges"])
def test_full_edition_download_and_unpack_on_two_workers(
    cluster: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, fetch: str
) -> None:
    from m3leo_cli.mirror.download import download
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(regions=("europe",), editions=("full",), tiles=12,
                      datakinds=("s1grd-2020", "gssic"), tiles_per_shard=4,
                      rows_per_row_group=1)  # fmt: skip
    src = write_source(tmp_path_factory.mktemp("full-src"), cfg)
    sel = build_selection(edition="full", regions=["europe"], modalities=["s1grd-2020", "gssic"])
    with HubServer(src.root) as hub:
        here = load_settings({"data_dir": tmp_path / "local", "endpoint": hub.url})
        seen: list[ProgressEvent] = []
        local = download(here, sel, workers=2, fetch=fetch, progress=seen.append)
        there = load_settings(
            {
                "data_dir": tmp_path / "dask",
                "endpoint": hub.url,
                "engine": "dask",
                "scheduler": cluster,
            }  # fmt: skip
        )
        events: list[ProgressEvent] = []
        with open_engine(there, progress=events.append) as pool:
            remote = download(there, sel, workers=2, fetch=fetch, pool=pool)
        again = download(there, sel, workers=2, fetch=fetch)  # a re-run redoes nothing
    assert local.failed == remote.failed == 0  # type: ignore[union-attr]
    assert remote.downloaded == local.downloaded > 0  # type: ignore[union-attr]
    assert again.downloaded == 0  # type: ignore[union-attr]
    files_local = {k: v for k, v in _tree(tmp_path / "local").items() if k.startswith("full/")}
    files_dask = {k: v for k, v in _tree(tmp_path / "dask").items() if k.startswith("full/")}
    assert files_dask == files_local
    # worker progress arrived on the client while shards were unpacked there
    unpacked = sum(e.files for e in seen if e.kind == "advance" and e.phase == "download")
    assert unpacked > 0
    assert sum(e.files for e in events if e.kind == "advance") == unpacked


def test_dask_engine_on_a_miniset_download_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], cluster: str
) -> None:
    r = run_cli(capsys, "download", "--edition", "miniset", "--region", "europe",
                "--engine", "dask", "--scheduler", cluster)  # fmt: skip
    assert r.code == 2 and "full edition" in r.err


def test_unpack_on_two_workers_as_typed(
    capsys: pytest.CaptureFixture[str],
    cluster: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`m3leo unpack --engine dask --scheduler ADDR` writes what the local engine writes."""
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(regions=("europe",), editions=("full",), tiles=8,
                      datakinds=("s1grd-2020",), chip_px=16, native_shape=(4, 5))  # fmt: skip
    src = write_source(tmp_path_factory.mktemp("unpack-src"), cfg)
    full = src.repo("full", "europe")
    shards = [str(full.root / p) for p in sorted(full.shards)]
    stores = {}
    variants = (
        ("local", []),
        ("dask", ["--engine", "dask", "--scheduler", cluster]),
        ("localcluster", ["--engine", "dask"]),  # no scheduler: m3leo starts a LocalCluster
    )
    for name, extra in variants:
        monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / name))
        r = run_cli(capsys, "unpack", *shards, "--json", *extra)
        assert r.code == 0, r.err
        assert json.loads(r.out)["files"] == len(full.coverage["s1grd-2020"])
        stores[name] = _tree(tmp_path / name)
    assert stores["dask"] == stores["local"] == stores["localcluster"]


def test_a_worker_killed_mid_download_leaves_verified_files(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """SIGKILL one worker while shards are unpacked there: Dask reruns its tasks elsewhere and
    every file in the store is the published one (recorded sha256 matches); a re-run has
    nothing left to do."""
    from m3leo_cli.full.unpacked import recorded_checksums
    from m3leo_cli.mirror.download import download
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(regions=("europe",), editions=("full",), tiles=16,
                      datakinds=("s1grd-2020",), tiles_per_shard=2)  # fmt: skip
    src = write_source(tmp_path_factory.mktemp("kill-src"), cfg)
    sel = build_selection(edition="full", regions=["europe"], modalities=["s1grd-2020"])
    with HubServer(src.root) as hub, killable_cluster() as (address, progress, killed):
        settings = load_settings({"data_dir": tmp_path / "data", "endpoint": hub.url,
                                  "engine": "dask", "scheduler": address})  # fmt: skip
        with open_engine(settings, progress=progress) as pool:
            first = download(settings, sel, workers=2, fetch="whole", pool=pool)
        again = download(settings, sel, workers=2, fetch="whole")
    assert killed.is_set()
    assert first.failed == 0 and again.downloaded == 0  # type: ignore[union-attr]
    full = src.repo("full", "europe")
    recorded = recorded_checksums(settings, "full", "europe")
    for tile in full.coverage["s1grd-2020"]:
        rel = full.tile_path("s1grd-2020", tile)
        data = (tmp_path / "data" / "full" / "europe" / rel).read_bytes()
        assert recorded[rel] == (len(data), hashlib.sha256(data).hexdigest())
    assert not list((tmp_path / "data").rglob("*.part"))
