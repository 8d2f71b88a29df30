"""The dataset card (``README.md``) and ``croissant.json`` of an ``hf`` export.

The card's YAML front matter is written by ``huggingface_hub.DatasetCardData`` (``configs``:
one ``data_files`` entry per split, so the Hub and ``load_dataset`` find the splits); the
Croissant JSON-LD by ``mlcroissant`` itself (``Metadata``/``FileSet``/``RecordSet``/``Field``),
so both are what those libraries read. Nothing time-dependent is written: the same export gives
the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Layer = tuple[str, str, str, list[int]]  # name, role, dtype, (bands, H, W)
NAME = "m3leo-export"
SOURCE = "https://huggingface.co/M3LEO"  # the published dataset's organisation on the Hub
CROISSANT_SPEC = "http://mlcommons.org/croissant/1.1"


def dataset_card(layers: Sequence[Layer], counts: Mapping[str, int]) -> str:
    """README.md: YAML ``configs`` per split, then what the export holds and how to read it."""
    from huggingface_hub import DatasetCardData

    from ..version import __version__

    splits = list(counts)
    data = DatasetCardData(
        pretty_name="M3LEO export",
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{s}/*.parquet"} for s in splits],
            }
        ],
        tags=["earth-observation", "remote-sensing", "m3leo"],
    )
    first = next((lay[0] for lay in layers), "LAYER")
    lines = [
        "---",
        data.to_yaml().rstrip(),
        "---",
        "",
        "# M3LEO export",
        "",
        f"Co-aligned samples of the M3LEO dataset ({SOURCE}), one row per tile, written by "
        f"m3leo {__version__} (`m3leo export --format hf`). Each layer is an array column "
        "(bands, y, x) in its stored dtype; `metadata.json` holds the provenance (source "
        "files and checksums), band names, units and what was done to the values. "
        "`croissant.json` describes the same files in MLCommons Croissant.",
        "",
        "| layer | role | dtype | shape (bands, y, x) |",
        "|---|---|---|---|",
        *[f"| `{n}` | {role} | {dt} | {tuple(shape)} |" for n, role, dt, shape in layers],
        "",
        "| split | samples |",
        "|---|---|",
        *[f"| {s} | {counts.get(s, 0)} |" for s in splits],
        "",
        "Other columns: `tile_id`, `split`, `region`, `crs`, `bounds` (W, S, E, N in the CRS), "
        "`missing` (layers the tile lacks; their column is null).",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset(".", split="{splits[0]}")  # or the Hub repo id',
        f'x = ds.with_format("numpy", dtype=None)[0]["{first}"]  # keeps the stored dtype',
        "```",
        "",
    ]
    return "\n".join(lines)


def croissant(layers: Sequence[Layer], splits: Sequence[str]) -> str:
    """croissant.json: per split a FileSet (``<split>/*.parquet``) and a RecordSet whose fields
    extract the columns, layers as arrays with their shape."""
    import mlcroissant as mlc
    import numpy as np

    files, records = [], []
    for split in splits:
        fs_id = f"{split}-parquet"
        files.append(
            mlc.FileSet(
                id=fs_id,
                name=fs_id,
                encoding_formats=["application/x-parquet"],
                includes=[f"{split}/*.parquet"],
            )
        )

        def field(
            column: str, kind: Any, shape: str | None = None, fs: str = fs_id, rs: str = split
        ) -> Any:
            return mlc.Field(
                id=f"{rs}/{column}",
                name=column,
                data_types=[kind],
                is_array=True if shape else None,
                array_shape=shape,
                source=mlc.Source(file_set=fs, extract=mlc.Extract(column=column)),
            )

        fields = [field(c, mlc.DataType.TEXT) for c in ("tile_id", "split", "region", "crs")]
        fields.append(field("bounds", mlc.DataType.FLOAT, "4"))
        for name, _, dtype, shape in layers:
            kind = mlc.DataType.FLOAT if np.dtype(dtype).kind == "f" else mlc.DataType.INTEGER
            fields.append(field(name, kind, ",".join(str(n) for n in shape)))
        records.append(mlc.RecordSet(id=split, name=split, fields=fields))
    meta = mlc.Metadata(
        name=NAME,
        description="Co-aligned M3LEO samples exported by m3leo: "
        + ", ".join(f"{n} ({role})" for n, role, *_ in layers),
        url=SOURCE,
        conforms_to=[CROISSANT_SPEC],
        distribution=files,
        record_sets=records,
    )
    return json.dumps(meta.to_json(), indent=1, sort_keys=True, default=str) + "\n"
