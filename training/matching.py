"""Plot matching: which predicted plots are true and which label plots are found (the rule police act on).

A predicted plot is *true* when at least 10 % of its area lies on labels, or it covers at least 10 % of some label
while being no larger than 10 times that label or 100 m2 (larger, it is a blob painted over the field, not a
detection). A label plot is *found* when true predicted plots cover at least 10 % of its area (or at least
0.5 m2 of it, for big fields that a detection touches only in part). Areas are geodesic
(:func:`core.geodesy.geodesic_area_m2`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from core.geodesy import geodesic_area_m2

__all__ = [
    "FOUND_AREA_M2",
    "FOUND_FRACTION",
    "MAX_SPILL",
    "SPILL_AREA_M2",
    "area_m2",
    "clip",
    "lonlat_transformer",
    "match",
    "match_each",
    "polygonal",
]

FOUND_FRACTION = 0.10  # share of a label (or of a prediction) that must overlap to count as a match
FOUND_AREA_M2 = 0.5  # ... or this much overlap, so a big field touched by a partial detection is still found
# A prediction that covers a label but is mostly off it is still a detection when no larger than this many times
# the label, or than a spot a field team checks at a glance; beyond that it is a blob painted over the field.
MAX_SPILL = 10.0
SPILL_AREA_M2 = 100.0


def lonlat_transformer(crs: CRS) -> Transformer:
    """A transformer from ``crs`` to WGS84 lon/lat (x first)."""
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def area_m2(geom: BaseGeometry, to_lonlat: Transformer) -> float:
    """Geodesic area of the polygonal parts of a geometry in the raster's CRS (lines and points count 0)."""
    if geom.is_empty:
        return 0.0
    total = 0.0
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            ll = shapely.transform(part, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
            total += geodesic_area_m2(ll)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            total += area_m2(part, to_lonlat)
    return total


def polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygons of a clipped geometry (a clip can leave edge lines or points), or None if no area is left."""
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            if part.area > 0:
                polys.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            sub = polygonal(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def clip(geoms: Iterable[BaseGeometry], region: BaseGeometry) -> list[tuple[int, BaseGeometry]]:
    """``(index, geom ∩ region)`` for the geometries with area left inside the region."""
    out = []
    for i, g in enumerate(geoms):
        inside = polygonal(shapely.intersection(g, region))
        if inside is not None:
            out.append((i, inside))
    return out


def match(
    labels: Sequence[BaseGeometry],
    label_areas: np.ndarray,
    preds: Sequence[BaseGeometry],
    to_lonlat: Transformer,
) -> tuple[np.ndarray, int, float]:
    """Match predicted plots to label plots (the rule of :func:`match_each`).

    Returns:
        ``(found, true_preds, fp_area_m2)``: which labels are found, how many predictions are true, and the
        area of predictions (true ones included) off every label.
    """
    found, is_true, fp_area = match_each(labels, label_areas, preds, to_lonlat)
    return found, int(is_true.sum()), fp_area


def match_each(
    labels: Sequence[BaseGeometry],
    label_areas: np.ndarray,
    preds: Sequence[BaseGeometry],
    to_lonlat: Transformer,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Match predicted plots to label plots, saying which prediction is true (what a scripted analyst confirms).

    A prediction is true when at least ``FOUND_FRACTION`` of it lies on labels, or when it covers at least
    ``FOUND_FRACTION`` of a label without being a blob over the field (no larger than ``MAX_SPILL`` times that
    label or ``SPILL_AREA_M2``). A label is found when *true* predictions cover ``FOUND_FRACTION`` of it or
    ``FOUND_AREA_M2``: a blob painted over a whole survey would otherwise find every plot in it.

    Returns:
        ``(found, is_true, fp_area_m2)``: which labels are found, which predictions are true, and the area of
        predictions (true ones included) off every label.
    """
    found = np.zeros(len(labels), dtype=bool)
    if not preds:
        return found, np.zeros(0, dtype=bool), 0.0
    label_tree = shapely.STRtree(labels) if labels else None
    is_true = np.zeros(len(preds), dtype=bool)
    fp_area = 0.0
    for j, pred in enumerate(preds):
        area = area_m2(pred, to_lonlat)
        cand = label_tree.query(pred, predicate="intersects") if label_tree is not None else []
        on_labels = 0.0
        if len(cand):
            union = shapely.union_all([labels[int(i)] for i in cand])
            on_labels = area_m2(shapely.intersection(pred, union), to_lonlat)
        if on_labels >= FOUND_FRACTION * area:
            is_true[j] = True
        else:
            for i in (int(i) for i in cand):
                if area > max(MAX_SPILL * label_areas[i], SPILL_AREA_M2):
                    continue
                if area_m2(shapely.intersection(pred, labels[i]), to_lonlat) >= FOUND_FRACTION * label_areas[i]:
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
            covered = area_m2(
                shapely.intersection(lab, shapely.union_all([true_preds[int(j)] for j in cand])), to_lonlat
            )
            found[i] = covered >= FOUND_FRACTION * label_areas[i] or covered >= FOUND_AREA_M2
    return found, is_true, fp_area
