"""``m3leo verify``: check exactly the selected local files, and repair them on request.

Verification re-hashes each selected file against the manifest (sha256 for LFS files, git
blob sha1 for the small text files; full-edition tiles against the size and sha256 recorded
when they were unpacked) and reports the missing and corrupt ones; ``repair`` re-downloads them
through the normal engine. Stray ``.part`` files (a download that was interrupted) are reported,
never touched: the next download resumes them, ``clean`` removes them (and the partial or, on
request, whole shards in the shard cache).
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import spec
from ..checksum import hash_file
from ..config import Settings
from ..errors import UnsafePathError
from ..fetch.runner import DownloadSummary
from ..fetch.transfer import FileJob
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..selection import Selection
from ..store.integrity import record
from ..store.layout import Store
from .clean import stray_parts


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    bytes: int = 0  # bytes hashed
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)  # wrong size or checksum
    # a symlink at the file's path, or a file sharing its inode with another name (a hard
    # link): an edit made through the other name edits the store; never "ok"
    linked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # manifest has no checksum (size only)
    parts: list[str] = field(default_factory=list)  # stray .part files under the regions
    # full edition: listed in _parquet.csv, but the shard index shows the shard lacks them
    unpublished: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    repaired: DownloadSummary | None = None

    @property
    def problems(self) -> int:
        still = len(self.missing) + len(self.corrupt) + len(self.linked)
        if self.repaired is not None:
            still = self.repaired.failed
        return still + len(self.refused)  # a refused path is never repaired

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["refused"] = [{"path": p, "reason": r} for p, r in self.refused]
        d["repaired"] = self.repaired.to_dict() if self.repaired else None
        d["problems"] = self.problems
        return d


BLOCKED = "a folder is in the file's place: move it away, then re-run with --repair"


def _check(job: FileJob, has_checksum: bool) -> str:
    try:
        st = job.dest.lstat()  # the name itself: a link is reported, not followed
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return "linked"  # links out of the store are refused before this (safe_join)
    if not stat.S_ISREG(st.st_mode):
        return "blocked"  # a folder (or another non-file): nothing to hash, nothing to unlink
    if job.size >= 0 and st.st_size != job.size:
        return "corrupt"
    if not has_checksum:
        return "unchecked"
    digest = hash_file(job.dest, job.checksum_kind, job.size).digest()
    if digest != job.checksum:
        return "corrupt"
    if st.st_nlink > 1:
        return "linked"  # right bytes, but another name can change them
    if job.checksum_kind == "sha256":
        record(job.dest, digest, st)  # verified now: later reads check it with one stat
    return "ok"


def _jobs_for(
    settings: Settings, rows: Sequence[dict[str, Any]]
) -> tuple[list[tuple[FileJob, bool]], list[tuple[str, str]]]:
    """Like download.build_jobs, but keeps rows without a checksum (checked by presence/size).

    Full-edition tiles have no checksum in the manifest (the Hub publishes none per tile):
    they are checked against the size and sha256 recorded when they were unpacked.
    """
    from ..full.unpacked import recorded_checksums
    from ..hub.client import resolve_url

    store = Store(settings.data_dir)
    out: list[tuple[FileJob, bool]] = []
    refused: list[tuple[str, str]] = []
    records: dict[str, dict[str, tuple[int, str]]] = {}
    for r in rows:
        if r["edition"] == "full" and r.get("kind") == "tile" and not r.get("checksum"):
            if r["region"] not in records:
                records[r["region"]] = recorded_checksums(settings, "full", r["region"])
            rec = records[r["region"]].get(r["path"])
            if rec is not None:
                r = {**r, "size": rec[0], "checksum_kind": "sha256"}
                r["checksum"] = bytes.fromhex(rec[1])
        label = f"{r['edition']}/{r['region']}/{r['path']}"
        try:
            dest = store.local_path(r["edition"], r["region"], r["path"])
        except UnsafePathError as exc:
            refused.append((label, exc.message))
            continue
        has = bool(r.get("checksum")) and bool(r.get("checksum_kind"))
        size = r.get("size")
        url = ""  # a local region's files have no source to repair from
        if r["edition"] != spec.LOCAL_EDITION:
            repo = spec.get_edition(r["edition"]).repo_id(r["region"])
            url = resolve_url(settings.endpoint, repo, r["commit"], r["path"])
        job = FileJob(
            url=url,
            dest=dest,
            size=int(size) if size is not None else -1,
            checksum_kind=str(r.get("checksum_kind") or "sha256"),
            checksum=bytes(r.get("checksum") or b""),
            name=label,
        )
        out.append((job, has and size is not None))
    return out, refused


def verify(
    settings: Settings,
    selection: Selection,
    *,
    repair: bool = False,
    workers: int | None = None,
    progress: ProgressCallback = no_progress,
    wait: bool = False,
) -> VerifyReport:
    """Re-hash the selected local files; with ``repair``, re-download the missing/corrupt ones."""
    from ..fetch.plan import selected_rows

    if repair and selection.edition == spec.LOCAL_EDITION:
        spec.LOCAL.repo_id("")  # your own files have no source to re-download: refused
    rows, regions = selected_rows(settings, selection, progress, refresh=False)
    pairs, refused = _jobs_for(settings, rows)
    rep = VerifyReport(refused=refused)
    nworkers = workers or settings.workers
    total = sum(max(j.size, 0) for j, _ in pairs)
    progress(ProgressEvent("start", "verify", total_files=len(pairs), total_bytes=total))
    with ThreadPoolExecutor(max(1, min(nworkers, len(pairs)))) as pool:
        results = pool.map(lambda p: _check(*p), pairs)
        for (job, _), state in zip(pairs, results, strict=True):
            rep.checked += 1
            if state == "ok":
                rep.ok += 1
                rep.bytes += job.size
            elif state == "blocked":
                rep.refused.append((job.label, BLOCKED))
            else:
                getattr(rep, state).append(job.label)
            progress(ProgressEvent("advance", "verify", files=1, bytes=max(job.size, 0)))
    progress(ProgressEvent("done", "verify"))
    if rep.missing and selection.edition == "full":
        from ..full.unpacked import unpublished

        lost = set(rep.missing)
        wanted = [r for r in rows if f"full/{r['region']}/{r['path']}" in lost]
        gone = {f"full/{r}/{path}" for r, path in unpublished(settings, wanted)}
        rep.unpublished = [p for p in rep.missing if p in gone]
        rep.missing = [p for p in rep.missing if p not in gone]
        rep.checked -= len(rep.unpublished)  # there is no file to check
    rep.parts = [str(p) for p in stray_parts(settings, selection.edition, regions)]
    if repair and (rep.missing or rep.corrupt or rep.linked):
        tile_ids = {
            f"{r['edition']}/{r['region']}/{r['path']}": str(r["tile_id"])
            for r in rows
            if r.get("kind") == "tile" and r.get("tile_id")
        }
        rep.repaired = _repair(settings, selection, pairs, rep, tile_ids, nworkers, progress, wait)
    return rep


def _repair(
    settings: Settings,
    selection: Selection,
    pairs: list[tuple[FileJob, bool]],
    rep: VerifyReport,
    tile_ids: dict[str, str],
    workers: int,
    progress: ProgressCallback,
    wait: bool,
) -> DownloadSummary:
    from ..fetch.plan import finish
    from .download import download

    bad = set(rep.missing) | set(rep.corrupt) | set(rep.linked)
    gone = set(rep.corrupt) | set(rep.linked)
    for job, _ in pairs:
        if job.label in gone:  # a wrong file, a link or a shared name at a final path goes;
            job.dest.unlink(missing_ok=True)  # the other name of a hard link keeps its bytes
    bad_tiles = sorted({tile_ids[lbl] for lbl in bad if lbl in tile_ids})
    if selection.edition == "full" and bad_tiles:
        # full-edition tiles come out of shards: the whole full download path fetches them
        # (aux files of the regions are fetched by it too)
        sel = dataclasses.replace(selection, tiles=tuple(bad_tiles), limit=None)
        result = download(settings, sel, workers=workers, progress=progress, wait=wait)
        assert isinstance(result, DownloadSummary)
        return result
    from ..fetch.runner import run_jobs
    from ..hub.client import HubClient
    from ..store.lock import store_lock

    jobs = [j for j, has in pairs if j.label in bad and has]
    store = Store(settings.data_dir)
    with store_lock(store, wait=wait), HubClient(settings) as client:
        summary = run_jobs(client, jobs, workers=workers, progress=progress)
    finish(summary, store)
    return summary
