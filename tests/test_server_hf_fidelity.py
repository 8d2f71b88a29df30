"""Protocol fidelity: the real huggingface_hub client downloads from our server, byte for byte."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path

import pytest

from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

MINI = "M3LEO-miniset/europe"
FULL = "M3LEO/europe"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    config = SynthConfig(tiles=5, chip_px=16, datakinds=None)
    return write_source(tmp_path_factory.mktemp("src"), config)


@pytest.fixture
def server(source: SourceInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with HubServer(source.root, page_size=7) as srv:  # small pages: the client must follow Link
        yield srv


def _local_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    }


def test_snapshot_download_gets_exactly_the_allowed_files(
    server: HubServer, source: SourceInfo, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    repo = source.repo("miniset", "europe")
    patterns = ["*/gssic/*", "*.csv", "README.md"]
    out = tmp_path / "dl"
    snapshot_download(
        repo_id=MINI,
        repo_type="dataset",
        allow_patterns=patterns,
        local_dir=out,
        endpoint=server.url,
        token=False,
    )
    want = {p for p in repo.files if any(fnmatch.fnmatch(p, pat) for pat in patterns)}
    assert any(p.endswith(".nc") for p in want) and any(p.endswith(".csv") for p in want)
    got = _local_files(out)
    assert set(got) == want
    for path, data in got.items():
        assert data == (repo.root / path).read_bytes(), path
    tree_pages = [r for r in server.log if "/tree/" in r.path]
    assert len(tree_pages) > 1 and all("cursor=" in r.query for r in tree_pages[1:])
    content = [r for r in server.log if r.origin == "content"]
    assert {r.repo_path for r in content} == {p for p in want if p.endswith(".nc")}
    assert not any("authorization" in r.headers for r in server.log)

    server.clear_log()  # a second run is a no-op: one revision call, nothing fetched
    snapshot_download(
        repo_id=MINI, repo_type="dataset", allow_patterns=patterns, local_dir=out,
        endpoint=server.url, token=False,
    )  # fmt: skip
    assert [r.path for r in server.log] == [f"/api/datasets/{MINI}/revision/main"]


def test_hf_hub_download_one_lfs_and_one_git_file(
    server: HubServer, source: SourceInfo, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download

    full = source.repo("full", "europe")
    shard = next(iter(full.shards.values()))
    for path in (shard.path, "README.md"):
        got = hf_hub_download(
            repo_id=FULL,
            repo_type="dataset",
            filename=path,
            revision=server.commit(FULL),
            local_dir=tmp_path / "one",
            endpoint=server.url,
            token=False,
        )
        assert Path(got).read_bytes() == (full.root / path).read_bytes()


def test_hf_api_listing_and_info_match_the_folder(server: HubServer, source: SourceInfo) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=server.url, token=False)
    repo = source.repo("miniset", "europe")
    info = api.dataset_info(MINI, files_metadata=True)
    assert info.sha == server.commit(MINI)
    assert {s.rfilename for s in info.siblings or []} == set(repo.files)
    entries = list(api.list_repo_tree(MINI, repo_type="dataset", recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    assert set(files) == set(repo.files)
    for path, meta in repo.files.items():
        lfs = files[path].lfs
        if path.endswith((".nc", ".tif")):
            assert lfs is not None and lfs.sha256 == meta.sha256 and lfs.size == meta.size
    some = sorted(repo.files)[:3]
    got = api.get_paths_info(MINI, some, repo_type="dataset")
    assert sorted(e.path for e in got) == some
    assert api.file_exists(MINI, some[0], repo_type="dataset")
    assert not api.file_exists(MINI, "nope.txt", repo_type="dataset")
