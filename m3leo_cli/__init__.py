"""m3leo: the M3LEO dataset manager, as a library and as the ``m3leo`` command.

The names below are the library's public API for notebooks and scripts (docs/python.md); the
command in ``m3leo_cli.cli`` is a thin layer over the same functions. Each name is imported on
first use, so ``import m3leo_cli`` (and ``m3leo --help``) stays fast.

>>> import m3leo_cli as m3
>>> settings = m3.load_settings({"data_dir": "/data/m3leo"})          # doctest: +SKIP
>>> sel = m3.build_selection(edition="miniset", regions=["europe"], modalities=["s1grd"])
>>> m3.download(settings, sel)                                        # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .catalog.query import select
    from .catalog.refresh import RefreshReport, refresh
    from .catalog.stats import stats
    from .config import Settings, load_settings
    from .errors import M3leoError
    from .export.base import ExportOptions
    from .export.run import ExportSummary, export
    from .fetch.plan import DownloadPlan
    from .fetch.runner import DownloadSummary
    from .full.unpacked import UnpackSummary, unpack_files
    from .mirror.clean import CleanReport, clean
    from .mirror.download import download
    from .mirror.verify import VerifyReport, verify
    from .progress import ProgressEvent
    from .selection import Selection, build_selection
    from .tiles.accumulate import BandStatsReport
    from .tiles.bandstats import band_stats
    from .tiles.info import TileInfo, locate_tile
    from .tiles.model import Tile, decode
    from .tiles.reader import band_names, read_tile
    from .train.streamed import M3LEOStream, StreamLoader

# public name -> the module that defines it
_API: dict[str, str] = {
    # settings, selections, errors, progress
    "Settings": "config",
    "load_settings": "config",
    "Selection": "selection",
    "build_selection": "selection",
    "M3leoError": "errors",
    "ProgressEvent": "progress",
    # the catalog
    "refresh": "catalog.refresh",
    "RefreshReport": "catalog.refresh",
    "select": "catalog.query",
    "stats": "catalog.stats",
    # the local mirror
    "download": "mirror.download",
    "DownloadPlan": "fetch.plan",
    "DownloadSummary": "fetch.runner",
    "verify": "mirror.verify",
    "VerifyReport": "mirror.verify",
    "clean": "mirror.clean",
    "CleanReport": "mirror.clean",
    "unpack_files": "full.unpacked",
    "UnpackSummary": "full.unpacked",
    # tiles
    "read_tile": "tiles.reader",
    "band_names": "tiles.reader",
    "Tile": "tiles.model",
    "decode": "tiles.model",
    "locate_tile": "tiles.info",
    "TileInfo": "tiles.info",
    "band_stats": "tiles.bandstats",
    "BandStatsReport": "tiles.accumulate",
    # export
    "export": "export.run",
    "ExportOptions": "export.base",
    "ExportSummary": "export.run",
    # training (the train extra): samples streamed from the Hub's shards
    "M3LEOStream": "train.streamed",
    "StreamLoader": "train.streamed",
}

__all__ = [
    "__version__",
    "BandStatsReport",
    "CleanReport",
    "DownloadPlan",
    "DownloadSummary",
    "ExportOptions",
    "ExportSummary",
    "M3LEOStream",
    "M3leoError",
    "ProgressEvent",
    "RefreshReport",
    "Selection",
    "Settings",
    "StreamLoader",
    "Tile",
    "TileInfo",
    "UnpackSummary",
    "VerifyReport",
    "band_names",
    "band_stats",
    "build_selection",
    "clean",
    "decode",
    "download",
    "export",
    "load_settings",
    "locate_tile",
    "read_tile",
    "refresh",
    "select",
    "stats",
    "unpack_files",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'm3leo_cli' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
