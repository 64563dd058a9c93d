"""Plastic: mulch film over beds, greenhouse and low-tunnel film, and loose tarps (red ones are confusers)."""

from __future__ import annotations

import math

import numpy as np

from datasets.scene.colour import lin
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import Material, Surface, register
from datasets.scene.materials.common import (
    FILMS,
    along_coord,
    blend,
    draw_plant_item,
    film,
    jitter_rgb,
    row_coord,
    soil,
    wrinkles,
)
from datasets.scene.plants import Lattice, PlantLook

_F = np.float32


@register
class PlasticMulch(Material):
    """Beds covered with mulch film, soil-covered edges, seedlings in two rows through holes."""

    name = "plastic_mulch"
    opaque = True
    landcover = LC["plastic"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "film": str(rng.choice(list(FILMS), p=[0.45, 0.3, 0.15, 0.1])),
            "angle": float(rng.uniform(0, math.pi)),
            "film_w": float(rng.uniform(0.6, 1.2)),
            "gap": float(rng.uniform(0.3, 0.6)),
            "seedlings": float(rng.choice([0.0, rng.uniform(0.5, 0.95)], p=[0.3, 0.7])),
            "seedling_r": float(rng.uniform(0.03, 0.1) * (1 + max(season.phase, 0) * 0.5)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        alb, irr = soil(px, p["soil"], s, 0.35, clod=0.8)
        t = np.mod(row_coord(px, p["angle"]) + _F(0.03) * px.noise(1.5, s + 1), p["film_w"] + p["gap"])
        on = t < p["film_w"]
        alb[on], irr[on] = film(px.subset(on), p["film"], s + 2, p["angle"])
        return Surface(alb, irr, sky=_F(1))

    def overlay(self, ctx: WindowContext, item: Item) -> None:
        p = item.params
        if p["seedlings"] <= 0:
            return
        r = p["seedling_r"]
        look = PlantLook(radius=r, height=r * 2, lobes=5, lobe_depth=0.45, colour=(78, 128, 52), radius_cv=0.3)
        per = p["film_w"] + p["gap"]
        # Two rows per film strip, a quarter of the film width in from each edge.
        for k, pos in enumerate((0.25, 0.75)):
            off = p["film_w"] * pos - per / 2
            lat = Lattice(per, 0.3, p["angle"], 0.02, 0.1, p["seedlings"], seed=item.seed + 3 + k, offset_t=off)
            draw_plant_item(ctx, item.geom, lat, look)


@register
class Greenhouse(Material):
    """One arched greenhouse or low tunnel of translucent film, with ribs, a ridge highlight and dirt."""

    name = "greenhouse"
    landcover = LC["plastic"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "film": jitter_rgb(rng, (208, 212, 206), 0.05),
            "inside": jitter_rgb(rng, (96, 128, 86), 0.1),
            "see_through": float(rng.uniform(0.1, 0.45)),
            "rib": float(rng.uniform(0.8, 1.6)),
            "dirt": float(rng.uniform(0.1, 0.6)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        ang = p["angle"]
        x = (row_coord(px, ang) - p["t_centre"]) / (p["width"] / 2)
        x = np.clip(x, -1, 1).astype(_F)
        # Arch normal: tilted across the tunnel; the film curves down to the ground at both sides.
        slope = x / np.sqrt(np.maximum(_F(1.02) - x * x, _F(0.02))) * _F(0.7)
        nu = -slope * _F(math.sin(ang))
        nv = slope * _F(math.cos(ang))
        lit = px.ctx.sun.shading(nu, nv, np.ones_like(nu))
        sv = px.ctx.sun.vector
        # Specular highlight where the film mirrors the sun towards the camera (half vector ~ up + sun).
        hz = np.array([sv[0], sv[1], sv[2] + 1.0], _F)
        hz /= np.linalg.norm(hz)
        nn = np.sqrt(nu * nu + nv * nv + 1)
        spec = np.clip((nu * hz[0] + nv * hz[1] + hz[2]) / nn, 0, 1) ** 60 * _F(0.9)
        a = along_coord(px, ang)
        rib = np.abs(np.mod(a, p["rib"]) - p["rib"] / 2) < 0.025
        col = lin(p["film"]) + (lin(p["inside"]) - lin(p["film"])) * _F(p["see_through"])
        dirt = np.clip(px.fbm(1.2, s, octaves=3) * _F(1.4) + _F(p["dirt"] - 0.5), 0, 1) * _F(0.45)
        col = blend(col, lin((150, 140, 118)), dirt)
        col = col * np.exp(_F(0.04) * px.grain(s + 1) - _F(0.12) * rib)[:, None]
        col = blend(col, lin((250, 250, 248)), spec)
        return Surface(col, lit, sky=_F(1), elev=_F(item.height) * np.sqrt(np.clip(_F(1) - x * x, 0, 1)))


_TARPS = {
    "red": (186, 36, 32),
    "blue": (40, 84, 160),
    "green": (50, 110, 60),
    "white": (220, 220, 215),
    "orange": (215, 110, 30),
    "black": (40, 40, 42),
}


@register
class Tarp(Material):
    """A loose plastic sheet or tarpaulin (on the ground, a pile, a roof); red ones are hard negatives."""

    name = "tarp"
    landcover = LC["plastic"]

    def sample(self, rng, season, geom) -> dict:
        c = str(rng.choice(list(_TARPS), p=[0.35, 0.3, 0.1, 0.1, 0.05, 0.1]))
        return {"colour_name": c, "colour": jitter_rgb(rng, _TARPS[c], 0.06), "angle": float(rng.uniform(0, math.pi))}

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        w = wrinkles(px, p["angle"], s, 0.25)
        col = lin(p["colour"]) * np.exp(_F(0.05) * px.grain(s + 1) + _F(0.1) * px.fbm(0.8, s + 2, 2))[:, None]
        dust = np.clip(px.fbm(0.7, s + 3, octaves=2) * _F(1.5) - _F(0.3), 0, 1) * _F(0.3)
        col = blend(col, lin((160, 145, 120)), dust)
        spec = np.clip(w * _F(2.0) - _F(0.9), 0, 1) * _F(0.5)
        col = blend(col, lin((235, 232, 228)), spec)
        return Surface(col, _F(1) + _F(0.35) * w, sky=_F(1), elev=_F(item.height))
