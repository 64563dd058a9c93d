"""Property tests (hypothesis): tiling, blending and vectorising hold for any sizes, not just the hand-picked ones."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from detect.predict import predict_raster
from detect.raster import open_raster, read_band
from detect.rasterout import ProbRasterWriter
from detect.tiling import blend_weights, tile_grid, tile_starts
from detect.vectorize import VectorParams, vectorize
from models.checkpoint import ModelSpec
from tests.bad_input_cases import write_tif

GSD = 0.03
UTM_SCALE = 0.9996  # UTM's scale factor near the central meridian: geodesic areas are ~0.08 % larger
# Tests write files to tmp_path once per example; hypothesis' own examples database is not needed.
FILE_SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


@given(length=st.integers(1, 5000), tile=st.integers(1, 600), data=st.data())
@settings(max_examples=300, deadline=None, database=None)
def test_tiles_cover_every_pixel_with_at_least_the_overlap(length: int, tile: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1))
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    # no gap: each tile begins no later than the previous one ends minus the overlap
    for a, b in itertools.pairwise(starts):
        assert b - a <= tile - overlap
    assert starts[-1] + tile >= length
    if length >= tile:
        assert starts[-1] == length - tile  # flush with the edge, nothing computed past it


@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    tile=st.integers(8, 128),
    overlap_share=st.floats(0, 0.5),
)
@settings(max_examples=150, deadline=None, database=None)
def test_normalised_blend_weights_sum_to_one(height: int, width: int, tile: int, overlap_share: float) -> None:
    overlap = min(int(tile * overlap_share), tile // 2)
    weights = blend_weights(tile, overlap).astype(np.float64)
    wsum = np.zeros((height + tile, width + tile))
    contributions = []
    for row in tile_grid(height, width, tile, overlap):
        for w in row:
            r, c = int(w.row_off), int(w.col_off)
            wsum[r : r + tile, c : c + tile] += weights
            contributions.append((r, c))
    wsum = wsum[:height, :width]
    assert (wsum > 0).all()  # every pixel gets a weight, the raster's edges included
    # Normalised, the weights of the tiles over each pixel sum to one: blending a constant gives the constant.
    total = np.zeros((height + tile, width + tile))
    for r, c in contributions:
        total[r : r + tile, c : c + tile] += (
            weights / np.pad(wsum, ((0, tile), (0, tile)), constant_values=1)[r : r + tile, c : c + tile]
        )
    np.testing.assert_allclose(total[:height, :width], 1.0, rtol=1e-9)


class _Pointwise(torch.nn.Module):
    """A 'network' whose output at a pixel depends on that pixel alone: any tiling must give the same map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[1.5]], [[-2.0]], [[0.7]]]]))
            self.conv.bias.fill_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


SPEC = ModelSpec(arch="fastunet", arch_args={}, gsd_m=GSD, tile_size=64, threshold=0.5, name="pointwise")


@pytest.fixture(scope="module")
def ortho(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 255, (4, 150, 170), dtype=np.uint8)
    data[3] = 255
    data[3, :20, :30] = 0  # a corner outside the footprint
    return write_tif(tmp_path_factory.mktemp("o") / "o.tif", data)


@pytest.fixture(scope="module")
def reference(ortho: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("ref") / "ref.tif"
    predict_raster(ortho, _Pointwise(), SPEC, prob_path=out, tile=256, overlap=0, progress=False)
    with open_raster(out) as ds:
        return read_band(ds, 1, Window(0, 0, ds.width, ds.height))


@given(tile=st.integers(32, 160), overlap_share=st.floats(0, 0.5), batch=st.integers(1, 5))
@FILE_SETTINGS
def test_probabilities_do_not_depend_on_tiling(
    tile: int, overlap_share: float, batch: int, ortho: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    overlap = min(int(tile * overlap_share), tile // 2)
    out = tmp_path / f"p{tile}_{overlap}_{batch}.tif"
    predict_raster(
        ortho,
        _Pointwise(),
        SPEC,
        prob_path=out,
        tile=tile,
        overlap=overlap,
        batch_size=batch,
        progress=False,
        overwrite=True,
    )
    with open_raster(out) as ds:
        got = read_band(ds, 1, Window(0, 0, ds.width, ds.height))
    # A pointwise model and weights normalised per pixel: equal up to float rounding (one 8-bit level).
    assert np.abs(got.astype(int) - reference.astype(int)).max() <= 1


def _write_prob(path: Path, mask: np.ndarray) -> Path:
    with ProbRasterWriter(
        path,
        height=mask.shape[0],
        width=mask.shape[1],
        crs="EPSG:32650",
        transform=Affine(GSD, 0, 500000.0, 0, -GSD, 4000000.0),
        overwrite=True,
    ) as w:
        w.write(np.where(mask, np.uint8(230), np.uint8(10)), row_off=0)
    return path


blobs = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 25), st.integers(1, 25)), min_size=0, max_size=8
)


@given(rects=blobs, holes=blobs)
@FILE_SETTINGS
def test_vectorised_plots_are_valid_disjoint_and_match_pixel_counts(
    rects: list[tuple[int, int, int, int]], holes: list[tuple[int, int, int, int]], tmp_path: Path
) -> None:
    mask = np.zeros((80, 90), dtype=bool)
    for r, c, h, w in rects:
        mask[r : r + h, c : c + w] = True
    for r, c, h, w in holes[:3]:
        mask[r : r + h // 2, c : c + w // 2] = False  # carve holes and notches
    path = _write_prob(tmp_path / "p.tif", mask)
    # No clean-up, no simplification, no minimum: polygons must then be exactly the pixels above threshold.
    params = VectorParams(
        threshold=0.5, min_area_m2=0, open_radius_m=0, close_radius_m=0, fill_holes_m2=0, simplify_px=0
    )
    plots = vectorize(path, params).plots
    geoms = [p.geometry for p in plots]
    assert all(g.is_valid and not g.is_empty for g in geoms)
    for i, a in enumerate(geoms):
        for b in geoms[i + 1 :]:
            assert a.intersection(b).area < 1e-9  # they may touch at a corner, never overlap
    px_area = GSD * GSD
    planar = sum(g.area for g in geoms)
    assert planar == pytest.approx(mask.sum() * px_area, rel=1e-6, abs=1e-9)
    # The reported area is geodesic: the planar UTM area divided by the scale factor squared, within 0.1 %.
    geodesic = sum(p.area_m2 for p in plots)
    assert geodesic == pytest.approx(mask.sum() * px_area / UTM_SCALE**2, rel=1e-3, abs=1e-9)
    union = shapely.union_all(geoms) if geoms else shapely.Polygon()
    assert union.area == pytest.approx(planar, rel=1e-9, abs=1e-12)
