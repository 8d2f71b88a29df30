"""The exporter registry: a format name to its :class:`~.base.Exporter` class.

Adding a format is one module with one class, registered here. The CLI takes its ``--format``
choices from ``EXPORTERS``.
"""

from __future__ import annotations

from ..errors import UnknownFormatError
from .base import Exporter
from .geotiff import GeoTiffExporter
from .npz import NpzExporter
from .parquet import ParquetExporter
from .webdataset import WebDatasetExporter

EXPORTERS: dict[str, type[Exporter]] = {
    cls.name: cls for cls in (NpzExporter, WebDatasetExporter, ParquetExporter, GeoTiffExporter)
}


def get_exporter(name: str) -> type[Exporter]:
    try:
        return EXPORTERS[name.strip().lower()]
    except KeyError:
        raise UnknownFormatError(name, list(EXPORTERS)) from None
