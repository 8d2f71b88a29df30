"""Export the store into the formats training frameworks read.

``EXPORTERS`` maps a format name to its :class:`~m3leo_cli.export.base.Exporter`; adding a
format is one module with one class, registered here. Importing this package is cheap (numpy,
pyarrow and rasterio are imported inside the functions that need them).
"""

from __future__ import annotations

from ..errors import UnknownFormatError
from .base import Exporter, ExportOptions
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


from .run import ExportSummary, export, run_export  # noqa: E402  (needs get_exporter above)
from .samples import LayerFile, LayerSpec, Sample, SamplePlan, join_samples  # noqa: E402

__all__ = [
    "EXPORTERS",
    "ExportOptions",
    "ExportSummary",
    "Exporter",
    "LayerFile",
    "LayerSpec",
    "Sample",
    "SamplePlan",
    "export",
    "get_exporter",
    "join_samples",
    "run_export",
]
