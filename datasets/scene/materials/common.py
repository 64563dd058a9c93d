"""What several materials share: soil, grass, tillage furrows, mulch film, weeds, row coordinates, blending.

Every surface here is ``(albedo [n, 3], irradiance [n])`` at a :class:`PixelSet`, computed only from hashed
noise and textures at the pixels' scene coordinates, so a pixel gets the same value whichever window draws it.
"""

from __future__ import annotations

import math

import numpy as np

from datasets.scene import noise, textures
from datasets.scene.colour import lin, tinted
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import Item
from datasets.scene.plants import Lattice, PlantLook, Sites, draw_plants
from datasets.scene.rasterize import polygon_mask
from datasets.scene.season import Season

__all__ = [
    "FILMS",
    "RANDOMISED_FILMS",
    "along_coord",
    "blend",
    "draw_plant_item",
    "film",
    "furrows",
    "grass",
    "jitter_rgb",
    "mix_surfaces",
    "plant_sites",
    "relief",
    "row_coord",
    "sample_grass",
    "soil",
    "weeds",
    "wrinkles",
]

_F = np.float32

# Mulch film colours in sun (sRGB).
FILMS = {"white": (214, 214, 208), "clear": (120, 112, 100), "black": (38, 38, 40), "silver": (178, 180, 182)}
# Films only randomised scenes draw (datasets.scene.randomise); kept apart because layouts draw from FILMS.
RANDOMISED_FILMS = {"green_film": (58, 96, 64), "brown_film": (96, 78, 60)}
# Small weeds scattered over bare soil and poppy plots.
_WEED_LOOK = PlantLook(
    radius=0.04,
    height=0.05,
    radius_cv=0.6,
    lobes=5,
    lobe_depth=0.4,
    colour=(80, 120, 45),
    colour_var=0.2,
    shadow_opacity=0.5,
)


# --- parameters ----------------------------------------------------------------------------------------------


def jitter_rgb(rng: np.random.Generator, rgb, amount: float = 0.08) -> list[int]:
    """A colour varied by ``amount`` (relative, per channel and overall), as plain ints for params."""
    c = np.asarray(rgb, float) * math.exp(rng.normal(0, amount)) * np.exp(rng.normal(0, amount * 0.4, 3))
    return [int(x) for x in np.clip(c, 3, 252)]


def sample_grass(rng: np.random.Generator, season: Season) -> dict:
    """The parameters :func:`grass` reads: green and dry colours, share of dry patches, flower density."""
    g = np.array([88, 108, 58]) * rng.uniform(0.85, 1.1) * season.vigour ** np.array([0.3, 0.6, 0.3])
    return {
        "green": jitter_rgb(rng, g, 0.06),
        "dry": jitter_rgb(rng, (150, 138, 88), 0.08),
        "dry_frac": float(rng.uniform(0.05, 0.5)),
        "flowers": float(rng.choice([0.0, rng.uniform(0.002, 0.02)], p=[0.5, 0.5])),
    }


# --- coordinates and blending --------------------------------------------------------------------------------


def row_coord(px: PixelSet, angle: float) -> np.ndarray:
    """Distance (m, float64) of each pixel across rows running in direction ``angle`` (radians from +u)."""
    return -px.u * math.sin(angle) + px.v * math.cos(angle)


def along_coord(px: PixelSet, angle: float) -> np.ndarray:
    """Distance (m, float64) of each pixel along rows running in direction ``angle``."""
    return px.u * math.cos(angle) + px.v * math.sin(angle)


def _cell_unit(px: PixelSet, cell: float, seed: int) -> np.ndarray:
    """A hashed uniform in [0, 1) per square cell of ``cell`` metres, at the pixels (for specks: stones, flowers)."""
    rows = np.floor(px.v / cell).astype(np.int64)
    cols = np.floor(px.u / cell).astype(np.int64)
    return noise.unit(noise.hash_u32(seed, rows, cols))


def blend(col: np.ndarray, target: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Colours ``col`` (``[n, 3]`` or one colour) moved towards ``target`` by the weight ``t`` ``[n]`` per pixel."""
    return col + (target - col) * t[:, None]


def mix_surfaces(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Surface ``a`` moved towards surface ``b`` by ``t`` per pixel: ``(albedo, irradiance)``."""
    return blend(a[0], b[0], t), a[1] + (b[1] - a[1]) * t


# --- surfaces --------------------------------------------------------------------------------------------------


def relief(px: PixelSet, cell: float, seed: int, strength: float) -> np.ndarray:
    """Directional relief shading of a bumpy surface: bright on slopes facing the sun, dark behind.

    The slope is the difference of one noise octave between the pixel and a point half a cell towards the
    sun, so bumps light up on their sunward side as in a real low-sun photograph.
    """
    if cell < 0.6 * px.ctx.gsd:
        return np.ones(len(px), _F)
    sv = px.ctx.sun.vector
    hor = math.hypot(float(sv[0]), float(sv[1])) + 1e-9
    d = 0.5 * cell
    h0 = px.noise(cell, seed)
    h1 = px.noise(cell, seed, shift=(d * float(sv[0]) / hor, d * float(sv[1]) / hor))
    # Height rising towards the sun means the surface faces away from it.
    k = strength * px.ctx.sun.shadow_len**0.5
    return np.clip(_F(1) + (h0 - h1) * _F(k), 0.2, 2.0)


def soil(px: PixelSet, base_rgb, seed: int, moisture: float = 0.3, clod: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Bare-soil albedo ``[n, 3]`` and relief irradiance ``[n]`` at the pixels.

    Args:
        px: Pixels.
        base_rgb: sRGB of the dry soil in sun.
        seed: Texture seed.
        moisture: 0 dry .. 1 wet: darker, in patches.
        clod: Roughness (1 = fresh tillage with clods, 0.3 = crusted, harrowed or trodden).
    """
    big = px.fbm(7.0, seed, octaves=2)
    mid = px.noise(0.9, seed + 1)
    tex = "clods" if clod >= 0.55 else "crust"
    h, irr = textures.sample_relief(px, tex, seed + 2, 0.5 + 0.9 * clod, 0.25 + 0.45 * clod)
    wet = np.clip(_F(moisture) + _F(0.35) * big + _F(0.15) * mid, 0, 1)
    logb = _F(0.08) * big + _F(0.06) * mid + _F(0.09) * h + _F(0.03) * px.grain(seed + 3) - _F(0.5) * wet
    alb = tinted(lin(base_rgb), logb, _F(0.04) * px.noise(11.0, seed + 4))
    # Small stones and dry crumbs catch the light.
    stone = (_cell_unit(px, 0.03, seed + 5) < 0.01).astype(_F) * _F(0.45)
    return blend(alb, lin((190, 185, 175)), stone).astype(_F), irr


def grass(px: PixelSet, p: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and relief of grass and weeds (``p`` from :func:`sample_grass`): blades, tufts, dry patches, flowers."""
    green, dry = lin(p["green"]), lin(p["dry"])
    patch = px.fbm(2.5, seed, octaves=2)
    tuft = px.fbm(0.3, seed + 1, octaves=2) * _F(0.5) + textures.sample(px, "foliage", seed + 7, 0.2) * _F(0.5)
    blades, irr = textures.sample_relief(px, "grass", seed + 2, 1.2, 0.5)
    t = np.clip((patch * _F(0.5) + _F(0.5)) * _F(1.4) - _F(1.4 * (1 - p["dry_frac"])) + _F(0.3) * tuft, 0, 1)
    logb = _F(0.25) * tuft + _F(0.3) * blades + _F(0.04) * px.grain(seed + 3) + _F(0.08) * patch
    col = tinted(blend(green, dry, t), logb, _F(0.12) * px.noise(0.35, seed + 6), red=1.0, green=0.3)
    # Deep gaps between tufts get little light.
    irr = irr * np.clip(_F(0.8) + _F(0.35) * tuft, 0.35, 1.2)
    fl = _cell_unit(px, 0.045, seed + 4)
    yellow = (fl < p["flowers"]).astype(_F) * _F(0.7)
    white = ((fl >= p["flowers"]) & (fl < 1.6 * p["flowers"])).astype(_F) * _F(0.6)
    col = col + (lin((225, 200, 40)) - col) * yellow[:, None] + (lin((235, 235, 225)) - col) * white[:, None]
    return col.astype(_F), irr


def furrows(px: PixelSet, angle: float, spacing: float, depth: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Albedo factor and irradiance of parallel tillage furrows (ridges lit on their sunward side)."""
    t = row_coord(px, angle) + _F(0.15 * spacing) * px.noise(3.0, seed)
    ph = (t / spacing) * (2 * math.pi)
    sv = px.ctx.sun.vector
    # Sun component across the furrows decides how strongly the ridges are side-lit.
    across = -float(sv[0]) * math.sin(angle) + float(sv[1]) * math.cos(angle)
    slope = np.cos(ph).astype(_F) * _F(depth * 2 * math.pi / spacing * 0.15)
    irr = np.clip(_F(1) - slope * _F(across / max(float(sv[2]), 0.2)), 0.25, 1.8)
    trough = (_F(1) - np.sin(ph).astype(_F)) * _F(0.5)
    return np.exp(-_F(0.18) * trough * _F(depth / 0.1)), irr


def wrinkles(px: PixelSet, angle: float, seed: int, scale: float) -> np.ndarray:
    """Plastic wrinkles, stretched along ``angle``: values in about [-1, 1]."""
    s = along_coord(px, angle)
    t = row_coord(px, angle)
    return noise.noise_pts(t / scale, s / (scale * 5.0), 1.0, seed) * _F(0.6) + noise.noise_pts(
        t / (scale * 0.4), s / (scale * 1.5), 1.0, seed + 1
    ) * _F(0.4)


def film(px: PixelSet, kind: str, seed: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and irradiance of mulch film (``kind`` in :data:`FILMS`): wrinkles catching the sun, dust, soil."""
    if len(px) == 0:
        return np.zeros((0, 3), _F), np.zeros(0, _F)
    w = wrinkles(px, angle, seed, 0.12)
    dust = np.clip(px.fbm(0.6, seed + 2, octaves=3) * _F(1.5) - _F(0.2), 0, 1)
    col = lin(FILMS[kind] if kind in FILMS else RANDOMISED_FILMS[kind]) * np.exp(_F(0.06) * px.grain(seed + 3))[:, None]
    col = blend(col, lin((150, 130, 105)), dust * _F(0.35))
    if kind == "clear":
        # Condensation under clear film: milky patches over dark moist soil.
        fog = np.clip(px.fbm(0.25, seed + 4, octaves=2) + _F(0.3), 0, 1)
        col = blend(col, lin((190, 192, 188)), fog * _F(0.55))
    spec = np.clip(w * _F(2.2) - _F(0.6), 0, 1) * _F(0.9 if kind != "black" else 0.5)
    col = blend(col, lin((245, 245, 242)), spec)
    irr = _F(1) + _F(0.25) * w
    return col.astype(_F), irr.astype(_F)


# --- plants ----------------------------------------------------------------------------------------------------


def plant_sites(ctx: WindowContext, geom, lattice: Lattice, look: PlantLook) -> Sites:
    """The sites of ``lattice`` whose centres are inside ``geom`` and whose sprites can touch the window."""
    reach = max(look.reach, look.shadow_reach(ctx.sun.shadow_len)) + 0.05
    u0, v0, u1, v1 = ctx.bounds_m()
    gu0, gv0, gu1, gv1 = geom.bounds
    bounds = (max(u0 - reach, gu0), max(v0 - reach, gv0), min(u1 + reach, gu1), min(v1 + reach, gv1))
    if bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
        return Sites(*(np.zeros(0, np.int64),) * 2, *(np.zeros(0),) * 2, lattice.seed)
    g = ctx.gsd
    r0, c0 = math.floor(bounds[1] / g), math.floor(bounds[0] / g)
    r1, c1 = math.ceil(bounds[3] / g) + 1, math.ceil(bounds[2] / g) + 1
    mask = polygon_mask(geom, (r0, c0, r1 - r0, c1 - c0), g)

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # The centre's pixel must be inside: decided on the global pixel grid, so windows agree.
        rr = np.floor(v / g).astype(np.int64) - r0
        cc = np.floor(u / g).astype(np.int64) - c0
        ok = (rr >= 0) & (rr < mask.shape[0]) & (cc >= 0) & (cc < mask.shape[1])
        out = np.zeros(len(u), bool)
        out[ok] = mask[rr[ok], cc[ok]]
        return out

    return lattice.sites(bounds, inside)


def draw_plant_item(ctx: WindowContext, geom, lattice: Lattice, look: PlantLook, landcover: int | None = None) -> None:
    """Draw the plants of one lattice inside ``geom`` (over whatever is already in the window)."""
    draw_plants(ctx, plant_sites(ctx, geom, lattice, look), look, landcover=landcover)


def weeds(ctx: WindowContext, item: Item, keep: float) -> None:
    """Sparse small weeds scattered over an item's polygon, on ``keep`` of the sites of a 25 cm lattice."""
    lat = Lattice(0.25, 0.25, angle=0.3, jitter_row=0.5, jitter_along=0.5, keep=keep, seed=item.seed + 77)
    draw_plant_item(ctx, item.geom, lat, _WEED_LOOK)
