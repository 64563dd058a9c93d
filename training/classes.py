"""Per-class IoU of multi-class (land-cover pretraining) models, over chip batches."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.labels import IGNORE
from models.checkpoint import ModelSpec, normalise
from training.report import json_safe, nan_to, ratio

__all__ = ["ClassReport", "class_iou", "confusion_matrix", "evaluate_chips"]


def confusion_matrix(target: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """Pixel counts ``[num_classes, num_classes]``: row = true class, column = predicted class.

    Pixels whose target is ``ignore`` are not counted; any other target or prediction outside
    ``0..num_classes-1`` is a programming error.

    Raises:
        ValueError: If the arrays differ in shape or hold a class id out of range.
    """
    t = np.asarray(target).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"target and prediction differ in size ({t.size} vs {p.size})")
    keep = t != ignore
    t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"class ids must be in 0..{num_classes - 1} (or {ignore} in the target)")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class, ``TP / (TP + FP + FN)``; NaN for a class neither present nor predicted (it has no
    IoU, and counting it as 0 or 1 would move the mean for no reason)."""
    c = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(c)
    union = c.sum(axis=0) + c.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), math.nan)


@dataclass
class ClassReport:
    """Per-class validation of a multi-class (land-cover) model.

    Attributes:
        classes: Class names, index = class id.
        confusion: Pixel counts, row = true class, column = predicted class (see :func:`confusion_matrix`).
    """

    classes: tuple[str, ...]
    confusion: np.ndarray

    @property
    def iou(self) -> dict[str, float]:
        """IoU per class name (NaN when the class was neither present nor predicted)."""
        return dict(zip(self.classes, class_iou(self.confusion).tolist(), strict=True))

    @property
    def miou(self) -> float:
        """Mean IoU over the classes that have one (NaN when none has)."""
        values = class_iou(self.confusion)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    @property
    def pixel_accuracy(self) -> float:
        """Share of counted pixels classified right."""
        return ratio(float(np.trace(self.confusion)), float(self.confusion.sum()))

    @property
    def score(self) -> tuple[float]:
        """The key to pick the best checkpoint by: mean IoU (-inf when undefined)."""
        return (nan_to(self.miou, -math.inf),)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN becomes None)."""
        counts = self.confusion.sum(axis=1)
        return json_safe(
            {
                "miou": self.miou,
                "pixel_accuracy": self.pixel_accuracy,
                "classes": [
                    {"class": name, "iou": iou, "pixels": int(n)}
                    for (name, iou), n in zip(self.iou.items(), counts, strict=True)
                ],
                "confusion": self.confusion.tolist(),
            }
        )

    def table(self) -> str:
        """A plain-text table: IoU and labelled pixels per class, then the mean."""
        counts = self.confusion.sum(axis=1)
        lines = [f"{'class':<24}{'IoU':>8}{'pixels':>14}"]
        for (name, iou), n in zip(self.iou.items(), counts, strict=True):
            lines.append(f"{name[:24]:<24}{'-' if math.isnan(iou) else f'{iou:.3f}':>8}{int(n):>14}")
        lines.append(f"{'mean IoU':<24}{'-' if math.isnan(self.miou) else f'{self.miou:.3f}':>8}")
        lines.append(f"{'pixel accuracy':<24}{nan_to(self.pixel_accuracy, 0.0):>8.3f}")
        return "\n".join(lines)


def evaluate_chips(
    model: nn.Module,
    spec: ModelSpec,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str | torch.device = "cpu",
) -> ClassReport:
    """Per-class IoU of a multi-class model over ``(image [B, C, H, W] in [0, 1], mask [B, H, W])`` batches.

    The prediction is the arg-max class; pixels masked 255 are not counted. The model's train/eval mode is
    restored afterwards.
    """
    if spec.num_outputs == 1:
        raise ValueError("evaluate_chips scores multi-class models; a binary poppy model is scored on scenes")
    num_classes = len(spec.classes)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for image, mask in batches:
                logits = model(normalise(image.to(device), spec))
                pred = logits.argmax(dim=1).cpu().numpy()
                confusion += confusion_matrix(mask.numpy(), pred, num_classes)
    finally:
        model.train(was_training)
    return ClassReport(tuple(spec.classes), confusion)
