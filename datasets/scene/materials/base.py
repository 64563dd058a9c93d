"""The material registry and the helpers materials share (soil, rows, relief, plant sites).

A material is a small class with

* ``name`` (its key in :data:`MATERIALS`) and ``landcover`` (the class id it writes, see ``items.LANDCOVER``);
* ``sample(rng, season, geom) -> dict``: its parameters, drawn once at layout time (plain values);
* ``draw(ctx, item)``: paint the item into a window, using only hashed noise (``PixelSet.noise``,
  ``Lattice.sites``) so that windows join without seams.

To add one: subclass :class:`Material` in a module of this package, decorate it with ``@register``, import
the module in ``materials/__init__.py``, and let the layout place items with its name.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from datasets.scene import noise, textures
from datasets.scene.colour import lin
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import Item
from datasets.scene.plants import Lattice, PlantLook, Sites, draw_plants
from datasets.scene.rasterize import polygon_mask
from datasets.scene.season import Season

__all__ = [
    "MATERIALS",
    "Material",
    "draw_plant_item",
    "plant_sites",
    "register",
    "relief",
    "row_coord",
    "soil",
]

_F = np.float32
MATERIALS: dict[str, Material] = {}


class Material:
    """Base class: see the module docstring."""

    name: ClassVar[str] = ""
    landcover: ClassVar[int] = 0
    # True when draw() paints every pixel of the item's polygon (the background can skip them).
    opaque: ClassVar[bool] = False

    def sample(self, rng: np.random.Generator, season: Season, geom) -> dict:
        """Parameters for one item, drawn at layout time."""
        return {}

    def draw(self, ctx: WindowContext, item: Item) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"material {self.name!r} does not implement draw()")


def register(cls: type[Material]) -> type[Material]:
    """Class decorator adding a material to :data:`MATERIALS` under its ``name``."""
    if not cls.name or cls.name in MATERIALS:
        raise ValueError(f"material name {cls.name!r} is empty or already registered")
    MATERIALS[cls.name] = cls()
    return cls


# --- shared pieces -------------------------------------------------------------------------------------------


def row_coord(px: PixelSet, angle: float) -> np.ndarray:
    """Distance (m, float64) of each pixel across rows running in direction ``angle`` (radians from +u)."""
    return -px.u * math.sin(angle) + px.v * math.cos(angle)


def along_coord(px: PixelSet, angle: float) -> np.ndarray:
    """Distance (m, float64) of each pixel along rows running in direction ``angle``."""
    return px.u * math.cos(angle) + px.v * math.sin(angle)


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
    base = lin(base_rgb)
    big = px.fbm(7.0, seed, octaves=2)
    mid = px.noise(0.9, seed + 1)
    tex = "clods" if clod >= 0.55 else "crust"
    h, irr = textures.sample_relief(px, tex, seed + 2, 0.5 + 0.9 * clod, 0.25 + 0.45 * clod)
    wet = np.clip(_F(moisture) + _F(0.35) * big + _F(0.15) * mid, 0, 1)
    logb = _F(0.08) * big + _F(0.06) * mid + _F(0.09) * h + _F(0.03) * px.grain(seed + 3) - _F(0.5) * wet
    warm = _F(0.04) * px.noise(11.0, seed + 4)
    alb = base * np.exp(np.stack([logb + warm * _F(0.6), logb + warm * _F(0.15), logb - warm], axis=-1))
    # Small stones and dry crumbs catch the light.
    cells = 0.03
    hh = noise.hash_u32(seed + 5, np.floor(px.v / cells).astype(np.int64), np.floor(px.u / cells).astype(np.int64))
    stone = (noise.unit(hh) < 0.01).astype(_F) * _F(0.45)
    alb = alb + (lin((190, 185, 175)) - alb) * stone[:, None]
    return alb.astype(_F), irr


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


def draw_plant_item(ctx: WindowContext, geom, lattice: Lattice, look: PlantLook, landcover: int | None) -> None:
    """Draw the plants of one lattice inside ``geom`` (over whatever is already in the window)."""
    sites = plant_sites(ctx, geom, lattice, look)
    draw_plants(ctx, sites, look, landcover=landcover)


def jitter_rgb(rng: np.random.Generator, rgb, amount: float = 0.08) -> list[int]:
    """A colour varied by ``amount`` (relative, per channel and overall), as plain ints for params."""
    c = np.asarray(rgb, float) * math.exp(rng.normal(0, amount)) * np.exp(rng.normal(0, amount * 0.4, 3))
    return [int(x) for x in np.clip(c, 3, 252)]
