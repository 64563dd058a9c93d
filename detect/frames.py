"""Placing raw drone frames on the map: pure georeferencing math, without reading any file.

A drone photo carries enough to place itself roughly: its GPS position, its height above the take-off point
(DJI's XMP ``RelativeAltitude``), the camera's attitude (gimbal pitch, roll and yaw) and its optics (focal length,
and the sensor's width from a small table of cameras, :data:`CAMERAS`). This module turns those into

- a decision whether the frame is close enough to straight down to be treated as a map (:func:`nadir_problem`),
- the ground point of any pixel: each pixel's ray, rotated by the camera's attitude, meets a flat ground
  ``height_m`` below the camera (:func:`ground_offsets`); the offsets (forward and right of the camera's heading)
  are walked on the WGS84 ellipsoid from the GPS position with :class:`pyproj.Geod` and projected to the flight's
  CRS (a local UTM zone, :func:`utm_crs`) with pyproj, so meridian convergence and the UTM scale factor are
  honoured without a hand-written projection,
- an affine transform for the frame (rotation included), fitted to a grid of such points by
  :func:`rasterio.transform.from_gcps`, the frame's ground footprint and GSD (:func:`frame_georeference`),
- the expected position error of a point in the frame (:func:`expected_error_m`), and
- the merge of detections of one plot seen in several overlapping frames (:func:`merge_sightings`).

What the model ignores (and the error budget stands in for): lens distortion, terrain relief (the ground is a
plane at the take-off point's height), and the GPS antenna's offset from the camera.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from rasterio.control import GroundControlPoint
from rasterio.transform import from_gcps
from shapely.geometry import Polygon

from core.errors import InputError
from core.geodesy import GEOD

__all__ = [
    "CAMERAS",
    "NADIR_TOLERANCE_DEG",
    "Camera",
    "ErrorBudget",
    "FrameGeoref",
    "Optics",
    "Pose",
    "Sighting",
    "expected_error_m",
    "frame_georeference",
    "ground_offsets",
    "merge_sightings",
    "nadir_problem",
    "parse_camera",
    "pixels_to_crs",
    "utm_crs",
]

# A frame whose optical axis is more than this far from straight down is skipped: past ~10 degrees the ground
# scale changes by more than a sixth across the frame (tan 10 + half a typical field of view), and the affine
# stand-in for the perspective drifts by metres at the far edge.
NADIR_TOLERANCE_DEG = 10.0


@dataclass(frozen=True)
class Camera:
    """A camera's sensor and lens, as the frames' EXIF does not always say them.

    Attributes:
        sensor_width_mm: Width of the sensor's imaging area along the image's long side, in millimetres. With the
            image's width in pixels it gives the pixel pitch, also for frames cropped to 16:9 (the crop keeps the
            full width) or downscaled ones.
        focal_mm: The lens's true focal length (used when the EXIF lacks ``FocalLength``).
    """

    sensor_width_mm: float
    focal_mm: float


# EXIF ``Model`` -> camera, from the makers' published specifications (sensor size class and true focal length).
# Only cameras whose figures are certain are listed; others are given with ``--camera``.
CAMERAS: Mapping[str, Camera] = {
    "FC300S": Camera(6.17, 3.61),  # Phantom 3 Advanced, 1/2.3"
    "FC300X": Camera(6.17, 3.61),  # Phantom 3 Professional, 1/2.3"
    "FC330": Camera(6.17, 3.61),  # Phantom 4, 1/2.3"
    "FC220": Camera(6.17, 4.73),  # Mavic Pro, 1/2.3"
    "FC7303": Camera(6.17, 4.49),  # Mini 2, 1/2.3"
    "FC6310": Camera(13.2, 8.8),  # Phantom 4 Pro, 1"
    "FC6310S": Camera(13.2, 8.8),  # Phantom 4 Pro V2.0, 1"
    "FC6310R": Camera(13.2, 8.8),  # Phantom 4 RTK, 1"
    "FC6510": Camera(13.2, 8.8),  # Zenmuse X4S, 1"
    "FC3411": Camera(13.2, 8.38),  # Air 2S, 1"
    "L1D-20c": Camera(13.2, 10.26),  # Mavic 2 Pro (Hasselblad), 1"
    "M3E": Camera(17.3, 12.29),  # Mavic 3 Enterprise wide camera, 4/3"
}


def parse_camera(text: str) -> Camera:
    """A camera from ``--camera SENSOR_WIDTH_MM,FOCAL_MM`` (e.g. ``13.2,8.8``).

    Raises:
        InputError: For anything but two positive numbers.
    """
    try:
        width, focal = (float(v) for v in text.split(","))
    except ValueError:
        width = focal = float("nan")
    if not (width > 0 and focal > 0 and math.isfinite(width) and math.isfinite(focal)):
        raise InputError(
            f"--camera {text}: give the sensor width and the focal length in millimetres, e.g. --camera 13.2,8.8 "
            '(or a JSON file mapping EXIF camera models to {"sensor_width_mm": ..., "focal_mm": ...})'
        )
    return Camera(width, focal)


@dataclass(frozen=True)
class Pose:
    """Where the camera was and where it looked.

    Attributes:
        lat: Latitude of the camera (WGS84 degrees).
        lon: Longitude of the camera.
        height_m: Height above the ground, in metres (DJI's ``RelativeAltitude``: above the take-off point).
        yaw_deg: Heading of the top of the image, degrees clockwise from true north.
        pitch_deg: Gimbal pitch: -90 is straight down, 0 the horizon (DJI's convention).
        roll_deg: Gimbal roll, positive with the image's right side down.
    """

    lat: float
    lon: float
    height_m: float
    yaw_deg: float
    pitch_deg: float = -90.0
    roll_deg: float = 0.0


@dataclass(frozen=True)
class Optics:
    """The image and the lens.

    Attributes:
        height_px: Rows of the image.
        width_px: Columns.
        pixel_mm: Pixel pitch on the sensor, in millimetres (sensor width / image width).
        focal_mm: Focal length in millimetres.
    """

    height_px: int
    width_px: int
    pixel_mm: float
    focal_mm: float


def nadir_problem(
    pitch_deg: float | None, roll_deg: float | None, tolerance_deg: float = NADIR_TOLERANCE_DEG
) -> str | None:
    """Why a frame is too oblique to be placed as a map, or None when it is close enough to straight down.

    The tilt is the angle between the optical axis and the vertical, from the gimbal's pitch and roll together.
    """
    if pitch_deg is None:
        return "no gimbal pitch (DJI XMP GimbalPitchDegree): cannot tell that the camera looked straight down"
    pitch_off = pitch_deg + 90.0
    roll = roll_deg or 0.0
    # The optical axis after pitch then roll: its angle from the vertical.
    cos_tilt = math.cos(math.radians(pitch_off)) * math.cos(math.radians(roll))
    tilt = math.degrees(math.acos(max(-1.0, min(1.0, cos_tilt))))
    if tilt > tolerance_deg:
        return (
            f"oblique: gimbal pitch {pitch_deg:.1f} and roll {roll:.1f} degrees put the camera {tilt:.1f} degrees off "
            f"straight down (at most {tolerance_deg:g} accepted); only nadir frames are placed"
        )
    return None


def ground_offsets(pose: Pose, optics: Optics, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground offsets of pixels from the point below the camera, in metres (forward along the yaw, and right).

    Pinhole model: the ray through pixel centre ``(row, col)`` in the camera is ``(x, y, 1)`` with
    ``x = (col + 0.5 - width / 2) * pixel / focal`` (right) and ``y`` likewise (down the image). The camera is
    tilted from straight down by ``pitch + 90`` degrees towards the top of the image, then rolled; the ray meets
    the ground plane ``height_m`` below.

    Args:
        pose: The camera's position and attitude.
        optics: The image and lens.
        rows: Pixel rows (any shape; fractional positions allowed, 0 is the top edge of the first row).
        cols: Pixel columns, the same shape.

    Returns:
        ``(forward_m, right_m)``, the shape of ``rows``.

    Raises:
        ValueError: If a ray does not reach the ground (it points at or above the horizon).
    """
    scale = optics.pixel_mm / optics.focal_mm
    x = (np.asarray(cols, dtype=np.float64) - optics.width_px / 2) * scale
    y = (np.asarray(rows, dtype=np.float64) - optics.height_px / 2) * scale
    t = math.radians(pose.pitch_deg + 90.0)  # tilt forward from nadir
    # Camera axes in the level frame (forward, right, down): at nadir the optical axis is down, the image's top is
    # forward and its right is right; tilting forward by t turns axis and image-up about the right axis.
    fwd = -y * math.cos(t) + math.sin(t)
    right = x
    down = y * math.sin(t) + math.cos(t)
    r = math.radians(pose.roll_deg)  # roll about the forward axis: right side down looks to the right
    right, down = right * math.cos(r) + down * math.sin(r), -right * math.sin(r) + down * math.cos(r)
    if np.any(down <= 1e-6):
        raise ValueError("a ray of the frame does not reach the ground (camera at or above the horizon)")
    k = pose.height_m / down
    return fwd * k, right * k


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone of a position, from pyproj's database.

    Where two zones' areas of use meet (their borders, and the Norway and Svalbard exceptions, which the database
    does not single out) the first listed is taken: a neighbouring zone is as accurate a few kilometres away.
    """
    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat), contains=True)
    if not infos:
        raise InputError(f"position {lat:.6f}, {lon:.6f}: no UTM zone covers it (polar?); frames there are not placed")
    return CRS.from_epsg(int(infos[0].code))


@dataclass(frozen=True)
class FrameGeoref:
    """A frame placed in the flight's CRS.

    Attributes:
        transform: Pixel (col, row) -> flight CRS affine, rotation included, fitted to the ray-cast grid.
        footprint: The frame's ground outline in the flight CRS (ray-cast along its edges, not the affine's).
        gsd_m: Mean ground size of a pixel in metres (at the footprint's centre, from the affine).
        affine_residual_m: Largest distance between the affine and the ray-cast point over the grid (the
            perspective of a tilted frame that an affine cannot follow; about 0 at nadir). Plots are placed by
            :func:`pixels_to_crs`, without it; it measures how far the frame's scale varies (the detector sees
            the frame at one GSD).
        half_diagonal_m: Distance from the frame's centre point to its farthest corner on the ground.
        centre: The ground point below the image's centre, in the flight CRS.
    """

    transform: Affine
    footprint: Polygon
    gsd_m: float
    affine_residual_m: float
    half_diagonal_m: float
    centre: tuple[float, float]


def _to_crs(pose: Pose, fwd: np.ndarray, right: np.ndarray, to_crs: Transformer) -> tuple[np.ndarray, np.ndarray]:
    """Ground offsets (forward, right of the heading) to flight CRS coordinates: walked on the ellipsoid."""
    azimuth = pose.yaw_deg + np.degrees(np.arctan2(right, fwd))
    dist = np.hypot(fwd, right)
    lon, lat, _ = GEOD.fwd(np.full(dist.shape, pose.lon), np.full(dist.shape, pose.lat), azimuth, dist)
    x, y = to_crs.transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def pixels_to_crs(
    pose: Pose, optics: Optics, crs: CRS, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flight CRS coordinates of image positions, ray-cast to the ground (exact, unlike the fitted affine).

    A tilted frame's perspective is not affine: placing points this way removes
    :attr:`FrameGeoref.affine_residual_m` from their error.
    """
    fwd, right = ground_offsets(pose, optics, np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64))
    return _to_crs(pose, fwd, right, Transformer.from_crs("EPSG:4326", crs, always_xy=True))


def frame_georeference(pose: Pose, optics: Optics, crs: CRS, grid: int = 5, edge_points: int = 8) -> FrameGeoref:
    """Place a frame in ``crs``: affine transform, footprint, GSD and how far the affine strays.

    Args:
        pose: The camera's position and attitude.
        optics: The image and lens.
        crs: The flight's projected CRS (metres; see :func:`utm_crs`).
        grid: Points per side of the grid the affine is fitted to.
        edge_points: Points per image edge of the footprint outline.

    Raises:
        ValueError: If the height is not positive or a ray misses the ground.
    """
    if not pose.height_m > 0:
        raise ValueError(f"height above ground {pose.height_m} m: must be positive")
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    h, w = optics.height_px, optics.width_px
    rr, cc = np.meshgrid(np.linspace(0, h, grid), np.linspace(0, w, grid), indexing="ij")
    fwd, right = ground_offsets(pose, optics, rr, cc)
    x, y = _to_crs(pose, fwd, right, to_crs)
    gcps = [
        GroundControlPoint(row=float(r), col=float(c), x=float(px), y=float(py))
        for r, c, px, py in zip(rr.ravel(), cc.ravel(), x.ravel(), y.ravel(), strict=True)
    ]
    transform = from_gcps(gcps)
    ax, ay = transform * (cc.ravel(), rr.ravel())
    residual = float(np.max(np.hypot(np.asarray(ax) - x.ravel(), np.asarray(ay) - y.ravel())))
    # Footprint: along the four edges, clockwise from the top-left corner.
    s = np.linspace(0.0, 1.0, edge_points, endpoint=False)
    edge_r = np.concatenate([np.zeros_like(s), s * h, np.full_like(s, h), (1 - s) * h])
    edge_c = np.concatenate([s * w, np.full_like(s, w), (1 - s) * w, np.zeros_like(s)])
    ef, er = ground_offsets(pose, optics, edge_r, edge_c)
    ex, ey = _to_crs(pose, ef, er, to_crs)
    footprint = shapely.geometry.polygon.orient(Polygon(np.column_stack([ex, ey])), sign=1.0)
    cf, cr = ground_offsets(pose, optics, np.array([h / 2]), np.array([w / 2]))
    cx, cy = _to_crs(pose, cf, cr, to_crs)
    gsd = math.sqrt(abs(transform.determinant))
    corners = np.hypot(ex - cx[0], ey - cy[0])
    return FrameGeoref(transform, footprint, gsd, residual, float(corners.max()), (float(cx[0]), float(cy[0])))


@dataclass(frozen=True)
class ErrorBudget:
    """Expected errors of what places a frame, as 95 % bounds (about two standard deviations).

    Attributes:
        gps_m: Horizontal GPS error of the camera position (consumer drones' GNSS: 2-5 m; RTK: centimetres, read
            from the frame when it says so).
        attitude_deg: Error of the camera's pitch and roll: shifts the whole frame by ``height * tan``.
        yaw_deg: Error of the heading (compass): turns the frame about its centre, ``distance * tan``.
        height_m: Error of the height above the ground under the frame (barometer drift, and ground higher or
            lower than the take-off point): scales the frame about its centre, ``distance * dh / h``.
    """

    gps_m: float = 3.0
    attitude_deg: float = 1.0
    yaw_deg: float = 2.0
    height_m: float = 2.0

    def check(self) -> None:
        """Raise :class:`InputError` for a negative or non-finite error (``--gps-error-m``)."""
        if not (math.isfinite(self.gps_m) and self.gps_m >= 0):
            raise InputError(f"--gps-error-m {self.gps_m}: must be 0 or more metres (e.g. 3 for a consumer drone)")
        for name in ("attitude_deg", "yaw_deg", "height_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"error budget {name} {value}: must be 0 or more")


def expected_error_m(
    height_m: float, distance_m: float, budget: ErrorBudget, *, gps_m: float | None = None, residual_m: float = 0.0
) -> float:
    """Expected horizontal position error of a ground point seen ``distance_m`` from the frame's centre point.

    The independent parts are added in quadrature: GPS, the attitude's shift, the heading's turn, the height's
    scale, and the affine's own departure from the ray-cast frame (``residual_m``).

    Args:
        height_m: The camera's height above the ground.
        distance_m: The point's distance from the ground point below the image's centre.
        budget: The expected errors.
        gps_m: The frame's own GPS error (RTK frames say theirs); None takes the budget's.
        residual_m: :attr:`FrameGeoref.affine_residual_m`.
    """
    gps = budget.gps_m if gps_m is None else gps_m
    parts = (
        gps,
        height_m * math.tan(math.radians(budget.attitude_deg)),
        distance_m * math.tan(math.radians(budget.yaw_deg)),
        distance_m * budget.height_m / height_m,
        residual_m,
    )
    return math.sqrt(sum(p * p for p in parts))


@dataclass(frozen=True)
class Sighting:
    """One detection in one frame, placed in the flight's CRS.

    Attributes:
        frame: The frame's name.
        geometry: The detected polygon in the flight's CRS.
        error_m: Its expected position error.
    """

    frame: str
    geometry: Polygon
    error_m: float


def merge_sightings(sightings: Sequence[Sighting]) -> list[list[int]]:
    """Group detections of the same plot seen in overlapping frames.

    Two sightings from different frames may be the same plot when the gap between their outlines (0 when they
    overlap) is within their combined expected error, ``sqrt(e1**2 + e2**2)``. Pairs are joined closest first,
    and two groups are joined only when they share no frame: a frame sees each plot once, so two plots a few
    metres apart, both seen in the same two frames, stay two plots (each frame's pair is closer than the
    crossed pairs). A plot split into pieces in one frame stays in pieces.

    Args:
        sightings: Every detection of every frame.

    Returns:
        Groups of indexes into ``sightings``, each sorted; groups ordered by their first index.
    """
    n = len(sightings)
    pairs: list[tuple[float, int, int]] = []
    if n > 1:
        geoms = [s.geometry for s in sightings]
        tree = shapely.STRtree(geoms)
        reach = max(s.error_m for s in sightings) * math.sqrt(2.0)
        left, right = tree.query(geoms, predicate="dwithin", distance=reach)
        for i, j in zip(left.tolist(), right.tolist(), strict=True):
            if i >= j or sightings[i].frame == sightings[j].frame:
                continue
            gap = float(geoms[i].distance(geoms[j]))
            if gap <= math.hypot(sightings[i].error_m, sightings[j].error_m):
                # Centroid distance breaks ties between overlapping outlines (gap 0): the nearest twin wins.
                pairs.append((gap + 1e-6 * geoms[i].centroid.distance(geoms[j].centroid), i, j))
    group = list(range(n))
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    frames: dict[int, set[str]] = {i: {s.frame} for i, s in enumerate(sightings)}
    for _, i, j in sorted(pairs):
        a, b = group[i], group[j]
        if a == b or frames[a] & frames[b]:
            continue
        for k in members[b]:
            group[k] = a
        members[a].extend(members.pop(b))
        frames[a] |= frames.pop(b)
    return sorted((sorted(m) for m in members.values()), key=lambda m: m[0])
