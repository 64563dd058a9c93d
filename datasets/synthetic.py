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
from datasets.scene.items import LANDCOVER
from datasets.scene.layout import build_layout
from datasets.scene.render import Scene, render_window
from datasets.scene.season import STAGES, sample_season

__all__ = [
    "GENERATOR_VERSION",
    "build_scene",
    "generate",
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


def pick_crs(kind: str, lon: float, lat: float) -> CRS:
    """The CRS of kind ``utm|cgcs2000|4326|3857`` for a scene centred at (lon, lat).

    ``utm`` is the WGS 84 UTM zone containing the point; ``cgcs2000`` the CGCS2000 3-degree Gauss-Kruger zone
    (EPSG:4513-4533, easting prefixed with the zone number) whose central meridian is nearest.
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
    raise InputError(f"--crs {kind!r} is not supported; use one of {', '.join(CRS_CHOICES)}")


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
    if crs not in CRS_CHOICES:
        raise InputError(f"--crs {crs!r} is not supported; use one of {', '.join(CRS_CHOICES)}")
    if window < 64 or window % 16:
        raise InputError(f"--window {window} must be a multiple of 16 and at least 64 (JPEG blocks line up)")
    if not 0.0 <= poppy_prob <= 1.0:
        raise InputError(f"--poppy-prob {poppy_prob} must be between 0 and 1")
    return h, w


def build_scene(
    seed: int,
    size: int | tuple[int, int] = 2048,
    gsd_m: float | None = None,
    stage: str = "mixed",
    poppy_prob: float = 0.85,
) -> tuple[Scene, dict]:
    """Draw a scene's GSD, season, location and layout from ``seed`` (no pixels yet).

    Returns:
        The :class:`Scene` and a dict of what was drawn (location, whether it has poppy).
    """
    h, w = _check(size, gsd_m, stage, "utm", 1024, poppy_prob)
    rng = np.random.default_rng(seed)
    gsd = float(gsd_m) if gsd_m is not None else float(rng.uniform(*GSD_RANGE_M))
    has_poppy = stage != "none" and bool(rng.random() < poppy_prob)
    season = sample_season(rng, stage, gsd)
    layout = build_layout(rng, season, w * gsd, h * gsd, has_poppy, stage)
    lon = float(rng.uniform(*LON_RANGE))
    lat = float(rng.uniform(*LAT_RANGE))
    return Scene(seed, h, w, gsd, season, layout), {"lon": lon, "lat": lat, "has_poppy": has_poppy}


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
) -> dict:
    """Render one scene to ``out_dir/NAME.tif``, ``.geojson``, ``.json`` (and ``.landcover.tif``).

    Args:
        out_dir: Output folder (created).
        name: Scene name (file stem).
        seed: Scene seed: the same seed gives identical files.
        size: Pixels, ``N`` for N x N or ``(height, width)``.
        gsd_m: Ground sample distance in metres; None draws one in 0.015-0.05.
        stage: ``vegetative|flowering|capsule`` for every plot, ``mixed`` (per plot) or ``none`` (no poppy).
        crs: ``utm|cgcs2000|4326|3857``.
        rgb: Write RGB plus an internal mask band instead of RGBA.
        landcover: Also write the land-cover raster.
        window: Render window in pixels (a multiple of 16); only memory and speed depend on it.
        poppy_prob: Chance that a scene (with stage other than ``none``) contains poppy plots.

    Returns:
        ``{"image", "labels", "sidecar", "landcover"}`` paths (landcover None unless asked) and ``"meta"``,
        the sidecar content.
    """
    h, w = _check(size, gsd_m, stage, crs, window, poppy_prob)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out_dir}: cannot create the folder ({e.strerror}); choose a writable path") from None
    scene, drawn = build_scene(seed, (h, w), gsd_m, stage, poppy_prob)
    lon, lat = drawn["lon"], drawn["lat"]
    crs_obj = pick_crs(crs, lon, lat)
    transform = scene_transform(crs_obj, lon, lat, scene.gsd, h, w)
    paths = {
        "image": str(out / f"{name}.tif"),
        "labels": str(out / f"{name}.geojson"),
        "sidecar": str(out / f"{name}.json"),
        "landcover": str(out / f"{name}.landcover.tif") if landcover else None,
    }
    _write_rasters(scene, paths, crs_obj, transform, rgb, window)
    meta = _sidecar(scene, drawn, crs, crs_obj, transform, paths, rgb)
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
        "landcover_legend": {str(k): v for k, v in LANDCOVER.items()},
        "files": {k: Path(v).name for k, v in paths.items() if v},
    }


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
    p.add_argument("--crs", default="utm", choices=CRS_CHOICES, help="output CRS")
    p.add_argument("--rgb", action="store_true", help="write RGB with an internal mask instead of RGBA")
    p.add_argument("--landcover", action="store_true", help="also write NAME.landcover.tif")
    p.add_argument("--no-poppy", action="store_true", help="no poppy in any scene (same as --stage none)")
    p.add_argument("--poppy-prob", type=float, default=0.85, help="chance that a scene contains poppy")
    p.add_argument("--window", type=int, default=1024, help="render window in pixels (memory vs speed)")
    p.add_argument("--prefix", default="synthetic", help="scene name prefix")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
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
