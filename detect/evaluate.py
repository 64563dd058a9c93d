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
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import shapely
import torch
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from torch import nn

from datasets.labels import IGNORE, LabelSet, find_label_files, rasterize_window, read_labels, window_bounds
from detect.errors import InputError
from detect.predict import model_grid, predict_raster
from detect.raster import inspect_raster, open_raster, read_footprint, window_ground_size
from detect.vectorize import VectorParams, vectorize
from models.checkpoint import ModelSpec, normalise

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ClassReport",
    "EvalGrid",
    "EvalReport",
    "PlotCounts",
    "Scene",
    "SceneResult",
    "choose_threshold",
    "class_iou",
    "confusion_matrix",
    "evaluate_chips",
    "evaluate_plot_files",
    "evaluate_plots",
    "evaluate_prob_raster",
    "evaluate_scenes",
    "gsd_bin",
    "hold_out",
    "scenes_from_folder",
    "summarise",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
TARGET_RECALL = 0.95  # a missed plot costs a field season; a false one costs a look on screen
FOUND_FRACTION = 0.10  # share of a label (or of a prediction) that must overlap to count as a match
FOUND_AREA_M2 = 0.5  # ... or this much overlap, so a big field touched by a partial detection is still found
# A prediction that covers a label but is mostly off it is still a detection when no larger than this many times
# the label, or than a spot a field team checks at a glance; beyond that it is a blob painted over the field.
MAX_SPILL = 10.0
SPILL_AREA_M2 = 100.0
# GSD bins (upper bound in metres, name): police flights at 50-100 m give about 2.2-4.3 cm/px.
GSD_BINS: tuple[tuple[float, str], ...] = ((0.02, "<2 cm"), (0.035, "2-3.5 cm"), (math.inf, ">3.5 cm"))
_STRIP_PIXELS = 1 << 22  # pixels per strip of the pixel pass (about 4 M): bounds memory on wide rasters
_RASTER_SUFFIXES = (".tif", ".tiff")
_GEOD = Geod(ellps="WGS84")

T = TypeVar("T")


# --- scenes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One validation orthomosaic with its labels.

    Attributes:
        name: Short name for tables (the raster's stem).
        raster: The orthomosaic.
        labels: Poppy plot polygons (any format and CRS :func:`datasets.labels.read_labels` reads; an empty file
            for a poppy-free scene).
        aoi: Where labelling is complete; None for the whole raster.
        stage: Growth stage of the scene (from a ``NAME.json`` sidecar); None when not recorded.
        gsd_m: Nominal ground sample distance from the sidecar; None to measure it from the raster.
    """

    name: str
    raster: Path
    labels: Path
    aoi: Path | None = None
    stage: str | None = None
    gsd_m: float | None = None

    @classmethod
    def from_raster(cls, raster: str | Path, labels: str | Path | None = None, aoi: str | Path | None = None) -> Scene:
        """A scene by the folder convention: ``NAME.tif`` + ``NAME.geojson|.gpkg|.shp`` (+ ``NAME.aoi.geojson``,
        ``NAME.json`` sidecar with ``stage`` and ``gsd_m``).

        Raises:
            InputError: If no labels file is found or the sidecar is not valid JSON.
        """
        raster = Path(raster)
        found_labels, found_aoi = find_label_files(raster)
        labels = Path(labels) if labels is not None else found_labels
        if labels is None:
            raise InputError(
                f"{raster}: no labels found; save its poppy polygons as {raster.stem}.geojson next to it "
                "(an empty FeatureCollection for a poppy-free scene)"
            )
        aoi = Path(aoi) if aoi is not None else found_aoi
        stage, gsd = None, None
        sidecar = raster.with_suffix(".json")
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{sidecar}: not valid JSON ({exc}); fix or delete the sidecar") from exc
            if isinstance(meta, dict):
                stage = str(meta["stage"]) if meta.get("stage") not in (None, "") else None
                gsd = float(meta["gsd_m"]) if isinstance(meta.get("gsd_m"), int | float) else None
        return cls(name=raster.stem, raster=raster, labels=Path(labels), aoi=aoi, stage=stage, gsd_m=gsd)


def scenes_from_folder(folder: str | Path) -> list[Scene]:
    """Every labelled ``NAME.tif`` in a folder as a :class:`Scene`, sorted by name.

    Rasters without labels are skipped (they may be waiting to be labelled).

    Raises:
        InputError: If the folder is missing or holds no labelled raster.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{folder}: no such folder; give the folder holding NAME.tif + NAME.geojson pairs")
    scenes = []
    for raster in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _RASTER_SUFFIXES):
        if raster.name.lower().endswith(".prob.tif"):
            continue  # our own probability rasters, if an output folder sits inside the data folder
        labels, _ = find_label_files(raster)
        if labels is not None:
            scenes.append(Scene.from_raster(raster))
    if not scenes:
        raise InputError(
            f"{folder}: no orthomosaic with labels found; put NAME.tif next to NAME.geojson (or .gpkg/.shp)"
        )
    return scenes


def hold_out(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split whole orthomosaics into training and validation, never chips of one raster into both.

    ``max(1, round(fraction * n))`` items are held out, chosen by ``seed`` (the same seed, the same split), and
    at least one is left to train on. Both lists keep the input order.

    Raises:
        InputError: With fewer than two items (nothing to hold out) or a fraction outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"--val-fraction {fraction}: must be between 0 and 1 (e.g. 0.2)")
    n = len(items)
    if n < 2:
        raise InputError(
            f"only {n} labelled orthomosaic(s): validation holds out whole orthomosaics, so give at least 2, "
            "or pass --val-data (or --synthetic-val)"
        )
    k = min(n - 1, max(1, round(fraction * n)))
    chosen = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    train = [x for i, x in enumerate(items) if i not in chosen]
    val = [x for i, x in enumerate(items) if i in chosen]
    return train, val


def gsd_bin(gsd_m: float) -> str:
    """Name of the ground-resolution bin of a GSD in metres (see ``GSD_BINS``)."""
    for upper, name in GSD_BINS:
        if gsd_m < upper:
            return name
    return GSD_BINS[-1][1]


# --- counting ----------------------------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float:
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
        p = _ratio(self.true_preds, self.preds)
        r = _ratio(self.found, self.labels)
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
            "pixel_iou": _ratio(self.tp_px, self.tp_px + self.fp_px + self.fn_px),
            "pixel_precision": _ratio(self.tp_px, self.tp_px + self.fp_px),
            "pixel_recall": _ratio(self.tp_px, self.tp_px + self.fn_px),
            "fp_m2_per_ha": _ratio(self.fp_area_m2, valid_ha),
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


@dataclass(frozen=True)
class EvalGrid:
    """The pixel grid on which pixel scores are counted (the probability raster's: the model grid).

    Attributes:
        height: Rows.
        width: Columns.
        transform: Pixel to CRS coordinates, in the orthomosaic's CRS.
    """

    height: int
    width: int
    transform: Affine


def _lonlat_transformer(crs: CRS) -> Transformer:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def _area_m2(geom: BaseGeometry, to_lonlat: Transformer) -> float:
    """Geodesic area of the polygonal parts of a geometry in the raster's CRS (lines and points count 0)."""
    if geom.is_empty:
        return 0.0
    total = 0.0
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            ll = shapely.transform(part, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
            area, _ = _GEOD.geometry_area_perimeter(orient(ll, sign=1.0))
            total += abs(float(area))
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            total += _area_m2(part, to_lonlat)
    return total


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygons of a clipped geometry (a clip can leave edge lines or points), or None if no area is left."""
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            if part.area > 0:
                polys.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            sub = _polygonal(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def _clip(geoms: Iterable[BaseGeometry], region: BaseGeometry) -> list[tuple[int, BaseGeometry]]:
    """``(index, geom ∩ region)`` for the geometries with area left inside the region."""
    out = []
    for i, g in enumerate(geoms):
        inside = _polygonal(shapely.intersection(g, region))
        if inside is not None:
            out.append((i, inside))
    return out


def _match(
    labels: Sequence[BaseGeometry],
    label_areas: np.ndarray,
    preds: Sequence[BaseGeometry],
    to_lonlat: Transformer,
) -> tuple[np.ndarray, int, float]:
    """Match predicted plots to label plots.

    A prediction is true when at least ``FOUND_FRACTION`` of it lies on labels, or when it covers at least
    ``FOUND_FRACTION`` of a label without being a blob over the field (no larger than ``MAX_SPILL`` times that
    label or ``SPILL_AREA_M2``). A label is found when *true* predictions cover ``FOUND_FRACTION`` of it or
    ``FOUND_AREA_M2``: a blob painted over a whole survey would otherwise find every plot in it.

    Returns:
        ``(found, true_preds, fp_area_m2)``: which labels are found, how many predictions are true, and the
        area of predictions (true ones included) off every label.
    """
    found = np.zeros(len(labels), dtype=bool)
    if not preds:
        return found, 0, 0.0
    label_tree = shapely.STRtree(labels) if labels else None
    is_true = np.zeros(len(preds), dtype=bool)
    fp_area = 0.0
    for j, pred in enumerate(preds):
        area = _area_m2(pred, to_lonlat)
        cand = label_tree.query(pred, predicate="intersects") if label_tree is not None else []
        on_labels = 0.0
        if len(cand):
            union = shapely.union_all([labels[int(i)] for i in cand])
            on_labels = _area_m2(shapely.intersection(pred, union), to_lonlat)
        if on_labels >= FOUND_FRACTION * area:
            is_true[j] = True
        else:
            for i in (int(i) for i in cand):
                if area > max(MAX_SPILL * label_areas[i], SPILL_AREA_M2):
                    continue
                if _area_m2(shapely.intersection(pred, labels[i]), to_lonlat) >= FOUND_FRACTION * label_areas[i]:
                    is_true[j] = True
                    break
        fp_area += max(0.0, area - on_labels)
    true_preds = [p for p, t in zip(preds, is_true, strict=True) if t]
    if true_preds:
        pred_tree = shapely.STRtree(true_preds)
        for i, lab in enumerate(labels):
            cand = pred_tree.query(lab, predicate="intersects")
            if len(cand) == 0:
                continue
            covered = _area_m2(
                shapely.intersection(lab, shapely.union_all([true_preds[int(j)] for j in cand])), to_lonlat
            )
            found[i] = covered >= FOUND_FRACTION * label_areas[i] or covered >= FOUND_AREA_M2
    return found, int(is_true.sum()), fp_area


def _scene_stage(scene: Scene, label_stages: Sequence[str | None]) -> str | None:
    if scene.stage is not None:
        return scene.stage
    stages = {s for s in label_stages if s is not None}
    if len(stages) == 1:
        return stages.pop()
    return "mixed" if stages else None


def _strips(grid: EvalGrid) -> Iterable[Window]:
    rows = max(1, min(grid.height, _STRIP_PIXELS // max(1, grid.width)))
    for r in range(0, grid.height, rows):
        yield Window(col_off=0, row_off=r, width=grid.width, height=min(rows, grid.height - r))


def evaluate_plots(
    scene: Scene,
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
        to_lonlat = _lonlat_transformer(crs)
        labels = read_labels(scene.labels, crs)
        aoi = read_labels(scene.aoi, crs) if scene.aoi is not None else None
        if aoi is not None and len(aoi) == 0:
            raise InputError(f"{scene.aoi}: the area-of-interest file holds no polygons; draw one or delete it")
        region = shapely.box(*ds.bounds)
        if aoi is not None:
            region = shapely.intersection(region, shapely.union_all(aoi.geometries))
        shapely.prepare(region)

        kept = _clip(labels.geometries, region)
        label_geoms = [g for _, g in kept]
        label_areas = np.array([_area_m2(g, to_lonlat) for g in label_geoms], dtype=float)
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
            preds = [g for _, g in _clip(plots[t], region)]
            found, true_preds, fp_area = _match(label_geoms, label_areas, preds, to_lonlat)
            label_found[k] = found
            per_t.append({"preds": len(preds), "true_preds": true_preds, "fp_area_m2": fp_area})
            pred_sets.append(LabelSet(list(plots[t]), [{} for _ in plots[t]], crs) if len(plots[t]) else None)

        # -- pixel level, strip by strip on the model grid --
        gy, gx = window_ground_size(crs, grid.transform, grid.height / 2, grid.width / 2)
        px_m2 = gy * gx
        tp = np.zeros(n_t, dtype=np.int64)
        fp = np.zeros(n_t, dtype=np.int64)
        fn = np.zeros(n_t, dtype=np.int64)
        valid_px = 0
        for win in _strips(grid):
            shape = (int(win.height), int(win.width))
            wt = window_transform(win, grid.transform)
            left, bottom, right, top = window_bounds(wt, shape)
            src = from_bounds(left, bottom, right, top, transform=info.transform)
            valid = read_footprint(ds, info, src, out_shape=shape)  # the mask only: no colour bands read
            truth = rasterize_window(labels, wt, shape, aoi=aoi)
            scored = valid & (truth != IGNORE)
            n_scored = int(scored.sum())
            if n_scored == 0:
                continue
            valid_px += n_scored
            pos = scored & (truth == 1)
            n_pos = int(pos.sum())
            for k, ps in enumerate(pred_sets):
                if ps is None or len(ps.query((left, bottom, right, top))) == 0:
                    fn[k] += n_pos
                    continue
                pred = rasterize_window(ps, wt, shape) == 1
                pred &= scored
                n_tp = int((pred & pos).sum())
                tp[k] += n_tp
                fp[k] += int(pred.sum()) - n_tp
                fn[k] += n_pos - n_tp

    counts = [
        PlotCounts(
            labels=len(label_geoms),
            found=int(label_found[k].sum()),
            preds=per_t[k]["preds"],
            true_preds=per_t[k]["true_preds"],
            fp_area_m2=float(per_t[k]["fp_area_m2"]),
            tp_px=int(tp[k]),
            fp_px=int(fp[k]),
            fn_px=int(fn[k]),
            valid_m2=valid_px * px_m2,
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
    scene: Scene,
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
        grid = EvalGrid(prob.height, prob.width, prob.transform)
        prob_crs = prob.crs
        top = 0
        for win in _strips(grid):
            top = max(top, int(prob.read(1, window=win).max()))
    with open_raster(scene.raster) as ds:
        if ds.crs != prob_crs:
            raise InputError(f"{prob_path}: its CRS differs from {scene.raster}'s; it was not predicted from it")
    plots: dict[float, list[BaseGeometry]] = {}
    for t in ts:
        if top / 255.0 < t:
            plots[t] = []  # nothing reaches the threshold: vectorize would find nothing
            continue
        res = vectorize(prob_path, dataclasses.replace(params, threshold=t), source=scene.raster.name)
        plots[t] = [p.geometry for p in res.plots]
    return evaluate_plots(scene, plots, grid)


def evaluate_plot_files(
    pairs: Sequence[tuple[Scene, str | Path]],
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
    scenes: Sequence[Scene],
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

    Each scene is predicted once (:func:`detect.predict.predict_raster`), then scored at every threshold.

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
            temporary folder removed afterwards.
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
    results = []
    with tempfile.TemporaryDirectory(prefix="poppy-val-") as tmp:
        folder = Path(work_dir) if work_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for scene in scenes:
            stem = scene.name
            while stem in used:  # two folders can hold the same file name
                stem += "_"
            used.add(stem)
            pred = predict_raster(
                scene.raster,
                model,
                spec,
                prob_path=folder / f"{stem}.prob.tif",
                tile=tile,
                batch_size=batch_size,
                device=device,
                progress=progress,
                overwrite=True,
            )
            results.append(evaluate_prob_raster(scene, pred.prob_path, thresholds=ts, params=params))
    return summarise(results, target_recall=target_recall)


# --- pooling, threshold choice, report -------------------------------------------------------------------------


def _nan_to(value: float, default: float) -> float:
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
        return round(_nan_to(float(rows[i][key]), -1.0), 9)

    idx = range(len(rows))
    if all(math.isnan(float(r["plot_recall"])) for r in rows):
        best = max(idx, key=lambda i: (-round(_nan_to(float(rows[i]["fp_m2_per_ha"]), 0.0), 9), centre(i)))
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
        first = f1 if not math.isnan(f1) else -_nan_to(float(self.chosen["fp_m2_per_ha"]), 0.0)
        return (first, _nan_to(float(self.chosen["pixel_iou"]), 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN becomes None)."""
        return _json_safe(
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def summarise(results: Sequence[SceneResult], *, target_recall: float = TARGET_RECALL) -> EvalReport:
    """Pool per-scene results, choose the threshold and break the choice down by stage and GSD.

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
    k, reason = choose_threshold(rows, target_recall)

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


# --- multi-class runs (land-cover pretraining): per-class IoU -------------------------------------------------


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
        return _ratio(float(np.trace(self.confusion)), float(self.confusion.sum()))

    @property
    def score(self) -> tuple[float]:
        """The key to pick the best checkpoint by: mean IoU (-inf when undefined)."""
        return (_nan_to(self.miou, -math.inf),)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN becomes None)."""
        counts = self.confusion.sum(axis=1)
        return _json_safe(
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
        lines.append(f"{'pixel accuracy':<24}{_nan_to(self.pixel_accuracy, 0.0):>8.3f}")
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
