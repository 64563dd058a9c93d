"""Tests for the synthetic scene generator (datasets/synthetic.py and datasets/scene/)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from pyproj import Geod, Transformer
from shapely.geometry import Point, Polygon, shape

from core.errors import InputError
from core.files import file_sha256
from datasets import synthetic
from datasets.scene import noise
from datasets.scene.context import Box
from datasets.scene.items import LC
from datasets.scene.rasterize import polygon_mask
from datasets.scene.render import render_window
from detect.raster import window_ground_size

GEOD = Geod(ellps="WGS84")
# Small scenes keep the suite fast; seeds picked so that the scene holds poppy plots / a cut footprint.
POPPY_SEED = 3
SIZE = 320


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.crs, ds.transform


@pytest.fixture(scope="module")
def poppy_scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("poppy")
    return synthetic.render_scene(
        out, "s", POPPY_SEED, size=SIZE, gsd_m=0.05, stage="flowering", landcover=True, poppy_prob=1.0, window=256
    )


# --- determinism and seams -----------------------------------------------------------------------------------


def test_same_seed_gives_identical_files(tmp_path, poppy_scene):
    again = synthetic.render_scene(
        tmp_path, "s", POPPY_SEED, size=SIZE, gsd_m=0.05, stage="flowering", landcover=True, poppy_prob=1.0, window=256
    )
    for key in ("image", "landcover", "labels", "sidecar"):
        assert file_sha256(again[key]) == file_sha256(poppy_scene[key]), key


def test_different_seed_gives_different_pixels(tmp_path, poppy_scene):
    other = synthetic.render_scene(
        tmp_path, "t", POPPY_SEED + 1, size=SIZE, gsd_m=0.05, stage="flowering", poppy_prob=1.0, window=256
    )
    a, *_ = _read(poppy_scene["image"])
    b, *_ = _read(other["image"])
    assert (a[:3] != b[:3]).mean() > 0.5


@pytest.mark.parametrize("window", [64, 160])
def test_window_size_does_not_change_pixels(tmp_path, poppy_scene, window):
    # Small and odd-sized windows (last row/column partial) must join without seams.
    res = synthetic.render_scene(
        tmp_path,
        "w",
        POPPY_SEED,
        size=SIZE,
        gsd_m=0.05,
        stage="flowering",
        landcover=True,
        poppy_prob=1.0,
        window=window,
    )
    a, *_ = _read(poppy_scene["image"])
    b, *_ = _read(res["image"])
    assert np.array_equal(a, b)
    la, *_ = _read(poppy_scene["landcover"])
    lb, *_ = _read(res["landcover"])
    assert np.array_equal(la, lb)


def test_render_window_is_translation_consistent():
    # A window inside the scene equals the same pixels cut out of a larger window.
    scene, _ = synthetic.build_scene(11, 256, 0.015, "flowering", 1.0)
    big, lc_big = render_window(scene, Box(0, 0, 256, 256))
    small, lc_small = render_window(scene, Box(96, 64, 80, 144))
    assert np.array_equal(big[96:176, 64:208], small)
    assert np.array_equal(lc_big[96:176, 64:208], lc_small)


def test_window_must_start_on_16_pixel_grid():
    scene, _ = synthetic.build_scene(1, 128, 0.03, "none", 0.0)
    with pytest.raises(ValueError, match="multiples of 16"):
        render_window(scene, Box(8, 0, 64, 64))


# --- georeferencing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crs", "check"),
    [
        ("utm", lambda epsg: 32643 <= epsg <= 32651),
        ("cgcs2000", lambda epsg: 4513 <= epsg <= 4533),
        ("4326", lambda epsg: epsg == 4326),
        ("3857", lambda epsg: epsg == 3857),
    ],
)
def test_crs_and_true_ground_gsd(tmp_path, crs, check):
    gsd = 0.023
    res = synthetic.render_scene(tmp_path, "g", 5, size=128, gsd_m=gsd, stage="none", crs=crs, window=128)
    with rasterio.open(res["image"]) as ds:
        assert check(ds.crs.to_epsg())
        assert ds.crs.to_epsg() == res["meta"]["crs"]["epsg"]
        dy, dx = window_ground_size(ds.crs, ds.transform, ds.height / 2, ds.width / 2)
        assert dy == pytest.approx(gsd, rel=0.01)
        assert dx == pytest.approx(gsd, rel=0.01)
        # The scene centre is where the sidecar says.
        lon, lat = res["meta"]["centre_lonlat"]
        x, y = ds.transform * (ds.width / 2, ds.height / 2)
        lo, la = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
        assert (lo, la) == pytest.approx((lon, lat), abs=1e-6)
        assert 100 <= lon <= 122 and 22 <= lat <= 42


def test_cgcs2000_zone_matches_central_meridian():
    crs = synthetic.pick_crs("cgcs2000", 116.4, 39.9)
    assert crs.to_epsg() == 4527  # zone 39, central meridian 117 E
    x, _ = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(116.4, 39.9)
    assert str(int(x)).startswith("39")


def test_unknown_crs_raises():
    with pytest.raises(InputError, match="--crs"):
        synthetic.pick_crs("gk", 116, 40)


# --- labels --------------------------------------------------------------------------------------------------


def test_labels_fall_on_poppy_pixels(poppy_scene):
    with open(poppy_scene["labels"]) as f:
        fc = json.load(f)
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    assert len(fc["features"]) >= 1
    lc, _, crs, transform = _read(poppy_scene["landcover"])
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    for feat in fc["features"]:
        assert feat["properties"]["class"] == "poppy"
        assert feat["properties"]["stage"] == "flowering"
        assert feat["properties"]["setting"] in ("field", "bed", "courtyard", "edge", "interplanted")
        geom = shapely.transform(shape(feat["geometry"]), lambda c: np.c_[to_crs.transform(c[:, 0], c[:, 1])])
        m = rasterio.features.rasterize([geom], out_shape=lc.shape[1:], transform=transform).astype(bool)
        assert m.sum() > 0
        assert (lc[0][m] == LC["poppy"]).mean() >= 0.9


def test_area_is_geodesic_and_true_size(poppy_scene):
    with open(poppy_scene["labels"]) as f:
        fc = json.load(f)
    for feat, plot in zip(
        fc["features"], synthetic.build_scene(POPPY_SEED, SIZE, 0.05, "flowering", 1.0)[0].layout.plots, strict=True
    ):
        poly = shape(feat["geometry"])
        assert poly.exterior.is_ccw  # RFC 7946 right-hand rule
        area = abs(GEOD.geometry_area_perimeter(poly)[0])
        assert feat["properties"]["area_m2"] == pytest.approx(area, rel=1e-3)
        # The scene frame is ground metres: the geodesic area equals the layout's planar area.
        assert area == pytest.approx(plot.geom.area, rel=0.01)
        assert 1.5 <= area <= 200.0


def test_poppy_free_scene_has_empty_collection(tmp_path):
    res = synthetic.render_scene(tmp_path, "n", 4, size=128, gsd_m=0.04, stage="none", landcover=True, window=128)
    with open(res["labels"]) as f:
        fc = json.load(f)
    assert fc == {"type": "FeatureCollection", "features": []}
    lc, *_ = _read(res["landcover"])
    assert not (lc == LC["poppy"]).any()
    assert res["meta"]["has_poppy"] is False


# --- rasters, footprint, sidecar -----------------------------------------------------------------------------


def test_geotiff_layout_and_alpha_outside_footprint(poppy_scene):
    arr, prof, _, _ = _read(poppy_scene["image"])
    assert prof["count"] == 4 and prof["dtype"] == "uint8"
    assert prof["tiled"] and prof["blockxsize"] == 256 and prof["compress"] == "deflate"
    meta = poppy_scene["meta"]
    fp = shapely.from_wkt(meta["footprint_px_wkt"])
    inside = polygon_mask(fp, (0, 0, SIZE, SIZE), 1.0)
    alpha = arr[3]
    assert set(np.unique(alpha)) <= {0, 255}
    # The footprint WKT is rounded to 0.01 px, so allow a pixel or two along its edge.
    assert (alpha.astype(bool) != inside).sum() <= 2 * SIZE * 0.02 + 2
    assert (arr[:3][:, alpha == 0] == 0).all()


def test_cut_footprint_has_nodata(tmp_path):
    # Some scenes are cut by the edge of the survey: alpha 0 there.
    for seed in range(6):
        res = synthetic.render_scene(tmp_path, f"f{seed}", seed, size=96, gsd_m=0.05, stage="none", window=96)
        fp = shapely.from_wkt(res["meta"]["footprint_px_wkt"])
        if fp.area < 96 * 96 * 0.97:
            arr, *_ = _read(res["image"])
            assert (arr[3] == 0).mean() > 0.02
            assert (arr[3] == 255).mean() > 0.4
            return
    pytest.fail("no scene with a cut footprint among six seeds")


def test_rgb_option_writes_mask_band(tmp_path):
    res = synthetic.render_scene(tmp_path, "r", 2, size=128, gsd_m=0.03, stage="none", rgb=True, window=128)
    with rasterio.open(res["image"]) as ds:
        assert ds.count == 3
        mask = ds.dataset_mask()
        assert mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 255}


def test_sidecar_content(poppy_scene):
    with open(poppy_scene["sidecar"]) as f:
        meta = json.load(f)
    assert meta["seed"] == POPPY_SEED
    assert meta["size"] == {"height": SIZE, "width": SIZE}
    assert meta["gsd_m"] == pytest.approx(0.05)
    assert meta["crs"]["wkt"].startswith(("PROJCRS", "GEOGCRS"))
    for key in ("sun_azimuth_deg", "sun_elevation_deg", "wb_temp", "haze", "blur_px", "jpeg_quality"):
        assert key in meta["season"]
    assert meta["landcover_legend"]["12"] == "poppy"
    assert len(meta["content"]["plots"]) >= 1
    assert all("area_m2" in p and "setting" in p for p in meta["content"]["plots"])
    for c in meta["content"]["confusers"]:
        r0, c0, r1, c1 = c["bbox_px"]
        assert 0 <= r0 < r1 <= SIZE and 0 <= c0 < c1 <= SIZE
    assert meta["generator"] == synthetic.GENERATOR_VERSION


def test_generate_derives_distinct_seeds(tmp_path):
    res = synthetic.generate(tmp_path, 2, 9, size=96, gsd_m=0.05, stage="none", window=96)
    assert [r["meta"]["seed"] for r in res] == [synthetic.scene_seed(9, 0), synthetic.scene_seed(9, 1)]
    assert res[0]["meta"]["seed"] != res[1]["meta"]["seed"]
    assert (tmp_path / "synthetic_0001.tif").exists()


# --- inputs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stage": "blooming"}, "--stage"),
        ({"crs": "gk"}, "--crs"),
        ({"gsd_m": 0.0}, "--gsd"),
        ({"size": 10}, "--size"),
        ({"window": 100}, "--window"),
        ({"poppy_prob": 2.0}, "--poppy-prob"),
    ],
)
def test_bad_arguments_raise_input_error(tmp_path, kwargs, match):
    args = {"size": 128, "gsd_m": 0.03, "stage": "none", **kwargs}
    with pytest.raises(InputError, match=match):
        synthetic.render_scene(tmp_path, "x", 1, **args)


def test_cli_prints_one_line_on_error(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path), "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--size" in err


def test_cli_writes_scenes(tmp_path, capsys):
    assert (
        synthetic.main(
            [
                "--out",
                str(tmp_path),
                "--count",
                "1",
                "--seed",
                "4",
                "--size",
                "96",
                "--gsd",
                "0.05",
                "--no-poppy",
                "--landcover",
                "--crs",
                "4326",
            ]
        )
        == 0
    )
    assert (tmp_path / "synthetic_0000.landcover.tif").exists()
    assert "synthetic_0000.tif" in capsys.readouterr().out


# --- building blocks -----------------------------------------------------------------------------------------


def test_noise_grid_equals_points_and_is_window_independent():
    v = (np.arange(70) + 0.5) * 0.03
    u = (np.arange(90) + 0.5) * 0.03
    g = noise.fbm_grid(v, u, 0.4, 7, octaves=3, gsd=0.03)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    p = noise.fbm_pts(vv.ravel(), uu.ravel(), 0.4, 7, octaves=3, gsd=0.03).reshape(g.shape)
    assert np.array_equal(g, p)
    assert np.array_equal(noise.fbm_grid(v[13:50], u[21:80], 0.4, 7, octaves=3, gsd=0.03), g[13:50, 21:80])


@pytest.mark.parametrize(
    "geom",
    [
        Polygon([(0.1, 0.2), (2.3, 0.4), (1.7, 2.9)]),
        Point(1.5, 1.4).buffer(1.1).difference(Point(1.6, 1.5).buffer(0.4)),
        shapely.MultiPolygon(
            [Polygon([(0.01, 0.02), (1.1, 0.03), (1.02, 1.13)]), Polygon([(2, 2.01), (3.03, 2), (3, 3), (2, 3.02)])]
        ),
    ],
)
def test_polygon_mask_matches_gdal(geom):
    gsd = 0.037
    ours = polygon_mask(geom, (0, 0, 100, 100), gsd)
    ref = rasterio.features.rasterize([geom], out_shape=(100, 100), transform=Affine(gsd, 0, 0, 0, gsd, 0))
    assert np.array_equal(ours, ref.astype(bool))
    # And any sub-box gives the same pixels.
    assert np.array_equal(polygon_mask(geom, (17, 29, 40, 50), gsd), ours[17:57, 29:79])


def test_scene_transform_corrects_scale_factor():
    crs = synthetic.pick_crs("utm", 103.5, 30.0)  # 1.5 degrees off the central meridian of zone 48
    t = synthetic.scene_transform(crs, 103.5, 30.0, 0.03, 100, 100)
    dy, dx = window_ground_size(crs, t, 50, 50)
    assert dx == pytest.approx(0.03, rel=1e-4) and dy == pytest.approx(0.03, rel=1e-4)
    assert not math.isclose(t.a, 0.03, rel_tol=1e-5)  # the map unit is not a ground metre there
