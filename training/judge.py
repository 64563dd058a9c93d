"""Training the second stage: a judge network on stage-one candidates, calibration and operating points.

The first-stage model is run over every training and validation orthomosaic through the inference path at its
own (recall-first) threshold. Each candidate plot it proposes is matched to the labels by the validation rule
(:mod:`training.matching`): true when it lies on labels, false otherwise. The judge (:mod:`models.plotnet`) learns
on chips of three kinds, drawn afresh each epoch and reproducible from the seed:

* positives: true candidates, and every labelled plot with its own outline (so plots the first stage outlines
  badly, or misses in a scene, still teach what poppy looks like);
* negatives: false candidates (the first stage's own false alarms: the look-alikes it cannot tell apart), and a
  share of random places in the footprint with a random outline (generic background).

Chips are centred inside the plot (a random point in it when it is larger than a chip, the box centre with a
jitter otherwise), read at the judge's GSD times a random factor (flights at other heights) and augmented with
the training preset of :mod:`datasets.transforms`.

Validation judges the validation candidates exactly as inference does (:func:`detect.judge.score_plots`), fits
Platt scaling on their logits (scores of one half of the scenes from a fit on the other half, so the curve and the
reliability diagram are out of sample), and from the calibrated scores builds the plot-level precision-recall curve
(labelled plots the first stage never proposed count as missed at every threshold), the three operating points
of ``infer.py --sensitivity`` and a reliability table.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import torch
from shapely.geometry.base import BaseGeometry
from torch import nn
from torch.utils.data import DataLoader, Dataset

from core.errors import InputError
from datasets.chips import ChipSource
from datasets.transforms import train_augment
from detect.judge import (
    calibrate,
    choose_operating_points,
    judge_input,
    plot_chip_centres,
    read_judge_chip,
    score_plots,
)
from detect.pipeline import detect_plots
from detect.vectorize import VectorParams
from models.checkpoint import ModelSpec
from models.plotnet import JudgeSpec
from training.matching import FOUND_AREA_M2, FOUND_FRACTION, MAX_SPILL, SPILL_AREA_M2

__all__ = [
    "Candidate",
    "JudgeChips",
    "JudgeReport",
    "expected_calibration_error",
    "fit_platt",
    "match_candidates",
    "pr_curve",
    "propose",
    "reliability",
    "train_judge",
    "write_judge_report",
]

log = logging.getLogger(__name__)

# Score thresholds of the validation precision-recall curve: fine steps, the calibrated scores spread over [0, 1].
CURVE_THRESHOLDS = np.round(np.arange(0.0, 1.0001, 0.025), 3)


@dataclass(frozen=True)
class Candidate:
    """One chip source for the judge: a polygon on one orthomosaic and whether it is poppy.

    Attributes:
        source: Index of the orthomosaic in the list the candidates were made from.
        geom: The polygon in that orthomosaic's CRS (a first-stage plot, a label or a random outline).
        positive: Whether it is poppy.
        kind: ``"proposal"`` (first stage), ``"label"`` (a labelled plot) or ``"random"`` (background).
        found: Indexes of the labelled plots this proposal finds (validation's rule); empty otherwise.
    """

    source: int
    geom: BaseGeometry
    positive: bool
    kind: str
    found: tuple[int, ...] = ()


def propose(
    source: ChipSource,
    model: nn.Module,
    spec: ModelSpec,
    *,
    threshold: float,
    work_dir: Path,
    device: str | torch.device = "cpu",
    min_area_m2: float = 1.0,
    batch_size: int = 8,
) -> list[tuple[BaseGeometry, float]]:
    """The first stage's candidate plots on one orthomosaic: ``(polygon in its CRS, geodesic area m2)``."""
    params = VectorParams(threshold=threshold, min_area_m2=min_area_m2)
    plots = detect_plots(
        source.path, model, spec, params, temp_dir=work_dir, device=device, batch_size=batch_size
    ).plots  # fmt: skip
    return [(p.geometry, p.area_m2) for p in plots]


def match_candidates(
    labels: Sequence[BaseGeometry], preds: Sequence[tuple[BaseGeometry, float]]
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Which candidates are true, and which labelled plots each finds, by validation's matching rule.

    A candidate is true when ``FOUND_FRACTION`` of it lies on labels, or it covers ``FOUND_FRACTION`` of a label
    without being more than ``MAX_SPILL`` times that label (or ``SPILL_AREA_M2``). A true candidate finds a label
    when it covers ``FOUND_FRACTION`` of it or ``FOUND_AREA_M2``. Fractions are taken in the raster's CRS, whose
    scale does not change across a plot; square metres through the candidate's geodesic area.

    Args:
        labels: Labelled plots in the raster's CRS.
        preds: ``(candidate polygon, its geodesic area in m2)``.

    Returns:
        ``(is_true, found_by)``: a bool per candidate, and per candidate the label indexes it finds.
    """
    is_true = np.zeros(len(preds), dtype=bool)
    found_by: list[tuple[int, ...]] = [() for _ in preds]
    if not labels:
        return is_true, found_by
    tree = shapely.STRtree(labels)
    label_areas = np.array([g.area for g in labels])
    for j, (pred, area_m2) in enumerate(preds):
        if pred.area <= 0:
            continue
        m2_per_unit = area_m2 / pred.area
        near = [int(i) for i in tree.query(pred, predicate="intersects")]
        if not near:
            continue
        overlaps = {i: shapely.intersection(pred, labels[i]).area for i in near}
        on_labels = shapely.intersection(pred, shapely.union_all([labels[i] for i in near])).area
        true = on_labels >= FOUND_FRACTION * pred.area or any(
            pred.area <= max(MAX_SPILL * label_areas[i], SPILL_AREA_M2 / m2_per_unit)
            and overlaps[i] >= FOUND_FRACTION * label_areas[i]
            for i in near
        )
        if true:
            is_true[j] = True
            found_by[j] = tuple(
                i
                for i in near
                if overlaps[i] >= FOUND_FRACTION * label_areas[i] or overlaps[i] * m2_per_unit >= FOUND_AREA_M2
            )
    return is_true, found_by


def fit_platt(logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Fit Platt scaling ``(a, b)`` by Newton's method on the log-loss, with Platt's smoothed targets.

    The targets are ``(n+ + 1) / (n+ + 2)`` for positives and ``1 / (n- + 2)`` for negatives (Platt 1999), so a
    perfectly separated validation set does not drive ``a`` to infinity.

    Raises:
        InputError: With fewer than two candidates of each kind (nothing to calibrate on).
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos < 2 or n_neg < 2:
        raise InputError(
            f"calibration needs at least 2 true and 2 false candidate plots on validation, got {n_pos} and {n_neg}; "
            "validate on more scenes"
        )
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(a: float, b: float) -> float:
        # Cross-entropy against the smoothed targets, written with logaddexp so it cannot overflow.
        z = a * x + b
        return float(np.sum(t * np.logaddexp(0.0, -z) + (1.0 - t) * np.logaddexp(0.0, z)))

    # Newton's method with a backtracking line search (Lin, Lin and Weng 2007): plain Newton steps diverge
    # from (1, 0) when the logits are spread widely.
    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * x + b, -50, 50)))
        g = np.array([np.sum((p - t) * x), np.sum(p - t)])
        w = p * (1.0 - p) + 1e-12
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        scale = 1.0
        while scale > 1e-10:
            new = loss(a - scale * step[0], b - scale * step[1])
            if new <= current + 1e-4 * scale * float(g @ -step):
                break
            scale /= 2.0
        a, b, current = a - scale * step[0], b - scale * step[1], new
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    return float(a), float(b)


def cross_fitted_scores(logits: np.ndarray, is_true: np.ndarray, scene: np.ndarray) -> tuple[np.ndarray, str]:
    """Calibrated scores that were not fitted on the candidates they score: two folds split by scene.

    Platt scaling fitted on one half of the validation scenes scores the candidates of the other half, and the
    other way round, so the precision-recall curve, the operating points and the reliability diagram are
    measured out of sample. (The calibration stored in the checkpoint is fitted on all candidates.) Where a fold
    has too few true or false candidates to fit, it falls back to the in-sample fit on all candidates.

    Args:
        logits: The judge's logit per candidate.
        is_true: Whether each candidate is a true plot.
        scene: Index of each candidate's scene (folds are scenes of even and odd index).

    Returns:
        ``(scores, how)`` where ``how`` is ``"2-fold by scene"`` or ``"in-sample"``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    fold = np.asarray(scene) % 2
    scores = np.empty_like(logits)
    try:
        for k in (0, 1):
            fit_on, apply_to = fold != k, fold == k
            if apply_to.any():
                scores[apply_to] = calibrate(logits[apply_to], fit_platt(logits[fit_on], is_true[fit_on]))
    except InputError:
        return calibrate(logits, fit_platt(logits, is_true)), "in-sample"
    return scores, "2-fold by scene"


def pr_curve(
    scores: np.ndarray, is_true: np.ndarray, found_by: Sequence[Sequence[int]], n_labels: int, thresholds: np.ndarray
) -> list[list[float]]:
    """Plot-level precision and recall at each score threshold.

    Args:
        scores: Each candidate's score.
        is_true: Whether each candidate is a true plot (it lies on labels).
        found_by: For each candidate, the indexes of the labelled plots it finds.
        n_labels: Labelled plots in all (those no candidate finds count as missed at every threshold).
        thresholds: Ascending thresholds.

    Returns:
        ``[[threshold, precision, recall, kept], ...]``; precision is 1 where no candidate is kept.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    rows = []
    for t in thresholds:
        keep = scores >= t
        kept = int(keep.sum())
        precision = float(is_true[keep].sum() / kept) if kept else 1.0
        found = {j for i in np.flatnonzero(keep) for j in found_by[i]}
        recall = len(found) / n_labels if n_labels else 1.0
        rows.append([float(t), precision, recall, float(kept)])
    return rows


def reliability(scores: np.ndarray, is_true: np.ndarray, bins: int = 10) -> list[dict[str, float | None]]:
    """Reliability table: per score bin, the count, the mean score and the share of true plots (None when empty).

    Also gives the expected calibration error as the count-weighted mean of ``|mean score - share true|``
    (see :func:`expected_calibration_error`).
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = (scores >= lo) & ((scores < hi) if hi < 1.0 else (scores <= hi))
        n = int(sel.sum())
        out.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": n,
                "mean_score": float(scores[sel].mean()) if n else None,
                "share_true": float(is_true[sel].mean()) if n else None,
            }
        )
    return out


def expected_calibration_error(table: Sequence[dict[str, float | None]]) -> float:
    """Count-weighted mean gap between mean score and share of true plots over the bins of :func:`reliability`."""
    total = sum(r["n"] for r in table)
    if not total:
        return math.nan
    return sum(r["n"] * abs(r["mean_score"] - r["share_true"]) for r in table if r["n"]) / total


# --- chips ----------------------------------------------------------------------------------------------------


def _random_outline(rng: np.random.Generator, source: ChipSource) -> BaseGeometry | None:
    """A random box of 1-5 m on a side somewhere in the source's region (a background 'candidate')."""
    minx, miny, maxx, maxy = source.region.bounds
    t = source.info.transform
    units_per_m = math.hypot(t.a, t.d) / source.info.gsd_m[1]
    for _ in range(20):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if source.region.contains(shapely.Point(x, y)):
            half = rng.uniform(0.5, 2.5) * units_per_m
            return shapely.box(x - half, y - half, x + half, y + half)
    return None


def _chip_centre(
    rng: np.random.Generator, source: ChipSource, geom: BaseGeometry, spec: JudgeSpec
) -> tuple[BaseGeometry, tuple[float, float]]:
    """A training chip centre for a polygon, in source pixels ``(row, col)``: one of the chips inference would
    read (:func:`detect.judge.plot_chip_centres`), moved by up to a fifth of a chip."""
    poly_px, centres = plot_chip_centres(geom, source.info, spec)
    row, col = centres[int(rng.integers(len(centres)))]
    jitter_rows = 0.2 * spec.chip_m / source.info.gsd_m[0]
    jitter_cols = 0.2 * spec.chip_m / source.info.gsd_m[1]
    return poly_px, (row + rng.uniform(-jitter_rows, jitter_rows), col + rng.uniform(-jitter_cols, jitter_cols))


class JudgeChips(Dataset):
    """Balanced judge chips, drawn afresh each epoch (:meth:`set_epoch`) and reproducible from the seed.

    Half the chips are positives (true candidates and labelled plots, equally likely per polygon); the other
    half are negatives: false candidates, or with ``random_share`` (of the negatives) a random outline on the
    background, also when there are no false candidates.

    Args:
        sources: The training orthomosaics.
        candidates: Positives and negatives on them (see :class:`Candidate`).
        spec: The judge's chip settings.
        chips_per_epoch: Chips per epoch.
        seed: Seed of every draw.
        gsd_jitter: Chips are read at the judge GSD times ``U(1/(1+j), 1+j)`` (log-uniform).
        random_share: Share of the negatives that are random background outlines.
        augment: Apply the training augmentation preset.
    """

    def __init__(
        self,
        sources: Sequence[ChipSource],
        candidates: Sequence[Candidate],
        spec: JudgeSpec,
        *,
        chips_per_epoch: int,
        seed: int,
        gsd_jitter: float = 0.25,
        random_share: float = 0.2,
        augment: bool = True,
    ) -> None:
        self.sources = list(sources)
        self.pos = [c for c in candidates if c.positive]
        self.neg = [c for c in candidates if not c.positive]
        if not self.pos:
            raise InputError("the judge has no positive plots to learn from; give training scenes with poppy labels")
        self.spec = spec
        self.chips_per_epoch = chips_per_epoch
        self.seed = seed
        self.gsd_jitter = gsd_jitter
        self.random_share = random_share if self.neg else 1.0
        self.transform = train_augment() if augment else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.chips_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        positive = index % 2 == 0
        if positive:
            cand = self.pos[int(rng.integers(len(self.pos)))]
            source, geom = self.sources[cand.source], cand.geom
        elif rng.random() < self.random_share:
            source = self.sources[int(rng.integers(len(self.sources)))]
            geom = _random_outline(rng, source)
            if geom is None:  # a sliver footprint: fall back to a false candidate, or any spot of the raster
                geom = shapely.box(*source.region.bounds)
        else:
            cand = self.neg[int(rng.integers(len(self.neg)))]
            source, geom = self.sources[cand.source], cand.geom
        poly_px, centre = _chip_centre(rng, source, geom, self.spec)
        gsd = self.spec.gsd_m * math.exp(rng.uniform(-1.0, 1.0) * math.log1p(self.gsd_jitter))
        rgb, mask = read_judge_chip(source.dataset(), source.info, poly_px, centre, self.spec.chip_px, gsd)
        if self.transform is not None:
            image, m = self.transform(
                torch.from_numpy(rgb.astype(np.float32) / 255.0), torch.from_numpy(mask.astype(np.int64)), rng
            )
            rgb = (image.numpy() * 255.0).round().astype(np.uint8)
            mask = m.numpy() > 0
        x = judge_input(rgb, mask, self.spec)
        return torch.from_numpy(x), torch.tensor(1.0 if positive else 0.0)


# --- the run ----------------------------------------------------------------------------------------------------


@dataclass
class JudgeReport:
    """What validation of the judge found.

    Attributes:
        candidates: Validation candidates judged.
        true_candidates: Of those, true ones.
        labels: Labelled plots on the validation scenes.
        proposed: Labelled plots the first stage found at all (the judge's recall ceiling).
        auc: Area under the ROC curve of the judge's logits over the candidates.
        calibration: Platt ``(a, b)``.
        ece: Expected calibration error of the calibrated scores (out of sample where the folds allow, see
            :func:`cross_fitted_scores`).
        curve: The precision-recall curve rows ``[threshold, precision, recall, kept]``.
        points: The operating points.
        reliability: The reliability table.
        log: Per-epoch training rows.
    """

    candidates: int
    true_candidates: int
    labels: int
    proposed: int
    auc: float
    calibration: tuple[float, float]
    ece: float
    curve: list[list[float]]
    points: dict[str, dict[str, float]]
    reliability: list[dict[str, float]]
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def table(self) -> str:
        """The report as text: counts, the operating points and the reliability table."""
        lines = [
            f"validation: {self.candidates} candidates ({self.true_candidates} true) for {self.labels} labelled "
            f"plots, {self.proposed} of them proposed by the first stage; judge AUC {self.auc:.3f}; Platt a "
            f"{self.calibration[0]:.3f} b {self.calibration[1]:.3f}; calibration error {self.ece:.3f}",
            "operating point   threshold  precision  recall",
        ]
        for name, p in self.points.items():
            lines.append(f"{name:<17} {p['threshold']:>9.3f} {p['precision']:>10.3f} {p['recall']:>7.3f}")
        lines.append("score bin     plots  mean score  share poppy")
        for r in self.reliability:
            if r["n"]:
                lines.append(
                    f"{r['lo']:.1f}-{r['hi']:.1f}     {r['n']:>5}  {r['mean_score']:>10.3f}  {r['share_true']:>11.3f}"
                )
        return "\n".join(lines)


def roc_auc(logits: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); NaN without both classes."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = x[y], x[~y]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def scene_candidates(
    sources: Sequence[ChipSource],
    model: nn.Module,
    spec: ModelSpec,
    *,
    threshold: float,
    device: str | torch.device,
    min_area_m2: float,
    say: Callable[[str], None] = lambda s: None,
) -> tuple[list[Candidate], list[int]]:
    """Run the first stage on every source and match its proposals: the candidates, and per source how many
    labelled plots it has (proposals first, then the labels as positives of kind ``"label"``)."""
    out: list[Candidate] = []
    n_labels: list[int] = []
    with tempfile.TemporaryDirectory(prefix="poppy-judge-") as tmp:
        for k, source in enumerate(sources):
            t0 = time.perf_counter()
            labels = list(source.positive_geoms)
            preds = propose(
                source, model, spec, threshold=threshold, work_dir=Path(tmp), device=device, min_area_m2=min_area_m2
            )
            preds = [(g, a) for g, a in preds if shapely.intersects(g, source.region)]
            is_true, found_by = match_candidates(labels, preds)
            out += [
                Candidate(k, g, bool(t), "proposal", f) for (g, _), t, f in zip(preds, is_true, found_by, strict=True)
            ]
            out += [Candidate(k, g, True, "label") for g in labels]
            n_labels.append(len(labels))
            say(
                f"  {Path(source.path).name}: {len(preds)} proposals, {int(is_true.sum())} true, "
                f"{len(labels)} labels ({time.perf_counter() - t0:.1f} s)"
            )
    return out, n_labels


def train_judge(
    train_sources: Sequence[ChipSource],
    val_sources: Sequence[ChipSource],
    stage1: nn.Module,
    stage1_spec: ModelSpec,
    *,
    spec: JudgeSpec | None = None,
    epochs: int = 8,
    chips_per_epoch: int = 2000,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    min_area_m2: float = 1.0,
    say: Callable[[str], None] = print,
) -> tuple[nn.Module, JudgeSpec, JudgeReport]:
    """Train, validate and calibrate a judge for a first-stage model.

    Args:
        train_sources: Training orthomosaics with labels.
        val_sources: Validation orthomosaics with labels (never the training ones).
        stage1: The first-stage network.
        stage1_spec: Its spec; its ``threshold`` is the proposal threshold.
        spec: The judge's chip and network settings (defaults: :class:`JudgeSpec`).
        epochs: Training epochs.
        chips_per_epoch: Chips per epoch.
        batch_size: Chips per step.
        lr: AdamW peak learning rate (cosine decay after a short warm-up).
        seed: Seed of the network's initial weights and of every chip.
        device: Where to train.
        min_area_m2: Smallest proposal, as infer.py's ``--min-area-m2``.
        say: Where progress lines go.

    Returns:
        ``(judge network in eval mode, its spec with calibration, curve and operating points, the report)``.

    Raises:
        InputError: Without positives to train on, or too few validation candidates to calibrate.
    """
    spec = spec or JudgeSpec()
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    say(f"first stage at threshold {stage1_spec.threshold:.2f} on {len(train_sources)} training orthomosaics:")
    train_cands, _ = scene_candidates(
        train_sources, stage1, stage1_spec, threshold=stage1_spec.threshold, device=device,
        min_area_m2=min_area_m2, say=say,
    )  # fmt: skip
    say(f"... and on {len(val_sources)} validation orthomosaics:")
    val_cands, val_labels = scene_candidates(
        val_sources, stage1, stage1_spec, threshold=stage1_spec.threshold, device=device,
        min_area_m2=min_area_m2, say=say,
    )  # fmt: skip
    say(f"proposals took {time.perf_counter() - t0:.0f} s")
    chips = JudgeChips(train_sources, train_cands, spec, chips_per_epoch=chips_per_epoch, seed=seed)
    model = spec.build().to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * math.ceil(chips_per_epoch / batch_size)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / steps)))
    )
    rows = []
    for epoch in range(epochs):
        chips.set_epoch(epoch)
        loader = DataLoader(chips, batch_size=batch_size, shuffle=False, num_workers=0)
        model.train()
        t_epoch, total, n = time.perf_counter(), 0.0, 0
        for x, y in loader:
            loss = nn.functional.binary_cross_entropy_with_logits(model(x.to(device)), y.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total, n = total + float(loss.detach()) * len(y), n + len(y)
        rows.append({"epoch": epoch + 1, "loss": total / n, "seconds": time.perf_counter() - t_epoch})
        say(f"judge epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({rows[-1]['seconds']:.0f} s)")
    model.eval()
    spec, report = validate_judge(model, spec, val_sources, val_cands, val_labels, device=device)
    report.log = rows
    return model, spec, report


def validate_judge(
    model: nn.Module,
    spec: JudgeSpec,
    sources: Sequence[ChipSource],
    candidates: Sequence[Candidate],
    n_labels: Sequence[int],
    *,
    device: str | torch.device = "cpu",
) -> tuple[JudgeSpec, JudgeReport]:
    """Judge the validation proposals as inference does, calibrate, and place the operating points.

    Returns:
        The spec with calibration, curve, points and metrics filled in, and the report.
    """
    proposals = [c for c in candidates if c.kind == "proposal"]
    logits = np.zeros(len(proposals))
    for k, source in enumerate(sources):
        idx = [i for i, c in enumerate(proposals) if c.source == k]
        if idx:
            logits[idx], _ = score_plots(
                source.dataset(), source.info, [proposals[i].geom for i in idx], model, spec, device=device
            )
    is_true = np.array([c.positive for c in proposals], dtype=bool)
    a, b = fit_platt(logits, is_true)
    scores, scored_by = cross_fitted_scores(logits, is_true, np.array([c.source for c in proposals]))
    # Label indexes made unique across scenes, so a plot is counted once however many proposals find it.
    offsets = np.concatenate([[0], np.cumsum(n_labels)])
    found_by = [tuple(int(offsets[c.source]) + i for i in c.found) for c in proposals]
    total_labels = int(offsets[-1])
    curve = pr_curve(scores, is_true, found_by, total_labels, CURVE_THRESHOLDS)
    points = choose_operating_points(curve)
    table = reliability(scores, is_true)
    proposed = len({j for f in found_by for j in f})
    report = JudgeReport(
        candidates=len(proposals),
        true_candidates=int(is_true.sum()),
        labels=total_labels,
        proposed=proposed,
        auc=roc_auc(logits, is_true),
        calibration=(a, b),
        ece=expected_calibration_error(table),
        curve=curve,
        points=points,
        reliability=table,
    )
    metrics = {
        "calibration_check": scored_by,
        "candidates": report.candidates,
        "true_candidates": report.true_candidates,
        "labels": total_labels,
        "proposed": proposed,
        "auc": report.auc,
        "ece": report.ece,
        "reliability": table,
    }
    spec = dataclasses.replace(
        spec, calibration=(a, b), operating_points=points, pr_curve=[r[:3] for r in curve], metrics=metrics
    )
    return spec, report


def write_judge_report(out: Path, report: JudgeReport, **extra: Any) -> None:
    """Write ``judge_report.txt`` (the table) and ``judge_report.json`` (curve, points, reliability, training log
    and ``extra``, e.g. the first stage and the seconds taken) into ``out``."""
    (out / "judge_report.txt").write_text(report.table() + "\n")
    record = {
        **extra,
        "candidates": report.candidates,
        "true_candidates": report.true_candidates,
        "labels": report.labels,
        "proposed": report.proposed,
        "auc": report.auc,
        "ece": report.ece,
        "calibration": list(report.calibration),
        "points": report.points,
        "curve": report.curve,
        "reliability": report.reliability,
        "log": report.log,
    }
    (out / "judge_report.json").write_text(json.dumps(record, indent=1) + "\n")
