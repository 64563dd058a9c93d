"""Opening orthomosaics: checks, ground sample distance, windowed and resampled reads with the footprint."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from detect.errors import InputError
from detect.raster import inspect_raster, open_raster, read_window


def write_tif(path, data, crs="EPSG:32650", transform=None, nodata=None, alpha=False, dtype=None):
    count, height, width = data.shape
    profile = dict(
        driver="GTiff",
        height=height,
        width=width,
        count=count,
        dtype=dtype or data.dtype,
        crs=crs,
        transform=transform if transform is not None else from_origin(500000, 4000000, 0.02, 0.02),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if alpha:
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path


def rgba(height=40, width=60):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (4, height, width), dtype=np.uint8)
    data[3] = 255
    data[3, :, :10] = 0  # left strip outside the footprint
    return data


@pytest.mark.parametrize(
    ("crs", "transform", "expected"),
    [
        # UTM: the nominal pixel size is the ground size (up to the scale factor, < 0.1 % near the meridian).
        ("EPSG:32650", from_origin(500000, 4000000, 0.02, 0.02), 0.02),
        # Geographic: 0.02 m at latitude 36 is about 1.8e-7 degrees of latitude.
        ("EPSG:4326", from_origin(117.0, 36.0, 0.02 / (111319.49 * np.cos(np.radians(36))), 0.02 / 110946), 0.02),
        # Web Mercator metres are stretched by 1/cos(latitude): 0.05 nominal at 36 degrees is about 0.0405 m.
        ("EPSG:3857", from_origin(13024380, 4300621, 0.05, 0.05), 0.05 * np.cos(np.radians(36.0))),
    ],
)
def test_gsd_in_metres_for_any_crs(tmp_path, crs, transform, expected):
    path = write_tif(tmp_path / "a.tif", rgba(), crs=crs, transform=transform, alpha=True)
    with open_raster(path) as ds:
        info = inspect_raster(ds)
    assert info.gsd_m[1] == pytest.approx(expected, rel=0.01)
    assert info.gsd_m[0] == pytest.approx(expected, rel=0.01)


def test_rgba_footprint_and_window_past_edge(tmp_path):
    data = rgba()
    path = write_tif(tmp_path / "a.tif", data, alpha=True)
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        assert info.rgb_bands == (1, 2, 3) and info.alpha_band == 4
        rgb, valid = read_window(ds, info, Window(col_off=-5, row_off=30, width=20, height=20))
    assert rgb.shape == (3, 20, 20) and valid.shape == (20, 20)
    assert not valid[:, :15].any()  # 5 px beyond the left edge + 10 px of alpha 0
    assert valid[:10, 15:].all()
    assert not valid[10:].any()  # beyond the bottom edge
    np.testing.assert_array_equal(rgb[:, :10, 15:], data[:3, 30:40, 10:15])
    assert (rgb[:, :, :15] == 0).all()


def test_nodata_marks_invalid(tmp_path):
    data = np.full((3, 8, 8), 100, dtype=np.uint8)
    data[:, 0, :] = 0
    path = write_tif(tmp_path / "a.tif", data, nodata=0)
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        _, valid = read_window(ds, info, Window(0, 0, 8, 8))
    assert not valid[0].any() and valid[1:].all()


def test_resampled_read_halves_resolution(tmp_path):
    data = np.zeros((3, 40, 40), dtype=np.uint8)
    data[0, 10:30, 10:30] = 200
    path = write_tif(tmp_path / "a.tif", data)
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        rgb, valid = read_window(ds, info, Window(0, 0, 40, 40), out_shape=(20, 20))
    assert rgb.shape == (3, 20, 20) and valid.all()
    # The square covers output pixels 5-14; bilinear blurs its one-pixel rim, the inside and outside stay.
    assert (rgb[0, 6:14, 6:14] == 200).all()
    assert (rgb[0, :4] == 0).all() and (rgb[0, 16:] == 0).all()
    assert rgb[0].astype(float).sum() == pytest.approx(200 * 100, rel=0.05)


def test_uint16_is_scaled_to_8_bit(tmp_path):
    data = np.full((3, 4, 4), 65535, dtype=np.uint16)
    path = write_tif(tmp_path / "a.tif", data)
    with open_raster(path) as ds:
        rgb, _ = read_window(ds, inspect_raster(ds), Window(0, 0, 4, 4))
    assert (rgb == 255).all()


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("no_crs", "has no coordinate reference system"),
        ("two_bands", "has 2 band"),
        ("int16", "pixel type int16 is not supported"),
    ],
)
def test_bad_rasters_are_refused(tmp_path, kind, match):
    if kind == "no_crs":
        path = write_tif(tmp_path / "a.tif", np.zeros((3, 4, 4), np.uint8), crs=None)
    elif kind == "two_bands":
        path = write_tif(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8))
    else:
        path = write_tif(tmp_path / "a.tif", np.zeros((3, 4, 4), np.int16))
    with open_raster(path) as ds, pytest.raises(InputError, match=match):
        inspect_raster(ds)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_raster(tmp_path / "nope.tif")
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(InputError, match="not a raster GDAL can read"):
        open_raster(bad)


def test_real_odm_orthophoto():
    """A real OpenDroneMap orthophoto (RGBA, alpha footprint, 0.5 m/px, UTM 15N), when ../shared is present."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/data/real/odm_orthophoto_50cm_utm15n.tif"
    if not path.exists():
        pytest.skip("shared test data not present")
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        rgb, valid = read_window(ds, info, Window(0, 0, info.width, info.height))
    assert info.crs.to_epsg() == 32615 and info.alpha_band == 4
    assert info.gsd_m[1] == pytest.approx(0.5, rel=0.01)
    assert 0 < valid.mean() < 1  # an irregular footprint: some pixels inside, some outside
    assert rgb[:, ~valid].max() == 0
