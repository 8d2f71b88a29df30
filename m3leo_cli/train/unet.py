"""The baseline network: a small U-Net (our own, a few hundred lines of torch less than any
library's), for segmentation (one logit per class) and pixel regression (one output).

``depth`` levels of two 3x3 convolutions + batch norm + ReLU, max-pool down, transposed
convolution up, skip connections concatenated. Any input size works: pooling rounds up and
the decoder crops back to the skip's size when a size was odd (448 = 7 x 2^6; 45 x 55 too).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """(N, in_channels, H, W) -> (N, out_channels, H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, base_channels: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError("depth and base_channels must be positive")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(_block(cin, w))
            cin = w
        self.bottom = _block(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_hi, w_lo, 2, stride=2))
            self.merge.append(_block(2 * w_lo, w_lo))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2, ceil_mode=True)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = up(x)
            x = x[..., : skip.shape[-2], : skip.shape[-1]]  # ceil-mode pooling: crop odd sizes
            x = merge(torch.cat([skip, x], dim=1))
        return self.head(x)
