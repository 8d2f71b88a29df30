"""The loopback Hub server: every route, header, fault and refusal, over real HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from m3leo_cli.server import Faults, HubServer, git_blob_sha1, lfs_pointer
from tests.serverkit import CSV, IDS, PART, REPO, build_repo

NC = f"{PART}/gssic/{IDS[0]}.nc"
TIF = f"{PART}/s1grd-2020/{IDS[1]}.tif"
API = f"/api/datasets/{REPO}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    return build_repo(tmp_path / "src")


@pytest.fixture
def srv(tmp_path: Path, files: dict[str, bytes]) -> Iterator[HubServer]:
    with HubServer(tmp_path / "src", page_size=1000) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def resolve(srv: HubServer, path: str, rev: str = "main") -> str:
    return f"{srv.url}/datasets/{REPO}/resolve/{rev}/{quote(path)}"


def raw_get(srv: HubServer, path: str, origin: str = "hub") -> tuple[int, bytes]:
    """A request with the path sent exactly as written (httpx would normalise `..`)."""
    port = srv.port if origin == "hub" else srv.content_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- object ids


def test_git_blob_sha1_is_git_hash_object() -> None:
    assert git_blob_sha1(b"Hello, World!") == "b45ef6fec89518d314f546fd6c3025367b721684"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    data = os.urandom(1000)
    assert git_blob_sha1(data) == hashlib.sha1(b"blob 1000\x00" + data).hexdigest()


def test_lfs_pointer_text() -> None:
    p = lfs_pointer("ab" * 32, 12)
    assert (
        p
        == b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 12\n"
    )


# ----------------------------------------------------------------------------- revision


def test_revision_main_and_commit(srv: HubServer, client: httpx.Client, files: dict) -> None:
    r = client.get(f"{srv.url}{API}/revision/main")
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == REPO and doc["private"] is False
    assert len(doc["sha"]) == 40 and int(doc["sha"], 16) >= 0
    assert doc["lastModified"].endswith("Z")
    assert sorted(s["rfilename"] for s in doc["siblings"]) == sorted(files)
    assert client.get(f"{srv.url}{API}/revision/{doc['sha']}").json()["sha"] == doc["sha"]
    assert client.get(f"{srv.url}{API}").json()["sha"] == doc["sha"]
    assert srv.commit(REPO) == doc["sha"]


def test_revision_blobs_siblings(srv: HubServer, client: httpx.Client, files: dict) -> None:
    sibs = {
        s["rfilename"]: s
        for s in client.get(f"{srv.url}{API}/revision/main?blobs=true").json()["siblings"]
    }
    assert sibs["README.md"]["blobId"] == git_blob_sha1(files["README.md"])
    assert "lfs" not in sibs["README.md"]
    assert sibs[NC]["lfs"]["sha256"] == hashlib.sha256(files[NC]).hexdigest()
    assert sibs[NC]["size"] == len(files[NC])


def test_unknown_revision_and_repo(srv: HubServer, client: httpx.Client) -> None:
    r = client.get(f"{srv.url}{API}/revision/v9")
    assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
    assert "v9" in r.headers["x-error-message"]
    r = client.get(f"{srv.url}/api/datasets/M3LEO-miniset/atlantis/revision/main")
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    r = client.get(f"{srv.url}/api/models/M3LEO-miniset/europe/revision/main")
    assert r.headers["x-error-code"] == "RepoNotFound"
    assert client.get(f"{srv.url}/nothing/here").status_code == 404


def test_commit_is_deterministic_and_follows_changes(
    tmp_path: Path, files: dict, client: httpx.Client
) -> None:
    root = tmp_path / "src"
    with HubServer(root) as a, HubServer(root) as b:
        first = client.get(f"{a.url}{API}/revision/main").json()["sha"]
        assert client.get(f"{b.url}{API}/revision/main").json()["sha"] == first
        (root / REPO / NC).write_bytes(b"changed")
        second = client.get(f"{a.url}{API}/revision/main").json()["sha"]
        assert second != first
        r = client.get(f"{a.url}{API}/tree/{first}")
        assert r.headers["x-error-code"] == "RevisionNotFound"
        assert client.get(resolve(a, NC, second), follow_redirects=True).content == b"changed"
        (root / REPO / "new.txt").write_bytes(b"new")  # resolve notices a new file by itself
        assert client.get(resolve(a, "new.txt")).content == b"new"


# ----------------------------------------------------------------------------- tree


def test_tree_entries(srv: HubServer, client: httpx.Client, files: dict) -> None:
    r = client.get(f"{srv.url}{API}/tree/main?recursive=true&expand=false")
    assert r.status_code == 200 and "link" not in r.headers
    entries = {e["path"]: e for e in r.json()}
    assert {p for p, e in entries.items() if e["type"] == "file"} == set(files)
    assert entries[PART]["type"] == "directory" and len(entries[PART]["oid"]) == 40
    readme = entries["README.md"]
    assert readme == {
        "type": "file",
        "oid": git_blob_sha1(files["README.md"]),
        "size": len(files["README.md"]),
        "path": "README.md",
    }
    nc = entries[NC]
    sha = hashlib.sha256(files[NC]).hexdigest()
    pointer = lfs_pointer(sha, len(files[NC]))
    assert nc["lfs"] == {"oid": sha, "size": len(files[NC]), "pointerSize": len(pointer)}
    assert nc["oid"] == git_blob_sha1(pointer) and nc["size"] == len(files[NC])
    assert all("xetHash" not in e for e in entries.values())


def test_tree_non_recursive_and_subpath(srv: HubServer, client: httpx.Client) -> None:
    top = client.get(f"{srv.url}{API}/tree/main").json()
    assert {e["path"] for e in top} == {
        ".gitattributes",
        "README.md",
        CSV,
        f"{PART}_miniset.geojson",
        PART,
    }
    quoted = quote(f"{PART}/gssic", safe="")  # huggingface_hub sends %2F
    sub = client.get(f"{srv.url}{API}/tree/main/{quoted}").json()
    assert {e["path"] for e in sub} == {f"{PART}/gssic/{t}.nc" for t in IDS}
    raw = client.get(f"{srv.url}{API}/tree/main/{PART}?recursive=true").json()  # hf.js: raw
    assert len([e for e in raw if e["type"] == "file"]) == 6
    r = client.get(f"{srv.url}{API}/tree/main/{PART}/nope")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    r = client.get(f"{srv.url}{API}/tree/main/README.md")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"


def test_tree_pagination(tmp_path: Path, files: dict, client: httpx.Client) -> None:
    with HubServer(tmp_path / "src", page_size=2) as srv:
        url: str | None = f"{srv.url}{API}/tree/main?recursive=true&expand=false"
        seen: list[str] = []
        pages = 0
        while url:
            r = client.get(url)
            assert r.status_code == 200
            page = r.json()
            assert len(page) <= 2
            seen += [e["path"] for e in page]
            pages += 1
            url = r.links.get("next", {}).get("url")
            if url:
                parts = urlsplit(url)
                assert parts.scheme == "http" and parts.netloc == f"127.0.0.1:{srv.port}"
                assert "recursive=true" in parts.query and "cursor=" in parts.query
        with HubServer(tmp_path / "src") as one_page:
            whole = client.get(f"{one_page.url}{API}/tree/main?recursive=true").json()
        assert seen == [e["path"] for e in whole] and len(set(seen)) == len(seen)
        assert pages == (len(seen) + 1) // 2 and set(files) <= set(seen)
        r = client.get(f"{srv.url}{API}/tree/main?recursive=true&cursor=%%%")
        assert r.status_code == 400


def test_tree_expand(srv: HubServer, client: httpx.Client) -> None:
    entries = client.get(f"{srv.url}{API}/tree/main?recursive=true&expand=true").json()
    commit = srv.commit(REPO)
    assert all(e["lastCommit"]["id"] == commit for e in entries)
    assert all(e["securityFileStatus"]["status"] == "safe" for e in entries if e["type"] == "file")


# ----------------------------------------------------------------------------- paths-info


def test_paths_info_forms(srv: HubServer, client: httpx.Client, files: dict) -> None:
    url = f"{srv.url}{API}/paths-info/main"
    r = client.post(url, data={"paths": ["README.md", NC, "missing.txt", PART], "expand": "false"})
    assert r.status_code == 200
    got = {e["path"]: e for e in r.json()}
    assert set(got) == {"README.md", NC, PART}
    assert got[NC]["lfs"]["oid"] == hashlib.sha256(files[NC]).hexdigest()
    assert got[PART]["type"] == "directory"
    r = client.post(url, data={"paths": json.dumps(["README.md", TIF])})
    assert {e["path"] for e in r.json()} == {"README.md", TIF}
    r = client.post(url, json={"paths": [CSV], "expand": True})
    assert [e["path"] for e in r.json()] == [CSV] and "lastCommit" in r.json()[0]
    assert client.get(url).status_code == 405


# ----------------------------------------------------------------------------- resolve


def test_resolve_regular_file(srv: HubServer, client: httpx.Client, files: dict) -> None:
    commit = srv.commit(REPO)
    h = client.head(resolve(srv, "README.md"))
    oid = git_blob_sha1(files["README.md"])
    assert h.status_code == 200 and h.headers["x-repo-commit"] == commit
    assert h.headers["etag"] == f'"{oid}"' and h.headers["accept-ranges"] == "bytes"
    assert int(h.headers["content-length"]) == len(files["README.md"])
    assert client.get(resolve(srv, "README.md")).content == files["README.md"]
    assert client.get(resolve(srv, CSV, commit)).content == files[CSV]
    r = client.get(resolve(srv, CSV), headers={"Range": "bytes=5-9"})
    assert r.status_code == 206 and r.content == files[CSV][5:10]


def test_resolve_lfs_redirects_to_content_origin(
    srv: HubServer, client: httpx.Client, files: dict
) -> None:
    sha = hashlib.sha256(files[NC]).hexdigest()
    h = client.head(resolve(srv, NC))
    assert h.status_code == 302
    assert h.headers["x-repo-commit"] == srv.commit(REPO)
    assert h.headers["x-linked-etag"] == f'"{sha}"' and h.headers["etag"] == f'"{sha}"'
    assert h.headers["x-linked-size"] == str(len(files[NC]))
    assert not [k for k in h.headers if k.startswith("x-xet")]
    loc = h.headers["location"]
    assert loc.startswith(srv.content_url + "/") and srv.content_url != srv.url
    assert client.get(resolve(srv, NC)).status_code == 302  # GET redirects too
    g = client.get(loc)
    assert g.status_code == 200 and g.content == files[NC]
    assert g.headers["etag"] == f'"{sha}"' and "x-repo-commit" not in g.headers
    assert client.head(loc).headers["content-length"] == str(len(files[NC]))
    assert client.get(resolve(srv, NC), follow_redirects=True).content == files[NC]


def test_ranges(srv: HubServer, client: httpx.Client, files: dict) -> None:
    data = files[TIF]
    n = len(data)
    loc = client.head(resolve(srv, TIF)).headers["location"]
    etag = client.head(loc).headers["etag"]
    r = client.get(loc, headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == data[100:]
    assert r.headers["content-range"] == f"bytes 100-{n - 1}/{n}"
    r = client.get(loc, headers={"Range": "bytes=0-0"})
    assert r.content == data[:1] and r.headers["content-range"] == f"bytes 0-0/{n}"
    r = client.get(loc, headers={"Range": f"bytes=10-{n + 50}"})
    assert r.status_code == 206 and r.content == data[10:]
    r = client.get(loc, headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = client.get(loc, headers={"Range": "bytes=100-", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[100:]
    r = client.get(loc, headers={"Range": "bytes=100-", "If-Range": '"0000"'})
    assert r.status_code == 200 and r.content == data
    for start in (n, n + 10):
        r = client.get(loc, headers={"Range": f"bytes={start}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{n}"
    r = client.get(loc, headers={"Range": "bytes=0-1,5-6"})  # multi-range: whole file
    assert r.status_code == 200 and r.content == data


def test_resolve_errors(srv: HubServer, client: httpx.Client) -> None:
    r = client.head(resolve(srv, f"{PART}/gssic/ffffffffffff0.nc"))
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    assert r.headers["x-repo-commit"] == srv.commit(REPO)
    r = client.get(resolve(srv, NC, "0" * 40))
    assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
    r = client.get(f"{srv.url}/datasets/M3LEO-miniset/nowhere/resolve/main/README.md")
    assert r.headers["x-error-code"] == "RepoNotFound"
    assert client.post(resolve(srv, "README.md")).status_code == 405
    assert client.get(f"{srv.content_url}/lfs/{REPO}/{'0' * 64}/{NC}").status_code == 404


def test_keep_alive_and_log(srv: HubServer, files: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    for _ in range(3):  # one connection, three answers
        conn.request(
            "GET",
            f"/datasets/{REPO}/resolve/main/README.md",
            headers={"Authorization": "Bearer hf_x"},
        )
        assert conn.getresponse().read() == files["README.md"]
    conn.close()
    with httpx.Client() as c:
        loc = c.head(resolve(srv, NC), headers={"Authorization": "Bearer hf_x"}).headers["location"]
        c.get(loc, headers={"Range": "bytes=7-"}, params={"x": "1"})
    recs = srv.log
    assert [r.status for r in recs[:3]] == [200, 200, 200]
    assert recs[0].headers["authorization"] == "Bearer hf_x" and recs[0].origin == "hub"
    assert (
        recs[0].path == f"/datasets/{REPO}/resolve/main/README.md"
        and recs[0].repo_path == "README.md"
    )
    last = recs[-1]
    assert last.origin == "content" and last.range == "bytes=7-" and last.query == "x=1"
    assert last.status == 206 and last.bytes_sent == len(files[NC]) - 7
    assert "authorization" not in last.headers and last.repo_path == NC
    srv.clear_log()
    assert srv.log == []


# ----------------------------------------------------------------------------- faults


def test_fault_error_first_per_path(srv: HubServer, client: httpx.Client) -> None:
    srv.faults = Faults(error_first=2, error_status=502)
    codes = [client.get(resolve(srv, "README.md")).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    assert client.get(resolve(srv, CSV)).status_code == 502  # another path has its own count
    srv.reset_faults()
    assert client.get(resolve(srv, "README.md")).status_code == 502
    srv.faults = Faults()
    assert client.get(resolve(srv, "README.md")).status_code == 200


def test_fault_rate_limit(srv: HubServer, client: httpx.Client) -> None:
    srv.faults = Faults(rate_limit_first=1, retry_after=3)
    r = client.get(f"{srv.url}{API}/revision/main")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.headers["ratelimit"] == '"api";r=0;t=3' and "ratelimit-policy" in r.headers
    assert client.get(f"{srv.url}{API}/revision/main").status_code == 200
    r = client.head(resolve(srv, "README.md"))
    assert r.status_code == 429 and '"resolvers"' in r.headers["ratelimit"]


def test_fault_cut_and_corrupt(srv: HubServer, client: httpx.Client, files: dict) -> None:
    loc = client.head(resolve(srv, NC)).headers["location"]
    srv.faults = Faults(cut_after_bytes=100, cut_first=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(loc)
    assert srv.log[-1].bytes_sent == 100
    assert client.get(loc).content == files[NC]  # only the first GET per file is cut
    srv.faults = Faults(corrupt_first=1)
    bad = client.get(loc).content
    assert len(bad) == len(files[NC]) and bad != files[NC]
    assert sum(a != b for a, b in zip(bad, files[NC], strict=True)) == 1
    assert client.get(loc).content == files[NC]
    assert client.head(resolve(srv, "README.md")).status_code == 200  # HEADs never count


def test_fault_ignore_range_and_latency(srv: HubServer, client: httpx.Client, files: dict) -> None:
    srv.faults = Faults(ignore_range=True, latency_ms=60)
    t0 = time.monotonic()
    r = client.get(resolve(srv, CSV), headers={"Range": "bytes=5-"})
    assert time.monotonic() - t0 >= 0.06
    assert r.status_code == 200 and r.content == files[CSV]


def test_fault_extra_bytes(srv: HubServer, files: dict) -> None:
    srv.faults = Faults(extra_bytes=7)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(
            f"GET /datasets/{REPO}/resolve/main/README.md HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(files['README.md'])}".encode() in head
    assert body == files["README.md"] + b"\0" * 7


def test_fault_listing_and_status(srv: HubServer, client: httpx.Client) -> None:
    srv.faults = Faults(hostile_paths=("../../escape.tif", "/abs/x.nc"))
    paths = [e["path"] for e in client.get(f"{srv.url}{API}/tree/main?recursive=true").json()]
    assert "../../escape.tif" in paths and "/abs/x.nc" in paths
    srv.faults = Faults(garbage_json=True)
    r = client.get(f"{srv.url}{API}/revision/main")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    srv.faults = Faults(status_for_paths={NC: 404, f"{REPO}/README.md": 500})
    r = client.head(resolve(srv, NC))
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    assert client.get(resolve(srv, "README.md")).status_code == 500
    assert client.get(resolve(srv, CSV)).status_code == 200


# ----------------------------------------------------------------------------- path safety


@pytest.mark.parametrize(
    "path",
    [
        f"/datasets/{REPO}/resolve/main/../../../../etc/passwd",
        f"/datasets/{REPO}/resolve/main/%2e%2e/%2e%2e/secret.txt",
        f"/datasets/{REPO}/resolve/main/{PART}/..%2f..%2f..%2fsecret.txt",
        f"/datasets/{REPO}/resolve/main//etc/passwd",
        "/datasets/M3LEO-miniset/../resolve/main/secret.txt",
        "/datasets/../src/resolve/main/secret.txt",
    ],
)
def test_path_escape_is_refused(srv: HubServer, tmp_path: Path, path: str) -> None:
    (tmp_path / "src" / "secret.txt").write_text("top secret")
    (tmp_path / "secret.txt").write_text("top secret")
    status, body = raw_get(srv, path)
    assert status in (400, 404) and b"top secret" not in body


def test_symlinks_out_of_root_are_not_served(
    tmp_path: Path, files: dict, client: httpx.Client
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("top secret")
    repo = tmp_path / "src" / REPO
    (repo / "leak.txt").symlink_to(outside)
    (repo / "leakdir").symlink_to(tmp_path, target_is_directory=True)
    (repo / "alias.md").symlink_to(repo / "README.md")  # inside root: fine
    with HubServer(tmp_path / "src") as srv:
        paths = {e["path"] for e in client.get(f"{srv.url}{API}/tree/main?recursive=true").json()}
        assert "leak.txt" not in paths and not any(p.startswith("leakdir") for p in paths)
        assert client.get(resolve(srv, "leak.txt")).status_code == 404
        assert client.get(resolve(srv, "leakdir/outside.txt")).status_code == 404
        assert client.get(resolve(srv, "alias.md")).content == files["README.md"]
        status, body = raw_get(srv, f"/lfs/{REPO}/{'0' * 64}/../../../outside.txt", "content")
        assert status == 404 and b"secret" not in body


def test_hidden_bookkeeping_folders_are_not_served(tmp_path: Path, files: dict) -> None:
    (tmp_path / "src" / REPO / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / "src" / REPO / ".cache" / "huggingface" / "x.metadata").write_text("x")
    with HubServer(tmp_path / "src") as srv, httpx.Client() as c:
        paths = {e["path"] for e in c.get(f"{srv.url}{API}/tree/main?recursive=true").json()}
        assert not any(p.startswith(".cache") for p in paths) and ".gitattributes" in paths


def test_client_resets_are_not_reported_as_errors(
    srv: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_origin = srv._servers[0]
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        hub_origin.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""


def test_an_m3leo_store_is_served_under_the_hub_org(tmp_path: Path, client: httpx.Client) -> None:
    files = build_repo(tmp_path / "staging")
    store = tmp_path / "store"
    (store / "miniset").mkdir(parents=True)
    (tmp_path / "staging" / REPO).rename(store / "miniset" / "europe")  # <data dir>/miniset/europe
    (store / ".m3leo").mkdir()
    with HubServer(store) as srv:
        assert srv.repo_ids() == [REPO]
        assert client.get(f"{srv.url}{API}/revision/main").json()["id"] == REPO
        assert client.get(resolve(srv, NC), follow_redirects=True).content == files[NC]


def test_a_store_serves_neither_partial_files_nor_its_own_folders(
    tmp_path: Path, client: httpx.Client
) -> None:
    files = build_repo(tmp_path / "staging")
    store = tmp_path / "store"
    (store / "miniset").mkdir(parents=True)
    (tmp_path / "staging" / REPO).rename(store / "miniset" / "europe")
    (store / "miniset" / "europe" / f"{NC}.part").write_bytes(b"half a download")
    (store / "local" / "lux").mkdir(parents=True)  # the user's own region (m3leo grid)
    (store / "local" / "lux" / "lux.geojson").write_text("{}")
    (store / "full" / "conus" / PART).mkdir(parents=True)  # unpacked tiles, no kept shard
    (store / "full" / "conus" / PART / "x.tif").write_bytes(b"tile")
    (store / "full" / "europe").mkdir(parents=True)  # a kept shard that is still downloading
    shards = store / ".m3leo" / "shards" / "europe" / PART / "gssic"
    shards.mkdir(parents=True)
    (shards / "train_0002540be400.zstd.parquet.part").write_bytes(b"PAR1")
    with HubServer(store) as srv:
        assert srv.repo_ids() == [REPO]
        listing = client.get(f"{srv.url}{API}/tree/main?recursive=true").json()
        assert {e["path"] for e in listing if e["type"] == "file"} == set(files)
        for repo in ("local/lux", "M3LEO/conus", "M3LEO/europe", "miniset/europe", "full/conus"):
            r = client.get(f"{srv.url}/api/datasets/{repo}/revision/main")
            assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound", repo
            assert r.headers["x-error-message"].startswith(f"this mirror has no {repo}")
        editions, not_served, warnings = srv.notes(srv.repo_ids())
        assert editions == {"miniset": ["europe"]} and warnings == []
        assert [line.split(":", 1)[0] for line in not_served] == [
            str(store / "full" / "conus"),
            str(store / "full" / "europe"),
        ]


def test_hash_cache_file_survives_restarts(tmp_path: Path, files: dict) -> None:
    cache = tmp_path / "state" / "hashes.json"
    with HubServer(tmp_path / "src", hash_cache=cache) as srv:
        commit = srv.commit(REPO)
    doc = json.loads(cache.read_text())
    real = str(tmp_path / "src" / REPO / NC)
    size, mtime_ns, lfs, digest = doc["entries"][real]
    assert (size, lfs, digest) == (len(files[NC]), True, hashlib.sha256(files[NC]).hexdigest())
    doc["entries"][real][3] = "ab" * 32  # a restart trusts the cache while size+mtime hold
    cache.write_text(json.dumps(doc))
    with HubServer(tmp_path / "src", hash_cache=cache) as srv, httpx.Client() as c:
        assert srv.commit(REPO) != commit
        assert c.head(resolve(srv, NC)).headers["x-linked-etag"] == f'"{"ab" * 32}"'
        os.utime(tmp_path / "src" / REPO / NC, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
        assert srv.commit(REPO) == commit  # changed mtime: hashed again, for real
    cache.write_text("not json")  # a broken cache is ignored, not fatal
    with HubServer(tmp_path / "src", hash_cache=cache) as srv:
        assert srv.commit(REPO) == commit


def test_links_and_redirects_follow_the_host_the_client_used(
    tmp_path: Path, files: dict, client: httpx.Client
) -> None:
    with HubServer(tmp_path / "src", page_size=2) as srv:  # e.g. compute nodes say "mirror01"
        host = {"Host": f"mirror01.cluster:{srv.port}"}
        r = client.get(f"{srv.url}{API}/tree/main?recursive=true", headers=host)
        assert r.links["next"]["url"].startswith(f"http://mirror01.cluster:{srv.port}{API}/tree/")
        loc = client.head(resolve(srv, NC), headers=host).headers["location"]
        assert loc.startswith(f"http://mirror01.cluster:{srv.content_port}/lfs/")
        bad = {"Host": "evil/path?x"}  # not a host name: the server's own address is used
        r = client.get(f"{srv.url}{API}/tree/main?recursive=true", headers=bad)
        assert r.links["next"]["url"].startswith(f"{srv.url}{API}/tree/")


def test_access_log_is_off_by_default(
    tmp_path: Path, files: dict, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    with HubServer(tmp_path / "src") as quiet:
        client.get(resolve(quiet, "README.md"))
    with HubServer(tmp_path / "src", access_log=True, keep_log=False) as loud:
        client.get(resolve(loud, "README.md"))
        assert loud.log == []
    err = capsys.readouterr().err
    assert err.count("GET /datasets/") == 1 and '" 200 ' in err


def _drop_mid_body(port: int, path: str) -> bytes:
    """Ask for ``path``, read a little of the answer, then reset the connection (RST)."""
    import struct

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = sock.recv(4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # linger 0: the server's next write meets a reset, not a clean close
    return head


@pytest.mark.parametrize("faults", [Faults(), Faults(corrupt_first=1)], ids=["sendfile", "write"])
def test_a_client_dropping_mid_body_prints_nothing(
    tmp_path: Path, faults: Faults, capfd: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "src" / REPO
    repo.mkdir(parents=True)
    (repo / "big.csv").write_bytes(os.urandom(8 << 20))  # not LFS: served by the Hub origin
    with HubServer(tmp_path / "src", faults=faults) as srv:
        path = f"/datasets/{REPO}/resolve/main/big.csv"
        for _ in range(3):
            assert _drop_mid_body(srv.port, path).startswith(b"HTTP/1.1 200")
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(b"GET /api/datasets/")  # half a request line, then gone
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
        assert srv.wait_idle()  # every dropped connection handled (and anything it printed)
        status, _ = raw_get(srv, f"/api/datasets/{REPO}/revision/main")
        assert status == 200  # still serving
        assert [r.status for r in srv.log[:3]] == [200, 200, 200]
    out, err = capfd.readouterr()
    assert err == "" and out == ""
