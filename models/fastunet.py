"""A small U-Net of depthwise-separable blocks for CPU-only stations.

Four scales (strides 1, 2, 4, 8, 16) keep the receptive field large enough to read a plot's canopy texture
while the full-resolution stage keeps single flowers (2-5 px). Depthwise-separable convolutions (MobileNet
style) cut the multiply-adds by about eight times against plain 3x3 convolutions of the same width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detect.errors import InputError
from models.common import ConvBNAct, PadToMultiple
from models.registry import register_model

__all__ = ["FastUNet", "fastunet"]


class _SepBlock(nn.Sequential):
    """Two depthwise-separable 3x3 convolutions (depthwise, then pointwise, each with BN and ReLU)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            ConvBNAct(in_ch, in_ch, 3, groups=in_ch),
            ConvBNAct(in_ch, out_ch, 1),
            ConvBNAct(out_ch, out_ch, 3, groups=out_ch),
            ConvBNAct(out_ch, out_ch, 1),
        )


class FastUNet(nn.Module):
    """Compact U-Net.

    Args:
        in_channels: Input bands.
        num_classes: Output logits per pixel.
        base_channels: Width of the full-resolution stage; each deeper stage doubles it.
        depth: Number of downsampling stages (each halves the resolution).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 16, depth: int = 4):
        super().__init__()
        if depth < 1 or base_channels < 4:
            raise InputError(f"fastunet needs depth >= 1 and base_channels >= 4 (got {depth}, {base_channels})")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.inc = nn.Sequential(ConvBNAct(in_channels, widths[0]), _SepBlock(widths[0], widths[0]))
        self.down = nn.ModuleList(
            nn.Sequential(
                ConvBNAct(widths[i], widths[i], 3, stride=2, groups=widths[i]), _SepBlock(widths[i], widths[i + 1])
            )
            for i in range(depth)
        )
        self.up = nn.ModuleList(_SepBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return self.head(y)


@register_model("fastunet")
def fastunet(*, in_channels: int = 3, num_classes: int = 1, **kwargs: object) -> nn.Module:
    """The small, fast network for CPU-only stations (the default model's architecture)."""
    depth = int(kwargs.get("depth", 4))  # type: ignore[arg-type]
    return PadToMultiple(FastUNet(in_channels, num_classes, **kwargs), 2**depth)
