"""Opium poppy at each growth stage, and the flowers that look like it from the air.

Opium poppy (*Papaver somniferum*, see ``docs/poppy-facts.md``): glaucous grey/blue-green, hairless foliage;
rosettes 10-30 cm across before bolting; about 1.25 m tall in flower; one 5-12 cm flower per stem, white,
red, pink or mauve, often with a dark basal spot; capsules 3.5-5 cm across, pale, with a rayed crown;
rows 15-30 cm apart or broadcast, 30-70 plants per m2.

Confusers (:class:`Flowers`): corn poppy (*Papaver rhoeas*: GREEN, finely divided leaves, red 5-6 cm flowers)
and ornamental flower beds of mixed colours on green foliage.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from shapely import affinity
from shapely.geometry import box
from shapely.ops import unary_union

from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import Material, Surface, register
from datasets.scene.materials.common import draw_plant_item, grass, jitter_rgb, row_coord, sample_grass, soil, weeds
from datasets.scene.plants import HeadLook, Lattice, PlantLook

_F = np.float32

# Flower colour mixes seen in illicit plots: (sRGB, weight).
POPPY_PALETTES = {
    "white": (((244, 240, 236), 1.0),),
    "red": (((196, 32, 40), 0.8), ((214, 60, 70), 0.2)),
    "pink": (((232, 146, 168), 0.7), ((244, 196, 208), 0.3)),
    "purple": (((150, 82, 148), 0.6), ((190, 150, 200), 0.4)),
    "mixed": (((244, 240, 236), 0.35), ((196, 32, 40), 0.25), ((232, 146, 168), 0.2), ((150, 82, 148), 0.2)),
    "white_pink": (((244, 240, 236), 0.6), ((232, 146, 168), 0.4)),
    "red_white": (((196, 32, 40), 0.5), ((244, 240, 236), 0.5)),
}
# Glaucous foliage: grey-green to blue-green, in sun.
_GLAUCOUS = ((118, 138, 118), (110, 134, 124), (126, 142, 118), (106, 128, 116), (122, 140, 128))


def poppy_look(p: dict) -> PlantLook:
    """The :class:`PlantLook` of a poppy plot from its sampled parameters."""
    stage = p["stage"]
    tall = float(np.clip((p["height"] - 0.3) / 0.9, 0, 1))
    look = PlantLook(
        radius=p["radius"],
        height=p["height"],
        radius_cv=0.25,
        bump=0.9,
        colour=tuple(p["foliage"]),
        lobes=7,
        lobe_depth=0.36 + 0.08 * tall,
        lobe_sharp=1.2,
        vein=0.25,
        vein_width=0.007,
        sheen=p["sheen"],
        sheen_colour=(188, 200, 194),
        colour_var=0.1,
        warm_var=0.08,
        tilt=0.6,
        leaf_var=0.22,
        canopy_shade=0.15 + 0.5 * tall,
        leaf_len_var=0.45,
    )
    if stage == "vegetative":
        # Rosettes, flatter and more varied in size, with the odd early bud.
        heads = (HeadLook("bud", p["buds"], 0.012, colour=(128, 148, 122), lean=0.3),) if p["buds"] > 0 else ()
        return replace(look, radius_cv=0.3, bump=0.6, heads=heads, head_slots=1 if heads else 0)
    if stage == "flowering":
        heads = (
            HeadLook(
                "flower",
                p["bloom"],
                p["flower_r"],
                0.22,
                palette=POPPY_PALETTES[p["palette"]],
                spot_prob=p["spot"],
                lean=0.55,
            ),
            HeadLook("bud", 0.25 * (1 - p["bloom"]), 0.014, colour=(126, 146, 120), lean=0.6),
            HeadLook("capsule", 0.08, 0.016, colour=(160, 178, 148), lean=0.5),
        )
        return replace(look, heads=heads, head_slots=p["slots"])
    heads = (
        HeadLook(
            "capsule",
            0.85,
            p["capsule_r"],
            0.15,
            colour=tuple(p["capsule_colour"]),
            crown_colour=(128, 100, 92),
            lean=0.55,
        ),
        HeadLook("flower", 0.04, p["flower_r"], 0.2, palette=POPPY_PALETTES[p["palette"]], spot_prob=p["spot"]),
    )
    return replace(look, heads=heads, head_slots=p["slots"], dry=p["dry"], dry_colour=(168, 160, 110))


def sample_poppy(rng: np.random.Generator, stage: str, phase: float) -> dict:
    """Parameters of one poppy plot at ``stage`` (plants, flowers, density, sowing)."""
    broadcast = bool(rng.random() < 0.5)
    density = float(rng.uniform(30, 70))
    row = float(rng.uniform(0.15, 0.3))
    p = {
        "stage": stage,
        "foliage": jitter_rgb(rng, _GLAUCOUS[rng.integers(len(_GLAUCOUS))], 0.06),
        "sheen": float(rng.uniform(0.15, 0.5)),
        "broadcast": broadcast,
        "density": density,
        "row": row,
        "angle": float(rng.uniform(0, math.pi)),
        "keep": float(rng.uniform(0.75, 0.95)),
        "palette": str(rng.choice(list(POPPY_PALETTES), p=[0.3, 0.15, 0.12, 0.08, 0.2, 0.1, 0.05])),
        "spot": float(rng.uniform(0.2, 0.9)),
        "flower_r": float(rng.uniform(0.025, 0.06)),
        "soil_moisture": float(rng.uniform(0.1, 0.6)),
        "weeds": float(rng.choice([0.0, rng.uniform(0.05, 0.3)])),
    }
    if stage == "vegetative":
        p.update(
            radius=float(rng.uniform(0.05, 0.15)),
            height=float(rng.uniform(0.1, 0.55)),
            buds=float(np.clip((phase - 0.5) * 0.3, 0, 0.2)),
        )
    elif stage == "flowering":
        p.update(
            radius=float(rng.uniform(0.1, 0.17)),
            height=float(rng.uniform(0.9, 1.3)),
            bloom=float(rng.uniform(0.1, 0.75)),
            slots=int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])),
        )
    else:
        p.update(
            radius=float(rng.uniform(0.09, 0.15)),
            height=float(rng.uniform(1.0, 1.35)),
            capsule_r=float(rng.uniform(0.0175, 0.025)),
            slots=int(rng.integers(1, 5)),
            dry=float(rng.uniform(0.15, 0.6)),
            capsule_colour=jitter_rgb(rng, (172, 186, 150) if rng.random() < 0.6 else (160, 176, 168), 0.05),
        )
    return p


def _lattice(p: dict, seed: int) -> Lattice:
    if p["broadcast"]:
        return Lattice.broadcast(p["density"] / p["keep"], p["angle"], p["keep"], seed)
    b = 1.0 / (p["density"] / p["keep"] * p["row"])
    off = p["row_offset"] % p["row"] if "row_offset" in p else None
    return Lattice(p["row"], b, p["angle"], 0.08, 0.3, p["keep"], wobble=0.04, seed=seed, offset_t=off)


def _beds_only(geom, p: dict):
    """The plot minus the paths between its beds (plants are sown on the beds)."""
    period, width = p["paths"]
    ang, t0 = p["angle"], p["row_offset"]
    rot = affinity.rotate(geom, -ang, origin=(0, 0), use_radians=True)
    x0, y0, x1, y1 = rot.bounds
    k0 = math.floor((y0 - t0) / period)
    beds = [
        box(x0 - 1, t0 + k * period, x1 + 1, t0 + k * period + width)
        for k in range(k0, k0 + int((y1 - y0) / period) + 2)
    ]
    return affinity.rotate(unary_union(beds), ang, origin=(0, 0), use_radians=True).intersection(geom)


class _Plot(Material):
    """Plants sown over their own ground; with ``ground`` False only the plants (interplanted in a host crop).

    The ground, and the weeds on it, are drawn like any material's surface: only where the plot has pixels in
    the window. The plants are drawn in every window, since plants near the plot's edge reach into windows that
    hold none of its pixels.
    """

    def ground(self, px: PixelSet, item: Item) -> Surface:  # pragma: no cover - abstract
        """The ground between the plants (``px`` is never empty)."""
        raise NotImplementedError(f"material {self.name!r} does not implement ground()")

    def plants(self, ctx: WindowContext, item: Item) -> None:  # pragma: no cover - abstract
        """Draw the plot's plants."""
        raise NotImplementedError(f"material {self.name!r} does not implement plants()")

    def surface(self, px: PixelSet, item: Item) -> Surface:
        return self.ground(px, item) if item.params.get("ground", True) else Surface()

    def draw(self, ctx: WindowContext, item: Item) -> None:
        super().draw(ctx, item)
        self.plants(ctx, item)


@register
class Poppy(_Plot):
    """An opium-poppy plot. ``ground`` False draws only the plants (interplanted among a host crop)."""

    name = "poppy"
    landcover = LC["poppy"]

    def sample(self, rng, season, geom) -> dict:  # the layout calls sample_poppy with the plot's stage
        raise NotImplementedError("poppy parameters come from sample_poppy(rng, stage, phase)")

    def ground(self, px: PixelSet, item: Item) -> Surface:
        p = item.params
        alb, irr = soil(px, p["soil"], item.seed, p["soil_moisture"], clod=0.7)
        # The ground under a dense stand of tall plants sees little sky.
        closed = min(1.0, p["height"] / 1.0) * min(1.0, p["density"] / 50.0)
        sky = np.full(len(px), _F(1.0 - 0.55 * closed))
        if "paths" in p:
            # Sown in vegetable beds: the sunken paths between beds stay bare.
            period, width = p["paths"]
            pos = np.mod(row_coord(px, p["angle"]) - p["row_offset"], period)
            path = pos > width
            alb[path] *= _F(0.8)
            irr[path] *= _F(0.85)
            sky[path] = _F(0.9)
        return Surface(alb, irr, sky=sky, elev=_F(0))

    def overlay(self, ctx: WindowContext, item: Item) -> None:
        if item.params["ground"] and item.params["weeds"] > 0:
            weeds(ctx, item, item.params["weeds"])

    def plants(self, ctx: WindowContext, item: Item) -> None:
        p = item.params
        where = _beds_only(item.geom, p) if "paths" in p else item.geom
        draw_plant_item(ctx, where, _lattice(p, item.seed + 1), poppy_look(p))


# Ornamental flower colours (sRGB, the first of each pair); a bed shows one to three of them.
_ORNAMENTAL = (
    ((232, 120, 160), 1.0),
    ((190, 40, 120), 1.0),
    ((240, 238, 232), 1.0),
    ((122, 62, 160), 0.7),
    ((232, 120, 40), 0.6),
    ((236, 210, 60), 0.6),
    ((214, 40, 40), 0.8),
)
# Confuser plants by kind: the foliage (its colour is sampled per plot) and the flowers, whose ``prob`` is
# replaced by the plot's bloom and an ornamental bed's palette by its sampled colours.
_CONFUSERS = {
    "corn_poppy": PlantLook(
        radius=0.1,
        height=0.55,
        radius_cv=0.35,
        lobes=9,
        lobe_depth=0.45,
        lobe_sharp=1.5,
        bump=0.7,
        heads=(
            HeadLook(
                "flower",
                1.0,
                0.028,
                0.1,
                palette=(((205, 30, 28), 0.7), ((222, 56, 40), 0.3)),
                spot_prob=0.4,
                spot_colour=(30, 20, 20),
                spot_frac=0.25,
                lean=0.7,
            ),
            HeadLook("bud", 0.15, 0.01, colour=(96, 130, 60), lean=0.7),
        ),
        head_slots=3,
    ),
    "ornamental": PlantLook(
        radius=0.12,
        height=0.4,
        radius_cv=0.3,
        lobes=10,
        lobe_depth=0.3,
        bump=0.8,
        heads=(HeadLook("flower", 1.0, 0.022, 0.4, spot_prob=0.1, lean=0.8),),
        head_slots=5,
    ),
    # Randomised scenes only (datasets.scene.randomise): garden poppies (P. orientale, P. nudicaule: hairy GREEN
    # leaves, large cupped flowers) and low flowering weeds (dandelion, shepherd's purse, henbit) on green.
    "ornamental_poppy": PlantLook(
        radius=0.16,
        height=0.6,
        radius_cv=0.3,
        lobes=11,
        lobe_depth=0.5,
        lobe_sharp=1.6,
        bump=0.8,
        heads=(HeadLook("flower", 1.0, 0.05, 0.15, spot_prob=0.5, spot_colour=(30, 20, 20), spot_frac=0.2, lean=0.4),),
        head_slots=2,
    ),
    "flowering_weeds": PlantLook(
        radius=0.06,
        height=0.15,
        radius_cv=0.5,
        lobes=7,
        lobe_depth=0.5,
        bump=0.6,
        heads=(HeadLook("flower", 1.0, 0.018, 0.5, spot_prob=0.0, lean=0.6),),
        head_slots=6,
    ),
}
# Flowering weeds' colours by kind (sRGB).
_WEED_FLOWERS = {
    "flowering_weeds_yellow": (232, 206, 52),
    "flowering_weeds_white": (236, 234, 226),
    "flowering_weeds_purple": (150, 96, 170),
}
# What every confuser's foliage shares: green, matt, hairy leaves (unlike the waxy, glaucous poppy).
_CONFUSER_FOLIAGE = {"vein": 0.05, "colour_var": 0.12, "tilt": 0.5, "canopy_shade": 0.1}


def confuser_look(p: dict) -> PlantLook:
    """The :class:`PlantLook` of a confuser flower plot from its sampled parameters."""
    kind = p["kind"]
    base = _CONFUSERS["flowering_weeds" if kind in _WEED_FLOWERS else kind]
    flower = replace(base.heads[0], prob=p["bloom"])
    if kind in ("ornamental", "ornamental_poppy"):
        flower = replace(flower, palette=tuple((tuple(c), 1.0) for c in p["palette"]))
    elif kind in _WEED_FLOWERS:
        flower = replace(flower, palette=((_WEED_FLOWERS[kind], 1.0),))
    return replace(base, colour=tuple(p["green"]), heads=(flower, *base.heads[1:]), **_CONFUSER_FOLIAGE)


@register
class Flowers(_Plot):
    """Confuser flowers on GREEN foliage: ``corn_poppy`` (red, 5-6 cm) or an ``ornamental`` bed."""

    name = "flowers"
    landcover = LC["confuser_flowers"]

    def sample(self, rng, season, geom) -> dict:
        kind = str(rng.choice(["corn_poppy", "ornamental"], p=[0.55, 0.45]))
        pal = rng.choice(len(_ORNAMENTAL), size=int(rng.integers(1, 4)), replace=False)
        return {
            "kind": kind,
            "soil": jitter_rgb(rng, season.soil_rgb, 0.05),
            "green": jitter_rgb(rng, (78, 122, 48) if kind == "corn_poppy" else (68, 112, 50), 0.08),
            "bloom": float(rng.uniform(0.3, 0.95)),
            "density": float(rng.uniform(25, 70)),
            "ground_kind": str(rng.choice(["soil", "grass"])),
            **{f"grass_{k}": v for k, v in sample_grass(rng, season).items()},
            "palette": [list(_ORNAMENTAL[int(k)][0]) for k in pal],
            "angle": float(rng.uniform(0, math.pi)),
        }

    def ground(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        if p["ground_kind"] == "grass":
            alb, irr = grass(px, {k[6:]: v for k, v in p.items() if k.startswith("grass_")}, s + 5)
        else:
            alb, irr = soil(px, p["soil"], s, 0.35, clod=0.6)
        lc = LC["flowering_weeds"] if p["kind"] in _WEED_FLOWERS else None
        return Surface(alb, irr, sky=_F(0.9), landcover=lc)

    def plants(self, ctx: WindowContext, item: Item) -> None:
        p = item.params
        lat = Lattice.broadcast(p["density"], p["angle"], 0.9, item.seed + 1)
        draw_plant_item(ctx, item.geom, lat, confuser_look(p))
