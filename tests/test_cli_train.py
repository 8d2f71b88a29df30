"""`m3leo train` / `m3leo evaluate` end to end on a small synthetic store (CPU, tiny UNet), the
learnable source learning, and every bad input ending in one Error: line and a hint."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from clirun import run
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

SMALL = ("data.size=32", "data.regions=[europe]", "data.edition=miniset", "model.base_channels=8",
         "model.depth=2", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
         "loader.batch_size=4")  # fmt: skip


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(
    "experiment,names",
    [
        ("esawc/s1grd", ("val_acc", "val_miou")),
        ("agb/gssic+s2rgbm", ("val_rmse", "val_r2")),
        ("ghsbuilts/s1grd-vh", ("val_rmse", "val_r2")),
    ],
)
def test_one_cpu_epoch_per_task_then_evaluate(store, tmp_path: Path, capsys, experiment, names):
    run_dir = tmp_path / "run"
    res = run(capsys, "train", f"experiment={experiment}", "trainer.max_epochs=1", *SMALL,
              f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["experiment"] == experiment and summary["epochs"] == 1
    assert Path(summary["run_dir"]) == run_dir.resolve()
    repo = store.repo("miniset", "europe")
    assert summary["samples"]["train"] <= len(repo.tiles_in("train"))
    rows = _metrics(run_dir)
    for name in ("train_loss_epoch", "val_loss", *names):
        assert any(r.get(name) for r in rows), name
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    cfg = (run_dir / "config.yaml").read_text()
    assert f"experiment_name: {experiment}" in cfg and "size: 32" in cfg
    res = run(capsys, "evaluate", str(run_dir), "--json")
    assert res.code == 0, res.err
    scores = json.loads(res.out)
    assert scores["split"] == "test" and scores["samples"] >= 1
    assert {f"test_{n[4:]}" for n in names} <= set(scores["metrics"])
    assert json.loads((run_dir / "test_metrics.json").read_text())["metrics"] == scores["metrics"]


def test_overfit_on_the_learnable_source_halves_the_loss(store, tmp_path: Path) -> None:
    from m3leo_cli.train.run import train

    run_dir = tmp_path / "overfit"
    result = train(["experiment=esawc/s1grd", "trainer.max_epochs=30", *SMALL,
                    "loader.batch_size=8", "model.lr=0.01", "trainer.limit_val_batches=0",
                    f"hydra.run.dir={run_dir}"])  # fmt: skip
    losses = [float(r["train_loss_step"]) for r in _metrics(run_dir) if r.get("train_loss_step")]
    assert len(losses) == 30
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.epochs == 30


def test_train_prints_people_lines_on_stderr(store, tmp_path: Path, capsys) -> None:
    res = run(capsys, "train", "experiment=esawc/s1grd-vv", "trainer.max_epochs=1", *SMALL,
              f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert res.code == 0, res.err
    assert res.out == ""
    assert "epoch 1/1" in res.err and "m3leo evaluate" in res.err


def test_list_experiments(capsys) -> None:
    res = run(capsys, "train", "--list", "--json")
    names = json.loads(res.out)["experiments"]
    for task in ("esawc", "agb", "ghsbuilts", "modisveg"):
        for inp in ("s1grd", "s1grd-vv", "s1grd-vh", "s1grd-vvvh", "gssic", "gunw", "s2rgbm",
                    "s1grd+s2rgbm", "gssic+s2rgbm", "gunw+s2rgbm"):  # fmt: skip
            assert f"{task}/{inp}" in names


def test_the_authors_names_are_aliases(store, tmp_path: Path, capsys) -> None:
    """Issue 28 item 8: `experiment=baseline-esawc/s1grd-vv-vh` was refused."""
    res = run(capsys, "train", "--list", "--json")
    alias = json.loads(res.out)["aliases"]
    assert alias["baseline-esawc/s1grd-vv-vh"] == "esawc/s1grd"
    assert alias["baseline-agb/s1grd-vv"] == "agb/s1grd-vv"
    assert alias["fusion-esawc/gssic"] == "esawc/gssic+s2rgbm"
    assert alias["fusion-ghsbuilts/s1grd-vv-vh"] == "ghsbuilts/s1grd+s2rgbm"
    assert alias["fusion-agb/gunw"] == "agb/gunw+s2rgbm"
    assert len([a for a in alias if a.startswith(("baseline-", "fusion-"))]) == 27
    res = run(capsys, "train", "--list")
    assert "baseline-esawc/s1grd-vv-vh -> esawc/s1grd" in res.out
    run_dir = tmp_path / "a"
    res = run(capsys, "train", "experiment=fusion-esawc/gssic", "trainer.max_epochs=1", *SMALL,
              f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert res.code == 0, res.err
    assert json.loads(res.out)["experiment"] == "esawc/gssic+s2rgbm"


def test_modisveg_from_vv_vh_and_vv_minus_vh(store, tmp_path: Path, capsys) -> None:
    """Issue 28 item 5: the MODIS vegetation task and the 12-channel S1 input."""
    run_dir = tmp_path / "m"
    res = run(capsys, "train", "experiment=modisveg/s1grd-vvvh", "trainer.max_epochs=1", *SMALL,
              f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert "val_rmse" in summary["metrics"]
    cfg = (run_dir / "config.yaml").read_text()
    assert "modality: modis44b006veg" in cfg and "winter_vv-vhasc" in cfg
    from m3leo_cli.train.normstats import read_run_stats

    stats = read_run_stats(run_dir)
    assert stats is not None
    assert len(stats.by_scope["*"]["s1grd-2020"].bands) >= 12  # stored and derived bands


# ------------------------------------------------------------------------------ bad input


def _error(res) -> tuple[str, str]:
    lines = res.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and lines[1].startswith("hint: ")
    return lines[0], lines[1]


def test_unknown_experiment_lists_them(capsys) -> None:
    res = run(capsys, "train", "experiment=esawc/sentinel9")
    assert res.code == 2
    err, hint = _error(res)
    assert "esawc/sentinel9" in err and "esawc/s1grd" in hint and "ghsbuilts/gunw" in hint


def test_modality_not_in_store_names_the_download(store, data_dir: Path, capsys) -> None:
    for p in data_dir.glob("miniset/europe/*/gssic"):
        shutil.rmtree(p)
    res = run(capsys, "train", "experiment=esawc/gssic", *SMALL)
    assert res.code == 1
    _, hint = _error(res)
    assert "m3leo download --edition miniset --region europe --modality gssic" in hint


def test_band_not_in_store(store, capsys) -> None:
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL,
              "data.inputs=[{modality: s1grd-2020, bands: [winter_hhasc]}]")  # fmt: skip
    assert res.code == 2  # a selection mistake, like every unknown band
    err, hint = _error(res)
    assert "winter_hhasc" in err and "winter_vvasc" in hint


def test_target_without_labels(store, data_dir: Path, capsys) -> None:
    for p in data_dir.glob("miniset/europe/*/ghsbuilts-2020"):
        shutil.rmtree(p)
    res = run(capsys, "train", "experiment=ghsbuilts/s1grd", *SMALL)
    assert res.code == 1
    err, hint = _error(res)
    assert "ghsbuilts-2020" in err and "m3leo download" in hint


def test_empty_split(store, data_dir: Path, capsys) -> None:
    """A manifest whose val split holds no tile (a region's own split file may be like that)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = next(data_dir.glob("manifest/edition=miniset/region=europe/manifest.parquet"))
    table = pq.read_table(path)
    keep = pc.invert(pc.fill_null(pc.equal(table["split"], "val"), False))
    pq.write_table(table.filter(keep), path)
    res = run(capsys, "train", "experiment=esawc/s1grd", *SMALL)
    assert res.code == 1
    err, hint = _error(res)
    assert "val split" in err and "m3leo stats" in hint


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none(capsys) -> None:
    res = run(capsys, "train", "experiment=esawc/s1grd", "trainer.accelerator=cuda")
    assert res.code == 2
    err, hint = _error(res)
    assert "CUDA" in err and "trainer.accelerator=cpu" in hint


def test_no_experiment_and_bad_override(capsys) -> None:
    res = run(capsys, "train", "trainer.max_epochs=1")
    assert res.code == 2 and "experiment=" in _error(res)[1]
    res = run(capsys, "train", "experiment=esawc/s1grd", "nonsense")
    assert res.code == 2 and _error(res)


def test_evaluate_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    res = run(capsys, "evaluate", str(tmp_path))
    assert res.code == 1 and "config.yaml" in _error(res)[0]


# ------------------------------------------------------------ issue 27: training that talks


def test_evaluate_val_names_its_scores_val(store, tmp_path: Path, capsys) -> None:
    """Issue 27 item 9: `evaluate --split val` printed and saved test_* scores."""
    run_dir = tmp_path / "run"
    res = run(capsys, "train", "experiment=esawc/s1grd-vv", "trainer.max_epochs=1", *SMALL,
              f"hydra.run.dir={run_dir}")  # fmt: skip
    assert res.code == 0, res.err
    res = run(capsys, "evaluate", str(run_dir), "--split", "val")
    assert res.code == 0, res.err
    assert res.out.startswith("val split") and "  val_acc" in res.out and "  test_" not in res.out
    saved = json.loads((run_dir / "val_metrics.json").read_text())
    assert saved["split"] == "val"
    assert set(saved["metrics"]) == {"val_acc", "val_loss", "val_miou"}
    assert not (run_dir / "test_metrics.json").exists()


def test_evaluate_unknown_split_fails_before_heavy_imports(tmp_path: Path) -> None:
    """Issue 27: `evaluate --split validation` spent 5.4 s importing before "unknown split"."""
    import subprocess
    import sys

    code = ("import sys; from m3leo_cli.cli import main; rc = main(['evaluate', sys.argv[1], "
            "'--split', 'validation']); print(rc, 'lightning' in sys.modules, "
            "'torch' in sys.modules)")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.stdout.split() == ["2", "False", "False"], r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "Error: unknown split 'validation'"
    assert lines[1].startswith("hint: did you mean --split val?") and len(lines) == 2


def test_evaluate_on_another_store_names_the_split_it_scores(
    store, data_dir: Path, tmp_path: Path, capsys
) -> None:
    """Issue 27 item 20: `evaluate --data-dir <other>` complained about the train split."""
    run_dir = tmp_path / "run"
    res = run(capsys, "train", "experiment=esawc/s1grd-vh", "trainer.max_epochs=1", *SMALL,
              f"hydra.run.dir={run_dir}")  # fmt: skip
    assert res.code == 0, res.err
    other = tmp_path / "other"
    shutil.copytree(data_dir, other)
    for p in other.glob("miniset/europe/*/esaworldcover-2020"):
        shutil.rmtree(p)
    res = run(capsys, "evaluate", str(run_dir), "--data-dir", str(other))
    assert res.code == 1
    err, hint = _error(res)
    assert "test split" in err and "train" not in err and "m3leo download" in hint


@pytest.mark.parametrize(
    "override,says,fix",
    [
        ("loader.batch_size=0", "loader.batch_size must be at least 1", "loader.batch_size=8"),
        ("model.lr=-1", "model.lr must be positive", "model.lr=1e-4"),
        ("data.size=7", "data.size=7 is too small", "data.size=8"),
        ("loader.num_workers=-2", "loader.num_workers must be 0 or more", "num_workers=2"),
        ("data.regions=[europa]", "unknown region 'europa'", "did you mean 'europe'"),
        ("data.norm_scope=tile", "unknown data.norm_scope=tile", "pooled, region"),
        ("data.preprocessing=authors", "unknown data.preprocessing", "m3leo, paper"),
    ],
)
def test_bad_overrides_are_usage_errors(store, tmp_path: Path, capsys, override, says, fix):
    """Issue 27 item 13: tracebacks from torch (batch 0), AdamW (lr -1), BatchNorm (size 7)."""
    run_dir = tmp_path / "r"
    res = run(capsys, "train", "experiment=esawc/gssic", *SMALL, "model.depth=2",
              override, f"hydra.run.dir={run_dir}")  # fmt: skip
    assert res.code == 2, res.err
    err, hint = _error(res)
    assert says in err and fix in hint
    assert not run_dir.exists()


def test_progress_reports_every_batch(store, tmp_path: Path) -> None:
    """Issue 27: a CPU epoch was 91 s of silence; now each batch is reported (the CLI draws a
    bar with rate and ETA from these events)."""
    from m3leo_cli.train.run import train

    events = []
    train(["experiment=esawc/s1grd-vv", "trainer.max_epochs=2", *SMALL, "loader.batch_size=2",
           f"hydra.run.dir={tmp_path / 'p'}"], progress=events.append)  # fmt: skip
    batch = [e for e in events if e.phase == "batch"]
    starts = [e for e in batch if e.kind == "start"]
    assert len(starts) == 2 and all(e.total_files and e.total_files >= 2 for e in starts)
    advances = [e for e in batch if e.kind == "advance"]
    assert len(advances) == sum(e.total_files for e in starts)
    assert [e.extra["epoch"] for e in starts] == [0, 1]
