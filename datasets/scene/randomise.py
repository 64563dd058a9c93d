"""Domain randomisation: scene options, the appearance space split in two halves, and the re-drawing of looks.

A model trained on one renderer learns that renderer's materials rather than poppy. This module widens what
the renderer draws, in two levels, and splits what it can draw into two disjoint halves so that test scenes
can be rendered from materials, palettes and camera responses no training scene used:

* level 0: today's renderer, untouched (byte-identical output for a seed);
* level 1: every non-poppy surface re-drawn from a wider set of real materials (roof kinds, solar panels,
  tarps, films, soils, crop varieties, look-alike flowers), stronger camera variation (white balance, JPEG,
  sharpening halos, motion blur, vignetting, seams and ghosting, response curves);
* level 2: as level 1, but non-poppy colours drawn anywhere inside their colour family (any roof or tarp colour
  within physical albedo bounds) and procedural textures (stains, stripes, speckle) laid over the surfaces.

Poppy itself varies only within botanical bounds (``../shared/docs/poppy-facts.md``): glaucous foliage as at
level 0, flower colour mixes of white, red, pink and mauve taken from the half in use.

Everything here is drawn from its own generator (``np.random.default_rng([seed, RANDOMISE_SALT])``), after the
layout, so a randomised scene has exactly the geometry and labels of the level-0 scene with the same seed; only
its looks and its camera change. The one exception is soil, which is re-drawn before the layout because every
material samples its own soil from the season's.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from datasets.scene.items import Item
from datasets.scene.layout import PLOT_AREA_M2, Confuser, Layout
from datasets.scene.season import Season

__all__ = [
    "APPEARANCE_CHOICES",
    "FACTORS",
    "FAMILIES",
    "RANDOMISE_SALT",
    "Look",
    "SceneOptions",
    "factor_values",
    "family_of",
    "randomise_items",
    "randomise_layout",
    "randomise_season",
    "sample_look",
]

APPEARANCE_CHOICES = ("all", "train", "holdout")
RANDOMISE_SALT = 0x52414E44  # "RAND": keeps the randomisation's draws apart from the layout's
MAX_PLOT_AREA = 5000.0


@dataclass(frozen=True)
class SceneOptions:
    """How a scene is drawn beyond its seed.

    Attributes:
        randomise: 0 = today's renderer (byte-identical for a seed), 1 = wider real materials and camera,
            2 = any colour within each surface's family plus procedural textures (see module docstring).
        appearance: ``all`` (the whole appearance space), ``train`` or ``holdout`` (one of two disjoint halves of
            :data:`FACTORS`); ``train``/``holdout`` need ``randomise`` >= 1.
        plot_area: (min, max) poppy plot area in m2; a max above 200 m2 also makes whole-field plots.
    """

    randomise: int = 0
    appearance: str = "all"
    plot_area: tuple[float, float] = PLOT_AREA_M2

    def __post_init__(self) -> None:
        if self.randomise not in (0, 1, 2):
            raise ValueError(f"--randomise {self.randomise!r} must be 0, 1 or 2")
        if self.appearance not in APPEARANCE_CHOICES:
            raise ValueError(f"--appearance {self.appearance!r} is not one of {', '.join(APPEARANCE_CHOICES)}")
        if self.appearance != "all" and self.randomise == 0:
            raise ValueError(
                f"--appearance {self.appearance} needs --randomise 1 or 2 (level 0 is today's renderer, which draws "
                "from the whole appearance space)"
            )
        try:
            lo, hi = (float(a) for a in self.plot_area)
        except (TypeError, ValueError):
            raise ValueError(f"--plot-area {self.plot_area!r} must be MIN,MAX in m2, e.g. 1.5,2000") from None
        if not (1.0 <= lo < hi <= MAX_PLOT_AREA):
            raise ValueError(f"--plot-area {lo:g},{hi:g} must satisfy 1 <= MIN < MAX <= {MAX_PLOT_AREA:g} m2")
        object.__setattr__(self, "plot_area", (lo, hi))

    @property
    def is_default(self) -> bool:
        """True for today's renderer (nothing is changed and nothing extra is recorded)."""
        return self == SceneOptions()

    def to_dict(self) -> dict:
        return {"randomise": self.randomise, "appearance": self.appearance, "plot_area_m2": list(self.plot_area)}


# --- the appearance space ------------------------------------------------------------------------------------
#
# Each factor lists its named values as (train half, holdout half). Level 1 draws named values; level 2 also
# draws colours inside the HSV boxes of FAMILIES. A test fails if any value sits in both halves.

FACTORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "roof": (
        ("red_tile", "grey_tile", "blue_steel", "flat_concrete", "solar_panel", "white_steel"),
        ("brown_tile", "dark_slate", "green_steel", "glazed_blue_tile", "solar_thin_film", "flat_tar"),
    ),
    "tarp": (("red", "blue", "white", "black"), ("orange", "green", "yellow", "silver_grey")),
    "greenhouse_film": (("clear_new", "milky"), ("blue_tint", "yellow_aged", "green_tint")),
    "mulch_film": (("white", "black"), ("clear", "silver", "green_film", "brown_film")),
    "soil": (
        ("loess", "dark_brown", "reddish_brown", "black_earth"),
        ("grey_brown", "pale_alluvium", "red_laterite", "pale_sand"),
    ),
    "wheat_variety": (("deep_green", "yellow_green"), ("blue_green_wheat", "pale_green")),
    "cabbage_variety": (("green_cabbage", "savoy"), ("purple_cabbage", "pale_chinese")),
    "lettuce_variety": (("green_leaf", "red_leaf"), ("butterhead", "romaine_dark", "oak_red")),
    "look_alike_flowers": (
        ("corn_poppy", "ornamental", "flowering_weeds_yellow"),
        ("ornamental_poppy", "flowering_weeds_white", "flowering_weeds_purple"),
    ),
    "ornamental_colour": (("pink", "white", "yellow", "red"), ("magenta", "purple", "orange")),
    "flower_mix": (("white", "red", "mixed", "red_white"), ("pink", "purple", "white_pink")),
    "camera_response": (("standard", "filmic", "punchy"), ("flat", "faded", "hard_toe")),
    "paint_family": (
        ("red", "yellow", "cyan", "violet", "grey_dark", "grey_light"),
        ("orange", "green", "blue", "magenta", "grey_mid", "white"),
    ),
    "soil_family": (("soil_dark", "soil_light"), ("soil_mid", "soil_pale")),
    "green_family": (("green_yellowish", "green_bluish"), ("green_pure", "green_olive")),
}

# sRGB swatches of the named level-1 values (dry, in sun).
_ROOF = {  # kind -> (drawing style, sRGB)
    "red_tile": ("tile", (162, 78, 58)),
    "grey_tile": ("tile", (98, 98, 102)),
    "blue_steel": ("steel", (78, 112, 148)),
    "flat_concrete": ("flat", (160, 157, 150)),
    "brown_tile": ("tile", (120, 88, 70)),
    "solar_panel": ("solar", (34, 42, 70)),
    "white_steel": ("steel", (214, 216, 214)),
    "dark_slate": ("tile", (62, 64, 70)),
    "green_steel": ("steel", (70, 118, 92)),
    "glazed_blue_tile": ("tile", (52, 82, 140)),
    "solar_thin_film": ("solar", (40, 36, 40)),
    "flat_tar": ("flat", (58, 58, 60)),
}
_TARP = {
    "red": (186, 36, 32),
    "blue": (40, 84, 160),
    "white": (220, 220, 215),
    "black": (40, 40, 42),
    "orange": (215, 110, 30),
    "green": (50, 110, 60),
    "yellow": (220, 190, 50),
    "silver_grey": (168, 170, 172),
}
_GREENHOUSE = {  # (film, what shows through)
    "clear_new": ((212, 214, 210), (96, 128, 86)),
    "milky": ((226, 226, 220), (150, 160, 140)),
    "blue_tint": ((176, 196, 214), (90, 120, 100)),
    "yellow_aged": ((206, 196, 158), (110, 118, 80)),
    "green_tint": ((178, 206, 180), (80, 116, 78)),
}
_SOIL = {
    "loess": (172, 152, 122),
    "dark_brown": (112, 98, 82),
    "reddish_brown": (150, 116, 94),
    "black_earth": (74, 66, 60),
    "grey_brown": (146, 130, 108),
    "pale_alluvium": (160, 156, 144),
    "red_laterite": (168, 98, 72),
    "pale_sand": (196, 184, 158),
}
_WHEAT = {
    "deep_green": (64, 104, 44),
    "yellow_green": (112, 140, 56),
    "blue_green_wheat": (74, 112, 86),
    "pale_green": (124, 150, 92),
}
_CABBAGE = {
    "green_cabbage": (112, 146, 134),
    "savoy": (92, 128, 70),
    "purple_cabbage": (104, 78, 118),
    "pale_chinese": (168, 186, 128),
}
_LETTUCE = {
    "green_leaf": (138, 166, 82),
    "red_leaf": (118, 62, 70),
    "butterhead": (164, 186, 98),
    "romaine_dark": (70, 116, 56),
    "oak_red": (136, 82, 64),
}
_ORNAMENTAL = {
    "pink": (232, 120, 160),
    "white": (240, 238, 232),
    "yellow": (236, 210, 60),
    "red": (214, 40, 40),
    "magenta": (190, 40, 120),
    "purple": (122, 62, 160),
    "orange": (232, 120, 40),
}
# HSV boxes (hue degrees [lo, hi), saturation [lo, hi], value [lo, hi]) of the level-2 colour families. Values
# stay within 0.08-0.94 (sRGB ~20-240): no real paint, plastic or soil is blacker or whiter seen from the air.
# Boxes of the two halves of a factor never touch (a gap of 0.01 in value between grey and soil lightness bins).
FAMILIES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((345.0, 375.0), (0.45, 0.9), (0.35, 0.85)),
    "orange": ((15.0, 40.0), (0.45, 0.9), (0.4, 0.9)),
    "yellow": ((40.0, 70.0), (0.4, 0.85), (0.45, 0.92)),
    "green": ((70.0, 160.0), (0.3, 0.8), (0.25, 0.75)),
    "cyan": ((160.0, 200.0), (0.3, 0.8), (0.3, 0.8)),
    "blue": ((200.0, 250.0), (0.35, 0.85), (0.25, 0.8)),
    "violet": ((250.0, 290.0), (0.3, 0.75), (0.25, 0.75)),
    "magenta": ((290.0, 345.0), (0.35, 0.8), (0.3, 0.85)),
    "grey_dark": ((0.0, 360.0), (0.0, 0.12), (0.08, 0.3)),
    "grey_mid": ((0.0, 360.0), (0.0, 0.12), (0.31, 0.54)),
    "grey_light": ((0.0, 360.0), (0.0, 0.12), (0.55, 0.78)),
    "white": ((0.0, 360.0), (0.0, 0.08), (0.79, 0.94)),
    # Soils: yellow-brown hues only, split by lightness.
    "soil_dark": ((8.0, 45.0), (0.12, 0.45), (0.25, 0.4)),
    "soil_mid": ((8.0, 45.0), (0.12, 0.45), (0.41, 0.54)),
    "soil_light": ((8.0, 45.0), (0.12, 0.45), (0.55, 0.68)),
    "soil_pale": ((8.0, 45.0), (0.08, 0.35), (0.69, 0.8)),
    # Leaves: green hues only, split by hue.
    "green_olive": ((55.0, 75.0), (0.35, 0.7), (0.3, 0.65)),
    "green_yellowish": ((75.0, 95.0), (0.35, 0.7), (0.3, 0.65)),
    "green_pure": ((95.0, 125.0), (0.3, 0.65), (0.3, 0.6)),
    "green_bluish": ((125.0, 165.0), (0.2, 0.55), (0.3, 0.6)),
}
# Camera response curves: (knee where highlights start to roll off, toe lift, gamma, S-curve strength).
RESPONSES = {
    "standard": (0.8, 0.0, 2.2, 1.0),
    "filmic": (0.6, 0.01, 2.2, 1.08),
    "punchy": (0.85, 0.0, 2.0, 1.22),
    "flat": (0.7, 0.02, 2.4, 0.85),
    "faded": (0.65, 0.05, 2.2, 0.95),
    "hard_toe": (0.9, -0.01, 1.9, 1.12),
}


def factor_values(factor: str, appearance: str) -> tuple[str, ...]:
    """The named values of ``factor`` that scenes of ``appearance`` (all|train|holdout) may draw."""
    train, holdout = FACTORS[factor]
    return {"all": train + holdout, "train": train, "holdout": holdout}[appearance]


def _hsv_of(rgb) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*(float(c) / 255.0 for c in rgb))
    return h * 360.0, s, v


def family_of(rgb, factor: str) -> str | None:
    """The family of ``factor`` (a ``*_family`` factor) whose HSV box holds the sRGB colour, or None."""
    h, s, v = _hsv_of(rgb)
    for name in factor_values(factor, "all"):
        (h0, h1), (s0, s1), (v0, v1) = FAMILIES[name]
        hh = h + 360.0 if h < h0 else h
        if h0 <= hh < h1 and s0 <= s <= s1 and v0 <= v <= v1:
            return name
    return None


# --- drawing -------------------------------------------------------------------------------------------------


class _Draw:
    """Draws named values and colours from the half in use, at the scene's level."""

    def __init__(self, rng: np.random.Generator, options: SceneOptions) -> None:
        self.rng = rng
        self.level = options.randomise
        self.appearance = options.appearance

    def name(self, factor: str) -> str:
        vals = factor_values(factor, self.appearance)
        return str(vals[int(self.rng.integers(len(vals)))])

    def family_colour(self, factor: str) -> tuple[int, int, int]:
        """A colour drawn uniformly inside one family of ``factor`` in the half in use."""
        name = self.name(factor)
        (h0, h1), (s0, s1), (v0, v1) = FAMILIES[name]
        for _ in range(50):
            h = float(self.rng.uniform(h0, h1)) % 360.0
            s = float(self.rng.uniform(s0, s1))
            v = float(self.rng.uniform(v0, v1))
            rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h / 360.0, s, v))
            # Rounding to 8 bits can step over a box's edge: draw again so the colour is truly of its family.
            if family_of(rgb, factor) == name:
                return rgb
        raise RuntimeError(f"colour family {name!r} is too thin to draw 8-bit colours from")  # pragma: no cover

    def colour(self, swatch, jitter: float = 0.06, family: str = "paint_family") -> list[int]:
        """Level 1: the swatch jittered; level 2: half the time any colour of ``family`` instead."""
        if self.level >= 2 and self.rng.random() < 0.5:
            return list(self.family_colour(family))
        # Mostly lighter or darker, a little hue: a grey road must not turn teal at level 1.
        c = np.asarray(swatch, float) * np.exp(self.rng.normal(0, jitter) + self.rng.normal(0, jitter / 4, 3))
        return [int(x) for x in np.clip(np.round(c), 20, 240)]

    def texture(self) -> dict | None:
        """Level 2: a procedural texture laid over a surface's albedo (log-brightness and tint), or None."""
        if self.level < 2 or self.rng.random() < 0.4:
            return None
        return {
            "kind": str(self.rng.choice(["stains", "stripes", "speckle", "patches"])),
            "scale": float(math.exp(self.rng.uniform(math.log(0.05), math.log(3.0)))),
            "amp": float(self.rng.uniform(0.08, 0.4)),
            "angle": float(self.rng.uniform(0, math.pi)),
            "tint": [float(t) for t in self.rng.normal(0, 0.08, 3)],
        }


def randomise_season(season: Season, seed: int, options: SceneOptions) -> Season:
    """The season with a soil colour from the half in use (before the layout: every material samples its soil
    from the season's) and, at level >= 1, stronger camera variation; unchanged at level 0."""
    if options.randomise == 0:
        return season
    rng = np.random.default_rng([int(seed), RANDOMISE_SALT, 1])
    d = _Draw(rng, options)
    soil = _SOIL[d.name("soil")]
    soil = d.colour(soil, 0.05, "soil_family") if options.randomise >= 2 else d.colour(soil, 0.05)
    strong = options.randomise >= 2
    return replace(
        season,
        soil_rgb=tuple(int(c) for c in soil),
        wb_temp=float(rng.normal(0, 0.9 if strong else 0.65)),
        wb_tint=float(rng.normal(0, 0.45 if strong else 0.35)),
        exposure_ev=float(rng.normal(0, 0.35 if strong else 0.28)),
        saturation=float(rng.uniform(0.7, 1.3) if strong else rng.uniform(0.8, 1.2)),
        blur_px=float(rng.uniform(0.3, 1.8 if strong else 1.5)),
        sharpen=float(rng.choice([0.0, rng.uniform(0.3, 1.6 if strong else 1.2)], p=[0.3, 0.7])),
        noise=float(rng.uniform(0.004, 0.03 if strong else 0.024)),
        jpeg_quality=int(rng.integers(50 if strong else 60, 96)),
        seam_gain=float(rng.uniform(0.0, 0.14 if strong else 0.1)),
    )


@dataclass(frozen=True)
class Look:
    """Camera effects beyond :class:`Season`, drawn per scene at level >= 1 (see :func:`sample_look`).

    Attributes:
        level: The randomisation level.
        appearance: The half in use.
        response: Camera response curve (a key of :data:`RESPONSES`).
        vignette: Darkening at a source photo's corners (log brightness at its cell's edge).
        halo_px: Radius of the sharpening halo (the unsharp mask's blur sigma, px).
        halo: Strength of the halo (0 = none).
        motion_px: Length of motion blur (px, 0 = none); ``motion_angle``: its direction (radians).
        ghost: Opacity of ghosting (a shifted copy) near the orthomosaic's seamlines (0 = none).
        ghost_shift: Its offset in pixels (rows, columns).
    """

    level: int
    appearance: str
    response: str
    vignette: float
    halo_px: float
    halo: float
    motion_px: int
    motion_angle: float
    ghost: float
    ghost_shift: tuple[int, int]

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sample_look(seed: int, options: SceneOptions) -> Look | None:
    """The scene's extra camera effects (None at level 0)."""
    if options.randomise == 0:
        return None
    rng = np.random.default_rng([int(seed), RANDOMISE_SALT, 2])
    d = _Draw(rng, options)
    strong = options.randomise >= 2
    ghost = float(rng.choice([0.0, rng.uniform(0.2, 0.5)], p=[0.5, 0.5]))
    return Look(
        level=options.randomise,
        appearance=options.appearance,
        response=d.name("camera_response"),
        vignette=float(rng.uniform(0.0, 0.35 if strong else 0.2)),
        halo_px=float(rng.uniform(1.0, 2.5)),
        halo=float(rng.choice([0.0, rng.uniform(0.3, 1.5 if strong else 1.0)], p=[0.5, 0.5])),
        motion_px=int(rng.choice([0, int(rng.integers(2, 7 if strong else 5))], p=[0.6, 0.4])),
        motion_angle=float(rng.uniform(0, math.pi)),
        ghost=ghost,
        ghost_shift=(int(rng.integers(-5, 6)), int(rng.integers(-5, 6))),
    )


def _recolour(item: Item, d: _Draw) -> None:
    """Re-draw the look of one non-poppy item in place (only colour and material parameters, never geometry)."""
    p, m = item.params, item.material
    if m == "roof":
        kind = d.name("roof")
        style, sw = _ROOF[kind]
        p.update(kind=kind, style=style, colour=d.colour(sw, 0.06))
        if style == "solar":
            p.update(heater=False, cells=kind != "solar_thin_film")
    elif m == "wall":
        p["colour"] = d.colour(p["colour"], 0.12)
    elif m == "tarp":
        name = d.name("tarp")
        p.update(colour_name=name, colour=d.colour(_TARP[name], 0.06))
    elif m == "vehicle":
        p["colour"] = d.colour(p["colour"], 0.1)
    elif m == "clutter":
        p["colour"] = d.colour(p["colour"], 0.15)
    elif m == "greenhouse":
        film, inside = _GREENHOUSE[d.name("greenhouse_film")]
        p.update(film=d.colour(film, 0.04), inside=d.colour(inside, 0.1, "green_family"))
    elif m in ("plastic_mulch", "garlic") and p.get("film", "none") != "none":  # garlic without film keeps none
        p["film"] = d.name("mulch_film")
    elif m == "road":
        p.update(asphalt=d.colour(p["asphalt"], 0.15), concrete=d.colour(p["concrete"], 0.1))
    elif m == "courtyard":
        p.update(concrete=d.colour(p["concrete"], 0.1), brick=d.colour(p["brick"], 0.15))
    elif m == "wheat":
        p["green"] = d.colour(_WHEAT[d.name("wheat_variety")], 0.06, "green_family")
    elif m == "corn":
        p["colour"] = d.colour(p["colour"], 0.1, "green_family")
    elif m == "rapeseed":
        p["green"] = d.colour(p["green"], 0.1, "green_family")
    elif m == "bed":
        crop = p.get("crop")
        if crop == "cabbage":
            p["colour"] = d.colour(_CABBAGE[d.name("cabbage_variety")], 0.06, "green_family")
        elif crop == "lettuce":
            p["colour"] = d.colour(_LETTUCE[d.name("lettuce_variety")], 0.06, "green_family")
        elif crop in ("greens", "garlic"):
            p["colour"] = d.colour((82, 118, 60) if crop == "greens" else (98, 130, 98), 0.1, "green_family")
    elif m in ("tree", "grass", "margin"):
        p["green"] = d.colour(p["green"], 0.1, "green_family")
    elif m == "flowers":
        kind = d.name("look_alike_flowers")
        p["kind"] = kind
        if kind != "corn_poppy":  # corn poppy is botanically red on green, whatever the half
            names = factor_values("ornamental_colour", d.appearance)
            k = int(d.rng.integers(1, 4))
            pick = d.rng.choice(len(names), size=min(k, len(names)), replace=False)
            p["palette"] = [list(_ORNAMENTAL[names[int(i)]]) for i in pick]
        p["green"] = d.colour(p["green"], 0.08, "green_family")
    tex = d.texture() if m not in ("tree", "flowers", "bed", "shadow") else None
    if tex is not None:
        p["texture"] = tex


def randomise_items(items: list[Item], seed: int, options: SceneOptions) -> None:
    """Re-draw the looks of a laid-out scene's items in place (nothing at level 0).

    Each item draws from a generator of its own (scene seed, item seed), so the result does not depend on the
    order of the items. Poppy keeps its sampled plants and varies its flower colour mix only within
    :data:`FACTORS` ``flower_mix`` (all of them botanical: white, red, pink, mauve).
    """
    if options.randomise == 0:
        return
    for it in items:
        rng = np.random.default_rng([int(seed), RANDOMISE_SALT, 3, int(it.seed) & 0x7FFFFFFF, it.layer])
        d = _Draw(rng, options)
        if it.material == "poppy":
            it.params["palette"] = d.name("flower_mix")
        elif it.material != "shadow":
            _recolour(it, d)


def _reddish(rgb) -> bool:
    h, s, _ = _hsv_of(rgb)
    return s > 0.4 and (h >= 340.0 or h < 30.0)


# Confuser kinds whose truth depends on a re-drawn look; the others (trees, rapeseed, beds) keep theirs.
_LOOK_CONFUSERS = {"red_roof", "red_plastic", "red_car", "corn_poppy", "ornamental_flowers"}


def randomise_layout(layout: Layout, seed: int, options: SceneOptions) -> None:
    """:func:`randomise_items` on a layout, then its confuser list redone for the new looks (red roofs, tarps
    and cars; look-alike flowers by their new kind). Nothing at level 0."""
    if options.randomise == 0:
        return
    randomise_items(layout.items, seed, options)
    kept = [c for c in layout.confusers if c.kind not in _LOOK_CONFUSERS]
    for it in layout.items:
        p = it.params
        if it.material == "roof" and _reddish(p["colour"]):
            kept.append(Confuser("red_roof", it.geom))
        elif it.material == "tarp" and _reddish(p["colour"]):
            kept.append(Confuser("red_plastic", it.geom))
        elif it.material == "vehicle" and _reddish(p["colour"]):
            kept.append(Confuser("red_car", it.geom))
        elif it.material == "flowers":
            kept.append(Confuser("ornamental_flowers" if p["kind"] == "ornamental" else p["kind"], it.geom))
    layout.confusers = kept
