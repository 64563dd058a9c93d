"""Exact, window-independent polygon rasterisation.

A polygon is burned into a box of global pixels with the pixel-centre rule (the same rule as GDAL and
``rasterio.features.rasterize``): a pixel is inside when its centre is. Edge crossings are computed per
scan line from *global* coordinates, so a pixel's answer never depends on which window asks; OpenCV's
``fillPoly`` would clip edges to the image and move them by a pixel between windows.

Geometries are in scene metres (``u`` east, ``v`` south); the box is in global pixels.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

__all__ = ["polygon_edges", "polygon_mask"]


def polygon_edges(geom: BaseGeometry) -> np.ndarray:
    """Edges ``[n, 4]`` (u0, v0, u1, v1) of all rings of the polygons in ``geom``."""
    parts = shapely.get_parts(geom)
    parts = parts[shapely.get_type_id(parts) == 3]  # polygons only
    if len(parts) == 0:
        return np.zeros((0, 4))
    rings = shapely.get_rings(parts)
    xy, idx = shapely.get_coordinates(rings, return_index=True)
    same = idx[1:] == idx[:-1]
    return np.concatenate([xy[:-1][same], xy[1:][same]], axis=1)


def polygon_mask(geom: BaseGeometry, box, gsd: float, edges: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask ``[box.height, box.width]`` of the pixels whose centres are inside ``geom`` (even-odd).

    Args:
        geom: Polygon or MultiPolygon (other parts ignored), scene metres.
        box: ``(row_off, col_off, height, width)`` in global pixels.
        gsd: Metres per pixel.
        edges: Precomputed :func:`polygon_edges` of ``geom`` (optional).
    """
    row_off, col_off, h, w = box
    e = polygon_edges(geom) if edges is None else edges
    out = np.zeros((h, w), bool)
    if len(e) == 0 or h <= 0 or w <= 0:
        return out
    x0, y0, x1, y1 = (e[:, k] / gsd for k in range(4))
    keep = y0 != y1
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # Rows whose centre r + 0.5 lies in [lo, hi): half-open, so a vertex shared by two edges counts once.
    rs = np.maximum(np.ceil(lo - 0.5), row_off).astype(np.int64)
    re = np.minimum(np.ceil(hi - 0.5), row_off + h).astype(np.int64)
    n = np.maximum(re - rs, 0)
    total = int(n.sum())
    if total == 0:
        return out
    ei = np.repeat(np.arange(len(n)), n)
    starts = np.cumsum(n) - n
    r = rs[ei] + (np.arange(total) - starts[ei])
    yc = r + 0.5
    x = x0[ei] + (yc - y0[ei]) * (x1[ei] - x0[ei]) / (y1[ei] - y0[ei])
    # First pixel whose centre is at or right of the crossing; crossings left of the box toggle column 0.
    c = np.clip(np.ceil(x - 0.5).astype(np.int64) - col_off, 0, w)
    counts = np.bincount((r - row_off) * (w + 1) + c, minlength=h * (w + 1))
    parity = (np.cumsum((counts & 1).reshape(h, w + 1), axis=1) & 1)[:, :w]
    out[:] = parity.astype(bool)
    return out
