"""The catalog: build the local manifest from the Hub, keep it current, and describe it.

``refresh`` pins a commit, lists the repo tree (paginated), fetches the split CSV / the
``_parquet.csv`` / the GeoJSON, and writes one manifest per edition and region. Nothing is
written until a region's listing has fully succeeded, so a failing Hub leaves the old manifest
as it was. Reading the manifests is :mod:`.info`, :mod:`.query` and :mod:`.stats`.

pyarrow and the modules that build the manifest are imported in the background while the
first requests wait on the network (``_preload``): a download's first request leaves within
a quarter of a second of the command starting instead of after ~0.2 s of imports.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import spec
from ..config import Settings
from ..errors import (
    ChecksumMismatchError,
    ManifestCorruptError,
    ManifestNotFoundError,
    OfflineError,
    RemoteNotFoundError,
    UnknownModalityError,
)
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..store.layout import Store

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "RefreshReport",
    "RegionRefresh",
    "ensure_manifest",
    "refresh",
]


@dataclass
class RegionRefresh:
    """What a refresh did to one edition+region manifest."""

    edition: str
    region: str
    repo_id: str
    commit: str
    previous_commit: str | None
    status: str  # "created" | "updated" | "unchanged"
    files: int = 0
    tiles: int = 0
    bytes: int = 0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RefreshReport:
    edition: str
    revision: str
    regions: list[RegionRefresh] = field(default_factory=list)
    # Regions the endpoint does not have (a mirror of some regions), left out of a refresh of
    # every region; `absent_note` says so in one line.
    absent: list[str] = field(default_factory=list)
    absent_note: str = ""

    @property
    def warnings(self) -> list[str]:
        return [f"{r.region}: {w}" for r in self.regions for w in r.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "edition": self.edition,
            "revision": self.revision,
            "regions": [asdict(r) for r in self.regions],
            "absent": self.absent,
        }


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _preload() -> None:
    """Import what building a manifest needs, in a background thread (see the docstring)."""

    def run() -> None:
        try:
            from . import build, manifest, stats  # noqa: F401
        except ImportError:
            pass  # the main thread's own import reports it

    threading.Thread(target=run, name="m3leo-preload", daemon=True).start()


def summarize(table: pa.Table, edition: str, region: str, commit: str, revision: str) -> dict:
    """The summary stored in the manifest footer (read without touching data pages)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from .stats import tally

    datakinds: dict[str, dict[str, Any]] = {}
    for row in tally(table, edition):
        dk = datakinds.setdefault(
            row["datakind"], {"tiles": 0, "files": 0, "bytes": 0, "splits": {}}
        )
        dk["tiles"] += row["tiles"]
        dk["files"] += row["files"]
        dk["bytes"] += row["bytes"]
        dk["splits"][row["split"] or "none"] = {k: row[k] for k in ("tiles", "files", "bytes")}
    # the folder of each datakind: the parent of its first row's path
    enc = pc.dictionary_encode(table["datakind"].combine_chunks())
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
    uniq, first = np.unique(codes, return_index=True)
    for code, i in zip(uniq.tolist(), first.tolist(), strict=True):
        if code < 0:
            continue
        name = enc.dictionary[code].as_py()
        dk = datakinds.setdefault(name, {"tiles": 0, "files": 0, "bytes": 0, "splits": {}})
        dk["folder"] = table["path"][i].as_py().rpartition("/")[0]
    for name, dk in datakinds.items():
        try:
            parsed = spec.parse_datakind(name)
            dk["family"], dk["year"] = parsed.family.name, parsed.year
        except UnknownModalityError:
            dk["family"], dk["year"] = None, None
    is_tile = pc.equal(table["kind"], "tile")
    tiles_all = table.select(["tile_id", "lon_min", "lat_min", "lon_max", "lat_max"]).filter(
        is_tile
    )
    remote = pc.is_valid(table["checksum"])
    bbox = None
    if tiles_all.num_rows and tiles_all["lon_min"].null_count < tiles_all.num_rows:
        bbox = [
            pc.min(tiles_all["lon_min"]).as_py(),
            pc.min(tiles_all["lat_min"]).as_py(),
            pc.max(tiles_all["lon_max"]).as_py(),
            pc.max(tiles_all["lat_max"]).as_py(),
        ]
    return {
        "edition": edition,
        "region": region,
        "commit": commit,
        "revision": revision,
        "refreshed_at": _now(),
        "files": int(pc.sum(remote.cast(pa.int64())).as_py() or 0),
        "bytes": int(pc.sum(table["size"].filter(remote)).as_py() or 0),
        "tiles": int(pc.count_distinct(tiles_all["tile_id"]).as_py()),
        "datakinds": dict(sorted(datakinds.items())),
        "bbox": bbox,
    }


def _remote_files(table: pa.Table) -> dict[str, tuple[int, bytes]]:
    import pyarrow.compute as pc

    t = table.filter(pc.field("checksum").is_valid())
    return dict(
        zip(
            t["path"].to_pylist(),
            zip(t["size"].to_pylist(), t["checksum"].to_pylist(), strict=True),
            strict=True,
        )
    )


def refresh(
    settings: Settings,
    edition: str,
    regions: Sequence[str] | None = None,
    revision: str | None = None,
    progress: ProgressCallback = no_progress,
    *,
    force: bool = False,
) -> RefreshReport:
    """Build or update the manifests of ``edition`` for ``regions`` (default: all six).

    At the commit the manifest already has, nothing is listed or written (unless ``force``).
    With no ``regions``, a region the endpoint does not have (a site mirror of some regions)
    is left out and named in ``absent``; only when it has none of them is that an error. A
    region asked for by name must exist.
    """
    from ..hub.client import HubClient

    ed = spec.get_edition(edition)
    ed.repo_id("")  # the local edition is not on the Hub: refused with a hint
    names = spec.resolve_regions(regions)
    rev = revision or settings.revision
    if settings.offline:
        raise OfflineError(
            "offline mode is on (HF_HUB_OFFLINE=1): the catalog cannot be refreshed",
            "unset HF_HUB_OFFLINE to refresh; `m3leo stats` and selections work from the "
            "cached manifest",
        )
    store = Store(settings.data_dir)
    _preload()  # pyarrow loads while the revisions are asked for
    report = RefreshReport(ed.name, rev)
    progress(ProgressEvent("start", phase="refresh", total_files=len(names)))
    every = not regions
    with HubClient(settings) as client:

        def commit_of(region: str) -> str | RemoteNotFoundError:
            try:
                return client.revision(ed.repo_id(region), rev)
            except RemoteNotFoundError as exc:
                if not every:
                    raise
                return exc

        # every region's commit in one round trip: an unchanged catalog costs one latency
        found = dict(zip(names, _concurrently(commit_of, names), strict=True))
        missing = {r: c for r, c in found.items() if isinstance(c, RemoteNotFoundError)}
        if len(missing) == len(names):
            raise missing[names[0]]  # nothing there at all: say why, as for one region
        if missing:
            report.absent = list(missing)
            report.absent_note = _absent_note(settings, ed, rev, report.absent, len(names))
        for region, commit in found.items():
            if not isinstance(commit, RemoteNotFoundError):
                rr = _refresh_one(client, store, ed, region, commit, rev, force, progress)
                report.regions.append(rr)
            progress(ProgressEvent("advance", phase="refresh", files=1))
    progress(ProgressEvent("done", phase="refresh"))
    return report


def _absent_note(
    settings: Settings, ed: spec.Edition, rev: str, absent: list[str], total: int
) -> str:
    at = "" if rev == "main" else f" (or not at revision {rev})"
    return (
        f"{settings.endpoint} has no {ed.org}/<region> repo{at} for {', '.join(absent)}: "
        f"refreshed the {total - len(absent)} region(s) it has"
    )


def _concurrently(fn: Any, items: Sequence[Any]) -> list[Any]:
    """``[fn(x) for x in items]`` over a few threads (requests that wait on the network);
    the first failure, in order, is raised."""
    if len(items) < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(fn, items))


def _refresh_one(
    client: Any,
    store: Store,
    ed: spec.Edition,
    region: str,
    commit: str,
    rev: str,
    force: bool,
    progress: ProgressCallback,
) -> RegionRefresh:
    repo_id = ed.repo_id(region)
    path = store.manifest_path(ed.name, region)
    warnings: list[str] = []
    old: dict[str, Any] | None = None
    if path.exists():
        from .manifest import read_summary

        try:
            old = read_summary(path)
        except ManifestCorruptError as exc:
            warnings.append(f"replaced an unreadable manifest ({exc.message})")
    if old is not None and old.get("commit") == commit and not force:
        return RegionRefresh(
            ed.name,
            region,
            repo_id,
            commit,
            commit,
            "unchanged",
            old.get("files", 0),
            old.get("tiles", 0),
            old.get("bytes", 0),
        )
    progress(ProgressEvent("message", phase="refresh", message=f"listing {repo_id}@{commit[:12]}"))
    entries = list(client.iter_tree(repo_id, commit))
    # imported only now: the preload has had the listing's round trips to load pyarrow
    from .build import build_manifest, definition_files
    from .manifest import read_manifest, write_manifest

    roles = definition_files(ed.name, [e.path for e in entries if e.type == "file"])
    by_path = {e.path: e for e in entries}
    fetch = lambda p: _get_checked(client, repo_id, commit, by_path[p])  # noqa: E731
    files = dict(zip(roles, _concurrently(fetch, list(roles.values())), strict=True))
    built = build_manifest(ed.name, region, commit, entries, files)
    summary = summarize(built.table, ed.name, region, commit, rev)
    rr = RegionRefresh(
        ed.name,
        region,
        repo_id,
        commit,
        old.get("commit") if old else None,
        "updated" if old else "created",
        summary["files"],
        summary["tiles"],
        summary["bytes"],
        warnings=warnings + built.warnings,
    )
    if old is not None:
        before = _remote_files(read_manifest([path], columns=["path", "size", "checksum"]))
        after = _remote_files(built.table)
        rr.added = sorted(set(after) - set(before))
        rr.removed = sorted(set(before) - set(after))
        rr.changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
    write_manifest(path, built.table, summary, presorted=True)
    return rr


def ensure_manifest(
    settings: Settings,
    edition: str,
    regions: Sequence[str] | None,
    progress: ProgressCallback = no_progress,
) -> RefreshReport | None:
    """Refresh the regions that have no readable manifest yet; leave the others alone.

    Returns the refresh's report (its ``warnings`` are worth showing), or None when every
    region already had a manifest.
    """
    ed = spec.get_edition(edition).name
    store = Store(settings.data_dir)
    missing = []
    for r in spec.resolve_regions(regions):
        p = store.manifest_path(ed, r)
        try:
            if p.exists():
                from .manifest import read_summary

                read_summary(p)
                continue
        except ManifestCorruptError:
            pass
        missing.append(r)
    if not missing:
        return None
    if settings.offline:
        raise ManifestNotFoundError(
            f"no {ed} manifest cached for {', '.join(missing)} and offline mode is on",
            "unset HF_HUB_OFFLINE and run `m3leo catalog refresh --edition "
            f"{ed} " + " ".join(f"--region {r}" for r in missing) + "`",
        )
    return refresh(settings, ed, missing, progress=progress)


def _get_checked(client: Any, repo_id: str, commit: str, entry: Any, tries: int = 3) -> bytes:
    """A split CSV or GeoJSON, checked against the listing's checksum (re-fetched if it differs):
    a byte flipped in transit must not end up as a wrong tile id or split in the manifest."""
    from ..checksum import new_hasher
    from .build import _checksum

    kind, digest = _checksum(entry)
    for _ in range(tries):
        data: bytes = client.get_bytes(repo_id, commit, entry.path, entry.size)
        if kind is None:
            return data
        h = new_hasher(kind, len(data))
        h.update(data)
        if h.digest() == digest:
            return data
    raise ChecksumMismatchError(
        f"{repo_id}/{entry.path} differs from its listed checksum after {tries} fetches",
        "the connection or mirror corrupts data; retry later or check HF_ENDPOINT",
    )
