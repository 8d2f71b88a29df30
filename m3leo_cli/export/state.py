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
from pathlib import Path
from typing import Any

from .. import spec
from ..errors import OutputExistsError
from .base import ExportOptions, Failure, UnitResult
from .metadata import METADATA
from .outputs import disk_full, is_disk_full, write_bytes_atomic
from .samples import SamplePlan

STATE_DIR = ".m3leo-export"
MARKER = "export.json"


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
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)


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
