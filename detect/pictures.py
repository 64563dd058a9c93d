"""Pictures of the orthomosaic with plots drawn on them: the preview and one image chip per plot.

Both read the orthomosaic by one decimated window read (:func:`detect.raster.read_window` with ``out_shape``), so
a picture costs its own pixels, never an array the size of the orthomosaic; outlines come from the plots'
geometries in the raster's CRS through the window's transform. Images are BGR ``uint8 [h, w, 3]`` (OpenCV's
order) until :func:`encode_jpeg`.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import Polygon

from detect.raster import RasterInfo, read_window
from detect.vectorize import DetectedPlot

__all__ = [
    "CHIP_MIN_SIDE_M",
    "CHIP_PX",
    "OUTSIDE_GREY",
    "PREVIEW_MAX_SIDE",
    "chip_window",
    "encode_jpeg",
    "render_chip",
    "render_preview",
    "write_chips",
]

PREVIEW_MAX_SIDE = 2000
CHIP_PX = 200  # a chip's side: enough to judge a plot on a phone, ~10 KB as JPEG, so hundreds fit in one page
CHIP_MIN_SIDE_M = 8.0  # ground shown around even the smallest plot: neighbouring beds and paths give context
CHIP_CONTEXT = 0.5  # a plot larger than that is shown with half its size of context on each side
OUTSIDE_GREY = 235  # outside the orthomosaic's footprint: light grey, distinct from dark soil and shadow
_OUTLINE = (0, 255, 255)  # yellow (BGR): visible on green crops, brown soil and red flowers alike


def _draw_outline(img: np.ndarray, poly: Polygon, to_px: Affine, thick: int) -> None:
    for ring in [poly.exterior, *poly.interiors]:
        xy = np.asarray(ring.coords)[:, :2]
        cols, rows = to_px * (xy[:, 0], xy[:, 1])
        pts = np.round(np.column_stack([cols, rows])).astype(np.int32)
        cv2.polylines(img, [pts], isClosed=True, color=_OUTLINE, thickness=thick, lineType=cv2.LINE_AA)


def _read_bgr(ds: rasterio.io.DatasetReader, info: RasterInfo, window: Window, shape: tuple[int, int]) -> np.ndarray:
    rgb, valid = read_window(ds, info, window, out_shape=shape)
    img = np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1])  # RGB planes -> BGR pixels for OpenCV
    img[~valid] = OUTSIDE_GREY
    return img


def render_preview(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    plots: Sequence[DetectedPlot],
    *,
    max_side: int = PREVIEW_MAX_SIDE,
) -> np.ndarray:
    """The orthomosaic downsampled to at most ``max_side`` px a side, plots outlined and labelled by ``plot_id``.

    Returns:
        A BGR ``uint8`` image ``[h, w, 3]``.
    """
    factor = max(1.0, max(info.height, info.width) / max_side)
    h, w = max(1, round(info.height / factor)), max(1, round(info.width / factor))
    img = _read_bgr(ds, info, Window(0, 0, info.width, info.height), (h, w))
    to_px = ~(info.transform * Affine.scale(info.width / w, info.height / h))
    thick = max(1, round(max(h, w) / 800))
    font = 0.4 + max(h, w) / 4000
    for p in plots:
        _draw_outline(img, p.geometry, to_px, thick)
        c = p.geometry.centroid
        cx, cy = to_px * (c.x, c.y)
        minx, _, _, maxy = p.geometry.bounds
        tx, ty = to_px * (minx, maxy)
        cv2.circle(img, (round(cx), round(cy)), 2 * thick, (0, 0, 255), -1, cv2.LINE_AA)
        org = (max(0, round(tx)), max(12, round(ty) - 3))
        # The plot_id, as in every other output (P001, ...): field teams call plots by it. A dark halo under the
        # white text keeps it readable on any background.
        cv2.putText(img, p.plot_id, org, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, p.plot_id, org, cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def chip_window(info: RasterInfo, plot: DetectedPlot) -> Window:
    """The square source window a plot's chip shows: the plot centred, with context around it.

    Its side is the plot's larger side (in source pixels) plus :data:`CHIP_CONTEXT` of it on each side, and at
    least :data:`CHIP_MIN_SIDE_M` of ground. It may extend past the raster's edges (read as outside the footprint).
    """
    inv = ~info.transform
    minx, miny, maxx, maxy = plot.geometry.bounds
    cols, rows = inv * (np.array([minx, maxx, minx, maxx]), np.array([miny, miny, maxy, maxy]))
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    side = max(r1 - r0, c1 - c0) * (1.0 + 2.0 * CHIP_CONTEXT)
    side = max(side, CHIP_MIN_SIDE_M / min(info.gsd_m))
    side = math.ceil(side)
    cr, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    return Window(col_off=round(cc - side / 2.0), row_off=round(cr - side / 2.0), width=side, height=side)


def render_chip(
    ds: rasterio.io.DatasetReader, info: RasterInfo, plot: DetectedPlot, *, size: int = CHIP_PX
) -> np.ndarray:
    """A ``size`` x ``size`` image of one plot and its surroundings (:func:`chip_window`), the plot outlined.

    Returns:
        A BGR ``uint8`` image ``[size, size, 3]``.
    """
    win = chip_window(info, plot)
    img = _read_bgr(ds, info, win, (size, size))
    to_px = ~(rasterio.windows.transform(win, info.transform) * Affine.scale(win.width / size, win.height / size))
    _draw_outline(img, plot.geometry, to_px, max(1, size // 100))
    return img


def encode_jpeg(img: np.ndarray, quality: int = 88) -> bytes:
    """JPEG bytes of a BGR image.

    Raises:
        RuntimeError: If OpenCV cannot encode it.
    """
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def write_chips(
    folder: Path, ds: rasterio.io.DatasetReader, info: RasterInfo, plots: Sequence[DetectedPlot], *, quality: int = 85
) -> Path:
    """Write one chip per plot, ``folder/PLOT_ID.jpg`` (:func:`render_chip`), into a new folder.

    The chips are written into ``folder.tmp`` and the folder renamed when all are done (an existing ``folder`` is
    replaced: the caller checks ``--overwrite`` first), so a reader never sees half a set.

    Returns:
        ``folder``.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier killed run
    tmp.mkdir(parents=True)
    try:
        for p in plots:
            (tmp / f"{p.plot_id}.jpg").write_bytes(encode_jpeg(render_chip(ds, info, p), quality))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
