"""The export folder's own bookkeeping: whose folder it is, and which units are finished.

``<out>/.m3leo-export/export.json`` identifies the export (format, layers, options and a digest
of the sample list); a folder holding anything else is refused unless ``--overwrite``.
``progress-<i>-of-<K>.jsonl`` gets one line per finished unit (its files with sha256 and size,
its samples' metadata, its failures) from job ``i`` of ``K``, appended and fsynced, so a re-run
(or another job) knows what is done without re-reading any output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import spec
from ..errors import OutputExistsError, StoreLockedError
from .base import ExportOptions, Failure, UnitResult
from .metadata import METADATA
from .outputs import disk_full, is_disk_full, write_bytes_atomic
from .samples import SamplePlan

STATE_DIR = ".m3leo-export"
MARKER = "export.json"
LOCK_PREFIX = "lock-"


def samples_digest(plan: SamplePlan) -> str:
    h = hashlib.sha256()
    for s in plan.samples:
        h.update(f"{s.split}/{s.region}/{s.tile_id}:{','.join(sorted(s.files))}\n".encode())
    return h.hexdigest()


def identity(plan: SamplePlan, options: ExportOptions) -> dict[str, Any]:
    return {
        "options": options.fingerprint(),
        "layers": [lay.name for lay in plan.layers],
        "samples": len(plan.samples),
        "samples_sha256": samples_digest(plan),
    }


def same_export(out: Path, plan: SamplePlan, options: ExportOptions) -> bool:
    """``out`` already holds this very export (so a run resumes it)."""
    return _read_json(out / STATE_DIR / MARKER) == identity(plan, options)


def prepare_out(
    out: Path, plan: SamplePlan, options: ExportOptions, shown: str | None = None
) -> None:
    """Make ``out`` ours: empty, or the same export (to complete), or --overwrite.

    ``shown`` is what messages call it (the URL of an object-store export staged in ``out``).
    """
    name = shown or str(out)
    ident = identity(plan, options)
    marker = out / STATE_DIR / MARKER
    if out.exists() and not out.is_dir():
        raise OutputExistsError(  # --overwrite replaces exports, never a file
            f"--out {name} is a file, not a folder",
            "give --out a new or empty folder path (e.g. --out exports/mine); the file is kept",
        )
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing == [STATE_DIR] and not marker.exists():
        existing = []  # only the lock of this run (export_lock) or of a run killed at its start
    if existing:
        old = _read_json(marker)
        if old == ident and not options.overwrite:
            return  # the same export: resume it
        if options.overwrite:
            if old is not None:
                _clear(out)
        elif old is None:
            listing = ", ".join(existing[:3]) + (" ..." if len(existing) > 3 else "")
            raise OutputExistsError(
                f"--out {name} is not empty and is not an m3leo export ({listing})",
                "choose a new or empty --out folder, or pass --overwrite to write beside "
                "those files (they are kept)",
            )
        else:
            raise OutputExistsError(
                f"--out {name} holds a different export ({_describe(old, ident)})",
                "choose another --out, or pass --overwrite to replace it",
            )
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(marker, (json.dumps(ident, indent=1, sort_keys=True) + "\n").encode())


def _describe(old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in ("options", "layers"):
        if old.get(key) != new.get(key):
            return f"other {key}: {old.get(key)}"
    return f"another sample list: {old.get('samples')} samples then, {new['samples']} now"


def _clear(out: Path) -> None:
    """Remove a previous m3leo export's own outputs (never anything else)."""
    for split in spec.SPLITS:
        shutil.rmtree(out / split, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / METADATA).unlink()
    state = out / STATE_DIR
    for p in state.iterdir() if state.is_dir() else ():
        if p.name.startswith(LOCK_PREFIX):
            continue  # the locks are held (ours among them): removing one would free it
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def export_lock(out: Path, shard_index: int, num_shards: int) -> Iterator[None]:
    """One run per job of an export at a time: an advisory ``flock`` on
    ``<out>/.m3leo-export/lock-<i>-of-<K>`` (jobs of one export, ``--shard-index``, run side by
    side; two runs of the same job would write the same ``.part`` files). The second run is
    refused with StoreLockedError; the kernel releases the lock when the holder exits.

    Nothing is created in a folder ``prepare_out`` will refuse (a file, or a folder holding
    other things and no export)."""
    import fcntl
    import socket

    state = out / STATE_DIR
    if out.exists() and (not out.is_dir() or (not state.is_dir() and any(out.iterdir()))):
        yield
        return
    state.mkdir(parents=True, exist_ok=True)
    path = state / f"{LOCK_PREFIX}{shard_index:05d}-of-{num_shards:05d}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "another process"
            raise StoreLockedError(
                f"--out {out} is being written by another run of this export ({holder})",
                "let that run finish (re-running the same command afterwards completes "
                "anything it left), or choose another --out",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_results(out: Path) -> dict[str, UnitResult]:
    """Finished units from every job's progress log (later lines win; torn lines ignored)."""
    results: dict[str, UnitResult] = {}
    for log in sorted((out / STATE_DIR).glob("progress-*.jsonl")):
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            results[rec["key"]] = UnitResult(
                rec["key"], rec["files"], rec["samples"], [Failure(**f) for f in rec["failures"]]
            )
    return results


def is_done(out: Path, res: UnitResult | None) -> bool:
    """Finished without failures, and every output still there with its recorded size."""
    if res is None or res.failures:
        return False
    for rel, info in res.files.items():
        try:
            if (out / rel).stat().st_size != info["size"]:
                return False
        except OSError:
            return False
    return True


class ProgressLog:
    def __init__(self, out: Path, shard_index: int, num_shards: int) -> None:
        self.path = out / STATE_DIR / f"progress-{shard_index:05d}-of-{num_shards:05d}.jsonl"

    def record(self, res: UnitResult) -> None:
        rec = {
            "key": res.key,
            "files": res.files,
            "samples": res.samples,
            "failures": [f.as_dict() for f in res.failures],
        }
        line = json.dumps(rec, sort_keys=True) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.path, exc) from None
            raise
