"""``--normalize``: ``(decode(x) - mean) / std`` per band, as float32, NaN where there is no data.

The statistics are the ones ``m3leo stats --bands`` saved (``tiles.statsfile``: one file
per edition under ``<data_dir>/.m3leo/stats/``, in the user cache when the store is read-only,
or the ``--stats FILE`` given to both commands). They describe *decoded* values
(``tiles.decode``: S1 GRD uint16 -> signed dB, S2 uint8 -> 0..1, ...), so values are
decoded first. GUNW bands are pooled per variable there (date pairs differ
between tiles), and looked up the same way here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import StatsNotFoundError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ..config import Settings
    from .samples import SamplePlan


@dataclass(frozen=True)
class BandStats:
    layer: str
    bands: dict[str, dict[str, Any]]  # band key -> saved entry (mean, std, ...)
    regions: tuple[str, ...] = ()
    tiles: int = 0

    def mean_std(self, band: str) -> tuple[float, float]:
        from ..tiles.accumulate import band_key

        _, key = band_key(self.layer, band)
        entry = self.bands.get(key)
        if entry is None or entry.get("mean") is None:
            raise StatsNotFoundError(
                f"the saved statistics of {self.layer} have no band {band!r}",
                f"recompute them: m3leo stats --bands --modality {self.layer}",
            )
        return float(entry["mean"]), float(entry.get("std") or 1.0)

    def apply(
        self,
        data: np.ndarray,
        bands: Sequence[str],
        nodata: np.ndarray | None,
        family: str,
    ) -> np.ndarray:
        import numpy as np

        from ..tiles.model import decode_values

        values = decode_values(data, family)
        if nodata is not None:
            values[nodata] = np.nan
        ms = [self.mean_std(b) for b in bands]
        mean = np.array([m for m, _ in ms], dtype=np.float32)[:, None, None]
        std = np.array([s for _, s in ms], dtype=np.float32)[:, None, None]
        return ((values - mean) / std).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {
            "regions": list(self.regions),
            "tiles": self.tiles,
            "bands": {
                k: {"mean": v.get("mean"), "std": v.get("std")}
                for k, v in sorted(self.bands.items())
            },
        }


def load_stats(
    settings: Settings, plan: SamplePlan, layers: Sequence[str], path: Path | None = None
) -> dict[str, BandStats]:
    """The saved band statistics of each layer (from the store, the user cache, or ``path``),
    or StatsNotFoundError naming the command that computes them."""
    from ..tiles.statsfile import load_band_stats

    regions = sorted({s.region for s in plan.samples})
    edition = plan.edition or "miniset"
    cmd = (
        f"m3leo stats --bands --edition {edition} "
        + " ".join(f"--region {r}" for r in regions)
        + " "
        + " ".join(f"--modality {lay}" for lay in layers)
        + (f" --stats {path}" if path is not None else "")
    )
    try:
        saved = load_band_stats(settings, edition, path)
    except StatsNotFoundError as exc:
        raise StatsNotFoundError(exc.message, f"compute them first: {cmd}") from None
    out: dict[str, BandStats] = {}
    for layer in layers:
        entry = saved.get(layer)
        if entry is None:
            raise StatsNotFoundError(
                f"no saved band statistics for {layer} ({edition} edition)",
                f"compute them first: {cmd}",
            )
        out[layer] = BandStats(
            layer,
            dict(entry.get("bands", {})),
            tuple(entry.get("regions", ())),
            int(entry.get("tiles", 0)),
        )
    return out
