"""From physical layers to an orthophoto: light, exposure, white balance, haze, blur, noise, JPEG, footprint.

:func:`develop` runs on one window *with its margin* and every step is either per pixel (hashed from global
coordinates) or a small neighbourhood operation (blur, JPEG's 8 x 8 blocks and 2 x 2 chroma), so the inner
part of the window is identical whichever window computes it, provided that:

* the margin is at least :data:`MARGIN` pixels, and
* windows start on multiples of 16 pixels (JPEG blocks and chroma subsampling line up with the scene grid).

Blur is done with numpy shifts and adds in a fixed order rather than OpenCV's float filters, whose SIMD
tails may round a pixel differently depending on where it falls in the row.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from datasets.scene import noise
from datasets.scene.context import WindowContext
from datasets.scene.season import Season, wb_gains

__all__ = ["MARGIN", "develop"]

# Pixels of margin a window needs: blur and sharpening reach < 12 px, JPEG chroma upsampling one 16 px MCU.
MARGIN = 48
_F = np.float32


def _kernel(sigma: float) -> np.ndarray:
    r = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma, 1e-3)) ** 2)
    return (k / k.sum()).astype(_F)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[h, w, c]`` float32 with edge padding, in a fixed order of operations."""
    if sigma <= 0.05:
        return img.copy()
    k = _kernel(sigma)
    r = len(k) // 2
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = k[r] * p[r : r + h]
    for i in range(1, r + 1):
        out += k[r + i] * (p[r - i : r - i + h] + p[r + i : r + i + h])
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge")
    out = k[r] * p[:, r : r + w]
    for i in range(1, r + 1):
        out += k[r + i] * (p[:, r - i : r - i + w] + p[:, r + i : r + i + w])
    return out


def _tone_lut(contrast: float) -> np.ndarray:
    """LUT from sqrt-encoded linear radiance (index = sqrt(x / 2) * 8191) to 8-bit sRGB-like values."""
    x = (np.arange(8192, dtype=np.float64) / 8191.0) ** 2 * 2.0
    # Soft shoulder above 0.8 so that bright roofs and film roll off instead of clipping flat.
    knee = 0.8
    y = np.where(x < knee, x, knee + (1 - knee) * np.tanh((x - knee) / (1 - knee) / 1.2) * 1.2)
    y = np.clip(y, 0, None) ** (1 / 2.2)
    # Gentle S-curve about mid grey.
    y = 0.5 + (y - 0.5) * contrast - 0.15 * (contrast - 1) * np.sin(2 * math.pi * (y - 0.5))
    return (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


def _seam_field(ctx: WindowContext, season: Season, seed: int) -> np.ndarray:
    """Exposure gain per pixel from the orthomosaic's source photos (Voronoi patches, blended edges)."""
    sp = season.seam_spacing_m
    cell = 0.5  # metres between samples of the smooth field; bilinear in between softens the seamlines

    def values(li: np.ndarray, lj: np.ndarray) -> np.ndarray:
        v = li * cell
        u = lj * cell
        pi = np.floor(v / sp).astype(np.int64)
        pj = np.floor(u / (sp * 0.8)).astype(np.int64)
        best = np.full(np.broadcast(v, u).shape, np.inf)
        gain = np.zeros(best.shape, np.float32)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                h = noise.hash_u32(seed, pi + di, pj + dj)
                cv = (pi + di + 0.2 + 0.6 * noise.unit(h)) * sp
                cu = (pj + dj + 0.2 + 0.6 * noise.unit(noise.hash_u32(seed + 1, pi + di, pj + dj))) * sp * 0.8
                d = (v - cv) ** 2 + (u - cu) ** 2
                g = noise.gauss_u32(noise.hash_u32(seed + 2, pi + di, pj + dj)) * _F(season.seam_gain)
                closer = d < best
                best = np.where(closer, d, best)
                gain = np.where(closer, g, gain)
        return gain

    return noise.lattice_grid(ctx.v, ctx.u, cell, values, smooth=False)


def _response_lut(curve: tuple[float, float, float, float], contrast: float) -> np.ndarray:
    """Like :func:`_tone_lut`, for a randomised scene's response curve ``(knee, toe, gamma, s_curve)``."""
    knee, toe, gamma, s_curve = curve
    x = (np.arange(8192, dtype=np.float64) / 8191.0) ** 2 * 2.0
    y = np.where(x < knee, x, knee + (1 - knee) * np.tanh((x - knee) / (1 - knee) / 1.2) * 1.2)
    y = np.clip(y + toe * (1 - np.clip(y / 0.25, 0, 1)) ** 2, 0, None) ** (1 / gamma)
    c = contrast * s_curve
    y = 0.5 + (y - 0.5) * c - 0.15 * (c - 1) * np.sin(2 * math.pi * (y - 0.5))
    return (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


def _photo_fields(ctx: WindowContext, season: Season, seed: int, look) -> tuple[np.ndarray, np.ndarray]:
    """Log gain from vignetting inside each source photo, and closeness to a seamline (1 on it, 0 far away).

    The source photos are the same Voronoi patches as :func:`_seam_field`'s (same hashes): each patch is
    darkened towards its edges by ``look.vignette``; ghosting is strongest along the seamlines between patches.
    """
    sp = season.seam_spacing_m
    cell = 0.5

    def values(li: np.ndarray, lj: np.ndarray) -> np.ndarray:
        v, u = li * cell, lj * cell
        pi = np.floor(v / sp).astype(np.int64)
        pj = np.floor(u / (sp * 0.8)).astype(np.int64)
        shape = np.broadcast(v, u).shape
        best, second = np.full(shape, np.inf), np.full(shape, np.inf)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                cv = (pi + di + 0.2 + 0.6 * noise.unit(noise.hash_u32(seed, pi + di, pj + dj))) * sp
                cu = (pj + dj + 0.2 + 0.6 * noise.unit(noise.hash_u32(seed + 1, pi + di, pj + dj))) * sp * 0.8
                d = (v - cv) ** 2 + (u - cu) ** 2
                second = np.where(d < best, best, np.minimum(second, d))
                best = np.minimum(best, d)
        r1, r2 = np.sqrt(best), np.sqrt(second)
        vig = -_F(look.vignette) * (r1 / (0.5 * sp)).astype(_F) ** 2
        seam = np.exp(-((r2 - r1) / 1.5)).astype(_F)  # (r2 - r1) / 2 is the distance to the seamline
        return np.stack([vig, seam], axis=-1)

    # lattice_grid takes one value per node: both fields share one lattice, so the nodes are computed once.
    nodes: list[np.ndarray] = []

    def channel(k: int):
        def f(li: np.ndarray, lj: np.ndarray) -> np.ndarray:
            if not nodes:
                nodes.append(values(li, lj))
            return nodes[0][..., k]

        return f

    vig = noise.lattice_grid(ctx.v, ctx.u, cell, channel(0), smooth=False)
    seam = noise.lattice_grid(ctx.v, ctx.u, cell, channel(1), smooth=False)
    return vig, seam


def _shift(img: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``img`` moved by (dr, dc) pixels, edges repeated (a neighbourhood operation: needs dr, dc < MARGIN)."""
    h, w = img.shape[:2]
    r = max(abs(dr), abs(dc))
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    return p[r - dr : r - dr + h, r - dc : r - dc + w]


def motion_blur(img: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Average of ``length`` copies of ``img`` shifted along ``angle`` (radians from the column axis)."""
    if length <= 1:
        return img
    out = np.zeros_like(img)
    for k in range(length):
        t = k - (length - 1) / 2
        out += _shift(img, round(t * math.sin(angle)), round(t * math.cos(angle)))
    return out * _F(1.0 / length)


def develop(ctx: WindowContext, season: Season, seed: int, look=None) -> np.ndarray:
    """Render the window's physical layers to an 8-bit RGB photograph ``[h, w, 3]`` (whole window).

    ``look`` (a :class:`datasets.scene.randomise.Look`, randomised scenes only) adds vignetting, ghosting near
    seamlines, motion blur, sharpening halos and a response curve; None develops as the level-0 renderer.
    """
    e = math.radians(season.sun_elevation_deg)
    direct = (1.0 - season.cloud) * (0.55 + 0.45 * math.sin(e))
    sun_rgb = np.array([1.04, 1.0, 0.93], _F) * _F(direct)
    sky_rgb = np.array([0.82, 0.95, 1.2], _F) * _F(season.sky_level * (1.0 + 2.0 * season.cloud))
    # White balance on sunlit flat ground (what a camera's auto white balance does): shadows come out blue.
    norm = sun_rgb + sky_rgb
    light = ctx.irr[..., None] * (sun_rgb / norm) + ctx.sky[..., None] * (sky_rgb / norm)
    rad = ctx.albedo * light
    gain = wb_gains(season) * _F(2.0**season.exposure_ev)
    rad *= gain
    if season.seam_gain > 0:
        rad *= np.exp(_seam_field(ctx, season, seed + 5))[..., None]
    if look is not None:
        vig, seam = _photo_fields(ctx, season, seed + 5, look)
        rad *= np.exp(vig)[..., None]
        if look.ghost > 0:
            # Ghosting: the neighbouring photo, slightly misregistered, blended in along the seamlines.
            a = (seam * _F(look.ghost))[..., None]
            rad = rad * (_F(1) - a) + _shift(rad, *look.ghost_shift) * a
    # Saturation about the pixel's luminance (a camera's colour rendering varies).
    lum = rad[..., 0] * _F(0.2126) + rad[..., 1] * _F(0.7152) + rad[..., 2] * _F(0.0722)
    rad = lum[..., None] + (rad - lum[..., None]) * _F(season.saturation)
    if season.haze > 0:
        air = np.array([0.62, 0.68, 0.78], _F)
        rad = rad * _F(1 - season.haze) + air * _F(season.haze)
    rad = blur(np.maximum(rad, 0), season.blur_px)
    if look is not None and look.motion_px > 1:
        rad = motion_blur(rad, look.motion_px, look.motion_angle)
    if season.sharpen > 0:
        rad = rad + (rad - blur(rad, 1.4)) * _F(season.sharpen)
    if look is not None and look.halo > 0:
        # Aggressive in-camera sharpening at a wider radius: bright and dark halos along every edge.
        rad = rad + (rad - blur(rad, look.halo_px)) * _F(look.halo)
    # Sensor noise: shot noise grows with the signal; a little chroma noise on top.
    rows = (np.arange(ctx.box.height) + ctx.box.row_off)[:, None]
    cols = (np.arange(ctx.box.width) + ctx.box.col_off)[None, :]
    n_l = noise.gauss_u32(noise.hash_u32(seed + 11, rows, cols))
    hc = noise.hash_u32(seed + 12, rows, cols)
    sig = _F(season.noise) * np.sqrt(np.maximum(rad, 0) + _F(0.02))
    for c in range(3):
        chroma = ((hc >> np.uint32(10 * c)) & np.uint32(1023)).astype(_F) * _F(1 / 511.5) - _F(1)
        rad[..., c] += sig[..., c] * (n_l + _F(0.6) * chroma)
    idx = (np.sqrt(np.clip(rad, 0, 2) * _F(0.5)) * _F(8191)).astype(np.int32)
    if look is None:
        rgb = _tone_lut(season.contrast)[idx]
    else:
        from datasets.scene.randomise import RESPONSES  # the camera stays importable without the randomiser

        rgb = _response_lut(RESPONSES[look.response], season.contrast)[idx]
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(season.jpeg_quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
