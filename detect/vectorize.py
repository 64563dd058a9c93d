"""From the probability raster to poppy-plot polygons with per-plot attributes.

The probability raster is read back in horizontal strips the full width of the raster, each with a halo of
extra rows above and below. Each strip is thresholded and cleaned at metric scale (a morphological opening
removes specks and hairlines, a closing joins plants of the same plot across the gaps between rows; radii are
given in metres and converted with the GSD). The halo is wide enough that the cleaned core of every strip is
exactly what cleaning the whole raster at once would give. The core is then polygonised with
:func:`rasterio.features.shapes` in *pixel* coordinates, where strip borders are exact integers: pieces that
touch a border between strips are unioned with shapely so a plot straddling a border comes out as one
polygon (holes included).

Each plot is then cleaned as a polygon (holes smaller than ``fill_holes_m2`` filled, real holes such as a
tree or a shed kept), simplified to about a pixel, mapped to the raster's CRS with the grid's affine
transform, densified and taken to WGS84 with pyproj. Its area is geodesic (:class:`pyproj.Geod` on the WGS84
polygon), so UTM, EPSG:4326 and EPSG:3857 inputs all give true square metres. Scores are read from the
probability raster inside the polygon (:func:`rasterio.features.geometry_mask` on the plot's window).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import geometry_mask, shapes
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.polygon import orient

from core.errors import InputError
from core.geodesy import geodesic_area_m2
from detect.raster import open_raster, read_band, window_ground_size
from detect.rasterout import PROB_NODATA, decode_level, threshold_to_uint8
from detect.tiling import row_strips

__all__ = ["DetectedPlot", "Sweep", "VectorParams", "VectorizeResult", "vectorize", "vectorize_sweep"]


@dataclass(frozen=True)
class VectorParams:
    """How probabilities become plots.

    Attributes:
        threshold: Probability at or above which a pixel is poppy.
        min_area_m2: Plots smaller than this (geodesic m2) are dropped; a few plants still make a plot.
        open_radius_m: Opening radius: removes specks and hairlines thinner than about twice this.
        close_radius_m: Closing radius: joins plants across gaps up to about twice this (poppy rows are
            15-30 cm apart, so 0.15 m keeps a planted bed in one piece without bridging to the next bed).
        fill_holes_m2: Holes smaller than this are filled (gaps between plants); larger ones (a tree, a
            shed, a path) are real and kept.
        simplify_px: Douglas-Peucker tolerance in model pixels. Just above sqrt(1/2) removes the staircase of
            diagonal edges (its corners lie 0.71 px off the line) but keeps one-pixel jogs; a full pixel would
            tilt straight edges at such jogs and bias areas by a few per cent.
        densify_px: Longest segment, in model pixels, before reprojecting to WGS84, so long edges follow
            the projection's curvature.
        strip_rows: Rows per strip (the core, without the halo): bounds memory at ``strip_rows x width``.
    """

    threshold: float = 0.5
    min_area_m2: float = 1.0
    open_radius_m: float = 0.06
    close_radius_m: float = 0.15
    fill_holes_m2: float = 0.5
    simplify_px: float = 0.75
    densify_px: float = 32.0
    strip_rows: int = 1024

    def check(self) -> None:
        """Raise :class:`InputError` for values out of range (naming the command-line flag)."""
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--threshold {self.threshold}: must be between 0 and 1 (e.g. 0.5)")
        if not self.min_area_m2 >= 0.0:
            raise InputError(f"--min-area-m2 {self.min_area_m2}: must be 0 or more square metres")
        for name in ("open_radius_m", "close_radius_m", "fill_holes_m2", "simplify_px"):
            if not getattr(self, name) >= 0.0:
                raise InputError(f"{name} {getattr(self, name)}: must be 0 or more")
        if self.densify_px <= 0 or self.strip_rows < 1:
            raise InputError(f"densify_px and strip_rows must be positive, got {self.densify_px}, {self.strip_rows}")

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclass
class DetectedPlot:
    """One suspected poppy plot.

    Attributes:
        plot_id: ``P001``, ``P002``, ... ordered by position (north to south, then west to east); stable for
            the same input, model and parameters.
        geometry: Polygon in the raster's CRS.
        geometry_wgs84: Polygon in WGS84 longitude/latitude (densified before reprojection).
        score_mean: Mean probability inside the polygon.
        score_max: Highest probability inside the polygon.
        area_m2: Geodesic area in square metres (holes excluded).
        centroid_lat: Latitude of the polygon's centroid (WGS84).
        centroid_lon: Longitude of the centroid.
        source: Input file name.
        model: Model name.
        judge_score: The second stage's calibrated probability that the plot is poppy (two-stage models);
            None for a one-stage model.
    """

    plot_id: str
    geometry: Polygon
    geometry_wgs84: Polygon
    score_mean: float
    score_max: float
    area_m2: float
    centroid_lat: float
    centroid_lon: float
    source: str
    model: str
    judge_score: float | None = None

    @property
    def score(self) -> float:
        """The plot's score: the judge's calibrated probability, or the mean pixel probability without a judge."""
        return self.score_mean if self.judge_score is None else self.judge_score

    def properties(self) -> dict[str, str | float]:
        """The attributes written to every vector format, in a fixed order."""
        return {
            "plot_id": self.plot_id,
            "score": round(self.score, 4),
            "score_mean": round(self.score_mean, 4),
            "score_max": round(self.score_max, 4),
            "area_m2": round(self.area_m2, 2),
            "centroid_lat": round(self.centroid_lat, 7),
            "centroid_lon": round(self.centroid_lon, 7),
            "source": self.source,
            "model": self.model,
        }


@dataclass
class VectorizeResult:
    """Plots found in a probability raster, and how.

    Attributes:
        plots: The plots, ordered by ``plot_id``.
        crs: The raster's CRS (of :attr:`DetectedPlot.geometry`).
        transform: The probability raster's transform.
        gsd_m: Its ground size per pixel in metres ``(row, col)``.
        params: The parameters used.
        pieces: Polygons found before merging and filtering.
        dropped_small: Plots dropped as smaller than ``min_area_m2``.
        timings: Seconds per stage: ``polygonise``, ``merge``, ``attributes``, ``total``.
    """

    plots: list[DetectedPlot]
    crs: CRS
    transform: Affine
    gsd_m: tuple[float, float]
    params: VectorParams
    pieces: int = 0
    dropped_small: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def total_area_m2(self) -> float:
        """Summed geodesic area of all plots."""
        return float(sum(p.area_m2 for p in self.plots))


def _disk(radius_px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))


def _clean(binary: np.ndarray, open_px: int, close_px: int) -> np.ndarray:
    """Opening then closing with disks; cv2's default border leaves the image edge untouched."""
    img = binary.astype(np.uint8)
    if open_px > 0:
        img = cv2.morphologyEx(img, cv2.MORPH_OPEN, _disk(open_px))
    if close_px > 0:
        img = cv2.morphologyEx(img, cv2.MORPH_CLOSE, _disk(close_px))
    return img


def _fill_small_holes(poly: Polygon, max_hole_px2: float) -> Polygon:
    if not poly.interiors or max_hole_px2 <= 0:
        return poly
    keep = [ring for ring in poly.interiors if Polygon(ring).area >= max_hole_px2]
    return Polygon(poly.exterior, keep)


def _polygons(geom: shapely.Geometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty else []
    if isinstance(geom, MultiPolygon):
        return [g for g in geom.geoms if not g.is_empty]
    # A GeometryCollection (e.g. after simplify) may hold lines or points: only areas are plots.
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def _pixel_to_crs(geom: Polygon, transform: Affine) -> Polygon:
    t = transform
    return affinity.affine_transform(geom, [t.a, t.b, t.d, t.e, t.c, t.f])


def vectorize(
    prob_path: str | Path,
    params: VectorParams | None = None,
    *,
    source: str = "",
    model_name: str = "",
) -> VectorizeResult:
    """Turn a probability raster into plots.

    Args:
        prob_path: ``uint8`` probability GeoTIFF (1-255 for 0-1, 0 nodata), as written by :mod:`detect.rasterout`.
        params: Threshold and clean-up settings; defaults to :class:`VectorParams()`.
        source: Input file name recorded on every plot.
        model_name: Model name recorded on every plot.

    Returns:
        A :class:`VectorizeResult`; plots ordered north to south, then west to east.

    Raises:
        InputError: If the raster cannot be read or a parameter is out of range.
    """
    params = params or VectorParams()
    params.check()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    with open_raster(prob_path) as ds:
        if ds.crs is None or ds.count != 1:
            raise InputError(f"{prob_path}: not a probability raster (one band with a CRS)")
        height, width, crs, transform = ds.height, ds.width, ds.crs, ds.transform
        gsd = window_ground_size(crs, transform, height / 2, width / 2)
        px_area_m2 = gsd[0] * gsd[1]
        mean_gsd = math.sqrt(px_area_m2)
        open_px = round(params.open_radius_m / mean_gsd)
        close_px = round(params.close_radius_m / mean_gsd)
        # Opening then closing reads up to 2 * (open + close) pixels away; one more for safety.
        halo = 2 * (open_px + close_px) + 1
        strip = max(1, int(params.strip_rows))
        cut = threshold_to_uint8(params.threshold)

        done, pending, pieces = _polygonise(ds, cut, open_px, close_px, halo, strip)
        timings["polygonise"] = time.perf_counter() - t_start

        # -- merge pieces across strip borders --
        t0 = time.perf_counter()
        if pending:
            done.extend(_polygons(shapely.unary_union(pending)))
        timings["merge"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        candidates, dropped = _georeference(done, params, transform, to_lonlat, px_area_m2)
        plots = _attributes(ds, candidates, strip, to_lonlat, source, model_name)
        timings["attributes"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return VectorizeResult(
        plots=plots,
        crs=crs,
        transform=transform,
        gsd_m=gsd,
        params=params,
        pieces=pieces,
        dropped_small=dropped,
        timings=timings,
    )


def _polygonise(
    ds: rasterio.io.DatasetReader, cut: int, open_px: int, close_px: int, halo: int, strip: int
) -> tuple[list[Polygon], list[Polygon], int]:
    """Threshold, clean and polygonise strip by strip, in pixel coordinates (x = column, y = row).

    Returns:
        ``(done, pending, pieces)``: polygons wholly inside a strip, those touching a border between strips (to be
        merged), and how many pieces were found.
    """
    height, width = ds.height, ds.width
    done: list[Polygon] = []
    pending: list[Polygon] = []  # pieces touching a border between strips
    pieces = 0
    for a in range(0, height, strip):
        b = min(a + strip, height)
        e0, e1 = max(0, a - halo), min(height, b + halo)
        values = read_band(ds, 1, Window(col_off=0, row_off=e0, width=width, height=e1 - e0))
        binary = values >= cut  # compare encoded values: no full-width float copy of the strip
        cleaned = _clean(binary, open_px, close_px)[a - e0 : b - e0]
        if not cleaned.any():
            continue
        for geom, _ in shapes(cleaned, mask=cleaned > 0, connectivity=4, transform=Affine.translation(0, a)):
            poly = shape(geom)
            pieces += 1
            _, miny, _, maxy = poly.bounds
            if (a > 0 and miny <= a) or (b < height and maxy >= b):
                pending.append(poly)
            else:
                done.append(poly)
    return done, pending, pieces


def _georeference(
    done: list[Polygon], params: VectorParams, transform: Affine, to_lonlat: Transformer, px_area_m2: float
) -> tuple[list[tuple[Polygon, Polygon, Polygon, float]], int]:
    """Per-plot clean-up (holes, simplification), the outline in the raster's CRS and in lon/lat, geodesic area.

    Returns:
        ``(candidates, dropped)``: ``(pixel polygon, CRS polygon, lon/lat polygon, area m2)`` per plot kept, in
        north-to-south then west-to-east order, and how many were dropped as smaller than ``min_area_m2``.
    """
    hole_px2 = params.fill_holes_m2 / px_area_m2
    candidates: list[tuple[Polygon, Polygon, Polygon, float]] = []
    dropped = 0
    for poly in done:
        poly = _fill_small_holes(poly, hole_px2)
        if params.simplify_px > 0:
            # Drop collinear vertices (strip borders leave some) and start every ring at a canonical
            # vertex first, so Douglas-Peucker gives the same outline however the plot was pieced together.
            poly = shapely.normalize(poly.simplify(0.0))
            poly = poly.simplify(params.simplify_px, preserve_topology=True)
        for part in _polygons(poly):
            native = orient(_pixel_to_crs(part, transform), sign=1.0)
            dense = _pixel_to_crs(shapely.segmentize(part, params.densify_px), transform)
            lonlat = orient(
                shapely.transform(dense, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))),
                sign=1.0,
            )
            area = geodesic_area_m2(lonlat)
            if area < params.min_area_m2:
                dropped += 1
                continue
            candidates.append((part, native, lonlat, area))
    # Ordered north to south, then west to east, by the centroid's pixel (rounded, so stable).
    candidates.sort(key=lambda c: (round(c[0].centroid.y), round(c[0].centroid.x)))
    return candidates, dropped


def _attributes(
    ds: rasterio.io.DatasetReader,
    candidates: list[tuple[Polygon, Polygon, Polygon, float]],
    strip: int,
    to_lonlat: Transformer,
    source: str,
    model_name: str,
) -> list[DetectedPlot]:
    """The plots, numbered in order, with their probability scores and centroid."""
    digits = max(3, len(str(len(candidates))))
    plots: list[DetectedPlot] = []
    for i, (part, native, lonlat, area) in enumerate(candidates, start=1):
        score_mean, score_max = _scores(ds, part, strip)
        cx, cy = native.centroid.x, native.centroid.y
        lon, lat = to_lonlat.transform(cx, cy)
        plots.append(
            DetectedPlot(
                plot_id=f"P{i:0{digits}d}",
                geometry=native,
                geometry_wgs84=lonlat,
                score_mean=score_mean,
                score_max=score_max,
                area_m2=area,
                centroid_lat=float(lat),
                centroid_lon=float(lon),
                source=source,
                model=model_name,
            )
        )
    return plots


def _scores(ds: rasterio.io.DatasetReader, poly_px: Polygon, chunk_rows: int) -> tuple[float, float]:
    """Mean and max probability of the pixels whose centres fall inside a pixel-space polygon.

    The plot's window is read ``chunk_rows`` rows at a time and values are summed as integers, so a plot as
    large as the raster (a model that flags a whole field, or everything) costs ``chunk_rows x width``
    memory, not an array the size of the raster.
    """
    minx, miny, maxx, maxy = poly_px.bounds
    c0, r0 = max(0, math.floor(minx)), max(0, math.floor(miny))
    c1, r1 = min(ds.width, math.ceil(maxx)), min(ds.height, math.ceil(maxy))
    for all_touched in (False, True):  # a sliver narrower than a pixel centre: count every touched pixel
        total, count, top = 0, 0, 0
        for a in range(r0, r1, chunk_rows):
            b = min(a + chunk_rows, r1)
            values = read_band(ds, 1, Window(col_off=c0, row_off=a, width=c1 - c0, height=b - a))
            local = affinity.translate(poly_px, -c0, -a)
            inside = geometry_mask(
                [local], out_shape=values.shape, transform=Affine.identity(), invert=True, all_touched=all_touched
            )
            sel = values[inside & (values != PROB_NODATA)]  # a plot's edge may touch the footprint's border
            if sel.size:
                total += int(sel.sum(dtype=np.int64))
                count += sel.size
                top = max(top, int(sel.max()))
        if count:
            break
    if not count:
        return 0.0, 0.0
    # Decoded as rasterout encodes, in float64: a sum over millions of pixels needs the precision.
    return decode_level(total / count), decode_level(top)


_SCAN_PIXELS = 1 << 22  # pixels per strip when scanning for the highest probability (about 4 M)


@dataclass
class Sweep:
    """Plots of one probability raster at several thresholds, with the raster's grid.

    Attributes:
        plots: Plots per threshold, thresholds ascending (see :func:`vectorize_sweep`).
        height: Rows of the probability raster (the model grid).
        width: Its columns.
        transform: Its transform, in the orthomosaic's CRS.
        crs: Its CRS.
    """

    plots: dict[float, list[DetectedPlot]]
    height: int
    width: int
    transform: Affine
    crs: CRS


def vectorize_sweep(
    prob_path: str | Path,
    params: VectorParams,
    thresholds: tuple[float, ...],
    *,
    source: str = "",
    model_name: str = "",
) -> Sweep:
    """Plots of a probability raster at each of several thresholds (validation's threshold sweep).

    The raster is vectorised once per threshold with ``params`` (its threshold replaced). One strip-by-strip scan
    finds the highest probability first: thresholds above it give no plot and are not vectorised.

    Args:
        prob_path: ``uint8`` probability GeoTIFF, as :func:`vectorize` takes.
        params: Clean-up and minimum-area settings; the threshold is replaced by each of ``thresholds``.
        thresholds: Thresholds in (0, 1), ascending.
        source: Input file name recorded on every plot.
        model_name: Model name recorded on every plot.

    Returns:
        A :class:`Sweep`.

    Raises:
        InputError: If the raster is not a probability raster.
    """
    with open_raster(prob_path) as prob:
        if prob.count != 1 or prob.crs is None:
            raise InputError(f"{prob_path}: not a probability raster (one band with a CRS)")
        height, width, transform, crs = prob.height, prob.width, prob.transform, prob.crs
        top = 0
        for win in row_strips(height, width, _SCAN_PIXELS):
            top = max(top, int(prob.read(1, window=win).max()))
    plots: dict[float, list[DetectedPlot]] = {}
    for t in thresholds:
        if decode_level(top) < t:
            plots[t] = []  # nothing reaches the threshold: vectorize would find nothing
            continue
        res = vectorize(prob_path, dataclasses.replace(params, threshold=t), source=source, model_name=model_name)
        plots[t] = res.plots
    return Sweep(plots=plots, height=height, width=width, transform=transform, crs=crs)
