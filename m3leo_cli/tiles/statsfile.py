"""The saved band statistics: ``<data_dir>/.m3leo/stats/bands-<edition>.json``.

Written by ``m3leo stats --bands`` (and by ``m3leo train`` when the statistics it needs are
missing) and read by ``m3leo export --normalize`` and training. A read-only store
(a shared copy on a cluster) cannot hold them: they then go to the user cache
(``<cache_dir>/stats/<store key>/``, ``cache_stats_path``), or to ``--stats FILE``, and are
read back from there. One JSON object per
edition; each run replaces the entries of the modalities (datakinds) it computed and keeps the
others, so statistics of different modalities accumulate. Every entry carries its provenance:
the regions and splits of the tiles it was computed on, how many tiles of that modality, and the
sample size (``null``: every tile; an int: at most that many random tiles per region). Entries
are also kept per selection under ``selections`` (key ``<datakind>|<regions>|<splits>``), so the
statistics of europe's train split and of conus's do not replace each other::

    {"format": "m3leo-band-stats/1", "edition": "miniset",
     "modalities": {"s1grd-2020": {
         "regions": ["europe"], "splits": ["train"], "tiles": 120, "files": 120,
         "sample": null, "subset": false,
         "values": "decoded", "decoding": "uint16 holding signed dB: view as int16 ...",
         "percentiles": [2, 50, 98], "computed_at": "2026-11-25T12:00:00+00:00",
         "bands": {"winter_vvasc": {"count": ..., "mean": ..., "std": ..., "min": ...,
                                    "max": ..., "percentiles": {"p2": ...}, ...}}}},
     "selections": {"s1grd-2020|europe|train": {...the same entry...}}}

Statistics are of the *decoded* values (``tiles.decode``): normalise with
``(tiles.decode(tile) - mean) / std``. ``std`` is the population standard deviation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import StatsNotFoundError
from ..store.layout import Store, write_text_atomic

if TYPE_CHECKING:
    from ..config import Settings
    from ..selection import Selection
    from .accumulate import BandStatsReport

FORMAT = "m3leo-band-stats/1"


def stats_path(settings: Settings, edition: str) -> Path:
    return Store(settings.data_dir).state_dir / "stats" / f"bands-{edition}.json"


def cache_stats_path(settings: Settings, edition: str) -> Path:
    """Where statistics of a store go when the store itself is read-only (a shared HPC copy):
    the user's cache dir, one folder per store (a hash of its resolved path)."""
    import hashlib

    from ..config import _default_cache_dir

    root = settings.cache_dir or _default_cache_dir()
    key = hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()[:16]
    return root / "stats" / key / f"bands-{edition}.json"


def selection_key(
    datakind: str, regions: Sequence[str], splits: Sequence[str], sample: int | None = None
) -> str:
    """The key of one selection's entry under ``selections``: ``s1grd-2020|conus,europe|train``
    (an empty splits list, every split, is ``all``; a sample adds ``|sample=1000``)."""
    key = f"{datakind}|{','.join(sorted(regions))}|{','.join(sorted(splits)) or 'all'}"
    return key + (f"|sample={sample}" if sample is not None else "")


def _subset(selection: Selection) -> bool:
    """The selection narrows a split to some of its tiles (--limit, --tiles, --bbox, --year)."""
    return bool(selection.limit is not None or selection.tiles or selection.bbox)


def _merge(data: dict[str, Any], report: BandStatsReport, selection: Selection) -> None:
    from ..version import __version__
    from .model import DECODING

    by_modality: dict[str, dict[str, Any]] = {}
    for b in report.bands:
        by_modality.setdefault(b.modality, {})[b.band] = {
            k: v for k, v in b.as_dict().items() if k not in ("modality", "band")
        }
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    for modality, bands in by_modality.items():
        family = spec.parse_datakind(modality).family.name
        prov = report.extra.get("provenance", {}).get(modality, {})
        regions = sorted(prov.get("regions", report.regions))
        splits = sorted(selection.splits)
        entry = {
            "regions": regions,
            "splits": splits,
            "tiles": int(prov.get("tiles", report.tiles)),
            "sample": report.extra.get("sample"),
            "subset": _subset(selection),
            "files": max(b["files"] for b in bands.values()),
            "values": "decoded",
            "decoding": DECODING.get(family, "as stored"),
            "percentiles": list(report.percentiles),
            "computed_at": now,
            "m3leo_version": __version__,
            "bands": bands,
        }
        data["modalities"][modality] = entry
        key = selection_key(modality, regions, splits, report.extra.get("sample"))
        data.setdefault("selections", {})[key] = entry


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def save_band_stats(
    settings: Settings,
    report: BandStatsReport,
    selection: Selection,
    path: Path | None = None,
) -> tuple[Path, str]:
    """Merge ``report`` into a stats file (atomically); return its path and where that is.

    ``path`` given (``--stats FILE``): there ("file"). Otherwise the store ("store"), or, when
    the store cannot be written (read-only, another user's), the user cache ("cache").
    """
    targets = [(path, "file")] if path is not None else [
        (stats_path(settings, report.edition), "store"),
        (cache_stats_path(settings, report.edition), "cache"),
    ]  # fmt: skip
    error: OSError | None = None
    for target, where in targets:
        data = _read(target) or {"format": FORMAT, "edition": report.edition, "modalities": {}}
        _merge(data, report, selection)
        try:
            write_text_atomic(target, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:
            error = exc
            continue
        return target, where
    assert error is not None
    raise error


def _load_all(settings: Settings, edition: str, path: Path | None) -> dict[str, Any]:
    """The merged stats data (``modalities`` and ``selections``) of ``path``, or of the store's
    file and the user cache's, the most recently computed entry of each key winning."""
    if path is not None:
        data = _read(path)
        if not data.get("modalities"):
            raise StatsNotFoundError(
                f"{path} holds no m3leo band statistics",
                f"write them there first: m3leo stats --bands --stats {path} (same selection)",
            )
        if data.get("edition") not in (None, edition):
            raise StatsNotFoundError(
                f"{path} holds statistics of the {data.get('edition')} edition, not {edition}",
                f"pass --edition {data.get('edition')}, or compute them for {edition}",
            )
        return {"modalities": dict(data["modalities"]), "selections": data.get("selections", {})}
    places = [stats_path(settings, edition), cache_stats_path(settings, edition)]
    merged: dict[str, dict[str, Any]] = {"modalities": {}, "selections": {}}
    for p in places:
        data = _read(p)
        for section, table in merged.items():
            for name, entry in (data.get(section) or {}).items():
                old = table.get(name)
                if old is None or str(entry.get("computed_at", "")) > str(
                    old.get("computed_at", "")
                ):
                    table[name] = entry
    if not merged["modalities"]:
        raise StatsNotFoundError(
            f"no saved band statistics for the {edition} edition ({places[0]} or {places[1]})"
        )
    return merged


def load_band_stats(
    settings: Settings, edition: str, path: Path | None = None
) -> dict[str, dict[str, Any]]:
    """modality -> its latest saved entry (with ``bands``); StatsNotFoundError when there is none.

    ``path`` given: that file only. Otherwise the store's file and the user cache's, the most
    recently computed entry of each modality winning.
    """
    return dict(_load_all(settings, edition, path)["modalities"])


def describe(entry: dict[str, Any]) -> str:
    """``the train split of europe (20 tiles)`` for an entry's provenance."""
    splits = entry.get("splits") or []
    which = f"the {'+'.join(splits)} split" if splits else "every split"
    regions = "/".join(entry.get("regions") or []) or "?"
    sample = entry.get("sample")
    n = entry.get("tiles", "?")
    tiles = f"{n} tile{'' if n == 1 else 's'}" + (f", sample of <= {sample}" if sample else "")
    subset = ", a subset: --limit/--tiles/--bbox" if entry.get("subset") else ""
    return f"{which} of {regions} ({tiles}{subset})"


def find_entry(
    settings: Settings,
    edition: str,
    datakind: str,
    regions: Sequence[str],
    tiles: int,
    *,
    split: str = "train",
    sample: int | None = None,
    path: Path | None = None,
    exact: bool = False,
) -> tuple[dict[str, Any] | None, str | None]:
    """The saved entry of ``datakind`` for the ``split`` of ``regions`` and why it does not fit.

    ``(entry, None)``: statistics of exactly that selection, all its ``tiles`` local tiles (or
    their sample of at most ``sample`` per region). ``(entry, reason)``: the closest entry
    (that selection's, else the latest of the modality) describes something else.
    ``(None, None)``: nothing saved for the modality (``exact``: for that selection).
    The caller refuses, warns or computes.
    """
    try:
        data = _load_all(settings, edition, path)
    except StatsNotFoundError:
        if path is not None:  # a --stats FILE that holds none: say so
            raise
        return None, None
    want = {"regions": sorted(regions), "splits": [split], "tiles": tiles, "sample": sample}
    entry = data["selections"].get(selection_key(datakind, regions, [split], sample))
    if entry is None and not exact:
        entry = data["modalities"].get(datakind)
    if entry is None:
        return None, None
    reason = None
    if sorted(entry.get("regions") or []) != want["regions"] or sorted(
        entry.get("splits") or []
    ) != [split]:
        reason = f"they are of {describe(entry)}, not of {describe(want)}"
    elif entry.get("subset"):
        reason = f"they are of {describe(entry)}, not of {describe(want)}"
    elif entry.get("sample") != sample:
        reason = f"they are of {describe(entry)}, not of {describe(want)}"
    elif int(entry.get("tiles", -1)) != (tiles if sample is None else min(sample, tiles)):
        reason = (
            f"they are of {describe(entry)}; that split now holds {tiles} local tiles of {datakind}"
        )
    return entry, reason


def normalization(
    settings: Settings, edition: str, datakind: str, band: str
) -> tuple[float, float]:
    """(mean, std) of one band of one modality, for ``(decode(x) - mean) / std``."""
    from .accumulate import band_key

    entry = load_band_stats(settings, edition).get(datakind)
    if entry is None:
        raise StatsNotFoundError(f"no saved band statistics for {datakind} ({edition} edition)")
    _, key = band_key(datakind, band)
    stats = entry["bands"].get(key)
    if stats is None or stats.get("mean") is None:
        raise StatsNotFoundError(f"no saved statistics for band {band!r} of {datakind}")
    return float(stats["mean"]), float(stats["std"] or 1.0)
