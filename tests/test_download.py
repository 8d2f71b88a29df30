"""The download engine against the real loopback Hub server, with every fault issue 4 lists."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from dl_helpers import (
    PARTITION,
    expected_files,
    file_requests,
    local_files,
    serve,
    settings_for,
    sha256,
    source,
)

from m3leo_cli.catalog.refresh import ensure_manifest
from m3leo_cli.errors import DiskFullError, HubConnectionError, StoreLockedError
from m3leo_cli.fetch import ahead
from m3leo_cli.fetch.plan import DownloadPlan, build_jobs
from m3leo_cli.fetch.runner import DownloadSummary, run_jobs
from m3leo_cli.fetch.transfer import FileJob, part_path
from m3leo_cli.hub.client import HubClient
from m3leo_cli.hub.lfsbatch import MEDIA_TYPE as LFS_MEDIA
from m3leo_cli.mirror.download import download
from m3leo_cli.selection import build_selection
from m3leo_cli.server import Faults
from m3leo_cli.store.layout import Store
from m3leo_cli.store.lock import store_lock

SEL = build_selection(edition="miniset", regions=["europe"], modalities=["gssic"])


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


def _catalogued(srv, data_dir: Path, faults: Faults) -> None:  # type: ignore[no-untyped-def]
    """Build the manifest on a healthy server, then turn the faults on for the download."""
    ensure_manifest(settings_for(srv, data_dir), "miniset", ["europe"])
    srv.faults = faults
    srv.clear_log()


def _run(srv, data_dir: Path, **kw) -> DownloadSummary:  # type: ignore[no-untyped-def]
    res = download(settings_for(srv, data_dir), SEL, **kw)
    assert isinstance(res, DownloadSummary)
    return res


def test_download_gets_exactly_the_selection_and_a_rerun_transfers_nothing(info, tmp_path):
    want = expected_files(info, "gssic")
    with serve(info) as srv:
        s = _run(srv, tmp_path)
        assert (s.downloaded, s.failed) == (len(want), 0)
        assert local_files(tmp_path) == want  # every file, verified bytes, nothing else
        assert s.bytes == sum(len(b) for b in want.values())
        assert not any(p.name.endswith(".part") for p in tmp_path.rglob("*"))
        srv.clear_log()
        again = _run(srv, tmp_path)
    assert (again.downloaded, again.skipped, again.bytes) == (0, len(want), 0)
    assert file_requests(srv) == []
    # no HEAD per file, ever
    assert not any(r.method == "HEAD" for r in srv.log)


def test_workers_beyond_the_number_of_files_start_no_extra_threads(info, tmp_path):
    want = expected_files(info, "gssic")
    seen: list[int] = []

    def progress(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "advance":
            seen.append(sum(t.name.startswith("m3leo-dl-") for t in threading.enumerate()))

    with serve(info) as srv:
        s = _run(srv, tmp_path, workers=100_000, progress=progress)
        assert (s.downloaded, s.failed) == (len(want), 0)
        again = _run(srv, tmp_path, workers=100_000, progress=progress)
    assert again.skipped == len(want)
    assert seen and 0 < max(seen) <= len(want)  # one download thread per file at most


def test_dry_run_plans_without_fetching(info, tmp_path):
    with serve(info) as srv:
        st = settings_for(srv, tmp_path, requests_per_window=3)
        ensure_manifest(st, "miniset", ["europe"])
        srv.clear_log()
        plan = download(st, SEL, dry_run=True)
        per_file = download(st.with_overrides(lfs_batch=False), SEL, dry_run=True)
        assert isinstance(plan, DownloadPlan) and isinstance(per_file, DownloadPlan)
        assert srv.log == []
    want = expected_files(info, "gssic")
    lfs = sum(p.endswith((".tif", ".nc")) for p in want)
    assert plan.to_fetch_files == len(want) == plan.requests_per_file
    assert plan.requests == min(lfs, -(-lfs // 100) + 1) + len(want) - lfs  # by the hundred
    assert plan.to_fetch_bytes == sum(len(b) for b in want.values())
    # ceil(n / 3) windows of 300 s, the first one free
    assert plan.pacing_seconds == (-(-plan.requests // 3) - 1) * 300
    assert per_file.requests == len(want)  # the Hub without batches: one resolve per file
    assert per_file.pacing_seconds == (-(-len(want) // 3) - 1) * 300
    assert local_files(tmp_path) == {}


def test_503s_and_dropped_connections_are_retried_and_resumed(info, tmp_path):
    faults = Faults(error_first=1, cut_after_bytes=700, cut_first=1)
    with serve(info, faults) as srv:
        s = _run(srv, tmp_path)
        ranged = [r for r in file_requests(srv) if r.range]
    want = expected_files(info, "gssic")
    assert s.failed == 0 and local_files(tmp_path) == want
    assert ranged and all(r.range == "bytes=700-" for r in ranged)
    # a resume goes straight to the content link it already has: no resolver call spent on it
    assert s.ranged_requests == len([r for r in ranged if r.origin == "content"])
    assert not [r for r in ranged if r.origin == "hub"]


def test_429_waits_for_retry_after(info, tmp_path):
    with serve(info) as srv:
        _catalogued(srv, tmp_path, Faults(rate_limit_first=1, retry_after=1))
        t0 = time.monotonic()
        s = _run(srv, tmp_path, workers=4)
        took = time.monotonic() - t0
        statuses = [r.status for r in srv.log]
    assert s.failed == 0 and local_files(tmp_path) == expected_files(info, "gssic")
    assert 429 in statuses
    assert took >= 1.0  # Retry-After: 1 was honoured (never retried sooner)


def test_corrupt_bytes_are_detected_and_refetched(info, tmp_path):
    with serve(info) as srv:
        _catalogued(srv, tmp_path, Faults(corrupt_first=1))
        s = _run(srv, tmp_path)
    assert s.failed == 0 and local_files(tmp_path) == expected_files(info, "gssic")


def test_persistent_corruption_is_reported_and_the_rest_continue(info, tmp_path):
    with serve(info) as srv:
        _catalogued(srv, tmp_path, Faults(corrupt_first=99))
        s = _run(srv, tmp_path)
    want = expected_files(info, "gssic")
    assert s.failed == len(want) and s.downloaded == 0  # each failed; none stopped the others
    assert "differs from the manifest" in s.failures[0][1]
    assert s.report_path is not None and s.report_path.parent == tmp_path / ".m3leo" / "reports"
    assert len(s.report_path.read_text().splitlines()) == s.failed
    assert local_files(tmp_path) == {}  # nothing bad at a final path, no part left either


def test_extra_bytes_beyond_the_size_are_not_written(info, tmp_path):
    with serve(info, Faults(extra_bytes=5000)) as srv:
        s = _run(srv, tmp_path)
    assert s.failed == 0 and local_files(tmp_path) == expected_files(info, "gssic")


def test_a_200_instead_of_206_restarts_the_file(info, tmp_path):
    with serve(info, Faults(ignore_range=True, cut_after_bytes=500)) as srv:
        s = _run(srv, tmp_path)
        ranged = [r for r in file_requests(srv) if r.range]
    assert ranged  # we asked for a range, got a full 200, and started over
    assert s.failed == 0 and local_files(tmp_path) == expected_files(info, "gssic")


def test_full_size_part_is_committed_without_any_request(info, tmp_path):
    want = expected_files(info, "gssic")
    path, data = next((p, b) for p, b in want.items() if p.startswith(PARTITION))
    dest = tmp_path / "miniset" / "europe" / path
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(data)  # a previous run got every byte but died before rename
    too_long = next(p for p in want if p.startswith(PARTITION) and p != path)
    long_dest = tmp_path / "miniset" / "europe" / too_long
    part_path(long_dest).write_bytes(want[too_long] + b"junk")
    with serve(info) as srv:
        s = _run(srv, tmp_path)
        asked = {r.repo_path for r in file_requests(srv)}
    assert path not in asked  # verified locally: no empty range, no 416
    assert not any(r.status == 416 for r in srv.log)
    assert s.failed == 0 and local_files(tmp_path) == want


def test_hostile_manifest_path_is_refused_and_the_rest_continue(info, tmp_path):
    with serve(info) as srv:
        st = settings_for(srv, tmp_path)
        rows = [
            {
                "edition": "miniset",
                "region": "europe",
                "path": p,
                "size": 1,
                "checksum_kind": "sha256",
                "checksum": b"x" * 32,
                "commit": "0" * 40,
            }
            for p in ("../../escape.tif", "/etc/passwd", "a/../../b.tif")
        ]
        good = next(p for p in expected_files(info, "gssic") if p.startswith(PARTITION))
        data = expected_files(info, "gssic")[good]
        with HubClient(st) as client:
            commit = client.revision("M3LEO-miniset/europe")
        rows.append(
            {
                "edition": "miniset",
                "region": "europe",
                "path": good,
                "size": len(data),
                "checksum_kind": "sha256",
                "checksum": sha256(data),
                "commit": commit,
            }
        )
        jobs, refused = build_jobs(st, rows)
        assert [r[0].split("/", 2)[2] for r in refused] == [r["path"] for r in rows[:3]]
        assert all("escapes the store" in why for _, why in refused)
        with HubClient(st) as client:
            s = run_jobs(client, jobs, workers=2)
    assert s.downloaded == 1
    assert not (tmp_path.parent / "escape.tif").exists()


def test_hostile_listing_entries_never_reach_the_disk(info, tmp_path):
    hostile = ("../../../evil.tif", f"{PARTITION}/gssic/../../../../evil2.nc")
    with serve(info, Faults(hostile_paths=hostile)) as srv:
        s = _run(srv, tmp_path)
    assert s.failed == 0 and local_files(tmp_path) == expected_files(info, "gssic")
    assert not list(tmp_path.parent.rglob("evil*"))


def test_disk_full_is_a_clear_error_and_leaves_no_final_file(info, tmp_path):
    """A store on a small tmpfs, filled up to leave room for half the files: ENOSPC mid-run is
    one DiskFullError, and every file at a final path is whole (a real full file system: a
    link to /dev/full would be refused as a planted link, which is the point of O_NOFOLLOW)."""
    import shutil
    import subprocess

    want = expected_files(info, "gssic")
    store = tmp_path / "store"
    store.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(store)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        with serve(info) as srv:
            _run(srv, store, workers=1, check_space=False)  # the manifest, one full download
            tiles = sorted(p for p in local_files(store) if p.startswith(PARTITION))
            for rel in tiles:
                (store / "miniset" / "europe" / rel).unlink()
            room = sum(len(want[rel]) for rel in tiles) // 2
            free = shutil.disk_usage(store).free
            with (store / "filler").open("wb") as fh:
                fh.write(b"\0" * max(0, free - room))
            with pytest.raises(DiskFullError, match="disk full"):
                _run(srv, store, workers=1, check_space=False)  # as --no-space-check
        finals = {r: d for r, d in local_files(store).items() if not r.endswith(".part")}
        assert len(finals) < len(want)  # the disk did fill up
        for rel, data in finals.items():  # whatever reached a final path is whole
            assert data == want[rel]
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_no_network_names_hf_endpoint(info, tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    from m3leo_cli.config import load_settings

    st = load_settings({"endpoint": f"http://127.0.0.1:{port}", "data_dir": tmp_path,
                        "max_retries": 1}, env={})  # fmt: skip
    job = FileJob(f"http://127.0.0.1:{port}/x", tmp_path / "x", 3, "sha256", b"0" * 32)
    with HubClient(st) as client, pytest.raises(HubConnectionError) as exc:
        run_jobs(client, [job], workers=1)
    assert f"HF_ENDPOINT is http://127.0.0.1:{port}" in exc.value.message


def test_token_goes_to_the_hub_origin_only(info, tmp_path):
    with serve(info) as srv:
        s = _run(srv, tmp_path)
        assert s.failed == 0
        srv.clear_log()
        for p in (tmp_path / "miniset").rglob("*.nc"):
            p.unlink()
        download(settings_for(srv, tmp_path, token="hf_secret"), SEL)
        hub = [r for r in srv.log if r.origin == "hub"]
        content = [r for r in srv.log if r.origin == "content"]
    assert content and hub
    assert all(r.headers.get("authorization") == "Bearer hf_secret" for r in hub)
    assert not any("authorization" in r.headers for r in content)
    assert all(r.headers.get("user-agent", "").startswith("m3leo/") for r in srv.log)


def test_store_lock_refuses_a_second_writer_and_wait_waits(info, tmp_path):
    store = Store(tmp_path)
    with serve(info) as srv:
        with store_lock(store):
            with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
                _run(srv, tmp_path)
        release = threading.Event()
        held = threading.Event()

        def holder() -> None:
            with store_lock(store):
                held.set()
                release.wait(5)

        t = threading.Thread(target=holder)
        t.start()
        held.wait(5)
        waited: list[str] = []
        threading.Timer(0.3, release.set).start()
        s = download(
            settings_for(srv, tmp_path),
            SEL,
            wait=True,
            progress=lambda e: waited.append(e.message) if e.kind == "message" else None,
        )
        t.join()
    assert s.failed == 0  # type: ignore[union-attr]
    assert any("waiting for the lock" in m for m in waited)


def test_ctrl_c_keeps_parts_and_the_next_run_resumes(info, tmp_path):
    """KeyboardInterrupt while a worker waits to resume: its .part stays for the next run."""
    with serve(info, Faults(cut_after_bytes=600)) as srv:
        st = settings_for(srv, tmp_path)
        interrupted = threading.Event()

        def progress(event):  # type: ignore[no-untyped-def]
            if event.kind == "advance" and not interrupted.is_set():
                parts = list(tmp_path.rglob("*.part"))
                if any(p.stat().st_size == 600 for p in parts):
                    interrupted.set()
                    import _thread

                    _thread.interrupt_main()

        with pytest.raises(KeyboardInterrupt):
            download(st, SEL, workers=1, progress=progress)
            time.sleep(5)  # pragma: no cover - the interrupt lands before this
        parts = list(tmp_path.rglob("*.part"))
        assert parts
        srv.faults = Faults()
        srv.clear_log()
        s = download(st, SEL)
        assert any(r.range for r in file_requests(srv))
    assert s.failed == 0 and local_files(tmp_path) == expected_files(info, "gssic")  # type: ignore[union-attr]


def test_space_preflight_refuses_what_cannot_fit(tmp_path):
    from m3leo_cli.errors import InsufficientSpaceError
    from m3leo_cli.fetch.plan import check_space

    check_space(tmp_path / "not" / "yet", 1)  # probes the nearest existing parent
    with pytest.raises(InsufficientSpaceError, match="free on") as exc:
        check_space(tmp_path, 10**18)
    assert "--no-space-check" in exc.value.hint


def test_wrong_content_range_restarts_the_file(tmp_path):
    """A 206 for another offset must not be appended: the part restarts from zero."""
    import hashlib

    from m3leo_cli.config import load_settings
    from m3leo_cli.fetch.transfer import Transfer
    from tests.serverkit import tiny_server

    data = bytes(range(256)) * 40
    seen: list[str | None] = []

    def do_get(h) -> None:  # type: ignore[no-untyped-def]
        rng = h.headers.get("range")
        seen.append(rng)
        body = data[10:] if rng else data  # a Range always gets the wrong offset
        h.send_response(206 if rng else 200)
        if rng:
            h.send_header("Content-Range", f"bytes 10-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    with tiny_server(do_get) as url:
        st = load_settings({"endpoint": url, "data_dir": tmp_path}, env={})
        dest = tmp_path / "f.bin"
        part_path(dest).write_bytes(data[:1000])
        job = FileJob(f"{url}/f", dest, len(data), "sha256", hashlib.sha256(data).digest())
        with HubClient(st) as client:
            assert Transfer(client, job).run() == "downloaded"
    assert seen == ["bytes=1000-", None]
    assert dest.read_bytes() == data


def test_links_are_resolved_ahead_and_never_twice(info, tmp_path):
    """File by file (batches off): while 4 workers fetch, resolver threads ask the Hub for the
    next files' links: more than 4 resolves reach the Hub before the first content GET, and
    each file is resolved once."""
    want = expected_files(info, "gssic")
    with serve(info, Faults(latency_ms=100)) as srv:
        _catalogued(srv, tmp_path, Faults(latency_ms=100))
        srv.clear_log()
        s = download(settings_for(srv, tmp_path, lfs_batch=False), SEL, workers=4)
        log = file_requests(srv)
    assert s.failed == 0 and local_files(tmp_path) == want
    resolves = [r.repo_path for r in log if r.origin == "hub"]
    contents = [r.repo_path for r in log if r.origin == "content"]
    lfs = [p for p in resolves if p.endswith((".tif", ".nc"))]
    assert sorted(lfs) == sorted(set(lfs)) and sorted(contents) == sorted(set(contents))
    first_content = next(i for i, r in enumerate(log) if r.origin == "content")
    assert first_content > 4  # the workers' own resolves, and the resolvers' ahead of them


def _batches_and_resolves(srv, lfs: list[str]) -> tuple[list, list[str], list[str]]:  # type: ignore[no-untyped-def]
    log = list(srv.log)
    batches = [r for r in log if r.method == "POST" and r.path.endswith("/info/lfs/objects/batch")]
    resolves = [r.repo_path for r in log if "/resolve/" in r.path and r.repo_path in lfs]
    contents = [r.repo_path for r in log if r.origin == "content"]
    return batches, resolves, contents


def test_links_come_by_the_hundred_from_the_lfs_batch_api(info, tmp_path, monkeypatch):
    """Batches on (the default): the Hub gets one Git LFS batch POST per BATCH files and no
    resolve for any of them, and each file's bytes are fetched once, from the batch's link."""
    monkeypatch.setattr(ahead, "BATCH", 4)  # several batches from a small selection
    want = expected_files(info, "gssic")
    lfs = [p for p in want if p.endswith((".tif", ".nc"))]
    assert len(lfs) > 4
    with serve(info) as srv:
        _catalogued(srv, tmp_path, Faults())
        s = _run(srv, tmp_path, workers=4)
        batches, resolves, contents = _batches_and_resolves(srv, lfs)
    assert s.failed == 0 and local_files(tmp_path) == want
    assert resolves == [] and sorted(contents) == sorted(lfs)
    assert len(batches) == -(-len(lfs) // 4)
    assert all(b.status == 200 and b.headers["accept"] == LFS_MEDIA for b in batches)


def test_a_hub_without_the_batch_api_is_asked_once_then_file_by_file(info, tmp_path):
    want = expected_files(info, "gssic")
    lfs = [p for p in want if p.endswith((".tif", ".nc"))]
    with serve(info) as srv:
        _catalogued(srv, tmp_path, Faults(no_lfs_batch=True))
        s = _run(srv, tmp_path, workers=4)
        batches, resolves, contents = _batches_and_resolves(srv, lfs)
    assert s.failed == 0 and local_files(tmp_path) == want
    assert [b.status for b in batches] == [404]
    assert sorted(resolves) == sorted(lfs) and sorted(contents) == sorted(lfs)


def test_a_busy_batch_endpoint_is_asked_again_not_turned_into_resolves(info, tmp_path):
    """A 429 on a batch is waited out (Retry-After) and the batch asked again: the Hub is
    throttling, so its hundred files must not become a hundred resolves."""
    want = expected_files(info, "gssic")
    lfs = [p for p in want if p.endswith((".tif", ".nc"))]
    with serve(info) as srv:
        _catalogued(srv, tmp_path, Faults(lfs_batch_busy=1, retry_after=1))
        s = _run(srv, tmp_path, workers=4)
        batches, resolves, contents = _batches_and_resolves(srv, lfs)
    assert s.failed == 0 and local_files(tmp_path) == want
    assert [b.status for b in batches] == [429, 200]
    assert resolves == [] and sorted(contents) == sorted(lfs)
