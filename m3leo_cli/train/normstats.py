"""The band statistics a run normalises its inputs with: the train split's, computed if missing.

``data.norm_scope=pooled`` (default): one set of statistics over the train split of every
selected region; ``region``: one set per region, each region's tiles normalised with its own
(the authors' way). They come from the saved statistics (``tiles.statsfile``) when an entry of
exactly that selection exists and still fits the store (every local train tile, or the
paper's sample of at most 1,000 random tiles per region); when there is none, they are
computed on the train split, saved with their provenance, and one line says so. An entry of
another selection (``stats --bands --limit 1``, other regions, a store that grew since) is
refused with the command that recomputes it, or, with ``data.stats_check=warn``, used with a
warning. ``m3leo train`` writes what it used to ``<run>/band_stats.json``, and ``evaluate``
reads that file back, so a run is scored with the constants it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StatsNotFoundError
from ..progress import ProgressCallback, ProgressEvent, no_progress

if TYPE_CHECKING:
    from ..config import Settings
    from ..export.normalize import BandStats
    from ..store.layout import Locate
    from .layers import DataSpec

POOLED = "*"
PAPER_SAMPLE = 1000  # the authors' MeanStdNormalizer: at most 1,000 random train tiles
FILE = "band_stats.json"
PAPER_EPS = 1e-5  # their (x - mean) / (std + 1e-5)


@dataclass
class RunStats:
    """Statistics per scope (``"*"`` pooled, or a region) and datakind, with provenance."""

    scope: str  # "pooled" | "region"
    by_scope: dict[str, dict[str, BandStats]] = field(default_factory=dict)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # "<scope>|<dk>"

    def for_region(self, region: str | None) -> dict[str, BandStats]:
        if self.scope == "pooled":
            return self.by_scope.get(POOLED, {})
        got = self.by_scope.get(region or "")
        if got is None:
            raise StatsNotFoundError(
                f"no train-split statistics for region {region!r} (data.norm_scope=region)",
                "that region has no train tile: use data.norm_scope=pooled, or leave it out "
                "of data.regions",
            )
        return got

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": "m3leo-run-stats/1",
            "scope": self.scope,
            "stats": {
                s: {dk: {"bands": b.bands, "provenance": self.provenance.get(f"{s}|{dk}", {})}
                    for dk, b in per.items()}
                for s, per in self.by_scope.items()
            },
        }  # fmt: skip

    def write(self, run_dir: Path) -> Path:
        path = run_dir / FILE
        path.write_text(json.dumps(self.as_dict(), indent=1, sort_keys=True) + "\n")
        return path


def read_run_stats(run_dir: Path) -> RunStats | None:
    """The statistics a run was trained with (``<run>/band_stats.json``), or None."""
    from ..export.normalize import BandStats

    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    out = RunStats(str(doc.get("scope", "pooled")))
    for scope, per in (doc.get("stats") or {}).items():
        out.by_scope[scope] = {}
        for dk, entry in per.items():
            prov = entry.get("provenance") or {}
            out.by_scope[scope][dk] = BandStats(
                dk, dict(entry["bands"]), tuple(prov.get("regions", ())), int(prov.get("tiles", 0))
            )
            out.provenance[f"{scope}|{dk}"] = prov
    return out


def scope_of(data: DataSpec) -> str:
    """``region`` under ``data.preprocessing=paper`` (the authors' constants are per region)."""
    return "region" if data.preprocessing == "paper" else data.norm_scope


def _groups(data: DataSpec, regions: Sequence[str]) -> list[tuple[str, list[str]]]:
    if scope_of(data) == "region":
        return [(r, [r]) for r in regions]
    return [(POOLED, list(regions))]


def _sample(data: DataSpec) -> int | None:
    return PAPER_SAMPLE if data.preprocessing == "paper" else None


def paper_mean_std(band: dict[str, Any], valid_only: bool = False) -> tuple[float, float]:
    """The authors' constants from a saved band entry, and their epsilon: ``mean = sum / n`` and
    ``std = sqrt(sum of squares / n - mean^2)`` where ``n`` counts every pixel, no-data ones
    too (their ``nansum`` over the array, divided by its size), returned as ``(mean,
    std + 1e-5)`` so that ``(x - mean) / std`` is their ``(x - mean) / (std + 1e-5)``.
    ``valid_only``: ``n`` counts the valid pixels only (their GUNW constants, taken over the
    fill-masked values of every date pair of a variable)."""
    import math

    count, pixels = int(band.get("count") or 0), int(band.get("pixels") or 0)
    if valid_only:
        pixels = count
    if not count or not pixels:
        return 0.0, 1.0 + PAPER_EPS
    mean, std = float(band["mean"]), float(band.get("std") or 0.0)
    total, squares = mean * count, (std * std + mean * mean) * count
    m = total / pixels
    return m, math.sqrt(max(squares / pixels - m * m, 0.0)) + PAPER_EPS


def resolve_stats(
    settings: Settings,
    data: DataSpec,
    train: Any,
    *,
    compute: bool = True,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    locate: Locate | None = None,
) -> RunStats:
    """The statistics of ``data``'s inputs over its train split (``train``: that split's
    ``dataset.SplitPlan``), computed and saved where missing when ``compute``.

    Every channel's band (stored or derived) is looked up here, so a missing band fails
    before any run folder is written, not in the first batch.
    """
    from ..export.normalize import BandStats, check_entry, stats_command
    from ..selection import Selection
    from ..tiles.bandstats import band_stats
    from ..tiles.statsfile import describe

    regions = sorted({s.region for s in train.samples})
    sample = _sample(data)
    out = RunStats(scope_of(data))

    def warn(line: str) -> None:
        progress(ProgressEvent("message", phase="train", message=line))

    for scope, group in _groups(data, regions):
        out.by_scope[scope] = {}
        for dk in train.inputs:
            entry = check_entry(
                settings, data.edition, dk, group, sample=sample, on_mismatch=data.stats_check,
                warn=warn, exact=True, locate=locate,
            )  # fmt: skip
            cmd = stats_command(data.edition, group, [dk])
            if entry is None:
                if not compute:
                    raise StatsNotFoundError(
                        f"no saved band statistics for {dk} (the train split of {'/'.join(group)})",
                        f"compute them first: {cmd}",
                    )
                sel = Selection(
                    edition=data.edition, regions=tuple(group), modalities=(dk,), splits=("train",)
                )
                report = band_stats(settings, sel, sample=sample, seed=seed, locate=locate)
                entry = check_entry(
                    settings, data.edition, dk, group, sample=sample, exact=True, locate=locate
                )
                assert entry is not None
                warn(
                    f"band statistics of {dk}: computed on {describe(entry)}, "
                    f"saved to {report.saved_to}"
                )
            stats = BandStats(
                dk,
                dict(entry.get("bands", {})),
                tuple(entry.get("regions", ())),
                int(entry.get("tiles", 0)),
            )
            for channel in train.channels[dk]:
                band = channel.split(":", 1)[1]
                try:
                    stats.mean_std(band)
                except StatsNotFoundError as exc:
                    raise StatsNotFoundError(
                        f"{exc.message} (saved before m3leo kept statistics of derived bands?)",
                        f"recompute them: {cmd}",
                    ) from None
            out.by_scope[scope][dk] = stats
            out.provenance[f"{scope}|{dk}"] = {
                k: entry.get(k) for k in ("regions", "splits", "tiles", "sample", "computed_at")
            }
    return out
