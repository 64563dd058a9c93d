"""Vectorising hand-made probability rasters (detect/vectorize.py), without a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

from core.errors import InputError
from core.geodesy import geodesic_area_m2
from detect.vectorize import VectorParams, vectorize
from tests.conftest import north_up, write_geotiff

GSD = 0.05  # metres per pixel of the hand-made rasters: 20 px = 1 m
UTM = "EPSG:32650"  # central meridian 117 E; easting 500000 is on it


def write_prob(path: Path, values: np.ndarray, crs: str = UTM, transform: Affine | None = None) -> Path:
    return write_geotiff(path, values.astype(np.uint8), crs=crs, transform=transform or north_up(GSD))


def canvas(h: int = 120, w: int = 120) -> np.ndarray:
    return np.zeros((h, w), dtype=np.uint8)


def test_square_across_strip_borders_is_one_polygon(tmp_path: Path) -> None:
    a = canvas()
    a[10:90, 20:60] = 255  # 80 x 40 px = 4 m x 2 m, crossing the strip borders at rows 32 and 64
    res = vectorize(write_prob(tmp_path / "p.tif", a), VectorParams(strip_rows=32), source="x.tif", model_name="m")
    assert res.pieces == 3  # one piece per strip before merging
    assert len(res.plots) == 1
    plot = res.plots[0]
    assert plot.geometry.geom_type == "Polygon"
    assert plot.area_m2 == pytest.approx(8.0, rel=0.01)
    assert plot.plot_id == "P001" and plot.source == "x.tif" and plot.model == "m"
    assert plot.score_mean == pytest.approx(1.0) and plot.score_max == pytest.approx(1.0)
    # corners are where the pixels say, in the raster's CRS
    minx, miny, maxx, maxy = plot.geometry.bounds
    assert (minx, maxy) == pytest.approx((500000.0 + 20 * GSD, 4000000.0 - 10 * GSD))
    assert (maxx, miny) == pytest.approx((500000.0 + 60 * GSD, 4000000.0 - 90 * GSD))


def test_u_shape_joined_in_a_later_strip_is_one_polygon(tmp_path: Path) -> None:
    a = canvas()
    a[5:100, 10:30] = 255  # left arm
    a[5:100, 70:90] = 255  # right arm
    a[80:100, 10:90] = 255  # the base joins them only in the last strip
    res = vectorize(write_prob(tmp_path / "u.tif", a), VectorParams(strip_rows=32))
    assert len(res.plots) == 1
    assert len(res.plots[0].geometry.interiors) == 0


def test_ring_across_a_border_keeps_its_hole(tmp_path: Path) -> None:
    a = canvas()
    a[20:100, 20:100] = 255
    a[40:80, 40:80] = 0  # a 2 m x 2 m hole (a shed): real, larger than fill_holes_m2
    res = vectorize(write_prob(tmp_path / "r.tif", a), VectorParams(strip_rows=50))
    assert len(res.plots) == 1
    poly = res.plots[0].geometry
    assert len(poly.interiors) == 1
    assert res.plots[0].area_m2 == pytest.approx(16.0 - 4.0, rel=0.01)
    assert res.plots[0].geometry_wgs84.interiors[0].is_ccw is False  # holes clockwise (RFC 7946)


@pytest.mark.parametrize(
    ("hole_px", "kept"),
    [
        (8, False),  # 0.4 m x 0.4 m = 0.16 m2 < 0.5 m2: gaps between plants, filled
        (30, True),  # 1.5 m x 1.5 m = 2.25 m2: kept
    ],
)
def test_small_holes_filled_large_kept(tmp_path: Path, hole_px: int, kept: bool) -> None:
    a = canvas()
    a[10:110, 10:110] = 255
    a[40 : 40 + hole_px, 40 : 40 + hole_px] = 0
    # no closing, so only the polygon-level hole filling can remove the hole
    res = vectorize(write_prob(tmp_path / "h.tif", a), VectorParams(close_radius_m=0.0, fill_holes_m2=0.5))
    assert len(res.plots) == 1
    assert (len(res.plots[0].geometry.interiors) == 1) is kept


def test_specks_under_min_area_dropped(tmp_path: Path) -> None:
    a = canvas()
    a[10:50, 10:50] = 255  # 2 m x 2 m = 4 m2: kept
    a[80:90, 80:90] = 255  # 0.5 m x 0.5 m = 0.25 m2: dropped at min_area 1 m2
    a[100, 20] = 255  # one pixel: removed by the opening
    path = write_prob(tmp_path / "s.tif", a)
    res = vectorize(path, VectorParams(min_area_m2=1.0))
    assert len(res.plots) == 1 and res.dropped_small == 1
    assert res.plots[0].area_m2 == pytest.approx(4.0, rel=0.01)
    assert res.total_area_m2 == pytest.approx(4.0, rel=0.01)
    assert len(vectorize(path, VectorParams(min_area_m2=0.1)).plots) == 2


def test_threshold_and_scores(tmp_path: Path) -> None:
    a = canvas()
    a[20:60, 20:60] = 153  # p = 0.6
    a[30:40, 30:40] = 255  # a confident core
    path = write_prob(tmp_path / "t.tif", a)
    low = vectorize(path, VectorParams(threshold=0.5))
    assert len(low.plots) == 1
    assert low.plots[0].score_max == pytest.approx(1.0)
    expected_mean = (1500 * 0.6 + 100 * 1.0) / 1600
    assert low.plots[0].score_mean == pytest.approx(expected_mean, abs=0.01)
    high = vectorize(path, VectorParams(threshold=0.7, min_area_m2=0.1))
    assert len(high.plots) == 1
    assert high.plots[0].area_m2 == pytest.approx(0.25, rel=0.05)  # only the 0.5 m x 0.5 m core


def test_plot_ids_ordered_north_to_south_then_west_to_east(tmp_path: Path) -> None:
    a = canvas()
    a[70:100, 10:40] = 255  # south-west
    a[10:40, 70:100] = 255  # north-east
    a[70:100, 70:100] = 255  # south-east
    res = vectorize(write_prob(tmp_path / "o.tif", a), VectorParams())
    assert [p.plot_id for p in res.plots] == ["P001", "P002", "P003"]
    cols = [p.geometry.centroid.x for p in res.plots]
    rows = [p.geometry.centroid.y for p in res.plots]
    assert rows[0] > rows[1] == pytest.approx(rows[2])  # the north one first (y grows northwards)
    assert cols[1] < cols[2]


def test_strip_size_does_not_change_the_result(tmp_path: Path) -> None:
    # blobs with holes, bays and specks: cleaning per strip (with its halo) equals cleaning the whole raster
    rng = np.random.default_rng(3)
    noise = rng.random((160, 140)).astype(np.float32)
    import cv2

    smooth = cv2.GaussianBlur(noise, (0, 0), 4)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    path = write_prob(tmp_path / "n.tif", np.round(smooth * 255))
    whole = vectorize(path, VectorParams(min_area_m2=0.05, strip_rows=1024))
    strips = vectorize(path, VectorParams(min_area_m2=0.05, strip_rows=17))
    assert len(whole.plots) >= 3
    assert strips.pieces > whole.pieces  # plots really were cut by strip borders and merged back
    assert len(strips.plots) == len(whole.plots)
    for p, q in zip(whole.plots, strips.plots, strict=True):
        assert p.plot_id == q.plot_id
        assert p.area_m2 == pytest.approx(q.area_m2, rel=1e-9)
        assert p.geometry.symmetric_difference(q.geometry).area < 1e-6 * GSD * GSD


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_geodesic_area_same_in_utm_4326_and_3857(tmp_path: Path, crs: str) -> None:
    a = canvas(200, 200)
    a[50:150, 40:160] = 255  # 100 x 120 px = 5 m x 6 m = 30 m2 on the ground (UTM scale factor 0.9996 aside)
    utm = write_prob(tmp_path / "utm.tif", a)
    with rasterio.open(utm) as src:
        transform, width, height = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        dst = np.zeros((height, width), dtype=np.uint8)
        reproject(
            a,
            dst,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.nearest,
        )
    other = write_prob(tmp_path / "other.tif", dst, crs=crs, transform=transform)
    area_utm = vectorize(utm).plots[0].area_m2
    area_other = vectorize(other).plots[0].area_m2
    truth = 30.0 / 0.9996**2  # projected metres on the central meridian are 0.9996 ground metres
    assert area_utm == pytest.approx(truth, rel=0.02)
    assert area_other == pytest.approx(truth, rel=0.02)
    assert area_other == pytest.approx(area_utm, rel=0.02)
    if crs == "EPSG:3857":
        # the nominal Web Mercator area is 1/cos(36 deg)^2 = 1.53 times too large: geodesic area must not be
        assert vectorize(other).plots[0].geometry.area > 1.4 * area_other


def test_geodesic_area_of_a_lonlat_square() -> None:
    from shapely.geometry import box

    # 0.001 deg square at the equator: 111.32 m x 110.57 m
    assert geodesic_area_m2(box(0, 0, 0.001, 0.001)) == pytest.approx(12309.07, rel=1e-4)


def test_empty_raster_gives_no_plots(tmp_path: Path) -> None:
    res = vectorize(write_prob(tmp_path / "e.tif", canvas()), VectorParams())
    assert res.plots == [] and res.total_area_m2 == 0.0 and res.pieces == 0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (VectorParams(threshold=1.5), r"--threshold 1.5: must be between 0 and 1"),
        (VectorParams(threshold=0.0), r"--threshold 0.0"),
        (VectorParams(min_area_m2=-1), r"--min-area-m2 -1"),
    ],
)
def test_bad_parameters(tmp_path: Path, params: VectorParams, match: str) -> None:
    with pytest.raises(InputError, match=match):
        vectorize(write_prob(tmp_path / "b.tif", canvas()), params)


@pytest.mark.parametrize(
    ("threshold", "cut"),
    [
        # stored v means (v - 1) / 254; 0 is nodata and never reaches a cut
        (0.5, 128),  # exactly level 127
        (0.6, 154),  # 152.4 -> the first level at or above, 153
        (0.3, 78),  # 0.3 * 254 = 76.20000000000002 in floating point: still level 77
        (0.999, 255),
        (1e-9, 2),
    ],
)
def test_threshold_to_uint8(threshold: float, cut: int) -> None:
    from detect.rasterout import threshold_to_uint8

    assert threshold_to_uint8(threshold) == cut
    assert (cut - 1) / 254 >= threshold and (cut - 2) / 254 < threshold


def test_scores_the_same_whatever_the_chunking(tmp_path: Path) -> None:
    from rasterio.features import geometry_mask

    a = canvas()
    a[10:90, 20:60] = 200  # 80 x 40 px, crossing chunk borders for 7 and 32 rows
    a[50:90, 20:60] = 230  # the lower half more confident
    a[60, 30] = 250  # the single highest pixel
    path = write_prob(tmp_path / "s.tif", a)
    scores = set()
    for strip_rows in (7, 32, 1024):  # scores are read in chunks of strip_rows rows
        res = vectorize(path, VectorParams(strip_rows=strip_rows))
        assert len(res.plots) == 1
        scores.add((res.plots[0].score_mean, res.plots[0].score_max))
    assert len(scores) == 1
    # the reference: every pixel centre inside the plot, in one piece, on the whole array
    with rasterio.open(path) as ds:
        inside = geometry_mask([res.plots[0].geometry], a.shape, ds.transform, invert=True)
    assert 3100 < inside.sum() <= 3200  # the opening may round the square's corners
    mean, top = scores.pop()
    # decoded as stored: (v - 1) / 254, nodata (0) left out
    assert mean == pytest.approx((a[inside & (a > 0)].mean() - 1) / 254, rel=1e-12)
    assert 199 / 254 < mean < 229 / 254
    assert top == pytest.approx(249 / 254, rel=1e-12)


def test_nodata_inside_a_plot_is_not_scored(tmp_path: Path) -> None:
    # a small nodata hole (a gap in the orthomosaic's footprint) is filled as a gap between plants: the plot's
    # score is that of its valid pixels, not diluted by the hole's zeros
    a = canvas()
    a[10:90, 20:60] = 128  # probability 0.5
    a[40:44, 30:34] = 0  # 0.2 m x 0.2 m = 0.04 m2 of nodata, under fill_holes_m2
    res = vectorize(write_prob(tmp_path / "n.tif", a), VectorParams(threshold=0.4))
    assert len(res.plots) == 1 and not res.plots[0].geometry.interiors
    assert res.plots[0].score_mean == pytest.approx(0.5) and res.plots[0].score_max == pytest.approx(0.5)
