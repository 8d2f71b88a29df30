"""The saved band statistics: ``<data_dir>/.m3leo/stats/bands-<edition>.json``.

Written by ``m3leo stats --bands`` and read by ``m3leo export --normalize``. A read-only store
(a shared copy on a cluster) cannot hold them: they then go to the user cache
(``<cache_dir>/stats/<store key>/``, ``cache_stats_path``), or to ``--stats FILE``, and are
read back from there. One JSON object per
edition; each run replaces the entries of the modalities (datakinds) it computed and keeps the
others, so statistics of different modalities accumulate::

    {"format": "m3leo-band-stats/1", "edition": "miniset",
     "modalities": {"s1grd-2020": {
         "regions": ["europe"], "splits": [], "tiles": 120, "files": 120,
         "values": "decoded", "decoding": "uint16 holding signed dB: view as int16 ...",
         "percentiles": [2, 50, 98], "computed_at": "2026-11-25T12:00:00+00:00",
         "bands": {"winter_vvasc": {"count": ..., "mean": ..., "std": ..., "min": ...,
                                    "max": ..., "percentiles": {"p2": ...}, ...}}}}}

Statistics are of the *decoded* values (``tiles.decode``): normalise with
``(tiles.decode(tile) - mean) / std``. ``std`` is the population standard deviation.
"""

from __future__ import annotations

import json
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
        data["modalities"][modality] = {
            "regions": list(report.regions),
            "splits": list(selection.splits),
            "tiles": report.tiles,
            "files": max(b["files"] for b in bands.values()),
            "values": "decoded",
            "decoding": DECODING.get(family, "as stored"),
            "percentiles": list(report.percentiles),
            "computed_at": now,
            "m3leo_version": __version__,
            "bands": bands,
        }


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


def load_band_stats(
    settings: Settings, edition: str, path: Path | None = None
) -> dict[str, dict[str, Any]]:
    """modality -> its saved entry (with ``bands``); StatsNotFoundError when there is none.

    ``path`` given: that file only. Otherwise the store's file and the user cache's, the most
    recently computed entry of each modality winning.
    """
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
        return dict(data["modalities"])
    places = [stats_path(settings, edition), cache_stats_path(settings, edition)]
    merged: dict[str, dict[str, Any]] = {}
    for p in places:
        for name, entry in (_read(p).get("modalities") or {}).items():
            old = merged.get(name)
            if old is None or str(entry.get("computed_at", "")) > str(old.get("computed_at", "")):
                merged[name] = entry
    if not merged:
        raise StatsNotFoundError(
            f"no saved band statistics for the {edition} edition ({places[0]} or {places[1]})"
        )
    return merged


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
