"""``m3leo grid`` end to end: AOI -> chips -> striped split -> a local region with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import register_local
from ..errors import UsageError
from .local import LOCAL_EDITION, region_dir, write_region
from .manifest import build_local_manifest


def create_region(
    name: str,
    *,
    data_dir: Path,
    aoi: str | None = None,
    bbox: str | None = None,
    chip_m: float = 4480.0,
    bands: int = 60,
    angle: float = 0.9,
    split: str = "60-20-20",
    out: Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``m3leo grid``: AOI -> chips -> striped split, written as a local region (or to ``out``).

    Returns what was written: paths, chip count, split counts, the partition name.
    """
    from .grid import build_grid, check_name
    from .shape import centre_note, load_aoi
    from .split import assign_splits, check_split_result, parse_split_spec

    if bands < 1:
        raise UsageError(f"--bands must be at least 1, not {bands}", "e.g. --bands 60")
    if not chip_m > 1:
        raise UsageError(
            f"--chip-size must be more than 1 metre, not {chip_m:g}", "e.g. --chip-size 4480"
        )
    check_name(name)
    spec = parse_split_spec(bands, angle, split)
    geom = load_aoi(aoi, bbox)
    centre, note = centre_note(geom)
    if bbox is not None:
        note = None  # --bbox is W,S,E,N by name: no order to doubt
    grid = build_grid(geom, chip_m, name)
    splits = assign_splits(grid.chips, spec)
    check_split_result(splits, spec)
    target = out if out is not None else region_dir(data_dir, name)
    region = write_region(grid, splits, spec, target, overwrite=overwrite)
    if out is None:
        build_local_manifest(data_dir, region)
        register_local(data_dir)
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "val", "test")}
    return {
        "region": name,
        "dir": str(target),
        "partition": region.partition,
        "geojson": str(target / region.geojson),
        "split_csv": str(target / region.split_csv),
        "chips": len(grid.chips),
        "chip_m": grid.chip_m,
        "utm_epsg": grid.utm_epsg,
        "centre": [round(centre[0], 6), round(centre[1], 6)],
        "note": note,
        "splits": counts,
        "edition": LOCAL_EDITION if out is None else None,
    }
