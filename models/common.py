"""Building blocks shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBNAct", "PadToMultiple", "count_parameters"]


class ConvBNAct(nn.Sequential):
    """Convolution, batch norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class PadToMultiple(nn.Module):
    """Wraps a network whose input must be a multiple of ``multiple`` pixels: pads, runs, crops back.

    Reflection padding keeps texture statistics at the edge, so tiles at a raster's border are not judged on
    a black frame.
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph = (-h) % self.multiple
        pw = (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.net(x)
        return y[..., :h, :w]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
