"""Paired image/mask augmentations for training chips.

Every transform is called as ``t(image, mask, rng) -> (image, mask)`` with ``image`` a ``float32 [3, H, W]``
tensor in [0, 1], ``mask`` an ``int64 [H, W]`` tensor (0 background, 1 poppy, 255 ignore) and ``rng`` the
chip's own :class:`numpy.random.Generator`, so a chip and its augmentation are reproduced exactly from the
seed (see ``datasets.chips``).

Geometric transforms (flips, 90-degree rotations) move image and mask together and never interpolate, so
labels and the ignore value 255 survive exactly. Photometric transforms touch the image only and clamp it
to [0, 1]. They model what varies between survey flights: exposure, camera tone curve, white balance, focus
and motion blur, sensor noise and compression. Ground-resolution changes are not here: the chip sampler reads
at a jittered GSD instead (``ChipDataset(scale_jitter=...)``), which is sharper than resizing afterwards.

All settings of the training preset live in :func:`train_augment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from core.errors import InputError

__all__ = [
    "Compose",
    "Exposure",
    "Gamma",
    "GaussianBlur",
    "GaussianNoise",
    "JpegQuality",
    "RandomFlip",
    "RandomRot90",
    "WhiteBalance",
    "train_augment",
]

Pair = tuple[torch.Tensor, torch.Tensor]


def _check_range(name: str, low: float, high: float, minimum: float = 0.0) -> None:
    if not minimum <= low <= high:
        raise InputError(f"{name}=({low}, {high}): need {minimum} <= low <= high")


class Compose:
    """Apply transforms in order, passing the same generator along."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        for t in self.transforms:
            image, mask = t(image, mask, rng)
        return image, mask

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose([\n    {inner},\n])"


# --- geometric: image and mask together --------------------------------------------------------------------


@dataclass(frozen=True)
class RandomFlip:
    """Flip left-right and up-down, each with probability ``p``."""

    p: float = 0.5

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        dims = [d for d in (-1, -2) if rng.random() < self.p]  # draw both, always, to keep the stream aligned
        if dims:
            image, mask = image.flip(dims), mask.flip(dims)
        return image, mask


@dataclass(frozen=True)
class RandomRot90:
    """Rotate by 0, 90, 180 or 270 degrees, uniformly: aerial images have no "up"."""

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        k = int(rng.integers(4))
        if k:
            image = torch.rot90(image, k, dims=(-2, -1)).contiguous()
            mask = torch.rot90(mask, k, dims=(-2, -1)).contiguous()
        return image, mask


# --- photometric: image only, clamped to [0, 1] ---------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """Multiply brightness by ``U(low, high)``: over- and under-exposed flights."""

    low: float = 0.7
    high: float = 1.3

    def __post_init__(self) -> None:
        _check_range("exposure", self.low, self.high)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        gain = float(rng.uniform(self.low, self.high))
        return (image * gain).clamp_(0.0, 1.0), mask


@dataclass(frozen=True)
class Gamma:
    """Raise the image to a power drawn log-uniformly in ``[low, high]``: different camera tone curves."""

    low: float = 0.8
    high: float = 1.25

    def __post_init__(self) -> None:
        _check_range("gamma", self.low, self.high, minimum=1e-3)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        # Log-uniform so that brightening (gamma < 1) and darkening (gamma > 1) are equally likely.
        gamma = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return image.clamp(0.0, 1.0).pow(gamma), mask


@dataclass(frozen=True)
class WhiteBalance:
    """Shift colour temperature and tint with per-channel gains.

    Temperature ``t ~ U(-temperature, temperature)`` scales red by ``1 + t`` and blue by ``1 - t`` (warm/cool
    light, a camera's auto white balance); tint ``u ~ U(-tint, tint)`` scales green by ``1 + u``. Poppy's
    glaucous blue-green and its flowers' colours must survive such shifts.
    """

    temperature: float = 0.1
    tint: float = 0.05

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        t = float(rng.uniform(-self.temperature, self.temperature))
        u = float(rng.uniform(-self.tint, self.tint))
        gains = torch.tensor([1.0 + t, 1.0 + u, 1.0 - t], dtype=image.dtype).view(3, 1, 1)
        return (image * gains).clamp_(0.0, 1.0), mask


@dataclass(frozen=True)
class GaussianBlur:
    """With probability ``p``, blur with a Gaussian of sigma ``U(sigma_low, sigma_high)`` pixels (focus, motion,
    orthomosaic resampling)."""

    p: float = 0.2
    sigma_low: float = 0.3
    sigma_high: float = 1.0

    def __post_init__(self) -> None:
        _check_range("blur sigma", self.sigma_low, self.sigma_high, minimum=1e-3)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        apply = rng.random() < self.p
        sigma = float(rng.uniform(self.sigma_low, self.sigma_high))
        if not apply:
            return image, mask
        radius = max(1, int(np.ceil(3.0 * sigma)))
        x = torch.arange(-radius, radius + 1, dtype=image.dtype)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel /= kernel.sum()
        c = image.shape[0]
        # Separable blur with reflected borders, so chip edges do not darken.
        out = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
        out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return out[0].clamp_(0.0, 1.0), mask


@dataclass(frozen=True)
class GaussianNoise:
    """With probability ``p``, add Gaussian noise of standard deviation ``U(0, sigma_max)`` (sensor noise)."""

    p: float = 0.3
    sigma_max: float = 0.03

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        apply = rng.random() < self.p
        sigma = float(rng.uniform(0.0, self.sigma_max))
        if not apply or sigma == 0.0:
            return image, mask
        # Noise from the chip's numpy generator, not torch's global one, so it is reproducible per chip.
        noise = torch.from_numpy(rng.standard_normal(image.shape, dtype=np.float32)).to(image.dtype)
        return (image + sigma * noise).clamp_(0.0, 1.0), mask


@dataclass(frozen=True)
class JpegQuality:
    """With probability ``p``, round-trip through JPEG at quality ``U(low, high)`` (compressed orthomosaics)."""

    p: float = 0.2
    low: int = 40
    high: int = 90

    def __post_init__(self) -> None:
        _check_range("jpeg quality", self.low, self.high, minimum=1)
        if self.high > 100:
            raise InputError(f"jpeg quality high={self.high}: must be at most 100")

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> Pair:
        apply = rng.random() < self.p
        quality = int(rng.integers(self.low, self.high + 1))
        if not apply:
            return image, mask
        # OpenCV works on HWC BGR uint8.
        hwc = (image.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()[:, :, ::-1]
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(hwc), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # encoding a valid uint8 array does not fail; keep the chip unchanged if it ever does
            return image, mask
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
        out = torch.from_numpy(np.ascontiguousarray(decoded)).permute(2, 0, 1).to(image.dtype) / 255.0
        return out.contiguous(), mask


def train_augment(
    *,
    flips: bool = True,
    rot90: bool = True,
    exposure: tuple[float, float] = (0.7, 1.3),  # +-30 %: sunny vs overcast flights with auto exposure
    gamma: tuple[float, float] = (0.8, 1.25),  # camera tone curves differ by about this much
    temperature: float = 0.1,  # red/blue gains +-10 %: morning vs noon light, auto white balance
    tint: float = 0.05,  # green gain +-5 %
    blur_p: float = 0.2,  # a fifth of chips slightly soft, as parts of orthomosaics are
    blur_sigma: tuple[float, float] = (0.3, 1.0),  # pixels; more would erase 3-px flowers at 3 cm/px
    noise_p: float = 0.3,
    noise_sigma: float = 0.03,  # up to ~8 grey levels of sensor noise
    jpeg_p: float = 0.2,  # many orthomosaics are JPEG-compressed GeoTIFFs
    jpeg_quality: tuple[int, int] = (40, 90),
) -> Compose:
    """The training augmentation preset: every setting in one place.

    Geometric first (exact, no interpolation), then colour, then degradations (blur, noise, JPEG) in the order
    a camera and an orthomosaic pipeline apply them.
    """
    ops: list = []
    if flips:
        ops.append(RandomFlip(0.5))
    if rot90:
        ops.append(RandomRot90())
    ops += [
        Exposure(*exposure),
        Gamma(*gamma),
        WhiteBalance(temperature, tint),
    ]
    if blur_p > 0:
        ops.append(GaussianBlur(blur_p, *blur_sigma))
    if noise_p > 0:
        ops.append(GaussianNoise(noise_p, noise_sigma))
    if jpeg_p > 0:
        ops.append(JpegQuality(jpeg_p, *jpeg_quality))
    return Compose(ops)
