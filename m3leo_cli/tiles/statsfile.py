"""The saved band statistics: ``<data_dir>/.m3leo/stats/bands-<edition>.json``.

Written by ``m3leo stats --bands`` and read by ``m3leo export --normalize``. One JSON object per
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


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def save_band_stats(settings: Settings, report: BandStatsReport, selection: Selection) -> Path:
    """Merge ``report`` into the edition's stats file (atomically) and return its path."""
    from ..version import __version__
    from .model import DECODING

    path = stats_path(settings, report.edition)
    data = _read(path) or {"format": FORMAT, "edition": report.edition, "modalities": {}}
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
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))
    return path


def load_band_stats(settings: Settings, edition: str) -> dict[str, dict[str, Any]]:
    """modality -> its saved entry (with ``bands``); StatsNotFoundError when there is none."""
    path = stats_path(settings, edition)
    data = _read(path)
    if not data.get("modalities"):
        raise StatsNotFoundError(f"no saved band statistics for the {edition} edition ({path})")
    modalities: dict[str, dict[str, Any]] = data["modalities"]
    return modalities


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
