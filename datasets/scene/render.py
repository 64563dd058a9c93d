"""One window of a scene: query the layout, let each material draw, develop the photograph.

A window is rendered with a margin of :data:`camera.MARGIN` pixels so that blur and JPEG blocks near its edge
see the same neighbours as in any other window; windows must start on multiples of 16 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.scene import camera, noise
from datasets.scene.context import Box, WindowContext
from datasets.scene.items import LAYERS
from datasets.scene.layout import Layout
from datasets.scene.materials import MATERIALS
from datasets.scene.rasterize import polygon_mask
from datasets.scene.season import Season, sun_of

__all__ = ["Scene", "render_window"]


@dataclass
class Scene:
    """Everything needed to render any window of a scene."""

    seed: int
    height: int
    width: int
    gsd: float
    season: Season
    layout: Layout
    look: Any = None  # datasets.scene.randomise.Look of a randomised scene (extra camera effects), else None


def _background(ctx: WindowContext, items: list) -> np.ndarray:
    """Pixels not painted over by any opaque parcel, road or yard (only they need the background drawn)."""
    bg = np.ones((ctx.box.height, ctx.box.width), bool)
    for it in items:
        if it.layer <= LAYERS["yard"] and MATERIALS[it.material].opaque:
            sb = ctx.sub_box(it.geom.bounds)
            if sb is None:
                continue
            m = polygon_mask(it.geom, sb, ctx.gsd)
            r0, c0 = sb.row_off - ctx.box.row_off, sb.col_off - ctx.box.col_off
            bg[r0 : r0 + sb.height, c0 : c0 + sb.width] &= ~m
    return bg


def render_window(scene: Scene, inner: Box) -> tuple[np.ndarray, np.ndarray]:
    """Render the pixels of ``inner`` (global pixel box inside the scene).

    Returns:
        ``(rgba, landcover)``: uint8 ``[h, w, 4]`` (alpha 0 outside the footprint, RGB 0 there too, as in
        OpenDroneMap output) and uint8 ``[h, w]`` land-cover classes (0 outside the footprint).
    """
    if inner.row_off % 16 or inner.col_off % 16:
        raise ValueError(f"window {inner} must start on multiples of 16 pixels (JPEG blocks line up)")
    region = inner.expand(camera.MARGIN)
    ctx = WindowContext(region, scene.gsd, sun_of(scene.season))
    items = scene.layout.query(ctx.bounds_m())
    ctx.background = _background(ctx, items)
    for item in items:
        MATERIALS[item.material].draw(ctx, item)
    rgb = camera.develop(ctx, scene.season, noise.mix_seed(scene.seed, 99), scene.look)
    m = camera.MARGIN
    rgb = rgb[m : m + inner.height, m : m + inner.width]
    lc = ctx.landcover[m : m + inner.height, m : m + inner.width].copy()
    valid = polygon_mask(scene.layout.footprint, inner, scene.gsd)
    rgba = np.zeros((inner.height, inner.width, 4), np.uint8)
    rgba[..., :3] = rgb * valid[..., None]
    rgba[..., 3] = valid * np.uint8(255)
    lc[~valid] = 0
    return rgba, lc
