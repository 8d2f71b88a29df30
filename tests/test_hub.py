"""The Hub client against the loopback server: pagination, errors, retries, pacing, offline."""

from __future__ import annotations

import hashlib
from email.utils import formatdate

import pytest
from dl_helpers import REGION, repo_dir, serve, settings_for, source

from m3leo_cli.config import load_settings
from m3leo_cli.errors import HubProtocolError, OfflineError, RemoteNotFoundError, ServerError
from m3leo_cli.hub.client import HubClient
from m3leo_cli.hub.pacing import Pacer, Retrier, retry_after_seconds
from m3leo_cli.server import Faults, HubServer

REPO = f"M3LEO-miniset/{REGION}"


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


def test_tree_follows_link_pagination_and_matches_the_folder(info, tmp_path):
    folder = repo_dir(info)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    with HubServer(info.root, page_size=7) as srv:
        with HubClient(settings_for(srv, tmp_path)) as c:
            commit = c.revision(REPO)
            entries = list(c.iter_tree(REPO, commit))
        pages = [r for r in srv.log if "/tree/" in r.path]
    files = {e.path: e for e in entries if e.type == "file"}
    assert set(files) == on_disk
    assert len(pages) > 2 and any("cursor=" in r.query for r in pages)
    tif = next(e for p, e in files.items() if p.endswith(".tif"))
    data = (folder / tif.path).read_bytes()
    assert tif.lfs_sha256 == hashlib.sha256(data).hexdigest() and tif.size == len(data)


def test_get_bytes_and_get_range(info, tmp_path):
    folder = repo_dir(info)
    path = next(p for p in folder.rglob("*.nc")).relative_to(folder).as_posix()
    data = (folder / path).read_bytes()
    with serve(info) as srv, HubClient(settings_for(srv, tmp_path)) as c:
        commit = c.revision(REPO)
        assert c.get_bytes(REPO, commit, path) == data
        url = c.resolve_url(REPO, commit, path)
        assert c.get_range(url, 10, 99) == data[10:100]
        srv.faults = Faults(ignore_range=True)  # a 200 still yields the right slice
        assert c.get_range(url, 10, 99) == data[10:100]


def test_errors_are_typed(info, tmp_path):
    with serve(info) as srv, HubClient(settings_for(srv, tmp_path, max_retries=1)) as c:
        with pytest.raises(RemoteNotFoundError):
            c.revision("M3LEO-miniset/atlantis")
        commit = c.revision(REPO)
        with pytest.raises(RemoteNotFoundError, match="EntryNotFound"):
            c.get_bytes(REPO, commit, "no/such/file.tif")
        srv.faults = Faults(garbage_json=True)
        with pytest.raises(HubProtocolError, match="invalid JSON"):
            c.revision(REPO)
        srv.faults = Faults(error_first=5, error_status=500)
        with pytest.raises(ServerError):
            c.revision(REPO)


def test_503_is_retried(info, tmp_path):
    with serve(info, Faults(error_first=2)) as srv, HubClient(settings_for(srv, tmp_path)) as c:
        assert len(c.revision(REPO)) == 40
        assert [r.status for r in srv.log] == [503, 503, 200]


def test_offline_sends_nothing(info, tmp_path):
    with serve(info) as srv:
        st = load_settings({"endpoint": srv.url, "data_dir": tmp_path, "offline": True}, env={})
        with HubClient(st) as c, pytest.raises(OfflineError):
            c.revision(REPO)
        assert srv.log == []


def test_retry_after_and_ratelimit_headers():
    assert retry_after_seconds({"retry-after": "7"}) == 7
    date = formatdate(1_000_030.0, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=1_000_000.0) == pytest.approx(30)
    assert retry_after_seconds({"ratelimit": '"api";r=0;t=55'}) == 56
    assert retry_after_seconds({"ratelimit": '"api";r=12;t=55'}) is None
    assert retry_after_seconds({}) is None


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_pacer_keeps_under_the_budget_per_window():
    clock = _Clock()
    pacer = Pacer(3, 300.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(7):
        pacer.acquire()
        starts.append(clock.t)
    assert starts[:3] == [0, 0, 0]
    assert starts[3] == pytest.approx(300) and starts[6] == pytest.approx(600)
    for i in range(len(starts)):  # never more than 3 starts in any 300 s window
        assert sum(1 for s in starts if starts[i] <= s < starts[i] + 300 - 1e-6) <= 3


def test_retrier_is_bounded_resets_and_honours_the_server():
    slept: list[float] = []
    clock = _Clock()
    pacer = Pacer(100, 300.0, clock=clock, sleep=clock.sleep)
    r = Retrier(3, pacer, sleep=slept.append)
    assert r.again(503, {}) and r.again(503, {}) and r.again(429, {"retry-after": "9"})
    assert not r.again(503, {})
    assert slept[0] <= Retrier.BASE and slept[2] == 9
    pacer.acquire()
    assert clock.t >= 9  # the 429 paused every thread through the shared pacer
    r.reset()
    assert r.again(None, None)


def test_forbidden_is_an_auth_error(info, tmp_path):
    from m3leo_cli.errors import AuthError

    folder = repo_dir(info)
    path = next(folder.rglob("*.csv")).relative_to(folder).as_posix()
    with serve(info, Faults(status_for_paths={path: 403})) as srv:
        with HubClient(settings_for(srv, tmp_path)) as c, pytest.raises(AuthError) as exc:
            c.get_bytes(REPO, c.revision(REPO), path)
    assert "HF_TOKEN" in exc.value.hint
