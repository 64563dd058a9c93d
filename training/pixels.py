"""Pixel counting: how well predicted outlines fit the labels, strip by strip on the model grid.

The predicted plots are burnt back onto the model grid strip by strip, the labels too
(:func:`datasets.labels.rasterize_window`), and true-positive, false-positive and false-negative pixels are
counted over the valid footprint (read from the orthomosaic with :func:`detect.raster.read_footprint` at the model
grid) inside the area of interest (AOI). No array is ever the size of the orthomosaic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from datasets.labels import IGNORE, LabelSet, rasterize_window, window_bounds
from detect.raster import RasterInfo, read_footprint, window_ground_size
from detect.tiling import row_strips

__all__ = ["EvalGrid", "PixelCounts", "count_pixels", "strips"]

_STRIP_PIXELS = 1 << 22  # pixels per strip of the pixel pass (about 4 M): bounds memory on wide rasters


@dataclass(frozen=True)
class EvalGrid:
    """The pixel grid on which pixel scores are counted (the probability raster's: the model grid).

    Attributes:
        height: Rows.
        width: Columns.
        transform: Pixel to CRS coordinates, in the orthomosaic's CRS.
    """

    height: int
    width: int
    transform: Affine


@dataclass(frozen=True)
class PixelCounts:
    """Pixel counts of one scene, one entry per prediction set (threshold).

    Attributes:
        tp: Poppy pixels predicted as poppy (valid, inside the AOI), ``int64 [sets]``.
        fp: Background pixels predicted as poppy.
        fn: Poppy pixels missed.
        valid_m2: Valid, labelled ground (footprint inside the AOI), square metres.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    valid_m2: float


def strips(grid: EvalGrid) -> list[Window]:
    """Full-width windows of at most about ``_STRIP_PIXELS`` pixels covering the grid, top to bottom."""
    return row_strips(grid.height, grid.width, _STRIP_PIXELS)


def count_pixels(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    labels: LabelSet,
    aoi: LabelSet | None,
    pred_sets: Sequence[LabelSet | None],
    grid: EvalGrid,
) -> PixelCounts:
    """Count pixel outcomes of several prediction sets against the labels on the model grid.

    Args:
        ds: The open orthomosaic (only its footprint mask is read).
        info: Its inspection record.
        labels: Label polygons in the orthomosaic's CRS.
        aoi: Where labelling is complete; None for the whole raster.
        pred_sets: Predicted polygons per threshold; None where a threshold predicted nothing.
        grid: The model grid on which pixels are counted.

    Returns:
        The counts, one entry per prediction set.
    """
    n_t = len(pred_sets)
    gy, gx = window_ground_size(info.crs, grid.transform, grid.height / 2, grid.width / 2)
    px_m2 = gy * gx
    tp = np.zeros(n_t, dtype=np.int64)
    fp = np.zeros(n_t, dtype=np.int64)
    fn = np.zeros(n_t, dtype=np.int64)
    valid_px = 0
    for win in strips(grid):
        shape = (int(win.height), int(win.width))
        wt = window_transform(win, grid.transform)
        left, bottom, right, top = window_bounds(wt, shape)
        src = from_bounds(left, bottom, right, top, transform=info.transform)
        valid = read_footprint(ds, info, src, out_shape=shape)  # the mask only: no colour bands read
        truth = rasterize_window(labels, wt, shape, aoi=aoi)
        scored = valid & (truth != IGNORE)
        n_scored = int(scored.sum())
        if n_scored == 0:
            continue
        valid_px += n_scored
        pos = scored & (truth == 1)
        n_pos = int(pos.sum())
        for k, ps in enumerate(pred_sets):
            if ps is None or len(ps.query((left, bottom, right, top))) == 0:
                fn[k] += n_pos
                continue
            pred = rasterize_window(ps, wt, shape) == 1
            pred &= scored
            n_tp = int((pred & pos).sum())
            tp[k] += n_tp
            fp[k] += int(pred.sum()) - n_tp
            fn[k] += n_pos - n_tp
    return PixelCounts(tp=tp, fp=fp, fn=fn, valid_m2=valid_px * px_m2)
