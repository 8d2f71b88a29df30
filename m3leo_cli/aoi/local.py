"""The ``local`` edition: your own regions in the store, laid out like a published one.

    <data_dir>/local/<name>/m3leo-region.json                       what m3leo made, and how
    <data_dir>/local/<name>/<name>_partitions_aschips_<hash>.geojson the chips
    <data_dir>/local/<name>/<partition><split tag>.csv               identifier,split
    <data_dir>/local/<name>/<partition>/<datakind>/<id>.tif          ingested or downloaded

M3LEO's own loaders read that folder as they read a published region (the split CSV names the
partition folder). ``m3leo-region.json`` keeps the chip size, split settings and the band names
of each local datakind, which the manifest and the readers need.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AoiError, BadAoiError, OutputExistsError
from ..store.layout import Store, write_text_atomic
from .grid import Chip, Grid, grid_geojson, read_grid_geojson
from .split import SplitSpec, split_csv_text

LOCAL_EDITION = "local"
REGION_FILE = "m3leo-region.json"


@dataclass
class LocalRegion:
    """What ``m3leo-region.json`` records about one local region."""

    name: str
    partition_hash: str
    split_tag: str
    chip_m: float
    utm_epsg: int
    chips: int
    split: dict[str, Any]
    datakinds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        return f"{self.name}_partitions_aschips_{self.partition_hash}"

    @property
    def geojson(self) -> str:
        return f"{self.partition}.geojson"

    @property
    def split_csv(self) -> str:
        return f"{self.partition}{self.split_tag}.csv"


def region_dir(data_dir: Path, name: str) -> Path:
    return Store(data_dir).region_dir(LOCAL_EDITION, name)


def local_names(data_dir: Path) -> list[str]:
    """Local regions in the store (folders holding an ``m3leo-region.json``)."""
    root = Store(data_dir).root / LOCAL_EDITION
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{REGION_FILE}"))


def load_region(data_dir: Path, name: str) -> LocalRegion:
    path = region_dir(data_dir, name) / REGION_FILE
    if not path.is_file():
        known = local_names(data_dir)
        raise AoiError(
            f"no local region {name!r} in {path.parent.parent}",
            "make it with `m3leo grid "
            + name
            + " --aoi ...`"
            + (f" (local regions: {', '.join(known)})" if known else ""),
        )
    doc = json.loads(path.read_text(encoding="utf-8"))
    return LocalRegion(**doc)


def save_region(data_dir: Path, region: LocalRegion) -> None:
    path = region_dir(data_dir, region.name) / REGION_FILE
    write_text_atomic(path, json.dumps(asdict(region), indent=2) + "\n")


def load_chips(data_dir: Path, region: LocalRegion) -> tuple[Chip, ...]:
    """The region's chips, read back from its GeoJSON (ids checked against geometries)."""
    path = region_dir(data_dir, region.name) / region.geojson
    return read_grid_geojson(path, region.name, region.chip_m).chips


def load_splits(data_dir: Path, region: LocalRegion) -> dict[str, str]:
    path = region_dir(data_dir, region.name) / region.split_csv
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split(",")[:2] for line in lines if line)  # type: ignore[misc]


def write_region(
    grid: Grid,
    splits: dict[str, str],
    spec: SplitSpec,
    out_dir: Path,
    *,
    overwrite: bool = False,
    keep_datakinds: dict[str, dict[str, Any]] | None = None,
) -> LocalRegion:
    """Write the GeoJSON, split CSV and ``m3leo-region.json`` of ``grid`` into ``out_dir``."""
    if len(grid.name) == 0:
        raise BadAoiError("empty region name")
    existing = out_dir / REGION_FILE
    if existing.exists() and not overwrite:
        old = json.loads(existing.read_text(encoding="utf-8"))
        if old.get("partition_hash") != grid.partition_hash or old.get("split_tag") != spec.tag:
            raise OutputExistsError(
                f"{out_dir} already holds region {grid.name!r} with another grid or split",
                "pass --overwrite to replace it, or choose another name",
            )
        keep_datakinds = old.get("datakinds") or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    region = LocalRegion(
        name=grid.name,
        partition_hash=grid.partition_hash,
        split_tag=spec.tag,
        chip_m=grid.chip_m,
        utm_epsg=grid.utm_epsg,
        chips=len(grid.chips),
        split=asdict(spec),
        datakinds=dict(keep_datakinds or {}),
    )
    write_text_atomic(out_dir / region.geojson, json.dumps(grid_geojson(grid)) + "\n")
    write_text_atomic(out_dir / region.split_csv, split_csv_text(grid.chips, splits))
    write_text_atomic(out_dir / REGION_FILE, json.dumps(asdict(region), indent=2) + "\n")
    return region
