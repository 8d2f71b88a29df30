"""Which row group of which shard holds each tile a streamed selection needs, and where the
tile will be once fetched.

The manifest says which shard holds a tile; the shard's footer and its ``path`` column chunks
(``full.index``, cached on disk by the shard's sha256, so a second run costs no request) say
which row group. A tile already in the store is read from the store, never fetched. Every
other tile is located in the stream cache: ``<cache>/<shard sha256>/<row group>/<path>``, a
path that depends only on the shard's content, so a shard replaced on the Hub (another sha256)
can never be served from an older one's cache, and nothing there looks like the store.

The shards are addressed at the manifest's commit. A repo that moved on since the manifest was
built is refused (its shards may differ from what the manifest lists) unless the revision is
pinned (``--revision``, ``M3LEO_REVISION``): then the pinned commit is what is streamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import StreamError, TrainConfigError

if TYPE_CHECKING:
    from ..config import Settings
    from ..full.index import ShardIndex
    from ..full.plan import ShardTask
    from ..hub.client import HubClient
    from ..selection import Selection
    from ..store.layout import Store


@dataclass(frozen=True)
class RowGroup:
    """One row group of one shard: the unit fetched, cached and evicted."""

    region: str
    shard: str  # repo path of the shard
    sha256: str  # the shard's, hex: names its cache folder
    size: int  # the shard's size in bytes
    commit: str  # the manifest's commit: the revision the shard is fetched at
    rg: int

    @property
    def key(self) -> str:
        return f"{self.sha256}/{self.rg}"

    @property
    def label(self) -> str:
        return f"{self.region}/{self.shard} row group {self.rg}"


@dataclass
class StreamPlan:
    """What a selection needs from the Hub: row groups, their tiles, bytes and byte spans."""

    edition: str
    data_dir: Path
    cache_root: Path
    groups: dict[RowGroup, dict[str, str]] = field(default_factory=dict)  # -> {tile id: path}
    group_bytes: dict[RowGroup, int] = field(default_factory=dict)  # bytes a fetch reads
    spans: dict[RowGroup, list[tuple[int, int]]] = field(default_factory=dict)  # [start, end)
    footers: dict[str, bytes] = field(default_factory=dict)  # shard sha256 -> footer bytes
    where: dict[tuple[str, str], RowGroup] = field(default_factory=dict)  # (region, path) ->
    local: set[tuple[str, str]] = field(default_factory=set)  # (region, path) in the store
    absent: list[tuple[str, str]] = field(default_factory=list)  # listed, shard lacks it
    index_requests: int = 0  # spent reading footers and path columns while planning
    index_bytes: int = 0
    _by_path: dict[Path, RowGroup] = field(default_factory=dict, repr=False)

    def cache_path(self, group: RowGroup, path: str) -> Path:
        return self.cache_root / group.sha256 / str(group.rg) / path

    def locate(self, edition: str, region: str, path: str) -> Path | None:
        """``store.layout.Locate``: the store's file when it is there, else its cache path."""
        if (region, path) in self.local:
            from ..store.layout import Store

            return Store(self.data_dir).local_path(edition, region, path)
        group = self.where.get((region, path))
        return None if group is None else self.cache_path(group, path)

    def group_of(self, path: Path) -> RowGroup | None:
        """The row group a located cache path comes from (None: a store file)."""
        if not self._by_path:
            for (_, p), g in self.where.items():
                self._by_path[self.cache_path(g, p)] = g
        return self._by_path.get(Path(path))

    @property
    def total_bytes(self) -> int:
        return sum(self.group_bytes.values())

    def __getstate__(self) -> dict[str, Any]:  # sent to DataLoader workers: no lookup cache
        state = dict(self.__dict__)
        state["_by_path"] = {}
        return state


def check_streamable(edition: str) -> None:
    if spec.get_edition(edition).name != "full":
        raise TrainConfigError(
            f"the {edition} edition has no Parquet shards to stream from (plain files only)",
            "read the downloaded tiles with data.source=store (m3leo download fetches them), "
            "or stream the full edition: data.edition=full",
        )


def plan_stream(
    settings: Settings, selection: Selection, cache_root: Path, *, check_commit: bool = True
) -> StreamPlan:
    """Locate every selected tile (``selection``'s regions, splits and modalities) for a stream.

    Needs the cached manifest (fetched when missing, as ``download`` does) and each needed
    shard's index (footer plus the ``path`` chunks of candidate row groups: cached, so a
    second plan of the same shards sends no request, and works offline).
    """
    import pyarrow.compute as pc

    from ..catalog.info import load_manifest
    from ..catalog.query import select
    from ..catalog.refresh import ensure_manifest
    from ..full.plan import ShardTask
    from ..hub.client import HubClient
    from ..store.layout import Store

    check_streamable(selection.edition)
    ensure_manifest(settings, "full", selection.region_names)
    rows = (
        select(settings, selection)
        .select(["region", "datakind", "tile_id", "path", "shard", "commit"])
        .to_pylist()
    )
    regions = sorted({r["region"] for r in rows})
    man = load_manifest(settings, "full", regions)
    shard_rows = man.filter(pc.equal(man["kind"], "shard")).to_pylist()
    shards = {(r["region"], r["path"]): r for r in shard_rows}
    store = Store(settings.data_dir)
    plan = StreamPlan("full", settings.data_dir, cache_root)
    tasks: dict[tuple[str, str], ShardTask] = {}
    for r in rows:
        if store.local_path("full", r["region"], r["path"]).is_file():
            plan.local.add((r["region"], r["path"]))
            continue
        srow = shards.get((r["region"], r["shard"])) if r["shard"] else None
        if srow is None or not srow.get("checksum") or srow.get("size") is None:
            plan.absent.append((r["region"], r["path"]))
            continue
        key = (r["region"], r["shard"])
        if key not in tasks:
            tasks[key] = ShardTask(
                region=r["region"], shard=r["shard"], datakind=r["datakind"],
                size=int(srow["size"]), sha256=bytes(srow["checksum"]).hex(),
                commit=srow["commit"], wanted={}, known=frozenset(),
            )  # fmt: skip
        tasks[key].wanted[r["tile_id"]] = r["path"]
    with HubClient(settings) as client:  # one client: the commit check, then the indexes
        if tasks and check_commit:
            _check_commits(client, settings, store, {t.region: t.commit for t in tasks.values()})
        _index_shards(client, settings, store, plan, list(tasks.values()))
    return plan


def _check_commits(
    client: HubClient, settings: Settings, store: Store, commits: dict[str, str]
) -> None:
    """Refuse when a region's repo moved on since its manifest, unless the revision is pinned
    (then ``catalog.info.check_pinned`` has checked the manifest was built from it, and its
    commits are streamed as they are; offline, nothing can be asked)."""
    if settings.offline or settings.source_of("revision") != "default":
        return
    from ..catalog.manifest import read_summary

    ed = spec.get_edition("full")
    for region, commit in sorted(commits.items()):
        now = client.revision(ed.repo_id(region), settings.revision)
        if now == commit:
            continue
        summary = read_summary(store.manifest_path("full", region))
        built = str(summary.get("revision") or settings.revision)
        raise StreamError(
            f"{ed.repo_id(region)} is at commit {now[:12]} on the Hub, but the manifest "
            f"lists the shards of commit {commit[:12]}: they may have changed",
            f"refresh the manifest to stream the new commit (m3leo catalog refresh "
            f"--edition full --region {region}), or pin the revision it was built from to "
            f"stream its commit as it is: M3LEO_REVISION={built}",
        )


def _index_shards(
    client: HubClient, settings: Settings, store: Store, plan: StreamPlan,
    tasks: Sequence[ShardTask],
) -> None:  # fmt: skip
    """Fetch (or load) each shard's index and place every wanted tile in its row group."""
    from ..full.index import coalesce
    from ..full.plan import GAP, fetch_index

    index_dir = store.state_dir / "shard-index"

    def one(task: ShardTask) -> ShardIndex:
        return fetch_index(task, shard_reader(client, settings, task), index_dir)

    workers = max(1, min(settings.workers, 8, len(tasks)))
    with ThreadPoolExecutor(workers) as pool:
        indexes = list(pool.map(one, tasks))
    for task, idx in zip(tasks, indexes, strict=True):
        plan.footers[task.sha256] = idx.footer
        plan.index_requests += task.index_requests
        plan.index_bytes += task.index_bytes
        for tile, path in sorted(task.wanted.items()):
            hit = idx.locate(f"{task.region}/{path}")
            if hit is None:
                plan.absent.append((task.region, path))
                continue
            g = RowGroup(task.region, task.shard, task.sha256, task.size, task.commit, hit[0])
            if g not in plan.groups:
                plan.groups[g] = {}
                plan.spans[g] = coalesce(idx.unpack_spans(g.rg), GAP)
                plan.group_bytes[g] = sum(e - s for s, e in plan.spans[g])
            plan.groups[g][tile] = path
            plan.where[(task.region, path)] = g


def shard_reader(client: HubClient, settings: Settings, task: Any) -> Any:
    """``full.plan.HttpRanges`` for a shard at its commit (Hub engine: pacing, token, proxies,
    retries, a dropped connection resumed at the byte it reached)."""
    from ..full.plan import HttpRanges
    from ..hub.client import resolve_url

    repo = spec.get_edition("full").repo_id(task.region)
    return HttpRanges(client, resolve_url(settings.endpoint, repo, task.commit, task.shard))
