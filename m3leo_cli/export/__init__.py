"""Export the store into the formats training frameworks read.

``registry.EXPORTERS`` maps a format name to its :class:`~.base.Exporter`; adding a format is
one module with one class, registered there. Importing this package is cheap (numpy,
pyarrow and rasterio are imported inside the functions that need them).
"""

from __future__ import annotations

from .base import Exporter, ExportOptions
from .registry import EXPORTERS, get_exporter
from .run import ExportSummary, export, run_export
from .samples import LayerFile, LayerSpec, Sample, SamplePlan, join_samples

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
