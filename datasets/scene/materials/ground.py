"""Ground materials: the background of field margins, bare (tilled) soil and weedy grass."""

from __future__ import annotations

import math

import numpy as np

from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import Material, Surface, register
from datasets.scene.materials.common import furrows, grass, jitter_rgb, mix_surfaces, sample_grass, soil, weeds

_F = np.float32


@register
class Margin(Material):
    """Everything not otherwise claimed: field bunds, verges, waste ground. Soil with patches of weeds."""

    name = "margin"
    landcover = LC["grass_weeds"]

    def sample(self, rng, season, geom) -> dict:
        return {
            **sample_grass(rng, season),
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "cover": float(rng.uniform(0.3, 0.8)),
            "moisture": season.soil_moisture,
        }

    def pixels(self, ctx: WindowContext, item: Item) -> PixelSet:
        # The background: the pixels that no opaque parcel, road or yard paints over.
        return ctx.all_pixels() if ctx.background is None else ctx.mask_pixels(ctx.background)

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        bare = soil(px, p["soil"], s, p["moisture"] * 0.7, clod=0.5)
        cover = px.fbm(3.0, s + 20, octaves=2) + _F(0.35) * px.noise(0.35, s + 21) + _F(2 * p["cover"] - 1)
        a = np.clip(cover * _F(3.0) + _F(0.5), 0, 1)
        alb, irr = mix_surfaces(bare, grass(px, p, s + 10), a)
        lc = np.where(a >= 0.5, LC["grass_weeds"], LC["bare_soil"]).astype(np.uint8)
        return Surface(alb, irr, sky=_F(1) - _F(0.1) * a, landcover=lc)


@register
class Grass(Material):
    """A weedy, fallow or grass parcel."""

    name = "grass"
    opaque = True
    landcover = LC["grass_weeds"]

    def sample(self, rng, season, geom) -> dict:
        return {**sample_grass(rng, season), "soil": jitter_rgb(rng, season.soil_rgb, 0.05)}

    def surface(self, px: PixelSet, item: Item) -> Surface:
        # Bare gaps between tufts.
        gap = np.clip(px.fbm(0.5, item.seed + 41, octaves=2) * _F(3) - _F(1.2), 0, 1)
        bare = soil(px, item.params["soil"], item.seed + 40, 0.3)
        alb, irr = mix_surfaces(grass(px, item.params, item.seed), bare, gap)
        return Surface(alb, irr, sky=_F(0.92), elev=_F(0.15))


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

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p = item.params
        alb, irr = soil(px, p["soil"], item.seed, p["moisture"], p["clod"])
        if p["tilled"]:
            f, firr = furrows(px, p["angle"], p["spacing"], p["depth"], item.seed + 1)
            alb = alb * f[:, None]
            irr = irr * firr
        return Surface(alb, irr, sky=_F(1))

    def overlay(self, ctx: WindowContext, item: Item) -> None:
        if item.params["weeds"] > 0:
            weeds(ctx, item, item.params["weeds"])
