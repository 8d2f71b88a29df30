"""What an export is made of: samples = one tile with every requested layer, joined on tile id.

A *layer* is one datakind folder (``s1grd-2020``, ``gssic``, ``esaworldcover-2020``); the user
names inputs with ``--modality`` and targets with ``--label`` (families and aliases expand to
every matching datakind). Tiles lacking a layer are skipped and counted per layer, or kept with
``allow_missing`` (the absent layers recorded on the sample).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import EmptySelectionError, SelectionError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from ..config import Settings
    from ..selection import Selection
    from ..store.layout import Locate

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class LayerSpec:
    """One output layer: a datakind, its role and how it is resampled."""

    name: str  # datakind folder name, used as the array / column / member name
    role: str  # "input" | "label"

    @property
    def family(self) -> spec.Family:
        return spec.parse_datakind(self.name).family

    @property
    def categorical(self) -> bool:
        """Label families (spec ``Family.label``) are resampled with nearest neighbour."""
        return self.family.label


@dataclass(frozen=True)
class LayerFile:
    """A source file of one layer of one tile."""

    path: Path  # local file
    repo_path: str = ""
    checksum: str | None = None  # hex digest
    checksum_kind: str | None = None  # "sha256" | "git-sha1"
    size: int | None = None


@dataclass(frozen=True)
class Sample:
    tile_id: str
    split: str
    region: str
    files: Mapping[str, LayerFile]  # layer -> file, present layers only
    missing: tuple[str, ...] = ()  # requested layers this tile lacks (allow_missing only)
    bounds: BBox | None = None  # from the manifest (EPSG:4326)
    edition: str = ""


@dataclass
class SamplePlan:
    """The joined, sorted samples of an export plus what was left out and why."""

    layers: list[LayerSpec]
    samples: list[Sample]  # sorted by (split, region, tile_id)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # layer -> tile ids lacking it
    not_local: dict[str, list[str]] = field(default_factory=dict)  # layer -> ids not downloaded
    # layer -> ids _parquet.csv lists but whose shard does not hold them (full edition)
    unpublished: dict[str, list[str]] = field(default_factory=dict)
    bare: list[str] = field(default_factory=list)  # ids with no local layer at all
    edition: str = ""
    commits: dict[str, str] = field(default_factory=dict)  # region -> commit
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        order = {s: i for i, s in enumerate(spec.SPLITS)}
        return sorted({s.split for s in self.samples}, key=lambda s: (order.get(s, 9), s))


def sort_samples(samples: Iterable[Sample]) -> list[Sample]:
    order = {s: i for i, s in enumerate(spec.SPLITS)}
    return sorted(samples, key=lambda s: (order.get(s.split, 9), s.split, s.region, s.tile_id))


def join_samples(
    layers: Sequence[LayerSpec],
    tiles: Iterable[tuple[str, str, str, str, LayerFile, BBox | None]],
    *,
    allow_missing: bool = False,
    edition: str = "",
) -> SamplePlan:
    """Join ``(tile_id, split, region, layer, file, bounds)`` rows into samples.

    A tile present in some requested layer but lacking another is skipped (recorded per missing
    layer) unless ``allow_missing``; then it is kept and its absent layers are listed.
    """
    wanted = [lay.name for lay in layers]
    by_tile: dict[tuple[str, str], dict[str, Any]] = {}
    for tile_id, split, region, layer, lf, bounds in tiles:
        if layer not in wanted:
            continue
        entry = by_tile.setdefault((region, tile_id), {"split": split, "files": {}, "bounds": None})
        entry["files"][layer] = lf
        if bounds is not None and entry["bounds"] is None:
            entry["bounds"] = bounds
    samples: list[Sample] = []
    skipped: dict[str, list[str]] = {}
    for (region, tile_id), entry in by_tile.items():
        missing = tuple(name for name in wanted if name not in entry["files"])
        if missing and not allow_missing:
            for name in missing:
                skipped.setdefault(name, []).append(tile_id)
            continue
        samples.append(
            Sample(
                tile_id,
                entry["split"],
                region,
                dict(entry["files"]),
                missing,
                entry["bounds"],
                edition,
            )
        )
    for ids in skipped.values():
        ids.sort()
    return SamplePlan(list(layers), sort_samples(samples), skipped, edition=edition)


def explain_empty(
    plan: SamplePlan, total_tiles: int, allow_missing: bool = False
) -> EmptySelectionError:
    """Say which layer is missing where when no tile has every requested layer."""
    parts = []
    for name in sorted(set(plan.skipped) | set(plan.not_local) | set(plan.unpublished)):
        not_local = set(plan.not_local.get(name, ()))
        gone = set(plan.unpublished.get(name, ()))
        absent = [t for t in plan.skipped.get(name, ()) if t not in not_local | gone]
        bits = []
        if absent:
            bits.append(f"absent on {len(absent)}")
        if gone:
            bits.append(f"not published (in its shards) on {len(gone)}")
        if not_local:
            bits.append(f"not downloaded on {len(not_local)}")
        eg = f" (e.g. {', '.join(absent[:3])})" if absent else ""
        parts.append(f"{name} {' and '.join(bits)} of {total_tiles} tiles{eg}")
    detail = "; ".join(parts) if parts else "the selection holds no tiles"
    hint = "pass --allow-missing to keep incomplete tiles, or drop that layer"
    if allow_missing:  # the flag is on already: no tile has any requested layer at all
        hint = "select tiles that hold these layers (`m3leo stats` shows which modalities exist)"
    if plan.not_local:
        sel = plan.selection
        flags = [f"--edition {sel.get('edition') or plan.edition}"]
        flags += [f"--region {r}" for r in sel.get("regions") or []]
        flags += [f"--modality {m}" for m in sorted(plan.not_local)]
        more = "" if allow_missing else " (or pass --allow-missing)"
        hint = f"download them first: m3leo download {' '.join(flags)}{more}"
    return EmptySelectionError(f"no tile has every requested layer: {detail}", hint)


# --------------------------------------------------------------------------- from the catalog


def resolve_layers(
    datakinds: Sequence[str],
    inputs: Sequence[str],
    labels: Sequence[str],
    *,
    labels_win: bool = False,
) -> list[LayerSpec]:
    """Map the user's modality tokens onto the datakinds the selection holds.

    A datakind named both as an input and as a label is a UsageError: one array cannot be
    both (it used to be exported once, as a normalised input, the label lost). With
    ``labels_win`` (inputs defaulted from the selection's modalities, not named by the user)
    the label keeps it."""
    out: dict[str, LayerSpec] = {}
    named: dict[str, str] = {}  # datakind -> the token that first named it
    for role, tokens in (("input", inputs), ("label", labels)):
        for token in tokens:
            hits = [dk for dk in sorted(datakinds) if spec.matches_modality(token, dk)]
            if not hits:
                raise SelectionError(
                    f"{'label' if role == 'label' else 'modality'} {token!r} has no tiles in "
                    "this selection",
                    "`m3leo stats` shows which modalities each region holds",
                )
            for dk in hits:
                had = out.get(dk)
                if had is not None and had.role != role and labels_win:
                    out[dk] = LayerSpec(dk, role)  # the explicit label over a default input
                    continue
                if had is not None and had.role != role:  # one array cannot be both
                    raise UsageError(
                        f"{dk} is both an input (--modality {named[dk]}) and a label "
                        f"(--label {token})",
                        f"name {dk} once: drop it from --modality or from --label "
                        "(training: from data.inputs or data.target)",
                    )
                named.setdefault(dk, token)
                out.setdefault(dk, LayerSpec(dk, role))
    return list(out.values())


def plan_from_catalog(
    settings: Settings,
    selection: Selection,
    inputs: Sequence[str],
    labels: Sequence[str],
    *,
    allow_missing: bool = False,
    labels_win: bool = False,
    locate: Locate | None = None,
) -> SamplePlan:
    """Join the local tiles of ``selection`` (catalog + store) into samples.

    Files the manifest lists but the store lacks count as missing ("not downloaded").
    ``labels_win``: see :func:`resolve_layers`. ``locate(edition, region, path)``: where a
    tile's file is or will be, None when nowhere (the store by default; streaming from the
    Hub points at its cache, ``stream.plan``).
    """
    from dataclasses import replace

    from ..catalog.query import select
    from ..store.layout import Store

    tokens = tuple(dict.fromkeys([*inputs, *labels]))
    if not tokens:
        raise SelectionError(
            "name at least one layer to export",
            "add --modality (inputs) and/or --label (targets), e.g. --modality s1grd "
            "--label esaworldcover",
        )
    sel = replace(selection, modalities=tokens)
    table = select(settings, sel)
    store = Store(settings.data_dir)
    rows = _rows(table)
    layers = resolve_layers(_datakinds(settings, sel), inputs, labels, labels_win=labels_win)
    not_local: dict[str, list[str]] = {}
    present: list[tuple[str, str, str, str, LayerFile, BBox | None]] = []
    all_tiles: set[tuple[str, str]] = set()
    commits: dict[str, str] = {}
    lost: list[dict[str, Any]] = []
    for r in rows:
        all_tiles.add((r["region"], r["tile_id"]))
        commits.setdefault(r["region"], r["commit"])
        found = (
            store.local_path(r["edition"], r["region"], r["path"])
            if locate is None
            else locate(r["edition"], r["region"], r["path"])
        )
        if found is None or (locate is None and not found.is_file()):
            lost.append(r)
            continue
        local = found
        checksum = r["checksum"].hex() if r["checksum"] is not None else None
        bounds = None
        if r["lon_min"] is not None:
            bounds = (r["lon_min"], r["lat_min"], r["lon_max"], r["lat_max"])
        lf = LayerFile(local, r["path"], checksum, r["checksum_kind"], r["size"])
        present.append((r["tile_id"], r["split"], r["region"], r["datakind"], lf, bounds))
    gone: set[tuple[str, str]] = set()
    if sel.edition == "full" and lost:
        from ..full.unpacked import unpublished  # the same test verify and download use

        gone = unpublished(settings, lost)
    unpub: dict[str, list[str]] = {}
    for r in lost:
        into = unpub if (r["region"], r["path"]) in gone else not_local
        into.setdefault(r["datakind"], []).append(r["tile_id"])
    plan = join_samples(layers, present, allow_missing=allow_missing, edition=sel.edition)
    # a tile with no local layer at all never reached the join: count it as missing everywhere
    seen = {(s.region, s.tile_id) for s in plan.samples}
    skipped_ids = {t for ids in plan.skipped.values() for t in ids}
    for region, tile_id in sorted(all_tiles):
        if (region, tile_id) in seen or tile_id in skipped_ids:
            continue
        plan.bare.append(tile_id)
        for lay in layers:
            plan.skipped.setdefault(lay.name, []).append(tile_id)
    for ids in [*not_local.values(), *unpub.values()]:
        ids.sort()
    plan.not_local = not_local
    plan.unpublished = unpub
    plan.commits = dict(sorted(commits.items()))
    plan.selection = {
        "edition": sel.edition,
        "regions": list(sel.regions),
        "splits": list(sel.splits),
        "years": list(sel.years),
        "bbox": list(sel.bbox) if sel.bbox else None,
        "tiles": len(sel.tiles),
        "limit": sel.limit,
    }
    if not plan.samples:
        raise explain_empty(plan, len(all_tiles), allow_missing)
    return plan


def _datakinds(settings: Settings, sel: Selection) -> list[str]:
    """Datakinds the selected regions' manifests hold (from their footers, not the rows: a
    layer no selected tile has is still a layer, reported as missing on every tile)."""
    from ..catalog.manifest import read_summary
    from ..catalog.query import manifest_paths
    from ..errors import UnknownModalityError

    out: set[str] = set()
    for path in manifest_paths(settings, sel).values():
        for dk in read_summary(path).get("datakinds", {}):
            try:
                if sel.wants_datakind(dk):
                    out.add(dk)
            except UnknownModalityError:
                continue
    return sorted(out)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    cols = [
        "edition",
        "region",
        "datakind",
        "tile_id",
        "split",
        "path",
        "shard",
        "size",
        "checksum",
        "checksum_kind",
        "lon_min",
        "lat_min",
        "lon_max",
        "lat_max",
        "commit",
    ]
    return table.select(cols).to_pylist()
