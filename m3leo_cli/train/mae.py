"""Masked-autoencoder pre-training and fine-tuning (the authors' ``mae-*`` experiments).

The architecture and hyper-parameters are the authors' (spaceml-org/M3LEO ``configs/mae-*``):
a ViT-B/16 encoder (768 wide, 12 layers, 12 heads, MLP 3072, a class token, learned position
embeddings) over the 12-channel ``s1grd-vvvh`` input at 448 px; pre-training masks 75 % of
the patches and a 1-layer, 16-head, 512-wide decoder predicts their pixels (MSE on the masked
patches), with a random resized crop of each batch; AdamW, lr 1.5e-4. Fine-tuning keeps the
encoder and adds their heads: for segmentation (esawc) a convolutional decoder upsampling the
28 x 28 token grid to the image (conv 3x3 + batch norm + ReLU + 2x bilinear, repeated), for
regression (modisveg) their "conv" head reducing the token sequence to one value per tile,
the tile's mean, trained with the RMSE.

The transformer blocks are torch's own (``nn.TransformerEncoder`` with pre-norm layers): timm,
the usual ViT implementation, needs torchvision, whose wheels do not load beside the torch
build here. ``model.init=<checkpoint or run folder>`` starts fine-tuning from a pre-training
run's encoder; checkpoints hold tensors and plain values, so they load with torch's
``weights_only=True``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from ..errors import TrainConfigError
from .layers import IGNORE_INDEX
from .tasks import SupervisedSteps


def _blocks(width: int, layers: int, heads: int, mlp: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        width, heads, mlp, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ViTEncoder(nn.Module):
    """Patch embedding, class token, position embeddings, pre-norm transformer, final norm."""

    def __init__(
        self, channels: int, size: int, patch: int, width: int, layers: int, heads: int, mlp: int
    ) -> None:
        super().__init__()
        self.patch, self.grid, self.width = patch, size // patch, width
        self.embed = nn.Conv2d(channels, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.empty(1, self.grid**2 + 1, width).normal_(std=0.02))
        self.blocks = _blocks(width, layers, heads, mlp)
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images).flatten(2).transpose(1, 2)  # (N, grid^2, width)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        return x + self.pos

    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1 + grid^2, width), or only the tokens at ``keep`` (indices, 0 = class)."""
        x = self.tokens(images)
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        return self.norm(self.blocks(x))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, patches, C * patch^2), patches in row-major order."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def random_mask(
    n: int, length: int, ratio: float, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, masked) token indices per sample; the class token (0) is always kept."""
    keep_n = int((length - 1) * (1 - ratio))
    order = torch.argsort(torch.rand(n, length - 1, device=device), dim=1) + 1
    cls = torch.zeros(n, 1, dtype=torch.long, device=device)
    return torch.cat([cls, order[:, :keep_n]], dim=1), order[:, keep_n:]


def random_resized_crop(images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """One crop for the whole batch, area 8-100 % and aspect 3/4-4/3, resized back
    (antialiased bilinear): the augmentation the authors' pre-training applies."""
    _, _, h, w = images.shape
    for _ in range(10):
        area = h * w * float(torch.empty(1).uniform_(0.08, 1.0, generator=gen))
        aspect = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3),
                                                         generator=gen)))  # fmt: skip
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            i = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            j = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            crop = images[..., i : i + ch, j : j + cw]
            return F.interpolate(crop, size=(h, w), mode="bilinear", antialias=True,
                                 align_corners=False)  # fmt: skip
    return images


def _encoder(h: dict[str, Any]) -> ViTEncoder:
    if h["size"] % h["patch_size"]:
        raise TrainConfigError(
            f"data.size={h['size']} is not a multiple of model.patch_size={h['patch_size']}",
            "e.g. data.size=448 model.patch_size=16",
        )
    return ViTEncoder(h["in_channels"], h["size"], h["patch_size"], h["hidden_dim"],
                      h["num_layers"], h["num_heads"], h["mlp_dim"])  # fmt: skip


class MaePretrain(L.LightningModule):
    """Masked-patch reconstruction of unlabelled inputs (``image`` only)."""

    def __init__(self, in_channels: int, size: int, patch_size: int = 16, hidden_dim: int = 768,
                 num_layers: int = 12, num_heads: int = 12, mlp_dim: int = 3072,
                 mask_ratio: float = 0.75, decoder_dim: int = 512, decoder_layers: int = 1,
                 decoder_heads: int = 16, augment: bool = True, lr: float = 1.5e-4,
                 weight_decay: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        h = dict(self.hparams)
        self.encoder = _encoder(h)
        length = self.encoder.grid**2 + 1
        self.decoder_embed = nn.Linear(hidden_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.empty(1, length, decoder_dim).normal_(std=0.02))
        self.decoder = _blocks(decoder_dim, decoder_layers, decoder_heads, 4 * decoder_dim)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.predict = nn.Linear(decoder_dim, patch_size**2 * in_channels)
        self.stage_names = {"val": "val", "test": "test"}

    def loss(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        h = self.hparams
        if train and h["augment"]:
            images = random_resized_crop(images)
        n, length = len(images), self.encoder.grid**2 + 1
        keep, masked = random_mask(n, length, float(h["mask_ratio"]), images.device)
        encoded = self.decoder_embed(self.encoder(images, keep))
        x = self.mask_token.expand(n, length, -1).clone()
        x.scatter_(1, keep[..., None].expand(-1, -1, x.shape[-1]), encoded)
        x = self.decoder_norm(self.decoder(x + self.decoder_pos))
        pred = self.predict(torch.gather(x, 1, masked[..., None].expand(-1, -1, x.shape[-1])))
        patches = patchify(images, int(h["patch_size"]))
        target = torch.gather(patches, 1, (masked - 1)[..., None].expand(-1, -1, patches.shape[-1]))
        return F.mse_loss(pred, target)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch["image"], train=True)
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch["image"], train=False)
        self.log("val_loss", loss, on_epoch=True, batch_size=len(batch["image"]))
        return loss

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch["image"], train=False)
        name = self.stage_names["test"]
        self.log(f"{name}_loss", loss, on_epoch=True, batch_size=len(batch["image"]))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hparams
        return torch.optim.AdamW(self.parameters(), lr=float(h["lr"]),
                                 weight_decay=float(h["weight_decay"]))  # fmt: skip


class MaeFinetune(SupervisedSteps, L.LightningModule):
    """The pre-trained encoder with the authors' segmentation or tile-mean regression head."""

    def __init__(self, in_channels: int, size: int, task: str = "classification",
                 num_classes: int = 0, patch_size: int = 16, hidden_dim: int = 768,
                 num_layers: int = 12, num_heads: int = 12, mlp_dim: int = 3072,
                 lr: float = 1.5e-4, weight_decay: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.encoder = _encoder(dict(self.hparams))
        self.classification = task == "classification"
        self.head = self._segmentation() if self.classification else self._regression()
        self.stage_names = {"val": "val", "test": "test"}
        self.metrics = nn.ModuleDict({s: self._metrics() for s in ("val", "test")})
        self._updated: set[str] = set()

    def _segmentation(self) -> nn.Sequential:
        h, grid = self.hparams, self.encoder.grid
        layers: list[nn.Module] = []
        cin, current = int(h["hidden_dim"]), grid
        while True:  # conv + norm + ReLU + 2x, while doubling stays under the image size
            up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            layers += [nn.Conv2d(cin, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(), up]
            cin, current = 256, current * 2
            if current * 2 >= int(h["size"]):
                break
        n = int(h["num_classes"])
        up = nn.Upsample(size=(int(h["size"]),) * 2, mode="bilinear", align_corners=False)
        layers += [nn.Conv2d(256, n, 3, padding=1), nn.BatchNorm2d(n), nn.ReLU(), up]
        return nn.Sequential(*layers)

    def _regression(self) -> nn.Sequential:
        h = self.hparams
        length, width = self.encoder.grid**2 + 1, int(h["hidden_dim"])
        reduced = 196  # their first Conv1d: the token sequence -> 196 channels
        return nn.Sequential(
            nn.Conv1d(length, reduced, 1),  # over the token sequence
            _Transpose(), nn.Conv1d(width, width // 4, 1), _Transpose(),  # over the width
            nn.Flatten(), nn.Linear(reduced * (width // 4), 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 1),
            nn.ELU(),
        )  # fmt: skip

    def _metrics(self) -> torchmetrics.MetricCollection:
        if self.classification:
            n = int(self.hparams["num_classes"])
            return torchmetrics.MetricCollection({
                "acc": torchmetrics.classification.MulticlassAccuracy(
                    n, average="micro", ignore_index=IGNORE_INDEX),
                "miou": torchmetrics.classification.MulticlassJaccardIndex(
                    n, average="macro", ignore_index=IGNORE_INDEX),
            })  # fmt: skip
        return torchmetrics.MetricCollection({"rmse": torchmetrics.MeanSquaredError(squared=False)})

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(image)
        if self.classification:
            grid = tokens[:, 1:].transpose(1, 2)  # without the class token
            g = self.encoder.grid
            return self.head(grid.reshape(len(image), -1, g, g))
        return self.head(tokens)[:, 0]

    def _step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pred = self(batch["image"])
        if self.classification:
            y = batch["mask"]
            ok = bool((y != IGNORE_INDEX).any())
            loss = F.cross_entropy(pred, y, ignore_index=IGNORE_INDEX) if ok else pred.sum() * 0
            return loss, pred, y
        y = torch.nanmean(batch["target"].flatten(1), dim=1)  # the tile's mean, their target
        valid = torch.isfinite(y)
        if not bool(valid.any()):
            return pred.sum() * 0.0, pred[valid], y[valid]
        loss = torch.sqrt(torch.mean((pred[valid] - y[valid]) ** 2))
        return loss, pred[valid], y[valid]

    def load_encoder(self, source: str | Path) -> Path:
        """The encoder weights of a pre-training checkpoint (a ``.ckpt``, or a run folder:
        its ``checkpoints/last.ckpt``, the end of pre-training)."""
        path = Path(source)
        if path.is_dir():
            path = path / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise TrainConfigError(
                f"model.init={source}: no such checkpoint",
                "give a pre-training run folder or its .ckpt, e.g. model.init=runs/mae-pretrain",
            )
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        mine = self.encoder.state_dict()
        if not enc or any(k not in enc or enc[k].shape != v.shape for k, v in mine.items()):
            raise TrainConfigError(
                f"model.init={source} holds no encoder of this shape (channels, size, width)",
                "fine-tune with the inputs, data.size and model.* of the pre-training run",
            )
        self.encoder.load_state_dict(enc)
        return path


class _Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)
