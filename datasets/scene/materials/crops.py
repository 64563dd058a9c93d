"""Field crops: wheat, young corn, vegetable beds (cabbage, lettuce, leafy greens), garlic and rapeseed.

Sizes follow the crops in April-June in north and east China; the season's ``phase`` (0 early spring,
1 May, 2 June) sets how far they have grown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from datasets.scene import textures
from datasets.scene.colour import lin, tinted
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import Material, Surface, register
from datasets.scene.materials.common import (
    blend,
    draw_plant_item,
    film,
    furrows,
    jitter_rgb,
    mix_surfaces,
    row_coord,
    soil,
)
from datasets.scene.plants import Lattice, PlantLook

_F = np.float32


def _lerp_rgb(a, b, t: float) -> list[float]:
    return [x + (y - x) * t for x, y in zip(a, b, strict=True)]


@register
class Wheat(Material):
    """Winter wheat: rows 15-25 cm apart closing into a canopy, ears from May, yellowing in June."""

    name = "wheat"
    opaque = True
    landcover = LC["wheat"]

    def sample(self, rng, season, geom) -> dict:
        ph = season.phase
        green = (66, 98, 50) if ph < 0.8 else _lerp_rgb((66, 98, 50), (108, 122, 66), min(1.0, ph - 0.8))
        if ph > 1.6:
            green = _lerp_rgb(green, (178, 160, 92), min(1.0, (ph - 1.6) / 0.7))
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "green": jitter_rgb(rng, np.array(green) * np.array([1, season.vigour, 1]) ** 0.5, 0.07),
            "ear": jitter_rgb(rng, (150, 158, 108) if ph < 1.7 else (200, 182, 120), 0.05),
            "angle": float(rng.uniform(0, math.pi)),
            "spacing": float(rng.uniform(0.15, 0.25)),
            "closure": float(np.clip(0.45 + 0.35 * ph + rng.normal(0, 0.1), 0.3, 0.97)),
            "ears": float(np.clip((ph - 0.7) * 0.8, 0, 0.6)),
            "tram": float(rng.uniform(12, 24)),
            "tram_off": float(rng.uniform(0, 24)),
            "height": float(0.3 + 0.35 * max(ph, 0)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        t = row_coord(px, p["angle"])
        salb, sirr = soil(px, p["soil"], s, 0.4, clod=0.5)
        leaves, lirr = textures.sample_relief(px, "leaves", s + 1, p.get("leaf_scale", 1.0), 0.6)
        clump = textures.sample(px, "foliage", s + 2, 0.35) * _F(0.6) + px.fbm(0.5, s + 9, octaves=2) * _F(0.6)
        patch = px.fbm(5.0, s + 3, octaves=2)
        rp = np.cos((t / p["spacing"] + _F(0.08) * px.noise(2.0, s + 4)) * (2 * math.pi)).astype(_F)
        c = p["closure"]
        cover = np.clip(_F(c) + rp * _F(0.9 * (1 - c)) + _F(0.25) * clump + _F(0.2) * leaves, 0, 1)
        # Tramlines: pairs of wheel tracks along the rows, every 12-24 m.
        d = np.mod(t - p["tram_off"], p["tram"])
        track = (np.abs(d - 0.3) < 0.18) | (np.abs(d - 1.8) < 0.18)
        cover = np.where(track, cover * _F(0.25), cover)
        logb = _F(0.22) * leaves + _F(0.12) * clump + _F(0.07) * patch + _F(0.03) * px.grain(s + 5)
        warm = _F(0.08) * patch + _F(0.05) * px.noise(0.4, s + 10)
        col = tinted(lin(p["green"]), logb, warm)
        if p["ears"] > 0:
            e = textures.sample(px, "grass", s + 6, 2.2) * _F(0.6) + px.noise(0.05, s + 7) * _F(0.4)
            ear = np.clip((e - _F(1.0 - 1.2 * p["ears"])) * _F(2.5), 0, 1) * _F(0.75)
            col = blend(col, lin(p["ear"]) * np.exp(logb)[:, None], ear)
        canopy_irr = lirr * np.clip(_F(0.85) + _F(0.3) * clump, 0.4, 1.3)
        # Soil between the rows is half shaded by the crop.
        alb, irr = mix_surfaces((salb, sirr * _F(0.5)), (col, canopy_irr), cover)
        return Surface(alb, irr, sky=_F(0.7) + _F(0.3) * cover, elev=_F(p["height"]) * cover)


@register
class Corn(Material):
    """Young maize in rows 50-70 cm apart: star-shaped seedlings over soil (sometimes on mulch film)."""

    name = "corn"
    opaque = True
    landcover = LC["corn"]

    def sample(self, rng, season, geom) -> dict:
        ph = max(season.phase, 0.0)
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "moisture": float(np.clip(season.soil_moisture + rng.normal(0, 0.15), 0, 1)),
            "angle": float(rng.uniform(0, math.pi)),
            "row": float(rng.uniform(0.5, 0.7)),
            "plant": float(rng.uniform(0.2, 0.35)),
            "radius": float(np.clip(0.05 + 0.11 * ph + rng.normal(0, 0.02), 0.04, 0.45)),
            "colour": jitter_rgb(rng, (72, 128, 42), 0.08),
            "keep": float(rng.uniform(0.8, 0.98)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        alb, irr = soil(px, p["soil"], s, p["moisture"], clod=0.7)
        f, firr = furrows(px, p["angle"], p["row"], 0.05, s + 1)
        return Surface(alb * f[:, None], irr * firr, sky=_F(1))

    def overlay(self, ctx: WindowContext, item: Item) -> None:
        p = item.params
        lat = Lattice(p["row"], p["plant"], p["angle"], 0.06, 0.2, p["keep"], wobble=0.05, seed=item.seed + 2)
        look = PlantLook(
            radius=p["radius"],
            height=p["radius"] * 2.2,
            radius_cv=0.25,
            lobes=6,
            lobe_depth=0.8,
            lobe_sharp=2.5,
            aspect=1.3,
            colour=tuple(p["colour"]),
            vein=0.25,
            vein_width=0.005,
            bump=0.5,
            tilt=0.45,
            leaf_len_var=0.5,
        )
        draw_plant_item(ctx, item.geom, lat, look)


@register
class VegGround(Material):
    """The soil of a vegetable parcel: raised beds with sunken paths between them."""

    name = "veg_ground"
    opaque = True
    landcover = LC["vegetables"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.06),
            "moisture": float(np.clip(season.soil_moisture + 0.15 + rng.normal(0, 0.15), 0, 1)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        alb, irr = soil(px, p["soil"], s, p["moisture"], clod=0.8)
        pos = np.mod(row_coord(px, p["angle"]) - p["off"], p["period"])
        path = (pos > p["bed"]).astype(_F)
        edge = np.clip(_F(1) - np.minimum(pos, np.abs(pos - p["bed"])) * _F(1 / 0.06), 0, 1)
        alb = alb * (_F(1) - _F(0.25) * path - _F(0.1) * edge)[:, None]
        return Surface(alb, irr * (_F(1) - _F(0.2) * path), sky=_F(1) - _F(0.15) * path)


@dataclass(frozen=True)
class BedCrop:
    """A vegetable grown in beds: its look, what of it is drawn afresh for each bed, and how it is planted.

    Attributes:
        look: :class:`PlantLook` fields shared by every bed of the crop (sizes in metres).
        radius: Range of the plant radius (m), drawn per bed.
        colour: sRGB of the leaves in sun, varied per bed by ``jitter`` (see ``jitter_rgb``).
        jitter: Relative colour variation between beds.
        rows: Range of the number of rows per bed.
        spacing: Range of the plant spacing along a row (m), drawn per bed.
        landcover: Land-cover class of its beds.
        centre: sRGB of the paler heart leaves (varied by 0.05 per bed), or None.
        centre_frac: Range of the heart's share of the radius, drawn per bed; None keeps ``look``'s.
        variety: sRGB of a second variety grown on a share ``variety_prob`` of the beds (red lettuce), or None.
        variety_prob: That share.
    """

    look: dict
    radius: tuple[float, float]
    colour: tuple[int, int, int]
    jitter: float
    rows: tuple[int, int]
    spacing: tuple[float, float]
    landcover: int = LC["vegetables"]
    centre: tuple[int, int, int] | None = None
    centre_frac: tuple[float, float] | None = None
    variety: tuple[int, int, int] | None = None
    variety_prob: float = 0.0

    def draw_look(self, rng: np.random.Generator) -> PlantLook:
        """The look of the plants of one bed (draws variety, radius, colours and heart size in that order)."""
        colour = self.colour
        if self.variety is not None and rng.random() < self.variety_prob:
            colour = self.variety
        drawn = {"radius": float(rng.uniform(*self.radius)), "colour": tuple(jitter_rgb(rng, colour, self.jitter))}
        if self.centre is not None:
            drawn["centre_colour"] = tuple(jitter_rgb(rng, self.centre, 0.05))
        if self.centre_frac is not None:
            drawn["centre_frac"] = float(rng.uniform(*self.centre_frac))
        return PlantLook(**drawn, **self.look)


# Bed vegetables (sizes in metres, colours sRGB in sun).
BED_CROPS = {
    "cabbage": BedCrop(
        look=dict(
            height=0.3,
            radius_cv=0.15,
            lobes=9,
            lobe_depth=0.14,
            vein=0.3,
            vein_width=0.008,
            sheen=0.3,
            sheen_colour=(190, 205, 200),
            bump=1.1,
            tilt=0.35,
            fold=0.25,
            leaf_var=0.15,
            leaf_len_var=0.2,
            colour_var=0.06,
            warm_var=0.05,
        ),
        radius=(0.15, 0.26),
        colour=(112, 146, 134),
        jitter=0.06,
        rows=(1, 3),
        spacing=(0.4, 0.55),
        centre=(172, 192, 150),
        centre_frac=(0.25, 0.45),
    ),
    "lettuce": BedCrop(
        look=dict(
            height=0.2,
            radius_cv=0.15,
            lobes=13,
            lobe_depth=0.12,
            centre_frac=0.25,
            vein=0.12,
            bump=1.2,
            tilt=0.5,
            fold=0.35,
            leaf_var=0.18,
            colour_var=0.07,
        ),
        radius=(0.09, 0.15),
        colour=(138, 166, 82),
        jitter=0.07,
        rows=(2, 5),
        spacing=(0.25, 0.32),
        centre=(160, 178, 98),
        variety=(118, 62, 70),
        variety_prob=0.25,
    ),
    "greens": BedCrop(
        look=dict(height=0.2, radius_cv=0.3, lobes=8, lobe_depth=0.5, vein=0.1, bump=0.9, tilt=0.5, colour_var=0.12),
        radius=(0.05, 0.09),
        colour=(82, 118, 60),
        jitter=0.1,
        rows=(4, 9),
        spacing=(0.1, 0.16),
    ),
    "garlic": BedCrop(
        look=dict(
            height=0.45,
            radius_cv=0.25,
            lobes=5,
            lobe_depth=0.88,
            lobe_sharp=3.0,
            vein=0.1,
            sheen=0.12,
            bump=0.4,
            tilt=0.5,
            leaf_len_var=0.5,
            colour_var=0.1,
            dry=0.15,
            dry_colour=(170, 160, 110),
        ),
        radius=(0.08, 0.15),
        colour=(98, 130, 98),
        jitter=0.07,
        rows=(4, 8),
        spacing=(0.09, 0.13),
        landcover=LC["garlic"],
    ),
}


@register
class Bed(Material):
    """One bed of a vegetable parcel: rows of cabbage, lettuce, leafy greens or garlic (see :data:`BED_CROPS`).

    The layout sets ``crop``, ``angle``, ``t0`` (bed start across the rows, metres) and ``width``; this samples
    the rest.
    """

    name = "bed"
    landcover = LC["vegetables"]

    def sample(self, rng, season, geom) -> dict:
        return {"seed_look": int(rng.integers(2**31)), "keep": float(rng.uniform(0.75, 0.98))}

    def look(self, item: Item) -> tuple[PlantLook, int, float]:
        """The bed's plant look, number of rows and plant spacing along the rows (m)."""
        rng = np.random.default_rng(item.params["seed_look"])
        crop = BED_CROPS[item.params["crop"]]
        look = crop.draw_look(rng)
        if "colour" in item.params:  # a randomised scene's variety (datasets.scene.randomise)
            look = replace(look, colour=tuple(item.params["colour"]))
        rows = int(np.clip(round(item.params["width"] / (look.radius * 2.4)), *crop.rows))
        return look, rows, float(rng.uniform(*crop.spacing))

    def draw(self, ctx: WindowContext, item: Item) -> None:
        # Plants near the edge reach into windows that hold none of the bed's pixels: no early return.
        p = item.params
        look, rows, along = self.look(item)
        a = p["width"] / rows
        lat = Lattice(a, along, p["angle"], 0.06, 0.12, p["keep"], seed=item.seed, offset_t=p["t0"] % a)
        ctx.pixels(item.geom).set("landcover", BED_CROPS[p["crop"]].landcover)
        draw_plant_item(ctx, item.geom, lat, look)


@register
class Garlic(Material):
    """A garlic field: dense rows of narrow-leaved plants, often through white or clear mulch film."""

    name = "garlic"
    opaque = True
    landcover = LC["garlic"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "film": str(rng.choice(["none", "white", "clear"], p=[0.5, 0.3, 0.2])),
            "angle": float(rng.uniform(0, math.pi)),
            "row": float(rng.uniform(0.15, 0.22)),
            "seed_look": int(rng.integers(2**31)),
            "film_w": float(rng.uniform(0.8, 1.3)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        alb, irr = soil(px, p["soil"], s, 0.45, clod=0.6)
        if p["film"] != "none":
            # Film strips with 35 cm of bare soil between them.
            on = np.mod(row_coord(px, p["angle"]), p["film_w"] + 0.35) < p["film_w"]
            alb[on], irr[on] = film(px.subset(on), p["film"], s + 3, p["angle"])
        return Surface(alb, irr, sky=_F(1))

    def overlay(self, ctx: WindowContext, item: Item) -> None:
        p = item.params
        look = BED_CROPS["garlic"].draw_look(np.random.default_rng(p["seed_look"]))
        lat = Lattice(p["row"], 0.11, p["angle"], 0.05, 0.2, 0.93, seed=item.seed + 4)
        draw_plant_item(ctx, item.geom, lat, look)


@register
class Rapeseed(Material):
    """Rapeseed (canola) in flower: a dense, bright yellow canopy (a hard negative for colour alone)."""

    name = "rapeseed"
    opaque = True
    landcover = LC["rapeseed"]

    def sample(self, rng, season, geom) -> dict:
        bloom = float(np.clip(1.4 - 0.5 * max(season.phase, 0) + rng.normal(0, 0.15), 0.1, 1.0))
        return {
            "yellow": jitter_rgb(rng, (218, 196, 62), 0.05),
            "green": jitter_rgb(rng, (96, 122, 56), 0.08),
            "bloom": bloom,
            "angle": float(rng.uniform(0, math.pi)),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        clump, irr = textures.sample_relief(px, "foliage", s, 0.3, 1.0)
        fine = textures.sample(px, "grass", s + 1, 1.6)
        patch = px.fbm(4.0, s + 2, octaves=2)
        y = np.clip(_F(p["bloom"]) + _F(0.3) * clump + _F(0.2) * fine + _F(0.15) * patch - _F(0.1), 0, 1)
        logb = _F(0.1) * fine + _F(0.1) * clump + _F(0.03) * px.grain(s + 3) + _F(0.05) * patch
        col = blend(lin(p["green"]), lin(p["yellow"]), y) * np.exp(logb)[:, None]
        gap = np.clip(-clump * _F(1.2) - _F(0.9), 0, 1)
        alb = col * (_F(1) - _F(0.4) * gap)[:, None]
        return Surface(alb, irr * (_F(1) - _F(0.5) * gap), sky=_F(0.85), elev=_F(1.1))
