"""Striped train/val/test splits over a chip grid, as geetiles' ``split`` makes them.

Each chip's position (the mean of its envelope ring, as geetiles takes it) is normalised to the
grid's extent and projected on a direction set by ``angle``; the projection is cut into
``bands`` parallel stripes (the stripe width is searched until exactly that many are occupied)
and stripes are dealt out in a repeating train.., test.., val.. cycle whose lengths follow the
percentages. Neighbouring chips thus share a split, which keeps spatial leakage low.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import BadAoiError
from .grid import Chip
from .ids import envelope_ring, ring_of

DEFAULT_BANDS = 60
DEFAULT_ANGLE = 0.9
DEFAULT_SPLIT = "60-20-20"


@dataclass(frozen=True)
class SplitSpec:
    """Stripes, angle (radians) and train/val/test percentages (the file-name order)."""

    bands: int = DEFAULT_BANDS
    angle: float = DEFAULT_ANGLE
    train: int = 60
    val: int = 20
    test: int = 20

    @property
    def tag(self) -> str:
        """``_splits_60bands_angle09_60-20-20``: the angle in tenths of a radian."""
        tenths = round(self.angle * 10)
        return f"_splits_{self.bands}bands_angle{tenths:02d}_{self.train}-{self.val}-{self.test}"


def parse_split_spec(bands: int, angle: float, split: str) -> SplitSpec:
    """Check the three knobs; the angle must be whole tenths (the file name keeps tenths)."""
    m = re.fullmatch(r"(\d+)-(\d+)-(\d+)", split.strip())
    if not m:
        raise BadAoiError(
            f"bad --split {split!r}", "give train-val-test percentages, e.g. --split 60-20-20"
        )
    tr, va, te = (int(v) for v in m.groups())
    if tr + va + te != 100 or tr == 0:
        raise BadAoiError(
            f"--split {split} does not add up to 100 with some train",
            "give train-val-test percentages that sum to 100, e.g. --split 60-20-20",
        )
    if not -math.pi / 2 <= angle <= math.pi / 2 or abs(angle * 10 - round(angle * 10)) > 1e-9:
        raise BadAoiError(
            f"--angle {angle} is not whole tenths of a radian in [-1.5, 1.5]",
            "give --angle like 0.9 (M3LEO's file names keep the angle in tenths)",
        )
    spec = SplitSpec(bands=bands, angle=angle, train=tr, val=va, test=te)
    cycle = _cycle(spec)
    if bands < len(cycle):
        raise BadAoiError(
            f"{bands} bands cannot hold the {tr}-{va}-{te} cycle of {len(cycle)} bands",
            f"give --bands {len(cycle)} or more",
        )
    return spec


def _cycle(spec: SplitSpec) -> list[str]:
    """One round of stripe labels: train, then test, then val, in proportion."""
    pcts = {"train": spec.train / 100, "test": spec.test / 100, "val": spec.val / 100}
    least = min(p for p in pcts.values() if p != 0)
    out: list[str] = []
    for name in ("train", "test", "val"):
        out += [name] * int(np.round(pcts[name] / least, 0))
    return out


def chip_positions(chips: Sequence[Chip]) -> np.ndarray:
    """Each chip's reference point: the plain mean of its 5-vertex envelope ring."""
    return np.array([envelope_ring(ring_of(*c.bbox)).mean(axis=0) for c in chips])


def stripe_ids(coords: np.ndarray, bands: int, angle: float) -> np.ndarray:
    """Stripe number of each point (0-based, not necessarily contiguous)."""
    cmin, cmax = coords.min(axis=0), coords.max(axis=0)
    crng = cmax - cmin
    crng[crng == 0] = 1
    if abs(angle) < math.pi / 4:
        plon, plat = abs(angle) / (math.pi / 4), 1.0
    else:
        plon, plat = float(np.sign(angle)), (math.pi / 2 - abs(angle)) / (math.pi / 4)
    nc = (coords - cmin) / crng
    if angle < 0:
        nc = 1 - nc
    proj = plon * nc[:, 0] + plat * nc[:, 1]
    band = np.zeros(len(coords), dtype=np.int64)
    for k in np.linspace(0.1, 50, 10000):
        band = (proj / (k / bands)).astype(int)
        band = band - band.min()
        if len(np.unique(band)) == bands:
            break
    return band


def assign_splits(chips: Sequence[Chip], spec: SplitSpec) -> dict[str, str]:
    """``{tile_id: split}`` for every chip."""
    if not chips:
        return {}
    band = stripe_ids(chip_positions(chips), spec.bands, spec.angle)
    ids = np.unique(band)
    cycle = _cycle(spec)
    labels = (cycle * (len(ids) // len(cycle) + 1))[: len(ids)]
    by_band = dict(zip(ids.tolist(), labels, strict=True))
    return {c.tile_id: by_band[int(b)] for c, b in zip(chips, band, strict=True)}


def split_csv_text(chips: Sequence[Chip], splits: dict[str, str]) -> str:
    """The published split CSV: ``identifier,split``, header, LF endings, grid order."""
    return "identifier,split\n" + "".join(f"{c.tile_id},{splits[c.tile_id]}\n" for c in chips)


def check_split_result(splits: dict[str, str], spec: SplitSpec) -> None:
    """Refuse a split that left a wanted part empty.

    geetiles' stripe search can fail to find a width giving exactly ``bands`` occupied stripes
    (few chips, or rows lined up with the angle); it then falls back to one stripe and every
    chip is train. Reproduced, but never written silently.
    """
    wanted = {"train": spec.train, "val": spec.val, "test": spec.test}
    empty = [k for k, pct in wanted.items() if pct and k not in splits.values()]
    if empty:
        raise BadAoiError(
            f"the {spec.bands}-stripe split at angle {spec.angle} leaves {' and '.join(empty)} "
            f"empty over {len(splits)} chips (no stripe width gives exactly {spec.bands} stripes)",
            "try fewer --bands (e.g. --bands 20) or another --angle",
        )
