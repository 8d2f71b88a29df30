"""Adaptive concurrency: the climb on a clock the test drives, then real downloads from a server
that answers slowly (latency-bound: the limit climbs) with the limit fixed or free."""

from __future__ import annotations

import hashlib

import pytest
from dl_helpers import REGION, expected_files, serve, settings_for, source

from m3leo_cli.fetch.concurrency import WINDOW_S, Concurrency
from m3leo_cli.fetch.runner import run_jobs
from m3leo_cli.fetch.transfer import FileJob
from m3leo_cli.hub.client import HubClient
from m3leo_cli.server import Faults


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(
    gate: Concurrency, clock: Clock, at: dict[int, tuple[float, float]], files: int
) -> list[int]:
    """Complete ``files`` transfers; at limit L, ``at[L]`` = (files per second, share of each
    transfer's time spent waiting for answers). Each takes L / rate seconds (Little's law).
    Returns the limit after each completion."""
    seen = []
    for _ in range(files):
        rate, waiting = at[gate.limit]
        clock.now += 1.0 / rate
        took = gate.limit / rate
        gate._active += 1  # the transfer that ends now (acquired without threads)
        gate.release(waiting * took, took)
        seen.append(gate.limit)
    return seen


def test_a_latency_bound_run_doubles_while_its_transfers_wait():
    clock = Clock()
    gate = Concurrency(4, 64, clock=clock)
    at = {4: (40.0, 0.95), 8: (80.0, 0.9), 16: (160.0, 0.8), 32: (300.0, 0.5)}
    seen = _drive(gate, clock, at, 3000)
    assert [n for n in (4, 8, 16, 32) if n in seen] == [4, 8, 16, 32]
    assert gate.limit == 32 and gate._settled  # at 32 they wait half the time: enough


def test_a_cpu_bound_run_keeps_its_start():
    clock = Clock()
    gate = Concurrency(16, 64, clock=clock)
    assert set(_drive(gate, clock, {16: (900.0, 0.3)}, 3000)) == {16}
    assert gate._settled


def test_the_climb_stops_at_most():
    clock = Clock()
    gate = Concurrency(16, 40, clock=clock)
    at = {16: (100.0, 0.95), 32: (200.0, 0.95), 40: (250.0, 0.95)}
    assert max(_drive(gate, clock, at, 3000)) == 40 and gate.limit == 40


def test_a_fixed_limit_never_moves():
    clock = Clock()
    gate = Concurrency(16, clock=clock)
    assert not gate.adaptive
    assert set(_drive(gate, clock, {16: (10.0, 0.99)}, 200)) == {16}


def test_windows_are_long_enough_to_measure():
    clock = Clock()
    gate = Concurrency(2, 8, clock=clock)
    seen = _drive(gate, clock, {2: (1000.0, 0.9), 4: (2000.0, 0.9), 8: (4000.0, 0.9)}, 3000)
    # at 1,000 files/s a window needs WINDOW_S seconds, not 2 x limit files
    assert seen.index(4) + 1 >= 2 + WINDOW_S * 1000  # warm-up completions, then a window


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


def _jobs(info, srv, tmp_path, copies: int) -> list[FileJob]:  # type: ignore[no-untyped-def]
    with HubClient(settings_for(srv, tmp_path)) as client:
        repo = f"M3LEO-miniset/{REGION}"
        commit = client.revision(repo)
        files = {p: b for p, b in expected_files(info, "gssic").items() if p.endswith(".nc")}
        jobs = []
        for k in range(copies):
            for rel, data in files.items():
                url = client.resolve_url(repo, commit, rel)
                dest = tmp_path / f"c{k}" / rel
                jobs.append(
                    FileJob(url, dest, len(data), "sha256", hashlib.sha256(data).digest(), rel)
                )
        return jobs


def test_against_a_slow_server_the_transfers_at_once_climb(info, tmp_path):
    with serve(info, Faults(latency_ms=40)) as srv:
        jobs = _jobs(info, srv, tmp_path, 30)
        with HubClient(settings_for(srv, tmp_path)) as client:
            free = run_jobs(client, jobs, workers=2, most=16)
        fixed_dir = tmp_path / "fixed"
        fixed_jobs = [
            FileJob(
                j.url,
                fixed_dir / j.dest.relative_to(tmp_path),
                j.size,
                j.checksum_kind,
                j.checksum,
                j.label,
            )  # fmt: skip
            for j in jobs[:40]
        ]
        with HubClient(settings_for(srv, tmp_path)) as client:
            fixed = run_jobs(client, fixed_jobs, workers=2)
    assert free.downloaded == len(jobs) and free.failed == 0
    assert free.concurrency >= 4  # the 40 ms round trips made more transfers pay
    assert fixed.downloaded == 40 and fixed.concurrency == 2


def test_many_batches_in_flight_never_lose_or_double_a_file(info, tmp_path, monkeypatch):
    """180 files in batches of 4 (two batch threads, links two batches ahead), a third of them
    already in place: every file ends verified, each missing one is fetched once, from a
    batch's link, and files in place are never asked for."""
    from m3leo_cli.fetch import ahead

    monkeypatch.setattr(ahead, "BATCH", 4)
    with serve(info) as srv:
        jobs = _jobs(info, srv, tmp_path, 30)
        present = jobs[::3]
        for j in present:
            j.dest.parent.mkdir(parents=True, exist_ok=True)
            j.dest.write_bytes(expected_files(info, "gssic")[j.label])
        srv.clear_log()
        with HubClient(settings_for(srv, tmp_path)) as client:
            s = run_jobs(client, jobs, workers=8, most=8)
        log = list(srv.log)
    fetched = len(jobs) - len(present)
    assert (s.downloaded, s.skipped, s.failed) == (fetched, len(present), 0)
    contents = [r for r in log if r.origin == "content"]
    assert len(contents) == fetched and not [r for r in log if "/resolve/" in r.path]
    batches = [r for r in log if r.path.endswith("/info/lfs/objects/batch")]
    assert len(batches) >= -(-fetched // 4)  # a batch holds at most 4 files still missing
