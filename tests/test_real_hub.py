"""The client against `m3leo serve` in its real-Hub mode: CDN validators, signed links that expire,
re-resolving, the host named in errors, gated/private repos, renames and RateLimit headers."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from dl_helpers import REGION, expected_files, local_files, repo_dir, settings_for, source

from m3leo_cli.config import load_settings
from m3leo_cli.errors import (
    AuthError,
    ContentHostDeniedError,
    ContentHostUnreachableError,
    HubConnectionError,
    RemoteNotFoundError,
)
from m3leo_cli.fetch.transfer import FileJob, Transfer, part_path, validator_path
from m3leo_cli.hub.client import HubClient
from m3leo_cli.hub.lfsbatch import MEDIA_TYPE, Want
from m3leo_cli.server import Faults, HubServer, RealHub

REPO = f"M3LEO-miniset/{REGION}"


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


def _biggest(info) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    folder = repo_dir(info)
    path = max(folder.rglob("*.tif"), key=lambda p: p.stat().st_size)
    return path.relative_to(folder).as_posix(), path.read_bytes()


def _job(client: HubClient, dest, rel: str, data: bytes) -> FileJob:  # type: ignore[no-untyped-def]
    commit = client.revision(REPO)
    url = client.resolve_url(REPO, commit, rel)
    return FileJob(url, dest, len(data), "sha256", hashlib.sha256(data).digest(), rel)


def test_content_etag_is_not_the_sha256_and_links_expire(info):
    rel, data = _biggest(info)
    sha = hashlib.sha256(data).hexdigest()
    with HubServer(info.root, real=RealHub(link_ttl=0.5)) as srv, httpx.Client() as http:
        commit = http.get(f"{srv.url}/api/datasets/{REPO}/revision/main").json()["sha"]
        r = http.get(f"{srv.url}/datasets/{REPO}/resolve/{commit}/{rel}")
        assert r.status_code == 302 and "Signature=" in r.headers["location"]
        assert r.headers["x-linked-etag"] == f'"{sha}"'  # the Hub's own headers keep the sha256
        link = r.headers["location"]
        got = http.get(link)
        assert got.status_code == 200 and got.content == data
        assert got.headers["etag"].strip('"') != sha and got.headers["last-modified"]
        assert http.get(link.split("?")[0]).status_code == 403  # unsigned
        time.sleep(0.6)
        late = http.get(link)
        assert late.status_code == 403 and b"expired" in late.content


@pytest.mark.parametrize("refusal", [403, 410])
def test_killed_transfer_resumes_after_its_link_expired_fetching_only_the_rest(
    info, tmp_path, refusal
):
    rel, data = _biggest(info)
    half = len(data) // 2
    faults = Faults(cut_after_bytes=half, cut_first=1)
    real = RealHub(expired_status=refusal)
    with HubServer(info.root, real=real, faults=faults) as srv:
        with HubClient(settings_for(srv, tmp_path, max_retries=0)) as client:
            job = _job(client, tmp_path / "f.tif", rel, data)
            with pytest.raises(HubConnectionError):  # killed half way
                Transfer(client, job).run()
            assert part_path(job.dest).stat().st_size == half
            kept = validator_path(job.dest).read_text()
            cdn_etag = RealHub.content_etag(hashlib.sha256(data).hexdigest())
            assert cdn_etag in kept  # the content host's validator, not the sha256
            srv.expire_links()  # the hour passes
            srv.clear_log()
            t = Transfer(client, job)
            assert t.run() == "downloaded"
            log = list(srv.log)
            reresolved = client.reresolved
    assert job.dest.read_bytes() == data and not validator_path(job.dest).exists()
    assert t.transferred == len(data) - half  # only the missing bytes travelled
    # the remembered link is refused, the Hub resolves again, the CDN serves the rest
    assert [(r.origin, r.status) for r in log] == [
        ("content", refusal),
        ("hub", 302),
        ("content", 206),
    ]
    assert reresolved == 1
    last = log[-1]
    assert last.range == f"bytes={half}-" and last.headers["if-range"] == f'"{cdn_etag}"'
    assert last.bytes_sent == len(data) - half


def test_a_new_run_resumes_with_the_kept_validator(info, tmp_path):
    rel, data = _biggest(info)
    half = len(data) // 3
    with HubServer(info.root, real=RealHub(), faults=Faults(cut_after_bytes=half)) as srv:
        with HubClient(settings_for(srv, tmp_path, max_retries=0)) as client:
            job = _job(client, tmp_path / "f.tif", rel, data)
            with pytest.raises(HubConnectionError):
                Transfer(client, job).run()
        srv.faults = Faults()
        srv.clear_log()
        with HubClient(settings_for(srv, tmp_path)) as fresh:  # another process, later
            t = Transfer(fresh, job)
            assert t.run() == "downloaded"
        content = [r for r in srv.log if r.origin == "content"]
    assert job.dest.read_bytes() == data and t.transferred == len(data) - half
    assert [r.status for r in content] == [206] and content[0].range == f"bytes={half}-"


def test_a_part_without_validator_restarts_verified(info, tmp_path):
    """An old part (no sidecar) sends the sha256; the CDN does not know it: a clean restart."""
    rel, data = _biggest(info)
    with HubServer(info.root, real=RealHub()) as srv:
        with HubClient(settings_for(srv, tmp_path)) as client:
            job = _job(client, tmp_path / "f.tif", rel, data)
            part_path(job.dest).write_bytes(data[:100])
            t = Transfer(client, job)
            assert t.run() == "downloaded"
        content = [r for r in srv.log if r.origin == "content"]
    assert job.dest.read_bytes() == data and t.transferred == len(data)
    assert content[-1].range == "bytes=100-" and content[-1].status == 200


def test_a_content_host_that_keeps_refusing_is_named(info, tmp_path):
    rel, data = _biggest(info)
    with HubServer(info.root, real=RealHub(link_ttl=-1)) as srv:  # every link born expired
        with HubClient(settings_for(srv, tmp_path)) as client:
            job = _job(client, tmp_path / "f.tif", rel, data)
            with pytest.raises(ContentHostDeniedError) as exc:
                Transfer(client, job).run()
        statuses = [
            (r.origin, r.status) for r in srv.log if "/resolve/" in r.path or r.origin == "content"
        ]
    assert statuses == [("hub", 302), ("content", 403), ("hub", 302), ("content", 403)]
    host = srv.content_url.split("//")[1]
    assert f"the content host {host} refused" in exc.value.message
    assert "allow both the Hub" in exc.value.hint


def test_an_unreachable_content_host_is_named_not_the_hub(info, tmp_path):
    """A firewall that lets only the Hub through: here the content host goes via a dead proxy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    rel, data = _biggest(info)
    with HubServer(info.root, real=RealHub()) as srv:
        env = {"HTTP_PROXY": dead, "NO_PROXY": f"127.0.0.1:{srv.port}"}
        st = load_settings({"endpoint": srv.url, "data_dir": tmp_path}, env=env)
        with HubClient(st) as client:
            job = _job(client, tmp_path / "f.tif", rel, data)
            with pytest.raises(ContentHostUnreachableError) as exc:
                Transfer(client, job).run()
    assert f"content host 127.0.0.1:{srv.content_port}" in exc.value.message
    assert f"the Hub at {srv.url} answered" in exc.value.message
    assert "allow both the Hub" in exc.value.hint


def test_renamed_repo_is_followed_and_rate_limit_headers_are_real(info, tmp_path):
    real = RealHub(renames={"M3LEO-miniset/old-name": REPO})
    with HubServer(info.root, real=real) as srv:
        with HubClient(settings_for(srv, tmp_path)) as c:
            commit = c.revision("M3LEO-miniset/old-name")
            assert len(commit) == 40
            rel, data = _biggest(info)
            assert c.get_bytes("M3LEO-miniset/old-name", commit, rel) == data  # resolve too
            moved = [r for r in srv.log if r.status == 307]
            srv.clear_log()
        with HubClient(settings_for(srv, tmp_path, token="hf_x")) as c:
            c.revision(REPO)
        log = list(srv.log)
    assert len(moved) == 2 and "/resolve/" in moved[1].path
    assert [r.status for r in log] == [200]
    with HubServer(info.root, real=RealHub()) as srv, httpx.Client() as http:
        anon = http.get(f"{srv.url}/api/datasets/{REPO}/revision/main").headers
        auth = {"authorization": "Bearer hf_x"}
        tok = http.get(f"{srv.url}/api/datasets/{REPO}/revision/main", headers=auth).headers
    assert anon["ratelimit-policy"] == '"fixed window";"api";q=500;w=300'
    assert anon["ratelimit"].startswith('"api";r=499;t=')
    assert tok["ratelimit-policy"] == '"fixed window";"api";q=1000;w=300'


AUTH = RealHub(
    gated=frozenset({REPO}),
    tokens=frozenset({"hf_granted", "hf_plain"}),
    granted=frozenset({"hf_granted"}),
)


@pytest.mark.parametrize(
    ("token", "error", "message", "hint"),
    [
        (None, AuthError, "401 GatedRepo", "accept its terms"),
        ("hf_plain", AuthError, "403 GatedRepo", "accept its terms"),
        ("hf_expired", AuthError, "rejected the token", "expired or invalid"),
    ],
)
def test_gated_repo_and_bad_token_hints(info, tmp_path, token, error, message, hint):
    with HubServer(info.root, real=AUTH) as srv:
        with HubClient(settings_for(srv, tmp_path, token=token)) as c, pytest.raises(error) as exc:
            c.revision(REPO)
    assert message in exc.value.message and hint in exc.value.hint
    assert "hf auth login" in exc.value.hint and "--token" in exc.value.hint


def test_granted_token_reads_a_gated_repo_and_private_repo_hints(info, tmp_path):
    with HubServer(info.root, real=AUTH) as srv:
        with HubClient(settings_for(srv, tmp_path, token="hf_granted")) as c:
            assert len(c.revision(REPO)) == 40
    private = RealHub(private=frozenset({REPO}), granted=frozenset({"hf_granted"}))
    with HubServer(info.root, real=private) as srv:
        with HubClient(settings_for(srv, tmp_path)) as c, pytest.raises(RemoteNotFoundError) as e:
            c.revision(REPO)
    assert "401 RepoNotFound" in e.value.message
    assert "private or gated" in e.value.hint and "hf auth login" in e.value.hint
    with HubServer(info.root, real=private) as srv:
        st = settings_for(srv, tmp_path, token="hf_other")
        with HubClient(st) as c, pytest.raises(RemoteNotFoundError) as e:
            c.revision(REPO)
    assert "404 RepoNotFound" in e.value.message
    assert "the token (from command line) may not have access" in e.value.hint


def test_sigkilled_download_resumes_on_the_real_hub_with_the_cdn_validator(info, tmp_path):
    """A real `m3leo download` killed mid-file; after its links expired, a new run resumes each
    partial file with Range + If-Range: <CDN ETag> and receives only the missing bytes."""
    data_dir = tmp_path / "data"
    args = ["--edition", "miniset", "--region", "europe", "--modality", "gssic"]
    with HubServer(info.root, real=RealHub(link_ttl=1.0)) as srv:
        env = {**os.environ, "HF_ENDPOINT": srv.url, "M3LEO_DATA_DIR": str(data_dir)}
        cmd = [sys.executable, "-m", "m3leo_cli", "download", *args, "--workers", "2", "--quiet"]
        assert subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True).returncode == 0
        srv.faults = Faults(cut_after_bytes=900, latency_ms=20)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                if any(p.stat().st_size == 900 for p in data_dir.rglob("*.part") if p.exists()):
                    break
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(10)
        parts = {p: p.stat().st_size for p in data_dir.rglob("*.part") if p.stat().st_size}
        assert parts, "the kill should land while some file is partial"
        assert all(validator_path(p.with_suffix("")).exists() for p in parts)
        time.sleep(1.1)  # every link the killed run was given has expired
        srv.faults = Faults()
        srv.clear_log()
        done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        log = list(srv.log)
    assert local_files(data_dir) == expected_files(info, "gssic")
    ranged = [r for r in log if r.origin == "content" and r.range]
    resumed = {int(r.range.split("=")[1].rstrip("-")) for r in ranged}
    assert resumed and resumed <= set(parts.values())
    for r in ranged:
        assert r.status == 206 and r.headers["if-range"] != f'"{r.path.split("/")[4]}"'
        assert r.headers["if-range"] == f'"{RealHub.content_etag(r.path.split("/")[4])}"'
    assert not list(data_dir.rglob("*.validator"))


def test_a_spent_ratelimit_pauses_its_bucket_only(info, tmp_path):
    """An answer saying ``r=0`` pauses the next API call until the window resets (t + 1 s)."""
    real = RealHub(quotas={"api": (2, 2), "resolvers": (100, 100)}, window=1)
    with HubServer(info.root, real=real) as srv:
        with HubClient(settings_for(srv, tmp_path)) as c:
            c.revision(REPO)
            commit = c.revision(REPO)  # its answer: "api";r=0;t=1
            assert c.pacers["api"].waited == 0
            rel, data = _biggest(info)
            assert c.get_bytes(REPO, commit, rel) == data  # resolvers are not held
            assert c.pacers["resolvers"].waited == 0
            t0 = time.monotonic()
            c.revision(REPO)
            took = time.monotonic() - t0
    assert took >= 1.5 and c.pacers["api"].waited >= 1.5


def test_batch_links_are_signed_expire_and_are_resolved_again_once_refused(info, tmp_path):
    """The Git LFS batch API of the real-Hub mode: every link signed, valid ``link_ttl`` and
    said so (``expires_in``); the client fetches from it with no resolve, and once the hour
    has passed the content host's refusal sends it back to ``/resolve/``, once."""
    rel, data = _biggest(info)
    sha = hashlib.sha256(data).hexdigest()
    with HubServer(info.root, real=RealHub(link_ttl=1800)) as srv:
        with HubClient(settings_for(srv, tmp_path, max_retries=0)) as client:
            job = _job(client, tmp_path / "f.tif", rel, data)
            want = [Want(job.url, sha, len(data)), Want(job.url + "x", "0" * 64, 1)]
            srv.clear_log()
            assert client.prefetch_links(want) == 1  # the unknown object gets no link
            batch = list(srv.log)
            srv.clear_log()
            assert Transfer(client, job).run() == "downloaded"
            first = [(r.origin, r.status) for r in srv.log]
            job.dest.unlink()
            srv.expire_links()
            srv.clear_log()
            assert Transfer(client, job).run() == "downloaded"
            second = [(r.origin, r.status) for r in srv.log]
            reresolved = client.reresolved
    assert [(r.method, r.status) for r in batch] == [("POST", 200)]
    assert batch[0].headers["content-type"] == MEDIA_TYPE
    assert first == [("content", 200)]
    assert second == [("content", 403), ("hub", 302), ("content", 200)] and reresolved == 1
    assert job.dest.read_bytes() == data


def test_batch_answers_name_their_expiry_and_refuse_unknown_objects(info):
    rel, data = _biggest(info)
    sha = hashlib.sha256(data).hexdigest()
    body = {"operation": "download", "transfers": ["basic"],
            "objects": [{"oid": sha, "size": len(data)}, {"oid": "0" * 64, "size": 5}]}  # fmt: skip
    headers = {"accept": MEDIA_TYPE, "content-type": MEDIA_TYPE}
    with HubServer(info.root, real=RealHub(link_ttl=900)) as srv, httpx.Client() as http:
        url = f"{srv.url}/datasets/{REPO}.git/info/lfs/objects/batch"
        r = http.post(url, json=body, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == MEDIA_TYPE
        found, missing = r.json()["objects"]
        action = found["actions"]["download"]
        assert action["expires_in"] == 900 and "Signature=" in action["href"]
        assert http.get(action["href"]).content == data
        assert missing["error"]["code"] == 404
        upload = http.post(url, json={**body, "operation": "upload"}, headers=headers)
        assert upload.status_code == 403
        assert http.post(url, content=b"{", headers=headers).status_code == 422
        assert http.get(url).status_code == 405
