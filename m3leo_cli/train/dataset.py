"""A map-style dataset over the local store: one sample per tile of one split.

Tiles are joined on their id exactly as ``m3leo export`` joins them (``export.samples``):
a tile lacking an input is left out (kept with zeros for that input under
``allow_missing``); a tile lacking the target is always left out (there is nothing to learn
from). Layers are read with ``tiles.reader.read_tile`` (only the selected bands) and turned
into samples by :class:`~m3leo_cli.train.assemble.Assembler`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import (
    EmptySelectionError,
    EmptySplitError,
    NoLabelsError,
    TrainConfigError,
)
from .assemble import Assembler, LayerData
from .layers import DataSpec, channel_names, is_rule, select_bands

if TYPE_CHECKING:
    from ..config import Settings
    from ..export.samples import Sample, SamplePlan
    from ..store.layout import Locate
    from .normstats import RunStats


@dataclass
class SplitPlan:
    """The usable tiles of one split and what was left out."""

    split: str
    samples: list[Sample]
    inputs: list[str]  # input datakinds, in channel order
    target: str | None  # target datakind (None: unlabelled, MAE pre-training)
    channels: dict[str, list[str]]  # input datakind -> channel names
    no_target: int = 0  # tiles left out: no target file
    no_input: dict[str, int] = field(default_factory=dict)  # tiles left out per missing input
    plan: SamplePlan | None = None


def _download_hint(data: DataSpec, datakinds: Sequence[str]) -> str:
    flags = [f"--edition {data.edition}"] + [f"--region {r}" for r in data.regions]
    flags += [f"--modality {d}" for d in datakinds]
    return "download it first: m3leo download " + " ".join(flags)


def _unique(token: str, names: Sequence[str], what: str) -> str:
    hits = [n for n in names if spec.matches_modality(token, n)]
    if len(hits) != 1:
        raise TrainConfigError(
            f"{what} {token!r} matches {len(hits)} layers ({', '.join(hits) or 'none'})",
            f"name exactly one datakind, e.g. {what}={hits[0] if hits else token}",
        )
    return hits[0]


def plan_split(
    settings: Settings,
    data: DataSpec,
    split: str,
    locate: Locate | None = None,
    ready: Callable[[Path], None] | None = None,
) -> SplitPlan:
    """Join the local tiles of ``split`` into samples (the rules above), or explain why not
    (``locate``: where tiles are when not in the store, see ``export.samples``; ``ready(path)``
    makes a located file exist before it is read, as streaming from the Hub needs)."""
    from ..export.samples import plan_from_catalog
    from ..selection import Selection

    if split not in spec.SPLITS:
        raise TrainConfigError(f"unknown split {split!r}", f"use one of {', '.join(spec.SPLITS)}")
    sel = Selection(edition=data.edition, regions=data.regions, splits=(split,))
    tokens = [i.modality for i in data.inputs]
    try:
        labels = [data.target.modality] if data.target is not None else []
        plan = plan_from_catalog(settings, sel, tokens, labels, allow_missing=True, locate=locate)
    except EmptySelectionError as exc:
        if exc.hint.startswith("download"):
            raise
        raise EmptySplitError(
            f"the {split} split of {data.edition} {'/'.join(data.regions) or 'all regions'} "
            f"holds no local tile ({exc.message})"
        ) from None
    names = [lay.name for lay in plan.layers]
    target = (
        None
        if data.target is None
        else _unique(data.target.modality, names, "data.target.modality")
    )
    inputs = [_unique(t, [n for n in names if n != target], "data.inputs.modality") for t in tokens]
    kept: list[Sample] = []
    no_target, no_input = 0, {d: 0 for d in inputs}
    for s in plan.samples:
        if target is not None and target not in s.files:
            no_target += 1
            continue
        lacking = [d for d in inputs if d not in s.files]
        for d in lacking:
            no_input[d] += 1
        if lacking and not data.allow_missing:
            continue
        kept.append(s)
    if target is not None and not any(target in s.files for s in plan.samples):
        if target in plan.not_local:
            raise NoLabelsError(
                f"the target {target} is not downloaded for the {split} split",
                _download_hint(data, [target]),
            )
        raise NoLabelsError(f"the target {target} has no tile in the {split} split")
    if not kept:
        absent = [d for d, n in no_input.items() if n]
        hint = "set data.allow_missing=true to keep tiles lacking an input"
        if any(d in plan.not_local for d in absent):
            hint = _download_hint(data, [d for d in absent if d in plan.not_local])
        raise EmptySplitError(
            f"no tile of the {split} split has every input ({', '.join(absent)} missing)", hint
        )
    channels = {d: _probe(kept, d, data.inputs[i].bands, ready) for i, d in enumerate(inputs)}
    return SplitPlan(split, kept, inputs, target, channels, no_target, no_input, plan)


def _probe(
    samples: Sequence[Sample],
    datakind: str,
    tokens: Sequence[str] | None,
    ready: Callable[[Path], None] | None = None,
) -> list[str]:
    """Channel names of one input, from the first tile holding it (checks the band tokens)."""
    from ..tiles.reader import band_names

    for s in samples:
        lf = s.files.get(datakind)
        if lf is not None:
            if ready is not None:
                ready(lf.path)
            return channel_names(datakind, tokens, band_names(lf.path, datakind))
    return [f"{datakind}:{t}" for t in tokens or ()]


def read_layer(
    path: Any, datakind: str, tokens: Sequence[str] | None, first: bool = False
) -> LayerData:
    """Read the selected bands of one tile file (rules resolved against its own band names;
    ``first``: a rule takes the first in-range pair, as ``data.preprocessing=paper``)."""
    from ..tiles.reader import band_names, read_tile

    wanted: list[str | None] | None = None
    if tokens is not None and any(is_rule(t) for t in tokens):
        wanted = select_bands(tokens, band_names(path, datakind), datakind, first)
    elif tokens is not None:
        wanted = list(tokens)
    present = None if wanted is None else [b for b in wanted if b is not None]
    tile = read_tile(path, datakind, present)
    bands: list[str | None] = list(tile.band_names) if wanted is None else wanted
    if wanted is not None and any(b is None for b in wanted):
        bands = []
        it = iter(tile.band_names)
        for b in wanted:
            bands.append(None if b is None else next(it))
    return LayerData(tile.data, bands, tile.nodata)


class StoreDataset:
    """``dataset[i]`` is the sample dict of the i-th tile of ``split`` (sorted by region, id).

    Map-style (``__len__`` / ``__getitem__``), so any ``torch.utils.data.DataLoader``,
    sampler or TorchGeo trainer takes it. ``channel_names`` says what each image channel is.
    """

    def __init__(
        self,
        data: DataSpec,
        split: str,
        settings: Settings | None = None,
        *,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        stats: RunStats | None = None,
        plan: SplitPlan | None = None,
    ) -> None:
        from ..config import load_settings

        settings = settings or load_settings()
        self.data = data
        self.split = split
        # ``plan``: the split planned elsewhere (a stream locates its tiles in its cache)
        self.plan = plan if plan is not None else plan_split(settings, data, split)
        if data.normalize and stats is None:  # the train split's (normstats), computed if missing
            from .normstats import resolve_stats

            train = self.plan if split == "train" else plan_split(settings, data, "train")
            stats = resolve_stats(settings, data, train)
        channels = {d: len(c) for d, c in self.plan.channels.items()}
        self.assembler = Assembler(
            data, self.plan.inputs, channels, self.plan.target, stats if data.normalize else None
        )
        self.transforms = transforms
        self.tokens = {d: data.inputs[i].bands for i, d in enumerate(self.plan.inputs)}
        if self.plan.target is not None and data.target is not None:
            self.tokens[self.plan.target] = (data.target.band,)
        self._nc: dict[str, Any] = {}  # datakind -> ncfast.NcPlan | None (built on first use)

    @property
    def channel_names(self) -> list[str]:
        return [c for d in self.plan.inputs for c in self.plan.channels[d]]

    @property
    def tile_ids(self) -> list[str]:
        return [s.tile_id for s in self.plan.samples]

    def __len__(self) -> int:
        return len(self.plan.samples)

    def _read(self, path: Any, datakind: str) -> LayerData:
        """One layer of one tile: netCDF bands through the cached plan when it applies."""
        from ..tiles.integrity import check_intact
        from . import ncfast

        tokens = self.tokens[datakind]
        if tokens is None or not ncfast.is_netcdf(datakind) or any(is_rule(t) for t in tokens):
            return read_layer(path, datakind, tokens, self.data.preprocessing == "paper")
        if datakind not in self._nc:
            first = read_layer(path, datakind, tokens)
            names = [b for b in first.bands if b is not None]
            self._nc[datakind] = ncfast.make_plan(path, datakind, names)
            return first
        plan = self._nc[datakind]
        check_intact(path)  # the fast path skips read_tile: the same integrity check (issue 27)
        got = ncfast.read_with_plan(plan, path) if plan is not None else None
        if got is None:
            return read_layer(path, datakind, tokens)
        return LayerData(got[0], list(plan.bands), got[1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .threads import loader_threads

        with loader_threads():  # BLAS held to one thread while assembling (train.threads)
            return self._item(index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The samples of one batch (a DataLoader's batched fetch): each image and target is
        assembled straight into its slot of one batch tensor (in shared memory in a worker),
        which ``threads.collate`` passes on as the batch instead of stacking a copy."""
        from .threads import batch_tensor, loader_threads

        with loader_threads(batch=True):
            n, size = len(indices), self.data.size
            images = batch_tensor((n, self.assembler.num_channels, size, size))
            slot = self.assembler.target_slot()
            targets = None if slot is None else batch_tensor((n, *slot[0]), slot[1])
            return [
                self._item(i, images[k], None if targets is None else targets[k])
                for k, i in enumerate(indices)
            ]

    def _item(self, index: int, image: Any = None, target_out: Any = None) -> dict[str, Any]:
        s = self.plan.samples[index]
        layers: dict[str, LayerData | None] = {}
        for d in self.plan.inputs:
            lf = s.files.get(d)
            layer = None if lf is None else self._read(lf.path, d)
            if layer is not None and len(layer.bands) != self.assembler.channels[d]:
                raise TrainConfigError(
                    f"{d} gives {len(layer.bands)} bands on tile {s.tile_id}, "
                    f"{self.assembler.channels[d]} on others",
                    "GUNW date pairs differ between tiles: select them with rules, "
                    "e.g. unwrappedPhase:days=0-60",
                )
            layers[d] = layer
        t = self.plan.target
        target = None if t is None else self._read(s.files[t].path, t)
        sample = self.assembler.sample(
            layers, target, s.tile_id, s.bounds, s.region, image, target_out
        )
        return self.transforms(sample) if self.transforms else sample


def with_size(data: DataSpec, size: int) -> DataSpec:
    return replace(data, size=size)
