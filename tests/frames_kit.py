"""A flight's frames cut out of a generated orthomosaic, written as JPEGs tagged like a DJI camera's.

The orthomosaic lies in a transverse Mercator projection centred on the site (true north is grid north and a
metre is a metre there, to well under a millimetre over the scene), so the frames are cut with plain planar
geometry, independently of :mod:`detect.frames`, which places them in a UTM zone through pyproj: a sign, axis or
convergence error there shows up as plots in the wrong place. Each frame is the nadir view of a pinhole camera
at a known position, height and heading: pixel centre ``(row, col)`` sees the ground point
``centre + right * (col + 0.5 - W/2) * g - forward * (row + 0.5 - H/2) * g``, with ``g = height * pixel / focal``,
``forward = (sin yaw, cos yaw)`` and ``right = (cos yaw, -sin yaw)`` in (east, north).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer


def site_crs(lon: float, lat: float) -> str:
    """A transverse Mercator projection centred on a site: grid north is true north there, a metre a metre."""
    return f"+proj=tmerc +lat_0={lat} +lon_0={lon} +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"


SITE_LON, SITE_LAT = 103.3, 36.1  # about 1.7 degrees west of UTM zone 48's meridian: a convergence of ~1 degree
SITE_CRS = site_crs(SITE_LON, SITE_LAT)
GREEN = (60, 140, 50)
RED = (225, 35, 30)
# Phantom 4 Pro (FC6310): 13.2 mm wide sensor, 8.8 mm lens; a 400 px wide frame has 33 um pixels.
CAMERA_MODEL, SENSOR_MM, FOCAL_MM = "FC6310", 13.2, 8.8


@dataclass(frozen=True)
class Ortho:
    """A generated orthomosaic held in memory: pixels ``[rows, cols, 3]`` (RGB), its transform and site CRS."""

    rgb: np.ndarray
    transform: Affine
    crs: str = SITE_CRS


def lonlat(x: float, y: float, crs: str = SITE_CRS) -> tuple[float, float]:
    """Site coordinates (metres east, north of the site's origin) to WGS84 longitude, latitude."""
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)


def ortho_from_scene(path: Path, lon: float, lat: float, half_size_m: float, gsd: float = 0.03) -> Ortho:
    """A generated scene (``datasets.synthetic``, any CRS) warped into the site projection centred at
    ``(lon, lat)``, ``half_size_m`` around it, at ``gsd`` (bilinear)."""
    from rasterio.warp import Resampling, reproject

    crs = site_crs(lon, lat)
    n = round(2 * half_size_m / gsd)
    transform = Affine(gsd, 0, -half_size_m, 0, -gsd, half_size_m)
    rgb = np.zeros((3, n, n), dtype=np.uint8)
    with rasterio.open(path) as src:
        reproject(
            source=rasterio.band(src, [1, 2, 3]),
            destination=rgb,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.bilinear,
        )
    return Ortho(np.ascontiguousarray(rgb.transpose(1, 2, 0)), transform, crs)


def make_ortho(
    half_size_m: float, squares: Sequence[tuple[float, float, float]], gsd: float = 0.03, seed: int = 0
) -> Ortho:
    """A textured green field from ``-half_size_m`` to ``+half_size_m`` with red squares ``(x, y, side_m)``."""
    n = round(2 * half_size_m / gsd)
    rng = np.random.default_rng(seed)
    rgb = np.empty((n, n, 3), dtype=np.uint8)
    noise = rng.integers(-18, 19, size=(n, n), dtype=np.int16)
    for b in range(3):
        rgb[..., b] = np.clip(GREEN[b] + noise, 0, 255)
    transform = Affine(gsd, 0, -half_size_m, 0, -gsd, half_size_m)
    for x, y, side in squares:
        c0, r0 = ~transform * (x - side / 2, y + side / 2)
        c1, r1 = ~transform * (x + side / 2, y - side / 2)
        rgb[round(r0) : round(r1), round(c0) : round(c1)] = RED
    return Ortho(rgb, transform)


def dji_xmp(height_m: float | None, yaw: float | None, pitch: float | None, roll: float = 0.0) -> bytes:
    """An XMP packet as DJI cameras write it (attributes of ``drone-dji``); None leaves a value out."""
    attrs = {
        "AbsoluteAltitude": None if height_m is None else 1500.0 + height_m,
        "RelativeAltitude": height_m,
        "GimbalRollDegree": roll,
        "GimbalYawDegree": yaw,
        "GimbalPitchDegree": pitch,
        "FlightRollDegree": 0.0,
        "FlightYawDegree": yaw,
        "FlightPitchDegree": 0.0,
    }
    text = " ".join(f'drone-dji:{k}="{v:+.2f}"' for k, v in attrs.items() if v is not None)
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="DJI Meta Data" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        f'xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" tiff:Make="DJI" tiff:Model="{CAMERA_MODEL}" {text}/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = math.floor(value)
    m = math.floor((value - d) * 60)
    return float(d), float(m), (value - d - m / 60) * 3600


def cut_frame(
    path: Path,
    ortho: Ortho,
    centre: tuple[float, float],
    height_m: float,
    yaw: float,
    *,
    size: tuple[int, int] = (300, 400),
    gps_offset: tuple[float, float] = (0.0, 0.0),
    pitch: float | None = -90.0,
    model: str = CAMERA_MODEL,
    gps: bool = True,
    xmp: bool = True,
    tilted: bool = False,
) -> Path:
    """Write the view from ``centre`` (site metres) at ``height_m`` and heading ``yaw`` as a tagged JPEG.

    Args:
        path: The JPEG.
        ortho: What the ground looks like.
        centre: The camera's true position (east, north), metres.
        height_m: Its height above the ground.
        yaw: Heading of the image's top, degrees clockwise from north.
        size: ``(rows, cols)`` of the frame.
        gps_offset: Added to the position written in the EXIF (the GPS's error), metres east and north.
        pitch: Written as the gimbal pitch; None leaves it out. The view is cut straight down whatever it says,
            unless ``tilted``.
        model: The EXIF camera model.
        gps: Write the EXIF GPS position.
        xmp: Write the DJI XMP (height, attitude).
        tilted: Cut the view of the camera tilted as ``pitch`` says: its optical axis raised from straight down
            towards the heading by ``pitch + 90`` degrees (rays in east, north, up; each meets the ground).
    """
    rows, cols = size
    k = (SENSOR_MM / cols) / FOCAL_MM  # the tangent of a pixel's angle
    s, c = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))
    jj, ii = np.meshgrid(np.arange(cols) + 0.5 - cols / 2, np.arange(rows) + 0.5 - rows / 2)
    t = math.radians(pitch + 90.0) if tilted and pitch is not None else 0.0
    ahead, right, down = np.array([s, c, 0.0]), np.array([c, -s, 0.0]), np.array([0.0, 0.0, -1.0])
    axis = math.cos(t) * down + math.sin(t) * ahead
    up = math.cos(t) * ahead - math.sin(t) * down  # the image's top
    ray = axis + (jj * k)[..., None] * right - (ii * k)[..., None] * up
    reach = height_m / -ray[..., 2]
    x = centre[0] + reach * ray[..., 0]
    y = centre[1] + reach * ray[..., 1]
    inv = ~ortho.transform
    map_x = (inv.a * x + inv.b * y + inv.c - 0.5).astype(np.float32)
    map_y = (inv.d * x + inv.e * y + inv.f - 0.5).astype(np.float32)
    # Outside the orthomosaic: black, as the outside of a generated scene's footprint (never a mirrored copy of a plot).
    view = cv2.remap(ortho.rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    exif = Image.Exif()
    exif[271], exif[272], exif[274] = "DJI", model, 1
    exif.get_ifd(0x8769)[0x920A] = FOCAL_MM
    if gps:
        lon, lat = lonlat(centre[0] + gps_offset[0], centre[1] + gps_offset[1], ortho.crs)
        exif.get_ifd(0x8825).update(
            {
                0: b"\x02\x03\x00\x00",
                1: "N" if lat >= 0 else "S",
                2: _dms(lat),
                3: "E" if lon >= 0 else "W",
                4: _dms(lon),
            }
        )
    extra = {"xmp": dji_xmp(height_m, yaw, pitch)} if xmp else {}
    Image.fromarray(view).save(path, quality=95, exif=exif, **extra)
    return path
