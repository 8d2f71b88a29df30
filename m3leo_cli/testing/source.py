"""What the synthetic source is asked for (:class:`SynthConfig`) and what it says it wrote
(:class:`SourceInfo` and its repos, files, tiles and shards), so tests can compute answers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import spec
from ..errors import UsageError

MAX_CHIP_PX = 2048  # bounded: every band of a chip is generated in memory

S1GRD_DTYPES = ("uint16", "float32")


def _default_coverage() -> dict[str, float]:
    return {"gssic": 0.8, "gunw": 0.7}


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults are small and fast; chip_px=448 is the real chip size."""

    regions: tuple[str, ...] = ("europe",)
    editions: tuple[str, ...] = ("miniset", "full")
    tiles: int = 10  # tiles per region (split 60/20/20, at least 1 each from 3 tiles)
    chip_px: int = 64
    native_shape: tuple[int, int] = (12, 15)  # ~(48, 60) in reality (gssic/gunw/biomass/ghs)
    seed: int = 0
    datakinds: tuple[str, ...] | None = None  # default: spec.expected_datakinds(edition, region)
    coverage: dict[str, float] = field(default_factory=_default_coverage)  # family -> fraction
    tiles_per_shard: int = 4
    rows_per_row_group: int = 2
    s1grd_dtype: str = "uint16"  # [U]: uint16 holding wrapped signed dB, or float32 dB
    # extensions of the contract (optional)
    gunw_datepairs: int = 32  # 3 variables x 32 pairs = the 96 "bands" users report
    s2srm_bands: tuple[str, ...] = spec.S2SRM_BANDS  # [U] in reality


@dataclass(frozen=True)
class TileInfo:
    tile_id: str
    split: str
    original_index: int
    bbox: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max (EPSG:4326)
    area_km2: float
    ring: tuple[tuple[float, float], ...]  # the GeoJSON polygon's 5 vertices


@dataclass(frozen=True)
class FileInfo:
    """One file: its repo path, size and sha256. Full-edition tile files are the unpacked files."""

    path: str
    size: int
    sha256: str
    kind: str  # "tile" | "shard" | "aux"
    datakind: str | None = None
    tile_id: str | None = None


@dataclass(frozen=True)
class ShardInfo:
    path: str
    datakind: str
    split: str
    parquet_identifier: str
    tile_ids: tuple[str, ...]  # row order
    row_groups: tuple[tuple[str, ...], ...]  # tile ids per row group
    size: int
    sha256: str


@dataclass
class RepoInfo:
    """What one (edition, region) repo folder holds."""

    edition: str
    region: str
    repo_id: str
    root: Path  # the repo folder, root/<org>/<region>
    partition: str
    datakinds: tuple[str, ...]
    tiles: dict[str, TileInfo]  # in CSV / GeoJSON order
    coverage: dict[str, tuple[str, ...]]  # datakind -> tile ids that have a file
    files: dict[str, FileInfo] = field(default_factory=dict)  # every file, by repo path
    tile_files: dict[tuple[str, str], FileInfo] = field(default_factory=dict)  # (dk, tile)
    shards: dict[str, ShardInfo] = field(default_factory=dict)  # full: by repo path
    parquet_ids: dict[str, str] = field(default_factory=dict)  # full: tile -> parquet_identifier

    def tile_path(self, datakind: str, tile_id: str) -> str:
        """Repo path of a tile file (full edition: the path it has once unpacked)."""
        return f"{self.partition}/{datakind}/{tile_id}.{spec.parse_datakind(datakind).ext}"

    def split_of(self, tile_id: str) -> str:
        return self.tiles[tile_id].split

    def tiles_in(self, split: str) -> list[str]:
        return [t for t, info in self.tiles.items() if info.split == split]

    def missing(self, datakind: str) -> list[str]:
        have = set(self.coverage[datakind])
        return [t for t in self.tiles if t not in have]

    def shard_for(self, datakind: str, tile_id: str) -> ShardInfo | None:
        pid = self.parquet_ids.get(tile_id)
        return self.shards.get(f"{self.partition}/{datakind}/{pid}.zstd.parquet") if pid else None

    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


@dataclass
class SourceInfo:
    root: Path
    config: SynthConfig
    repos: dict[tuple[str, str], RepoInfo]  # (edition, region) -> repo
    seconds: float = 0.0

    def repo(self, edition: str, region: str) -> RepoInfo:
        return self.repos[(edition, region)]

    def __iter__(self) -> Iterator[RepoInfo]:
        return iter(self.repos.values())

    @property
    def total_bytes(self) -> int:
        return sum(r.total_bytes() for r in self.repos.values())

    @property
    def total_files(self) -> int:
        return sum(len(r.files) for r in self.repos.values())


def check_config(config: SynthConfig) -> None:
    """Reject settings that cannot work, with a hint (regions, editions, datakinds are names)."""
    for r in config.regions:
        spec.get_region(r)
    for e in config.editions:
        spec.get_edition(e)
    for dk in config.datakinds or ():
        spec.parse_datakind(dk)
    if not config.regions or not config.editions:
        raise UsageError("nothing to write", "give at least one --region and one --edition")
    if config.tiles < 1:
        raise UsageError(f"--tiles must be at least 1, got {config.tiles}", "use --tiles 10")
    if config.chip_px < 4 or min(config.native_shape) < 2:
        raise UsageError("the chip grid is too small", "use --chip-px 64 (448 is the real size)")
    if config.chip_px > MAX_CHIP_PX:  # a 36-band chip is held in memory while it is written
        raise UsageError(
            f"--chip-px must be at most {MAX_CHIP_PX}, not {config.chip_px}",
            "use --chip-px 448 (the real size) or less",
        )
    if config.s1grd_dtype not in S1GRD_DTYPES:
        raise UsageError(
            f"unknown s1grd dtype {config.s1grd_dtype!r}", "use " + " or ".join(S1GRD_DTYPES)
        )
    if config.tiles_per_shard < 1 or config.rows_per_row_group < 1 or config.gunw_datepairs < 1:
        raise UsageError("shard sizes and date pairs must be positive", "use the defaults")
