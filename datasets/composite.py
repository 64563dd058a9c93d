"""Composites: real (or generated poppy-free) imagery at its true GSD with rendered poppy plots blended in, labelled.

A model that learned the generator rather than poppy does well on generated scenes and badly on anything else.
Composites keep the one thing the project can render with botanical care, the poppy plants, and take everything
else (ground, roofs, roads, the camera) from real drone frames. Each plot is rendered by the scene generator's own
poppy material (:class:`datasets.scene.materials.poppy.Poppy`, the same plants, flowers and capsules as in
generated scenes) **at the background's GSD** and developed by its camera model, then blended in:

- **GSD**: the plot is drawn at the ground size of the background's pixels (true GSD: see
  :mod:`datasets.public.real_negatives`), so plants and flowers have their real size in pixels;
- **sun**: elevation (and, for DJI frames, azimuth in the image via the gimbal yaw) from the solar position at the
  frame's EXIF GPS position and time (:func:`sun_position`); frames without them get a drawn sun;
- **exposure**: a gain in linear light, ``median luminance of the real ground around the plot / median luminance
  of the rendered plot``, limited to +-0.6 EV, so a plot in a dark meadow is not pasted as a bright sticker and a
  plot beside a white road does not take the road's brightness;
- **edges**: the plot's alpha is the generator's poppy land cover (its ground and every plant pixel, plants leaning
  over the border included), softened by half a pixel; ``interplanted`` plots draw only the plants, so the real
  ground or lawn shows between them.

Per composite ``NAME`` in ``--out`` (the layout of generated scenes, so every reader of those reads these):
``NAME.tif`` (RGBA GeoTIFF, alpha = real imagery), ``NAME.geojson`` (the plot polygons in WGS84 with ``stage``,
``setting``, ``area_m2``, ``class`` = ``poppy``) and ``NAME.json`` (stage, GSD, source file, sun, plots).
Frames without georeferencing are placed on a local UTM grid at their EXIF GPS position (or at 0.5 E, 0.5 N when
they have none) with their true GSD; a frame's scale varies across it only for oblique and fisheye frames, which
the test split leaves out of composites.

Composites use only the **test** files of ``real-negatives`` (never the ones training may use). Examples::

    python -m datasets.composite --negatives ../shared/data/real/negatives --out /tmp/comp --per-file 2 --seed 11
    python -m datasets.composite --negatives ../shared/data/real/negatives --out /tmp/comp --size 1024 --crops docs/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely import affinity
from shapely.geometry import Polygon, box, mapping
from shapely.geometry.polygon import orient

from core.errors import InputError
from datasets.public.real_negatives import SPLIT, RealNegatives
from datasets.scene.context import Box
from datasets.scene.items import LAYERS, LC, Item
from datasets.scene.layout import Layout
from datasets.scene.materials.poppy import sample_poppy
from datasets.scene.render import Scene, render_window
from datasets.scene.season import STAGES, sample_season
from datasets.synthetic import pick_crs, scene_transform

__all__ = [
    "COMPOSITE_VERSION",
    "PlotSpec",
    "blend",
    "composite_scene",
    "frame_position",
    "match_gain",
    "real_composites",
    "render_plot",
    "sun_position",
    "write_composite",
]

COMPOSITE_VERSION = "poppy-survey-composite/1.0"
SETTINGS = ("patch", "interplanted")  # own sown ground / plants only, among whatever grows there
MAX_GAIN_EV = 0.6  # exposure matching never moves a plot more than this many stops
MAX_COMPOSITE_GSD_M = 0.05  # coarser test files (Manila 9.7 cm, Freetown 12.5 cm) are scored as negatives only
_GEOD = Geod(ellps="WGS84")
_F = np.float32
_XMP_YAW = re.compile(rb"GimbalYawDegree\s*=\s*\"([+-]?[0-9.]+)\"")


@dataclass(frozen=True)
class PlotSpec:
    """One plot to paste: its polygon in the background's pixel frame, and how it grows.

    Attributes:
        geom: Polygon in background pixels (x = column, y = row, float).
        stage: ``vegetative``, ``flowering`` or ``capsule``.
        setting: ``patch`` (sown on its own bare ground) or ``interplanted`` (plants only, 3-14 per m2).
        context: What the plot sits in, for the tables (e.g. ``lawn``, ``courtyard``, ``field``, ``edge``).
        seed: The plot's seed (plants, flowers, soil).
    """

    geom: Polygon
    stage: str
    setting: str
    context: str
    seed: int


# --- sun ---------------------------------------------------------------------------------------------------------


def sun_position(lat: float, lon: float, when_utc: datetime) -> tuple[float, float]:
    """Solar azimuth (clockwise from north) and elevation in degrees (NOAA's low-precision formulas, ~0.5 deg).

    Args:
        lat: Latitude, degrees north.
        lon: Longitude, degrees east.
        when_utc: The time, UTC.
    """
    day = when_utc.timetuple().tm_yday
    hours = when_utc.hour + when_utc.minute / 60 + when_utc.second / 3600
    g = 2 * math.pi / 365 * (day - 1 + (hours - 12) / 24)  # fractional year, radians
    eq_time = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g)
    )  # fmt: skip
    true_solar_min = hours * 60 + eq_time + 4 * lon
    ha = math.radians(true_solar_min / 4 - 180)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cos_zen)))
    az = math.degrees(math.atan2(math.sin(ha), math.cos(ha) * math.sin(phi) - math.tan(decl) * math.cos(phi))) + 180
    return az % 360, 90 - math.degrees(zen)


def frame_position(path: str | Path) -> dict:
    """A frame's EXIF GPS position and time (UTC) and DJI gimbal yaw, each None when the file lacks it.

    The time is the GPS time stamp when there is one (UTC by definition), else ``DateTimeOriginal`` (camera local
    time) shifted by ``longitude / 15`` hours, the solar time zone (off by up to an hour or two: a degree or so of
    sun elevation at survey hours).
    """
    from PIL import Image  # deferred: only frames need it

    out: dict = {"lat": None, "lon": None, "time_utc": None, "yaw_deg": None}
    with Image.open(path) as im:
        exif = im.getexif()
        gps = exif.get_ifd(0x8825)
        sub = exif.get_ifd(0x8769)

    def deg(v: Sequence[float], ref: str) -> float:
        d = float(v[0]) + float(v[1]) / 60 + float(v[2]) / 3600
        return -d if ref in ("S", "W") else d

    if 2 in gps and 4 in gps:
        out["lat"], out["lon"] = deg(gps[2], gps.get(1, "N")), deg(gps[4], gps.get(3, "E"))
    if 7 in gps and 29 in gps:
        h, m, s = (float(x) for x in gps[7])
        date = datetime.strptime(str(gps[29]), "%Y:%m:%d").replace(tzinfo=UTC)
        out["time_utc"] = date + timedelta(hours=h, minutes=m, seconds=s)
    elif sub.get(0x9003) and out["lon"] is not None:
        local = datetime.strptime(str(sub[0x9003]).strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
        out["time_utc"] = local - timedelta(hours=round(out["lon"] / 15))
    with open(path, "rb") as f:
        m = _XMP_YAW.search(f.read(256 * 1024))
    if m:
        out["yaw_deg"] = float(m.group(1))
    return out


# --- rendering one plot ------------------------------------------------------------------------------------------


def render_plot(
    geom_m: Polygon,
    stage: str,
    setting: str,
    gsd: float,
    seed: int,
    *,
    sun_azimuth_deg: float | None = None,
    sun_elevation_deg: float | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Render one poppy plot with the generator's poppy material, alone, at ``gsd``.

    Args:
        geom_m: The plot polygon in metres (x east, y south), anywhere.
        stage: Growth stage.
        setting: ``patch`` or ``interplanted``.
        gsd: Metres per pixel.
        seed: Plot seed.
        sun_azimuth_deg: Sun azimuth in the image frame (clockwise from image up); None draws one.
        sun_elevation_deg: Sun elevation; None draws one.

    Returns:
        ``(rgb, alpha, (row_off, col_off))``: ``uint8 [h, w, 3]`` developed by the generator's camera with neutral
        exposure and white balance, ``float32 [h, w]`` in [0, 1] (the poppy land cover, softened), and where the
        patch's top-left pixel lies in the pixel grid whose origin is ``geom_m``'s origin.
    """
    if stage not in STAGES:
        raise InputError(f"stage {stage!r}: choose one of {', '.join(STAGES)}")
    if setting not in SETTINGS:
        raise InputError(f"setting {setting!r}: choose one of {', '.join(SETTINGS)}")
    rng = np.random.default_rng(seed)
    season = sample_season(rng, stage, gsd)
    season = dataclasses.replace(
        season,
        sun_azimuth_deg=float(sun_azimuth_deg) if sun_azimuth_deg is not None else season.sun_azimuth_deg,
        sun_elevation_deg=float(np.clip(sun_elevation_deg, 15, 80))
        if sun_elevation_deg is not None
        else season.sun_elevation_deg,
        # The real frame brings its own camera: neutral development, only the sensor's blur, noise and JPEG.
        wb_temp=0.0, wb_tint=0.0, exposure_ev=0.0, contrast=1.0, saturation=1.0, haze=0.0, seam_gain=0.0,
        sharpen=0.0, cloud=0.15,
    )  # fmt: skip
    p = sample_poppy(rng, stage, season.phase)
    p.update(ground=setting == "patch", setting=setting, soil=list(season.soil_rgb))
    if setting == "interplanted":
        p["density"] = float(rng.uniform(3, 14))  # low density among a host crop, as the generator's
    # Pixel grid: the patch starts on a multiple of 16 pixels (the renderer's JPEG blocks line up there).
    pad = 0.6  # metres: room for plants leaning over the border
    x0, y0, x1, y1 = geom_m.bounds
    c0 = math.floor((x0 - pad) / gsd / 16) * 16
    r0 = math.floor((y0 - pad) / gsd / 16) * 16
    c1, r1 = math.ceil((x1 + pad) / gsd), math.ceil((y1 + pad) / gsd)
    h, w = r1 - r0, c1 - c0
    item = Item("poppy", geom_m, LAYERS["plot"], int(rng.integers(2**31)), p, float(p["height"]))
    extent = box(c0 * gsd - 1, r0 * gsd - 1, c1 * gsd + 1, r1 * gsd + 1)
    layout = Layout(c1 * gsd, r1 * gsd, [item], extent, [], [])
    scene = Scene(seed, r1, c1, gsd, season, layout)
    rgba, lc = render_window(scene, Box(r0, c0, h, w))
    alpha = (lc == LC["poppy"]).astype(_F)
    if setting == "interplanted":
        # No ground is drawn: the plot's land cover covers its whole polygon, but only the plants have colour
        # (everything else stays black, as nothing paints there). Plant pixels are those above the sensor noise.
        # Edge pixels are part plant, part black: divided by their coverage they get the plant's colour back,
        # so no dark fringe is pasted (premultiplied alpha, undone).
        cover = np.clip((rgba[..., :3].max(axis=-1).astype(_F) - 14) / 24, 0, 1)
        alpha *= cover
        rgb = np.clip(rgba[..., :3] / np.maximum(cover, _F(0.35))[..., None], 0, 255).astype(np.uint8)
        rgba = np.concatenate([rgb, rgba[..., 3:]], axis=-1)
    # Half a pixel of softening: a photographed edge is never a hard step.
    soft = alpha.copy()
    soft[1:-1, 1:-1] = 0.5 * alpha[1:-1, 1:-1] + 0.125 * (
        alpha[:-2, 1:-1] + alpha[2:, 1:-1] + alpha[1:-1, :-2] + alpha[1:-1, 2:]
    )
    return rgba[..., :3], soft, (r0, c0)


def _lin(u8: np.ndarray) -> np.ndarray:
    return (u8.astype(_F) / _F(255)) ** _F(2.2)


def _lum(lin: np.ndarray) -> np.ndarray:
    return lin[..., 0] * _F(0.2126) + lin[..., 1] * _F(0.7152) + lin[..., 2] * _F(0.0722)


def match_gain(background: np.ndarray, ring: np.ndarray, patch: np.ndarray, alpha: np.ndarray) -> float:
    """Exposure gain (linear light) that brings a rendered plot to the brightness of the real ground around it.

    ``median luminance of background[ring] / median luminance of patch[alpha > 0.5]``, limited to
    ``2 ** +-MAX_GAIN_EV``; 1.0 when either side is empty.
    """
    if not ring.any() or not (alpha > 0.5).any():
        return 1.0
    real = float(np.median(_lum(_lin(background[ring]))))
    ours = float(np.median(_lum(_lin(patch[alpha > 0.5]))))
    if ours <= 0 or real <= 0:
        return 1.0
    return float(np.clip(real / ours, 2.0**-MAX_GAIN_EV, 2.0**MAX_GAIN_EV))


def blend(background: np.ndarray, patch: np.ndarray, alpha: np.ndarray, gain: float) -> np.ndarray:
    """``alpha * gain * patch + (1 - alpha) * background`` in linear light, back to 8-bit sRGB-like gamma 2.2."""
    lin = _lin(background) * (1 - alpha[..., None]) + np.clip(_lin(patch) * _F(gain), 0, 1) * alpha[..., None]
    return np.clip(np.round(lin ** _F(1 / 2.2) * 255), 0, 255).astype(np.uint8)


def composite_scene(
    background: np.ndarray,
    valid: np.ndarray,
    gsd: float,
    plots: Sequence[PlotSpec],
    *,
    sun_azimuth_deg: float | None = None,
    sun_elevation_deg: float | None = None,
) -> tuple[np.ndarray, list[PlotSpec], list[float]]:
    """Paste rendered plots into a background.

    Args:
        background: ``uint8 [h, w, 3]``, the real imagery (not modified).
        valid: ``bool [h, w]``: where there is imagery; plots are clipped to it.
        gsd: The background's true GSD, metres per pixel.
        plots: The plots, in background pixels.
        sun_azimuth_deg: Sun azimuth in the image frame, or None to draw one per plot.
        sun_elevation_deg: Sun elevation, or None.

    Returns:
        ``(image, kept, gains)``: the composite, the plots actually pasted (clipped to ``valid``; those left with
        under 1 m2 dropped), and the exposure gain each got.
    """
    out = background.copy()
    h, w = valid.shape
    valid_poly = _valid_polygon(valid)
    kept, gains = [], []
    for spec in plots:
        geom = shapely.intersection(spec.geom, valid_poly)
        if geom.is_empty or geom.area * gsd * gsd < 1.0:
            continue
        if geom.geom_type != "Polygon":
            geom = max(getattr(geom, "geoms", [geom]), key=lambda g: g.area)
            if geom.geom_type != "Polygon":
                continue
        geom_m = affinity.scale(geom, gsd, gsd, origin=(0, 0))
        rgb, alpha, (r0, c0) = render_plot(
            geom_m, spec.stage, spec.setting, gsd, spec.seed,
            sun_azimuth_deg=sun_azimuth_deg, sun_elevation_deg=sun_elevation_deg,
        )  # fmt: skip
        ph, pw = alpha.shape
        # Clip the patch to the background.
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + ph, h), min(c0 + pw, w)
        if rr1 <= rr0 or cc1 <= cc0:
            continue
        sub = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
        win = (slice(rr0, rr1), slice(cc0, cc1))
        a = alpha[sub] * valid[win]
        # The real ground in a ring 0.5-2 m around the plot, for the exposure match.
        ring_geom = geom.buffer(2.0 / gsd).difference(geom.buffer(0.5 / gsd))
        ring = _mask(ring_geom, rr0, cc0, rr1 - rr0, cc1 - cc0) & valid[win]
        gain = match_gain(out[win], ring, rgb[sub], a)
        out[win] = blend(out[win], rgb[sub], a, gain)
        kept.append(dataclasses.replace(spec, geom=geom))
        gains.append(round(gain, 4))
    return out, kept, gains


def _valid_polygon(valid: np.ndarray):
    """The valid area as a polygon in pixels, shrunk by 4 px (plots stay off the footprint's ragged edge)."""
    from rasterio.features import shapes

    h, w = valid.shape
    if valid.all():
        return box(0, 0, w, h)
    parts = [shapely.geometry.shape(g) for g, v in shapes(valid.astype(np.uint8), mask=valid) if v == 1]
    return shapely.union_all(parts).buffer(-4) if parts else Polygon()


def _mask(geom, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
    from rasterio.features import geometry_mask

    if geom.is_empty:
        return np.zeros((height, width), bool)
    return geometry_mask([geom], (height, width), Affine.translation(col_off, row_off), invert=True)


# --- placing plots -----------------------------------------------------------------------------------------------


def random_plots(
    rng: np.random.Generator,
    height: int,
    width: int,
    gsd: float,
    n: int,
    *,
    stage: str,
    area_m2: tuple[float, float] = (2.0, 200.0),
    interplanted_share: float = 0.25,
    context: str = "real",
) -> list[PlotSpec]:
    """``n`` non-overlapping plots (rectangles and hand-dug blobs) at random places, log-uniform areas."""
    specs: list[PlotSpec] = []
    taken: list[Polygon] = []
    for _ in range(n * 20):
        if len(specs) >= n:
            break
        area_px = math.exp(rng.uniform(math.log(area_m2[0]), math.log(area_m2[1]))) / gsd**2
        ratio = rng.uniform(1.0, 2.5)
        hl, hw = math.sqrt(area_px * ratio) / 2, math.sqrt(area_px / ratio) / 2
        m = max(hl, hw) + 4
        if 2 * m >= min(height, width):
            continue
        cx, cy = rng.uniform(m, width - m), rng.uniform(m, height - m)
        if rng.random() < 0.4:
            k = 12
            ang = np.linspace(0, 2 * math.pi, k, endpoint=False)
            r = math.sqrt(area_px / math.pi) * (1 + 0.2 * rng.uniform(-1, 1, k))
            g = Polygon(np.c_[cx + r * np.cos(ang), cy + r * np.sin(ang)])
        else:
            g = affinity.rotate(box(cx - hl, cy - hw, cx + hl, cy + hw), rng.uniform(0, 180), origin=(cx, cy))
        if any(g.intersects(t) for t in taken):
            continue
        setting = "interplanted" if rng.random() < interplanted_share else "patch"
        specs.append(PlotSpec(g, stage, setting, context, int(rng.integers(2**31))))
        taken.append(g.buffer(1.0 / gsd))
    return specs


# --- writing -----------------------------------------------------------------------------------------------------


def write_composite(
    out_dir: str | Path,
    name: str,
    image: np.ndarray,
    valid: np.ndarray,
    crs: CRS,
    transform: Affine,
    gsd: float,
    plots: Sequence[PlotSpec],
    meta: dict,
) -> dict:
    """Write ``NAME.tif`` (RGBA), ``NAME.geojson`` (plots in WGS84) and ``NAME.json`` (sidecar); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = valid.shape
    paths = {k: str(out / f"{name}{s}") for k, s in (("image", ".tif"), ("labels", ".geojson"), ("sidecar", ".json"))}
    profile = dict(
        driver="GTiff", height=h, width=w, count=4, dtype="uint8", crs=crs, transform=transform, tiled=True,
        blockxsize=256, blockysize=256, compress="deflate", predictor=2, photometric="RGB", interleave="pixel",
    )  # fmt: skip
    with rasterio.open(paths["image"], "w", **profile) as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        rgb = np.where(valid[..., None], image, 0)
        dst.write(np.moveaxis(rgb, -1, 0), indexes=[1, 2, 3])
        dst.write((valid * 255).astype(np.uint8), 4)
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    features, records = [], []
    for k, spec in enumerate(plots):
        world = shapely.transform(spec.geom, lambda xy: np.c_[_apply(transform, xy)])
        ll = orient(shapely.transform(world, lambda xy: np.c_[to_ll.transform(xy[:, 0], xy[:, 1])]), sign=1.0)
        props = {
            "plot_id": k,
            "class": "poppy",
            "stage": spec.stage,
            "setting": spec.setting,
            "context": spec.context,
            "area_m2": round(abs(_GEOD.geometry_area_perimeter(ll)[0]), 3),
        }
        features.append({"type": "Feature", "geometry": mapping(ll), "properties": props})
        records.append(props)
    with open(paths["labels"], "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)
    stages = sorted({p.stage for p in plots})
    sidecar = {
        "generator": COMPOSITE_VERSION,
        "size": {"height": h, "width": w},
        "gsd_m": round(gsd, 6),
        "stage": stages[0] if len(stages) == 1 else ("none" if not stages else "mixed"),
        "has_poppy": bool(plots),
        "plots": records,
        **meta,
    }
    with open(paths["sidecar"], "w") as f:
        json.dump(sidecar, f, indent=1, default=str)
    return paths


def _apply(t: Affine, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = t.a * xy[:, 0] + t.b * xy[:, 1] + t.c
    y = t.d * xy[:, 0] + t.e * xy[:, 1] + t.f
    return x, y


# --- real composites ---------------------------------------------------------------------------------------------


def _crop_grid(height: int, width: int, gsd: float, size_px: int) -> tuple[int, int, int, int]:
    """The central crop of a frame: ``(row_off, col_off, h, w)`` (frames' edges have the most lens distortion)."""
    h, w = min(size_px, height), min(size_px, width)
    return (height - h) // 2, (width - w) // 2, h, w


def real_background(ds: RealNegatives, name: str, size_px: int, offset: tuple[int, int] = (0, 0)) -> dict:
    """A crop of one real file at its true GSD, with a CRS and transform (its own, or a local UTM grid).

    Returns:
        ``{"image", "valid", "crs", "transform", "gsd", "sun", "source"}``.
    """
    tile = ds.tile(name)
    gsd = tile.gsd_m
    r0, c0, h, w = _crop_grid(tile.height, tile.width, gsd, size_px)
    r0 = int(np.clip(r0 + offset[0], 0, tile.height - h))
    c0 = int(np.clip(c0 + offset[1], 0, tile.width - w))
    read = ds.read(tile, Window(c0, r0, w, h), (h, w), classes=False)
    path = ds.root / name
    with rasterio.open(path) as src:
        georef = src.crs is not None and not src.transform.is_identity
        crs_src, tr_src = src.crs, src.transform
    pos = frame_position(path) if not georef else {"lat": None, "lon": None, "time_utc": None, "yaw_deg": None}
    if georef:
        crs, transform = crs_src, window_transform(Window(c0, r0, w, h), tr_src)
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
            *(tr_src * (c0 + w / 2, r0 + h / 2))
        )
    else:
        lon = pos["lon"] if pos["lon"] is not None else 0.5
        lat = pos["lat"] if pos["lat"] is not None else 0.5
        crs = pick_crs("utm", lon, lat)
        transform = scene_transform(crs, lon, lat, gsd, h, w)
    sun = None
    if pos["time_utc"] is not None and pos["lat"] is not None:
        az, el = sun_position(pos["lat"], pos["lon"], pos["time_utc"])
        # In the image frame: image up points along the gimbal yaw (DJI); unknown otherwise (azimuth drawn).
        sun = {"azimuth_deg": (az - pos["yaw_deg"]) % 360 if pos["yaw_deg"] is not None else None, "elevation_deg": el}
    image = np.moveaxis(read.image, 0, -1)
    return {"image": image, "valid": read.valid, "crs": crs, "transform": transform, "gsd": gsd, "sun": sun,
            "source": name, "window": [r0, c0, h, w], "centre_lonlat": [lon, lat]}  # fmt: skip


def composite_files(ds: RealNegatives) -> list[str]:
    """The test files in the working GSD range, which composites are made of (see :data:`MAX_COMPOSITE_GSD_M`)."""
    return [n for n in ds.files if SPLIT[n] == "test" and ds.tile(n).gsd_m <= MAX_COMPOSITE_GSD_M]


def real_composites(
    negatives: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    per_file: int = 3,
    size_px: int = 1536,
    plots_per_scene: int = 6,
) -> list[dict]:
    """Composites of every test file in the working GSD range: ``per_file`` crops each, one stage per composite.

    Crops of one file are spread along its long side; stages cycle vegetative, flowering, capsule over the whole
    list, so every stage meets every background.

    Returns:
        The paths of each composite (as :func:`write_composite`) with ``"plots"``, the number pasted.
    """
    ds = RealNegatives(negatives)
    names = composite_files(ds)
    if not names:
        raise InputError(
            f"{negatives}: none of the real-negatives test files is here; give ../shared/data/real/negatives"
        )
    out = []
    k = 0
    for fi, name in enumerate(names):
        tile = ds.tile(name)
        for j in range(per_file):
            rng = np.random.default_rng([seed, fi, j])
            stage = STAGES[k % len(STAGES)]
            k += 1
            spread = max(0, tile.width - size_px) // 2
            off = int((j - (per_file - 1) / 2) * spread / max(1, per_file - 1) * 2) if per_file > 1 else 0
            bg = real_background(ds, name, size_px, (0, off))
            plots = random_plots(rng, *bg["valid"].shape, bg["gsd"], plots_per_scene, stage=stage, context="real")
            sun = bg["sun"] or {}
            image, kept, gains = composite_scene(
                bg["image"], bg["valid"], bg["gsd"], plots,
                sun_azimuth_deg=sun.get("azimuth_deg"), sun_elevation_deg=sun.get("elevation_deg"),
            )  # fmt: skip
            stem = f"real_{Path(name).stem}_{j}"
            meta = {"source": name, "window_rowcol_hw": bg["window"], "sun": sun, "gains": gains, "seed": seed,
                    "centre_lonlat": bg["centre_lonlat"]}  # fmt: skip
            paths = write_composite(
                out_dir, stem, image, bg["valid"], bg["crs"], bg["transform"], bg["gsd"], kept, meta
            )
            out.append({**paths, "plots": len(kept)})
    return out


def save_crop(tif: str | Path, out_png: str | Path, centre_rc: tuple[int, int], size: int = 320) -> None:
    """Save a ``size`` px crop of a composite around ``centre_rc`` as PNG (for docs; about 200 KB)."""
    from PIL import Image

    with rasterio.open(tif) as src:
        r = int(np.clip(centre_rc[0] - size // 2, 0, src.height - size))
        c = int(np.clip(centre_rc[1] - size // 2, 0, src.width - size))
        rgb = src.read([1, 2, 3], window=Window(c, r, size, size))
    Image.fromarray(np.moveaxis(rgb, 0, -1)).save(out_png, optimize=True)


# --- command line ------------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datasets.composite", description=__doc__.split("\n")[0])
    p.add_argument("--negatives", required=True, help="the real negatives folder (../shared/data/real/negatives)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=11, help="seed of plot places, sizes and looks")
    p.add_argument("--per-file", type=int, default=3, help="composites per test file")
    p.add_argument("--size", type=int, default=1536, help="composite side in pixels (a central crop of the frame)")
    p.add_argument("--plots", type=int, default=6, help="plots per composite")
    p.add_argument("--crops", default=None, help="also save a 320 px PNG crop around one plot per file here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.per_file < 1 or args.plots < 1 or args.size < 128:
            raise InputError("--per-file and --plots must be at least 1 and --size at least 128 pixels")
        res = real_composites(
            args.negatives, args.out, seed=args.seed, per_file=args.per_file, size_px=args.size,
            plots_per_scene=args.plots,
        )  # fmt: skip
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in res:
        print(f"{r['image']}: {r['plots']} plots")
        if args.crops:
            feats = json.loads(Path(r["labels"]).read_text())["features"]
            if not feats:
                continue
            with rasterio.open(r["image"]) as src:
                inv = ~src.transform
                to_crs = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
                lon, lat = shapely.geometry.shape(feats[0]["geometry"]).centroid.coords[0]
                col, row = inv * to_crs.transform(lon, lat)
            Path(args.crops).mkdir(parents=True, exist_ok=True)
            save_crop(r["image"], Path(args.crops) / (Path(r["image"]).stem + ".png"), (int(row), int(col)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
