"""Writing the results of one input: the only module that writes vector formats.

For an input ``STEM`` the output folder gets (``--formats`` picks among them; the summary is always written):

- ``STEM.geojson``: RFC 7946 FeatureCollection in WGS84 longitude/latitude, exterior rings counter-clockwise,
  holes clockwise, no ``crs`` member, coordinates rounded to 1e-7 degree (about 1 cm).
- ``STEM.gpkg``: GeoPackage layer ``plots`` in the raster's own CRS, written with pyogrio (GDAL/OGR).

  The GeoJSON and the GeoPackage carry an empty text field ``review`` for the analyst's verdict per plot
  (``confirmed``, ``rejected``; missed plots drawn as new features, ``added``): ``train.py --reviewed`` learns
  from them (:mod:`datasets.reviewed`).
- ``STEM.kml``: KML 2.2 for Google Earth and phone apps: a Folder with, per plot, an outlined Polygon
  placemark and a Point placemark whose description gives score, area and coordinates.
- ``STEM.csv``: one row per plot: ``plot_id, lat, lon, area_m2, score, score_kind`` (for spreadsheets and GPS
  units); ``score_kind`` says what ``score`` is (:data:`SCORE_KINDS`).
- ``STEM.preview.jpg``: the orthomosaic downsampled to at most ~2000 px a side, plots outlined and labelled by
  ``plot_id``.
- ``STEM.summary.json``: what ran on what (paths, hashes, model, parameters, versions, timings, counts).
- ``STEM.prob.tif``: the probability raster (written by :mod:`detect.rasterout`).
- ``STEM.report.html``: the field report, one self-contained page (:mod:`detect.report`).
- ``STEM.chips/PLOT_ID.jpg``: an image chip per plot, the plot outlined (:func:`detect.pictures.write_chips`);
  when written, the GeoJSON's ``chip`` property and the CSV's ``chip`` column give each plot's chip as a path
  relative to the output folder.
- ``STEM.qml`` and ``STEM.prob.qml``: QGIS styles for the plots layers and the probability raster
  (:mod:`detect.styles`); QGIS applies them by name when it opens ``STEM.geojson``, ``STEM.gpkg``, ``STEM.prob.tif``.

Every output is one entry of :data:`FORMATS` (name, suffix, writer over an :class:`ExportContext`); the summary
(:data:`SUMMARY`, :func:`write_summary`) is always written, last, so its presence marks a finished input. The
run record it holds is built before any output is written and travels in the context, so a new output (a field
report, say) is one entry that may use it.

An input without detections still gets every file, valid and empty. Every file is written beside its final
name as ``NAME.tmp`` and renamed when complete, so a reader never sees half a file; existing files are only
replaced with ``overwrite`` (``--overwrite``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from core.errors import InputError
from core.files import write_aside
from detect.pictures import PREVIEW_MAX_SIDE, encode_jpeg, render_preview, write_chips
from detect.raster import RasterInfo
from detect.report import write_report
from detect.styles import plots_qml, prob_qml, write_qml
from detect.vectorize import DetectedPlot

__all__ = [
    "ALL_FORMATS",
    "CHIPS_SUFFIX",
    "FORMATS",
    "SCORE_KINDS",
    "SUMMARY",
    "ExportContext",
    "OutputFormat",
    "check_outputs",
    "chip_refs",
    "output_paths",
    "parse_formats",
    "score_kind",
    "software_versions",
    "write_csv",
    "write_feature_collection",
    "write_geojson",
    "write_gpkg",
    "write_kml",
    "write_outputs",
    "write_preview",
    "write_summary",
]

KML_NS = "http://www.opengis.net/kml/2.2"
COORD_DIGITS = 7  # 1e-7 degree is about 1 cm: finer than any orthomosaic pixel, and RFC 7946 advises rounding
_GPKG_FIELDS = (
    "plot_id",
    "score",
    "score_mean",
    "score_max",
    "area_m2",
    "centroid_lat",
    "centroid_lon",
    "source",
    "model",
    "review",  # empty: the analyst's verdict, set in QGIS (confirmed, rejected, added) for train.py --reviewed
)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``--formats`` (``"geojson,kml"`` or ``"all"``) into format names in canonical order.

    Raises:
        InputError: For an unknown name; the message lists the valid ones.
    """
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items or items == ["all"]:
        return ALL_FORMATS
    bad = [t for t in items if t not in ALL_FORMATS]
    if bad:
        raise InputError(f"--formats {','.join(bad)}: unknown format; choose from {','.join(ALL_FORMATS)} or all")
    return tuple(f for f in ALL_FORMATS if f in items)


def output_paths(out_dir: str | Path, stem: str, formats: Iterable[str]) -> dict[str, Path]:
    """Output file per format for input ``stem``, and a ``NAME:SUFFIX`` entry per extra file a format may write
    (:attr:`OutputFormat.extra`); ``summary`` is always included, last."""
    out = Path(out_dir)
    table = {**FORMATS, SUMMARY.name: SUMMARY}
    paths: dict[str, Path] = {}
    for f in [*formats, SUMMARY.name]:
        paths[f] = out / f"{stem}{table[f].suffix}"
        paths.update({f"{f}:{x}": out / f"{stem}{x}" for x in table[f].extra})
    return paths


def check_outputs(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse to replace existing outputs unless ``overwrite``; checked before any work is done.

    Raises:
        InputError: Naming the first existing file and the ``--overwrite`` flag.
    """
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise InputError(f"{p} already exists; pass --overwrite to replace it (or choose another --out)")


@contextlib.contextmanager
def _aside(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield ``path.tmp`` to write to; rename it to ``path`` on success, delete it on failure."""
    check_outputs([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    with write_aside(path) as tmp:
        yield tmp


def _ring(coords: Iterable[Sequence[float]]) -> list[list[float]]:
    return [[round(x, COORD_DIGITS), round(y, COORD_DIGITS)] for x, y, *_ in coords]


def _rfc7946_polygon(poly: Polygon) -> dict[str, Any]:
    """GeoJSON geometry with the RFC 7946 right-hand rule: exterior counter-clockwise, holes clockwise."""
    p = orient(poly, sign=1.0)
    return {"type": "Polygon", "coordinates": [_ring(p.exterior.coords), *(_ring(r.coords) for r in p.interiors)]}


def write_geojson(
    path: Path, plots: Sequence[DetectedPlot], *, chips: Mapping[str, str] | None = None, overwrite: bool = False
) -> Path:
    """RFC 7946 FeatureCollection of the plots in WGS84 (no ``crs`` member: WGS84 is implied).

    ``chips`` maps ``plot_id`` to the plot's chip (a path relative to the output folder), written as the ``chip``
    property; without it the property is null.
    """
    chips = chips or {}
    features = [
        {
            "type": "Feature",
            "id": p.plot_id,
            "properties": {**p.properties(), "chip": chips.get(p.plot_id), "review": None},
            "geometry": _rfc7946_polygon(p.geometry_wgs84),
        }
        for p in plots
    ]
    doc = {"type": "FeatureCollection", "features": features}
    with _aside(path, overwrite) as tmp:
        tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def write_feature_collection(
    path: Path, features: Sequence[tuple[Any, Mapping[str, Any]]], *, overwrite: bool = False
) -> Path:
    """RFC 7946 FeatureCollection of any features: ``(geometry, properties)`` pairs, geometries in WGS84 lon/lat
    (shapely; polygons are oriented counter-clockwise; None for a feature without a place)."""
    out = []
    for geom, props in features:
        if geom is None:
            geometry = None
        elif isinstance(geom, Polygon):
            geometry = _rfc7946_polygon(geom)
        else:
            geometry = shapely.geometry.mapping(shapely.set_precision(geom, 10.0**-COORD_DIGITS))
        out.append({"type": "Feature", "properties": dict(props), "geometry": geometry})
    doc = {"type": "FeatureCollection", "features": out}
    with _aside(path, overwrite) as tmp:
        tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str) + "\n", encoding="utf-8")
    return path


def write_gpkg(path: Path, plots: Sequence[DetectedPlot], crs: CRS, *, overwrite: bool = False) -> Path:
    """GeoPackage layer ``plots`` in the raster's CRS; an empty layer still carries the schema."""
    import pyogrio.raw  # deferred: GDAL/OGR vector drivers load on first use

    props = [p.properties() for p in plots]
    field_data = []
    for name in _GPKG_FIELDS:
        if name == "review":  # NULL until an analyst sets it
            field_data.append(np.array([None] * len(props), dtype=object))
        elif name in ("plot_id", "source", "model"):
            field_data.append(np.array([d[name] for d in props], dtype=object))
        else:
            field_data.append(np.array([d[name] for d in props], dtype=np.float64))
    geometry = np.array([shapely.to_wkb(p.geometry) for p in plots], dtype=object)
    with _aside(path, overwrite) as tmp, warnings.catch_warnings():
        # The temporary name ends in .tmp, which GDAL notes is not the GeoPackage extension; it is renamed next.
        warnings.filterwarnings("ignore", message="The filename extension should be 'gpkg'")
        pyogrio.raw.write(
            str(tmp),
            geometry,
            field_data,
            list(_GPKG_FIELDS),
            layer="plots",
            driver="GPKG",
            geometry_type="Polygon",
            crs=crs.to_wkt(),
        )
    return path


FLIGHT_PLOT_FIELDS = ("input", "plot_id", "score", "score_kind", "area_m2", "centroid_lat", "centroid_lon", "model")
FLIGHT_FOOTPRINT_FIELDS = ("input", "verdict", "status", "plots", "flagged_area_m2")


def write_flight_gpkg(
    path: Path,
    plots: Sequence[tuple[shapely.Geometry, Mapping[str, Any]]],
    footprints: Sequence[tuple[shapely.Geometry, Mapping[str, Any]]],
    *,
    overwrite: bool = False,
) -> Path:
    """The flight's GeoPackage: layer ``plots`` (every input's plots) and ``footprints``, both in EPSG:4326.

    Args:
        path: The file.
        plots: ``(geometry in lon/lat, attributes)`` per plot, attributes named as :data:`FLIGHT_PLOT_FIELDS`.
        footprints: ``(geometry in lon/lat, attributes)`` per input, named as :data:`FLIGHT_FOOTPRINT_FIELDS`.
        overwrite: Replace an existing file.
    """
    import pyogrio.raw  # deferred: GDAL/OGR vector drivers load on first use

    numeric = {"score", "area_m2", "centroid_lat", "centroid_lon", "flagged_area_m2"}

    def columns(rows: Sequence[tuple[shapely.Geometry, Mapping[str, Any]]], names: Sequence[str]) -> list:
        return [
            np.array(
                [r[1][n] for r in rows], dtype=np.float64 if n in numeric else np.int64 if n == "plots" else object
            )
            for n in names
        ]

    wgs84 = CRS.from_epsg(4326).to_wkt()
    with _aside(path, overwrite) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The filename extension should be 'gpkg'")
        warnings.filterwarnings("ignore", message=".*non conformant file extension")
        for layer, rows, names, kind, append in (
            ("plots", plots, FLIGHT_PLOT_FIELDS, "MultiPolygon", False),
            ("footprints", footprints, FLIGHT_FOOTPRINT_FIELDS, "MultiPolygon", True),
        ):
            # One geometry type per layer: a plot with a hole in one CRS may come out of reprojection as a
            # polygon, a footprint of two islands as a multipolygon; all are written as multipolygons.
            geoms = np.array(
                [shapely.to_wkb(shapely.multipolygons(shapely.get_parts(g))) for g, _ in rows], dtype=object
            )
            pyogrio.raw.write(
                str(tmp),
                geoms,
                columns(rows, names),
                list(names),
                layer=layer,
                driver="GPKG",
                geometry_type=kind,
                crs=wgs84,
                append=append,
            )
    return path


def _kml(tag: str, parent: ET.Element | None = None, text: str | None = None) -> ET.Element:
    el = ET.Element(f"{{{KML_NS}}}{tag}") if parent is None else ET.SubElement(parent, f"{{{KML_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _kml_coords(coords: Iterable[Sequence[float]]) -> str:
    return " ".join(f"{x:.{COORD_DIGITS}f},{y:.{COORD_DIGITS}f}" for x, y, *_ in coords)


def _describe(p: DetectedPlot) -> str:
    return (
        f"Suspected poppy plot {p.plot_id}: score {p.score:.2f} "
        f"(pixel mean {p.score_mean:.2f}, max {p.score_max:.2f}), "
        f"area {p.area_m2:.1f} m2, at {p.centroid_lat:.6f}, {p.centroid_lon:.6f} (WGS84). "
        f"Source {p.source}, model {p.model}."
    )


def write_kml(path: Path, plots: Sequence[DetectedPlot], *, title: str, overwrite: bool = False) -> Path:
    """KML 2.2: a Folder with a Polygon placemark and a Point placemark per plot."""
    ET.register_namespace("", KML_NS)
    root = _kml("kml")
    doc = _kml("Document", root)
    _kml("name", doc, title)
    _kml("description", doc, f"{len(plots)} suspected poppy plot(s), {sum(p.area_m2 for p in plots):.1f} m2 in all")
    # Outline in opaque red with a faint fill; KML colours are aabbggrr.
    style = _kml("Style", doc)
    style.set("id", "plot")
    line = _kml("LineStyle", style)
    _kml("color", line, "ff0000ff")
    _kml("width", line, "2")
    poly_style = _kml("PolyStyle", style)
    _kml("color", poly_style, "330000ff")
    _kml("outline", poly_style, "1")
    pin = _kml("Style", doc)
    pin.set("id", "point")
    icon = _kml("IconStyle", pin)
    _kml("color", icon, "ff0000ff")
    _kml("scale", icon, "0.9")
    folder = _kml("Folder", doc)
    _kml("name", folder, "Suspected poppy plots")
    for p in plots:
        poly = orient(p.geometry_wgs84, sign=1.0)  # KML asks for counter-clockwise outer rings too
        pm = _kml("Placemark", folder)
        _kml("name", pm, p.plot_id)
        _kml("description", pm, _describe(p))
        _kml("styleUrl", pm, "#plot")
        ext = _kml("ExtendedData", pm)
        for key, value in p.properties().items():
            data = _kml("Data", ext)
            data.set("name", key)
            _kml("value", data, str(value))
        geom = _kml("Polygon", pm)
        _kml("tessellate", geom, "1")  # drape the outline on the terrain in Google Earth
        outer = _kml("LinearRing", _kml("outerBoundaryIs", geom))
        _kml("coordinates", outer, _kml_coords(poly.exterior.coords))
        for ring in poly.interiors:
            inner = _kml("LinearRing", _kml("innerBoundaryIs", geom))
            _kml("coordinates", inner, _kml_coords(ring.coords))
        pt = _kml("Placemark", folder)
        _kml("name", pt, p.plot_id)
        _kml("description", pt, _describe(p))
        _kml("styleUrl", pt, "#point")
        _kml("coordinates", _kml("Point", pt), _kml_coords([(p.centroid_lon, p.centroid_lat)]))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    with _aside(path, overwrite) as tmp:
        tree.write(tmp, encoding="UTF-8", xml_declaration=True)
    return path


CSV_COLUMNS = ("plot_id", "lat", "lon", "area_m2", "score", "score_kind", "chip")
# What a plot's score is, by whether a second stage scored it; a spreadsheet has no summary beside it to say so.
SCORE_KINDS = {
    True: "calibrated_probability",  # the judge's: of plots scored 0.8 on validation, about 8 in 10 were poppy
    False: "mean_pixel_probability",  # one-stage: the mean of the pixel probabilities, not calibrated
}


def score_kind(plot: DetectedPlot) -> str:
    """What ``plot.score`` is: ``calibrated_probability`` (two-stage model) or ``mean_pixel_probability``."""
    return SCORE_KINDS[plot.judge_score is not None]


def write_csv(
    path: Path,
    plots: Sequence[DetectedPlot],
    *,
    chips: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """One row per plot: ``plot_id, lat, lon, area_m2, score, score_kind, chip``.

    ``score`` is :attr:`DetectedPlot.score`: the second stage's calibrated probability that the plot is poppy, or,
    for a one-stage model, the mean pixel probability inside the plot; ``score_kind`` says which, on every row.
    ``chip`` is the plot's chip from ``chips`` (a path relative to the output folder), empty without one.
    ``extra`` names further columns taken from each plot's :meth:`DetectedPlot.properties` (a flight's plots add
    ``frames``, ``seen_in``, ``position_error_m``).
    """
    chips = chips or {}
    with _aside(path, overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*CSV_COLUMNS, *extra])
        for p in plots:
            props = p.properties() if extra else {}
            w.writerow(
                [
                    p.plot_id,
                    f"{p.centroid_lat:.7f}",
                    f"{p.centroid_lon:.7f}",
                    f"{p.area_m2:.2f}",
                    f"{p.score:.3f}",
                    score_kind(p),
                    chips.get(p.plot_id, ""),
                    *(props[k] for k in extra),
                ]
            )
    return path


def write_preview(
    path: Path,
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    plots: Sequence[DetectedPlot],
    *,
    max_side: int = PREVIEW_MAX_SIDE,
    overwrite: bool = False,
) -> Path:
    """A JPEG of the orthomosaic (:func:`render_preview`): at most ``max_side`` px a side, plots outlined, with
    ``plot_id``."""
    data = encode_jpeg(render_preview(ds, info, plots, max_side=max_side))
    with _aside(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return path


def software_versions() -> dict[str, str]:
    """Versions of the libraries that shape the results."""
    import pyproj
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "shapely": shapely.__version__,
        "pyproj": pyproj.__version__,
        "opencv": cv2.__version__,
    }


def write_summary(path: Path, record: dict[str, Any], *, overwrite: bool = False) -> Path:
    """The run record as indented JSON."""
    with _aside(path, overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


# --- the table of outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportContext:
    """Everything an output writer may use, for one input.

    Attributes:
        source: The input orthomosaic.
        ds: It, open (the preview reads it).
        info: Its inspection record.
        plots: The plots, ordered by ``plot_id``, geometries in the raster's CRS.
        record: The run record (what ran on what; ``STEM.summary.json``), built before any output is written.
        overwrite: Replace existing files.
    """

    source: Path
    ds: rasterio.io.DatasetReader
    info: RasterInfo
    plots: Sequence[DetectedPlot]
    record: dict[str, Any]
    overwrite: bool = False


@dataclass(frozen=True)
class OutputFormat:
    """One output: its ``--formats`` name, file suffix and writer.

    Attributes:
        name: The name ``--formats`` takes.
        suffix: Appended to the input's stem.
        write: Writes the file at the given path from the context; None for an output written elsewhere (the
            probability raster is streamed during prediction by :mod:`detect.rasterout`).
        extra: Suffixes of further files the writer may write beside its own (the raster's QGIS style beside
            the plots' one); :func:`output_paths` lists them as ``NAME:SUFFIX``, so they are checked and
            published like any output.
    """

    name: str
    suffix: str
    write: Callable[[Path, ExportContext], Path] | None
    extra: tuple[str, ...] = ()


CHIPS_SUFFIX = ".chips"


def chip_refs(ctx: ExportContext, path: Path, suffix: str) -> dict[str, str] | None:
    """Each plot's chip as a path relative to the output folder (``STEM.chips/P001.jpg``), when chips are among
    the run's formats (``record["parameters"]["formats"]``); else None. ``path`` is the calling writer's output
    and ``suffix`` its suffix, which give the input's stem."""
    if "chips" not in ctx.record.get("parameters", {}).get("formats", ()):
        return None
    folder = path.name.removesuffix(suffix) + CHIPS_SUFFIX
    return {p.plot_id: f"{folder}/{p.plot_id}.jpg" for p in ctx.plots}


def _write_report(path: Path, c: ExportContext) -> Path:
    check_outputs([path], c.overwrite)
    return write_report(path, c.ds, c.info, c.plots, c.record, source_name=c.source.name)


def _write_chips(path: Path, c: ExportContext) -> Path:
    check_outputs([path], c.overwrite)
    return write_chips(path, c.ds, c.info, c.plots)


_PROB_STYLE = ".prob.qml"


def _write_qml(path: Path, c: ExportContext) -> Path:
    """``STEM.qml`` for the plots, and ``STEM.prob.qml`` beside it when the probability raster is written."""
    prob_style = path.with_name(path.name.removesuffix(".qml") + _PROB_STYLE)
    with_prob = "prob" in c.record.get("parameters", {}).get("formats", ())
    check_outputs([path, prob_style] if with_prob else [path], c.overwrite)
    if with_prob:
        write_qml(prob_style, prob_qml())
    return write_qml(path, plots_qml())


# In --formats order (and the order they are written in). The probability raster has no writer here: it exists
# before any of these, written while predicting.
FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            "geojson",
            ".geojson",
            lambda p, c: write_geojson(p, c.plots, chips=chip_refs(c, p, ".geojson"), overwrite=c.overwrite),
        ),
        OutputFormat("gpkg", ".gpkg", lambda p, c: write_gpkg(p, c.plots, c.info.crs, overwrite=c.overwrite)),
        OutputFormat(
            "kml",
            ".kml",
            lambda p, c: write_kml(p, c.plots, title=f"Poppy plots: {c.source.name}", overwrite=c.overwrite),
        ),
        OutputFormat(
            "csv", ".csv", lambda p, c: write_csv(p, c.plots, chips=chip_refs(c, p, ".csv"), overwrite=c.overwrite)
        ),
        OutputFormat("prob", ".prob.tif", None),
        OutputFormat(
            "preview", ".preview.jpg", lambda p, c: write_preview(p, c.ds, c.info, c.plots, overwrite=c.overwrite)
        ),
        OutputFormat("chips", CHIPS_SUFFIX, _write_chips),
        OutputFormat("report", ".report.html", _write_report),
        OutputFormat("qml", ".qml", _write_qml, extra=(_PROB_STYLE,)),
    )
}
ALL_FORMATS: tuple[str, ...] = tuple(FORMATS)
# Always written, after every other output and once their timings are in the record (by the caller, with
# write_summary), so its presence marks a finished input.
SUMMARY = OutputFormat("summary", ".summary.json", None)


def write_outputs(paths: dict[str, Path], formats: Iterable[str], ctx: ExportContext) -> None:
    """Write the chosen outputs that have a writer, in table order (not the summary: see :data:`SUMMARY`).

    Args:
        paths: Output file per format (from :func:`output_paths`).
        formats: The chosen format names.
        ctx: What the writers use.
    """
    chosen = set(formats)
    for name, fmt in FORMATS.items():
        if name in chosen and fmt.write is not None:
            fmt.write(paths[name], ctx)
