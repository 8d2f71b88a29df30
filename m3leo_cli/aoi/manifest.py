"""The local edition's manifest: built from the files of ``<data_dir>/local/<name>/``.

The same Parquet manifest the published editions have (``catalog.build``), so every command
that selects through the catalog (stats, show, map, verify, export) works on a local region.
Checksums are the sha256 of each file as it is now, so ``verify`` later catches a file that
changed or went missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checksum import file_hexdigest
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..store.layout import Store
from .local import LOCAL_EDITION, LocalRegion, region_dir

LOCAL_COMMIT = "local"


@dataclass
class _Entry:
    path: str
    type: str
    size: int
    oid: str
    lfs_sha256: str | None


def build_local_manifest(
    data_dir: Path, region: LocalRegion, progress: ProgressCallback = no_progress
) -> dict[str, Any]:
    """Hash the region's files and write its manifest; returns the manifest's summary."""
    from ..catalog.build import build_manifest
    from ..catalog.manifest import write_manifest
    from ..catalog.refresh import summarize

    root = region_dir(data_dir, region.name)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    progress(ProgressEvent("start", phase="manifest", total_files=len(files)))
    entries = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        entries.append(_Entry(rel, "file", p.stat().st_size, "", file_hexdigest(p, "sha256")))
        progress(ProgressEvent("advance", phase="manifest", files=1))
    defs = {
        "splits": (root / region.split_csv).read_bytes(),
        "geojson": (root / region.geojson).read_bytes(),
    }
    built = build_manifest(LOCAL_EDITION, region.name, LOCAL_COMMIT, entries, defs)
    summary = summarize(built.table, LOCAL_EDITION, region.name, LOCAL_COMMIT, LOCAL_COMMIT)
    path = Store(data_dir).manifest_path(LOCAL_EDITION, region.name)
    write_manifest(path, built.table, summary, presorted=True)
    progress(ProgressEvent("done", phase="manifest"))
    return summary
