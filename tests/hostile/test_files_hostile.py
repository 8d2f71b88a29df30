"""The hostile review's file-path and failure cases (B1, B2, B8, B9, B12) and the token's
hygiene, driven from outside: a malicious mirror in front of the project's Hub server
(tests/scripted.py), links planted in the store, folders where files should be."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from clirun import run
from dl_helpers import PARTITION, expected_files, local_files, serve, source
from scripted import mitm

from m3leo_cli.config import load_settings, token_warning

ARGS = ("--edition", "miniset", "--region", "europe", "--modality", "gssic")
MALFORMED = (
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: \u00b2\r\n\r\n"
    "5\r\nhello\r\n0\r\n\r\n"
).encode("latin-1")


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


@pytest.fixture
def srv(info):  # type: ignore[no-untyped-def]
    with serve(info) as server:
        yield server


def _target(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode()


def _tiles(info) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(p for p in expected_files(info, "gssic") if p.startswith(PARTITION + "/"))


def test_malformed_heads_on_a_share_of_gets_are_retried_and_every_file_verified(
    capsys, srv, info, data_dir, monkeypatch
):
    """B1 from outside: every third tile's first GET gets a head no HTTP parser may accept."""
    tiles = _tiles(info)
    hit = {t for i, t in enumerate(tiles) if i % 3 == 0}
    seen: set[str] = set()

    def rule(request: bytes) -> bytes | None:
        path = _target(request)
        for t in hit:
            if "/resolve/" in path and path.endswith(t) and t not in seen:
                seen.add(t)
                return MALFORMED
        return None

    with mitm(srv.url, rule) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("M3LEO_LFS_BATCH", "0")  # every tile resolved through the mirror
        res = run(capsys, "download", *ARGS, "--json")
    assert res.code == 0, res.err
    assert seen == hit
    assert local_files(data_dir) == expected_files(info, "gssic")


def test_a_file_that_always_gets_garbage_is_counted_listed_and_the_rest_verified(
    capsys, srv, info, data_dir, monkeypatch
):
    """Never exit 0 with a file missing: exactly that file is counted and listed."""
    bad = _tiles(info)[1]

    def rule(request: bytes) -> bytes | None:
        return MALFORMED if _target(request).endswith(bad) else None

    with mitm(srv.url, rule) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("M3LEO_LFS_BATCH", "0")
        monkeypatch.setenv("M3LEO_MAX_RETRIES", "1")
        res = run(capsys, "download", *ARGS, "--json")
    assert res.code == 1, res.err
    summary = json.loads(res.out)
    assert summary["failed"] == 1
    report = Path(summary["report"]).read_text().splitlines()
    assert [json.loads(line)["path"] for line in report] == [f"miniset/europe/{bad}"]
    assert "malformed Content-Length" in json.loads(report[0])["reason"]  # what it sent
    want = expected_files(info, "gssic")
    del want[bad]
    assert local_files(data_dir) == want


def test_a_folder_that_cannot_hold_files_fails_each_file_with_its_reason(
    capsys, srv, info, data_dir, monkeypatch
):
    """B1's local trigger, for real: the datakind folder is a file (ENOTDIR on every open),
    and one tile's path is a folder (IsADirectoryError on the rename, newcomer finding 12)."""
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    assert run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "europe").code == 0
    region = data_dir / "miniset" / "europe"
    (region / PARTITION).mkdir(parents=True)
    (region / PARTITION / "gssic").write_text("not a folder")
    res = run(capsys, "download", *ARGS, "--json")
    assert res.code == 1, res.err
    assert res.out, res.err
    summary = json.loads(res.out)
    assert summary["failed"] == len(_tiles(info)) and summary["downloaded"] == 2  # CSV, GeoJSON
    reasons = {json.loads(x)["reason"] for x in Path(summary["report"]).read_text().splitlines()}
    assert all("Not a directory" in r for r in reasons)
    assert "hint: the store cannot write these files" in res.err

    (region / PARTITION / "gssic").unlink()
    folder = region / _tiles(info)[0]
    folder.mkdir(parents=True)
    res = run(capsys, "download", *ARGS, "--json")
    assert res.code == 1
    summary = json.loads(res.out)
    assert summary["failed"] == 1 and summary["downloaded"] == len(_tiles(info)) - 1
    assert "Is a directory" in Path(summary["report"]).read_text()


def test_a_link_planted_at_a_part_or_a_tile_is_never_written_through(
    capsys, srv, info, data_dir, tmp_path, monkeypatch
):
    """B2: a shared store where someone planted links. A link at a part is removed and the
    tile fetched into a new file; a link at a tile's own path (here to a file of the tile's
    size) is refused as a path out of the store, counted and listed. Nothing outside changes."""
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    assert run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "europe").code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    tiles = _tiles(info)
    want = expected_files(info, "gssic")
    region = data_dir / "miniset" / "europe"
    (region / PARTITION / "gssic").mkdir(parents=True)
    victims = {}
    for i, rel in enumerate(tiles[:3]):
        victim = outside / f"victim{i}"
        victim.write_bytes(b"precious" if i != 1 else b"x" * len(want[rel]))
        victims[victim] = victim.read_bytes()
        (region / (rel + ".part" if i != 1 else rel)).symlink_to(victim)
    res = run(capsys, "download", *ARGS, "--json")
    assert res.code == 1
    summary = json.loads(res.out)
    assert summary["failed"] == 1 and tiles[1] in res.err and "escapes the store" in res.err
    assert {v: v.read_bytes() for v in victims} == victims  # nothing outside was written
    for rel in tiles:
        if rel != tiles[1]:
            assert not (region / rel).is_symlink() and (region / rel).read_bytes() == want[rel]
    assert not list(region.rglob("*.part"))


def test_unpack_never_writes_through_a_link_at_a_part(tmp_path):
    from m3leo_cli.full.unpack import write_atomic

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "store" / "full" / "europe" / "tile.tif"
    dest.parent.mkdir(parents=True)
    (dest.parent / "tile.tif.part").symlink_to(victim)
    write_atomic(dest, b"tile-bytes-8")
    assert victim.read_bytes() == b"precious"
    assert dest.read_bytes() == b"tile-bytes-8" and not dest.is_symlink()


def test_a_zero_byte_file_downloads(tmp_path):
    """B8: an empty file has a sha256 too, and gets a file."""
    from m3leo_cli.fetch.transfer import FileJob, Transfer
    from m3leo_cli.hub.client import HubClient
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(
        regions=("europe",), editions=("miniset",), tiles=3, chip_px=16, native_shape=(4, 5)
    )
    src = write_source(tmp_path / "src", cfg)
    (src.root / "M3LEO-miniset" / "europe" / "empty.bin").write_bytes(b"")
    with HubServer(src.root) as hub:
        settings = load_settings({"endpoint": hub.url, "data_dir": tmp_path / "d"}, env={})
        job = FileJob(
            url=f"{hub.url}/datasets/M3LEO-miniset/europe/resolve/main/empty.bin",
            dest=tmp_path / "d" / "empty.bin",
            size=0,
            checksum_kind="sha256",
            checksum=hashlib.sha256(b"").digest(),
        )
        with HubClient(settings) as client:
            assert Transfer(client, job).run() == "downloaded"
            assert Transfer(client, job).run() == "skipped"
    assert job.dest.read_bytes() == b"" and not os.path.lexists(str(job.dest) + ".part")


def test_a_stored_token_never_crosses_plain_http_to_another_machine(tmp_path):
    home = tmp_path / "hf"
    home.mkdir()
    (home / "token").write_text("hf_stored")
    env = {"HF_HOME": str(home), "HF_ENDPOINT": "http://mirror.example:8080"}
    s = load_settings({"data_dir": tmp_path}, env=env)
    assert s.token is None and "never sent over plain http://" in s.source_of("token")
    for loopback in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"):
        kept = load_settings({"data_dir": tmp_path}, env={**env, "HF_ENDPOINT": loopback})
        assert kept.token == "hf_stored" and token_warning(kept) is None
    tls = load_settings({"data_dir": tmp_path}, env={**env, "HF_ENDPOINT": "https://h.example"})
    assert tls.token == "hf_stored"
    explicit = load_settings({"data_dir": tmp_path}, env={**env, "HF_TOKEN": "hf_explicit"})
    assert explicit.token == "hf_explicit"
    line = token_warning(explicit)
    assert line is not None and "mirror.example" in line and "$HF_TOKEN" in line


def test_an_explicit_token_over_plain_http_is_said_once(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    monkeypatch.setenv("HF_TOKEN", "hf_explicit")
    res = run(capsys, "stats", "--edition", "miniset", "--region", "europe")
    assert res.err.count("warning: the token ($HF_TOKEN) is sent over plain http://") == 1


@pytest.mark.parametrize(
    "location",
    [
        b"http://127.0.0.1:99999/x",
        b"http://127.0.0.1:abc/x",
        b"http://[::1/x",
        "http://\u4f8b\u3048.\u30c6\u30b9\u30c8/x".encode(),
    ],
)
def test_a_redirect_to_a_malformed_url_is_a_protocol_error_naming_the_host(tmp_path, location):
    """B6 through the client: the Hub's Location is checked before it is followed."""
    from scripted import Scripted, scripted

    from m3leo_cli.errors import HubProtocolError
    from m3leo_cli.hub.client import HubClient

    answer = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    with scripted(Scripted([answer])) as hub:
        settings = load_settings({"endpoint": hub.url, "data_dir": tmp_path}, env={})
        with HubClient(settings) as client, pytest.raises(HubProtocolError) as exc:
            client.get_bytes("M3LEO-miniset/europe", "a" * 40, "x.csv")
    assert (
        "malformed URL" in exc.value.message
        and hub.url.removeprefix("http://") in exc.value.message
    )


def test_an_endless_revision_answer_is_refused_at_its_cap(capsys, srv, data_dir, monkeypatch):
    """B4: the revision answer never ends; the refresh stops at the cap with a clear error
    instead of growing until the OOM killer comes."""
    import socket
    import time

    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        frame = b"10000\r\n" + b" " * 65536 + b"\r\n"
        end = time.monotonic() + 30
        while time.monotonic() < end:
            conn.sendall(frame)

    def rule(request: bytes) -> object:
        return endless if b"/revision/" in request.split(b"\r\n", 1)[0] else None

    with mitm(srv.url, rule) as url:  # type: ignore[arg-type]
        monkeypatch.setenv("HF_ENDPOINT", url)
        started = time.monotonic()
        res = run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "europe")
    assert res.code == 1 and "larger than 16,777,216 bytes" in res.err
    assert time.monotonic() - started < 20


def test_a_region_a_mirror_lacks_says_so_not_log_in(capsys, srv, monkeypatch):
    """Newcomer finding 16: a mirror without a region answers 'this mirror has no ...', and
    the client says that, with a hint about the mirror, not 'private or gated, log in'."""
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    res = run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "conus")
    assert res.code == 1
    assert "this mirror has no M3LEO-miniset/conus" in res.err
    assert "does not hold it" in res.err and "hf auth login" not in res.err


def test_full_edition_shards_whose_ranges_get_garbage_fall_back_and_a_bad_folder_is_counted(
    capsys, tmp_path, data_dir, monkeypatch
):
    """Shard jobs (issue 23 item 1): a content host answering every range request with a
    malformed head makes each shard fall back to the verified whole shard; a datakind folder
    that is a file makes that shard's tiles counted failures while the run goes on."""
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(regions=("europe",), editions=("full",), tiles=12, datakinds=("s1grd-2020",),
                      tiles_per_shard=6, rows_per_row_group=1, chip_px=32)  # fmt: skip
    src = write_source(tmp_path / "src", cfg)
    sel = ("--edition", "full", "--region", "europe", "--modality", "s1grd-2020")
    with HubServer(src.root) as hub:

        def rule(request: bytes) -> bytes | None:
            ranged = b"\r\nrange: bytes=" in request.lower() and b".parquet" in request
            return MALFORMED if ranged else None

        with mitm(hub.url, rule) as url:
            monkeypatch.setenv("HF_ENDPOINT", url)
            monkeypatch.setenv("M3LEO_LFS_BATCH", "0")
            monkeypatch.setenv("M3LEO_MAX_RETRIES", "1")
            res = run(capsys, "download", *sel, "--fetch", "ranges", "--json")
        assert res.code == 0, res.err
        assert "with malformed Content-Length" in res.err  # said, then the whole shard
        tiles = list(src.repo("full", "europe").coverage["s1grd-2020"])
        assert json.loads(res.out)["downloaded"] >= len(tiles)

        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("M3LEO_DATA_DIR", str(tmp_path / "other"))
        first = src.repo("full", "europe").tile_path("s1grd-2020", tiles[0])
        folder = tmp_path / "other" / "full" / "europe" / first.rsplit("/", 1)[0]
        folder.parent.mkdir(parents=True)
        folder.write_text("not a folder")
        res = run(capsys, "download", *sel, "--fetch", "whole", "--json")
    assert res.code == 1
    summary = json.loads(res.out)
    assert summary["failed"] == len(tiles)  # every tile of the datakind lives in that folder


def test_export_outputs_never_write_through_a_link_at_a_part(tmp_path):
    """Issue 23 item 2 for local export targets: a link planted at an output's .part (or at
    the copy a geotiff export makes) is removed, never written through."""
    from m3leo_cli.export.geotiff import copy_file
    from m3leo_cli.export.outputs import commit, writing

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    final = tmp_path / "out" / "train-000000.npz"
    final.parent.mkdir()
    (tmp_path / "out" / "train-000000.npz.part").symlink_to(victim)
    with writing(final) as fh:
        fh.write(b"sample bytes")
    commit(final)
    assert victim.read_bytes() == b"precious" and final.read_bytes() == b"sample bytes"
    src = tmp_path / "tile.tif"
    src.write_bytes(b"tile")
    dst = tmp_path / "out" / "tile.tif.part"
    dst.symlink_to(victim)
    copy_file(src, dst)
    assert victim.read_bytes() == b"precious" and dst.read_bytes() == b"tile"
    assert not dst.is_symlink()


def test_verify_reports_links_and_hard_links_and_repair_gives_own_copies(
    capsys, srv, info, data_dir, tmp_path, monkeypatch
):
    """Issue 23 item 2: `verify` never calls a link, or a file whose bytes another name can
    change (a hard link out of the store), ok; --repair gives the store its own copies."""
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    assert run(capsys, "download", *ARGS).code == 0
    region = data_dir / "miniset" / "europe"
    tiles = _tiles(info)
    outside = tmp_path / "elsewhere.nc"
    os.link(region / tiles[0], outside)  # a hard link out of the store
    (region / tiles[1]).unlink()
    (region / tiles[1]).symlink_to(region / tiles[2])  # a link inside the store
    res = run(capsys, "verify", *ARGS, "--json")
    assert res.code == 1
    doc = json.loads(res.out)
    assert sorted(doc["linked"]) == sorted(f"miniset/europe/{t}" for t in tiles[:2])
    assert doc["ok"] == len(expected_files(info, "gssic")) - 2
    res = run(capsys, "verify", *ARGS, "--repair")
    assert res.code == 0, res.err
    for t in tiles[:2]:
        st = (region / t).lstat()
        assert st.st_nlink == 1 and not (region / t).is_symlink()
    assert outside.read_bytes() == (region / tiles[0]).read_bytes()  # its bytes, its own inode
    assert run(capsys, "verify", *ARGS).code == 0


def test_a_rate_limited_mirror_ends_with_the_pacing_settings_not_the_network(
    capsys, srv, data_dir, monkeypatch
):
    """Newcomer finding 20 (W04): a mirror that keeps answering 429 ends with a hint naming
    --workers and M3LEO_REQUESTS_PER_WINDOW, not 'check the network'."""
    from m3leo_cli.server import Faults

    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    monkeypatch.setenv("M3LEO_MAX_RETRIES", "1")
    assert run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "europe").code == 0
    srv.faults = Faults(rate_limit_first=100, retry_after=1)
    res = run(capsys, "download", *ARGS)
    assert res.code == 1
    hint = res.err.strip().splitlines()[-1]
    assert hint.startswith("hint: ") and "M3LEO_REQUESTS_PER_WINDOW" in hint and "--workers" in hint
    assert "check the network" not in res.err
