"""Ground materials: the background of field margins, bare (tilled) soil and weedy grass."""

from __future__ import annotations

import math

import numpy as np

from datasets.scene import noise, textures
from datasets.scene.colour import lin
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import (
    Material,
    draw_plant_item,
    jitter_rgb,
    register,
    row_coord,
    soil,
)
from datasets.scene.plants import Lattice, PlantLook
from datasets.scene.season import Season

_F = np.float32


def grass(px: PixelSet, p: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and relief of grass and weeds: blades, tufts, dry patches, a few flowers."""
    green, dry = lin(p["green"]), lin(p["dry"])
    patch = px.fbm(2.5, seed, octaves=2)
    tuft = px.fbm(0.3, seed + 1, octaves=2) * _F(0.5) + textures.sample(px, "foliage", seed + 7, 0.2) * _F(0.5)
    blades, irr = textures.sample_relief(px, "grass", seed + 2, 1.2, 0.5)
    hue = px.noise(0.35, seed + 6)
    t = np.clip((patch * _F(0.5) + _F(0.5)) * _F(1.4) - _F(1.4 * (1 - p["dry_frac"])) + _F(0.3) * tuft, 0, 1)
    col = green + (dry - green) * t[:, None]
    logb = _F(0.25) * tuft + _F(0.3) * blades + _F(0.04) * px.grain(seed + 3) + _F(0.08) * patch
    warm = _F(0.12) * hue
    col = col * np.exp(np.stack([logb + warm, logb + warm * _F(0.3), logb - warm], axis=-1))
    # Deep gaps between tufts get little light.
    irr = irr * np.clip(_F(0.8) + _F(0.35) * tuft, 0.35, 1.2)
    cells = 0.045
    h = noise.hash_u32(seed + 4, np.floor(px.v / cells).astype(np.int64), np.floor(px.u / cells).astype(np.int64))
    fl = noise.unit(h)
    yellow = (fl < p["flowers"]).astype(_F) * _F(0.7)
    white = ((fl >= p["flowers"]) & (fl < 1.6 * p["flowers"])).astype(_F) * _F(0.6)
    col = col + (lin((225, 200, 40)) - col) * yellow[:, None] + (lin((235, 235, 225)) - col) * white[:, None]
    return col.astype(_F), irr


def _grass_params(rng: np.random.Generator, season: Season) -> dict:
    g = np.array([88, 108, 58]) * rng.uniform(0.85, 1.1) * season.vigour ** np.array([0.3, 0.6, 0.3])
    return {
        "green": jitter_rgb(rng, g, 0.06),
        "dry": jitter_rgb(rng, (150, 138, 88), 0.08),
        "dry_frac": float(rng.uniform(0.05, 0.5)),
        "flowers": float(rng.choice([0.0, rng.uniform(0.002, 0.02)], p=[0.5, 0.5])),
    }


@register
class Margin(Material):
    """Everything not otherwise claimed: field bunds, verges, waste ground. Soil with patches of weeds."""

    name = "margin"
    landcover = LC["grass_weeds"]

    def sample(self, rng, season, geom) -> dict:
        return {
            **_grass_params(rng, season),
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "cover": float(rng.uniform(0.3, 0.8)),
            "moisture": season.soil_moisture,
        }

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.all_pixels() if ctx.background is None else ctx.mask_pixels(ctx.background)
        if len(px) == 0:
            return
        p, s = item.params, item.seed
        salb, sirr = soil(px, p["soil"], s, p["moisture"] * 0.7, clod=0.5)
        galb, girr = grass(px, p, s + 10)
        cover = px.fbm(3.0, s + 20, octaves=2) + _F(0.35) * px.noise(0.35, s + 21) + _F(2 * p["cover"] - 1)
        a = np.clip(cover * _F(3.0) + _F(0.5), 0, 1)
        px.set_albedo(salb + (galb - salb) * a[:, None])
        px.set("irr", sirr + (girr - sirr) * a)
        px.set("sky", _F(1) - _F(0.1) * a)
        px.set("landcover", np.where(a >= 0.5, LC["grass_weeds"], LC["bare_soil"]).astype(np.uint8))


@register
class Grass(Material):
    """A weedy, fallow or grass parcel."""

    name = "grass"
    opaque = True
    landcover = LC["grass_weeds"]

    def sample(self, rng, season, geom) -> dict:
        return {**_grass_params(rng, season), "soil": jitter_rgb(rng, season.soil_rgb, 0.05)}

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        alb, irr = grass(px, item.params, item.seed)
        # Bare gaps between tufts.
        salb, sirr = soil(px, item.params["soil"], item.seed + 40, 0.3)
        gap = np.clip(px.fbm(0.5, item.seed + 41, octaves=2) * _F(3) - _F(1.2), 0, 1)
        px.set_albedo(alb + (salb - alb) * gap[:, None])
        px.set("irr", irr + (sirr - irr) * gap)
        px.set("sky", _F(0.92))
        px.set("elev", _F(0.15))
        px.set("landcover", self.landcover)


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


@register
class Bare(Material):
    """Bare soil: freshly tilled with furrows, or harrowed and crusted, with tracks and a few weeds."""

    name = "bare"
    opaque = True
    landcover = LC["bare_soil"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.06),
            "moisture": float(np.clip(season.soil_moisture + rng.normal(0, 0.15), 0, 1)),
            "tilled": bool(rng.random() < 0.6),
            "angle": float(rng.uniform(0, math.pi)),
            "spacing": float(rng.uniform(0.2, 0.6)),
            "depth": float(rng.uniform(0.03, 0.12)),
            "weeds": float(rng.choice([0.0, rng.uniform(0.02, 0.25)], p=[0.4, 0.6])),
            "clod": float(rng.uniform(0.4, 1.2)),
        }

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        p = item.params
        alb, irr = soil(px, p["soil"], item.seed, p["moisture"], p["clod"])
        if p["tilled"]:
            f, firr = furrows(px, p["angle"], p["spacing"], p["depth"], item.seed + 1)
            alb = alb * f[:, None]
            irr = irr * firr
        px.set_albedo(alb)
        px.set("irr", irr)
        px.set("sky", _F(1))
        px.set("landcover", self.landcover)
        if p["weeds"] > 0:
            weed_lattice(ctx, item, p["weeds"])


def weed_lattice(ctx: WindowContext, item: Item, keep: float) -> None:
    """Sparse small weeds scattered over a parcel."""
    lat = Lattice(0.25, 0.25, angle=0.3, jitter_row=0.5, jitter_along=0.5, keep=keep, seed=item.seed + 77)
    look = PlantLook(
        radius=0.04,
        height=0.05,
        radius_cv=0.6,
        lobes=5,
        lobe_depth=0.4,
        colour=(80, 120, 45),
        colour_var=0.2,
        shadow_opacity=0.5,
    )
    draw_plant_item(ctx, item.geom, lat, look, None)
