"""Small-scale surface textures made once per process and sampled by global coordinates.

Value noise is blobby and square at the scale of clods, grass blades and leaves. These textures are made
with slower, richer methods (Worley cells for clods and leaf clusters, anti-aliased strokes for blades and
leaves) on small tileable patches, with a fixed generator so every process gets the same patch. Materials
sample them at each pixel's global position, rotated, offset and scaled per item, from the mip level that
matches the GSD (so 1 cm clods average out at 5 cm/px instead of aliasing). Two differently rotated samples
blended together hide the tiling.

A texture value is a height-like field around 0 (about unit spread); :func:`sample_relief` turns the
difference towards the sun into shading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from datasets.scene import noise
from datasets.scene.context import PixelSet

__all__ = ["Texture", "get", "sample", "sample_relief"]

_F = np.float32
_N = 512  # texels per side of every patch (a power of two, for cheap wrapping)


@dataclass(frozen=True)
class Texture:
    """A tileable patch and its mip levels; ``res`` is the texel size in metres at level 0."""

    levels: tuple[np.ndarray, ...]
    res: float


def _mips(a: np.ndarray) -> tuple[np.ndarray, ...]:
    out = [a.astype(_F)]
    while out[-1].shape[0] > 8:
        b = out[-1]
        out.append(((b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]) * _F(0.25)).astype(_F))
    return tuple(out)


def _norm(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    return (a / (a.std() + 1e-6)).astype(_F)


def _worley(rng: np.random.Generator, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Tileable F1 and F2 distances (in texels) for one jittered point per ``cell`` x ``cell`` texels."""
    nc = _N // cell
    pts = (np.arange(nc)[:, None, None] * 0 + rng.random((nc, nc, 2))) * cell
    y, x = np.mgrid[0:_N, 0:_N]
    ci, cj = y // cell, x // cell
    f1 = np.full((_N, _N), np.inf)
    f2 = np.full((_N, _N), np.inf)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            i, j = ci + di, cj + dj
            p = pts[i % nc, j % nc]
            d = np.hypot(y - (i * cell + p[..., 0]), x - (j * cell + p[..., 1]))
            f2 = np.where(d < f1, f1, np.minimum(f2, d))
            f1 = np.minimum(f1, d)
    return f1, f2


def _wrap_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    r = math.ceil(4 * sigma) + 1
    p = np.pad(a.astype(np.float32), r, mode="wrap")
    return cv2.GaussianBlur(p, (0, 0), sigma)[r:-r, r:-r]


def _strokes(
    rng: np.random.Generator,
    n: int,
    length: tuple[float, float],
    width: int,
    angle_spread: float,
    bright: tuple[float, float],
) -> np.ndarray:
    """Anti-aliased strokes (blades, leaves) on a tileable canvas: max-composited brightness in [0, 1]."""
    pad = 64
    c = np.zeros((_N + 2 * pad, _N + 2 * pad), np.float32)
    base = rng.uniform(0, math.pi)
    for _ in range(n):
        x, y = rng.uniform(0, _N, 2)
        ln = rng.uniform(*length)
        a = base + rng.normal(0, angle_spread) if angle_spread < 3 else rng.uniform(0, 2 * math.pi)
        dx, dy = math.cos(a) * ln / 2, math.sin(a) * ln / 2
        v = float(rng.uniform(*bright))
        for ox in (-_N, 0, _N):
            for oy in (-_N, 0, _N):
                p0 = (int((x - dx + ox + pad) * 16), int((y - dy + oy + pad) * 16))
                p1 = (int((x + dx + ox + pad) * 16), int((y + dy + oy + pad) * 16))
                if -pad * 16 < p0[0] < (_N + 3 * pad) * 16 and -pad * 16 < p0[1] < (_N + 3 * pad) * 16:
                    cv2.line(c, p0, p1, v, width, cv2.LINE_AA, 4)
    return c[pad:-pad, pad:-pad]


@cache
def get(name: str) -> Texture:
    """The texture ``clods``, ``crust``, ``grass``, ``leaves`` or ``foliage`` (made on first use)."""
    rng = np.random.default_rng(20240601 + sum(map(ord, name)))
    if name == "clods":
        # Soil clods 1-6 cm: domes in Worley cells, cracks between, grit on top.
        h = np.zeros((_N, _N))
        for cell, w in ((6, 0.35), (14, 0.5), (34, 0.45)):
            f1, f2 = _worley(rng, cell)
            h += w * (np.clip(1 - f1 / cell, 0, 1) ** 0.7 - 0.9 * np.exp(-(f2 - f1) / (0.12 * cell)))
        h += 0.25 * rng.standard_normal((_N, _N))
        return Texture(_mips(_norm(_wrap_blur(h, 0.7))), 0.004)
    if name == "crust":
        # Crusted, harrowed soil: smooth with fine cracks and grit.
        f1, f2 = _worley(rng, 48)
        h = -np.exp(-(f2 - f1) / 2.0) + 0.35 * _wrap_blur(rng.standard_normal((_N, _N)), 3) * 3
        h += 0.2 * rng.standard_normal((_N, _N))
        return Texture(_mips(_norm(_wrap_blur(h, 0.6))), 0.005)
    if name == "grass":
        # Grass and weed blades, 2-9 cm, over a darker bed of older growth.
        s = _strokes(rng, 14000, (5, 22), 1, 9.0, (0.3, 1.0))
        bed = _wrap_blur(rng.standard_normal((_N, _N)), 4) * 0.3
        return Texture(_mips(_norm(s + bed)), 0.004)
    if name == "leaves":
        # Narrow cereal leaves 8-25 cm, loosely aligned, over deep shade.
        s = _strokes(rng, 5000, (16, 50), 2, 0.6, (0.35, 1.0))
        return Texture(_mips(_norm(_wrap_blur(s, 0.6))), 0.005)
    if name == "foliage":
        # Tree crowns: leaf clusters 20-60 cm (domes) with single leaves speckled on them.
        h = np.zeros((_N, _N))
        for cell, w in ((12, 0.5), (30, 0.8), (64, 0.6)):
            f1, f2 = _worley(rng, cell)
            h += w * (np.clip(1 - f1 / cell, 0, 1) ** 0.6 - 0.3 * np.exp(-(f2 - f1) / (0.15 * cell)))
        h += 0.35 * _strokes(rng, 6000, (2, 5), 1, 9.0, (0.2, 1.0))
        return Texture(_mips(_norm(_wrap_blur(h, 0.6))), 0.012)
    raise KeyError(f"unknown texture {name!r}")


def _coords(px: PixelSet, seed: int, scale: float, tex: Texture, shift: tuple[float, float] = (0.0, 0.0)):
    h = noise.mix_seed(seed, 31)
    ang = (h & 0xFFFF) / 65536.0 * 2 * math.pi
    ou = ((h >> 16) & 0xFF) / 256.0 * 97.0
    ov = (h >> 24) / 256.0 * 89.0
    # Mip level whose texel is closest to (but finer than) the pixel.
    lev = int(np.clip(math.floor(math.log2(max(px.ctx.gsd / (tex.res * scale), 1.0))), 0, len(tex.levels) - 1))
    texel = tex.res * scale * 2**lev
    u = px.u + shift[0]
    v = px.v + shift[1]
    x = (u * math.cos(ang) + v * math.sin(ang) + ou) / texel
    y = (-u * math.sin(ang) + v * math.cos(ang) + ov) / texel
    return tex.levels[lev], x, y


def _bilinear(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0).astype(_F)
    fy = (y - y0).astype(_F)
    i0 = y0.astype(np.int64) & (n - 1)
    j0 = x0.astype(np.int64) & (n - 1)
    i1 = (i0 + 1) & (n - 1)
    j1 = (j0 + 1) & (n - 1)
    flat = a.reshape(-1)
    c0 = flat[i0 * n + j0] * (_F(1) - fy) + flat[i1 * n + j0] * fy
    c1 = flat[i0 * n + j1] * (_F(1) - fy) + flat[i1 * n + j1] * fy
    return c0 * (_F(1) - fx) + c1 * fx


def sample(
    px: PixelSet, name: str, seed: int, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Texture ``name`` at the pixels, rotated and offset by ``seed``, features scaled by ``scale``."""
    tex = get(name)
    a, x, y = _coords(px, seed, scale, tex, shift)
    return _bilinear(a, x, y)


def sample_relief(px: PixelSet, name: str, seed: int, scale: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The texture value and the irradiance of its relief lit by the window's sun: ``(value, irr)``.

    The relief is the height difference towards the sun over about one texel-scale step, so bumps are bright
    on their sunward side and cast a dark side, more so when the sun is low.
    """
    tex = get(name)
    sv = px.ctx.sun.vector
    hor = math.hypot(float(sv[0]), float(sv[1])) + 1e-9
    step = max(px.ctx.gsd, tex.res * scale * 2.0)
    h0 = sample(px, name, seed, scale)
    h1 = sample(px, name, seed, scale, shift=(step * float(sv[0]) / hor, step * float(sv[1]) / hor))
    k = strength * px.ctx.sun.shadow_len**0.5
    # Relief fades once the bumps are much smaller than a pixel.
    k *= min(1.0, tex.res * scale * 6 / px.ctx.gsd)
    return h0, np.clip(_F(1) + (h0 - h1) * _F(k), 0.15, 2.2)
