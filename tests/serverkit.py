"""A small repo folder with real-shaped M3LEO names, for the server tests (no synth needed)."""

from __future__ import annotations

import random
from pathlib import Path

REPO = "M3LEO-miniset/europe"
PART = "europe_partitions_aschips_2f8bd3f01ddd5"
IDS = ("020d259a89240", "0127acc7072b4", "28225af8c635c")
CSV = f"{PART}_splits_60bands_angle09_60-20-20_miniset.csv"
GEOJSON = f"{PART}_miniset.geojson"


def build_repo(root: Path, seed: int = 0) -> dict[str, bytes]:
    """Write ``root/M3LEO-miniset/europe/...``; returns repo path -> bytes."""
    rnd = random.Random(seed)
    files: dict[str, bytes] = {
        ".gitattributes": b"*.nc filter=lfs diff=lfs merge=lfs -text\n"
        b"*.tif filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"# M3LEO miniset, europe (synthetic)\n",
        CSV: b"identifier,split,original_index\n"
        + b"".join(
            f"{t},{s},{i}\n".encode()
            for i, (t, s) in enumerate(zip(IDS, ("train", "val", "test"), strict=True))
        ),
        GEOJSON: b'{"type": "FeatureCollection", "features": []}\n',
    }
    for i, tid in enumerate(IDS):
        files[f"{PART}/gssic/{tid}.nc"] = rnd.randbytes(3000 + 17 * i)
        files[f"{PART}/s1grd-2020/{tid}.tif"] = rnd.randbytes(5000 + 31 * i)
    base = root / REPO
    for rel, data in files.items():
        dest = base / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return files
