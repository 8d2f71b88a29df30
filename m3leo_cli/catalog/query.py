"""Queries over the cached manifests: the one selection model, and manifest-level stats.

Everything here reads the local Parquet manifests only (never the network), so it works with
``HF_HUB_OFFLINE=1``. Filters are pushed down to pyarrow.dataset; the manifests are sorted by
(kind, datakind, split, tile_id), so a region + modality + split query reads a few row groups.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import spec
from ..config import Settings
from ..errors import (
    EmptySelectionError,
    SelectionError,
    TileNotFoundError,
    UnknownModalityError,
)
from ..selection import Selection
from ..store.layout import Store
from .editions import manifest_not_found, other_edition_hint
from .info import check_pinned
from .manifest import in_set, read_manifest, read_summary


def manifest_paths(settings: Settings, selection: Selection) -> dict[str, Path]:
    """region -> manifest path for the selection; every named region must have one."""
    store = Store(settings.data_dir)
    ed = selection.edition
    found = {
        r: store.manifest_path(ed, r)
        for r in selection.region_names
        if store.manifest_path(ed, r).exists()
    }
    missing = [r for r in selection.region_names if r not in found]
    if (selection.regions and missing) or not found:
        regions = missing if selection.regions else []
        raise manifest_not_found(settings, ed, regions, missing)
    return found


def _wants(selection: Selection, datakind: str) -> bool:
    try:
        return selection.wants_datakind(datakind)
    except UnknownModalityError:  # a folder the spec does not know: only "everything" gets it
        return not (selection.modalities or selection.years)


def _no_datakind(selection: Selection, summaries: dict[str, dict[str, Any]]) -> SelectionError:
    wanted = ", ".join(selection.modalities)
    years = f" for year {', '.join(map(str, selection.years))}" if selection.years else ""
    parts = []
    for r, s in summaries.items():
        have = ", ".join(s.get("datakinds", {}))
        if not have:
            parts.append(f"region {r} has no datakind yet")
        else:
            parts.append(f"region {r} has no {wanted or 'such'} datakind{years} (it has: {have})")
    hint = "pick a modality `m3leo modalities --region R` lists, or another --region/--edition"
    if selection.edition == "local" and not any(s.get("datakinds") for s in summaries.values()):
        hint = "add a layer to it: `m3leo ingest` your rasters or `m3leo gee` (docs/aoi.md)"
    return EmptySelectionError("; ".join(parts) + f" in the {selection.edition} edition", hint)


def _filter(selection: Selection, datakinds: list[str], kinds: Sequence[str]) -> pc.Expression:
    dk = in_set("datakind", datakinds)
    tile = (pc.field("kind") == "tile") & dk
    shard = (pc.field("kind") == "shard") & dk
    if selection.splits:
        tile = tile & in_set("split", selection.splits)
        shard = shard & in_set("split", selection.splits)
    if selection.tiles:
        tile = tile & in_set("tile_id", selection.tiles)
    if selection.edition == "full":
        tile = tile & pc.field("shard").is_valid()  # no shard in the listing: not available
    if selection.bbox is not None:
        w, s, e, n = selection.bbox
        tile = tile & (pc.field("lon_min") <= e) & (pc.field("lon_max") >= w)
        tile = tile & (pc.field("lat_min") <= n) & (pc.field("lat_max") >= s)
    parts = {"tile": tile, "shard": shard, "aux": pc.field("kind") == "aux"}
    expr = None
    for k in kinds:
        expr = parts[k] if expr is None else expr | parts[k]
    assert expr is not None
    return expr


def select(
    settings: Settings,
    selection: Selection,
    kinds: Sequence[str] = ("tile",),
    *,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Manifest rows matching ``selection`` (tile rows by default), sorted within each region.

    ``columns`` limits what is read (``kind`` and ``tile_id`` are always included). Raises
    EmptySelectionError saying why when nothing matches, TileNotFoundError for tile ids the
    manifests do not know, ManifestNotFoundError when a region has no cached manifest.
    """
    return select_table(settings, selection, kinds, columns)[0]


def plan_query(
    settings: Settings, selection: Selection
) -> tuple[dict[str, Path], dict[str, dict[str, Any]], list[str]]:
    """Manifest paths, their footer summaries and the datakinds the selection wants."""
    if selection.bbox is not None and selection.edition == "full":
        raise SelectionError(  # a flag that cannot work with this edition: usage (exit 2)
            "the full edition publishes no tile geometry, so --bbox cannot select from it",
            "use --edition miniset (its tiles have bboxes) or select full-edition tiles "
            "with --tiles/--tiles-file",
        )
    paths = manifest_paths(settings, selection)
    summaries = {r: read_summary(p) for r, p in paths.items()}
    check_pinned(settings, selection.edition, summaries)
    all_dks = sorted({dk for s in summaries.values() for dk in s.get("datakinds", {})})
    _check_years(selection, all_dks, list(summaries))
    datakinds = [dk for dk in all_dks if _wants(selection, dk)]
    if not datakinds:
        raise _other_edition(settings, selection, _no_datakind(selection, summaries))
    return paths, summaries, datakinds


def _check_years(selection: Selection, datakinds: list[str], regions: list[str]) -> None:
    """A --year no yearly layer here has is a usage error naming the years that exist; it is
    never left to select only the year-less layers (srtmdem, gssic, ...)."""
    if not selection.years:
        return
    present: set[int] = set()
    for dk in datakinds:
        try:
            year = spec.parse_datakind(dk).year
        except UnknownModalityError:
            continue
        if year is not None:
            present.add(year)
    absent = [y for y in selection.years if y not in present]
    if not absent:
        return
    have = ", ".join(map(str, sorted(present))) or "none"
    raise SelectionError(
        f"--year {', '.join(map(str, absent))}: no {selection.edition} layer of "
        f"{'that year' if len(absent) == 1 else 'those years'} in {', '.join(regions)} "
        f"(years here: {have})",
        (f"use --year {sorted(present)[-1]}" if present else "leave --year out")
        + "; `m3leo modalities` lists the datakinds and their years",
    )


def _other_edition(settings: Settings, selection: Selection, exc: SelectionError) -> SelectionError:
    """An empty answer names the other edition when the store holds its data."""
    extra = other_edition_hint(settings, selection.edition, selection.regions)
    if extra:
        exc.hint = f"{extra}; {exc.hint}" if exc.hint else extra
    return exc


def select_table(
    settings: Settings,
    selection: Selection,
    kinds: Sequence[str],
    columns: Sequence[str] | None,
    dictionary: Sequence[str] = (),
) -> tuple[pa.Table, dict[str, dict[str, Any]], list[str], list[Path]]:
    paths, summaries, datakinds = plan_query(settings, selection)
    files = list(paths.values())
    cols = None if columns is None else list(dict.fromkeys(["kind", "tile_id", *columns]))
    table = read_manifest(
        files, filter=_filter(selection, datakinds, kinds), columns=cols, dictionary=dictionary
    )
    if selection.tiles:
        _check_tiles(selection, files, table)
    if selection.limit is not None and "tile" in kinds:
        tiles = table.filter(pc.field("kind") == "tile")["tile_id"]
        keep = pc.unique(tiles.drop_null()).sort()[: selection.limit]
        table = table.filter((pc.field("kind") != "tile") | pc.field("tile_id").isin(keep))
    if table.num_rows == 0:
        raise _other_edition(settings, selection, explain_empty(selection, summaries, datakinds))
    return table, summaries, datakinds, files


def _check_tiles(selection: Selection, files: list[Path], table: pa.Table) -> None:
    found = set(pc.unique(table["tile_id"].drop_null()).to_pylist())
    missing = [t for t in selection.tiles if t not in found]
    if not missing:
        return
    known = read_manifest(
        files,
        filter=(pc.field("kind") == "tile") & in_set("tile_id", missing),
        columns=["tile_id"],
    )
    unknown = [t for t in missing if t not in set(known["tile_id"].to_pylist())]
    if not unknown:
        return
    ids = read_manifest(files, filter=pc.field("kind") == "tile", columns=["tile_id"])
    universe = pc.unique(ids["tile_id"].drop_null()).sort().to_pylist()
    close = _close_ids(unknown[0], universe)
    where = f"the {selection.edition} manifest of {', '.join(r for r in selection.region_names)}"
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    raise TileNotFoundError(
        f"{len(unknown)} tile id(s) not in {where}: {shown}",
        ("did you mean " + " or ".join(close) + "? " if close else "")
        + "check the --region/--edition; `m3leo stats` shows what exists",
    )


def _close_ids(word: str, universe: list[str]) -> list[str]:
    if len(universe) <= 20_000:
        return difflib.get_close_matches(word, universe, n=3, cutoff=0.6)
    i = bisect.bisect_left(universe, word)  # ids sharing the longest prefix sit next to it
    return universe[max(0, i - 1) : i + 2]


def explain_empty(
    selection: Selection, summaries: dict[str, dict[str, Any]], datakinds: list[str]
) -> EmptySelectionError:
    what = [f"edition {selection.edition}", f"region {', '.join(summaries)}"]
    what.append(f"datakind {', '.join(datakinds)}")
    if selection.splits:
        what.append(f"split {', '.join(selection.splits)}")
    if selection.tiles:
        what.append(f"{len(selection.tiles)} listed tile(s)")
    if selection.bbox is not None:
        b = ",".join(f"{v:g}" for v in selection.bbox)
        spans = []
        for r, s in summaries.items():
            if s.get("bbox"):
                spans.append(f"{r} spans " + ",".join(f"{v:.3f}" for v in s["bbox"]))
        return EmptySelectionError(
            f"bbox {b} overlaps no {selection.edition} tile of region "
            f"{', '.join(summaries)} ({'; '.join(spans) or 'no tile has a bbox'})",
            "check the order W,S,E,N and the region; `m3leo catalog show --json` gives each extent",
        )
    return EmptySelectionError("no tile matches " + ", ".join(what))
