"""The second stage: judge each candidate plot at full resolution and give it a calibrated score.

The first stage (a segmentation network) proposes candidate plots, recall first. For each candidate this module
reads chips of the orthomosaic at the judge's GSD (3 cm: single flowers and capsules are a few pixels), centred on
the candidate (or, for a plot wider than a chip, on up to ``max_chips`` points spread over it), with a fourth
channel marking the candidate polygon. The judge network (:mod:`models.plotnet`) gives one logit per chip; a
plot's logit is the mean over its chips, and its score is the Platt-calibrated probability
``sigmoid(a * logit + b)`` fitted on validation candidates, so a score of 0.8 means about 8 in 10 such plots were
poppy there.

Chip centres are chosen in a local metric frame of the raster's pixel grid (column x column-GSD, row x row-GSD),
so the same plot gets the same chips in any CRS, geographic ones included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.features import geometry_mask
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely import affinity
from shapely.geometry.base import BaseGeometry
from torch import nn

from core.errors import InputError
from detect.raster import RasterInfo, read_window
from detect.vectorize import DetectedPlot
from models.checkpoint import ModelSpec
from models.plotnet import JudgeSpec

__all__ = [
    "OPERATING_POINTS",
    "OperatingPoint",
    "calibrate",
    "chip_centres",
    "choose_operating_points",
    "judge_input",
    "judge_plots",
    "plot_chip_centres",
    "read_judge_chip",
    "resolve_operating_point",
    "score_plots",
]

# The named operating points infer.py's --sensitivity picks from (see choose_operating_points).
OPERATING_POINTS = ("high", "balanced", "low")


def _metric_frame(info: RasterInfo) -> Affine:
    """Source pixel (col, row) -> local metres (x east-ish, y down): the pixel grid scaled by the measured GSD."""
    return Affine.scale(info.gsd_m[1], info.gsd_m[0])


def chip_centres(poly_m: BaseGeometry, chip_m: float, max_chips: int) -> list[tuple[float, float]]:
    """Where to centre a plot's chips, in the same metric frame as ``poly_m``.

    A plot that fits in the middle 80 % of one chip gets one chip at its bounding-box centre, so the whole plot
    and a margin of its surroundings are in view. A larger plot gets points of a grid spaced at 0.75 chips that
    lie inside it (so each chip shows mostly plot), up to ``max_chips`` of them chosen by farthest-point sampling
    from the plot's representative point: spread over the plot, the same for the same polygon.

    Args:
        poly_m: The candidate plot (Polygon or MultiPolygon) in metres.
        chip_m: Chip side in metres.
        max_chips: Most centres returned (at least 1).

    Returns:
        ``[(x, y), ...]``, at least one point.
    """
    minx, miny, maxx, maxy = poly_m.bounds
    if max(maxx - minx, maxy - miny) <= 0.8 * chip_m or max_chips <= 1:
        return [((minx + maxx) / 2.0, (miny + maxy) / 2.0)]
    step = 0.75 * chip_m
    # Grid points at least half a chip from the bounding box, so a chip on them does not reach past the box.
    xs = np.arange(minx + chip_m / 2.0, maxx - chip_m / 2.0 + 1e-9, step)
    ys = np.arange(miny + chip_m / 2.0, maxy - chip_m / 2.0 + 1e-9, step)
    grid = [(float(x), float(y)) for y in ys for x in xs]
    inside = shapely.contains_xy(poly_m, np.array([g[0] for g in grid]), np.array([g[1] for g in grid])) if grid else []
    candidates = [g for g, ok in zip(grid, inside, strict=True) if ok]
    start = poly_m.representative_point()
    chosen = [(start.x, start.y)]
    pool = np.array(candidates, dtype=float).reshape(-1, 2)
    while len(chosen) < max_chips and len(pool):
        picked = np.array(chosen)
        d = np.min(np.hypot(pool[:, None, 0] - picked[None, :, 0], pool[:, None, 1] - picked[None, :, 1]), axis=1)
        far = int(np.argmax(d))
        if d[far] < 0.5 * step:  # the rest are already covered by a chosen chip
            break
        chosen.append((float(pool[far, 0]), float(pool[far, 1])))
        pool = np.delete(pool, far, axis=0)
    return chosen


def read_judge_chip(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    poly_px: BaseGeometry,
    centre_px: tuple[float, float],
    chip_px: int,
    gsd_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one judge chip: RGB resampled to ``gsd_m`` around a centre, and the candidate's mask on it.

    Args:
        ds: The open orthomosaic.
        info: Its description.
        poly_px: The candidate polygon in the raster's pixel coordinates (x = column, y = row).
        centre_px: ``(row, col)`` of the chip centre in source pixels (fractional allowed).
        chip_px: Chip side in output pixels.
        gsd_m: Output ground sample distance, metres per pixel.

    Returns:
        ``(rgb, mask)``: ``uint8 [3, chip_px, chip_px]`` (0 outside the footprint) and ``bool [chip_px, chip_px]``
        (True inside the candidate).
    """
    height = chip_px * gsd_m / info.gsd_m[0]
    width = chip_px * gsd_m / info.gsd_m[1]
    window = Window(centre_px[1] - width / 2.0, centre_px[0] - height / 2.0, width, height)
    rgb, _ = read_window(ds, info, window, out_shape=(chip_px, chip_px))
    # Pixel coordinates of the candidate -> chip pixel coordinates (identity transform on the source grid).
    to_chip = window_transform(window, Affine.identity()) * Affine.scale(width / chip_px, height / chip_px)
    mask = geometry_mask([poly_px], (chip_px, chip_px), to_chip, invert=True, all_touched=False)
    return rgb, mask


def judge_input(rgb: np.ndarray, mask: np.ndarray, spec: JudgeSpec) -> np.ndarray:
    """The network input for chips: normalised RGB and the mask as a fourth channel, ``float32 [..., 4, H, W]``."""
    x = rgb.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    x = (x - mean) / std
    m = mask.astype(np.float32)[..., None, :, :] * 2.0 - 1.0
    return np.concatenate([x, m], axis=-3)


def _to_pixels(geom: BaseGeometry, transform: Affine) -> BaseGeometry:
    inv = ~transform
    return affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])


def plot_chip_centres(geom_crs: BaseGeometry, info: RasterInfo, spec: JudgeSpec) -> tuple[BaseGeometry, list]:
    """A plot in the raster's CRS -> ``(polygon in source pixels, [(row, col) chip centres])``."""
    poly_px = _to_pixels(geom_crs, info.transform)
    frame = _metric_frame(info)
    poly_m = affinity.affine_transform(poly_px, [frame.a, frame.b, frame.d, frame.e, frame.xoff, frame.yoff])
    centres = chip_centres(poly_m, spec.chip_m, spec.max_chips)
    return poly_px, [(y / info.gsd_m[0], x / info.gsd_m[1]) for x, y in centres]


def score_plots(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    geoms: Sequence[BaseGeometry],
    model: nn.Module,
    spec: JudgeSpec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Judge each candidate plot: its mean chip logit and its calibrated probability.

    Args:
        ds: The open orthomosaic the candidates were found in.
        info: Its description.
        geoms: Candidate plots in the raster's CRS.
        model: The judge network (put in eval mode here).
        spec: The judge's spec (chips, normalisation, calibration).
        device: Where the network runs.
        batch_size: Chips per forward pass.

    Returns:
        ``(logits, scores)``: two ``float64`` arrays, one value per plot, in the order given.
    """
    owners: list[int] = []
    chips: list[np.ndarray] = []
    for i, geom in enumerate(geoms):
        poly_px, centres = plot_chip_centres(geom, info, spec)
        for centre in centres:
            rgb, mask = read_judge_chip(ds, info, poly_px, centre, spec.chip_px, spec.gsd_m)
            chips.append(judge_input(rgb, mask, spec))
            owners.append(i)
    logits = np.zeros(len(geoms), dtype=np.float64)
    counts = np.zeros(len(geoms), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(chips), batch_size):
                x = torch.from_numpy(np.stack(chips[start : start + batch_size])).to(device)
                out = model(x).float().cpu().numpy().astype(np.float64)
                np.add.at(logits, owners[start : start + batch_size], out)
                np.add.at(counts, owners[start : start + batch_size], 1.0)
    finally:
        model.train(was_training)
    logits = np.divide(logits, counts, out=np.zeros_like(logits), where=counts > 0)
    return logits, calibrate(logits, spec.calibration)


def judge_plots(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    plots: Sequence[DetectedPlot],
    model: nn.Module,
    spec: JudgeSpec,
    threshold: float,
    *,
    device: torch.device | str = "cpu",
) -> list[DetectedPlot]:
    """The second stage over the first stage's plots: score each, keep those at or above ``threshold``.

    Kept plots carry the judge's calibrated probability as ``judge_score`` and are numbered again ``P001, ...``
    in the first stage's order (north to south, then west to east), so the numbers have no gaps.

    Args:
        ds: The open orthomosaic the plots were found in.
        info: Its description.
        plots: The first stage's plots (in the raster's CRS).
        model: The judge network.
        spec: The judge's spec.
        threshold: The plot-score threshold of the operating point.
        device: Where the judge runs.

    Returns:
        The kept plots.
    """
    if not plots:
        return []
    _, scores = score_plots(ds, info, [p.geometry for p in plots], model, spec, device=device)
    kept = [(p, float(s)) for p, s in zip(plots, scores, strict=True) if s >= threshold]
    digits = max(3, len(str(len(kept))))
    return [dataclasses.replace(p, plot_id=f"P{i:0{digits}d}", judge_score=s) for i, (p, s) in enumerate(kept, start=1)]


def calibrate(logits: np.ndarray, calibration: tuple[float, float]) -> np.ndarray:
    """Platt scaling: ``sigmoid(a * logit + b)``."""
    a, b = calibration
    z = np.clip(a * np.asarray(logits, dtype=np.float64) + b, -50.0, 50.0)
    return 1.0 / (1.0 + np.exp(-z))


def choose_operating_points(curve: Sequence[Sequence[float]]) -> dict[str, dict[str, float]]:
    """The three named operating points on a validation precision-recall curve.

    * ``high`` (sensitivity high, recall first): the best precision among thresholds with recall >= 0.95, else
      the highest recall (then the best precision);
    * ``balanced``: the best F1;
    * ``low`` (precision first): the best recall among thresholds with precision >= 0.90, else the best precision.

    Args:
        curve: Rows ``[threshold, precision, recall, kept]`` from :func:`pr_curve`.

    Returns:
        ``{name: {"threshold", "precision", "recall"}}``.
    """
    rows = [tuple(map(float, r[:3])) for r in curve]
    if not rows:
        raise InputError("no precision-recall curve to choose operating points from")

    def f1(r: tuple[float, float, float]) -> float:
        return 0.0 if r[1] + r[2] == 0 else 2 * r[1] * r[2] / (r[1] + r[2])

    high = [r for r in rows if r[2] >= 0.95]
    high_pick = max(high, key=lambda r: (r[1], r[0])) if high else max(rows, key=lambda r: (r[2], r[1], -r[0]))
    balanced = max(rows, key=lambda r: (f1(r), r[0]))
    low = [r for r in rows if r[1] >= 0.90 and r[2] > 0]
    low_pick = max(low, key=lambda r: (r[2], -r[0])) if low else max(rows, key=lambda r: (r[1], r[2]))
    return {
        name: {"threshold": r[0], "precision": r[1], "recall": r[2]}
        for name, r in (("high", high_pick), ("balanced", balanced), ("low", low_pick))
    }


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold a run uses, and what it did on validation.

    Attributes:
        sensitivity: ``high``, ``balanced`` or ``low``; ``custom`` for a threshold given by hand.
        threshold: The threshold.
        applies_to: ``"plot score"`` (two-stage model: the judge's calibrated probability per plot) or
            ``"pixel probability"`` (one-stage model: the segmentation threshold).
        precision: Plot precision on the model's validation scenes at this threshold (None if unknown).
        recall: Plot recall there (None if unknown).
        note: Where the point comes from, for the summary.
    """

    sensitivity: str
    threshold: float
    applies_to: str
    precision: float | None
    recall: float | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_operating_point(
    spec: ModelSpec, judge: JudgeSpec | None, sensitivity: str, threshold: float | None = None
) -> OperatingPoint:
    """Pick the threshold for ``infer.py --sensitivity`` (or ``--threshold``, which wins).

    A two-stage model carries its points in the judge (:attr:`JudgeSpec.operating_points`, on plot scores). A
    one-stage model's points come from the threshold sweep of its validation stored in ``spec.metrics``; a model
    with neither (an old or hand-made checkpoint) uses its default threshold for every sensitivity, and says so.

    Raises:
        InputError: For an unknown sensitivity.
    """
    if sensitivity not in OPERATING_POINTS:
        raise InputError(f"--sensitivity {sensitivity}: choose one of {', '.join(OPERATING_POINTS)}")
    applies_to = "plot score" if judge is not None else "pixel probability"
    if threshold is not None:
        return OperatingPoint("custom", float(threshold), applies_to, None, None, "given with --threshold")
    if judge is not None:
        points = judge.operating_points
        note = "chosen on the judge's validation candidates"
    else:
        sweep = spec.metrics.get("thresholds") if isinstance(spec.metrics, dict) else None
        rows = [
            [r["threshold"], r["plot_precision"], r["plot_recall"]]
            for r in sweep or []
            if r.get("plot_precision") is not None and r.get("plot_recall") is not None
        ]
        points = choose_operating_points(rows) if rows else {}
        note = "chosen on the model's validation threshold sweep"
    if sensitivity not in points:
        return OperatingPoint(
            sensitivity, float(spec.threshold), applies_to, None, None,
            "the checkpoint stores no operating points: its default threshold",
        )  # fmt: skip
    p = points[sensitivity]
    return OperatingPoint(sensitivity, float(p["threshold"]), applies_to, p["precision"], p["recall"], note)
