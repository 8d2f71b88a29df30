"""What a model reads: input layers with named band selections, one target, one grid.

Band tokens are the names ``m3leo info`` shows (``winter_vvasc``, ``coherence:winter:36``,
``03_red``, ``agb``) or a prefix selecting several (``coherence:winter``). GUNW date pairs
differ from tile to tile, so a GUNW input may also name a *rule*:
``unwrappedPhase:days=0-60`` picks, per tile, the date pair whose span in days lies in that
range, the longest such (M3LEO's "far" rule); a tile without one gets a nodata band.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..errors import TrainConfigError

TASKS = ("classification", "regression")
NORM_SCOPES = ("pooled", "region")
STATS_CHECKS = ("refuse", "warn")
PREPROCESSING = ("m3leo", "paper")
IGNORE_INDEX = -1  # mask value of pixels without a class (nodata, or a code not in `classes`)
_RULE = re.compile(r"^(?P<var>[A-Za-z_]+):days=(?P<lo>\d+)-(?P<hi>\d+)$")
_PAIR = re.compile(r"^(?P<var>[A-Za-z_]+):(?P<a>\d{8})_(?P<b>\d{8})$")


@dataclass(frozen=True)
class InputSpec:
    """One input layer: a modality token (datakind or family) and the bands taken from it."""

    modality: str
    bands: tuple[str, ...] | None = None  # None: every stored band


@dataclass(frozen=True)
class TargetSpec:
    """The target layer: one band, a task, and (classification) the class codes in order."""

    modality: str
    band: str
    task: str = "classification"
    classes: tuple[int, ...] = ()  # stored codes; the mask holds their index, IGNORE_INDEX else

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DataSpec:
    """Everything the datasets need to turn tiles into samples."""

    inputs: tuple[InputSpec, ...]
    target: TargetSpec | None  # None: unlabelled (MAE pre-training)
    size: int = 64  # every layer is resampled onto size x size over the tile footprint
    normalize: bool = True  # inputs only, with the statistics `m3leo stats --bands` saved
    allow_missing: bool = False  # keep tiles lacking an input (that input is then all zeros)
    edition: str = "miniset"
    regions: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    norm_scope: str = "pooled"  # train-split statistics over all regions, or per region
    stats_check: str = "refuse"  # saved statistics of another selection: refuse | warn
    preprocessing: str = "m3leo"  # m3leo | paper (the authors' rules, for paper comparisons)


def data_spec(cfg: Mapping[str, Any]) -> DataSpec:
    """Build a DataSpec from the ``data`` section of an experiment (a plain mapping)."""
    try:
        inputs = tuple(InputSpec(str(i["modality"]), _tuple(i.get("bands"))) for i in cfg["inputs"])
        t = cfg["target"]
        target = None if t is None else TargetSpec(
            str(t["modality"]),
            str(t["band"]),
            str(t.get("task", "classification")),
            tuple(int(c) for c in t.get("classes") or ()),
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise TrainConfigError(
            f"the data section needs inputs (modality, bands) and a target: missing {exc}"
        ) from None
    if not inputs:
        raise TrainConfigError("data.inputs is empty: name at least one input layer")
    if target is not None and target.task not in TASKS:
        raise TrainConfigError(
            f"unknown data.target.task {target.task!r}", f"use one of {', '.join(TASKS)}"
        )
    if target is not None and target.task == "classification" and not target.classes:
        raise TrainConfigError(
            "a classification target needs data.target.classes (the stored class codes)"
        )
    size = int(cfg.get("size", 64))
    if size < 4:
        raise TrainConfigError(f"data.size must be at least 4, not {size}", "e.g. data.size=64")
    regions = cfg.get("regions") or ()
    if isinstance(regions, str):
        regions = (regions,)
    edition = str(cfg.get("edition", "miniset"))
    _check_regions(edition, regions)
    choices = {"norm_scope": NORM_SCOPES, "stats_check": STATS_CHECKS,
               "preprocessing": PREPROCESSING}  # fmt: skip
    chosen = {k: str(cfg.get(k) or v[0]) for k, v in choices.items()}
    for key, value in chosen.items():
        if value not in choices[key]:
            raise TrainConfigError(
                f"unknown data.{key}={value}", f"use one of {', '.join(choices[key])}"
            )
    return DataSpec(
        inputs,
        target,
        size,
        bool(cfg.get("normalize", True)),
        bool(cfg.get("allow_missing", False)),
        edition,
        tuple(str(r) for r in regions),
        norm_scope=chosen["norm_scope"],
        stats_check=chosen["stats_check"],
        preprocessing=chosen["preprocessing"],
    )


def _check_regions(edition: str, regions: Sequence[Any]) -> None:
    """A misspelt region is a usage error with the CLI's did-you-mean (UnknownRegionError)."""
    from ..errors import M3leoError, UnknownRegionError
    from ..spec.regions import get_edition, get_region

    try:
        get_edition(edition)
    except M3leoError as exc:
        raise TrainConfigError(f"data.edition: {exc.message}", exc.hint) from None
    for r in regions:
        try:
            get_region(str(r), edition)
        except UnknownRegionError as exc:
            raise TrainConfigError(f"data.regions: {exc.message}", exc.hint) from None


def _tuple(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def is_rule(token: str) -> bool:
    return _RULE.match(token) is not None


def _span_days(a: str, b: str) -> int:
    da = date(int(a[:4]), int(a[4:6]), int(a[6:]))
    db = date(int(b[:4]), int(b[4:6]), int(b[6:]))
    return abs((da - db).days)


def pick_pair(token: str, stored: Sequence[str], first: bool = False) -> str | None:
    """The stored GUNW band a ``var:days=lo-hi`` rule picks: the longest span in range, or
    (``first``, the authors' ``selection_rule: far``) the first in-range pair in file order."""
    m = _RULE.match(token)
    if m is None:
        return None
    var, lo, hi = m.group("var"), int(m.group("lo")), int(m.group("hi"))
    best: tuple[int, str] | None = None
    for name in stored:
        p = _PAIR.match(name)
        if p is None or p.group("var") != var:
            continue
        span = _span_days(p.group("a"), p.group("b"))
        if first and lo <= span <= hi:
            return name
        if lo <= span <= hi and (best is None or (span, name) > best):
            best = (span, name)
    return best[1] if best else None


def select_bands(
    tokens: Sequence[str] | None, stored: Sequence[str], datakind: str, first: bool = False
) -> list[str | None]:
    """Expand band tokens against one tile's stored names; ``None`` marks an unmatched rule.

    Plain tokens go through ``tiles.model.resolve_bands`` (UnknownBandError lists the valid
    names); date-pair rules are resolved here, per tile.
    """
    from ..tiles.model import resolve_bands

    if tokens is None:
        return list(stored)
    out: list[str | None] = []
    for token in tokens:
        if is_rule(token):
            out.append(pick_pair(token, stored, first))
        else:
            out.extend(resolve_bands([token], stored, datakind))
    return out


def channel_names(datakind: str, tokens: Sequence[str] | None, stored: Sequence[str]) -> list[str]:
    """Stable channel names (``<datakind>:<band or rule>``): rules keep their own name."""
    if tokens is None:
        return [f"{datakind}:{b}" for b in stored]
    out = []
    for token in tokens:
        if is_rule(token):
            out.append(f"{datakind}:{token}")
        else:
            out.extend(f"{datakind}:{b}" for b in select_bands([token], stored, datakind))
    return out
