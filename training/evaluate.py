"""Validation that means something: whole orthomosaics, plots on the map, the numbers a survey team cares about.

A validation scene is scored along the very path ``infer.py`` takes: :func:`detect.predict.predict_raster`
writes the probability GeoTIFF once, then :func:`detect.vectorize.vectorize` turns it into plots at every
candidate threshold (one cheap pass per threshold; thresholds above the raster's highest probability are known
to give no plot and are skipped). The plots are then compared with the label polygons in two ways:

- **Plots** (what police act on). A predicted plot is *true* when at least 10 % of its area lies on labels, or
  it covers at least 10 % of some label while being no larger than 10 times that label or 100 m2 (larger, it is
  a blob painted over the field, not a detection). A label plot is *found* when true predicted plots cover at
  least 10 % of its area (or at least 0.5 m2 of it, for big fields that a detection touches only in part).
  Plot precision is true predictions / predictions, plot recall found labels / labels. Areas are geodesic
  (:class:`pyproj.Geod`). Without the blob rule, an untrained network that paints everything scores plot
  precision and recall 1.0 and the sweep chooses its threshold.
- **Pixels** (how well outlines fit). The plots are burnt back onto the model grid strip by strip, the labels
  too (:func:`datasets.labels.rasterize_window`), and pixel IoU, precision and recall are counted over the valid
  footprint (read from the orthomosaic with :func:`detect.raster.read_footprint` at the model grid) inside the area
  of interest (AOI). No array is ever the size of the orthomosaic.

False-positive area is the area of predicted plots (or their parts) off every label, per hectare of valid,
labelled ground: the number that says how much a poppy-free survey costs the team in wasted checks.

Everything is counted per scene and per threshold, then pooled over scenes. :func:`choose_threshold` picks the
threshold with plot recall >= 0.95 and the best plot precision; :class:`EvalReport` breaks the chosen
threshold's numbers down by growth stage and ground-resolution bin. Predictions and labels wholly outside the
AOI are not counted; those partly outside count with their inside part.

The same scoring applies to finished ``infer.py`` outputs (:func:`evaluate_plot_files`), so the numbers of a
deployed model can be checked against the ones training reported.

This module scores; the rules live beside it: :mod:`training.matching` (which plots are true and found),
:mod:`training.pixels` (pixel counts), :mod:`training.report` (pooling, threshold choice, tables) and
:mod:`datasets.labelled` (what a labelled scene is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import torch
from shapely.geometry.base import BaseGeometry
from torch import nn

from core.errors import InputError
from datasets.labelled import LabelledScene
from datasets.labels import LabelSet, read_labels
from datasets.reviewed import read_label_sets, units_per_metre
from detect.judge import score_plots
from detect.pipeline import detect_plots
from detect.predict import model_grid
from detect.raster import inspect_raster, open_raster
from detect.vectorize import Sweep, VectorParams, vectorize, vectorize_sweep
from models.checkpoint import ModelSpec
from models.plotnet import JudgeSpec
from training.matching import area_m2, clip, lonlat_transformer, match
from training.pixels import EvalGrid, count_pixels
from training.report import DEFAULT_THRESHOLDS, TARGET_RECALL, EvalReport, PlotCounts, SceneResult, summarise

__all__ = [
    "evaluate_judged",
    "evaluate_plot_files",
    "evaluate_plots",
    "evaluate_prob_raster",
    "evaluate_scenes",
    "judged_plots",
]


def _scene_stage(scene: LabelledScene, label_stages: Sequence[str | None]) -> str | None:
    if scene.stage is not None:
        return scene.stage
    stages = {s for s in label_stages if s is not None}
    if len(stages) == 1:
        return stages.pop()
    return "mixed" if stages else None


def evaluate_plots(
    scene: LabelledScene,
    plots: Mapping[float, Sequence[BaseGeometry]],
    grid: EvalGrid,
) -> SceneResult:
    """Score predicted plots of one scene at one or more thresholds against its labels.

    Args:
        scene: The scene (orthomosaic, labels, optional AOI).
        plots: Predicted plot polygons in the orthomosaic's CRS, per threshold.
        grid: The grid on which pixel scores are counted (the model grid; see :func:`evaluate_prob_raster`).

    Returns:
        The scene's counts per threshold (ascending).

    Raises:
        InputError: If the raster or the label files cannot be used.
    """
    thresholds = tuple(sorted(plots))
    with open_raster(scene.raster) as ds:
        info = inspect_raster(ds)
        crs = info.crs
        to_lonlat = lonlat_transformer(crs)
        # A reviewed scene's labels are its confirmed and added plots, its AOI the reviewed ground: scored alike.
        labels, aoi, _ = read_label_sets(
            scene.labels, scene.aoi, crs, ds.bounds, per_metre=units_per_metre(info.transform, info.gsd_m),
            unreviewed_as=scene.unreviewed_as,
        )  # fmt: skip
        region = shapely.box(*ds.bounds)
        if aoi is not None:
            region = shapely.intersection(region, shapely.union_all(aoi.geometries))
        shapely.prepare(region)

        kept = clip(labels.geometries, region)
        label_geoms = [g for _, g in kept]
        label_areas = np.array([area_m2(g, to_lonlat) for g in label_geoms], dtype=float)
        label_stages = [
            (str(labels.properties[i]["stage"]) if labels.properties[i].get("stage") not in (None, "") else scene.stage)
            for i, _ in kept
        ]

        # -- plot level, per threshold --
        n_t = len(thresholds)
        label_found = np.zeros((n_t, len(label_geoms)), dtype=bool)
        per_t: list[dict[str, Any]] = []
        pred_sets: list[LabelSet | None] = []
        for k, t in enumerate(thresholds):
            preds = [g for _, g in clip(plots[t], region)]
            found, true_preds, fp_area = match(label_geoms, label_areas, preds, to_lonlat)
            label_found[k] = found
            per_t.append({"preds": len(preds), "true_preds": true_preds, "fp_area_m2": fp_area})
            pred_sets.append(LabelSet(list(plots[t]), [{} for _ in plots[t]], crs) if len(plots[t]) else None)

        # -- pixel level, strip by strip on the model grid --
        px = count_pixels(ds, info, labels, aoi, pred_sets, grid)

    counts = [
        PlotCounts(
            labels=len(label_geoms),
            found=int(label_found[k].sum()),
            preds=per_t[k]["preds"],
            true_preds=per_t[k]["true_preds"],
            fp_area_m2=float(per_t[k]["fp_area_m2"]),
            tp_px=int(px.tp[k]),
            fp_px=int(px.fp[k]),
            fn_px=int(px.fn[k]),
            valid_m2=px.valid_m2,
        )
        for k in range(n_t)
    ]
    return SceneResult(
        name=scene.name,
        stage=_scene_stage(scene, label_stages),
        gsd_m=scene.gsd_m if scene.gsd_m is not None else info.mean_gsd_m,
        thresholds=thresholds,
        counts=counts,
        label_stages=label_stages,
        label_found=label_found,
    )


def _check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    ts = tuple(sorted({round(float(t), 6) for t in thresholds}))
    if not ts:
        raise InputError("no thresholds to evaluate; give at least one between 0 and 1")
    bad = [t for t in ts if not 0.0 < t < 1.0]
    if bad:
        raise InputError(f"thresholds {bad}: each must be between 0 and 1 (e.g. 0.05 ... 0.95)")
    return ts


def evaluate_prob_raster(
    scene: LabelledScene,
    prob_path: str | Path,
    *,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    params: VectorParams | None = None,
) -> SceneResult:
    """Score a probability raster (from :func:`detect.predict.predict_raster`) of one scene at many thresholds.

    The raster is vectorised once per threshold with ``params`` (its threshold replaced); thresholds above the
    raster's highest value give no plot and are not vectorised.

    Args:
        scene: The scene the raster was predicted from.
        prob_path: The ``uint8`` probability GeoTIFF, on the model grid in the orthomosaic's CRS.
        thresholds: Candidate thresholds.
        params: Vectorising settings (minimum area, clean-up); defaults to :class:`VectorParams()`.

    Returns:
        The scene's counts per threshold.
    """
    ts = _check_thresholds(thresholds)
    params = params or VectorParams()
    with open_raster(prob_path) as prob:
        if prob.count != 1 or prob.crs is None:
            raise InputError(f"{prob_path}: not a probability raster (one band with a CRS)")
        prob_crs = prob.crs
    with open_raster(scene.raster) as ds:
        if ds.crs != prob_crs:
            raise InputError(f"{prob_path}: its CRS differs from {scene.raster}'s; it was not predicted from it")
    return _score_sweep(scene, vectorize_sweep(prob_path, params, ts, source=scene.raster.name))


def judged_plots(
    scene: LabelledScene,
    prob_path: str | Path,
    stage1_threshold: float,
    judge: nn.Module,
    judge_spec: JudgeSpec,
    *,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    params: VectorParams | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[float, list[BaseGeometry]], EvalGrid]:
    """A two-stage model's plots on one scene at each plot-score threshold: the first stage's plots at its own
    threshold, judged as inference judges them (:func:`detect.judge.score_plots`), kept where their score reaches
    the threshold; with the probability raster's grid (for pixel counts).

    Args:
        scene: The scene the probability raster was predicted from.
        prob_path: The first stage's probability raster of the scene.
        stage1_threshold: The first stage's (recall-first) threshold.
        judge: The judge network.
        judge_spec: Its spec (chips, calibration).
        thresholds: Plot-score thresholds.
        params: Vectorising settings (minimum area, clean-up); the threshold is ``stage1_threshold``.
        device: Where the judge runs.
    """
    ts = _check_thresholds(thresholds)
    params = dataclasses.replace(params or VectorParams(), threshold=stage1_threshold)
    proposals = [p.geometry for p in vectorize(prob_path, params, source=scene.raster.name).plots]
    scores: Sequence[float] = []
    if proposals:
        with open_raster(scene.raster) as ds:
            _, scores = score_plots(ds, inspect_raster(ds), proposals, judge, judge_spec, device=device)
    with open_raster(prob_path) as prob:
        grid = EvalGrid(prob.height, prob.width, prob.transform)
    return {t: [g for g, s in zip(proposals, scores, strict=True) if s >= t] for t in ts}, grid


def evaluate_judged(
    scene: LabelledScene,
    prob_path: str | Path,
    stage1_threshold: float,
    judge: nn.Module,
    judge_spec: JudgeSpec,
    **kwargs: Any,
) -> SceneResult:
    """Score a two-stage model on one scene at each plot-score threshold (arguments as :func:`judged_plots`)."""
    plots, grid = judged_plots(scene, prob_path, stage1_threshold, judge, judge_spec, **kwargs)
    return evaluate_plots(scene, plots, grid)


def _score_sweep(scene: LabelledScene, sweep: Sweep) -> SceneResult:
    """Score a threshold sweep's plots, counting pixels on the probability raster's grid."""
    plots = {t: [p.geometry for p in ps] for t, ps in sweep.plots.items()}
    return evaluate_plots(scene, plots, EvalGrid(sweep.height, sweep.width, sweep.transform))


def evaluate_plot_files(
    pairs: Sequence[tuple[LabelledScene, str | Path]],
    *,
    gsd_m: float,
    threshold: float,
    target_recall: float = TARGET_RECALL,
) -> EvalReport:
    """Score finished plot files (``infer.py``'s GeoPackage or GeoJSON) against labels, as training does.

    Args:
        pairs: ``(scene, plots file)`` per orthomosaic. The GeoPackage, in the raster's own CRS, reproduces the
            training numbers exactly; the GeoJSON (WGS84, rounded to about 1 cm) to within rounding.
        gsd_m: The model's GSD (``ModelSpec.gsd_m``, recorded in ``STEM.summary.json``): pixel scores are counted
            on the same model grid as in training.
        threshold: The threshold the plots were made with (for the report).
        target_recall: As in :func:`choose_threshold`.

    Returns:
        A report with one threshold.
    """
    (t,) = _check_thresholds([threshold])
    results = []
    for scene, path in pairs:
        with open_raster(scene.raster) as ds:
            info = inspect_raster(ds)
        mg = model_grid(info, gsd_m)
        preds = read_labels(path, info.crs).geometries
        results.append(evaluate_plots(scene, {t: preds}, EvalGrid(mg.height, mg.width, mg.transform)))
    return summarise(results, target_recall=target_recall)


def evaluate_scenes(
    model: nn.Module,
    spec: ModelSpec,
    scenes: Sequence[LabelledScene],
    *,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    device: str | torch.device = "cpu",
    min_area_m2: float = 1.0,
    tile: int | None = None,
    batch_size: int = 8,
    work_dir: str | Path | None = None,
    params: VectorParams | None = None,
    target_recall: float = TARGET_RECALL,
    progress: bool = False,
) -> EvalReport:
    """Validate a model on whole orthomosaics through the inference path.

    Each scene is predicted once and vectorised at every threshold (:func:`detect.pipeline.detect_plots`), then
    scored.

    Args:
        model: The network (its train/eval mode is restored afterwards).
        spec: Its spec (GSD, normalisation, tile size).
        scenes: Validation scenes.
        thresholds: Candidate thresholds.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        min_area_m2: Smallest plot kept (as ``infer.py --min-area-m2``).
        tile: Tile size in model pixels; None takes the spec's.
        batch_size: Tiles per forward pass.
        work_dir: Where probability rasters are kept (``NAME.prob.tif``, replaced each call); None uses a
            temporary file per scene, deleted once it is vectorised.
        params: Other vectorising settings; ``min_area_m2`` overrides its minimum area.
        target_recall: As in :func:`choose_threshold`.
        progress: Show progress bars.

    Returns:
        The pooled report.
    """
    if not scenes:
        raise InputError("no validation scenes; give --val-data or at least two labelled orthomosaics")
    ts = _check_thresholds(thresholds)
    params = dataclasses.replace(params or VectorParams(), min_area_m2=min_area_m2)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    results = []
    used: set[str] = set()
    for scene in scenes:
        stem = scene.name
        while stem in used:  # two folders can hold the same file name
            stem += "_"
        used.add(stem)
        det = detect_plots(
            scene.raster,
            model,
            spec,
            params,
            thresholds=ts,
            prob_path=Path(work_dir) / f"{stem}.prob.tif" if work_dir is not None else None,
            tile=tile,
            batch_size=batch_size,
            device=device,
            progress=progress,
            overwrite=True,
        )
        results.append(_score_sweep(scene, det.sweep))
    return summarise(results, target_recall=target_recall)
