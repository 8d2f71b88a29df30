"""``--normalize``: ``(decode(x) - mean) / std`` per band, as float32, NaN where there is no data.

The statistics are the ones ``m3leo stats --bands`` (or ``m3leo train``) saved
(``tiles.statsfile``: one file per edition under ``<data_dir>/.m3leo/stats/``, in the user
cache when the store is read-only, or the ``--stats FILE`` given to both commands), and they
must be those of the **train split** of the regions normalised, every local tile of it: the
saved provenance is checked, and statistics of another selection are refused with the command
that recomputes them. They describe *decoded* values
(``tiles.decode``: S1 GRD uint16 -> signed dB, S2 uint8 -> 0..1, ...), so values are
decoded first. GUNW bands are pooled per variable there (date pairs differ
between tiles), and looked up the same way here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import StatsNotFoundError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ..config import Settings
    from ..store.layout import Locate
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


def stats_command(
    edition: str,
    regions: Sequence[str],
    layers: Sequence[str],
    path: Path | None = None,
    split: str = "train",
) -> str:
    """The ``m3leo stats --bands`` command that computes the statistics a selection needs."""
    return " ".join(
        ["m3leo stats --bands", f"--edition {edition}"]
        + [f"--region {r}" for r in regions]
        + [f"--split {split}"]
        + [f"--modality {lay}" for lay in layers]
        + ([f"--stats {path}"] if path is not None else [])
    )


def train_tiles(
    settings: Settings,
    edition: str,
    regions: Sequence[str],
    layer: str,
    locate: Locate | None = None,
) -> int:
    """How many tiles of ``layer`` the train split of ``regions`` holds in the local store
    (or where ``locate`` finds them: a stream's cache)."""
    from ..selection import Selection
    from ..tiles.bandstats import local_files

    sel = Selection(edition=edition, regions=tuple(regions), modalities=(layer,), splits=("train",))
    return len({f[2] for f in local_files(settings, sel, locate) if f[0] == layer})


def check_entry(
    settings: Settings,
    edition: str,
    layer: str,
    regions: Sequence[str],
    *,
    path: Path | None = None,
    sample: int | None = None,
    on_mismatch: str = "refuse",
    warn: Callable[[str], None] | None = None,
    exact: bool = False,
    locate: Locate | None = None,
) -> dict[str, Any] | None:
    """The saved entry of ``layer`` for the train split of ``regions``, checked against the
    store: ``None`` when nothing is saved; StatsMismatchError (or, with ``on_mismatch="warn"``,
    a ``warn`` line) when the entry describes another selection. ``exact``: only an entry saved
    for this very selection counts (training computes the others)."""
    from ..errors import StatsMismatchError
    from ..tiles.statsfile import find_entry

    tiles = train_tiles(settings, edition, regions, layer, locate)
    entry, reason = find_entry(
        settings, edition, layer, regions, tiles, sample=sample, path=path, exact=exact
    )
    if entry is None or reason is None:
        return entry
    message = f"the saved band statistics of {layer} do not fit: {reason}"
    cmd = stats_command(edition, regions, [layer], path)
    if on_mismatch == "warn":
        if warn is not None:
            warn(f"warning: {message} (used anyway; recompute: {cmd})")
        return entry
    raise StatsMismatchError(message, f"recompute them: {cmd}")


def load_stats(
    settings: Settings,
    plan: SamplePlan,
    layers: Sequence[str],
    path: Path | None = None,
    *,
    on_mismatch: str = "refuse",
    warn: Callable[[str], None] | None = None,
) -> dict[str, BandStats]:
    """The saved band statistics of each layer (from the store, the user cache, or ``path``):
    those of the **train split** of the plan's regions, every local tile of it.

    StatsNotFoundError names the command that computes them; statistics of another selection
    (other regions or splits, ``--limit``/``--tiles``/``--bbox``, a store that changed since)
    raise StatsMismatchError with the command that recomputes them, or only ``warn`` with
    ``on_mismatch="warn"``.
    """
    regions = sorted({s.region for s in plan.samples})
    edition = plan.edition or "miniset"
    cmd = stats_command(edition, regions, layers, path)
    out: dict[str, BandStats] = {}
    for layer in layers:
        try:
            entry = check_entry(
                settings, edition, layer, regions, path=path, on_mismatch=on_mismatch, warn=warn
            )
        except StatsNotFoundError as exc:
            raise StatsNotFoundError(exc.message, f"compute them first: {cmd}") from None
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
