"""A small U-Net of plain 3x3 convolutions for CPU-only stations (the default model's network).

Five scales (strides 1, 2, 4, 8, 16) give a receptive field large enough to read a plot's canopy texture, and
the full-resolution stage keeps single flowers (2-5 px at 2-5 cm/px). The network is narrow (16 channels at full
resolution) rather than depthwise-separable: PyTorch's CPU kernels run depthwise convolutions, and above all their
backward pass, far below their FLOP count suggests. Measured here (2 cores, batch 8 x 256 x 256, one AdamW
step): 3.7-4.6 s for a depthwise-separable U-Net of 0.14 M parameters against 1.2 s for this one (0.7 M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InputError
from models.common import ConvBNAct, PadToMultiple
from models.registry import register_model

__all__ = ["FastUNet", "fastunet"]

# Width of each stage relative to the full-resolution one; grows more slowly than doubling to keep it small.
_WIDTH_STEPS = (1, 2, 3, 6, 8, 12, 16)


class FastUNet(nn.Module):
    """Compact U-Net.

    Args:
        in_channels: Input bands.
        num_classes: Output logits per pixel.
        base_channels: Width of the full-resolution stage; deeper stages are 2, 3, 6, 8... times wider.
        depth: Number of downsampling stages (each halves the resolution), 1 to 6.
        aux_classes: Classes of an auxiliary land-cover head (0: none). It shares the whole network with the
            poppy head and adds one 1x1 convolution; in training mode its logits follow the poppy logits in the
            output (``[B, num_classes + aux_classes, H, W]``), so every pixel of a chip teaches the network
            (roof, road, each crop, look-alike flowers, soil), not only the rare poppy ones. In eval mode the
            output is the poppy logits alone: inference pays nothing for it.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 16, depth: int = 4, aux_classes: int = 0
    ):
        super().__init__()
        if not 1 <= depth <= len(_WIDTH_STEPS) - 1 or base_channels < 4 or aux_classes < 0:
            raise InputError(
                f"fastunet needs 1 <= depth <= 6, base_channels >= 4 and aux_classes >= 0 "
                f"(got {depth}, {base_channels}, {aux_classes})"
            )
        w = [base_channels * s for s in _WIDTH_STEPS[: depth + 1]]
        self.inc = nn.Sequential(ConvBNAct(in_channels, w[0]), ConvBNAct(w[0], w[0]))
        self.down = nn.ModuleList(
            nn.Sequential(ConvBNAct(w[i], w[i + 1], 3, stride=2), ConvBNAct(w[i + 1], w[i + 1])) for i in range(depth)
        )
        self.up = nn.ModuleList(ConvBNAct(w[i + 1] + w[i], w[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(w[0], num_classes, 1)
        self.aux_head = nn.Conv2d(w[0], aux_classes, 1) if aux_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        if self.aux_head is not None and self.training:
            return torch.cat([self.head(y), self.aux_head(y)], dim=1)
        return self.head(y)


@register_model("fastunet")
def fastunet(*, in_channels: int = 3, num_classes: int = 1, **kwargs: object) -> nn.Module:
    """The small, fast network for CPU-only stations (the default model's architecture)."""
    depth = int(kwargs.get("depth", 4))  # type: ignore[arg-type]
    return PadToMultiple(FastUNet(in_channels, num_classes, **kwargs), 2**depth)
