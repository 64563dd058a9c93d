"""What a material draws into: one window of the scene, and the pixels of one object inside it.

Coordinates: the scene frame is metric, ``u`` metres east and ``v`` metres south of the scene's top-left
corner, so pixel ``(row, col)`` (global, may be negative outside the scene) has its centre at
``v = (row + 0.5) * gsd``, ``u = (col + 0.5) * gsd``. A window is a box of global pixels
``(row_off, col_off, height, width)``; arrays in it are indexed ``[row - row_off, col - col_off]``.

Materials write *physical* quantities, not final colours: linear albedo, direct-sun irradiance relative to
flat ground in full sun (``irr``: 1 flat and lit, 0 in shadow, >1 facing the sun), the sky-view factor
(``sky``: ambient occlusion), the surface height above ground (``elev``, metres, for cast shadows) and the
land-cover class. ``camera.develop`` turns them into a photograph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from datasets.scene import noise
from datasets.scene.rasterize import polygon_mask

__all__ = ["Box", "PixelSet", "Sun", "WindowContext"]


class Box(NamedTuple):
    """A box of global pixels, rows before columns."""

    row_off: int
    col_off: int
    height: int
    width: int

    def expand(self, m: int) -> Box:
        return Box(self.row_off - m, self.col_off - m, self.height + 2 * m, self.width + 2 * m)


@dataclass(frozen=True)
class Sun:
    """Sun position; azimuth clockwise from north, elevation above the horizon, both in degrees."""

    azimuth_deg: float
    elevation_deg: float

    @cached_property
    def vector(self) -> np.ndarray:
        """Unit vector towards the sun in (u east, v south, up)."""
        a, e = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        return np.array([math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e), math.sin(e)], np.float32)

    @cached_property
    def shadow_dir(self) -> tuple[float, float]:
        """Unit horizontal direction (du, dv) in which shadows fall (away from the sun)."""
        a = math.radians(self.azimuth_deg)
        return -math.sin(a), math.cos(a)

    @cached_property
    def shadow_len(self) -> float:
        """Horizontal shadow length per metre of height."""
        return 1.0 / math.tan(math.radians(self.elevation_deg))

    def shading(self, nu: np.ndarray, nv: np.ndarray, nz: np.ndarray) -> np.ndarray:
        """Direct irradiance on surfaces with (not necessarily unit) normals, relative to flat ground."""
        s = self.vector
        norm = np.sqrt(nu * nu + nv * nv + nz * nz)
        d = (nu * s[0] + nv * s[1] + nz * s[2]) / norm
        return np.maximum(d, 0.0) * np.float32(1.0 / s[2])


@dataclass
class WindowContext:
    """The layers of one window being drawn (see module docstring)."""

    box: Box
    gsd: float
    sun: Sun
    albedo: np.ndarray = field(init=False)
    irr: np.ndarray = field(init=False)
    sky: np.ndarray = field(init=False)
    elev: np.ndarray = field(init=False)
    landcover: np.ndarray = field(init=False)
    # Pixels that no opaque parcel, road or yard will paint: only these need the background material.
    background: np.ndarray | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        h, w = self.box.height, self.box.width
        self.albedo = np.zeros((h, w, 3), np.float32)
        self.irr = np.ones((h, w), np.float32)
        self.sky = np.ones((h, w), np.float32)
        self.elev = np.zeros((h, w), np.float32)
        self.landcover = np.zeros((h, w), np.uint8)

    @cached_property
    def v(self) -> np.ndarray:
        """Row-centre coordinates (metres) of the window, float64."""
        return (np.arange(self.box.height) + self.box.row_off + 0.5) * self.gsd

    @cached_property
    def u(self) -> np.ndarray:
        """Column-centre coordinates (metres) of the window, float64."""
        return (np.arange(self.box.width) + self.box.col_off + 0.5) * self.gsd

    def bounds_m(self) -> tuple[float, float, float, float]:
        """(u_min, v_min, u_max, v_max) of the window in metres."""
        b, g = self.box, self.gsd
        return b.col_off * g, b.row_off * g, (b.col_off + b.width) * g, (b.row_off + b.height) * g

    def sub_box(self, geom_bounds: tuple[float, float, float, float], pad_px: int = 0) -> Box | None:
        """The part of the window covered by a geometry's bounds (metres) padded by pixels, or None."""
        u0, v0, u1, v1 = geom_bounds
        g, b = self.gsd, self.box
        r0 = max(b.row_off, math.floor(v0 / g) - pad_px)
        c0 = max(b.col_off, math.floor(u0 / g) - pad_px)
        r1 = min(b.row_off + b.height, math.ceil(v1 / g) + pad_px)
        c1 = min(b.col_off + b.width, math.ceil(u1 / g) + pad_px)
        if r1 <= r0 or c1 <= c0:
            return None
        return Box(r0, c0, r1 - r0, c1 - c0)

    def pixels(self, geom) -> PixelSet:
        """The window's pixels whose centres fall inside ``geom`` (metres)."""
        sb = self.sub_box(geom.bounds)
        if sb is None:
            return PixelSet.empty(self)
        m = polygon_mask(geom, sb, self.gsd)
        rr, cc = np.nonzero(m)
        return PixelSet(self, rr + (sb.row_off - self.box.row_off), cc + (sb.col_off - self.box.col_off))

    def all_pixels(self) -> PixelSet:
        h, w = self.box.height, self.box.width
        rr, cc = np.divmod(np.arange(h * w), w)
        return PixelSet(self, rr, cc)

    def mask_pixels(self, mask: np.ndarray) -> PixelSet:
        """The pixels where a window-sized boolean ``mask`` is set."""
        rr, cc = np.nonzero(mask)
        return PixelSet(self, rr, cc)


class PixelSet:
    """A set of pixels of a window (window-relative ``rows``, ``cols``), with their global coordinates."""

    def __init__(self, ctx: WindowContext, rows: np.ndarray, cols: np.ndarray) -> None:
        self.ctx = ctx
        self.rows = rows.astype(np.int64, copy=False)
        self.cols = cols.astype(np.int64, copy=False)

    @classmethod
    def empty(cls, ctx: WindowContext) -> PixelSet:
        z = np.zeros(0, np.int64)
        return cls(ctx, z, z)

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def flat(self) -> np.ndarray:
        return self.rows * self.ctx.box.width + self.cols

    @cached_property
    def grow(self) -> np.ndarray:
        """Global pixel rows."""
        return self.rows + self.ctx.box.row_off

    @cached_property
    def gcol(self) -> np.ndarray:
        """Global pixel columns."""
        return self.cols + self.ctx.box.col_off

    @cached_property
    def u(self) -> np.ndarray:
        return (self.gcol + 0.5) * self.ctx.gsd

    @cached_property
    def v(self) -> np.ndarray:
        return (self.grow + 0.5) * self.ctx.gsd

    def subset(self, keep: np.ndarray) -> PixelSet:
        return PixelSet(self.ctx, self.rows[keep], self.cols[keep])

    def _dense(self) -> tuple[int, int, int, int] | None:
        """Bounding box (r0, c0, h, w) when a grid evaluation over it is cheaper than per-point."""
        if len(self) == 0:
            return None
        r0, r1 = int(self.rows.min()), int(self.rows.max()) + 1
        c0, c1 = int(self.cols.min()), int(self.cols.max()) + 1
        if (r1 - r0) * (c1 - c0) > 3 * len(self):
            return None
        return r0, c0, r1 - r0, c1 - c0

    def noise(self, cell: float, seed: int, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Value noise in [-1, 1] at the pixels, optionally sampled at ``(du, dv)`` metres away."""
        su, sv = shift
        d = self._dense()
        if d is None:
            return noise.noise_pts(self.v + sv, self.u + su, cell, seed)
        r0, c0, h, w = d
        g = noise.noise_grid(self.ctx.v[r0 : r0 + h] + sv, self.ctx.u[c0 : c0 + w] + su, cell, seed)
        return g[self.rows - r0, self.cols - c0]

    def fbm(self, cell: float, seed: int, octaves: int = 3, gain: float = 0.5) -> np.ndarray:
        """Fractal noise; octaves below the pixel size fade out."""
        d = self._dense()
        gsd = self.ctx.gsd
        if d is None:
            return noise.fbm_pts(self.v, self.u, cell, seed, octaves, gain, gsd)
        r0, c0, h, w = d
        g = noise.fbm_grid(self.ctx.v[r0 : r0 + h], self.ctx.u[c0 : c0 + w], cell, seed, octaves, gain, gsd)
        return g[self.rows - r0, self.cols - c0]

    def hash(self, seed: int) -> np.ndarray:
        """A uint32 hash per pixel (pixel-scale grain)."""
        return noise.hash_u32(seed, self.grow, self.gcol)

    def grain(self, seed: int) -> np.ndarray:
        """Roughly standard-normal per-pixel noise."""
        return noise.gauss_u32(self.hash(seed))

    # --- writing ---------------------------------------------------------------------------------------
    def set_albedo(self, rgb: np.ndarray) -> None:
        self.ctx.albedo.reshape(-1, 3)[self.flat] = rgb

    def blend_albedo(self, rgb: np.ndarray, alpha: np.ndarray) -> None:
        a = self.ctx.albedo.reshape(-1, 3)
        old = a[self.flat]
        a[self.flat] = old + (rgb - old) * alpha[:, None]

    def set(self, name: str, value: np.ndarray | float) -> None:
        getattr(self.ctx, name).reshape(-1)[self.flat] = value

    def get(self, name: str) -> np.ndarray:
        arr = getattr(self.ctx, name)
        if name == "albedo":
            return arr.reshape(-1, 3)[self.flat]
        return arr.reshape(-1)[self.flat]
