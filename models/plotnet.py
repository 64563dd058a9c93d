"""The second-stage network: a small classifier that judges one candidate plot from chips at full resolution.

The first stage (a segmentation network, possibly at a coarser GSD) proposes every region that might be poppy,
recall first. The judge then looks at each candidate at the fine GSD: a chip of RGB with a fourth channel that
marks the candidate's outline (1 inside the candidate polygon, 0 outside), so it sees the plot, where its edges
are and what surrounds it (a courtyard wall, a cabbage bed, a roof). It answers one logit: poppy or not. A plot
larger than one chip is judged on several chips inside it and their logits are averaged (see
:mod:`detect.judge`).

The network is plain 3x3 convolutions (the CPU runs them far better than depthwise ones, see
:mod:`models.fastunet`), five stride-2 stages down to 4 x 4 at 128 px, then average and max pooling side by side
(texture everywhere in the chip, and a few flowers anywhere in it), and a linear head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.errors import InputError
from models.common import ConvBNAct

__all__ = ["JUDGE_ARCHS", "JudgeSpec", "PlotNet", "build_judge"]

# Width of each stage relative to the first: grows slower than doubling, to stay small on a CPU.
_WIDTH_STEPS = (1, 2, 3, 4, 6, 8)


class PlotNet(nn.Module):
    """Chip classifier: ``[B, in_channels, H, W]`` -> ``[B]`` logits, for any H, W of at least 32 px.

    Args:
        in_channels: Input channels: the image bands plus one candidate-mask channel.
        base_channels: Width of the first stage.
        depth: Number of stride-2 stages (each halves the chip), 2 to 5.
        dropout: Dropout before the linear head (training only).
    """

    def __init__(self, in_channels: int = 4, base_channels: int = 16, depth: int = 5, dropout: float = 0.2):
        super().__init__()
        if not 2 <= depth <= len(_WIDTH_STEPS) - 1 or base_channels < 4 or not 0.0 <= dropout < 1.0:
            raise InputError(
                f"plotnet needs 2 <= depth <= 5, base_channels >= 4 and 0 <= dropout < 1 "
                f"(got {depth}, {base_channels}, {dropout})"
            )
        w = [base_channels * s for s in _WIDTH_STEPS[: depth + 1]]
        self.stem = nn.Sequential(ConvBNAct(in_channels, w[0]), ConvBNAct(w[0], w[0]))
        stages = [
            nn.Sequential(ConvBNAct(w[i], w[i + 1], 3, stride=2), ConvBNAct(w[i + 1], w[i + 1])) for i in range(depth)
        ]
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * w[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(self.stem(x))
        pooled = torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))[:, 0]


JUDGE_ARCHS: dict[str, Callable[..., nn.Module]] = {"plotnet": PlotNet}


def build_judge(name: str, **arch_args: object) -> nn.Module:
    """Build a registered judge network.

    Raises:
        InputError: If ``name`` is unknown (the message lists the known ones) or its arguments are out of range.
    """
    if name not in JUDGE_ARCHS:
        raise InputError(f"unknown judge network {name!r}; choose one of: {', '.join(sorted(JUDGE_ARCHS))}")
    try:
        return JUDGE_ARCHS[name](**arch_args)
    except TypeError as exc:
        raise InputError(f"judge network {name!r}: bad arguments {arch_args} ({exc})") from exc


@dataclass(frozen=True)
class JudgeSpec:
    """Everything needed to run the judge, stored in the checkpoint under ``"judge"`` (plain types only).

    Attributes:
        arch: Judge network name (see :data:`JUDGE_ARCHS`).
        arch_args: Its keyword arguments.
        gsd_m: Ground sample distance of the chips, metres per pixel.
        chip_px: Chip side in pixels (``chip_px * gsd_m`` metres of ground).
        max_chips: Most chips judged per plot (spread over large plots).
        mean: Per-band mean of the image bands (values scaled to [0, 1]).
        std: Per-band standard deviation.
        calibration: ``(a, b)`` of the Platt scaling ``p = sigmoid(a * logit + b)``, fitted on validation.
        operating_points: ``{name: {"threshold", "precision", "recall", "plots"}}`` on validation, for
            :data:`OPERATING_POINTS`.
        pr_curve: ``[[threshold, precision, recall], ...]`` on validation, thresholds ascending.
        metrics: Validation figures of the judge (counts, AUC, calibration error).
    """

    arch: str = "plotnet"
    arch_args: dict[str, Any] = field(default_factory=dict)
    gsd_m: float = 0.03
    chip_px: int = 128
    max_chips: int = 6
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    calibration: tuple[float, float] = (1.0, 0.0)
    operating_points: dict[str, dict[str, float]] = field(default_factory=dict)
    pr_curve: list[list[float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def chip_m(self) -> float:
        """Chip side on the ground, metres."""
        return self.chip_px * self.gsd_m

    def to_dict(self) -> dict[str, Any]:
        """Plain types for a checkpoint (``torch.load(weights_only=True)`` reads them back)."""
        return {
            "arch": self.arch,
            "arch_args": dict(self.arch_args),
            "gsd_m": float(self.gsd_m),
            "chip_px": int(self.chip_px),
            "max_chips": int(self.max_chips),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "calibration": [float(v) for v in self.calibration],
            "operating_points": {k: {kk: float(vv) for kk, vv in v.items()} for k, v in self.operating_points.items()},
            "pr_curve": [[float(x) for x in row] for row in self.pr_curve],
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeSpec:
        """The inverse of :meth:`to_dict`.

        Raises:
            InputError: If a field is missing or has the wrong shape (a damaged or hand-edited checkpoint).
        """
        try:
            return cls(
                arch=str(d["arch"]),
                arch_args=dict(d.get("arch_args", {})),
                gsd_m=float(d["gsd_m"]),
                chip_px=int(d["chip_px"]),
                max_chips=int(d["max_chips"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                calibration=(float(d["calibration"][0]), float(d["calibration"][1])),
                operating_points={str(k): dict(v) for k, v in d.get("operating_points", {}).items()},
                pr_curve=[list(map(float, row)) for row in d.get("pr_curve", [])],
                metrics=dict(d.get("metrics", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"judge settings in the checkpoint are damaged ({type(exc).__name__}: {exc})") from exc

    def build(self) -> nn.Module:
        """A new judge network of this spec's architecture (weights not loaded)."""
        return build_judge(self.arch, in_channels=len(self.mean) + 1, **self.arch_args)
