"""Synthetic drone orthomosaics of north/east-China farmland, with and without hidden opium-poppy plots.

No public poppy data set exists, so the default model learns from these scenes. Each scene is a patchwork of
field parcels (wheat, young corn, vegetable beds, garlic, bare soil, weeds, mulch film, greenhouses,
rapeseed, orchards), roads, farmhouse compounds and trees at true size, with poppy plots (1.5-200 m2) at one
growth stage hidden in fields, beds, courtyards, along field edges or interplanted, and hard negatives
(corn poppy and ornamental flowers on green foliage, rapeseed, red roofs, cars and plastic, cabbage and
lettuce beds). See ``datasets/scene/`` for the pieces.

Per scene ``NAME`` in ``--out``:

* ``NAME.tif``: tiled (256), deflate-compressed GeoTIFF, RGBA (alpha = orthomosaic footprint) or RGB with an
  internal mask, in the chosen CRS with the true ground GSD;
* ``NAME.geojson``: the poppy plots (RFC 7946, WGS84 lon/lat) with ``stage``, ``area_m2`` (geodesic),
  ``setting``, ``class`` = ``"poppy"``; an empty FeatureCollection when the scene has none;
* ``NAME.json``: the sidecar (seed, size, GSD, CRS, stages, the season actually drawn, content, legend);
* ``NAME.landcover.tif`` with ``--landcover``: uint8 land-cover classes on the same grid.

Scenes are laid out as vector geometry first and then rendered window by window in bounded memory; every
texture and plant is hashed from global coordinates, so any window size gives the same pixels.

Examples::

    python -m datasets.synthetic --out data/synth --count 200 --seed 1
    python -m datasets.synthetic --out /tmp/s --count 4 --seed 7 --size 1024 --gsd 0.03 --stage flowering \\
        --crs cgcs2000 --landcover
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from shapely.geometry import Polygon, mapping
from shapely.geometry.polygon import orient

from core.errors import InputError
from core.geodesy import GEOD, geodesic_area_m2
from datasets.scene.context import Box
from datasets.scene.items import LANDCOVER, RANDOMISED_CLASSES
from datasets.scene.layout import build_layout
from datasets.scene.randomise import APPEARANCE_CHOICES, SceneOptions, randomise_layout, randomise_season, sample_look
from datasets.scene.render import Scene, render_window
from datasets.scene.season import STAGES, sample_season

__all__ = [
    "GENERATOR_VERSION",
    "SceneOptions",
    "build_scene",
    "generate",
    "parse_crs",
    "parse_plot_area",
    "pick_crs",
    "render_scene",
    "scene_seed",
    "scene_transform",
]

GENERATOR_VERSION = "poppy-survey-synthetic/1.0"
STAGE_CHOICES = (*STAGES, "mixed", "none")
CRS_CHOICES = ("utm", "cgcs2000", "4326", "3857")
GSD_RANGE_M = (0.015, 0.05)  # default random GSD per scene (1.5-5 cm/px, the police flights' range)
# Survey region: north and east China.
LON_RANGE, LAT_RANGE = (100.0, 122.0), (22.0, 42.0)


# --- georeferencing ------------------------------------------------------------------------------------------


def parse_crs(text: str) -> CRS | None:
    """A CRS the user typed: None for a short name (``utm|cgcs2000|4326|3857``, placed by the scene's location),
    else anything pyproj reads (``EPSG:32650``, ``32650``, ``ESRI:102012``, WKT, a PROJ string).

    Raises:
        InputError: The text is not a CRS, or one a map can be drawn in (geocentric, vertical, engineering).
    """
    if text in CRS_CHOICES:
        return None
    t = text.strip()
    try:
        crs = CRS.from_epsg(int(t)) if t.isdigit() else CRS.from_user_input(t)
    except Exception as e:  # pyproj raises CRSError, and ValueError for an unknown EPSG number
        raise InputError(
            f"--crs {text!r} is not a CRS pyproj knows ({str(e).splitlines()[0]}); use one of "
            f"{', '.join(CRS_CHOICES)}, EPSG:NNNN, WKT or a PROJ string"
        ) from None
    if not (crs.is_projected or crs.is_geographic) or crs.is_vertical:
        raise InputError(f"--crs {text!r} is a {crs.type_name}; give a projected or geographic 2D CRS, e.g. EPSG:32650")
    return crs


def _into_area_of_use(crs: CRS, lon: float, lat: float) -> tuple[float, float]:
    """Move a location drawn in the survey region into ``crs``'s area of use (when outside it), keeping its
    relative place.

    A user-given CRS (a UTM zone, a Gauss-Kruger zone) is only valid near its own area: the scene is put there,
    inside the survey region where the two overlap.
    """
    aou = crs.area_of_use
    if aou is None or (aou.west <= lon <= aou.east and aou.south <= lat <= aou.north):
        return lon, lat
    (lo0, lo1), (la0, la1) = LON_RANGE, LAT_RANGE
    w0, w1 = max(aou.west, lo0), min(aou.east, lo1)
    s0, s1 = max(aou.south, la0), min(aou.north, la1)
    if w0 >= w1 or s0 >= s1:  # no overlap with the survey region: the CRS's own area
        w0, w1, s0, s1 = aou.west, aou.east, max(aou.south, -80.0), min(aou.north, 80.0)
    fx, fy = (lon - lo0) / (lo1 - lo0), (lat - la0) / (la1 - la0)
    # Keep a tenth of the area clear at each side: scenes near a zone's edge are distorted the most.
    return w0 + (w1 - w0) * (0.1 + 0.8 * fx), s0 + (s1 - s0) * (0.1 + 0.8 * fy)


def pick_crs(kind: str, lon: float, lat: float) -> CRS:
    """The CRS of kind ``utm|cgcs2000|4326|3857`` for a scene centred at (lon, lat), or the CRS ``kind`` names.

    ``utm`` is the WGS 84 UTM zone containing the point; ``cgcs2000`` the CGCS2000 3-degree Gauss-Kruger zone
    (EPSG:4513-4533, easting prefixed with the zone number) whose central meridian is nearest. Anything else is
    read by :func:`parse_crs` (``EPSG:32650``, WKT, PROJ strings).
    """
    if kind == "utm":
        info = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
        north = [i for i in info if i.name.endswith("N")] or info
        return CRS.from_epsg(int(north[0].code))
    if kind == "cgcs2000":
        best = None
        for code in range(4513, 4534):
            crs = CRS.from_epsg(code)
            cm = next(p.value for p in crs.coordinate_operation.params if p.name == "Longitude of natural origin")
            if best is None or abs(cm - lon) < best[0]:
                best = (abs(cm - lon), crs)
        return best[1]
    if kind in ("4326", "3857"):
        return CRS.from_epsg(int(kind))
    crs = parse_crs(kind)
    if crs is None:  # pragma: no cover - every short name is handled above
        raise InputError(f"--crs {kind!r} is not supported; use one of {', '.join(CRS_CHOICES)}")
    return crs


def _metres_per_unit(crs: CRS, x: float, y: float) -> tuple[float, float]:
    """Ground metres per CRS unit along x and along y at (x, y), measured geodesically."""
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    d = 1e-5 if crs.is_geographic else 1.0
    (lo0, lo1, lo2, lo3), (la0, la1, la2, la3) = to_ll.transform(
        [x - d / 2, x + d / 2, x, x], [y, y, y - d / 2, y + d / 2]
    )
    _, _, dx = GEOD.inv(lo0, la0, lo1, la1)
    _, _, dy = GEOD.inv(lo2, la2, lo3, la3)
    return dx / d, dy / d


def scene_transform(crs: CRS, lon: float, lat: float, gsd_m: float, height: int, width: int) -> Affine:
    """North-up transform centred at (lon, lat) whose pixels measure ``gsd_m`` on the ground at the centre.

    For projected CRSs this corrects the map scale factor (UTM 0.9996 at the central meridian); for EPSG:4326
    and 3857 it gives the pixel size in degrees or web-mercator metres that equals ``gsd_m`` on the ground.
    """
    x0, y0 = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    mx, my = _metres_per_unit(crs, x0, y0)
    px, py = gsd_m / mx, gsd_m / my
    return Affine(px, 0.0, x0 - width / 2 * px, 0.0, -py, y0 + height / 2 * py)


def _to_lonlat(geom: Polygon, gsd: float, transform: Affine, to_ll: Transformer) -> Polygon:
    """Scene metres -> pixels -> CRS -> WGS84 lon/lat (RFC 7946 ring orientation)."""

    def f(coords: np.ndarray) -> np.ndarray:
        col, row = coords[:, 0] / gsd, coords[:, 1] / gsd
        x = transform.a * col + transform.b * row + transform.c
        y = transform.d * col + transform.e * row + transform.f
        lon, lat = to_ll.transform(x, y)
        return np.round(np.c_[lon, lat], 9)

    return orient(shapely.transform(geom, f), sign=1.0)


# --- the scene -----------------------------------------------------------------------------------------------


def _check(size, gsd_m, stage: str, crs: str, window: int, poppy_prob: float) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        size = (int(size), int(size))
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"--size {size!r} must be a pixel count, e.g. 2048, or (height, width)") from None
    if not (64 <= h <= 200_000 and 64 <= w <= 200_000):
        raise InputError(f"--size {size} is out of range; use 64 to 200000 pixels")
    if gsd_m is not None and not (0.005 <= gsd_m <= 0.5):
        raise InputError(f"--gsd {gsd_m} m is out of range; use 0.005-0.5 m/px (drone surveys are 0.01-0.06)")
    if stage not in STAGE_CHOICES:
        raise InputError(f"--stage {stage!r} is not one of {', '.join(STAGE_CHOICES)}")
    parse_crs(crs)
    if window < 64 or window % 16:
        raise InputError(f"--window {window} must be a multiple of 16 and at least 64 (JPEG blocks line up)")
    if not 0.0 <= poppy_prob <= 1.0:
        raise InputError(f"--poppy-prob {poppy_prob} must be between 0 and 1")
    return h, w


def scene_options(options: SceneOptions | dict | None) -> SceneOptions:
    """``options`` as :class:`SceneOptions` (a dict of its fields, or None for today's renderer).

    Raises:
        InputError: A bad level, appearance half or plot-area range (the message names the flag).
    """
    if isinstance(options, SceneOptions):
        return options
    try:
        return SceneOptions(**(options or {}))
    except (TypeError, ValueError) as e:
        raise InputError(str(e)) from None


def build_scene(
    seed: int,
    size: int | tuple[int, int] = 2048,
    gsd_m: float | None = None,
    stage: str = "mixed",
    poppy_prob: float = 0.85,
    options: SceneOptions | None = None,
) -> tuple[Scene, dict]:
    """Draw a scene's GSD, season, location and layout from ``seed`` (no pixels yet).

    With randomisation (``options.randomise`` 1 or 2) the season's camera and soil and every item's look are
    re-drawn from a separate generator after the scene generator's draws, so geometry, plots and labels are
    those of the level-0 scene with the same seed and plot-area range.

    Returns:
        The :class:`Scene` and a dict of what was drawn (location, whether it has poppy).
    """
    opts = scene_options(options)
    h, w = _check(size, gsd_m, stage, "utm", 1024, poppy_prob)
    rng = np.random.default_rng(seed)
    gsd = float(gsd_m) if gsd_m is not None else float(rng.uniform(*GSD_RANGE_M))
    has_poppy = stage != "none" and bool(rng.random() < poppy_prob)
    season = randomise_season(sample_season(rng, stage, gsd), seed, opts)
    layout = build_layout(rng, season, w * gsd, h * gsd, has_poppy, stage, opts.plot_area)
    randomise_layout(layout, seed, opts)
    lon = float(rng.uniform(*LON_RANGE))
    lat = float(rng.uniform(*LAT_RANGE))
    scene = Scene(seed, h, w, gsd, season, layout, sample_look(seed, opts))
    return scene, {"lon": lon, "lat": lat, "has_poppy": has_poppy}


def _bbox_px(geom, gsd: float, h: int, w: int) -> list[int] | None:
    u0, v0, u1, v1 = geom.bounds
    r0, c0 = max(0, math.floor(v0 / gsd)), max(0, math.floor(u0 / gsd))
    r1, c1 = min(h, math.ceil(v1 / gsd)), min(w, math.ceil(u1 / gsd))
    if r1 <= r0 or c1 <= c0:
        return None
    return [r0, c0, r1, c1]


def render_scene(
    out_dir: str | Path,
    name: str,
    seed: int,
    size: int | tuple[int, int] = 2048,
    gsd_m: float | None = None,
    stage: str = "mixed",
    crs: str = "utm",
    rgb: bool = False,
    landcover: bool = False,
    window: int = 1024,
    poppy_prob: float = 0.85,
    options: SceneOptions | dict | None = None,
) -> dict:
    """Render one scene to ``out_dir/NAME.tif``, ``.geojson``, ``.json`` (and ``.landcover.tif``).

    Args:
        out_dir: Output folder (created).
        name: Scene name (file stem).
        seed: Scene seed: the same seed gives identical files.
        size: Pixels, ``N`` for N x N or ``(height, width)``.
        gsd_m: Ground sample distance in metres; None draws one in 0.015-0.05.
        stage: ``vegetative|flowering|capsule`` for every plot, ``mixed`` (per plot) or ``none`` (no poppy).
        crs: ``utm|cgcs2000|4326|3857`` (placed by the scene's location), or any CRS pyproj reads
            (``EPSG:32650``, WKT, PROJ string): the scene is then placed inside its area of use.
        rgb: Write RGB plus an internal mask band instead of RGBA.
        landcover: Also write the land-cover raster.
        window: Render window in pixels (a multiple of 16); only memory and speed depend on it.
        poppy_prob: Chance that a scene (with stage other than ``none``) contains poppy plots.
        options: :class:`SceneOptions` (or a dict of its fields): randomisation level, appearance half,
            plot-area range; None is today's renderer.

    Returns:
        ``{"image", "labels", "sidecar", "landcover"}`` paths (landcover None unless asked) and ``"meta"``,
        the sidecar content.
    """
    h, w = _check(size, gsd_m, stage, crs, window, poppy_prob)
    opts = scene_options(options)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out_dir}: cannot create the folder ({e.strerror}); choose a writable path") from None
    scene, drawn = build_scene(seed, (h, w), gsd_m, stage, poppy_prob, opts)
    user_crs = parse_crs(crs)
    if user_crs is not None:
        drawn["lon"], drawn["lat"] = _into_area_of_use(user_crs, drawn["lon"], drawn["lat"])
    lon, lat = drawn["lon"], drawn["lat"]
    crs_obj = user_crs if user_crs is not None else pick_crs(crs, lon, lat)
    transform = scene_transform(crs_obj, lon, lat, scene.gsd, h, w)
    paths = {
        "image": str(out / f"{name}.tif"),
        "labels": str(out / f"{name}.geojson"),
        "sidecar": str(out / f"{name}.json"),
        "landcover": str(out / f"{name}.landcover.tif") if landcover else None,
    }
    _write_rasters(scene, paths, crs_obj, transform, rgb, window)
    meta = _sidecar(scene, drawn, crs, crs_obj, transform, paths, rgb)
    if not opts.is_default:  # level-0 sidecars stay byte-identical to today's
        meta["options"] = opts.to_dict()
        meta["look"] = scene.look.to_dict() if scene.look is not None else None
    features = _plot_features(scene, transform, crs_obj)
    for f in features:
        c = f["properties"].pop("_centroid")
        meta["content"]["plots"].append({**f["properties"], "centroid_lonlat": c})
    with open(paths["labels"], "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)
    with open(paths["sidecar"], "w") as f:
        json.dump(meta, f, indent=1)
    return {**paths, "meta": meta}


def _write_rasters(scene: Scene, paths: dict, crs, transform: Affine, rgb: bool, window: int) -> None:
    h, w = scene.height, scene.width
    profile = dict(
        driver="GTiff",
        height=h,
        width=w,
        count=3 if rgb else 4,
        dtype="uint8",
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=2,
        photometric="RGB",
        interleave="pixel",
    )
    lc_profile = {**profile, "count": 1, "predictor": 1, "nodata": 0, "interleave": "band"}
    lc_profile.pop("photometric")
    # A small block cache: windows are written in order and flushed, so memory does not grow with the scene.
    with (
        rasterio.Env(GDAL_CACHEMAX=64, GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(paths["image"], "w", **profile) as dst,
    ):
        if not rgb:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        lc_dst = rasterio.open(paths["landcover"], "w", **lc_profile) if paths["landcover"] else None
        try:
            for r0 in range(0, h, window):
                for c0 in range(0, w, window):
                    box = Box(r0, c0, min(window, h - r0), min(window, w - c0))
                    rgba, lc = render_window(scene, box)
                    win = Window(c0, r0, box.width, box.height)
                    if rgb:
                        dst.write(np.moveaxis(rgba[..., :3], -1, 0), window=win)
                        dst.write_mask(rgba[..., 3], window=win)
                    else:
                        dst.write(np.moveaxis(rgba, -1, 0), window=win)
                    if lc_dst is not None:
                        lc_dst.write(lc, 1, window=win)
        finally:
            if lc_dst is not None:
                lc_dst.close()


def _plot_features(scene: Scene, transform: Affine, crs) -> list[dict]:
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    feats = []
    for k, plot in enumerate(scene.layout.plots):
        ll = _to_lonlat(plot.geom, scene.gsd, transform, to_ll)
        c = ll.centroid
        feats.append(
            {
                "type": "Feature",
                "geometry": mapping(ll),
                "properties": {
                    "plot_id": k,
                    "class": "poppy",
                    "stage": plot.stage,
                    "setting": plot.setting,
                    "host": plot.host,
                    "area_m2": round(geodesic_area_m2(ll), 3),
                    "_centroid": [round(c.x, 8), round(c.y, 8)],
                },
            }
        )
    return feats


def _sidecar(scene: Scene, drawn: dict, crs_kind: str, crs, transform: Affine, paths: dict, rgb: bool) -> dict:
    lay = scene.layout
    h, w, g = scene.height, scene.width, scene.gsd
    confusers = []
    for c in lay.confusers:
        bb = _bbox_px(c.geom, g, h, w)
        if bb is not None and c.geom.intersects(lay.footprint):
            confusers.append({"kind": c.kind, "bbox_px": bb, "area_m2": round(float(c.geom.area), 2)})
    stages = sorted({p.stage for p in lay.plots})
    fp_px = shapely.affinity.scale(lay.footprint, 1 / g, 1 / g, origin=(0, 0))
    return {
        "generator": GENERATOR_VERSION,
        "seed": int(scene.seed),
        "size": {"height": h, "width": w},
        "gsd_m": round(g, 6),
        "crs": {"kind": crs_kind, "epsg": crs.to_epsg(), "wkt": crs.to_wkt()},
        "transform": list(transform)[:6],
        "centre_lonlat": [round(drawn["lon"], 6), round(drawn["lat"], 6)],
        "bands": "RGB + internal mask" if rgb else "RGBA (alpha = footprint)",
        "stage": scene.season.stage,
        "stages_present": stages,
        "has_poppy": bool(lay.plots),
        "season": scene.season.to_dict(),
        "footprint_px_wkt": shapely.set_precision(fp_px, 0.01).wkt,
        "content": {"plots": [], "confusers": confusers, "layout": lay.summary},
        "landcover_legend": {
            str(k): v for k, v in LANDCOVER.items() if scene.look is not None or k not in RANDOMISED_CLASSES
        },
        "files": {k: Path(v).name for k, v in paths.items() if v},
    }


def parse_plot_area(text: str) -> tuple[float, float]:
    """``--plot-area MIN,MAX`` in m2 (``1.5,2000``) as a pair; range checks are :class:`SceneOptions`'s."""
    try:
        lo, hi = (float(t) for t in text.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"--plot-area {text!r} must be MIN,MAX in m2, e.g. 1.5,2000") from None
    return lo, hi


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def generate(out_dir: str | Path, count: int, seed: int, name_prefix: str = "synthetic", **kw) -> list[dict]:
    """Render ``count`` scenes named ``{prefix}_0000``... with seeds derived from ``seed``.

    Keyword arguments are passed to :func:`render_scene`.
    """
    if count < 1:
        raise InputError(f"--count {count} must be at least 1")
    return [render_scene(out_dir, f"{name_prefix}_{i:04d}", scene_seed(seed, i), **kw) for i in range(count)]


# --- command line ----------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.synthetic",
        description="Render synthetic drone orthomosaics of farmland with hidden opium-poppy plots.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=int, default=1, help="number of scenes")
    p.add_argument("--seed", type=int, default=0, help="run seed; scene seeds are derived from it")
    p.add_argument("--size", type=int, default=2048, help="scene size in pixels (square)")
    p.add_argument("--gsd", type=float, default=None, help="metres per pixel (default: random 0.015-0.05 per scene)")
    p.add_argument("--stage", default="mixed", choices=STAGE_CHOICES, help="poppy growth stage of the plots")
    p.add_argument(
        "--crs",
        default="utm",
        help="output CRS: utm, cgcs2000 (zone from the scene's location), 4326, 3857, or any EPSG:NNNN, WKT or "
        "PROJ string (the scene is placed inside its area of use); default utm",
    )
    p.add_argument("--rgb", action="store_true", help="write RGB with an internal mask instead of RGBA")
    p.add_argument("--landcover", action="store_true", help="also write NAME.landcover.tif")
    p.add_argument("--no-poppy", action="store_true", help="no poppy in any scene (same as --stage none)")
    p.add_argument("--poppy-prob", type=float, default=0.85, help="chance that a scene contains poppy")
    p.add_argument("--window", type=int, default=1024, help="render window in pixels (memory vs speed)")
    p.add_argument("--prefix", default="synthetic", help="scene name prefix")
    p.add_argument(
        "--randomise",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="domain randomisation: 0 today's renderer, 1 wider real materials and camera, 2 any colour and "
        "procedural textures on every non-poppy surface (default 0)",
    )
    p.add_argument(
        "--appearance",
        default="all",
        choices=APPEARANCE_CHOICES,
        help="appearance half to draw from: all, train or holdout (disjoint halves; needs --randomise 1 or 2)",
    )
    p.add_argument(
        "--plot-area",
        default=None,
        help="poppy plot area range in m2, MIN,MAX (default 1.5,200; a MAX above 200 adds whole-field plots)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        options = {"randomise": args.randomise, "appearance": args.appearance}
        if args.plot_area is not None:
            options["plot_area"] = parse_plot_area(args.plot_area)
        res = generate(
            args.out,
            args.count,
            args.seed,
            name_prefix=args.prefix,
            size=args.size,
            gsd_m=args.gsd,
            stage="none" if args.no_poppy else args.stage,
            crs=args.crs,
            rgb=args.rgb,
            landcover=args.landcover,
            window=args.window,
            poppy_prob=args.poppy_prob,
            options=scene_options(options),
        )
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in res:
        m = r["meta"]
        print(
            f"{r['image']}: {m['size']['width']}x{m['size']['height']} px at {m['gsd_m'] * 100:.1f} cm, "
            f"{len(m['content']['plots'])} poppy plots"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
