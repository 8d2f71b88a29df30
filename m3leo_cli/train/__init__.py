"""train: M3LEO in a training loop (the optional ``train`` extra).

``layers`` (what a model reads: inputs, band selections, the target), ``assemble`` (arrays ->
TorchGeo-style sample dicts), ``dataset`` (map-style dataset over the store), ``exported``
(iterable dataset over webdataset / Parquet exports, split over workers and ranks),
``datamodule`` (Lightning), ``unet`` and ``tasks`` (baseline model, metrics), ``experiments``
(the packaged Hydra configs in ``conf/``), ``run`` (``m3leo train`` / ``evaluate``).

May use everything below it: ``export`` (the tile-id join, resampling, normalisation),
``tiles``, ``catalog``, ``spec``. torch, lightning, hydra and torchmetrics are imported inside
the functions and classes that need them, never at module import by the CLI.

Importing this package hides a torchvision that is installed but cannot load (see
:func:`hide_unloadable_torchvision`) before any of its modules imports lightning.
"""

from __future__ import annotations

from typing import Any


def hide_unloadable_torchvision() -> None:
    """Make an installed but unloadable torchvision count as absent.

    ``litdata`` (the ``litdata`` extra) requires torchvision, and pip pairs a CPU torch with
    torchvision's CUDA wheel, whose operators cannot load (``operator torchvision::nms does not
    exist``). torchmetrics and lightning decide "torchvision is there" from its package metadata
    (lightning_utilities' ``RequirementCache``) and then import it at their own import time, so
    ``import lightning`` itself would fail. When something first asks whether torchvision is
    available, this checks that it really loads; if it does not, the half-imported modules are
    dropped and ``import torchvision`` raises ImportError from then on (``sys.modules`` holds
    None), which every library here treats as "not installed". Costs nothing without
    torchvision or lightning_utilities; a torchvision that loads is left alone.
    """
    import importlib.util
    import sys

    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    if importlib.util.find_spec("lightning_utilities") is None:
        return
    from lightning_utilities.core import imports

    cache = imports.RequirementCache
    if getattr(cache, "_m3leo_checked", False):
        return
    original = getattr(cache, "_check_requirement", None)
    if original is None:  # another lightning_utilities: leave it as it is, never break import
        return

    def check(self: Any) -> None:
        original(self)
        import re

        wanted = str(getattr(self, "requirement", "") or "")
        named = re.match(r"\s*torchvision(?![\w.-])", wanted, re.IGNORECASE) is not None
        if named and getattr(self, "available", False) and not _loads("torchvision"):
            self.available = False  # type: ignore[attr-defined]
            self.message = "torchvision is installed but does not load beside this torch"  # type: ignore[attr-defined]

    cache._check_requirement = check  # type: ignore[method-assign]
    cache._m3leo_checked = True  # type: ignore[attr-defined]


def _loads(name: str) -> bool:
    """Import ``name``; on any failure drop its half-imported modules and block it."""
    import importlib
    import sys

    if sys.modules.get(name, False) is None:
        return False
    try:
        importlib.import_module(name)
    except Exception:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError now
        return False
    return True


hide_unloadable_torchvision()
