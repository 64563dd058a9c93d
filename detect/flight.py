"""Raw flight frames (drone JPEGs) triaged before photogrammetry: each frame placed on the map and searched.

An orthomosaic takes hours to build; the frames of a flight are there when the drone lands. :func:`run_flight`
reads each frame's EXIF (GPS position, camera model, focal length) and DJI XMP (height above the take-off point,
gimbal pitch, roll and yaw) with Pillow, skips frames it cannot place (no GPS, no height, oblique, unknown
camera, ...) with a reason each, places the others with :mod:`detect.frames`, runs the same detector as for
orthomosaics on each (:func:`detect.pipeline.detect_plots`, resampled to the model's GSD), maps the plots onto the
map, and merges detections of one plot seen in several frames into one plot that lists its frames.

The detector refuses rotated rasters, and a frame is rarely flown north-up. So each frame is written as a
temporary GeoTIFF with an *upright* transform (the frame's GSD, centred where the frame is, no rotation), the
plots are found in it, and then mapped by the affine that takes the upright frame to the true one (rotation
included). The preview of a frame shows the photo as taken, with the plots outlined.

Outputs in ``--out`` for a flight ``STEM`` (the folder's name): ``STEM.geojson``, ``STEM.gpkg``, ``STEM.kml``,
``STEM.csv`` (the merged plots, each with ``frames``, ``seen_in`` and ``position_error_m``),
``STEM.footprints.geojson`` (every frame: its footprint, or its GPS point, with its status and reason),
``STEM.frames/NAME.preview.jpg`` (a preview per placed frame) and ``STEM.summary.json``, last.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window
from shapely.geometry import Point, Polygon
from shapely.geometry.polygon import orient
from torch import nn

from core.errors import InputError
from core.files import file_sha256
from core.geodesy import geodesic_area_m2
from detect.export import (
    check_outputs,
    software_versions,
    write_csv,
    write_feature_collection,
    write_geojson,
    write_gpkg,
    write_kml,
    write_preview,
    write_summary,
)
from detect.frames import (
    CAMERAS,
    NADIR_TOLERANCE_DEG,
    Camera,
    ErrorBudget,
    FrameGeoref,
    Optics,
    Pose,
    Sighting,
    expected_error_m,
    frame_georeference,
    merge_sightings,
    nadir_problem,
    pixels_to_crs,
    utm_crs,
)
from detect.inputs import check_free_space, prob_raster_bytes
from detect.judge import judge_plots, resolve_operating_point
from detect.pipeline import RASTER_SUFFIXES, RunOptions, detect_plots, runtime_entry
from detect.predict import check_gsd
from detect.raster import RasterInfo, inspect_raster, open_raster
from detect.vectorize import DetectedPlot, VectorParams
from models.checkpoint import ModelSpec
from models.plotnet import JudgeSpec

__all__ = [
    "FLIGHT_FORMATS",
    "JPEG_SUFFIXES",
    "FlightOptions",
    "FlightPlot",
    "FlightResult",
    "FrameMeta",
    "FrameResult",
    "find_frames",
    "flight_paths",
    "load_cameras",
    "read_frame",
    "run_flight",
]

JPEG_SUFFIXES = (".jpg", ".jpeg")
# Outputs a flight writes, in --formats names; the others (prob, chips, report, qml) are for orthomosaics.
FLIGHT_FORMATS = ("geojson", "gpkg", "kml", "csv", "preview")
_STRIP_ROWS = 512  # rows copied at a time from the JPEG to the temporary GeoTIFF (the JPEG decodes forward)
_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769


@dataclass(frozen=True)
class FrameMeta:
    """What a frame's EXIF and XMP say about where it was taken (None where the file does not say).

    Attributes:
        path: The JPEG.
        height: Rows of the image.
        width: Columns.
        bands: Colour bands (3 for RGB).
        make: EXIF ``Make``.
        model: EXIF ``Model`` (the camera, e.g. ``FC6310``), the key of the camera table.
        lat: GPS latitude (WGS84 degrees, south negative).
        lon: GPS longitude (west negative).
        height_m: Height above the take-off point (XMP ``RelativeAltitude``).
        pitch_deg: Gimbal pitch (XMP ``GimbalPitchDegree``; -90 straight down).
        roll_deg: Gimbal roll (XMP ``GimbalRollDegree``).
        yaw_deg: Heading of the image's top (XMP ``GimbalYawDegree``, else ``FlightYawDegree``, else EXIF
            ``GPSImgDirection``).
        yaw_source: Which of those gave ``yaw_deg``.
        focal_mm: EXIF ``FocalLength``.
        gps_error_m: The frame's own horizontal position error, when it gives one (EXIF
            ``GPSHPositioningError``, or a DJI RTK fix's standard deviations, doubled to a 95 % bound).
        orientation: EXIF ``Orientation`` (1: stored as shown).
    """

    path: Path
    height: int
    width: int
    bands: int
    make: str = ""
    model: str = ""
    lat: float | None = None
    lon: float | None = None
    height_m: float | None = None
    pitch_deg: float | None = None
    roll_deg: float | None = None
    yaw_deg: float | None = None
    yaw_source: str = ""
    focal_mm: float | None = None
    gps_error_m: float | None = None
    orientation: int = 1


def _xmp_values(node: Any, out: dict[str, str] | None = None) -> dict[str, str]:
    """Every text value of Pillow's parsed XMP by its local name (the first one wins)."""
    out = {} if out is None else out
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(value, str):
                out.setdefault(str(key), value)
            else:
                _xmp_values(value, out)
    elif isinstance(node, list | tuple):
        for value in node:
            _xmp_values(value, out)
    return out


def _number(value: Any) -> float | None:
    """A finite float from an EXIF rational or an XMP text (``"+39.90"``), else None."""
    try:
        x = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def _degrees(dms: Any, ref: Any, negative: str) -> float | None:
    """EXIF degrees, minutes, seconds and a hemisphere letter to signed degrees."""
    try:
        d, m, s = (float(v) for v in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60.0 + s / 3600.0
    if not math.isfinite(value):
        return None
    ref = ref.decode(errors="replace") if isinstance(ref, bytes) else str(ref or "")
    return -value if ref.strip().upper().startswith(negative) else value


def read_frame(path: str | Path) -> FrameMeta:
    """Read a frame's position, attitude and camera from its EXIF and XMP (Pillow; XMP through defusedxml).

    Raises:
        InputError: If the file is not an image Pillow can open.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        import defusedxml  # noqa: F401  # Pillow's getxmp() needs it, and without it silently returns nothing
    except ImportError as exc:
        raise InputError(
            "reading the frames' XMP (DJI height and attitude) needs defusedxml: pip install -r requirements.txt"
        ) from exc
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            gps = exif.get_ifd(_GPS_IFD)
            sub = exif.get_ifd(_EXIF_IFD)
            xmp = _xmp_values(im.getxmp()) if "xmp" in im.info else {}
            width, height, bands = im.width, im.height, len(im.getbands())
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not an image that can be read ({' '.join(str(exc).split())})") from exc
    lat = _degrees(gps.get(2), gps.get(1), "S")
    lon = _degrees(gps.get(4), gps.get(3), "W")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    yaw, yaw_source = None, ""
    for key, source in (
        ("GimbalYawDegree", "XMP GimbalYawDegree"),
        ("FlightYawDegree", "XMP FlightYawDegree"),
    ):
        yaw = _number(xmp.get(key))
        if yaw is not None:
            yaw_source = source
            break
    if yaw is None and _number(gps.get(17)) is not None:
        yaw, yaw_source = _number(gps.get(17)), "EXIF GPSImgDirection"
    gps_error = _number(gps.get(31))  # GPSHPositioningError, metres
    if xmp.get("RtkFlag", "").strip() == "50":  # DJI: 50 is a fixed RTK solution
        std = [_number(xmp.get(k)) for k in ("RtkStdLon", "RtkStdLat")]
        if all(s is not None for s in std):
            gps_error = 2.0 * math.hypot(*std)  # type: ignore[arg-type]
    return FrameMeta(
        path=path,
        height=height,
        width=width,
        bands=bands,
        make=str(exif.get(271) or xmp.get("Make") or "").strip("\0 "),
        model=str(exif.get(272) or xmp.get("Model") or "").strip("\0 "),
        lat=lat,
        lon=lon,
        height_m=_number(xmp.get("RelativeAltitude")),
        pitch_deg=_number(xmp.get("GimbalPitchDegree")),
        roll_deg=_number(xmp.get("GimbalRollDegree")),
        yaw_deg=yaw,
        yaw_source=yaw_source,
        focal_mm=_number(sub.get(0x920A)),
        gps_error_m=gps_error,
        orientation=int(exif.get(274) or 1),
    )


def load_cameras(text: str | None) -> tuple[dict[str, Camera], Camera | None]:
    """The camera table for a run, from ``--camera``.

    ``--camera W,F`` sets the camera of every frame (sensor width and focal length in mm); ``--camera FILE.json``
    adds to (or corrects) the table: ``{"MODEL": {"sensor_width_mm": 13.2, "focal_mm": 8.8}, ...}`` keyed by the
    EXIF ``Model``.

    Returns:
        ``(table, forced)``: the table by EXIF model, and the camera every frame uses (None: look it up).

    Raises:
        InputError: For a file that cannot be read or entries that are not two positive numbers.
    """
    from detect.frames import parse_camera

    table = dict(CAMERAS)
    if text is None:
        return table, None
    if not text.lower().endswith(".json"):
        return table, parse_camera(text)
    try:
        doc = json.loads(Path(text).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"--camera {text}: cannot read it as JSON ({' '.join(str(exc).split())}); fix the file"
        ) from exc
    if not isinstance(doc, dict):
        raise InputError(f'--camera {text}: must map camera models to {{"sensor_width_mm": ..., "focal_mm": ...}}')
    for model, entry in doc.items():
        try:
            cam = Camera(float(entry["sensor_width_mm"]), float(entry["focal_mm"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise InputError(
                f"--camera {text}: entry {model!r} needs sensor_width_mm and focal_mm in millimetres"
            ) from exc
        if not (cam.sensor_width_mm > 0 and cam.focal_mm > 0):
            raise InputError(f"--camera {text}: entry {model!r}: sizes must be positive millimetres")
        table[str(model)] = cam
    return table, None


def find_frames(inputs: Sequence[str | Path], *, force: bool = False) -> list[Path] | None:
    """The flight's frames when the INPUT arguments are raw drone frames, else None (orthomosaics).

    Inputs are frames when each is a JPEG, or a folder holding JPEGs and no raster of
    :data:`detect.pipeline.RASTER_SUFFIXES`, and the first JPEG has EXIF GPS or DJI XMP (a JPEG without them is
    left to the orthomosaic path, which says it is a photo). ``force`` (``--frames``) takes the JPEGs whatever
    their tags.

    Raises:
        InputError: With ``force``, if an input is missing or a folder holds no JPEG.
    """
    frames: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            jpegs = [f for f in files if f.suffix.lower() in JPEG_SUFFIXES]
            rasters = [f for f in files if f.suffix.lower() in RASTER_SUFFIXES]
            if force and not jpegs:
                raise InputError(f"{p}: folder holds no JPEG frame (.jpg, .jpeg); give the flight's photo folder")
            if (rasters and not force) or not jpegs:
                return None
            frames.extend(jpegs)
        elif p.is_file() and (force or p.suffix.lower() in JPEG_SUFFIXES):
            frames.append(p)
        elif force:
            raise InputError(f"{p}: no such file or folder; check the path")
        else:
            return None
    if not frames:
        return None
    seen: set[Path] = set()
    frames = [f for f in frames if not (f.resolve() in seen or seen.add(f.resolve()))]
    if force:
        return frames
    try:
        meta = read_frame(frames[0])
    except InputError:
        return None
    return frames if (meta.lat is not None or meta.height_m is not None) else None


def flight_stem(frames: Sequence[Path]) -> str:
    """The flight's output name: the folder of its first frame."""
    return frames[0].absolute().parent.name or "flight"


def flight_paths(out_dir: str | Path, stem: str, formats: Sequence[str]) -> dict[str, Path]:
    """Output path per flight output (``footprints`` and ``summary`` always)."""
    out = Path(out_dir)
    suffix = {"geojson": ".geojson", "gpkg": ".gpkg", "kml": ".kml", "csv": ".csv", "preview": ".frames"}
    paths = {f: out / f"{stem}{suffix[f]}" for f in FLIGHT_FORMATS if f in formats}
    paths["footprints"] = out / f"{stem}.footprints.geojson"
    paths["summary"] = out / f"{stem}.summary.json"
    return paths


@dataclass(frozen=True)
class FlightOptions:
    """Settings of a flight beyond :class:`detect.pipeline.RunOptions`.

    Attributes:
        cameras: Camera by EXIF model (:data:`detect.frames.CAMERAS`, with ``--camera FILE.json``'s entries).
        camera: The camera of every frame (``--camera W,F``); None looks each frame's model up.
        budget: Expected errors of GPS, attitude, heading and height.
        nadir_tolerance_deg: Frames tilted further from straight down are skipped.
    """

    cameras: Mapping[str, Camera] = field(default_factory=lambda: dict(CAMERAS))
    camera: Camera | None = None
    budget: ErrorBudget = field(default_factory=ErrorBudget)
    nadir_tolerance_deg: float = NADIR_TOLERANCE_DEG


@dataclass
class FrameResult:
    """One frame: placed (with its georeference and detections) or skipped (with the reason).

    Attributes:
        meta: What its tags say.
        reason: Why it was skipped; None when placed.
        georef: Its placement in the flight CRS.
        upright: The upright transform it was searched in (see the module's docstring).
        pose: The camera's position and attitude.
        optics: The image and lens.
        camera: The camera used.
        error_centre_m: Expected position error at the frame's centre.
        error_corner_m: ... at its farthest corner.
        sightings: Detections in it, in the upright frame's coordinates, with their index among all sightings.
    """

    meta: FrameMeta
    reason: str | None = None
    georef: FrameGeoref | None = None
    upright: Affine | None = None
    pose: Pose | None = None
    optics: Optics | None = None
    camera: Camera | None = None
    error_centre_m: float | None = None
    error_corner_m: float | None = None
    sightings: list[tuple[int, DetectedPlot]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.meta.path.name

    def line(self) -> str:
        """The console line of the frame, said when it is done (its plots' ids come with the merge, later: they
        are in the footprints layer and the summary)."""
        if self.reason is not None:
            return f"{self.name}: skipped: {self.reason}"
        gsd = self.georef.gsd_m if self.georef is not None else float("nan")
        seen = f"{len(self.sightings)} detection(s)"
        return (
            f"{self.name}: {seen}, GSD {gsd * 100:.2f} cm, height {self.meta.height_m:.1f} m, "
            f"expected position error {self.error_centre_m:.1f}-{self.error_corner_m:.1f} m"
        )


@dataclass
class FlightPlot(DetectedPlot):
    """A plot of a flight: a :class:`DetectedPlot` (geometry in the flight's UTM zone) seen in one or more frames.

    Attributes:
        frames: The frames it was seen in (file names), the one whose outline is given first.
        position_error_m: The expected position error of that outline (its frame's, at its place in the frame).
    """

    frames: tuple[str, ...] = ()
    position_error_m: float = 0.0
    members: tuple[int, ...] = ()  # indexes of its sightings among the flight's (for the previews); not exported

    def properties(self) -> dict[str, str | float]:
        """The plot's attributes, with ``frames`` (``;``-separated), ``seen_in`` and ``position_error_m``."""
        return {
            **super().properties(),
            "frames": ";".join(self.frames),
            "seen_in": len(self.frames),
            "position_error_m": round(self.position_error_m, 1),
        }


@dataclass
class FlightResult:
    """A flight's frames and plots.

    Attributes:
        frames: Every frame, in order.
        plots: The merged plots, ordered by ``plot_id`` (north to south, then west to east).
        crs: The flight's CRS (UTM zone of its first placed frame).
        outputs: Output file per format.
        summary: The record written to ``STEM.summary.json``.
    """

    frames: list[FrameResult]
    plots: list[FlightPlot]
    crs: CRS | None
    outputs: dict[str, Path]
    summary: dict[str, Any]

    def line(self) -> str:
        placed = sum(f.reason is None for f in self.frames)
        area = sum(p.area_m2 for p in self.plots)
        return (
            f"{self.outputs['summary'].name.removesuffix('.summary.json')}: {len(self.plots)} plot(s), "
            f"{area:.1f} m2 flagged, from {placed} of {len(self.frames)} frame(s) placed "
            f"-> {self.outputs['summary'].parent}"
        )


def _skip_reason(meta: FrameMeta, options: FlightOptions) -> tuple[str | None, Camera | None]:
    """Why a frame cannot be placed (None if it can), and its camera."""
    if meta.bands < 3:
        return f"{meta.bands}-band image; frames must be RGB photos", None
    if meta.orientation != 1:
        return f"EXIF orientation {meta.orientation} (stored rotated); export the frames unrotated", None
    if meta.lat is None or meta.lon is None:
        return "no GPS position in the EXIF; only geotagged frames can be placed", None
    if meta.height_m is None:
        return "no height above ground (DJI XMP RelativeAltitude); the GSD cannot be known", None
    if meta.height_m <= 1.0:
        return f"height above the take-off point {meta.height_m:.1f} m: on the ground or below it", None
    if meta.yaw_deg is None:
        return "no heading (XMP GimbalYawDegree or FlightYawDegree); the frame's rotation cannot be known", None
    problem = nadir_problem(meta.pitch_deg, meta.roll_deg, options.nadir_tolerance_deg)
    if problem is not None:
        return problem, None
    camera = options.camera or options.cameras.get(meta.model)
    if camera is None:
        return (
            f"unknown camera {meta.model or '(no EXIF Model)'} ({meta.make or 'no make'}): its sensor size is not "
            "in the camera table; give it with --camera SENSOR_WIDTH_MM,FOCAL_MM or a JSON file",
            None,
        )
    return None, camera


def _place(meta: FrameMeta, camera: Camera, crs: CRS, budget: ErrorBudget, *, forced: bool = False) -> FrameResult:
    """Georeference a frame that passed :func:`_skip_reason`. The EXIF focal length wins over the table's (zoom
    lenses), not over a camera given by hand (``forced``)."""
    if meta.lat is None or meta.lon is None or meta.height_m is None or meta.yaw_deg is None:
        raise ValueError(f"{meta.path}: not placeable (see _skip_reason)")  # a bug if reached
    pose = Pose(meta.lat, meta.lon, meta.height_m, meta.yaw_deg, meta.pitch_deg or -90.0, meta.roll_deg or 0.0)
    focal = meta.focal_mm if meta.focal_mm and meta.focal_mm > 0 and not forced else camera.focal_mm
    optics = Optics(meta.height, meta.width, camera.sensor_width_mm / meta.width, focal)
    georef = frame_georeference(pose, optics, crs)
    g = georef.gsd_m
    cx, cy = georef.transform * (meta.width / 2, meta.height / 2)
    upright = Affine(g, 0.0, cx - g * meta.width / 2, 0.0, -g, cy + g * meta.height / 2)
    err = dict(gps_m=meta.gps_error_m)  # plots are ray-cast (pixels_to_crs): the affine's residual is not theirs
    return FrameResult(
        meta=meta,
        georef=georef,
        upright=upright,
        pose=pose,
        optics=optics,
        camera=camera,
        error_centre_m=expected_error_m(meta.height_m, 0.0, budget, **err),
        error_corner_m=expected_error_m(meta.height_m, georef.half_diagonal_m, budget, **err),
    )


def _write_upright(frame: FrameResult, crs: CRS, path: Path) -> Path:
    """Copy the JPEG's pixels into a tiled GeoTIFF with the frame's upright transform, a strip at a time."""
    with open_raster(frame.meta.path) as src:
        profile = dict(
            driver="GTiff",
            height=src.height,
            width=src.width,
            count=3,
            dtype="uint8",
            crs=crs,
            transform=frame.upright,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            photometric="RGB",
        )
        with rasterio.open(path, "w", **profile) as dst:
            for row in range(0, src.height, _STRIP_ROWS):
                window = Window(0, row, src.width, min(_STRIP_ROWS, src.height - row))
                dst.write(src.read([1, 2, 3], window=window), window=window)
    return path


def _place_geometry(frame: FrameResult, crs: CRS, geom: Polygon) -> Polygon:
    """A plot outline from the upright frame's coordinates to the map: back to image positions through the
    upright transform, then each vertex ray-cast to the ground (:func:`detect.frames.pixels_to_crs`)."""
    if frame.upright is None or frame.pose is None or frame.optics is None:
        raise ValueError(f"{frame.name}: not placed")  # a bug if reached
    inv = ~frame.upright
    pose, optics = frame.pose, frame.optics

    def to_map(xy: np.ndarray) -> np.ndarray:
        cols = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c
        rows = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f
        return np.column_stack(pixels_to_crs(pose, optics, crs, rows, cols))

    return orient(shapely.transform(geom, to_map), sign=1.0)


@dataclass(frozen=True)
class _Search:
    """What searching a flight's frames needs, the same for every frame.

    Attributes:
        crs: The flight's CRS.
        work: Folder of the temporary upright GeoTIFFs and probability rasters.
        model: The network.
        spec: Its spec.
        params: Threshold and clean-up of the first stage.
        options: The run's settings.
        flight: Camera table, error budget, nadir tolerance.
        judge: The second stage and the plot-score threshold it keeps plots at, or None.
    """

    crs: CRS
    work: Path
    model: nn.Module
    spec: ModelSpec
    params: VectorParams
    options: RunOptions
    flight: FlightOptions
    judge: tuple[nn.Module, JudgeSpec, float] | None


def _detect_frame(frame: FrameResult, search: _Search) -> list[DetectedPlot]:
    """Run the detector on one placed frame; the plots in its upright coordinates. Raises InputError for a
    frame the model cannot take (its GSD)."""
    s, options, spec, judge = search, search.options, search.spec, search.judge
    tif = _write_upright(frame, s.crs, s.work / f"{frame.meta.path.stem}.upright.tif")
    try:
        with open_raster(tif) as ds:
            info = inspect_raster(ds)
            check_gsd(info, spec.gsd_m, allow=options.allow_gsd_mismatch)
            det = detect_plots(
                ds,
                s.model,
                spec,
                s.params,
                temp_dir=s.work,
                tile=options.tile,
                overlap=options.overlap,
                batch_size=options.batch_size,
                device=options.device,
                tta=options.tta,
                source=frame.name,
                model_name=spec.name,
            )
            plots = det.plots
            if judge is not None:
                plots = judge_plots(ds, info, plots, judge[0], judge[1], judge[2], device=det.prediction.device)
    finally:
        tif.unlink(missing_ok=True)
    return plots


def _merge(frames: Sequence[FrameResult], crs: CRS, budget: ErrorBudget) -> list[FlightPlot]:
    """Map every detection onto the map, merge those of one plot, number the plots."""
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    sightings: list[Sighting] = []
    found: list[tuple[FrameResult, DetectedPlot, Polygon, float]] = []
    for frame in frames:
        if frame.reason is not None or frame.georef is None or frame.meta.height_m is None:
            continue
        for k, (_, plot) in enumerate(frame.sightings):
            geom = _place_geometry(frame, crs, plot.geometry)
            dist = Point(frame.georef.centre).distance(geom.centroid)
            err = expected_error_m(frame.meta.height_m, dist, budget, gps_m=frame.meta.gps_error_m)
            frame.sightings[k] = (len(sightings), plot)
            sightings.append(Sighting(frame.name, geom, err))
            found.append((frame, plot, geom, err))
    plots: list[FlightPlot] = []
    for group in merge_sightings(sightings):
        best = min(group, key=lambda i: (found[i][3], i))  # the outline with the smallest expected error
        frame, plot, geom, err = found[best]
        lonlat = orient(
            shapely.transform(
                shapely.segmentize(geom, 1.0),
                lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])),
            ),
            sign=1.0,
        )
        lon, lat = to_lonlat.transform(geom.centroid.x, geom.centroid.y)
        names = [frame.name, *sorted({found[i][0].name for i in group} - {frame.name})]
        plots.append(
            FlightPlot(
                plot_id="",
                geometry=geom,
                geometry_wgs84=lonlat,
                score_mean=plot.score_mean,
                score_max=plot.score_max,
                area_m2=geodesic_area_m2(lonlat),
                centroid_lat=float(lat),
                centroid_lon=float(lon),
                source=frame.name,
                model=plot.model,
                judge_score=plot.judge_score,
                frames=tuple(names),
                position_error_m=err,
                members=tuple(group),
            )
        )
    # North to south, then west to east, on a 10 cm grid so the order is stable.
    plots.sort(key=lambda p: (-round(p.geometry.centroid.y, 1), round(p.geometry.centroid.x, 1)))
    digits = max(3, len(str(len(plots))))
    for i, p in enumerate(plots, start=1):
        p.plot_id = f"P{i:0{digits}d}"
    return plots


def _frame_feature(frame: FrameResult, ids: Sequence[str], to_lonlat: Transformer | None) -> tuple[Any, dict]:
    """A frame's feature for the footprints layer: its footprint (placed), its GPS point, or no geometry."""
    m = frame.meta
    props: dict[str, Any] = {
        "frame": frame.name,
        "status": "placed" if frame.reason is None else "skipped",
        "reason": frame.reason,
        "camera": m.model or None,
        "lat": None if m.lat is None else round(m.lat, 7),
        "lon": None if m.lon is None else round(m.lon, 7),
        "height_m": m.height_m,
        "yaw_deg": m.yaw_deg,
        "pitch_deg": m.pitch_deg,
        "gsd_cm": None,
        "error_centre_m": None,
        "error_corner_m": None,
        "detections": len(frame.sightings),
        "plots": ";".join(ids),
    }
    geom: Any = None
    if frame.georef is not None and to_lonlat is not None:
        props.update(
            gsd_cm=round(frame.georef.gsd_m * 100, 2),
            error_centre_m=round(frame.error_centre_m or 0.0, 2),
            error_corner_m=round(frame.error_corner_m or 0.0, 2),
        )
        geom = shapely.transform(
            frame.georef.footprint, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
        )
    elif m.lat is not None and m.lon is not None:
        geom = Point(m.lon, m.lat)
    return geom, props


def _write_previews(folder: Path, frames: Sequence[FrameResult], plots: Sequence[FlightPlot], crs: CRS) -> None:
    """``NAME.preview.jpg`` per placed frame: the photo as taken, with the flight's plots it saw outlined."""
    ids = {i: p.plot_id for p in plots for i in p.members}
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        if frame.reason is not None or frame.upright is None:
            continue
        shown = [dataclasses.replace(plot, plot_id=ids[i]) for i, plot in frame.sightings]
        with open_raster(frame.meta.path) as ds:
            g = abs(frame.upright.a)
            info = RasterInfo(
                path=str(frame.meta.path),
                height=ds.height,
                width=ds.width,
                count=ds.count,
                dtype="uint8",
                crs=crs,
                transform=frame.upright,
                gsd_m=(g, g),
                rgb_bands=(1, 2, 3),
                alpha_band=None,
                nodata=None,
            )
            write_preview(folder / f"{frame.meta.path.stem}.preview.jpg", ds, info, shown, overwrite=True)


def _read_frames(frames: Sequence[Path], flight: FlightOptions) -> list[FrameResult]:
    """Every frame's tags, and why it cannot be placed (None where it can)."""
    results: list[FrameResult] = []
    for path in frames:
        try:
            meta = read_frame(path)
        except InputError as exc:
            results.append(FrameResult(FrameMeta(Path(path), 0, 0, 0), reason=str(exc).split(": ", 1)[-1]))
            continue
        reason, camera = _skip_reason(meta, flight)
        results.append(FrameResult(meta, reason=reason, camera=camera))
    return results


def _nothing_placed(what: str, results: Sequence[FrameResult]) -> InputError:
    """The error of a flight without a usable frame, with the first frames' reasons."""
    reasons = "; ".join(f"{f.name}: {f.reason}" for f in results[:5])
    return InputError(f"{what}: {reasons}" + ("; ..." if len(results) > 5 else ""))


def _search_frame(frame: FrameResult, camera: Camera, search: _Search) -> FrameResult:
    """Place one frame and run the detector on it; the frame skipped with the reason when either cannot be done
    (a ray above the horizon, a GSD the model cannot take)."""
    try:
        placed = _place(frame.meta, camera, search.crs, search.flight.budget, forced=search.flight.camera is not None)
    except ValueError as exc:
        frame.reason = " ".join(str(exc).split())
        return frame
    # Room for the frame's temporary rasters, checked here so that a full disk stops the flight (a frame's own
    # problems below only skip the frame): the upright copy (3 bytes a pixel) and the probability raster with its
    # work file at the model's GSD.
    scale = (placed.georef.gsd_m if placed.georef else search.spec.gsd_m) / search.spec.gsd_m
    grid_h, grid_w = math.ceil(frame.meta.height * scale), math.ceil(frame.meta.width * scale)
    need = 3 * frame.meta.height * frame.meta.width + prob_raster_bytes(grid_h, grid_w) + grid_h * grid_w
    check_free_space(search.work, need, what=f"{frame.name}'s temporary rasters")
    try:
        plots = _detect_frame(placed, search)
    except InputError as exc:
        frame.reason = " ".join(str(exc).split(": ", 1)[-1].split())  # without the temporary file's name
        return frame
    placed.sightings = [(-1, p) for p in plots]
    return placed


def run_flight(
    frames: Sequence[Path],
    model: nn.Module,
    spec: ModelSpec,
    options: RunOptions,
    flight: FlightOptions | None = None,
    *,
    weights_path: str | Path | None = None,
    judge: tuple[nn.Module, JudgeSpec] | None = None,
    stem: str | None = None,
    say: Callable[[str], None] | None = None,
) -> FlightResult:
    """Place, search and merge a flight's frames, and write its outputs.

    Args:
        frames: The JPEG frames (from :func:`find_frames`).
        model: The network.
        spec: Its spec.
        options: The run's settings (threshold, sensitivity, tiles, device, formats, overwrite, ...).
        flight: Camera table, error budget, nadir tolerance.
        weights_path: The weights file, for the summary.
        judge: The second stage of a two-stage model, or None.
        stem: Output name; None takes the first frame's folder name.
        say: Called with one line per frame as it is done.

    Returns:
        A :class:`FlightResult`.

    Raises:
        InputError: If outputs exist without ``overwrite``, or no frame could be placed (every reason is given).
    """
    t_start = time.perf_counter()
    flight = flight or FlightOptions()
    say = say or (lambda _: None)
    stem = stem or flight_stem(frames)
    out = Path(options.out_dir)
    paths = flight_paths(out, stem, options.formats)
    check_outputs(paths.values(), options.overwrite)
    point = resolve_operating_point(spec, judge[1] if judge else None, options.sensitivity, options.threshold)
    params = VectorParams(threshold=spec.threshold if judge else point.threshold, min_area_m2=options.min_area_m2)
    params.check()
    # The second stage keeps plots whose score reaches the operating point; the first proposes at its own threshold.
    judging = (judge[0], judge[1], point.threshold) if judge is not None else None

    results = _read_frames(frames, flight)
    placed = [f for f in results if f.reason is None]
    if not placed:
        raise _nothing_placed(f"none of the {len(results)} frame(s) could be placed", results)
    crs = utm_crs(placed[0].meta.lon, placed[0].meta.lat)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    work = out / f".{stem}.frames-work"  # the temporary upright GeoTIFFs and probability rasters
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    search = _Search(crs, work, model, spec, params, options, flight, judging)
    try:
        for k, frame in enumerate(results):
            if frame.reason is None and frame.camera is not None:
                results[k] = _search_frame(frame, frame.camera, search)
            say(results[k].line())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not any(f.reason is None for f in results):
        raise _nothing_placed("no frame could be searched", results)
    plots = _merge(results, crs, flight.budget)
    record = _flight_record(frames, results, plots, crs, spec, weights_path, options, flight, params, point, paths)
    record["parameters"].update(runtime_entry(model))  # what ran the network, unless plain PyTorch
    _write_flight_outputs(paths, stem, results, plots, crs, options)
    record["timings_s"] = {"total": round(time.perf_counter() - t_start, 3)}
    write_summary(paths["summary"], record, overwrite=options.overwrite)
    return FlightResult(results, plots, crs, paths, record)


def _write_flight_outputs(
    paths: dict[str, Path],
    stem: str,
    frames: Sequence[FrameResult],
    plots: Sequence[FlightPlot],
    crs: CRS,
    options: RunOptions,
) -> None:
    """Every chosen output but the summary."""
    ow = options.overwrite
    if "geojson" in paths:
        write_geojson(paths["geojson"], plots, overwrite=ow)
    if "gpkg" in paths:
        write_gpkg(paths["gpkg"], plots, rasterio.crs.CRS.from_wkt(crs.to_wkt()), overwrite=ow)
    if "kml" in paths:
        write_kml(paths["kml"], plots, title=f"Poppy plots: flight {stem}", overwrite=ow)
    if "csv" in paths:
        write_csv(paths["csv"], plots, extra=("frames", "seen_in", "position_error_m"), overwrite=ow)
    if "preview" in paths:
        if paths["preview"].exists():  # checked against --overwrite already
            shutil.rmtree(paths["preview"])
        _write_previews(paths["preview"], frames, plots, crs)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    by_frame: dict[str, list[str]] = {}
    for p in plots:
        for name in p.frames:
            by_frame.setdefault(name, []).append(p.plot_id)
    features = [_frame_feature(f, by_frame.get(f.name, []), to_lonlat) for f in frames]
    write_feature_collection(paths["footprints"], features, overwrite=ow)


def _frame_row(f: FrameResult, plot_ids: Sequence[str]) -> dict[str, Any]:
    """A frame's entry in the summary: its tags, placement, expected error and plots, or why it was skipped."""
    m = f.meta
    return {
        "frame": f.name,
        "status": "placed" if f.reason is None else "skipped",
        "reason": f.reason,
        "camera": m.model or None,
        "lat": m.lat,
        "lon": m.lon,
        "height_m": m.height_m,
        "yaw_deg": m.yaw_deg,
        "yaw_from": m.yaw_source or None,
        "pitch_deg": m.pitch_deg,
        "gsd_m": None if f.georef is None else round(f.georef.gsd_m, 5),
        "error_centre_m": None if f.error_centre_m is None else round(f.error_centre_m, 2),
        "error_corner_m": None if f.error_corner_m is None else round(f.error_corner_m, 2),
        "affine_residual_m": None if f.georef is None else round(f.georef.affine_residual_m, 3),
        "detections": len(f.sightings),
        "plots": list(plot_ids),
    }


def _flight_record(
    frames: Sequence[Path],
    results: Sequence[FrameResult],
    plots: Sequence[FlightPlot],
    crs: CRS,
    spec: ModelSpec,
    weights_path: str | Path | None,
    options: RunOptions,
    flight: FlightOptions,
    params: VectorParams,
    point: Any,
    paths: dict[str, Path],
) -> dict[str, Any]:
    """The flight's summary record."""
    by_frame: dict[str, list[str]] = {}
    for p in plots:
        for name in p.frames:
            by_frame.setdefault(name, []).append(p.plot_id)
    frame_rows = [_frame_row(f, by_frame.get(f.name, [])) for f in results]
    return {
        "input": str(Path(frames[0]).absolute().parent),
        "kind": "flight frames",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "crs": crs.to_string(),
        "model": {
            "name": spec.name,
            "arch": spec.arch,
            "sha256": spec.sha256,
            "weights": str(Path(weights_path).resolve()) if weights_path is not None else None,
            "gsd_m": spec.gsd_m,
        },
        "operating_point": None if point is None else point.to_dict(),
        "parameters": {
            **params.to_dict(),
            "tile": options.tile,
            "overlap": options.overlap,
            "batch_size": options.batch_size,
            "tta": options.tta,
            "formats": [f for f in FLIGHT_FORMATS if f in options.formats],
            "threshold_asked": options.threshold,
            "sensitivity": options.sensitivity,
            "nadir_tolerance_deg": flight.nadir_tolerance_deg,
            "camera_forced": None if flight.camera is None else dataclasses.asdict(flight.camera),
            "error_budget_95pct": dataclasses.asdict(flight.budget),
        },
        "frames": frame_rows,
        "frame_counts": {
            "total": len(results),
            "placed": sum(f.reason is None for f in results),
            "skipped": sum(f.reason is not None for f in results),
        },
        "plots": {
            "count": len(plots),
            "flagged_area_m2": round(sum(p.area_m2 for p in plots), 2),
            "detections": sum(len(f.sightings) for f in results),
            "seen_in_several_frames": sum(len(p.frames) > 1 for p in plots),
        },
        "frame_sha256": {f.name: file_sha256(f.meta.path) for f in results if f.reason is None},
        "outputs": {k: v.name for k, v in paths.items()},
        "software": software_versions(),
    }
