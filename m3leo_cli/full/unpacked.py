"""What was unpacked: per-shard records of every file's size and sha256, and local unpacking.

The Hub publishes no checksum per full-edition tile, so the record m3leo writes while unpacking
is the reference ``verify`` checks unpacked files against, and what tells a re-run that a tile is
already there. One JSON sidecar per shard, ``<data_dir>/.m3leo/unpacked/full/<region>/<shard
path with / -> __>.json`` = ``{"source": ..., "files": {rel path: [size, sha256]}}``, merged
atomically. ``unpack_files`` is ``m3leo unpack``: shard files already on disk into the store.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..errors import UsageError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..store.layout import Store, write_text_atomic
from .unpack import RowRules, UnpackReport, first_row_region, open_local, unpack_parquet

__all__ = [
    "UnpackSummary",
    "record_unpacked",
    "recorded_checksums",
    "unpack_files",
    "unpublished",
]


def unpacked_dir(store: Store, edition: str, region: str) -> Path:
    return store.state_dir / "unpacked" / edition / region


def record_unpacked(store: Store, region: str, key: str, report: UnpackReport) -> None:
    """Merge the files a shard gave into its sidecar (``verify`` reads these)."""
    if not report.written:
        return
    path = sidecar_path(store, region, key)
    files: dict[str, list[Any]] = {}
    with contextlib.suppress(OSError, ValueError):
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    for f in report.written:
        files[f.path] = [f.size, f.sha256]
    write_text_atomic(path, json.dumps({"source": key, "files": files}, sort_keys=True))


def sidecar_path(store: Store, region: str, key: str) -> Path:
    return unpacked_dir(store, "full", region) / (key.replace("/", "__") + ".json")


def read_sidecar(path: Path, out: dict[str, tuple[int, str]]) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        for rel, (size, sha) in json.loads(path.read_text(encoding="utf-8"))["files"].items():
            out[rel] = (int(size), str(sha))


def recorded_checksums(settings: Settings, edition: str, region: str) -> dict[str, tuple[int, str]]:
    """``{path relative to the region folder: (size, sha256 hex)}`` of every unpacked file."""
    out: dict[str, tuple[int, str]] = {}
    folder = unpacked_dir(Store(settings.data_dir), edition, region)
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json"), key=lambda q: q.stat().st_mtime):
        read_sidecar(p, out)
    return out


@dataclass
class UnpackSummary:
    """What ``m3leo unpack`` did over all the shard files it was given."""

    reports: list[UnpackReport] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # shard arguments given again: skipped

    @property
    def written(self) -> int:
        return sum(len(r.written) for r in self.reports)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.reports)

    @property
    def refused(self) -> list[tuple[str, str, str]]:
        return [(r.source, p, why) for r in self.reports for p, why in r.refused]

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.written,
            "bytes": self.bytes,
            "duplicates": self.duplicates,
            "shards": [
                {
                    "shard": r.source,
                    "region": r.region,
                    "files": len(r.written),
                    "bytes": r.bytes,
                    "row_groups": r.row_groups,
                    "skipped": r.skipped,
                    "refused": [{"path": p, "reason": w} for p, w in r.refused],
                }
                for r in self.reports
            ],
        }


def unpack_files(
    settings: Settings,
    shards: Sequence[Path],
    *,
    region: str | None = None,
    out: Path | None = None,
    progress: ProgressCallback = no_progress,
    pool: Executor | None = None,
    wait: bool = False,
) -> UnpackSummary:
    """Unpack local shard files into the store (``full/<region>/``) or into ``out``.

    With a ``pool`` (the Dask engine's executor) each shard is a task on a worker that sees the
    same filesystem; this process holds the store lock for all of them.
    """
    from ..store.lock import store_lock

    if region is not None:
        region = spec.get_region(region).name
    if not shards:
        raise UsageError("no shard files given", "m3leo unpack SHARD.zstd.parquet ...")
    store = Store(settings.data_dir)
    summary = UnpackSummary()
    files = _distinct(shards, summary.duplicates, progress)
    total = 0
    for p in files:  # fail early on a shard that is not Parquet; keep no file open
        pf = open_local(p)
        total += int(pf.metadata.num_rows)
        pf.close()
    ctx = store_lock(store, wait=wait) if out is None else contextlib.nullcontext()
    progress(ProgressEvent("start", "unpack", total_files=total))
    with ctx:
        if pool is None:
            for path in files:
                summary.reports.append(unpack_one(settings, path, region, out, progress))
        else:
            relay = getattr(pool, "progress_relay", None) or no_progress
            futures = [pool.submit(unpack_one, settings, p, region, out, relay) for p in files]
            try:
                summary.reports.extend(f.result() for f in futures)  # in the order given
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    progress(ProgressEvent("done", "unpack"))
    return summary


def _distinct(
    shards: Sequence[Path], duplicates: list[str], progress: ProgressCallback
) -> list[Path]:
    """The shard files given, each once: the same file named twice (or through a link) would
    be unpacked and counted twice. The repeats are listed in ``duplicates`` and warned about."""
    out: list[Path] = []
    seen: set[object] = set()
    for s in shards:
        p = Path(s)
        try:
            st = p.stat()
            key: object = (st.st_dev, st.st_ino)
        except OSError:
            key = p.absolute()  # open_local reports a missing or unreadable file
        if key in seen:
            duplicates.append(str(p))
            warning = f"warning: {p} is given more than once (the same file): unpacked once"
            progress(ProgressEvent("message", "unpack", message=warning))
            continue
        seen.add(key)
        out.append(p)
    return out


def unpack_one(
    settings: Settings,
    path: Path,
    region: str | None,
    out: Path | None,
    progress: ProgressCallback = no_progress,
) -> UnpackReport:
    """Unpack one shard file and record what it wrote (a task of its own on the Dask engine)."""
    store = Store(settings.data_dir)
    pf = open_local(path)
    reg = region or first_row_region(pf)
    if reg not in spec.REGIONS:
        pf.close()
        raise UsageError(
            f"{path.name}: cannot tell its region from its rows ({reg!r})", "pass --region"
        )
    dest = out if out is not None else store.region_dir("full", reg)
    rows = pf.metadata.num_rows
    progress(ProgressEvent("message", "unpack", message=f"unpacking {path} ({rows} rows)"))
    report = UnpackReport(source=str(path), region=reg)
    seen: dict[int, list[str]] = {}  # row group -> its row paths (the shard's index)
    try:
        unpack_parquet(
            pf,
            dest,
            RowRules(region=reg),
            source=path.name,
            progress=progress,
            report=report,
            after_row_group=lambda rg, paths: seen.__setitem__(rg, list(paths)),
        )
    finally:
        pf.close()
        if out is None and report.written:
            # keyed like the repo shard (<partition>/<datakind>/<file>) so a later
            # `download --edition full` sees these tiles as present
            folder = report.written[0].path.rsplit("/", 1)[0]
            key = f"{folder}/{path.name}"
            record_unpacked(store, reg, key, report)
            if seen and len(seen) == report.row_groups:  # every row group read
                index_shard(settings, reg, key, path, seen)
    return report


def index_shard(
    settings: Settings, region: str, key: str, path: Path, rows: dict[int, list[str]]
) -> bool:
    """Cache the index of an unpacked local shard (its footer and every row path) when it is
    the manifest's shard ``key`` (same size and sha256), as a download does: ``verify``,
    ``stats``, ``tiles`` and ``export`` then know which listed tiles the shard does not hold
    ("not published"), instead of calling them missing. Returns whether it was cached."""
    import hashlib

    import pyarrow.compute as pc

    from ..catalog.info import load_manifest
    from ..errors import M3leoError
    from .index import ShardIndex, read_footer, save_index

    try:
        man = load_manifest(settings, "full", [region])
    except M3leoError:
        return False  # no manifest for the region: nothing to match the shard with
    hit = man.filter(pc.and_(pc.equal(man["kind"], "shard"), pc.equal(man["path"], key)))
    if hit.num_rows != 1:
        return False
    row = hit.to_pylist()[0]
    size = path.stat().st_size
    if row["size"] != size or not row["checksum"] or row["checksum_kind"] != "sha256":
        return False
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.digest() != bytes(row["checksum"]):
        return False  # another version of the shard: what it lacks says nothing of this one

    def read_range(start: int, end: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start + 1)

    footer = read_footer(read_range, size, path.name)
    index_dir = Store(settings.data_dir).state_dir / "shard-index"
    save_index(index_dir, ShardIndex(key, size, footer, h.hexdigest(), rows))
    return True


def unpublished(settings: Settings, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """(region, path) of the full-edition tile ``rows`` whose shard's cached index proves the
    shard does not hold them: "not published" for that datakind, never "not downloaded".

    Partial-coverage datakinds (gssic, gunw) hold only some of the tiles ``_parquet.csv``
    lists; a download learns which from the shard footer and row paths and caches that.
    ``rows`` need ``region``, ``path`` and ``shard`` (manifest columns).
    """
    if not rows:
        return set()
    import pyarrow.compute as pc

    from ..catalog.info import load_manifest
    from .index import ShardIndex, load_index

    regions = sorted({r["region"] for r in rows})
    man = load_manifest(settings, "full", regions)
    man = man.filter(pc.equal(man["kind"], "shard")).select(["region", "path", "checksum"])
    sha = {(r["region"], r["path"]): r["checksum"] for r in man.to_pylist() if r["checksum"]}
    index_dir = Store(settings.data_dir).state_dir / "shard-index"
    indexes: dict[str, ShardIndex | None] = {}
    out: set[tuple[str, str]] = set()
    for r in rows:
        digest = sha.get((r["region"], r.get("shard")))
        if digest is None:
            continue
        key = bytes(digest).hex()
        if key not in indexes:
            indexes[key] = load_index(index_dir, key)
        idx = indexes[key]
        if idx is not None and idx.lacks(f"{r['region']}/{r['path']}"):
            out.add((r["region"], r["path"]))
    return out
