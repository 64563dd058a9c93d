"""Tiling math for sliding-window inference: pure functions, no torch, no file I/O.

A raster of ``(height, width)`` pixels *at the model's GSD* ("model pixels") is covered by square tiles of
``tile`` pixels that overlap their neighbours by ``overlap`` pixels. Tiles are visited row by row (rows before
columns), so one row of tiles is a horizontal *strip* of the output that can be blended and written before the
next strip starts. Overlapping predictions are blended with a smooth weight window that is low at tile edges
(where a CNN sees little context) and 1 in the middle; dividing the weighted sum by the summed weights gives
seamless output. Every function here works on plain numbers and numpy arrays and is tested by tables of
cases.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window

__all__ = [
    "blend_weights",
    "model_grid_shape",
    "model_to_source_window",
    "resume_start",
    "tile_grid",
    "tile_starts",
    "window_touches_footprint",
]


def row_strips(height: int, width: int, max_pixels: int) -> list[Window]:
    """Full-width windows of whole rows, top to bottom, each of at most ``max_pixels`` pixels (at least one row).

    Reading a raster strip by strip bounds memory at ``max_pixels`` whatever its size; strips are full width so
    each one is a contiguous run of the file's rows.

    Args:
        height: Raster rows.
        width: Raster columns.
        max_pixels: Largest strip, in pixels.

    Returns:
        The strips; the last one may be shorter.
    """
    rows = max(1, min(height, max_pixels // max(1, width)))
    return [Window(col_off=0, row_off=r, width=width, height=min(rows, height - r)) for r in range(0, height, rows)]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels along one axis.

    With stride ``s = tile - overlap`` the number of tiles is ``n = ceil((length - tile) / s) + 1`` (one tile
    if ``length <= tile``). Ceil rather than floor because floor would leave the last ``(length - tile) % s``
    pixels uncovered; the last tile is then moved back so it ends flush with the edge (start
    ``length - tile``) instead of hanging past it, so no compute is spent on padding and the last tile simply
    overlaps its neighbour by more than ``overlap``. A raster shorter than one tile gets a single tile at 0
    that reaches past the edge (the reader pads it as invalid).

    Args:
        length: Pixels along the axis (>= 1).
        tile: Tile size in pixels (>= 1).
        overlap: Overlap between neighbouring tiles, ``0 <= overlap < tile``.

    Returns:
        Increasing start offsets; the first is 0 and, if ``length >= tile``, the last is ``length - tile``.

    Raises:
        ValueError: If the sizes are out of range.
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be >= 1, got length={length}, tile={tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [i * stride for i in range(n - 1)]
    starts.append(length - tile)
    return starts


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[list[Window]]:
    """The tile windows over a ``(height, width)`` raster, grouped by row of tiles (one strip per row).

    Args:
        height: Raster rows, in model pixels.
        width: Raster columns, in model pixels.
        tile: Tile size in pixels.
        overlap: Overlap between neighbours in pixels.

    Returns:
        ``grid[i][j]`` is the window of the tile in tile-row ``i`` and tile-column ``j``; every window is
        ``tile x tile`` (it may reach past the raster when the raster is smaller than a tile).
    """
    rows = tile_starts(height, tile, overlap)
    cols = tile_starts(width, tile, overlap)
    return [[Window(col_off=c, row_off=r, width=tile, height=tile) for c in cols] for r in rows]


def model_grid_shape(src_height: int, src_width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """Size in model pixels of a raster of ``(src_height, src_width)`` source pixels.

    Args:
        src_height: Source rows.
        src_width: Source columns.
        scale: Source pixels per model pixel ``(rows, cols)``, i.e. ``model_gsd / source_gsd`` per axis.

    Returns:
        ``(height, width)`` in model pixels: ``ceil(src / scale)`` so the model grid covers the whole raster
        (the last model pixel may reach slightly past the edge). A relative tolerance of 1e-6 keeps an exact
        multiple from gaining a sliver pixel through floating-point error.
    """
    sy, sx = scale
    if sy <= 0 or sx <= 0:
        raise ValueError(f"scale must be positive, got {scale}")

    def _ceil(n: int, s: float) -> int:
        q = n / s
        return max(1, math.ceil(q - 1e-6 * max(1.0, q)))

    return _ceil(src_height, sy), _ceil(src_width, sx)


def model_to_source_window(window: Window, scale: tuple[float, float]) -> Window:
    """Map a window in model pixels to the (fractional) window it covers in source pixels.

    Args:
        window: Window on the model grid.
        scale: Source pixels per model pixel ``(rows, cols)``.

    Returns:
        The source window ``(row_off * sy, col_off * sx, height * sy, width * sx)``; offsets may be
        fractional, which the reader honours so tiles line up exactly with the model grid's transform
        (``source_transform * Affine.scale(sx, sy)``).
    """
    sy, sx = scale
    return Window(
        col_off=window.col_off * sx,
        row_off=window.row_off * sy,
        width=window.width * sx,
        height=window.height * sy,
    )


def _ramp(tile: int, overlap: int, floor: float) -> np.ndarray:
    """1-D weights: a raised-cosine ramp from ``floor`` to 1 over ``overlap`` pixels at both ends."""
    w = np.ones(tile, dtype=np.float64)
    n = min(overlap, tile // 2)
    if n > 0:
        # Pixel centres at (i + 0.5) / n along the ramp, so the first pixel is above floor and the ramp is
        # symmetric; 0.5 - 0.5*cos(pi t) rises smoothly from 0 to 1 (a half Hann window).
        t = (np.arange(n) + 0.5) / n
        r = floor + (1.0 - floor) * (0.5 - 0.5 * np.cos(np.pi * t))
        w[:n] = r
        w[tile - n :] = r[::-1]
    return w


def blend_weights(tile: int, overlap: int, floor: float = 0.01) -> np.ndarray:
    """Separable 2-D blend window for one tile.

    Each axis ramps with a raised cosine from ``floor`` at the tile edge up to 1 across the ``overlap``
    pixels, and stays 1 in the middle. In the overlap of two tiles the falling ramp of one meets the rising
    ramp of the other, so predictions cross-fade without a seam. The window never reaches 0: pixels at the
    raster's edge, covered by a single tile's edge, still get a positive weight, and normalising by the summed
    weights then returns that tile's prediction unchanged.

    Args:
        tile: Tile size in pixels.
        overlap: Overlap between neighbouring tiles in pixels (0 gives all ones).
        floor: Smallest weight, in ``(0, 1]``.

    Returns:
        ``float32`` array ``[tile, tile]`` with values in ``[floor**2, 1]``.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    w = _ramp(tile, max(0, overlap), floor)
    return np.outer(w, w).astype(np.float32)


def window_touches_footprint(window: Window, footprint: np.ndarray, cell: tuple[float, float]) -> bool:
    """Whether a model-pixel window touches any valid cell of a coarse footprint mask.

    Args:
        window: Window in model pixels.
        footprint: Coarse boolean mask; cell ``(i, j)`` covers model rows ``[i * cy, (i + 1) * cy)`` and
            columns ``[j * cx, (j + 1) * cx)``. It should already be conservative (a cell is True if any
            pixel in it may be valid).
        cell: ``(cy, cx)``, model pixels per footprint cell.

    Returns:
        True if any footprint cell overlapping the window is True.
    """
    cy, cx = cell
    fh, fw = footprint.shape
    r0 = max(0, math.floor(window.row_off / cy))
    c0 = max(0, math.floor(window.col_off / cx))
    r1 = min(fh, math.ceil((window.row_off + window.height) / cy))
    c1 = min(fw, math.ceil((window.col_off + window.width) / cx))
    if r1 <= r0 or c1 <= c0:
        return False
    return bool(footprint[r0:r1, c0:c1].any())


def window_placement(
    height: int, width: int, window: Window, out_h: int, out_w: int
) -> tuple[Window, tuple[slice, slice]] | None:
    """Where the part of ``window`` inside a ``height x width`` raster lands in an ``out_h x out_w`` result.

    Clips the window to the raster, then maps the clipped part to whole output pixels. Reading the clipped
    window with a matching out_shape keeps the read in GDAL's fast path (no boundless VRT), and the image and
    every mask read with the same window land on the same output grid.

    Returns:
        ``(src, (rows, cols))``: the source window to read (its extent matches the whole output pixels exactly,
        so no sub-pixel shift creeps in) and the output slices it fills; ``None`` when nothing of the window
        lies inside the raster.
    """
    win_h, win_w = float(window.height), float(window.width)
    if win_h <= 0 or win_w <= 0 or out_h <= 0 or out_w <= 0:
        return None
    sy, sx = out_h / win_h, out_w / win_w  # output pixels per source pixel
    r0, c0 = max(0.0, float(window.row_off)), max(0.0, float(window.col_off))
    r1 = min(float(height), float(window.row_off) + win_h)
    c1 = min(float(width), float(window.col_off) + win_w)
    if r1 <= r0 or c1 <= c0:
        return None
    or0, oc0 = round((r0 - window.row_off) * sy), round((c0 - window.col_off) * sx)
    or1, oc1 = round((r1 - window.row_off) * sy), round((c1 - window.col_off) * sx)
    if or1 <= or0 or oc1 <= oc0:
        return None
    src = Window(
        col_off=window.col_off + oc0 / sx,
        row_off=window.row_off + or0 / sy,
        width=(oc1 - oc0) / sx,
        height=(or1 - or0) / sy,
    )
    return src, (slice(or0, or1), slice(oc0, oc1))


def resume_start(tile_rows: list[int], rows_done: int, tile: int, batch_size: int, height: int) -> int:
    """Index of the first tile to run again when raster rows ``[0, rows_done)`` are already written.

    Tiles are run in order, ``batch_size`` at a time. A tile starting at row ``r`` adds to the raster's rows up
    to ``min(r + tile, height)``; each tile reaching past ``rows_done`` adds to rows not yet written and must run
    again, so that the blend of those rows is the same sum, in the same order, as in an uninterrupted run. The
    index is rounded down to a multiple of ``batch_size`` so that every batch holds the same tiles as in an
    uninterrupted run: a network's output for one tile may change in its last bits with the batch it is in.

    Args:
        tile_rows: Start row of each tile to run, in running order (non-decreasing).
        rows_done: Raster rows already final on disk.
        tile: Tile size in pixels.
        batch_size: Tiles per forward pass.
        height: Raster rows (a tile may reach past the last one).

    Returns:
        An index in ``[0, len(tile_rows)]``; ``len(tile_rows)`` when no tile needs to run.
    """
    first = next((i for i, r in enumerate(tile_rows) if min(r + tile, height) > rows_done), len(tile_rows))
    if first == len(tile_rows):
        return first
    return first // batch_size * batch_size
