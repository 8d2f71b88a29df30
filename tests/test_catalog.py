"""Catalog end to end: refresh against the loopback Hub server, then select and stats."""

from __future__ import annotations

import shutil
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from catalog_source import own_source, shared_source

from m3leo_cli.catalog.info import load_manifest, manifest_info, modalities, regions
from m3leo_cli.catalog.query import select
from m3leo_cli.catalog.refresh import ensure_manifest, refresh
from m3leo_cli.catalog.stats import stats
from m3leo_cli.config import Settings, load_settings
from m3leo_cli.errors import (
    AuthError,
    EmptySelectionError,
    HubConnectionError,
    HubProtocolError,
    ManifestCorruptError,
    ManifestNotFoundError,
    OfflineError,
    RateLimitedError,
    RemoteNotFoundError,
    SelectionError,
    TileNotFoundError,
)
from m3leo_cli.selection import build_selection
from m3leo_cli.server import Faults, HubServer
from m3leo_cli.store.layout import Store
from m3leo_cli.testing.synth import SourceInfo


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def server(source: SourceInfo) -> Iterator[HubServer]:
    with HubServer(source.root, page_size=5) as srv:
        yield srv


@pytest.fixture
def hub(server: HubServer) -> HubServer:
    server.reset_faults()
    server.clear_log()
    return server


def settings_for(url: str, **kw: Any) -> Settings:
    return load_settings({"endpoint": url, **kw})


def expected_stats(source: SourceInfo, edition: str) -> dict[tuple, tuple[int, int]]:
    """(region, datakind, split) -> (tiles, bytes), computed from what the source wrote."""
    out: Counter = Counter()
    sizes: Counter = Counter()
    for repo in source:
        if repo.edition != edition:
            continue
        for dk in repo.datakinds:
            for tid, info in repo.tiles.items():
                key = (repo.region, dk, info.split)
                if edition == "miniset":
                    if (dk, tid) in repo.tile_files:
                        out[key] += 1
                        sizes[key] += repo.tile_files[(dk, tid)].size
                elif repo.shard_for(dk, tid) is not None:
                    out[key] += 1
        if edition == "full":
            for shard in repo.shards.values():
                sizes[(repo.region, shard.datakind, shard.split)] += shard.size
    return {k: (out[k], sizes[k]) for k in out}


@pytest.mark.parametrize("edition", ["miniset", "full"])
def test_refresh_then_stats_match_the_source(
    hub: HubServer, source: SourceInfo, edition: str
) -> None:
    s = settings_for(hub.url)
    report = refresh(s, edition, ["europe", "conus"])
    assert [r.status for r in report.regions] == ["created", "created"]
    assert report.warnings == []
    tree_calls = [r for r in hub.log if "/tree/" in r.path]
    assert any("cursor=" in r.query for r in tree_calls)  # pagination was followed
    rows = stats(s, build_selection(edition=edition, regions=["europe", "conus"]))
    got = {(r["region"], r["modality"], r["split"]): (r["tiles"], r["bytes"]) for r in rows}
    assert got == expected_stats(source, edition)
    assert {r["edition"] for r in rows} == {edition}
    assert all(r["local_tiles"] == 0 for r in rows)
    assert list(rows[0]) == ["edition", "region", "modality", "split", "tiles", "bytes",
                             "local_tiles"]  # fmt: skip
    for r in report.regions:
        repo = source.repo(edition, r.region)
        assert r.files == len(repo.files) and r.bytes == repo.total_bytes()


def test_same_commit_is_a_noop(hub: HubServer) -> None:
    s = settings_for(hub.url)
    refresh(s, "miniset", ["europe"])
    path = Store(s.data_dir).manifest_path("miniset", "europe")
    stamp = path.stat().st_mtime_ns
    hub.clear_log()
    report = refresh(s, "miniset", ["europe"])
    assert report.regions[0].status == "unchanged"
    assert [r.path for r in hub.log] == ["/api/datasets/M3LEO-miniset/europe/revision/main"]
    assert path.stat().st_mtime_ns == stamp


def test_regions_commits_are_asked_for_at_once(hub: HubServer) -> None:
    """An unchanged catalog costs one round trip, not one per region: both revision requests
    arrive before the first answer (each answer takes 1 s) could have let a second one go."""
    s = settings_for(hub.url)
    refresh(s, "miniset", ["europe", "conus"])
    hub.faults = Faults(latency_ms=1000)
    hub.clear_log()
    try:
        report = refresh(s, "miniset", ["europe", "conus"])
    finally:
        hub.faults = Faults()  # the server is shared by the module's tests
    assert [r.status for r in report.regions] == ["unchanged", "unchanged"]
    assert sorted(r.path for r in hub.log) == [
        "/api/datasets/M3LEO-miniset/conus/revision/main",
        "/api/datasets/M3LEO-miniset/europe/revision/main",
    ]
    assert abs(hub.log[1].arrived - hub.log[0].arrived) < 0.9


def test_one_region_never_rewrites_another(hub: HubServer) -> None:
    s = settings_for(hub.url)
    refresh(s, "miniset", ["europe", "conus"])
    store = Store(s.data_dir)
    conus = store.manifest_path("miniset", "conus")
    before = (conus.read_bytes(), conus.stat().st_mtime_ns)
    report = refresh(s, "miniset", ["europe"], force=True)
    assert report.regions[0].status == "updated"
    assert (conus.read_bytes(), conus.stat().st_mtime_ns) == before


def test_new_commit_reports_added_removed_changed(tmp_path: Path) -> None:
    root, info = own_source(tmp_path)
    repo = info.repo("miniset", "europe")
    with HubServer(root, page_size=4) as srv:
        s = settings_for(srv.url)
        first = refresh(s, "miniset", ["europe"]).regions[0]
        tiles = sorted(p for p, f in repo.files.items() if f.kind == "tile")
        base = root / "M3LEO-miniset" / "europe"
        (base / tiles[0]).unlink()
        (base / tiles[1]).write_bytes(b"changed bytes")
        (base / "NOTES.txt").write_text("new file\n")
        second = refresh(s, "miniset", ["europe"]).regions[0]
    assert second.status == "updated" and second.previous_commit == first.commit
    assert second.commit != first.commit
    assert (second.added, second.removed, second.changed) == (["NOTES.txt"], [tiles[0]], [tiles[1]])
    rows = select(s, build_selection(edition="miniset", tiles=tiles[1].split("/")[-1][:13]))
    changed = [r for r in rows.to_pylist() if r["path"] == tiles[1]]
    assert changed[0]["size"] == len(b"changed bytes")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        ({"status_for_paths": {"SPLITS": 404}}, RemoteNotFoundError, "not found"),
        ({"status_for_paths": {"SPLITS": 401}}, AuthError, "access denied"),
        ({"garbage_json": True}, HubProtocolError, "invalid JSON"),
        ({"rate_limit_first": 50, "retry_after": 0}, RateLimitedError, "rate-limited"),
        ("refused", HubConnectionError, "cannot reach"),
    ],
)
def test_failures_leave_the_old_manifest_intact(
    tmp_path: Path, fault: Any, error: type, text: str
) -> None:
    root, info = own_source(tmp_path)
    repo = info.repo("miniset", "europe")
    split_csv = next(p for p in repo.files if p.endswith("_miniset.csv"))
    with HubServer(root, page_size=4) as srv:
        s = settings_for(srv.url, max_retries=0)
        refresh(s, "miniset", ["europe"])
        path = Store(s.data_dir).manifest_path("miniset", "europe")
        before = path.read_bytes()
        (root / "M3LEO-miniset" / "europe" / "NOTES.txt").write_text("a new commit\n")
        if fault == "refused":
            s = settings_for(f"http://127.0.0.1:{_closed_port()}", max_retries=0)
        else:
            paths = {split_csv if k == "SPLITS" else k: v
                     for k, v in fault.pop("status_for_paths", {}).items()}  # fmt: skip
            srv.faults = Faults(status_for_paths=paths, **fault)
        with pytest.raises(error, match=text) as err:
            refresh(s, "miniset", ["europe"])
    assert err.value.hint
    assert "\n" not in err.value.message
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]


def test_unknown_repo_is_remote_not_found(hub: HubServer) -> None:
    s = settings_for(hub.url)
    with pytest.raises(RemoteNotFoundError):
        refresh(s, "miniset", ["pakin"])  # the source has no pakin repo
    assert not Store(s.data_dir).manifest_path("miniset", "pakin").exists()


def test_hostile_listing_paths_are_dropped(hub: HubServer) -> None:
    hub.faults = Faults(hostile_paths=("../../escape.tif", "/abs/path.nc"))
    s = settings_for(hub.url)
    report = refresh(s, "miniset", ["europe"])
    assert sum("escape the store" in w for w in report.warnings) == 2
    paths = load_manifest(s, "miniset", ["europe"])["path"].to_pylist()
    assert not any("escape" in p or p.startswith("/") for p in paths)


def test_offline_refresh_refuses_and_queries_use_the_cache(hub: HubServer) -> None:
    s = settings_for(hub.url)
    refresh(s, "miniset", ["europe"])
    offline = settings_for(hub.url, offline=True)
    hub.clear_log()
    with pytest.raises(OfflineError, match="offline"):
        refresh(offline, "miniset", ["europe"])
    rows = stats(offline, build_selection(edition="miniset", regions=["europe"]))
    assert rows and hub.log == []
    with pytest.raises(ManifestNotFoundError, match="offline"):
        ensure_manifest(offline, "miniset", ["conus"])


def test_ensure_manifest_refreshes_only_what_is_missing(hub: HubServer) -> None:
    s = settings_for(hub.url)
    refresh(s, "miniset", ["europe"])
    hub.clear_log()
    ensure_manifest(s, "miniset", ["europe", "conus"])
    assert hub.log and all("/M3LEO-miniset/conus/" in r.path for r in hub.log)
    assert set(load_manifest(s, "miniset")["region"].to_pylist()) == {"europe", "conus"}


# ------------------------------------------------------------------------------ select


@pytest.fixture
def mini(hub: HubServer) -> Settings:
    s = settings_for(hub.url)
    refresh(s, "miniset", ["europe", "conus"])
    return s


def _sel(**kw: Any):
    kw.setdefault("edition", "miniset")
    return build_selection(**kw)


def test_select_by_alias_split_and_region(mini: Settings, source: SourceInfo) -> None:
    t = select(mini, _sel(regions=["europe"], modalities=["coherence"], splits=["train"]))
    repo = source.repo("miniset", "europe")
    want = sorted(x for x in repo.coverage["gssic"] if repo.split_of(x) == "train")
    assert sorted(t["tile_id"].to_pylist()) == want
    assert set(t["datakind"].to_pylist()) == {"gssic"}


def test_select_family_and_year_in_the_full_edition(hub: HubServer, source: SourceInfo) -> None:
    s = settings_for(hub.url)
    refresh(s, "full", ["europe"])
    t = select(s, build_selection(regions=["europe"], modalities=["s1grd"]))
    assert set(t["datakind"].to_pylist()) == {"s1grd-2018", "s1grd-2019", "s1grd-2020"}
    t = select(s, build_selection(regions=["europe"], modalities=["s1grd"], years=[2019]))
    assert set(t["datakind"].to_pylist()) == {"s1grd-2019"}
    assert t["shard"].null_count == 0
    with pytest.raises(SelectionError, match="full edition publishes no tile geometry") as e:
        select(s, build_selection(regions=["europe"], bbox="5,45,6,46"))
    assert "--edition miniset" in e.value.hint and e.value.exit_code == 2  # a usage mistake


def test_missing_datakind_says_why(mini: Settings) -> None:
    with pytest.raises(EmptySelectionError, match="region europe has no gunw datakind"):
        select(mini, _sel(regions=["europe"], modalities=["gunw"]))
    t = select(mini, _sel(regions=["europe", "conus"], modalities=["gunw"]))
    assert set(t["region"].to_pylist()) == {"conus"}


def test_bbox_intersects_and_bbox_outside_the_region(mini: Settings, source: SourceInfo) -> None:
    repo = source.repo("miniset", "europe")
    tid, info = next(iter(repo.tiles.items()))
    w, s_, e, n = info.bbox
    t = select(mini, _sel(regions=["europe"], bbox=f"{w},{s_},{e},{n}"))
    want = {
        x
        for x, i in repo.tiles.items()
        if i.bbox[0] <= e and i.bbox[2] >= w and i.bbox[1] <= n and i.bbox[3] >= s_
    }
    assert tid in want and set(t["tile_id"].to_pylist()) == want
    with pytest.raises(EmptySelectionError, match="overlaps no miniset tile of region europe"):
        select(mini, _sel(regions=["europe"], bbox="-120,30,-119,31"))


def test_tiles_and_limit(mini: Settings, source: SourceInfo) -> None:
    repo = source.repo("miniset", "europe")
    ids = sorted(repo.tiles)
    t = select(mini, _sel(regions=["europe"], tiles=",".join(ids[:2])))
    assert set(t["tile_id"].to_pylist()) == set(ids[:2])
    t = select(mini, _sel(regions=["europe"], limit=3))
    assert sorted(set(t["tile_id"].to_pylist())) == ids[:3]
    typo = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    with pytest.raises(TileNotFoundError, match="not in the miniset manifest of europe") as e:
        select(mini, _sel(regions=["europe"], tiles=f"{ids[1]},{typo}"))
    assert ids[0] in e.value.hint


def test_local_tiles_counts_files_already_in_the_store(mini: Settings, source: SourceInfo) -> None:
    repo = source.repo("miniset", "europe")
    store = Store(mini.data_dir)
    done = [f for (dk, _), f in repo.tile_files.items() if dk == "srtmdem"][:3]
    for f in done:
        dest = store.local_path("miniset", "europe", f.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo.root / f.path, dest)
    rows = stats(mini, _sel(regions=["europe"], modalities=["dem"]))
    assert sum(r["local_tiles"] for r in rows) == 3
    assert sum(r["tiles"] for r in rows) == len(repo.coverage["srtmdem"])


def test_corrupt_manifest_is_reported_then_rebuilt(mini: Settings) -> None:
    path = Store(mini.data_dir).manifest_path("miniset", "europe")
    path.write_bytes(b"PAR1 garbage")
    with pytest.raises(ManifestCorruptError, match="not an m3leo manifest"):
        stats(mini, _sel(regions=["europe"]))
    report = refresh(mini, "miniset", ["europe"])
    assert report.regions[0].status == "created"
    assert any("unreadable manifest" in w for w in report.warnings)
    assert stats(mini, _sel(regions=["europe"]))


def test_regions_and_modalities_read_the_summaries(mini: Settings, source: SourceInfo) -> None:
    by_region = {r["region"]: r for r in regions(mini)}
    assert by_region["europe"]["manifests"]["miniset"]["status"] == "ok"
    assert by_region["europe"]["manifests"]["full"]["status"] == "missing"
    assert by_region["europe"]["manifests"]["miniset"]["tiles"] == 10
    mods = {m["datakind"]: m for m in modalities(mini, "miniset", ["europe"])}
    repo = source.repo("miniset", "europe")
    assert set(mods) == set(repo.datakinds)
    gssic = mods["gssic"]
    assert gssic["tiles"] == len(repo.coverage["gssic"]) and "coherence" in gssic["aliases"]
    assert gssic["bytes"] == sum(f.size for (dk, _), f in repo.tile_files.items() if dk == "gssic")
    info = manifest_info(mini, "miniset", ["europe"])[0]
    assert info["status"] == "ok" and len(info["bbox"]) == 4
    t = load_manifest(mini, "miniset", ["europe"])
    assert pc.all(pc.equal(t["commit"], info["commit"])).as_py()


def test_full_stats_with_tile_filters_count_the_shards_they_need(
    hub: HubServer, source: SourceInfo
) -> None:
    s = settings_for(hub.url)
    refresh(s, "full", ["europe"])
    repo = source.repo("full", "europe")
    tid = sorted(repo.tiles)[0]
    rows = stats(s, build_selection(regions=["europe"], tiles=tid), files=True)
    for row in rows:
        shard = repo.shard_for(row["modality"], tid)
        assert shard is not None and row["split"] == repo.split_of(tid)
        assert (row["tiles"], row["files"], row["bytes"]) == (1, 1, shard.size)
    assert {r["modality"] for r in rows} == {dk for dk in repo.datakinds if repo.shard_for(dk, tid)}
    limited = stats(s, build_selection(regions=["europe"], modalities=["dem"], limit=2))
    assert sum(r["tiles"] for r in limited) == 2
