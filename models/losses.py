"""Losses for heavily imbalanced poppy segmentation.

Poppy covers a fraction of a percent of a survey's pixels, so plain cross-entropy is dominated by easy
background. The default loss adds a soft Dice term, which scores the poppy class as a whole regardless of how
rare it is, to a focal binary cross-entropy, which keeps per-pixel gradients but down-weights the easy ones.
Pixels marked with the ignore index (255: unlabelled, outside the area of interest, outside the footprint)
contribute nothing to either term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IGNORE_INDEX", "DiceFocalLoss", "MultiClassDiceCELoss", "PoppyWithLandCoverLoss"]

IGNORE_INDEX = 255


class DiceFocalLoss(nn.Module):
    """Soft Dice + focal BCE for one poppy logit per pixel.

    Args:
        dice_weight: Weight of the Dice term.
        focal_gamma: Focusing parameter; 0 gives plain BCE.
        pos_weight: Extra weight of poppy pixels in the BCE term.
        smooth: Dice smoothing, in pixels, so chips without poppy do not divide by zero.
    """

    def __init__(
        self, dice_weight: float = 1.0, focal_gamma: float = 2.0, pos_weight: float = 1.0, smooth: float = 1.0
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.focal_gamma = focal_gamma
        self.pos_weight = pos_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``[B, 1, H, W]`` and target ``[B, H, W]`` with 0, 1 and 255 (ignored)."""
        logit = logits[:, 0].float()
        valid = target != IGNORE_INDEX
        y = (target == 1).float()
        if not valid.any():
            return logit.sum() * 0.0
        bce = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
        p = torch.sigmoid(logit)
        p_t = p * y + (1 - p) * (1 - y)
        weight = (1 - p_t).pow(self.focal_gamma) * (1 + (self.pos_weight - 1) * y)
        focal = (bce * weight)[valid].mean()
        p_v, y_v = p[valid], y[valid]
        inter = (p_v * y_v).sum()
        dice = 1 - (2 * inter + self.smooth) / (p_v.sum() + y_v.sum() + self.smooth)
        return focal + self.dice_weight * dice


class MultiClassDiceCELoss(nn.Module):
    """Cross-entropy + mean soft Dice over classes present in the batch, for land-cover pretraining."""

    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``[B, C, H, W]`` and class ids ``[B, H, W]`` (255 ignored)."""
        valid = target != IGNORE_INDEX
        if not valid.any():
            return logits.sum() * 0.0
        ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
        prob = torch.softmax(logits.float(), dim=1).permute(0, 2, 3, 1)[valid]  # [N, C]
        onehot = F.one_hot(target[valid], logits.shape[1]).float()
        present = onehot.sum(0) > 0
        inter = (prob * onehot).sum(0)
        dice = 1 - (2 * inter + self.smooth) / (prob.sum(0) + onehot.sum(0) + self.smooth)
        return ce + self.dice_weight * dice[present].mean()


class PoppyWithLandCoverLoss(nn.Module):
    """The poppy loss plus a weighted land-cover loss on an auxiliary head (``fastunet(aux_classes=K)``).

    Targets are ``[B, 2, H, W]``: the poppy mask (0/1/255) and the land-cover class of every pixel (255 where
    unknown; class 0, "nodata", and classes the head does not have are ignored too). With ``[B, H, W]`` targets
    (scenes without land cover) or a network without the head, it is the poppy loss alone.

    Args:
        poppy: The poppy loss (default :class:`DiceFocalLoss`).
        aux: The land-cover loss (default :class:`MultiClassDiceCELoss`).
        aux_weight: Weight of the land-cover term: an aid, not the goal, so below the poppy term.
    """

    def __init__(self, poppy: nn.Module | None = None, aux: nn.Module | None = None, aux_weight: float = 0.5) -> None:
        super().__init__()
        self.poppy = poppy or DiceFocalLoss()
        self.aux = aux or MultiClassDiceCELoss()
        self.aux_weight = aux_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``[B, 1 + K, H, W]`` and targets ``[B, 2, H, W]`` (or ``[B, H, W]``)."""
        if target.ndim == 3:
            return self.poppy(logits[:, :1], target)
        loss = self.poppy(logits[:, :1], target[:, 0])
        k = logits.shape[1] - 1
        if k < 2:
            return loss
        classes = target[:, 1].clone()
        classes[(classes == 0) | (classes >= k)] = IGNORE_INDEX
        return loss + self.aux_weight * self.aux(logits[:, 1:], classes)
