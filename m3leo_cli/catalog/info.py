"""What the cached manifests say: loading them whole, describing them, listing regions and
modalities. Reads local files only; :mod:`.refresh` is what writes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import spec
from ..config import Settings
from ..errors import (
    ManifestCorruptError,
    RevisionMismatchError,
    UnknownModalityError,
)
from ..store.layout import Store
from .manifest import read_manifest, read_summary


def existing_manifests(
    store: Store, edition: str, regions: Sequence[str] | None
) -> dict[str, Path]:
    return {
        r: store.manifest_path(edition, r)
        for r in spec.resolve_regions(regions, edition)
        if store.manifest_path(edition, r).exists()
    }


def load_manifest(
    settings: Settings, edition: str, regions: Sequence[str] | None = None
) -> pa.Table:
    """Every row of the cached manifests of ``edition`` (all regions that have one)."""
    ed = spec.get_edition(edition).name
    found = existing_manifests(Store(settings.data_dir), ed, regions)
    if not found or (regions and len(found) < len(spec.resolve_regions(regions, ed))):
        from .editions import manifest_not_found

        missing = [r for r in spec.resolve_regions(regions, ed) if r not in found]
        raise manifest_not_found(settings, ed, missing if regions else [], missing)
    check_pinned(settings, ed, {r: read_summary(p) for r, p in found.items()})
    return read_manifest(list(found.values()))


def check_pinned(settings: Settings, edition: str, summaries: dict[str, dict[str, Any]]) -> None:
    """Refuse to use manifests built from another revision than the one asked for.

    Only an explicit revision (``--revision``, ``M3LEO_REVISION``, the config file) is checked;
    it matches a manifest built from that branch or tag name, or from a commit it prefixes.
    Nothing is re-catalogued behind the user's back: other runs may rely on the manifest.
    """
    if settings.source_of("revision") == "default":
        return
    want = settings.revision
    for region, summary in sorted(summaries.items()):
        commit = str(summary.get("commit") or "")
        built = str(summary.get("revision") or "")
        if want == built or (len(want) >= 7 and commit.startswith(want)):
            continue
        raise RevisionMismatchError(
            f"the {edition} manifest of {region} was built from {built or '?'} "
            f"(commit {commit[:12]}), not from revision {want!r}",
            f"run `m3leo catalog refresh --edition {edition} --region {region} "
            f"--revision {want}` first, or drop --revision to use the cached manifest",
        )


def manifest_info(
    settings: Settings, edition: str, regions: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Per region: where its manifest is and what its footer says (``catalog show``)."""
    ed = spec.get_edition(edition).name
    store = Store(settings.data_dir)
    out = []
    for r in spec.resolve_regions(regions, ed):
        p = store.manifest_path(ed, r)
        row: dict[str, Any] = {"edition": ed, "region": r, "path": str(p), "status": "missing"}
        if p.exists():
            try:
                s = read_summary(p)
                row.update(
                    status="ok",
                    commit=s.get("commit"),
                    revision=s.get("revision"),
                    refreshed_at=s.get("refreshed_at"),
                    files=s.get("files"),
                    tiles=s.get("tiles"),
                    bytes=s.get("bytes"),
                    datakinds=len(s.get("datakinds", {})),
                    bbox=s.get("bbox"),
                )
            except ManifestCorruptError as exc:
                row.update(status="corrupt", error=exc.message)
        out.append(row)
    return out


def regions(settings: Settings) -> list[dict[str, Any]]:
    """The six regions from the spec, with what the cached manifests say about each."""
    infos = {
        (i["edition"], i["region"]): i for e in spec.EDITIONS for i in manifest_info(settings, e)
    }
    out = []
    for name, reg in spec.REGIONS.items():
        cached = {}
        for e in spec.EDITIONS:
            i = infos[(e, name)]
            cached[e] = {k: i.get(k) for k in ("status", "commit", "tiles", "files", "bytes")}
        out.append(
            {
                "region": name,
                "description": reg.description,
                "partition": reg.partition,
                "split_tag": reg.split_tag,
                "total_chips": reg.total_chips,
                "repos": {e: ed.repo_id(name) for e, ed in spec.EDITIONS.items()},
                "manifests": cached,
            }
        )
    return out


def modalities(
    settings: Settings, edition: str = spec.DEFAULT_EDITION, regions: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Datakinds of ``edition`` in ``regions``: spec facts plus tiles/bytes from the manifests.

    Where a region has a manifest, its listing decides which datakinds exist; elsewhere the
    spec's expectation does, and tiles/bytes are null.
    """
    ed = spec.get_edition(edition).name
    store = Store(settings.data_dir)
    found: dict[str, dict[str, Any]] = {}
    for r in spec.resolve_regions(regions, ed):
        p = store.manifest_path(ed, r)
        summary = None
        if p.exists():
            try:
                summary = read_summary(p)
            except ManifestCorruptError:
                summary = None
        kinds = (
            summary["datakinds"] if summary else {d: None for d in spec.expected_datakinds(ed, r)}
        )
        for dk, info in kinds.items():
            row = found.setdefault(dk, _modality_row(dk))
            row["regions"].append(r)
            if info is not None:
                for k in ("tiles", "bytes", "files"):
                    row[k] = (row[k] or 0) + info[k]
    return [found[k] for k in sorted(found)]


def _modality_row(datakind: str) -> dict[str, Any]:
    try:
        dk = spec.parse_datakind(datakind)
    except UnknownModalityError:
        return {
            "datakind": datakind,
            "family": None,
            "year": None,
            "aliases": [],
            "format": None,
            "bands": [],
            "variables": [],
            "resolution_m": None,
            "grid": None,
            "regions": [],
            "tiles": None,
            "files": None,
            "bytes": None,
        }
    fam = dk.family
    return {
        "datakind": datakind,
        "family": fam.name,
        "year": dk.year,
        "aliases": list(fam.aliases),
        "format": fam.format,
        "bands": list(fam.bands),
        "variables": list(fam.variables),
        "resolution_m": fam.resolution_m,
        "grid": fam.grid,
        "regions": [],
        "tiles": None,
        "files": None,
        "bytes": None,
    }
