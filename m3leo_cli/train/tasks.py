"""Lightning modules for the two kinds of target, with torchmetrics.

Segmentation: cross-entropy over class indices (``IGNORE_INDEX`` pixels ignored), accuracy and
mean IoU (macro Jaccard). Regression: mean squared error over the pixels that have a value (NaN
targets are nodata), RMSE and R2. The network predicts ``target_scale x`` its raw output, so a
target in the thousands (GHS-BUILT-S, m^2 per cell) trains without rescaling the labels.
Logged names: ``train_loss``, ``val_loss``, ``val_acc``/``val_miou`` or ``val_rmse``/``val_r2``
(and ``test_*``), per epoch; ``train_loss`` also per step.

``preprocessing="paper"`` (regression): the authors' loss, the RMSE against labels truncated
to integers (their ``y.long()``), over every pixel, with the network's output average-pooled
to the target's grid (45 x 55) when that is coarser; the metrics see the same labels.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torchmetrics
from torch.nn import functional as F

from .layers import IGNORE_INDEX
from .unet import UNet


class SupervisedSteps:
    """The steps a supervised LightningModule shares (the UNet task, MAE fine-tuning): the
    train loss, per-stage loss and metrics from the module's ``_step(batch)`` -> (loss, pred,
    target), metrics flushed at each epoch's end, AdamW with ``hparams`` lr and weight decay.
    Needs ``self.metrics`` (stage -> collection), ``self._updated`` and ``self.stage_names``."""

    metrics: Any
    _updated: set[str]
    stage_names: dict[str, str]
    hparams: Any
    log: Any
    log_dict: Any
    parameters: Any

    def _step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._step(batch)
        n = batch["image"].shape[0]
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=n)
        return loss

    def _eval(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        loss, pred, y = self._step(batch)
        n = batch["image"].shape[0]
        metrics: Any = self.metrics[stage]
        if pred.numel():
            metrics.update(pred, y)
            self._updated.add(stage)
        self.log(f"{self.stage_names[stage]}_loss", loss, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval(batch, "test")

    def _flush(self, stage: str) -> None:
        metrics: Any = self.metrics[stage]
        if stage in self._updated:
            values = metrics.compute()
            name = self.stage_names[stage]
            self.log_dict({f"{name}_{k}": v for k, v in values.items()})
        metrics.reset()
        self._updated.discard(stage)

    def on_validation_epoch_end(self) -> None:
        self._flush("val")

    def on_test_epoch_end(self) -> None:
        self._flush("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=float(self.hparams["lr"]),
            weight_decay=float(self.hparams["weight_decay"]),
        )


class M3leoTask(SupervisedSteps, L.LightningModule):
    """A U-Net trained on M3LEO sample dicts (``image`` + ``mask`` or ``target``)."""

    def __init__(
        self,
        in_channels: int,
        task: str = "classification",
        num_classes: int = 0,
        base_channels: int = 16,
        depth: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        target_scale: float = 1.0,
        preprocessing: str = "m3leo",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.classification = task == "classification"
        out = num_classes if self.classification else 1
        self.net = UNet(in_channels, out, base_channels, depth)
        self.metrics = torch.nn.ModuleDict({stage: self._metrics() for stage in ("val", "test")})
        self._updated: set[str] = set()
        # the name each evaluation stage logs under: `evaluate --split val` runs Lightning's
        # test loop but its scores are val_*, never test_*
        self.stage_names = {"val": "val", "test": "test"}

    def _metrics(self) -> torchmetrics.MetricCollection:
        n = self.hparams["num_classes"]
        if self.classification:
            return torchmetrics.MetricCollection(
                {
                    "acc": torchmetrics.classification.MulticlassAccuracy(
                        n, average="micro", ignore_index=IGNORE_INDEX
                    ),
                    "miou": torchmetrics.classification.MulticlassJaccardIndex(
                        n, average="macro", ignore_index=IGNORE_INDEX
                    ),
                }
            )
        return torchmetrics.MetricCollection(
            {
                "rmse": torchmetrics.MeanSquaredError(squared=False),
                "r2": torchmetrics.R2Score(),
            }
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.net(image)
        if self.classification:
            return out
        return out[:, 0] * float(self.hparams["target_scale"])

    def _step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pred = self(batch["image"])
        if not self.classification and self.hparams.get("preprocessing") == "paper":
            y = batch["target"]
            if pred.shape[-2:] != y.shape[-2:]:  # their AdaptiveAvgPool2d((45, 55))
                pred = F.adaptive_avg_pool2d(pred[:, None], tuple(y.shape[-2:]))[:, 0]
            y = torch.nan_to_num(y, nan=0.0).long().to(pred.dtype)  # their y.long()
            loss = torch.sqrt(torch.mean((pred - y) ** 2))
            return loss, pred.reshape(-1), y.reshape(-1)
        if self.classification:
            y = batch["mask"]
            if bool((y != IGNORE_INDEX).any()):
                loss = F.cross_entropy(pred, y, ignore_index=IGNORE_INDEX)
            else:
                loss = pred.sum() * 0.0
            return loss, pred, y
        y = batch["target"]
        valid = torch.isfinite(y)
        loss = F.mse_loss(pred[valid], y[valid]) if bool(valid.any()) else pred.sum() * 0.0
        return loss, pred[valid], y[valid]
