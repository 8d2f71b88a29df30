"""The exporter registry: a format name to its :class:`~.base.Exporter` class.

Adding a format is one module with one class, registered here. The CLI takes its ``--format``
choices from ``EXPORTERS``. A format that needs an optional library names it in ``requires``
(``(module, extra)`` pairs): ``get_exporter`` refuses it, before anything is written, when the
library is not installed.
"""

from __future__ import annotations

from ..errors import FormatDependencyError, UnknownFormatError
from .base import Exporter
from .geotiff import GeoTiffExporter
from .hfparquet import HfParquetExporter
from .litchunks import LitDataExporter
from .npz import NpzExporter
from .parquet import ParquetExporter
from .tfrecords import TfRecordExporter
from .webdataset import WebDatasetExporter
from .zarrstore import ZarrExporter

EXPORTERS: dict[str, type[Exporter]] = {
    cls.name: cls
    for cls in (
        NpzExporter,
        WebDatasetExporter,
        ParquetExporter,
        GeoTiffExporter,
        ZarrExporter,
        TfRecordExporter,
        HfParquetExporter,
        LitDataExporter,
    )
}


def get_exporter(name: str) -> type[Exporter]:
    try:
        cls = EXPORTERS[name.strip().lower()]
    except KeyError:
        raise UnknownFormatError(name, list(EXPORTERS)) from None
    check_requires(cls)
    return cls


def check_requires(cls: type[Exporter]) -> None:
    """FormatDependencyError (one line naming the extra, exit 2) for a missing library."""
    import importlib

    for module, extra in getattr(cls, "requires", ()):
        try:
            importlib.import_module(module)
        except ImportError:
            raise FormatDependencyError(cls.name, module, extra) from None
