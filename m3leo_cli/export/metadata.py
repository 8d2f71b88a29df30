"""``metadata.json``: what an export holds and where it came from.

Layers (role, band names, dtype, nodata, what ``convert`` did to their values), per-sample
CRS, bounds, shapes and missing layers, normalisation statistics when used, provenance
(edition, regions and their commits, every source file's repo path and checksum, the m3leo
version and the command line) and the sha256 of every output file. Keys are sorted and nothing
time-dependent is written, so two exports of the same input differ at most in the recorded
command line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import ExportOptions, Failure, UnitResult
from .convert import treatment
from .outputs import write_bytes_atomic
from .samples import SamplePlan

METADATA = "metadata.json"
SCHEMA_VERSION = 1


def build_metadata(
    plan: SamplePlan,
    options: ExportOptions,
    layer_info: Mapping[str, Mapping[str, Any]],
    results: Mapping[str, UnitResult],
    stats: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from ..version import __version__

    by_tile: dict[tuple[str, str], dict[str, Any]] = {}
    files: dict[str, Any] = {}
    failures: list[Failure] = []
    for res in results.values():
        for meta in res.samples:
            by_tile[(meta["region"], meta["tile_id"])] = meta
        files.update(res.files)
        failures.extend(res.failures)
    samples = []
    sources = []
    for s in plan.samples:
        found = by_tile.get((s.region, s.tile_id))
        if found is None:
            continue
        samples.append(found)
        for layer, lf in sorted(s.files.items()):
            sources.append(
                {
                    "tile_id": s.tile_id,
                    "layer": layer,
                    "path": lf.repo_path or str(lf.path),
                    "checksum_kind": lf.checksum_kind,
                    "checksum": lf.checksum,
                    "size": lf.size,
                }
            )
    info = {k: dict(v) for k, v in layer_info.items()}
    for meta in samples:  # a nodata value seen on any tile, when the probed tile had none
        for name, lay in meta.get("layers", {}).items():
            if "nodata_value" in lay and info.get(name, {}).get("nodata") is None:
                info.setdefault(name, {})["nodata"] = lay["nodata_value"]
    per_split: dict[str, int] = {}
    for meta in samples:
        per_split[meta["split"]] = per_split.get(meta["split"], 0) + 1
    return {
        "m3leo_export": SCHEMA_VERSION,
        "format": options.format,
        "layers": [
            {
                "name": lay.name,
                "role": lay.role,
                "family": lay.family.name,
                "categorical": lay.categorical,
                **info.get(lay.name, {}),
                **treatment(lay, options),
            }
            for lay in plan.layers
        ],
        "options": options.fingerprint(),
        "normalization": ({k: v.as_dict() for k, v in sorted(stats.items())} if stats else None),
        "counts": {
            "samples": len(samples),
            "per_split": per_split,
            "skipped_missing_layer": {k: len(v) for k, v in sorted(plan.skipped.items())},
            "not_downloaded": {k: len(v) for k, v in sorted(plan.not_local.items())},
            "not_published": {k: len(v) for k, v in sorted(plan.unpublished.items())},
            "failed": len(failures),
        },
        "samples": samples,
        "skipped": {
            "missing_layer": {k: v for k, v in sorted(plan.skipped.items())},
            "not_downloaded": {k: v for k, v in sorted(plan.not_local.items())},
            "not_published": {k: v for k, v in sorted(plan.unpublished.items())},
            "failed": [
                f.as_dict() for f in sorted(failures, key=lambda f: (f.split, f.tile_id, f.layer))
            ],
        },
        "provenance": {
            "edition": plan.edition,
            "regions": plan.commits,
            "selection": plan.selection,
            "m3leo_version": __version__,
            "command": list(options.command),
            "sources": sources,
        },
        "files": {k: files[k] for k in sorted(files)},
        **_files_are(options, files),
    }


def _files_are(options: ExportOptions, files: Mapping[str, Any]) -> dict[str, str]:
    """geotiff: whether the exported files are copies or the store's own inodes (--link)."""
    if options.format != "geotiff":
        return {}
    linked = any(info.get("link") for info in files.values())
    return {"files_are": "hard links to the store" if linked else "copies"}


def write_metadata(out: Path, doc: dict[str, Any]) -> Path:
    path = out / METADATA
    write_bytes_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    return path


def layer_entry(bands: Sequence[str], dtype: str, source_dtype: str, nodata: Any) -> dict[str, Any]:
    return {"bands": list(bands), "dtype": dtype, "source_dtype": source_dtype, "nodata": nodata}
