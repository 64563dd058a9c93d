"""Tests for datasets/transforms.py: geometric ops move image and mask together, photometric ops only colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InputError
from datasets.transforms import (
    Compose,
    Exposure,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    JpegQuality,
    RandomFlip,
    RandomRot90,
    WhiteBalance,
    train_augment,
)


def asymmetric_pair(h: int = 12, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A mask with no symmetry (an L of poppy, an ignore corner) and an image whose red channel encodes it."""
    mask = torch.zeros((h, w), dtype=torch.int64)
    mask[1:8, 2:4] = 1  # the L's stem
    mask[6:8, 2:9] = 1  # the L's foot
    mask[0:3, w - 3 :] = 255  # ignore in one corner
    image = torch.zeros((3, h, w), dtype=torch.float32)
    image[0] = mask.float() / 255.0
    image[1] = torch.linspace(0, 1, h * w).view(h, w)  # a gradient: any misplacement shows
    image[2] = 0.5
    return image, mask


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/rotations of the last two dimensions."""
    out = []
    for y in (x, x.flip(-1)):
        out += [torch.rot90(y, k, dims=(-2, -1)) for k in range(4)]
    return out


# --- geometric -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [RandomFlip(0.5), RandomRot90(), Compose([RandomFlip(0.5), RandomRot90()])])
def test_geometric_ops_move_mask_exactly_with_image(op):
    image, mask = asymmetric_pair()
    seen = set()
    for seed in range(40):
        out_img, out_mask = op(image.clone(), mask.clone(), np.random.default_rng(seed))
        assert out_mask.dtype == torch.int64
        assert out_img.is_contiguous() and out_mask.is_contiguous()
        # The red channel carried the mask: after the op it must still match the mask pixel for pixel.
        assert torch.equal(torch.round(out_img[0] * 255).long(), out_mask)
        # And the result is one of the 8 exact flips/rotations (no interpolation, 255 kept).
        matches = [
            i for i, cand in enumerate(dihedral(mask)) if cand.shape == out_mask.shape and torch.equal(cand, out_mask)
        ]
        assert len(matches) == 1
        assert torch.equal(out_img, dihedral(image)[matches[0]])
        assert set(out_mask.unique().tolist()) == {0, 1, 255}
        seen.add(matches[0])
    assert len(seen) >= 3  # the ops really vary: identity, flips and rotations all turn up


def test_rot90_covers_all_four_rotations():
    image, mask = asymmetric_pair(8, 8)
    ks = set()
    for seed in range(30):
        _, out = RandomRot90()(image, mask, np.random.default_rng(seed))
        ks.update(k for k in range(4) if torch.equal(out, torch.rot90(mask, k)))
    assert ks == {0, 1, 2, 3}


def test_rot90_of_non_square_chip_swaps_height_and_width():
    image, mask = asymmetric_pair(6, 10)
    shapes = {RandomRot90()(image, mask, np.random.default_rng(s))[1].shape for s in range(20)}
    assert shapes == {(6, 10), (10, 6)}


# --- photometric ---------------------------------------------------------------------------------------------


PHOTOMETRIC = [
    Exposure(0.7, 1.3),
    Exposure(1.5, 1.5),  # overexposure must clamp
    Gamma(0.8, 1.25),
    WhiteBalance(0.2, 0.1),
    GaussianBlur(p=1.0, sigma_low=0.5, sigma_high=1.5),
    GaussianNoise(p=1.0, sigma_max=0.2),
    JpegQuality(p=1.0, low=20, high=40),
]


@pytest.mark.parametrize("op", PHOTOMETRIC, ids=lambda op: repr(op))
def test_photometric_ops_leave_mask_alone_and_image_in_range(op):
    image, mask = asymmetric_pair()
    image[1, 0, :] = 1.0  # saturated pixels and black ones at once
    image[1, -1, :] = 0.0
    changed = False
    for seed in range(5):
        out_img, out_mask = op(image.clone(), mask.clone(), np.random.default_rng(seed))
        assert torch.equal(out_mask, mask)
        assert out_mask.dtype == torch.int64
        assert out_img.shape == image.shape
        assert out_img.dtype == torch.float32
        assert float(out_img.min()) >= 0.0 and float(out_img.max()) <= 1.0
        changed |= not torch.allclose(out_img, image, atol=1e-4)
    assert changed  # each op does something


def test_photometric_ops_do_not_modify_their_input():
    image, mask = asymmetric_pair()
    before = image.clone()
    for op in PHOTOMETRIC:
        op(image, mask, np.random.default_rng(0))
    assert torch.equal(image, before)


def test_exposure_scales_and_clamps():
    image = torch.tensor([0.0, 0.25, 0.4, 0.9]).view(1, 1, 4).expand(3, 1, 4).clone()
    out, _ = Exposure(2.0, 2.0)(image, torch.zeros(1, 4, dtype=torch.int64), np.random.default_rng(0))
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 0.5, 0.8, 1.0]))


def test_white_balance_moves_red_and_blue_apart():
    image = torch.full((3, 4, 4), 0.5)
    reds_minus_blues = []
    for seed in range(10):
        out, _ = WhiteBalance(0.2, 0.0)(image, torch.zeros(4, 4, dtype=torch.int64), np.random.default_rng(seed))
        assert torch.allclose(out[1], image[1])  # no tint: green untouched
        r, b = float(out[0].mean()) - 0.5, float(out[2].mean()) - 0.5
        assert r == pytest.approx(-b, abs=1e-6)  # warm or cool: red and blue move opposite ways
        reds_minus_blues.append(r - b)
    assert min(reds_minus_blues) < 0 < max(reds_minus_blues)


def test_blur_keeps_flat_images_flat_and_smooths_edges():
    flat = torch.full((3, 16, 16), 0.4)
    out, _ = GaussianBlur(1.0, 1.0, 1.0)(flat, torch.zeros(16, 16, dtype=torch.int64), np.random.default_rng(0))
    assert torch.allclose(out, flat, atol=1e-6)  # reflected borders: no dark frame
    edge = torch.zeros((3, 16, 16))
    edge[:, :, 8:] = 1.0
    out, _ = GaussianBlur(1.0, 1.0, 1.0)(edge, torch.zeros(16, 16, dtype=torch.int64), np.random.default_rng(0))
    assert 0.0 < float(out[0, 0, 7]) < 0.5 < float(out[0, 0, 8]) < 1.0
    assert torch.allclose(out.mean(), edge.mean(), atol=1e-3)


def test_probability_zero_is_identity():
    image, mask = asymmetric_pair()
    for op in (GaussianBlur(p=0.0), GaussianNoise(p=0.0), JpegQuality(p=0.0), RandomFlip(p=0.0)):
        out_img, out_mask = op(image, mask, np.random.default_rng(1))
        assert torch.equal(out_img, image) and torch.equal(out_mask, mask)


# --- the preset ----------------------------------------------------------------------------------------------


def test_train_augment_is_reproducible_and_pairs_stay_aligned():
    aug = train_augment()
    kinds = [type(t) for t in aug.transforms]
    assert kinds == [RandomFlip, RandomRot90, Exposure, Gamma, WhiteBalance, GaussianBlur, GaussianNoise, JpegQuality]
    image, mask = asymmetric_pair(16, 16)
    a = aug(image.clone(), mask.clone(), np.random.default_rng(11))
    b = aug(image.clone(), mask.clone(), np.random.default_rng(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = aug(image.clone(), mask.clone(), np.random.default_rng(12))
    assert not torch.equal(a[0], c[0])
    for seed in range(10):
        out_img, out_mask = aug(image.clone(), mask.clone(), np.random.default_rng(seed))
        assert any(torch.equal(out_mask, cand) for cand in dihedral(mask))
        assert float(out_img.min()) >= 0.0 and float(out_img.max()) <= 1.0


def test_train_augment_switches():
    aug = train_augment(flips=False, rot90=False, blur_p=0.0, noise_p=0.0, jpeg_p=0.0)
    assert [type(t) for t in aug.transforms] == [Exposure, Gamma, WhiteBalance]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Exposure(1.3, 0.7), r"exposure=\(1\.3, 0\.7\)"),
        (lambda: Gamma(0.0, 1.0), r"gamma=\(0\.0, 1\.0\)"),
        (lambda: JpegQuality(1.0, 50, 120), "at most 100"),
    ],
)
def test_bad_settings_are_refused(make, match):
    with pytest.raises(InputError, match=match):
        make()
