"""The material registry and the base class every material extends.

A material is a small class with

* ``name`` (its key in :data:`MATERIALS`) and ``landcover`` (the class id it writes, see ``items.LANDCOVER``);
* ``sample(rng, season, geom) -> dict``: its parameters, drawn once at layout time (plain values);
* ``surface(px, item) -> Surface``: the layers it paints on its pixels, computed only from hashed noise
  (``PixelSet.noise``, textures, ``Lattice.sites``) so that windows join without seams;
* optionally ``overlay(ctx, item)``: plants or weeds drawn over that surface, and ``pixels(ctx, item)`` when
  it paints something other than the pixels inside its polygon.

:meth:`Material.draw` ties these together; a material that needs another order overrides ``draw`` itself.
The surfaces several materials share (soil, grass, furrows, film) live in :mod:`.common`.

To add one: subclass :class:`Material` in a module of this package, decorate it with ``@register``, import
the module in ``materials/__init__.py``, and let the layout place items with its name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import Item
from datasets.scene.season import Season

__all__ = ["MATERIALS", "Material", "Surface", "register", "texture_gain"]

MATERIALS: dict[str, Material] = {}


@dataclass(frozen=True)
class Surface:
    """What a material paints on its pixels (the physical layers of :mod:`datasets.scene.context`).

    A layer left None is not written, so whatever lies underneath shows through in it; ``landcover`` None
    writes the material's own class.

    Attributes:
        albedo: Linear albedo ``[n, 3]``.
        irr: Direct-sun irradiance relative to flat ground in full sun, per pixel or one value.
        sky: Sky-view factor, per pixel or one value.
        elev: Height above ground in metres, per pixel or one value.
        landcover: Land-cover class per pixel or one class.
    """

    albedo: np.ndarray | None = None
    irr: np.ndarray | float | None = None
    sky: np.ndarray | float | None = None
    elev: np.ndarray | float | None = None
    landcover: np.ndarray | int | None = None


class Material:
    """Base class: see the module docstring."""

    name: ClassVar[str] = ""
    landcover: ClassVar[int] = 0
    # True when draw() paints every pixel of the item's polygon (the background can skip them).
    opaque: ClassVar[bool] = False

    def sample(self, rng: np.random.Generator, season: Season, geom) -> dict:
        """Parameters for one item, drawn at layout time."""
        return {}

    def pixels(self, ctx: WindowContext, item: Item) -> PixelSet:
        """The pixels the surface covers: those of the window inside the item's polygon."""
        return ctx.pixels(item.geom)

    def surface(self, px: PixelSet, item: Item) -> Surface:  # pragma: no cover - abstract
        """The layers to paint on ``px`` (never empty)."""
        raise NotImplementedError(f"material {self.name!r} implements neither surface() nor draw()")

    def overlay(self, ctx: WindowContext, item: Item) -> None:
        """Draw what stands on the surface (plants, weeds); nothing by default."""

    def draw(self, ctx: WindowContext, item: Item) -> None:
        """Paint the surface on the item's pixels in this window, then the overlay (both only if it has any)."""
        px = self.pixels(ctx, item)
        if len(px) == 0:
            return
        surface = self.surface(px, item)
        if "texture" in item.params and surface.albedo is not None:
            surface = replace(surface, albedo=surface.albedo * texture_gain(px, item.params["texture"], item.seed))
        self.paint(px, surface)
        self.overlay(ctx, item)

    def paint(self, px: PixelSet, surface: Surface) -> None:
        """Write ``surface`` into the window at ``px``."""
        if surface.albedo is not None:
            px.set_albedo(surface.albedo)
        for layer in ("irr", "sky", "elev"):
            value = getattr(surface, layer)
            if value is not None:
                px.set(layer, value)
        px.set("landcover", self.landcover if surface.landcover is None else surface.landcover)


def texture_gain(px: PixelSet, tex: dict, seed: int) -> np.ndarray:
    """Per-pixel RGB gain ``[n, 3]`` of a randomised scene's procedural texture (``datasets.scene.randomise``).

    ``kind``: ``stains`` (fractal blotches), ``stripes`` (bands along ``angle``, like rows, courses or wear),
    ``speckle`` (pixel-scale grain at ``scale``) or ``patches`` (hard-edged cells); ``amp`` is the log-brightness
    swing and ``tint`` a colour shift per channel carried by the same pattern. Hashed from global coordinates, so
    windows join without seams; gains stay within exp(+-0.6), so albedo stays physical.
    """
    f = np.float32
    kind, scale, s = tex["kind"], float(tex["scale"]), seed + 7919
    if kind == "stains":
        t = px.fbm(scale, s, octaves=3)
    elif kind == "stripes":
        c, n = math.cos(tex["angle"]), math.sin(tex["angle"])
        across = (-px.u * n + px.v * c) / scale
        t = (np.sin(2 * np.pi * across).astype(f) + f(0.3) * px.noise(scale * 3, s)).astype(f)
    elif kind == "speckle":
        t = px.noise(max(scale * 0.1, px.ctx.gsd), s) * f(0.5) + px.grain(s + 1) * f(0.5)
    else:
        t = np.sign(px.noise(scale, s)).astype(f)
    t = np.clip(t, -1.5, 1.5) * f(tex["amp"])
    tint = np.asarray(tex["tint"], f)
    return np.exp(np.clip(t[:, None] * (f(1) + tint[None, :] * f(3)), -0.6, 0.6)).astype(f)


def register(cls: type[Material]) -> type[Material]:
    """Class decorator adding a material to :data:`MATERIALS` under its ``name``."""
    if not cls.name or cls.name in MATERIALS:
        raise ValueError(f"material name {cls.name!r} is empty or already registered")
    MATERIALS[cls.name] = cls()
    return cls
