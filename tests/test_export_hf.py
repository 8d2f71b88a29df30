"""``--format hf``: Parquet whose layers are nested fixed-size lists, with ``datasets`` Features
in the schema and in the dataset card, and ``croissant.json``; read back by
``datasets.load_dataset``, by ``mlcroissant`` and by m3leo's own reader (this layout and the
``Array3D`` layout of earlier exports)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from export_source import LAYERS, export_once, plan_for, shared_source, source_array

from m3leo_cli.errors import FormatDependencyError
from m3leo_cli.export import ExportOptions, run_export
from m3leo_cli.export.outputs import sha256_file
from m3leo_cli.tiles.reader import read_tile

datasets = pytest.importorskip("datasets", reason="the hf extra")
mlc = pytest.importorskip("mlcroissant", reason="the hf extra")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory: pytest.TempPathFactory):
    return export_once("hf", source, tmp_path_factory)


def test_layers_are_nested_fixed_size_lists_of_their_exact_shape(exported) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    plan, out, _ = exported
    sample = plan.samples[0]
    schema = pq.read_schema(next((out / sample.split).glob("*.parquet")))
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    for lay in LAYERS:
        want = source_array(plan, sample.tile_id, lay.name)
        field = schema.field(lay.name)
        assert field.nullable and field.metadata[b"layout"] == b"fixed-size-lists"
        typ, sizes, inner = field.type, [], []
        while pa.types.is_fixed_size_list(typ):
            sizes.append(typ.list_size)
            inner.append(typ.value_field)
            typ = typ.value_type
        assert tuple(sizes) == want.shape
        assert not any(f.nullable for f in inner)  # only a row (a missing layer) can be null
        assert typ == pa.from_numpy_dtype(want.dtype)  # the stored dtype, uint8 label included
        # the files' own Features: what `load_dataset("parquet", ...)` finds without the card
        feat = datasets.Features.from_dict({lay.name: features[lay.name]})[lay.name]
        assert isinstance(feat, datasets.List) and feat.length == want.shape[0]
        assert feat.feature.feature.feature == datasets.Value(str(want.dtype))


def _rows_equal_the_sources(plan, ds, split: str) -> None:  # type: ignore[no-untyped-def]
    samples = [s for s in plan.samples if s.split == split]
    rows = ds.with_format("numpy", dtype=None)
    assert [str(t) for t in rows["tile_id"]] == [s.tile_id for s in samples]
    for i, s in enumerate(samples):
        row = rows[i]
        assert row["split"] == split and row["region"] == "europe"
        tile = read_tile(s.files["s1grd-2020"].path, "s1grd-2020")
        np.testing.assert_array_equal(row["bounds"], tile.bounds)
        for lay in LAYERS:
            want = source_array(plan, s.tile_id, lay.name)
            assert row[lay.name].dtype == want.dtype  # the uint8 label untouched
            np.testing.assert_array_equal(row[lay.name], want)


def test_load_dataset_returns_arrays_of_the_stored_shape_and_dtype(exported, tmp_path) -> None:
    """`load_dataset("parquet", data_dir=...)` reads the files alone (no card): the schema
    metadata's Features, fixed-size lists of each layer's shape, give (bands, H, W) arrays."""
    plan, out, summary = exported
    assert summary.complete and summary.written == len(plan.samples)
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        hf_split = {"val": "validation"}.get(split, split)  # datasets' name for a val/ folder
        ds = datasets.load_dataset("parquet", data_dir=str(out), split=hf_split,
                                   cache_dir=str(tmp_path / "cache"))  # fmt: skip
        for lay in LAYERS:
            want0 = source_array(plan, samples[0].tile_id, lay.name)
            bands, h, w = want0.shape
            value = datasets.Value(str(want0.dtype))
            lists = datasets.List(datasets.List(datasets.List(value, length=w), length=h),
                                  length=bands)  # fmt: skip
            assert ds.features[lay.name] == lists
        _rows_equal_the_sources(plan, ds, split)


def test_the_folder_loads_as_array3d_through_the_card(exported, tmp_path) -> None:
    """Loading the folder (as a Hub repo id would be): the card's `dataset_info` Features make
    datasets cast each layer to its Array3D, the same values in the stored dtype."""
    plan, out, _ = exported
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    for split in plan.splits:
        sample = next(s for s in plan.samples if s.split == split)
        for lay in LAYERS:
            want0 = source_array(plan, sample.tile_id, lay.name)
            feat = ds[split].features[lay.name]
            assert isinstance(feat, datasets.Array3D)
            assert feat.dtype == str(want0.dtype) and feat.shape == want0.shape
        _rows_equal_the_sources(plan, ds[split], split)


def legacy_copy(out: Path, dest: Path) -> Path:
    """``out`` (an hf export) rewritten in the layout hf exports had before the layers became
    fixed-size lists: each layer datasets' ``Array3D`` (its extension type over variable-size
    lists, cast by datasets itself), field ``layout`` ``datasets-array3d`` and Array3D Features
    in the schema metadata; everything else copied as it is."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import cast_array_to_feature

    shutil.copytree(out, dest)
    for path in sorted(dest.glob("*/*.parquet")):
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"huggingface"])
        feats = meta["info"]["features"]
        fields, cols = [], []
        for field, col in zip(table.schema, table.columns, strict=True):
            fmeta = dict(field.metadata or {})
            if fmeta.get(b"layout") == b"fixed-size-lists":
                typ, shape = field.type, []
                while pa.types.is_fixed_size_list(typ):
                    shape.append(typ.list_size)
                    typ = typ.value_type
                dtype = np.dtype(typ.to_pandas_dtype()).name
                feat = datasets.Array3D(shape=tuple(shape), dtype=dtype)
                col = pa.chunked_array([cast_array_to_feature(c, feat) for c in col.chunks], feat())
                fmeta[b"layout"] = b"datasets-array3d"
                feats[field.name] = datasets.Features({field.name: feat}).to_dict()[field.name]
                field = pa.field(field.name, feat(), metadata=fmeta)
            fields.append(field)
            cols.append(col)
        hf = {b"huggingface": json.dumps(meta).encode()}
        schema = pa.schema(fields, metadata={**table.schema.metadata, **hf})
        pq.write_table(pa.Table.from_arrays(cols, schema=schema), path, row_group_size=2)
    return dest


@pytest.mark.parametrize("layout", ["fixed-size-lists", "datasets-array3d"])
def test_m3leo_reads_both_layouts_with_missing_layers(source, tmp_path, layout) -> None:
    """m3leo's reader (what `m3leo train data.export=...` uses) gives every stored array of
    an --allow-missing export, a missing layer absent; from this layout (values taken without
    a copy) and from the Array3D layout of earlier exports."""
    import pyarrow.parquet as pq

    from m3leo_cli.train import exportformats
    from m3leo_cli.train.exportio import ExportFiles, load_metadata, split_shards

    plan = plan_for(source, allow_missing=True)
    assert any("gssic" in s.missing for s in plan.samples)
    out = tmp_path / "o"
    assert run_export(plan, ExportOptions("hf", out, shard_size=3)).complete
    if layout == "datasets-array3d":
        out = legacy_copy(out, tmp_path / "legacy")
    files = ExportFiles(out)
    meta = load_metadata(files)
    wanted = {lay.name: [] for lay in LAYERS}
    for split in plan.splits:
        got = {}
        for rel, n in split_shards(meta, split):
            field = pq.read_schema(out / rel).field("gssic")
            assert field.metadata[b"layout"] == layout.encode()
            for tile, _, arrays, bands in exportformats.rows("hf", files, rel, 0, n, wanted):
                got[tile] = arrays
                assert bands("gssic") == json.loads(field.metadata[b"bands"])
        samples = [s for s in plan.samples if s.split == split]
        assert list(got) == [s.tile_id for s in samples]
        for s in samples:
            assert set(got[s.tile_id]) == {lay.name for lay in LAYERS} - set(s.missing)
            for name, arr in got[s.tile_id].items():
                want = source_array(plan, s.tile_id, name)
                assert arr.dtype == want.dtype and arr.shape == want.shape
                np.testing.assert_array_equal(arr, want)


def test_fixed_values_are_a_view_of_the_column_slices_included() -> None:
    """A column's values as one NumPy array without a copy, following the offsets of sliced
    arrays (the row's, and a child array's own) and ignoring the slots of null rows."""
    import pyarrow as pa

    from m3leo_cli.export.hfparquet import fixed_list_column, layer_type
    from m3leo_cli.train.exportformats import fixed_values

    rng = np.random.default_rng(0)
    shape = (3, 4, 5)
    for dtype in (np.uint8, np.int16, np.uint16, np.float32, np.float64):
        arrays = [None if i % 3 == 1 else rng.integers(0, 99, shape).astype(dtype)
                  for i in range(7)]  # fmt: skip
        col = fixed_list_column(arrays, dtype, shape)
        assert col.type == layer_type(dtype, shape)
        leaf = np.frombuffer(col.values.values.values.buffers()[1], dtype)
        for lo, hi in ((0, 7), (2, 7), (1, 5), (3, 3)):
            values, valid = fixed_values(col.slice(lo, hi - lo))
            assert values.shape == (hi - lo, *shape) and values.dtype == dtype
            assert hi == lo or np.shares_memory(values, leaf)
            for i, a in enumerate(arrays[lo:hi]):
                assert bool(valid[i]) == (a is not None)
                if a is not None:
                    np.testing.assert_array_equal(values[i], a)
    # a child array with an offset of its own (a slice of a longer buffer)
    flat = pa.array(np.arange(2 * 60 + 7, dtype=np.uint16)).slice(7)
    typ = layer_type(np.uint16, shape)
    mid = pa.FixedSizeListArray.from_arrays(flat, type=typ.value_type.value_type)
    mid = pa.FixedSizeListArray.from_arrays(mid, type=typ.value_type)
    col = pa.FixedSizeListArray.from_arrays(mid, type=typ).slice(1)
    values, valid = fixed_values(col)
    np.testing.assert_array_equal(values[0].reshape(-1), np.arange(67, 127, dtype=np.uint16))
    assert list(valid) == [True]


CROISSANT_READER = """
import json, sys
import mlcroissant as mlc
ds = mlc.Dataset(jsonld=sys.argv[1])  # raises on a validation error
out = {"errors": sorted(ds.metadata.issues.errors), "records": {}}
for split in sys.argv[3:]:
    out["records"][split] = [
        {k.split("/", 1)[1]: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}
        for r in ds.records(split)
    ]
open(sys.argv[2], "w").write(json.dumps(out))
"""


def test_croissant_validates_and_yields_the_records(exported, tmp_path) -> None:
    """mlcroissant validates croissant.json and yields every record, values equal to the
    sources'. It runs in its own interpreter, as a Croissant consumer does (no `datasets`
    imported)."""
    import subprocess

    plan, out, _ = exported
    got = tmp_path / "records.json"
    cmd = [sys.executable, "-c", CROISSANT_READER, str(out / "croissant.json"), str(got),
           *plan.splits]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(got.read_text())
    assert doc["errors"] == []
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        recs = doc["records"][split]
        assert [r["tile_id"] for r in recs] == [s.tile_id for s in samples]
        for s, r in zip(samples, recs, strict=True):
            assert r["split"] == split and r["crs"] == "EPSG:4326"
            for lay in LAYERS:
                want = source_array(plan, s.tile_id, lay.name)
                got_arr = np.asarray(r[lay.name], want.dtype)
                assert got_arr.shape == want.shape
                np.testing.assert_array_equal(got_arr, want)


def test_the_card_names_each_split_for_the_hub(exported, tmp_path) -> None:
    from huggingface_hub import DatasetCard

    plan, out, _ = exported
    card = DatasetCard.load(out / "README.md")
    (config,) = card.data.configs
    assert config["data_files"] == [{"split": s, "path": f"{s}/*.parquet"} for s in plan.splits]
    assert "load_dataset" in card.text and "esaworldcover-2020" in card.text
    # the folder as a dataset repo (what `hf upload` publishes): the card's splits, by name
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert list(ds) == plan.splits
    assert [len(ds[s]) for s in plan.splits] == [
        sum(1 for x in plan.samples if x.split == s) for s in plan.splits
    ]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "hf" and {"README.md", "croissant.json"} <= set(meta["files"])
    for rel, info in meta["files"].items():
        assert sha256_file(out / rel) == info["sha256"]


def test_missing_datasets_is_one_error_naming_the_extra(source, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlcroissant", None)  # as if not installed
    with pytest.raises(FormatDependencyError) as exc:
        run_export(plan_for(source), ExportOptions("hf", tmp_path / "o"))
    assert exc.value.exit_code == 2 and "[hf]" in exc.value.hint
    assert not (tmp_path / "o").exists()


def test_dask_engine_and_partitions_write_the_same_folder(exported, tmp_path) -> None:
    distributed = pytest.importorskip("distributed", reason="the dask extra")
    from export_source import tree_bytes

    from m3leo_cli.config import load_settings
    from m3leo_cli.dist.engine import open_engine

    plan, whole, _ = exported
    opts = {"shard_size": 2, "command": ("m3leo", "export")}
    for i in (1, 0):  # the job without the first shard first: the card comes with the last
        run_export(plan, ExportOptions("hf", tmp_path / "parts", num_shards=2, shard_index=i,
                                       **opts))  # fmt: skip
    assert tree_bytes(tmp_path / "parts") == tree_bytes(whole)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        settings = load_settings(
            {"data_dir": tmp_path / "data", "engine": "dask", "scheduler": lc.scheduler_address}
        )
        with open_engine(settings) as pool:
            res = run_export(plan, ExportOptions("hf", tmp_path / "dask", **opts),
                             settings=settings, pool=pool)  # fmt: skip
    assert res.complete and tree_bytes(tmp_path / "dask") == tree_bytes(whole)
