"""Root files of a synthetic Hub repo: README, .gitattributes, split CSVs, GeoJSON.

Names and columns follow docs/format.md. CSVs are plain, with a header and LF line endings;
the GeoJSON is a FeatureCollection in lon/lat (CRS84) with one feature per line, as GDAL and
GeoPandas write it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence

from .geometry import TileGeom

# Our rendering of the Hub's default .gitattributes for a new dataset repo: common binary and
# archive types go through LFS. .tif and .nc are not in it, so the miniset lists each file.
_LFS_PATTERNS = (
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.lfs.*",
    "*.lz4",
    "*.mds",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "saved_model/**/*",
    "*.tar.*",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
    "# Audio files - uncompressed",
    "*.pcm",
    "*.sam",
    "*.raw",
    "# Audio files - compressed",
    "*.aac",
    "*.flac",
    "*.mp3",
    "*.ogg",
    "*.wav",
    "# Image files - uncompressed",
    "*.bmp",
    "*.gif",
    "*.png",
    "*.tiff",
    "# Image files - compressed",
    "*.jpg",
    "*.jpeg",
    "*.webp",
    "# Video files - compressed",
    "*.mp4",
    "*.webm",
)
_LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"


def gitattributes(lfs_files: Iterable[str] = ()) -> bytes:
    """The default template, then one line per file (what upload_folder appends)."""
    lines = [p if p.startswith("#") else f"{p} {_LFS_ATTRS}" for p in _LFS_PATTERNS]
    lines += [f"{path} {_LFS_ATTRS}" for path in lfs_files]
    return ("\n".join(lines) + "\n").encode()


def readme(
    edition: str, region: str, description: str, counts: Mapping[str, int], n_tiles: int
) -> bytes:
    """A short dataset card; the real ones describe the datakinds and count the chips."""
    what = (
        "plain GeoTIFF / netCDF chips, one file per tile and datakind"
        if edition == "miniset"
        else "zstd Parquet shards whose rows hold the raw bytes of each chip file"
    )
    lines = [
        f"# M3LEO {edition} - {region} ({description})",
        "",
        "Synthetic stand-in written by `m3leo synth` for tests, demos and benchmarks. It has the",
        "layout, names, bands and variables of the published dataset, not its measurements.",
        "",
        f"Each tile is 4480 m x 4480 m and named by its identifier. Packing: {what}.",
        f"Tiles: {n_tiles} (splits 60/20/20 by geographic stripes).",
        "",
        "| Datakind | Tiles |",
        "|---|---|",
    ]
    lines += [f"| {dk} | {n} |" for dk, n in counts.items()]
    return ("\n".join(lines) + "\n").encode()


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def geojson(name: str, tiles: Sequence[TileGeom]) -> bytes:
    """Miniset chip geometries: properties area_km2, identifier, original_index."""
    head = (
        '{\n"type": "FeatureCollection",\n'
        f'"name": {json.dumps(name)},\n'
        '"crs": { "type": "name", "properties": { "name": "urn:ogc:def:crs:OGC:1.3:CRS84" } },\n'
        '"features": [\n'
    )
    feats = []
    for t in tiles:
        props = {
            "area_km2": t.area_km2,
            "identifier": t.tile_id,
            "original_index": t.original_index,
        }
        geom = {"type": "Polygon", "coordinates": [[list(v) for v in t.ring]]}
        feats.append(json.dumps({"type": "Feature", "properties": props, "geometry": geom}))
    return (head + ",\n".join(feats) + "\n]\n}\n").encode()
