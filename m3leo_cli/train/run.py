"""``m3leo train`` and ``m3leo evaluate``: compose, check, fit, record; score a run's test split.

A run folder holds ``config.yaml`` (the resolved config; ``evaluate`` rebuilds everything from
it), ``metrics.csv`` (Lightning's CSV logger, one row per logged step/epoch),
``checkpoints/`` (``last.ckpt`` and the best by ``val_loss``), ``run.json`` (what happened)
and, after ``evaluate``, ``test_metrics.json``. TensorBoard / W&B (offline) event files join
them when those packages are installed.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    DeviceUnavailableError,
    MissingDependencyError,
    RunNotFoundError,
    TrainConfigError,
)
from ..progress import ProgressCallback, ProgressEvent, no_progress

if TYPE_CHECKING:
    from ..config import Settings

PACKAGES = (("torch", "torch"), ("lightning", "lightning"), ("hydra", "hydra-core"),
            ("torchmetrics", "torchmetrics"))  # fmt: skip
CUDA_NAMES = ("gpu", "cuda")


@dataclass
class TrainResult:
    run_dir: Path
    experiment: str
    epochs: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)  # last value of each logged metric
    best_checkpoint: str | None = None
    samples: dict[str, int] = field(default_factory=dict)  # split -> tiles

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "experiment": self.experiment,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics,
            "best_checkpoint": self.best_checkpoint,
            "samples": self.samples,
        }


def require_extra() -> None:
    """MissingDependencyError naming the extra when torch & co are not installed."""
    import importlib.util

    for module, package in PACKAGES:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(package, "train")


def check_device(trainer: dict[str, Any]) -> None:
    import torch

    accel = str(trainer.get("accelerator", "auto")).lower()
    if accel in CUDA_NAMES and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"trainer.accelerator={accel} asked for CUDA, none is here")
    if accel == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError("trainer.accelerator=mps asked for Apple MPS, none is here")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's banners and advice go nowhere; real failures still raise."""
    import logging

    names = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
        warnings.filterwarnings("ignore", module=r"torchmetrics(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers).*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _loggers(cfg: dict[str, Any], run_dir: Path) -> list[Any]:
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger

    out: list[Any] = [CSVLogger(save_dir=run_dir, name="", version="")]
    opts = cfg.get("loggers") or {}
    tb = opts.get("tensorboard", "auto")
    if tb and (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        from lightning.pytorch.loggers import TensorBoardLogger

        out.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard", version=""))
    if opts.get("wandb", "auto") and importlib.util.find_spec("wandb"):
        from lightning.pytorch.loggers import WandbLogger

        out.append(
            WandbLogger(save_dir=str(run_dir), offline=True, name=cfg.get("experiment_name"))
        )
    return out


def _mae(m: dict[str, Any], data: Any, channels: int, init: bool) -> Any:
    """The MAE pre-training module (no target) or a fine-tuning one (``model.init``)."""
    from .mae import MaeFinetune, MaePretrain

    keys = ("patch_size", "hidden_dim", "num_layers", "num_heads", "mlp_dim", "lr", "weight_decay")
    common = {k: m[k] for k in keys if k in m}
    if data.target is None:
        extra = ("mask_ratio", "decoder_dim", "decoder_layers", "decoder_heads", "augment")
        return MaePretrain(channels, data.size, **common, **{k: m[k] for k in extra if k in m})
    model = MaeFinetune(channels, data.size, data.target.task, data.target.num_classes, **common)
    if init and m.get("init"):
        model.load_encoder(str(m["init"]))
    return model


def build(
    cfg: dict[str, Any],
    settings: Settings | None,
    stats: Any = None,
    split: str = "train",
    init: bool = True,
) -> tuple[Any, Any]:
    """(datamodule, model) from a resolved config; dataset errors surface here. The model's
    input channels are counted on ``split`` (``evaluate`` never needs the train split);
    ``init``: load ``model.init``'s pre-trained encoder (MAE fine-tuning)."""
    from .datamodule import M3leoDataModule
    from .layers import data_spec
    from .tasks import M3leoTask

    data = data_spec(cfg["data"])
    loader = cfg.get("loader") or {}
    dm = M3leoDataModule(
        data,
        batch_size=int(loader.get("batch_size", 8)),
        num_workers=int(loader.get("num_workers", 0)),
        settings=settings,
        export=cfg["data"].get("export"),
        seed=int(cfg.get("seed", 0)),
        stats=stats,
        source=str(cfg["data"].get("source") or "store"),
        stream=stream_options(cfg["data"]),
        shuffle_buffer=int(cfg["data"].get("shuffle_buffer", 64)),
    )
    m = cfg.get("model") or {}
    if m.get("name", "unet") == "mae":
        return dm, _mae(m, data, len(dm.dataset(split).channel_names), init)
    if data.target is None:
        raise TrainConfigError(
            "a UNet needs a target (data.target)", "pick an experiment, e.g. experiment=esawc/s1grd"
        )
    model = M3leoTask(
        len(dm.dataset(split).channel_names),
        data.target.task,
        data.target.num_classes,
        int(m.get("base_channels", 32)),
        int(m.get("depth", 4)),
        float(m.get("lr", 1e-4)),
        float(m.get("weight_decay", 0.0)),
        float(m.get("target_scale", 1.0)),
        data.preprocessing,
    )
    return dm, model


def run_stats(cfg: dict[str, Any], settings: Settings | None, progress: ProgressCallback) -> Any:
    """The train split's band statistics the run normalises with (computed when missing), or
    None (``data.normalize=false``, or an export that streams its own values)."""
    from ..config import load_settings
    from .dataset import plan_split
    from .layers import data_spec
    from .normstats import resolve_stats

    data = data_spec(cfg["data"])
    if not data.normalize or cfg["data"].get("export"):
        return None
    settings = settings or load_settings()
    if cfg["data"].get("source") == "hub":
        from .streamed import stream_stats

        return stream_stats(settings, data, progress=progress, **stream_options(cfg["data"]))
    train = plan_split(settings, data, "train")
    plan_split(settings, data, "val")  # an unusable val split fails before anything is computed
    return resolve_stats(settings, data, train, seed=int(cfg.get("seed", 0)), progress=progress)


def stream_options(data: dict[str, Any]) -> dict[str, Any]:
    """``M3LEOStream``'s keyword arguments from the ``data`` section (``data.source=hub``)."""
    if data.get("source") != "hub":
        return {}
    out: dict[str, Any] = {"cache_dir": data.get("cache_dir") or None}
    for key, arg in (("cache_bytes", "cache_bytes"), ("prefetch_bytes", "prefetch_bytes"),
                     ("stream_shuffle_buffer", "shuffle_buffer")):  # fmt: skip
        if data.get(key) is not None:
            out[arg] = int(data[key])
    return out


def _last_metrics(csv_path: Path) -> dict[str, float]:
    import csv

    out: dict[str, float] = {}
    if not csv_path.is_file():
        return out
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if v not in ("", None) and k not in ("epoch", "step"):
                    out[k] = float(v)
    return out


def train(
    overrides: Sequence[str],
    settings: Settings | None = None,
    progress: ProgressCallback = no_progress,
) -> TrainResult:
    """Compose the experiment, build data and model, fit, and leave a complete run folder."""
    require_extra()
    from .experiments import compose, to_yaml

    composed = compose(overrides)
    cfg = composed.config
    from .checks import check_config

    check_config(cfg)
    check_device(cfg.get("trainer") or {})
    import lightning as L

    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    with quiet_lightning():
        stats = run_stats(cfg, settings, progress)
        dm, model = build(cfg, settings, stats)
        dm.setup("fit")
    # every configuration problem is behind us: only now is the run folder written
    run_dir = composed.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    if stats is not None:
        stats.write(run_dir)
    progress(ProgressEvent("message", phase="train", message=f"run folder {run_dir}"))
    failures = run_dir / "stream-failures.jsonl"
    for ds in dm.datasets.values():
        if hasattr(ds, "failures_path"):  # streamed: a sample that could not be read is noted
            ds.failures_path = failures
            progress(ProgressEvent("message", phase="train", message=ds.describe()))
    t0 = time.perf_counter()
    with quiet_lightning():
        from lightning.pytorch.callbacks import ModelCheckpoint

        ckpt = ModelCheckpoint(
            dirpath=run_dir / "checkpoints", monitor="val_loss", save_last=True, save_top_k=1
        )
        trainer = L.Trainer(
            **(cfg.get("trainer") or {}),
            default_root_dir=run_dir,
            logger=_loggers(cfg, run_dir),
            callbacks=[ckpt, _Progress(progress)],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=dm)
    result = TrainResult(
        run_dir,
        composed.name,
        int(trainer.current_epoch),
        time.perf_counter() - t0,
        _last_metrics(run_dir / "metrics.csv"),
        ckpt.best_model_path or None,
        {s: len(ds) for s, ds in dm.datasets.items()},
    )
    record = result.as_dict()
    data = cfg["data"]
    record["preprocessing"] = data.get("preprocessing") or "m3leo"
    record["normalization"] = (
        None
        if stats is None
        else {"scope": stats.scope, "file": "band_stats.json", "provenance": stats.provenance}
    )
    (run_dir / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    check_stream_failures(failures)
    return result


def check_stream_failures(path: Path) -> None:
    """A streamed run that skipped samples ends in an error naming how many and why."""
    if not path.is_file():
        return
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    if lines:
        from ..errors import StreamError

        raise StreamError(
            f"{len(lines)} streamed samples could not be read and were skipped (first: tile "
            f"{lines[0]['tile_id']}: {lines[0]['reason']}); the run folder is complete",
            f"see {path}; run again to retry them (fetched row groups stay in data.cache_dir)",
        )


def _Progress(progress: ProgressCallback) -> Any:
    """A Lightning callback that reports through ``progress``: each training batch (phase
    ``batch``: ``start`` with the epoch's batch count, one ``advance`` per batch, for a bar
    with rate and ETA) and each finished epoch (phase ``train``, with its metrics)."""
    from lightning.pytorch.callbacks import Callback

    class Report(Callback):  # type: ignore[misc]
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            total = trainer.num_training_batches
            progress(
                ProgressEvent(
                    "start",
                    phase="batch",
                    total_files=int(total) if total != float("inf") else None,
                    extra={"epoch": trainer.current_epoch, "epochs": trainer.max_epochs},
                )
            )

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            progress(ProgressEvent("advance", phase="batch", files=1))

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            progress(ProgressEvent("done", phase="batch"))
            values = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            progress(
                ProgressEvent(
                    "advance",
                    phase="train",
                    files=1,
                    total_files=trainer.max_epochs,
                    extra={"epoch": trainer.current_epoch, "metrics": values},
                )
            )

    return Report()


def find_checkpoint(run_dir: Path) -> Path:
    """The best checkpoint of a run (by val_loss), else its last one."""
    folder = run_dir / "checkpoints"
    best = (
        sorted(p for p in folder.glob("*.ckpt") if p.name != "last.ckpt") if folder.is_dir() else []
    )
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise RunNotFoundError(f"{run_dir} holds no checkpoint (checkpoints/*.ckpt)")


def evaluate(
    run_dir: Path, settings: Settings | None = None, split: str = "test"
) -> dict[str, Any]:
    """Score a finished run on ``split``, with the band statistics it was trained with; the
    metrics (``<split>_loss``, ``<split>_acc``, ...) also go to ``<run>/<split>_metrics.json``."""
    from .checks import check_split

    check_split(split)  # before the heavy imports: a typo fails at once
    require_extra()
    from .experiments import load_yaml

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunNotFoundError(f"{run_dir} is not an m3leo run folder (no config.yaml)")
    cfg = load_yaml(run_dir / "config.yaml")
    check_device(cfg.get("trainer") or {})
    checkpoint = find_checkpoint(run_dir)
    import lightning as L
    import torch

    from .normstats import read_run_stats

    stats = read_run_stats(run_dir)
    with quiet_lightning():
        dm, fresh = build(cfg, settings, stats, split=split, init=False)
        model = type(fresh).load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
        model.stage_names["test"] = split  # logged as val_* / train_* when scoring those
        trainer = L.Trainer(
            accelerator=(cfg.get("trainer") or {}).get("accelerator", "auto"),
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        loader = dm._loader(split, shuffle=False)
        scores = trainer.test(model, dataloaders=loader, verbose=False)[0]
    out = {
        "run_dir": str(run_dir),
        "checkpoint": str(checkpoint),
        "split": split,
        "samples": len(dm.dataset(split)),
        "metrics": {k: float(v) for k, v in sorted(scores.items())},
        "torch": torch.__version__,
    }
    (run_dir / f"{split}_metrics.json").write_text(json.dumps(out, indent=1) + "\n")
    return out
