"""Label polygons: read them in any vector format and CRS, and burn them into masks window by window.

Poppy plots are drawn by hand (QGIS, a phone app, a GIS desk) and saved as GeoJSON, GeoPackage or Shapefile in
whatever CRS the tool used. :func:`read_labels` reads them with pyogrio, reprojects them onto the raster's CRS
with pyproj, repairs what can be repaired and says, with counts, what it had to drop. :func:`rasterize_window`
then burns the polygons into one window's mask (0 background, 1 poppy, 255 ignore), touching only the
polygons that reach the window, so an orthomosaic of any size never needs a full-size mask.

An optional area of interest (AOI) marks where labelling is complete: outside it the mask is 255 (ignore),
because an unlabelled field there may well hold poppy nobody drew.

Folder convention (see :func:`find_label_files`): ``NAME.tif`` with ``NAME.geojson|.gpkg|.shp`` labels and an
optional ``NAME.aoi.geojson`` area of interest.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.raw
import pyproj
import rasterio.features
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from core.errors import InputError

__all__ = [
    "AOI_SUFFIX",
    "IGNORE",
    "LABEL_SUFFIXES",
    "LANDCOVER_SUFFIX",
    "LabelSet",
    "check_overlap",
    "find_aoi_file",
    "find_label_files",
    "rasterize_window",
    "read_labels",
    "window_bounds",
]

log = logging.getLogger(__name__)

IGNORE = 255  # mask value for "no label here" (outside the AOI, nodata); the loss's ignore index
LABEL_SUFFIXES = (".geojson", ".gpkg", ".shp")  # in order of preference when looking next to a raster
AOI_SUFFIX = ".aoi"  # NAME.aoi.geojson (or .gpkg/.shp) marks where labelling is complete
LANDCOVER_SUFFIX = ".landcover.tif"  # NAME.landcover.tif: per-pixel land-cover classes on the raster's grid

_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass
class LabelSet:
    """Label polygons reprojected onto one CRS, with a spatial index for window queries.

    Attributes:
        geometries: Valid, non-empty ``Polygon``/``MultiPolygon`` geometries in ``crs``, one per kept feature.
        properties: The attributes of each kept feature (e.g. ``stage``), aligned with ``geometries``.
        crs: The CRS the geometries are in (the raster's).
        warnings: One line per kind of problem met while reading (repaired, dropped, outside the raster).
        path: The file the labels came from, for messages.
    """

    geometries: list[BaseGeometry]
    properties: list[dict[str, Any]]
    crs: CRS
    warnings: list[str] = field(default_factory=list)
    path: str = ""

    def __post_init__(self) -> None:
        if len(self.geometries) != len(self.properties):
            raise ValueError(f"{len(self.geometries)} geometries but {len(self.properties)} property dicts")
        # The tree is built once; shapely's STRtree pickles, so a LabelSet can go to DataLoader workers.
        self.tree = shapely.STRtree(self.geometries)

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """``(minx, miny, maxx, maxy)`` of all geometries in ``crs``, or None when there are none."""
        if not self.geometries:
            return None
        b = shapely.total_bounds(np.asarray(self.geometries, dtype=object))
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    def query(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Indexes of the geometries that intersect the box ``(minx, miny, maxx, maxy)``."""
        return np.sort(self.tree.query(shapely.box(*bounds), predicate="intersects"))

    def area(self) -> float:
        """Total area of the geometries in squared CRS units (overlaps counted twice)."""
        return float(sum(g.area for g in self.geometries))


def _as_rasterio_crs(crs: Any) -> CRS:
    """Accept what users and rasterio hand around: an EPSG string/int, WKT, a pyproj or rasterio CRS."""
    if isinstance(crs, CRS):
        return crs
    if isinstance(crs, int):
        return CRS.from_epsg(crs)
    return CRS.from_user_input(crs)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygons inside ``geom`` (a collection after repair may hold stray lines or points), or None."""
    if geom.geom_type in _POLYGONAL:
        return geom
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if part.geom_type == "Polygon":
            polys.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            sub = _polygonal_part(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    polys = [p for p in polys if not p.is_empty and p.area > 0]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _to_python(value: Any) -> Any:
    """numpy scalars to plain Python, so properties compare and serialise simply."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _source_crs(meta: dict[str, Any], path: Path) -> pyproj.CRS:
    """The CRS the file declares; GeoJSON without one is WGS84 (RFC 7946); anything else without one fails."""
    crs = meta.get("crs")
    if crs:
        return pyproj.CRS.from_user_input(crs)
    if path.suffix.lower() in (".geojson", ".json"):
        return pyproj.CRS.from_epsg(4326)
    raise InputError(
        f"{path}: has no coordinate reference system; open it in QGIS, set the CRS the polygons were drawn "
        "in (Layer > Set CRS) and save it again"
    )


def _check_lonlat(coords: np.ndarray, path: Path, crs: pyproj.CRS) -> None:
    """Catch projected coordinates (metres) in a file that claims degrees: the most common CRS mistake."""
    if coords.size == 0:
        return
    lon_ok = np.all(np.abs(coords[:, 0]) <= 360.0)
    lat_ok = np.all(np.abs(coords[:, 1]) <= 90.0)
    if not (lon_ok and lat_ok):
        x, y = coords[0]
        raise InputError(
            f"{path}: coordinates such as ({x:.1f}, {y:.1f}) are not longitude/latitude, but the file says "
            f"{crs.name}; set the CRS the polygons were really drawn in (QGIS: Layer > Set CRS) and save again"
        )


def _reproject(geoms: np.ndarray, src: pyproj.CRS, dst: CRS, path: Path) -> np.ndarray:
    """Reproject an array of geometries vertex by vertex with pyproj (x=east, y=north on both sides)."""
    dst_proj = pyproj.CRS.from_user_input(dst.to_wkt())
    if src.is_geographic:
        _check_lonlat(shapely.get_coordinates(geoms), path, src)
    if src == dst_proj or len(geoms) == 0:
        return geoms
    transformer = Transformer.from_crs(src, dst_proj, always_xy=True)

    def _fn(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    out = shapely.transform(geoms, _fn)
    coords = shapely.get_coordinates(out)
    if not np.all(np.isfinite(coords)):
        raise InputError(
            f"{path}: some polygons cannot be placed in the raster's CRS ({dst}); they lie outside where "
            f"{src.name} is defined: check the labels' CRS (QGIS: Layer > Set CRS)"
        )
    return out


def read_labels(path: str | Path, dst_crs: Any, *, layer: str | int | None = None) -> LabelSet:
    """Read label polygons from GeoJSON, GeoPackage or Shapefile, reprojected onto ``dst_crs``.

    Invalid geometries (self-intersections such as a bow-tie) are repaired with :func:`shapely.make_valid`,
    keeping only their polygonal parts; null and empty geometries and non-polygons (points, lines) are dropped.
    Every repair and drop is counted in :attr:`LabelSet.warnings` and logged, never silent.

    Args:
        path: The vector file.
        dst_crs: The CRS to reproject onto (normally the raster's): a rasterio or pyproj CRS, ``"EPSG:32650"``,
            an EPSG code or WKT.
        layer: Layer name or index for multi-layer files (GeoPackage); the first layer by default.

    Returns:
        The polygons and their attributes in ``dst_crs``.

    Raises:
        InputError: If the file is missing or unreadable, has no CRS (GeoJSON excepted, which is WGS84 by
            RFC 7946), or its coordinates contradict its CRS.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such label file; check the path")
    if p.is_dir():
        raise InputError(f"{path}: is a folder; give a GeoJSON, GeoPackage or Shapefile of poppy polygons")
    dst = _as_rasterio_crs(dst_crs)
    notes: list[str] = []

    try:
        layers = pyogrio.list_layers(p)
    except Exception as exc:  # pyogrio raises DataSourceError and friends; all mean "cannot read this"
        raise InputError(f"{path}: not a vector file GDAL can read ({exc}); give GeoJSON, GeoPackage or SHP") from exc
    if layer is None and len(layers) > 1:
        names = ", ".join(str(n) for n in layers[:, 0])
        notes.append(f"{path}: has {len(layers)} layers ({names}); read the first, {layers[0, 0]}")
        layer = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # our own note above replaces pyogrio's layer warning
            # GDAL's note on an unclosed ring: such rings are closed below (from_wkb on_invalid="fix").
            warnings.filterwarnings("ignore", "Non closed ring detected", RuntimeWarning)
            meta, _, wkb, field_data = pyogrio.raw.read(p, layer=layer, force_2d=True, datetime_as_string=True)
    except Exception as exc:
        raise InputError(f"{path}: could not read layer {layer!r} ({exc}); check the file and layer name") from exc

    src = _source_crs(meta, p)
    fields = [str(f) for f in meta["fields"]]
    n_in = len(wkb)
    # on_invalid="fix": a ring that is not closed (a hand-edited or damaged file) is closed rather than failing
    # the whole read with a GEOS traceback; what cannot be fixed comes back as None and is dropped below.
    raw = np.array([shapely.from_wkb(g, on_invalid="fix") if g is not None else None for g in wkb], dtype=object)

    # Drop null and empty geometries first, so the rest are all real shapes.
    present = np.array([g is not None and not g.is_empty for g in raw], dtype=bool)
    n_empty = int((~present).sum())
    keep_idx = np.flatnonzero(present)
    geoms = _reproject(raw[keep_idx], src, dst, p)

    kept_geoms: list[BaseGeometry] = []
    kept_props: list[dict[str, Any]] = []
    n_repaired = n_non_polygon = n_parts_dropped = n_degenerate = 0
    for idx, geom in zip(keep_idx, geoms, strict=True):
        gtype = geom.geom_type
        if gtype not in (*_POLYGONAL, "GeometryCollection"):
            n_non_polygon += 1
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
            n_repaired += 1
        poly = _polygonal_part(geom)
        if poly is None:
            # A collection of only points/lines, or a polygon that repairs to nothing (zero area).
            if gtype == "GeometryCollection":
                n_non_polygon += 1
            else:
                n_degenerate += 1
            continue
        if gtype == "GeometryCollection" and len(shapely.get_parts(geom)) > len(shapely.get_parts(poly)):
            n_parts_dropped += 1
        kept_geoms.append(poly)
        kept_props.append({name: _to_python(field_data[j][idx]) for j, name in enumerate(fields)})

    if n_repaired:
        notes.append(
            f"{path}: {_plural(n_repaired, 'invalid polygon', 'invalid polygons')} (e.g. self-intersecting) "
            "repaired with make_valid"
        )
    if n_empty:
        notes.append(f"{path}: {_plural(n_empty, 'feature', 'features')} with an empty or missing geometry dropped")
    if n_degenerate:
        notes.append(f"{path}: {_plural(n_degenerate, 'polygon', 'polygons')} with zero area dropped")
    if n_non_polygon:
        notes.append(
            f"{path}: {_plural(n_non_polygon, 'non-polygon feature', 'non-polygon features')} (points or lines) "
            "dropped; draw poppy plots as polygons"
        )
    if n_parts_dropped:
        notes.append(
            f"{path}: {_plural(n_parts_dropped, 'feature', 'features')} had points or lines mixed with polygons; "
            "kept the polygons only"
        )
    for note in notes:
        log.warning(note)
    log.info("%s: %d of %d features kept as label polygons", path, len(kept_geoms), n_in)
    return LabelSet(geometries=kept_geoms, properties=kept_props, crs=dst, warnings=notes, path=str(path))


def _fmt_bounds(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in b) + ")"


def check_overlap(
    labels: LabelSet, raster_bounds: Sequence[float], path: str | Path, *, what: str = "label polygons"
) -> list[str]:
    """Check that labels fall on the raster; fail when none do, warn (counted) when some do not.

    Args:
        labels: Labels already in the raster's CRS.
        raster_bounds: ``(left, bottom, right, top)`` of the raster in its CRS (``dataset.bounds`` works).
        path: The raster file, for the message.
        what: What the labels are, for the message ("label polygons", "area-of-interest polygons").

    Returns:
        The warnings added to ``labels.warnings`` (empty when every polygon lies on the raster).

    Raises:
        InputError: If no polygon touches the raster: usually the wrong label file or a wrong CRS.
    """
    if len(labels) == 0:
        return []
    left, bottom, right, top = (float(v) for v in raster_bounds)
    raster_box = shapely.box(left, bottom, right, top)
    # Polygons drawn to the raster's very edge come back a hair outside after a reprojection round trip;
    # a micro-scale tolerance keeps them from being reported as "partly outside".
    eps = 1e-6 * max(right - left, top - bottom)
    arr = np.asarray(labels.geometries, dtype=object)
    touching = shapely.intersects(arr, raster_box)
    inside = shapely.covered_by(arr, shapely.box(left - eps, bottom - eps, right + eps, top + eps))
    if not touching.any():
        raise InputError(
            f"{labels.path}: none of its {len(labels)} {what} fall on the raster {path}: labels span "
            f"{_fmt_bounds(labels.bounds or ())} but the raster spans {_fmt_bounds((left, bottom, right, top))} "
            f"(both in {labels.crs}); check that the labels belong to this orthomosaic and that their CRS is "
            "right (QGIS: Layer > Set CRS)"
        )
    out: list[str] = []
    n_out = int((~touching).sum())
    n_part = int((touching & ~inside).sum())
    if n_out or n_part:
        out.append(
            f"{labels.path}: of {len(labels)} {what}, {n_out} lie wholly and {n_part} partly outside the raster "
            f"{path}; the parts outside are not used"
        )
    for note in out:
        log.warning(note)
    labels.warnings.extend(out)
    return out


def window_bounds(window_transform: Affine, out_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(minx, miny, maxx, maxy)`` covered by a grid of ``out_shape`` (rows, cols) pixels at a transform."""
    height, width = out_shape
    corners = np.array([window_transform @ (c, r) for r, c in ((0, 0), (0, width), (height, 0), (height, width))])
    return (
        float(corners[:, 0].min()),
        float(corners[:, 1].min()),
        float(corners[:, 0].max()),
        float(corners[:, 1].max()),
    )


def _burn(labels: LabelSet, window_transform: Affine, out_shape: tuple[int, int], all_touched: bool) -> np.ndarray:
    """1 where any polygon of ``labels`` covers a pixel, 0 elsewhere (only polygons reaching the window)."""
    idx = labels.query(window_bounds(window_transform, out_shape))
    if len(idx) == 0:
        return np.zeros(out_shape, dtype=np.uint8)
    return rasterio.features.rasterize(
        ((labels.geometries[i], 1) for i in idx),
        out_shape=out_shape,
        transform=window_transform,
        fill=0,
        all_touched=all_touched,
        dtype=np.uint8,
    )


def rasterize_window(
    labels: LabelSet,
    window_transform: Affine,
    out_shape: tuple[int, int],
    *,
    aoi: LabelSet | None = None,
    all_touched: bool = False,
) -> np.ndarray:
    """Burn the label polygons into a mask for one window.

    Args:
        labels: Poppy polygons in the window's CRS.
        window_transform: Transform of the window's pixel grid (``rasterio.windows.transform``, possibly scaled
            to another GSD).
        out_shape: ``(height, width)`` of the mask.
        aoi: Where labelling is complete; pixels outside it become 255 (ignore). None: everywhere.
        all_touched: Burn every pixel a polygon touches, not only those whose centre it covers.

    Returns:
        ``uint8`` array ``[height, width]``: 0 background, 1 poppy, 255 ignore (outside the AOI).
    """
    mask = _burn(labels, window_transform, out_shape, all_touched)
    if aoi is not None:
        inside = _burn(aoi, window_transform, out_shape, all_touched=False)
        mask[inside == 0] = IGNORE
    return mask


def _siblings(raster_path: str | Path, suffixes: Sequence[str]) -> list[Path]:
    """Files next to ``raster_path`` named ``NAME + suffix`` for each suffix, in that order, ignoring case."""
    raster = Path(raster_path)
    folder = raster.parent
    if not folder.is_dir():
        return []
    stem = raster.stem.lower()
    by_name = {f.name.lower(): f for f in folder.iterdir() if f.is_file()}
    return [by_name[stem + s] for s in suffixes if stem + s in by_name]


def find_aoi_file(raster_path: str | Path) -> Path | None:
    """The area-of-interest file ``NAME.aoi.geojson`` (or ``.aoi.gpkg``/``.aoi.shp``) next to a raster, or None.

    Raises:
        InputError: If more than one exists.
    """
    aois = _siblings(raster_path, [AOI_SUFFIX + s for s in LABEL_SUFFIXES])
    if len(aois) > 1:
        raise InputError(
            f"{raster_path}: found several area-of-interest files ({', '.join(f.name for f in aois)}); keep one"
        )
    return aois[0] if aois else None


def find_label_files(raster_path: str | Path) -> tuple[Path | None, Path | None]:
    """Find the labels and the area of interest stored next to a raster by the folder convention.

    ``NAME.tif`` goes with ``NAME.geojson``, ``NAME.gpkg`` or ``NAME.shp`` (labels) and ``NAME.aoi.geojson``
    (area of interest; ``.gpkg``/``.shp`` also accepted). The AOI file is never taken for the labels: its stem
    is ``NAME.aoi``, not ``NAME``. File name case is ignored (``NAME.GeoJSON`` is found).

    Returns:
        ``(labels_path, aoi_path)``, each None when absent.

    Raises:
        InputError: If two label files (say ``NAME.geojson`` and ``NAME.gpkg``) or two AOI files both exist:
            which one is current cannot be guessed.
    """
    labels = _siblings(raster_path, LABEL_SUFFIXES)
    if len(labels) > 1:
        raise InputError(
            f"{raster_path}: found several label files ({', '.join(f.name for f in labels)}); keep one of them "
            "(rename or move the others)"
        )
    return (labels[0] if labels else None), find_aoi_file(raster_path)
