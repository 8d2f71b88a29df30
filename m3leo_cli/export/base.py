"""The exporter contract: options, work units, and the interface every format implements.

An export is cut into *units*, each one finished output (an ``.npz``, a tar or Parquet shard, the
copies of one tile's files). A unit is written under ``.part`` names and renamed when complete,
then recorded in the progress log, so a re-run skips it. Units are numbered over the sorted
samples of each split, so their names and bytes do not depend on ``--workers`` or on how the
export is partitioned with ``--num-shards``/``--shard-index``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .samples import LayerSpec, Sample


@dataclass(frozen=True)
class ExportOptions:
    format: str
    out: Path | str  # a folder, or an fsspec URL (s3://bucket/prefix): see export/target.py
    inputs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    allow_missing: bool = False
    shard_size: int = 256  # samples per tar / Parquet shard
    resample: int | None = None  # N: every layer onto an N x N grid
    normalize: bool = False
    dtype: str | None = None
    num_shards: int = 1
    shard_index: int = 0
    overwrite: bool = False
    workers: int | None = None  # decoding threads; None: min(cpu count, settings.workers)
    command: tuple[str, ...] = ()  # the command line, recorded in metadata.json only
    stats_file: Path | None = None  # --normalize: saved statistics from this file (--stats)
    link: bool = False  # geotiff: hard-link store files instead of copying them (--link)

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs the same export (a re-run may complete it)."""
        return {
            "format": self.format,
            "inputs": list(self.inputs),
            "labels": list(self.labels),
            "allow_missing": self.allow_missing,
            "shard_size": self.shard_size,
            "resample": self.resample,
            "normalize": self.normalize,
            "dtype": self.dtype,
        }


@dataclass(frozen=True)
class Unit:
    """One finished output: its stable key, split, samples and output paths (relative)."""

    key: str
    split: str
    index: int  # position among all units of the export (partitioning uses it)
    samples: tuple[Sample, ...]


@dataclass
class Failure:
    """A sample that could not be exported (a corrupt or unreadable source file)."""

    tile_id: str
    split: str
    region: str
    layer: str
    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "tile_id": self.tile_id,
            "split": self.split,
            "region": self.region,
            "layer": self.layer,
            "path": self.path,
            "reason": self.reason,
        }


@dataclass
class UnitResult:
    """What writing a unit produced: output files with checksums, per-sample metadata."""

    key: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel path -> sha256, size
    samples: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class Exporter(ABC):
    """One output format. ``process`` runs in worker threads, ``write`` in the main thread."""

    name: ClassVar[str]
    summary: ClassVar[str]
    decodes: ClassVar[bool] = True  # False: copies files, so value options do not apply
    sharded: ClassVar[bool] = False  # True: several samples per unit (--shard-size)

    def __init__(self, out: Path, layers: Sequence[LayerSpec], options: ExportOptions) -> None:
        self.out = out
        self.layers = list(layers)
        self.options = options
        self.stats: dict[str, Any] | None = None  # layer -> BandStats when --normalize
        self.layer_info: dict[str, dict[str, Any]] = {}  # layer -> bands, dtype (after options)

    def units(self, split: str, samples: Sequence[Sample], start: int) -> list[Unit]:
        """Cut the sorted samples of one split into units (one per sample unless sharded)."""
        if not self.sharded:
            return [Unit(self.sample_key(s), split, start + i, (s,)) for i, s in enumerate(samples)]
        size = max(1, self.options.shard_size)
        out = []
        for k in range(0, len(samples), size):
            n = k // size
            out.append(
                Unit(self.shard_key(split, n), split, start + n, tuple(samples[k : k + size]))
            )
        return out

    def sample_key(self, sample: Sample) -> str:
        return f"{sample.split}/{sample.tile_id}"

    def shard_key(self, split: str, n: int) -> str:
        return f"{split}/{split}-{n:06d}"

    @abstractmethod
    def outputs(self, unit: Unit) -> list[Path]:
        """The finished paths ``unit`` produces (their ``.part`` files are cleaned on failure)."""

    @abstractmethod
    def process(self, sample: Sample) -> Any:
        """Heavy per-sample work (decode, serialise); runs in a worker thread."""

    @abstractmethod
    def write(self, unit: Unit, items: Iterator[Any | Failure]) -> UnitResult:
        """Assemble the processed samples of ``unit`` (in order) into its finished outputs."""

    def finish(self, results: Mapping[str, UnitResult]) -> dict[str, dict[str, Any]]:
        """Files that need every unit's result (litdata's ``index.json``), written when the
        whole export is done, just before ``metadata.json``: relative path -> sha256, size."""
        return {}
