"""MAE pre-training and fine-tuning (issue 28 item 5): one CPU epoch of `mae/pretrain` on the
unlabelled 12-channel S1 input, then one of `mae/esawc` and `mae/modisveg` from its
checkpoint, at tiny sizes; checkpoints reload with torch's weights_only=True."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run
from train_source import install, train_store

torch = pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")

TINY = ("data.size=32", "data.regions=[europe]", "data.edition=miniset", "model.patch_size=8",
        "model.hidden_dim=32", "model.num_layers=2", "model.num_heads=2", "model.mlp_dim=64",
        "trainer.accelerator=cpu", "trainer.max_epochs=1", "loader.batch_size=4",
        "trainer.log_every_n_steps=1")  # fmt: skip


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    info, template = train_store(tmp_path_factory)
    install(template, data_dir)
    return info


@pytest.fixture
def pretrained(store, tmp_path: Path, capsys) -> Path:
    run_dir = tmp_path / "pre"
    res = run(capsys, "train", "experiment=mae/pretrain", *TINY, "model.decoder_dim=16",
              "model.decoder_heads=2", f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["experiment"] == "mae/pretrain" and summary["epochs"] == 1
    assert summary["metrics"]["val_loss"] > 0
    assert summary["samples"]["train"] >= 2
    return run_dir


def test_listed(capsys) -> None:
    res = run(capsys, "train", "--list", "--json")
    doc = json.loads(res.out)
    assert {"mae/pretrain", "mae/esawc", "mae/modisveg"} <= set(doc["experiments"])
    assert doc["aliases"]["mae-finetuning/s1grd-to-veg"] == "mae/modisveg"


def test_pretrain_then_finetune_esawc_from_its_checkpoint(pretrained, tmp_path, capsys) -> None:
    ckpt = pretrained / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)  # torch >= 2.6 default
    pre = {k: v for k, v in saved["state_dict"].items() if k.startswith("encoder.")}
    assert pre and any(k.startswith("decoder") for k in saved["state_dict"])
    run_dir = tmp_path / "ft"
    res = run(capsys, "train", "experiment=mae/esawc", *TINY, f"model.init={pretrained}",
              f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert res.code == 0, res.err
    assert {"val_acc", "val_miou"} <= set(json.loads(res.out)["metrics"])
    # the fine-tuning started from the pre-trained encoder: before any step, equal weights
    from m3leo_cli.train.mae import MaeFinetune

    fresh = MaeFinetune(12, 32, "classification", 11, 8, 32, 2, 2, 64)
    fresh.load_encoder(pretrained)
    assert all(torch.equal(v, pre[f"encoder.{k}"]) for k, v in fresh.encoder.state_dict().items())
    res = run(capsys, "evaluate", str(run_dir), "--json")
    assert res.code == 0, res.err
    assert "test_miou" in json.loads(res.out)["metrics"]


def test_finetune_modisveg_predicts_the_tile_mean(pretrained, tmp_path, capsys) -> None:
    run_dir = tmp_path / "veg"
    res = run(capsys, "train", "experiment=mae/modisveg", *TINY, f"model.init={pretrained}",
              f"hydra.run.dir={run_dir}", "--json")  # fmt: skip
    assert res.code == 0, res.err
    assert "val_rmse" in json.loads(res.out)["metrics"]


def test_finetune_from_a_missing_or_mismatched_checkpoint(pretrained, tmp_path, capsys) -> None:
    res = run(capsys, "train", "experiment=mae/esawc", *TINY, f"model.init={tmp_path / 'no'}",
              f"hydra.run.dir={tmp_path / 'a'}")  # fmt: skip
    assert res.code == 2 and "no such checkpoint" in res.err and not (tmp_path / "a").exists()
    res = run(capsys, "train", "experiment=mae/esawc", *TINY, "model.hidden_dim=64",
              f"model.init={pretrained}", f"hydra.run.dir={tmp_path / 'b'}")  # fmt: skip
    assert res.code == 2 and "holds no encoder of this shape" in res.err


def test_bad_patch_size_is_a_usage_error(store, tmp_path, capsys) -> None:
    res = run(capsys, "train", "experiment=mae/pretrain", *TINY, "model.patch_size=5",
              f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert res.code == 2 and "multiple of model.patch_size=5" in res.err
