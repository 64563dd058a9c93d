"""Plastic: mulch film over beds, greenhouse and low-tunnel film, and loose tarps (red ones are confusers)."""

from __future__ import annotations

import math

import numpy as np

from datasets.scene import noise
from datasets.scene.colour import lin
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import (
    Material,
    along_coord,
    draw_plant_item,
    jitter_rgb,
    register,
    row_coord,
    soil,
)
from datasets.scene.plants import Lattice, PlantLook

_F = np.float32
_FILMS = {"white": (214, 214, 208), "clear": (120, 112, 100), "black": (38, 38, 40), "silver": (178, 180, 182)}


def _wrinkles(px: PixelSet, angle: float, seed: int, scale: float) -> np.ndarray:
    """Film wrinkles, stretched along ``angle``: values in about [-1, 1]."""
    s = along_coord(px, angle)
    t = row_coord(px, angle)
    return noise.noise_pts(t / scale, s / (scale * 5.0), 1.0, seed) * _F(0.6) + noise.noise_pts(
        t / (scale * 0.4), s / (scale * 1.5), 1.0, seed + 1
    ) * _F(0.4)


def film(px: PixelSet, kind: str, seed: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and irradiance of mulch film: wrinkles catching the sun, dust, soil thrown on it."""
    if len(px) == 0:
        return np.zeros((0, 3), _F), np.zeros(0, _F)
    base = lin(_FILMS[kind])
    w = _wrinkles(px, angle, seed, 0.12)
    dust = np.clip(px.fbm(0.6, seed + 2, octaves=3) * _F(1.5) - _F(0.2), 0, 1)
    col = base * np.exp(_F(0.06) * px.grain(seed + 3))[:, None]
    col = col + (lin((150, 130, 105)) - col) * (dust * _F(0.35))[:, None]
    if kind == "clear":
        # Condensation under clear film: milky patches over dark moist soil.
        fog = np.clip(px.fbm(0.25, seed + 4, octaves=2) + _F(0.3), 0, 1)
        col = col + (lin((190, 192, 188)) - col) * (fog * _F(0.55))[:, None]
    spec = np.clip(w * _F(2.2) - _F(0.6), 0, 1) * _F(0.9 if kind != "black" else 0.5)
    col = col + (lin((245, 245, 242)) - col) * spec[:, None]
    irr = _F(1) + _F(0.25) * w
    return col.astype(_F), irr.astype(_F)


@register
class PlasticMulch(Material):
    """Beds covered with mulch film, soil-covered edges, seedlings in two rows through holes."""

    name = "plastic_mulch"
    opaque = True
    landcover = LC["plastic"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "film": str(rng.choice(list(_FILMS), p=[0.45, 0.3, 0.15, 0.1])),
            "angle": float(rng.uniform(0, math.pi)),
            "film_w": float(rng.uniform(0.6, 1.2)),
            "gap": float(rng.uniform(0.3, 0.6)),
            "seedlings": float(rng.choice([0.0, rng.uniform(0.5, 0.95)], p=[0.3, 0.7])),
            "seedling_r": float(rng.uniform(0.03, 0.1) * (1 + max(season.phase, 0) * 0.5)),
        }

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        p, s = item.params, item.seed
        alb, irr = soil(px, p["soil"], s, 0.35, clod=0.8)
        per = p["film_w"] + p["gap"]
        t = np.mod(row_coord(px, p["angle"]) + _F(0.03) * px.noise(1.5, s + 1), per)
        on = t < p["film_w"]
        falb, firr = film(px.subset(on), p["film"], s + 2, p["angle"])
        alb[on], irr[on] = falb, firr
        px.set_albedo(alb)
        px.set("irr", irr)
        px.set("sky", _F(1))
        px.set("landcover", self.landcover)
        if p["seedlings"] > 0:
            # Two rows per film strip, a quarter of the film width in from each edge.
            look = PlantLook(
                radius=p["seedling_r"],
                height=p["seedling_r"] * 2,
                lobes=5,
                lobe_depth=0.45,
                colour=(78, 128, 52),
                radius_cv=0.3,
            )
            for k, pos in enumerate((0.25, 0.75)):
                off = p["film_w"] * pos - per / 2
                lat = Lattice(per, 0.3, p["angle"], 0.02, 0.1, p["seedlings"], seed=s + 3 + k, offset_t=off)
                draw_plant_item(ctx, item.geom, lat, look, None)


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

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        p, s = item.params, item.seed
        ang = p["angle"]
        x = (row_coord(px, ang) - p["t_centre"]) / (p["width"] / 2)
        x = np.clip(x, -1, 1).astype(_F)
        # Arch normal: tilted across the tunnel; the film curves down to the ground at both sides.
        slope = x / np.sqrt(np.maximum(_F(1.02) - x * x, _F(0.02))) * _F(0.7)
        nu = -slope * _F(math.sin(ang))
        nv = slope * _F(math.cos(ang))
        lit = ctx.sun.shading(nu, nv, np.ones_like(nu))
        sv = ctx.sun.vector
        # Specular highlight where the film mirrors the sun towards the camera (half vector ~ up + sun).
        hz = np.array([sv[0], sv[1], sv[2] + 1.0], _F)
        hz /= np.linalg.norm(hz)
        nn = np.sqrt(nu * nu + nv * nv + 1)
        spec = np.clip((nu * hz[0] + nv * hz[1] + hz[2]) / nn, 0, 1) ** 60 * _F(0.9)
        a = along_coord(px, ang)
        rib = np.abs(np.mod(a, p["rib"]) - p["rib"] / 2) < 0.025
        col = lin(p["film"]) + (lin(p["inside"]) - lin(p["film"])) * _F(p["see_through"])
        dirt = np.clip(px.fbm(1.2, s, octaves=3) * _F(1.4) + _F(p["dirt"] - 0.5), 0, 1) * _F(0.45)
        col = col + (lin((150, 140, 118)) - col) * dirt[:, None]
        col = col * np.exp(_F(0.04) * px.grain(s + 1) - _F(0.12) * rib)[:, None]
        col = col + (lin((250, 250, 248)) - col) * spec[:, None]
        px.set_albedo(col)
        px.set("irr", lit)
        px.set("sky", _F(1))
        px.set("elev", _F(item.height) * np.sqrt(np.clip(_F(1) - x * x, 0, 1)))
        px.set("landcover", self.landcover)


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

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        p, s = item.params, item.seed
        w = _wrinkles(px, p["angle"], s, 0.25)
        col = lin(p["colour"]) * np.exp(_F(0.05) * px.grain(s + 1) + _F(0.1) * px.fbm(0.8, s + 2, 2))[:, None]
        dust = np.clip(px.fbm(0.7, s + 3, octaves=2) * _F(1.5) - _F(0.3), 0, 1) * _F(0.3)
        col = col + (lin((160, 145, 120)) - col) * dust[:, None]
        spec = np.clip(w * _F(2.0) - _F(0.9), 0, 1) * _F(0.5)
        col = col + (lin((235, 232, 228)) - col) * spec[:, None]
        px.set_albedo(col)
        px.set("irr", _F(1) + _F(0.35) * w)
        px.set("sky", _F(1))
        px.set("elev", _F(item.height))
        px.set("landcover", self.landcover)
