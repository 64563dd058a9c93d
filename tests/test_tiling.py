"""Tables of cases for the pure tiling math in detect/tiling.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rasterio.windows import Window

from detect.tiling import (
    blend_weights,
    model_grid_shape,
    model_to_source_window,
    resume_start,
    tile_grid,
    tile_starts,
    window_placement,
    window_touches_footprint,
)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        # shorter than or equal to one tile: a single tile at 0
        (1, 4, 0, [0]),
        (3, 4, 1, [0]),
        (4, 4, 1, [0]),
        # exact multiples of the stride: no shifted last tile
        (8, 4, 0, [0, 4]),
        (10, 4, 1, [0, 3, 6]),
        (7, 4, 1, [0, 3]),
        # not a multiple: ceil adds a tile that is moved back flush with the edge
        (9, 4, 0, [0, 4, 5]),
        (11, 4, 1, [0, 3, 6, 7]),
        (5, 4, 2, [0, 1]),
        (100, 32, 8, [0, 24, 48, 68]),
        # one pixel longer than a tile
        (33, 32, 0, [0, 1]),
    ],
)
def test_tile_starts(length: int, tile: int, overlap: int, expected: list[int]) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts == expected
    # every pixel covered, last tile flush with the edge, overlap never smaller than asked
    covered = np.zeros(max(length, tile), dtype=bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered[:length].all()
    if length >= tile:
        assert starts[-1] == length - tile
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [
        (0, 4, 0),  # empty axis
        (10, 0, 0),  # empty tile
        (10, 4, 4),  # overlap equal to the tile: zero stride
        (10, 4, -1),  # negative overlap
    ],
)
def test_tile_starts_rejects(length: int, tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        tile_starts(length, tile, overlap)


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "rows", "cols"),
    [
        (10, 20, 8, 2, [0, 2], [0, 6, 12]),
        (8, 8, 8, 0, [0], [0]),
        (5, 30, 8, 4, [0], [0, 4, 8, 12, 16, 20, 22]),
    ],
)
def test_tile_grid_rows_before_columns(
    height: int, width: int, tile: int, overlap: int, rows: list[int], cols: list[int]
) -> None:
    grid = tile_grid(height, width, tile, overlap)
    assert [row[0].row_off for row in grid] == rows
    assert [w.col_off for w in grid[0]] == cols
    assert all(w.height == tile and w.width == tile for row in grid for w in row)
    assert all(len({w.row_off for w in row}) == 1 for row in grid)  # one strip per row of tiles


@pytest.mark.parametrize(
    ("src", "scale", "expected"),
    [
        ((100, 200), (1.0, 1.0), (100, 200)),
        ((100, 200), (2.0, 2.0), (50, 100)),
        ((101, 201), (2.0, 2.0), (51, 101)),  # ceil: the model grid covers the whole raster
        ((100, 100), (0.5, 0.5), (200, 200)),  # source coarser than the model: upsampled
        ((90, 90), (0.3, 0.3), (300, 300)),  # 90 / 0.3 is 300.00000000000006 in floating point
        ((100, 100), (2.0, 1.5), (50, 67)),  # anisotropic (EPSG:4326 away from the equator)
        ((1, 1), (4.0, 4.0), (1, 1)),
    ],
)
def test_model_grid_shape(src: tuple[int, int], scale: tuple[float, float], expected: tuple[int, int]) -> None:
    assert model_grid_shape(*src, scale) == expected


@pytest.mark.parametrize(
    ("window", "scale", "expected"),
    [
        (Window(0, 0, 8, 8), (1.0, 1.0), Window(0, 0, 8, 8)),
        (Window(4, 2, 8, 8), (2.0, 2.0), Window(8, 4, 16, 16)),
        (Window(4, 2, 8, 8), (0.5, 0.5), Window(2, 1, 4, 4)),
        (Window(3, 3, 4, 4), (1.5, 2.0), Window(6, 4.5, 8, 6)),  # Window is (col_off, row_off, width, height)
    ],
)
def test_model_to_source_window(window: Window, scale: tuple[float, float], expected: Window) -> None:
    got = model_to_source_window(window, scale)
    assert got.todict() == pytest.approx(expected.todict())


@pytest.mark.parametrize("overlap", [0, 1, 4, 16])
def test_blend_weights_shape_and_range(overlap: int) -> None:
    w = blend_weights(32, overlap)
    assert w.shape == (32, 32)
    assert w.dtype == np.float32
    assert w.min() > 0  # never exactly 0: raster edges keep weight
    assert w.max() <= 1.0
    np.testing.assert_allclose(w, w.T)  # same ramp on both axes
    np.testing.assert_allclose(w, w[::-1, ::-1])  # symmetric
    if overlap == 0:
        assert np.all(w == 1)
    else:
        assert w[0, 0] < w[0, 16] < w[16, 16]  # low at edges and corners, highest in the middle
        assert w[16, 16] == w.max()
        if overlap < 16:
            assert w[16, 16] == pytest.approx(1.0)  # flat 1 between the ramps


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [
        (50, 70, 16, 4),
        (64, 64, 16, 8),
        (17, 100, 16, 6),  # last tiles overlap their neighbours by more than `overlap`
        (10, 10, 16, 4),  # raster smaller than one tile
    ],
)
def test_blending_a_constant_gives_the_constant_without_seams(height: int, width: int, tile: int, overlap: int) -> None:
    weights = blend_weights(tile, overlap)
    acc = np.zeros((height + tile, width + tile))
    wsum = np.zeros_like(acc)
    for row in tile_grid(height, width, tile, overlap):
        for w in row:
            r, c = int(w.row_off), int(w.col_off)
            acc[r : r + tile, c : c + tile] += 0.7 * weights
            wsum[r : r + tile, c : c + tile] += weights
    out = (acc / np.where(wsum > 0, wsum, 1))[:height, :width]
    assert wsum[:height, :width].min() > 0
    np.testing.assert_allclose(out, 0.7, rtol=1e-6)


def test_blend_weights_rejects_bad_floor() -> None:
    with pytest.raises(ValueError, match="floor"):
        blend_weights(8, 2, floor=0.0)


_FOOT = np.array(
    [
        [0, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
    ],
    dtype=bool,
)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # footprint cells are 10 x 10 model pixels; only cell (1, 1) = pixels [10, 20) x [10, 20) is valid
        (Window(col_off=10, row_off=10, width=10, height=10), True),
        (Window(col_off=0, row_off=0, width=10, height=10), False),  # ends exactly where the cell starts
        (Window(col_off=0, row_off=0, width=11, height=11), True),  # one pixel into the cell
        (Window(col_off=20, row_off=0, width=20, height=30), False),  # the columns to the right
        (Window(col_off=15, row_off=25, width=10, height=10), False),  # below
        (Window(col_off=-5, row_off=5, width=20, height=10), True),  # partly outside the raster
        (Window(col_off=100, row_off=100, width=10, height=10), False),  # wholly outside
    ],
)
def test_window_touches_footprint(window: Window, expected: bool) -> None:
    assert window_touches_footprint(window, _FOOT, (10.0, 10.0)) is expected


def test_blending_two_different_tiles_cross_fades() -> None:
    # two tiles side by side predicting 0 and 1: across the overlap the output rises smoothly from 0 to 1
    # (a hard seam would jump by 1 between two neighbouring pixels)
    tile, overlap = 16, 8
    weights = blend_weights(tile, overlap)[tile // 2]  # one row through the middle
    row = tile_grid(tile, 24, tile, overlap)[0]
    acc, wsum = np.zeros(24), np.zeros(24)
    for value, w in zip([0.0, 1.0], row, strict=True):
        c = int(w.col_off)
        acc[c : c + tile] += value * weights
        wsum[c : c + tile] += weights
    out = acc / wsum
    assert out[:8] == pytest.approx(0.0) and out[16:] == pytest.approx(1.0)
    steps = np.diff(out)
    assert steps.min() >= 0  # monotonic
    assert steps.max() < 0.25  # spread over the overlap, no seam


@pytest.mark.parametrize(
    ("raster_hw", "window", "out_hw", "expected"),
    [
        # inside, same size: read as is, fill everything
        ((100, 100), (10, 20, 30, 40), (30, 40), ((10, 20, 30, 40), (0, 30, 0, 40))),
        # hanging over the top-left corner: the inside quarter fills the bottom-right of the result
        ((100, 100), (-10, -10, 20, 20), (20, 20), ((0, 0, 10, 10), (10, 20, 10, 20))),
        # hanging over the bottom edge, upsampled 2x: the 10 inside rows fill the first 20 output rows
        ((100, 100), (90, 0, 20, 20), (40, 40), ((90, 0, 10, 20), (0, 20, 0, 40))),
        # downsampled 4x with a clipped edge that ends mid output pixel: snapped to whole output pixels
        ((100, 100), (0, 94, 40, 40), (10, 10), ((0, 94, 40, 8), (0, 10, 0, 2))),
        # a non-square raster: rows and columns are not swapped
        ((50, 200), (40, 150, 20, 20), (20, 20), ((40, 150, 10, 20), (0, 10, 0, 20))),
        # wholly outside, or empty
        ((100, 100), (100, 0, 10, 10), (10, 10), None),
        ((100, 100), (-20, -20, 10, 10), (10, 10), None),
        ((100, 100), (0, 0, 0, 10), (10, 10), None),
        ((100, 100), (0, 0, 10, 10), (0, 10), None),
    ],
)
def test_window_placement(raster_hw, window, out_hw, expected) -> None:
    row_off, col_off, height, width = window
    placed = window_placement(*raster_hw, Window(col_off, row_off, width, height), *out_hw)
    if expected is None:
        assert placed is None
        return
    (r, c, h, w), (r0, r1, c0, c1) = expected
    src, (rows, cols) = placed
    assert (src.row_off, src.col_off, src.height, src.width) == pytest.approx((r, c, h, w))
    assert (rows, cols) == (slice(r0, r1), slice(c0, c1))


@pytest.mark.parametrize(
    ("rows", "rows_done", "height", "batch", "expected"),
    [
        # 64-px tiles. Nothing written yet: from the start
        ([0, 0, 40, 40, 80, 80], 0, 144, 2, 0),
        # rows [0, 40) written: row 0 (0 + 64 > 40) still adds to row 40 and beyond, so it runs again
        ([0, 0, 40, 40, 80, 80], 40, 144, 2, 0),
        # rows [0, 80) written: row 0 ends at 64, done; row 40 reaches 104: from its first tile
        ([0, 0, 40, 40, 80, 80], 80, 144, 2, 2),
        # ... rounded down to a whole batch of 3, so batches hold the same tiles as before
        ([0, 0, 40, 40, 80, 80], 80, 144, 3, 0),
        # a pulled-back last row (start 96, only 16 below 80): rows 40 and 80 both reach past 96
        ([0, 40, 80, 96], 96, 160, 1, 1),
        # everything written: nothing to run, not even a partial batch
        ([0, 0, 40, 40], 104, 104, 3, 4),
        # a raster shorter than a tile, all written: the tile reaching past its edge adds to nothing
        ([0, 0], 48, 48, 1, 2),
        # tiles skipped outside the footprint leave gaps in the rows
        ([0, 120, 120, 160], 160, 224, 1, 1),
    ],
)
def test_resume_start(rows: list[int], rows_done: int, height: int, batch: int, expected: int) -> None:
    assert resume_start(rows, rows_done, 64, batch, height) == expected
