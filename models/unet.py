"""U-Net on a torchvision ResNet encoder, decoding back to full resolution.

Poppy flowers are 2-5 pixels across at 2-5 cm/px, so the decoder climbs all the way to the input resolution
(ResNets downsample by 2 before their first stage): a light full-resolution branch from the image joins the last
decoder stage, which keeps single-flower detail that a stride-2 or stride-4 head would blur away.

The encoder is built with ``weights=None`` (nothing is ever downloaded); pass ``encoder_weights`` as a path to a
local torchvision state-dict file to start from pretrained weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from core.errors import InputError
from models.common import ConvBNAct, PadToMultiple
from models.registry import register_model

__all__ = ["UNetResNet", "unet_resnet18", "unet_resnet34"]

_ENCODER_CHANNELS = {"resnet18": (64, 64, 128, 256, 512), "resnet34": (64, 64, 128, 256, 512)}


class _DecoderBlock(nn.Module):
    """Upsample by 2, concatenate the skip, two 3x3 convolutions."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(ConvBNAct(in_ch + skip_ch, out_ch), ConvBNAct(out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNetResNet(nn.Module):
    """U-Net with a ResNet encoder (strides 2, 4, 8, 16, 32) and a full-resolution output.

    Args:
        encoder: ``"resnet18"`` or ``"resnet34"``.
        in_channels: Input bands.
        num_classes: Output logits per pixel.
        decoder_channels: Channels of the decoder stages from deepest to full resolution (5 values).
        encoder_weights: Optional path to a local torchvision ResNet state dict (ImageNet or our own).
    """

    def __init__(
        self,
        encoder: str = "resnet34",
        in_channels: int = 3,
        num_classes: int = 1,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        if encoder not in _ENCODER_CHANNELS:
            raise InputError(f"unknown encoder {encoder!r}; choose one of: {', '.join(_ENCODER_CHANNELS)}")
        if len(decoder_channels) != 5:
            raise InputError(f"decoder_channels needs 5 values (got {len(decoder_channels)})")
        resnet = getattr(torchvision.models, encoder)(weights=None)
        if encoder_weights:
            path = Path(encoder_weights)
            if not path.is_file():
                raise InputError(f"encoder weights {encoder_weights}: no such file; give a local .pth file")
            state = torch.load(path, map_location="cpu", weights_only=True)
            resnet.load_state_dict(state)
        if in_channels != 3:
            # Extra bands start from the mean of the RGB filters so a pretrained encoder stays useful.
            old = resnet.conv1.weight.data
            resnet.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            resnet.conv1.weight.data = old.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)  # stride 2
        self.pool = resnet.maxpool
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2  # strides 4, 8
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4  # strides 16, 32
        enc = _ENCODER_CHANNELS[encoder]
        d = decoder_channels
        self.full_res = nn.Sequential(ConvBNAct(in_channels, d[4]), ConvBNAct(d[4], d[4]))
        self.dec4 = _DecoderBlock(enc[4], enc[3], d[0])
        self.dec3 = _DecoderBlock(d[0], enc[2], d[1])
        self.dec2 = _DecoderBlock(d[1], enc[1], d[2])
        self.dec1 = _DecoderBlock(d[2], enc[0], d[3])
        self.dec0 = _DecoderBlock(d[3], d[4], d[4])
        self.head = nn.Conv2d(d[4], num_classes, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder's modules, for transferring pretrained weights or freezing."""
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.full_res(x)
        f1 = self.stem(x)
        f2 = self.layer1(self.pool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        f5 = self.layer4(f4)
        y = self.dec4(f5, f4)
        y = self.dec3(y, f3)
        y = self.dec2(y, f2)
        y = self.dec1(y, f1)
        y = self.dec0(y, f0)
        return self.head(y)


@register_model("unet_resnet34")
def unet_resnet34(*, in_channels: int = 3, num_classes: int = 1, **kwargs: object) -> nn.Module:
    """U-Net on ResNet-34: the accurate network, for GPU training and workstations."""
    return PadToMultiple(UNetResNet("resnet34", in_channels, num_classes, **kwargs), 32)


@register_model("unet_resnet18")
def unet_resnet18(*, in_channels: int = 3, num_classes: int = 1, **kwargs: object) -> nn.Module:
    """U-Net on ResNet-18: a lighter encoder with the same decoder."""
    return PadToMultiple(UNetResNet("resnet18", in_channels, num_classes, **kwargs), 32)
