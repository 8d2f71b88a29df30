"""Checks of a composed config that must fail before anything is read or written.

Each bad value is a usage error (``TrainConfigError``, exit 2) naming the override that fixes
it, instead of a torch / Lightning traceback in the first batch: a batch size of 0
(DataLoader), a negative learning rate (AdamW), a grid too small for the UNet's depth
(BatchNorm on a 1 x 1 map), and the like. ``evaluate``'s split is checked here too, before
torch is imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from .. import spec
from ..errors import TrainConfigError, UsageError

SOURCES = ("store", "hub")


def _number(section: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
    value = section.get(key, default)
    try:
        if kind is int and (isinstance(value, bool) or float(value) != int(value)):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise TrainConfigError(
            f"{key} must be {'a whole number' if kind is int else 'a number'}, not {value!r}"
        ) from None


def check_config(cfg: Mapping[str, Any]) -> None:
    """Loader, model and trainer values that would otherwise crash inside the first batch."""
    loader = cfg.get("loader") or {}
    model = cfg.get("model") or {}
    data = cfg.get("data") or {}
    batch = _number(loader, "batch_size", 8, int)
    if batch < 1:
        raise TrainConfigError(
            f"loader.batch_size must be at least 1, not {batch}", "e.g. loader.batch_size=8"
        )
    workers = _number(loader, "num_workers", 0, int)
    if workers < 0:
        raise TrainConfigError(
            f"loader.num_workers must be 0 or more, not {workers}", "e.g. loader.num_workers=2"
        )
    lr = _number(model, "lr", 1e-4, float)
    if not lr > 0:
        raise TrainConfigError(f"model.lr must be positive, not {lr}", "e.g. model.lr=1e-4")
    wd = _number(model, "weight_decay", 0.0, float)
    if wd < 0:
        raise TrainConfigError(
            f"model.weight_decay must be 0 or more, not {wd}", "e.g. model.weight_decay=0"
        )
    name = model.get("name", "unet")
    if name not in ("unet", "mae"):
        raise TrainConfigError(f"unknown model.name {name!r}", "use model.name=unet or mae")
    if name == "mae":
        size, patch = _number(data, "size", 448, int), _number(model, "patch_size", 16, int)
        if patch < 1 or size % patch or size // patch < 4:
            raise TrainConfigError(
                f"data.size={size} must be a multiple of model.patch_size={patch} with at least "
                "4 patches a side",
                "e.g. data.size=448 model.patch_size=16",
            )
        width, heads = _number(model, "hidden_dim", 768, int), _number(model, "num_heads", 12, int)
        if heads < 1 or width % heads:
            raise TrainConfigError(
                f"model.hidden_dim={width} must be a multiple of model.num_heads={heads}",
                "e.g. model.hidden_dim=768 model.num_heads=12",
            )
    if name == "unet":
        depth = _number(model, "depth", 4, int)
        base = _number(model, "base_channels", 32, int)
        if depth < 1 or base < 1:
            raise TrainConfigError(
                f"model.depth and model.base_channels must be at least 1 ({depth}, {base})",
                "e.g. model.depth=4 model.base_channels=32",
            )
        size = _number(data, "size", 448, int)
        least = 2 ** (depth + 1)
        if size < least:
            raise TrainConfigError(
                f"data.size={size} is too small for a UNet of model.depth={depth}: its "
                f"deepest level would be under 2 x 2 pixels",
                f"use data.size={least} or more, or a smaller model.depth",
            )
    if data.get("preprocessing") == "paper" and data.get("export"):
        raise TrainConfigError(
            "data.preprocessing=paper reads the store (the authors' rules start from the stored "
            "tiles), not an export",
            "leave data.export out, or use data.preprocessing=m3leo",
        )
    source = str(data.get("source") or "store")
    if source not in SOURCES:
        raise TrainConfigError(f"unknown data.source={source}", f"use one of {', '.join(SOURCES)}")
    if source == "hub":
        if data.get("export"):
            raise TrainConfigError(
                "data.source=hub streams the Hub's shards; data.export names an export folder",
                "leave one of them out: data.export=null, or data.source=store",
            )
        if str(data.get("edition") or "miniset") != "full":
            raise TrainConfigError(
                f"data.source=hub streams the full edition's Parquet shards; the "
                f"{data.get('edition') or 'miniset'} edition has none",
                "add data.edition=full, or read downloaded tiles with data.source=store",
            )
        for key in ("cache_bytes", "prefetch_bytes", "stream_shuffle_buffer"):
            if data.get(key) is not None and _number(data, key, 0, int) < 0:
                raise TrainConfigError(f"data.{key} must be 0 or more", f"e.g. data.{key}=0")
    if _number(data, "shuffle_buffer", 0, int) < 0:
        raise TrainConfigError(
            "data.shuffle_buffer must be 0 or more", "e.g. data.shuffle_buffer=64 (0: off)"
        )
    epochs = (cfg.get("trainer") or {}).get("max_epochs", 1)
    if epochs is not None and _number(cfg.get("trainer") or {}, "max_epochs", 1, int) < -1:
        raise TrainConfigError(
            f"trainer.max_epochs must be -1 (no limit) or more, not {epochs}",
            "e.g. trainer.max_epochs=60",
        )


def check_split(split: str) -> str:
    """A split name, or a usage error with did-you-mean (before any heavy import)."""
    if split in spec.SPLITS:
        return split
    close = difflib.get_close_matches(split, spec.SPLITS, n=1, cutoff=0.3)
    if not close and split.lower().startswith("valid"):
        close = ["val"]
    guess = f"did you mean --split {close[0]}? " if close else ""
    raise UsageError(f"unknown split {split!r}", f"{guess}use one of {', '.join(spec.SPLITS)}")
