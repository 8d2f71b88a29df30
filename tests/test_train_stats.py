"""Statistics that belong to training (issue 28; issue 27 item 5): `m3leo train` computes the
train split's band statistics when they are missing and saves them with their provenance;
`stats --bands` defaults to the train split; statistics of another selection are refused
(or, asked, only warned about) by training and by `export --normalize`; derived bands (VV-VH)
get statistics like stored ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clirun import run
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

SMALL = ("data.size=16", "data.regions=[europe]", "data.edition=miniset", "model.base_channels=4",
         "model.depth=2", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
         "loader.batch_size=4", "trainer.max_epochs=1")  # fmt: skip
SEL = ("--edition", "miniset", "--region", "europe")


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


def _no_stats(data_dir: Path) -> None:
    shutil.rmtree(data_dir / ".m3leo" / "stats", ignore_errors=True)


def _saved(data_dir: Path) -> dict:
    return json.loads((data_dir / ".m3leo" / "stats" / "bands-miniset.json").read_text())


def _train_tiles(store, region: str = "europe", datakind: str = "s1grd-2020") -> int:
    """Train tiles of the source that have a file of ``datakind`` (every one is downloaded)."""
    repo = store.repo("miniset", region)
    return len(set(repo.tiles_in("train")) & set(repo.coverage[datakind]))


def _error(res) -> tuple[str, str]:
    lines = res.err.strip().splitlines()
    assert lines[-2].startswith("Error: ") and lines[-1].startswith("hint: "), res.err
    return lines[-2], lines[-1]


def test_train_computes_train_split_stats_when_missing(store, data_dir, tmp_path, capsys):
    _no_stats(data_dir)
    run_dir = tmp_path / "run"
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL, f"hydra.run.dir={run_dir}")
    assert res.code == 0, res.err
    said = [line for line in res.err.splitlines() if line.startswith("band statistics of")]
    assert len(said) == 1, res.err
    n = _train_tiles(store)
    assert f"computed on the train split of europe ({n} tiles)" in said[0]
    entry = _saved(data_dir)["selections"]["s1grd-2020|europe|train"]
    assert entry["splits"] == ["train"] and entry["regions"] == ["europe"]
    assert entry["tiles"] == n and entry["sample"] is None and entry["subset"] is False
    # the run keeps the constants it trained with, and says which preprocessing it used
    used = json.loads((run_dir / "band_stats.json").read_text())
    assert used["scope"] == "pooled"
    assert used["stats"]["*"]["s1grd-2020"]["bands"] == entry["bands"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["preprocessing"] == "m3leo"
    assert record["normalization"]["provenance"]["*|s1grd-2020"]["splits"] == ["train"]
    # a second run finds them: nothing computed, nothing said
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL, f"hydra.run.dir={tmp_path / 'b'}")
    assert res.code == 0 and "band statistics of" not in res.err


def test_stats_bands_defaults_to_the_train_split(store, data_dir, capsys) -> None:
    _no_stats(data_dir)
    res = run(capsys, "stats", "--bands", *SEL, "-m", "gssic", "--json")
    assert res.code == 0, res.err
    assert "train split" in res.err
    entry = _saved(data_dir)["modalities"]["gssic"]
    assert entry["splits"] == ["train"] and entry["tiles"] == _train_tiles(store, datakind="gssic")


def test_limit_1_stats_then_export_normalize_is_refused(store, data_dir, tmp_path, capsys):
    """Issue 27 item 5: `stats --bands --limit 1` replaced the saved entry and the next
    `export --normalize` of every tile used it without a word."""
    res = run(capsys, "stats", "--bands", *SEL, "-m", "s1grd", "--limit", "1")
    assert res.code == 0, res.err
    out = tmp_path / "n"
    res = run(capsys, "export", *SEL, "-m", "s1grd", "--normalize", "--format", "npz",
              "--out", str(out))  # fmt: skip
    assert res.code == 2, res.err
    err, hint = _error(res)
    assert "s1grd-2020" in err and "(1 tile, a subset" in err
    cmd = ("m3leo stats --bands --edition miniset --region europe --split train "
           "--modality s1grd-2020")  # fmt: skip
    assert cmd in hint
    assert not out.exists()
    # the hint's command fixes it
    res = run(capsys, *cmd.split()[1:])
    assert res.code == 0, res.err
    res = run(capsys, "export", *SEL, "-m", "s1grd", "--normalize", "--format", "npz",
              "--out", str(out))  # fmt: skip
    assert res.code == 0, res.err


def test_stats_of_other_regions_refused_by_export(store, data_dir, tmp_path, capsys) -> None:
    _no_stats(data_dir)
    res = run(capsys, "stats", "--bands", "--edition", "miniset", "--region", "conus",
              "-m", "gssic")  # fmt: skip
    assert res.code == 0
    res = run(capsys, "export", *SEL, "-m", "gssic", "--normalize", "--format", "npz",
              "--out", str(tmp_path / "x"))  # fmt: skip
    assert res.code == 2
    err, hint = _error(res)
    assert "of conus" in err and "of europe" in err and "--region europe" in hint


def test_train_refuses_subset_stats_unless_told_to_warn(store, data_dir, tmp_path, capsys):
    res = run(capsys, "stats", "--bands", *SEL, "-m", "s1grd", "--limit", "2")
    assert res.code == 0
    run_dir = tmp_path / "r"
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL, f"hydra.run.dir={run_dir}")
    assert res.code == 2
    err, hint = _error(res)
    assert "subset" in err and "m3leo stats --bands" in hint and "--split train" in hint
    assert not run_dir.exists()  # refused before the run folder is written
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL, f"hydra.run.dir={run_dir}",
              "data.stats_check=warn")  # fmt: skip
    assert res.code == 0, res.err
    assert "warning: the saved band statistics of s1grd-2020 do not fit" in res.err


def test_derived_vv_minus_vh_gets_statistics_and_trains(store, data_dir, tmp_path, capsys):
    """Issue 28 item 7: VV-VH could not be normalised (failed inside the first batch)."""
    _no_stats(data_dir)
    bands = "[winter_vvasc,winter_vhasc,winter_vv-vhasc]"
    run_dir = tmp_path / "d"
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL, f"hydra.run.dir={run_dir}",
              f"data.inputs=[{{modality: s1grd-2020, bands: {bands}}}]")  # fmt: skip
    assert res.code == 0, res.err
    saved = _saved(data_dir)["selections"]["s1grd-2020|europe|train"]["bands"]
    assert saved["winter_vv-vhasc"]["count"] > 0
    # VV - VH in dB: its mean is the difference of the means
    diff = saved["winter_vvasc"]["mean"] - saved["winter_vhasc"]["mean"]
    assert abs(saved["winter_vv-vhasc"]["mean"] - diff) < 0.5
    # and `stats --bands` shows them like stored bands
    res = run(capsys, "stats", "--bands", *SEL, "-m", "s1grd", "--json")
    names = {b["band"] for b in json.loads(res.out)["bands"]}
    assert {"winter_vv-vhasc", "fall_vv-vhasc"} <= names


def test_norm_scope_region_keeps_one_set_per_region(store, data_dir, tmp_path, capsys):
    _no_stats(data_dir)
    run_dir = tmp_path / "reg"
    res = run(capsys, "train", "experiment=esawc/gssic", *SMALL, "data.regions=[europe,conus]",
              "data.norm_scope=region", f"hydra.run.dir={run_dir}")  # fmt: skip
    assert res.code == 0, res.err
    assert res.err.count("band statistics of gssic: computed on the train split of") == 2
    used = json.loads((run_dir / "band_stats.json").read_text())
    assert used["scope"] == "region" and set(used["stats"]) == {"europe", "conus"}
    saved = _saved(data_dir)["selections"]
    assert {"gssic|europe|train", "gssic|conus|train"} <= set(saved)
    eu, us = (saved[f"gssic|{r}|train"]["bands"] for r in ("europe", "conus"))
    assert eu != us


def test_samples_are_normalised_with_their_region_statistics(store, data_dir) -> None:
    import numpy as np

    from m3leo_cli.config import load_settings
    from m3leo_cli.train.dataset import StoreDataset
    from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec

    _no_stats(data_dir)
    kw = {"regions": ("europe", "conus"), "size": 32}
    inputs = (InputSpec("s1grd-2020", ("winter_vvasc", "winter_vv-vhasc")),)
    target = TargetSpec("biomass-2020", "agb", "regression")
    settings = load_settings()
    normed = StoreDataset(DataSpec(inputs, target, norm_scope="region", **kw), "val", settings)
    raw = StoreDataset(DataSpec(inputs, target, normalize=False, **kw), "val", settings)
    seen = set()
    for i, s in enumerate(normed.plan.samples):
        per = normed.assembler.run_stats.for_region(s.region)["s1grd-2020"]
        x, y = raw[i]["image"].numpy(), normed[i]["image"].numpy()
        for c, band in enumerate(("winter_vvasc", "winter_vv-vhasc")):
            mean, std = per.mean_std(band)
            ok = x[c] != 0
            assert np.allclose(y[c][ok], (x[c][ok] - mean) / std, atol=1e-4)
        seen.add(s.region)
    assert seen == {"europe", "conus"}


def test_stats_bands_of_named_tiles_takes_them_as_named(store, data_dir, capsys) -> None:
    """The train-split default does not drop tiles the user named one by one."""
    val = store.repo("miniset", "europe").tiles_in("val")[0]
    res = run(capsys, "stats", "--bands", *SEL, "-m", "s1grd", "--tiles", val, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["tiles"] == 1 and "train split" not in res.err
    entry = _saved(data_dir)["modalities"]["s1grd-2020"]
    assert entry["splits"] == [] and entry["subset"] is True
