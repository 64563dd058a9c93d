"""Threshold sweep and report: pooling per-scene counts, choosing the operating threshold, the tables.

Everything is counted per scene and per threshold (:class:`PlotCounts`, :class:`SceneResult`, filled by
:mod:`training.evaluate`), then pooled over scenes. :func:`choose_threshold` picks the threshold with plot
recall >= 0.95 and the best plot precision; :class:`EvalReport` breaks the chosen threshold's numbers down by
growth stage and ground-resolution bin.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLDS",
    "GSD_BINS",
    "TARGET_RECALL",
    "EvalReport",
    "PlotCounts",
    "SceneResult",
    "choose_threshold",
    "gsd_bin",
    "json_safe",
    "nan_to",
    "ratio",
    "summarise",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
TARGET_RECALL = 0.95  # a missed plot costs a field season; a false one costs a look on screen
# Fewer labelled validation plots than this cannot place a threshold or an operating point: one plot more or less
# moves recall by more than 0.05. A fine-tune validated on fewer keeps its starting model's (see training.trainer).
MIN_VALIDATION_PLOTS = 20
# GSD bins (upper bound in metres, name): police flights at 50-100 m give about 2.2-4.3 cm/px.
GSD_BINS: tuple[tuple[float, str], ...] = ((0.02, "<2 cm"), (0.035, "2-3.5 cm"), (math.inf, ">3.5 cm"))


def gsd_bin(gsd_m: float) -> str:
    """Name of the ground-resolution bin of a GSD in metres (see ``GSD_BINS``)."""
    for upper, name in GSD_BINS:
        if gsd_m < upper:
            return name
    return GSD_BINS[-1][1]


def ratio(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is not positive (an undefined rate, not a zero one)."""
    return num / den if den > 0 else math.nan


@dataclass(frozen=True)
class PlotCounts:
    """Additive counts for one threshold over one or more scenes.

    Attributes:
        labels: Label plots inside the AOI.
        found: Label plots found.
        preds: Predicted plots inside the AOI.
        true_preds: Predicted plots that are true.
        fp_area_m2: Area of predictions off every label, square metres.
        tp_px: Poppy pixels predicted as poppy (valid, inside the AOI).
        fp_px: Background pixels predicted as poppy.
        fn_px: Poppy pixels missed.
        valid_m2: Valid, labelled ground (footprint inside the AOI), square metres.
    """

    labels: int = 0
    found: int = 0
    preds: int = 0
    true_preds: int = 0
    fp_area_m2: float = 0.0
    tp_px: int = 0
    fp_px: int = 0
    fn_px: int = 0
    valid_m2: float = 0.0

    def __add__(self, other: PlotCounts) -> PlotCounts:
        return PlotCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def metrics(self) -> dict[str, float | int]:
        """Precision, recall, F1, pixel scores and false-positive area per hectare, with the counts.

        Undefined ratios are NaN: precision with no prediction, recall with no label plot, pixel IoU with
        neither poppy predicted nor labelled. F1 is 0 when labels exist but nothing was predicted.
        """
        p = ratio(self.true_preds, self.preds)
        r = ratio(self.found, self.labels)
        if math.isnan(r):
            f1 = math.nan
        elif math.isnan(p) or p + r == 0:
            f1 = 0.0
        else:
            f1 = 2 * p * r / (p + r)
        valid_ha = self.valid_m2 / 1e4
        return {
            "plot_precision": p,
            "plot_recall": r,
            "plot_f1": f1,
            "pixel_iou": ratio(self.tp_px, self.tp_px + self.fp_px + self.fn_px),
            "pixel_precision": ratio(self.tp_px, self.tp_px + self.fp_px),
            "pixel_recall": ratio(self.tp_px, self.tp_px + self.fn_px),
            "fp_m2_per_ha": ratio(self.fp_area_m2, valid_ha),
            "labels": self.labels,
            "found": self.found,
            "preds": self.preds,
            "true_preds": self.true_preds,
            "fp_area_m2": self.fp_area_m2,
            "valid_ha": valid_ha,
        }


@dataclass
class SceneResult:
    """Counts of one scene at every threshold, with per-label outcomes for the stage breakdown.

    Attributes:
        name: The scene's name.
        stage: The scene's growth stage: the sidecar's, else the one stage all its labels share, ``"mixed"``
            when they differ, None when nothing says.
        gsd_m: The scene's GSD in metres (sidecar, else measured).
        thresholds: The thresholds, ascending.
        counts: One :class:`PlotCounts` per threshold.
        label_stages: Growth stage of each label plot inside the AOI (its ``stage`` property, else the scene's).
        label_found: ``bool [thresholds, labels]``: which labels were found at which threshold.
    """

    name: str
    stage: str | None
    gsd_m: float
    thresholds: tuple[float, ...]
    counts: list[PlotCounts]
    label_stages: list[str | None]
    label_found: np.ndarray


def nan_to(value: float, default: float) -> float:
    return default if math.isnan(value) else value


def choose_threshold(rows: Sequence[Mapping[str, Any]], target_recall: float = TARGET_RECALL) -> tuple[int, str]:
    """Pick the operating threshold from pooled per-threshold metrics.

    Rule: among thresholds reaching plot recall >= ``target_recall``, the best plot precision (ties: higher
    pixel IoU). If none reaches it, the highest recall (ties: precision, then IoU). Without any labelled plot
    (only poppy-free scenes) recall means nothing: the least false-positive area. Remaining ties go to the
    threshold nearest 0.5, which sits in the middle of a plateau of equal results.

    Args:
        rows: One mapping per threshold with ``threshold``, ``plot_recall``, ``plot_precision``, ``pixel_iou``,
            ``fp_m2_per_ha`` (NaN where undefined).
        target_recall: The recall a survey must reach.

    Returns:
        ``(index into rows, reason)``.
    """
    if not rows:
        raise ValueError("no thresholds to choose from")

    def centre(i: int) -> float:
        return -abs(float(rows[i]["threshold"]) - 0.5)

    def val(i: int, key: str) -> float:
        return round(nan_to(float(rows[i][key]), -1.0), 9)

    idx = range(len(rows))
    if all(math.isnan(float(r["plot_recall"])) for r in rows):
        best = max(idx, key=lambda i: (-round(nan_to(float(rows[i]["fp_m2_per_ha"]), 0.0), 9), centre(i)))
        return best, "no labelled plot in validation: least false-positive area"
    reach = [i for i in idx if val(i, "plot_recall") >= target_recall - 1e-9]
    if reach:
        best = max(reach, key=lambda i: (val(i, "plot_precision"), val(i, "pixel_iou"), centre(i)))
        return best, f"plot recall >= {target_recall:.2f} with the best plot precision"
    best = max(idx, key=lambda i: (val(i, "plot_recall"), val(i, "plot_precision"), val(i, "pixel_iou"), centre(i)))
    return best, f"no threshold reaches plot recall {target_recall:.2f}: the highest recall"


def _group_counts(
    results: Sequence[SceneResult], k: int, *, stage: str | None = None, gsd: str | None = None
) -> PlotCounts:
    """Pool one threshold's counts over a group: by GSD bin (whole scenes) or by stage (labels by their own
    stage for recall; predictions, pixels and area by the scene's stage)."""
    total = PlotCounts()
    for res in results:
        c = res.counts[k]
        if gsd is not None:
            if gsd_bin(res.gsd_m) == gsd:
                total += c
            continue
        mine = np.array([(s or "unknown") == stage for s in res.label_stages], dtype=bool)
        label_part = PlotCounts(labels=int(mine.sum()), found=int((res.label_found[k] & mine).sum()))
        same_stage = (res.stage or "unknown") == stage
        scene_part = dataclasses.replace(c, labels=0, found=0) if same_stage else PlotCounts()
        total += label_part + scene_part
    return total


@dataclass
class EvalReport:
    """Pooled validation results.

    Attributes:
        thresholds: The thresholds evaluated, ascending.
        rows: Pooled metrics per threshold (see :meth:`PlotCounts.metrics`), each with its ``threshold``.
        chosen_index: Index of the chosen threshold in ``thresholds``.
        reason: Why it was chosen.
        by_stage: Metrics at the chosen threshold per growth stage (empty when no stage is recorded).
        by_gsd: Metrics at the chosen threshold per GSD bin.
        scenes: Metrics at the chosen threshold per scene.
        target_recall: The recall the choice aimed at.
        results: The per-scene counts everything was pooled from (not serialised).
    """

    thresholds: tuple[float, ...]
    rows: list[dict[str, Any]]
    chosen_index: int
    reason: str
    by_stage: list[dict[str, Any]]
    by_gsd: list[dict[str, Any]]
    scenes: list[dict[str, Any]]
    target_recall: float = TARGET_RECALL
    results: list[SceneResult] = field(default_factory=list, repr=False)

    @property
    def threshold(self) -> float:
        """The chosen threshold."""
        return self.thresholds[self.chosen_index]

    @property
    def chosen(self) -> dict[str, Any]:
        """Pooled metrics at the chosen threshold."""
        return self.rows[self.chosen_index]

    @property
    def score(self) -> tuple[float, float]:
        """The key to pick the best checkpoint by, compared as a tuple: plot F1 at the chosen threshold (without
        labelled plots, minus the false-positive area per hectare), then pixel IoU. The IoU breaks F1 ties, which
        are common with few validation plots, and ranks a model that paints a whole field (every label found by
        one blob: F1 1.0) below one that outlines the plots."""
        f1 = float(self.chosen["plot_f1"])
        first = f1 if not math.isnan(f1) else -nan_to(float(self.chosen["fp_m2_per_ha"]), 0.0)
        return (first, nan_to(float(self.chosen["pixel_iou"]), 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN becomes None)."""
        return json_safe(
            {
                "threshold": self.threshold,
                "reason": self.reason,
                "target_recall": self.target_recall,
                "chosen": self.chosen,
                "by_stage": self.by_stage,
                "by_gsd": self.by_gsd,
                "scenes": self.scenes,
                "thresholds": self.rows,
            }
        )

    def table(self, sweep: bool = False) -> str:
        """A plain-text table of the chosen threshold, its breakdown and, with ``sweep``, every threshold."""
        head = (
            f"{'':<22}{'found/labels':>13}{'recall':>8}{'true/preds':>12}{'precision':>10}{'F1':>7}"
            f"{'pixel IoU':>10}{'FP m2/ha':>10}"
        )
        lines = [f"threshold {self.threshold:.2f} ({self.reason})", head]

        def fmt(v: float, width: int, digits: int = 2) -> str:
            return f"{'-':>{width}}" if v is None or math.isnan(v) else f"{v:>{width}.{digits}f}"

        def line(name: str, m: Mapping[str, Any]) -> str:
            found = f"{m['found']}/{m['labels']}"
            true = f"{m['true_preds']}/{m['preds']}"
            return (
                f"{name:<22}{found:>13}{fmt(m['plot_recall'], 8)}{true:>12}{fmt(m['plot_precision'], 10)}"
                f"{fmt(m['plot_f1'], 7)}{fmt(m['pixel_iou'], 10)}{fmt(m['fp_m2_per_ha'], 10, 1)}"
            )

        lines.append(line("all scenes", self.chosen))
        for row in self.by_stage:
            lines.append(line(f"stage {row['group']}", row))
        for row in self.by_gsd:
            lines.append(line(f"GSD {row['group']}", row))
        for row in self.scenes:
            lines.append(line(f"scene {row['scene']}"[:22], row))
        if sweep:
            lines.append("")
            lines.append(head.replace(f"{'':<22}", f"{'threshold':<22}", 1))
            for row in self.rows:
                lines.append(line(f"{row['threshold']:.2f}", row))
        return "\n".join(lines)


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def summarise(
    results: Sequence[SceneResult],
    *,
    target_recall: float = TARGET_RECALL,
    keep: tuple[float, str] | None = None,
) -> EvalReport:
    """Pool per-scene results, choose the threshold and break the choice down by stage and GSD.

    Args:
        results: Per-scene results at the same thresholds.
        target_recall: The recall the choice aims at.
        keep: ``(threshold, reason)`` to report at a threshold chosen elsewhere (the sweep row nearest to it)
            instead of choosing one here.

    Raises:
        ValueError: If the results were computed at different thresholds.
    """
    if not results:
        raise ValueError("no scene results to summarise")
    ts = results[0].thresholds
    if any(r.thresholds != ts for r in results):
        raise ValueError("scene results were computed at different thresholds")
    rows = []
    for k, t in enumerate(ts):
        pooled = sum((r.counts[k] for r in results), PlotCounts())
        rows.append({"threshold": t, **pooled.metrics()})
    if keep is None:
        k, reason = choose_threshold(rows, target_recall)
    else:
        k, reason = min(range(len(ts)), key=lambda i: abs(ts[i] - keep[0])), keep[1]

    stages = sorted({s or "unknown" for r in results for s in [r.stage, *r.label_stages]})
    by_stage = []
    if stages != ["unknown"]:
        for s in stages:
            by_stage.append({"group": s, **_group_counts(results, k, stage=s).metrics()})
    by_gsd = []
    for _, name in GSD_BINS:
        members = [r for r in results if gsd_bin(r.gsd_m) == name]
        if members:
            by_gsd.append({"group": name, "scenes": len(members), **_group_counts(results, k, gsd=name).metrics()})
    scenes = [
        {"scene": r.name, "stage": r.stage, "gsd_cm": round(r.gsd_m * 100, 2), **r.counts[k].metrics()} for r in results
    ]
    return EvalReport(
        thresholds=ts,
        rows=rows,
        chosen_index=k,
        reason=reason,
        by_stage=by_stage,
        by_gsd=by_gsd,
        scenes=scenes,
        target_recall=target_recall,
        results=list(results),
    )
