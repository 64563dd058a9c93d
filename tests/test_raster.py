"""Opening orthomosaics: checks, ground sample distance, windowed and resampled reads with the footprint."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import from_origin
from rasterio.windows import Window

from core.errors import InputError
from detect.raster import inspect_raster, open_raster, read_band, read_footprint, read_window
from tests.conftest import write_geotiff


def write_tif(path, data, crs="EPSG:32650", transform=None, nodata=None, alpha=False, dtype=None):
    rgba = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return write_geotiff(
        path,
        data,
        crs=crs,
        transform=transform,
        gsd=0.02,
        nodata=nodata,
        dtype=dtype,
        colorinterp=rgba if alpha else None,
    )


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
        ("complex", "pixel type complex64 is not supported"),
    ],
)
def test_bad_rasters_are_refused(tmp_path, kind, match):
    if kind == "no_crs":
        path = write_tif(tmp_path / "a.tif", np.zeros((3, 4, 4), np.uint8), crs=None)
    elif kind == "two_bands":
        path = write_tif(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8))
    else:
        path = write_tif(tmp_path / "a.tif", np.zeros((3, 4, 4), np.complex64))
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


# --- read_footprint / read_band (mask-only and single-band readers) -------------------------------------------


@pytest.mark.parametrize(
    ("window", "out_shape"),
    [
        (Window(col_off=0, row_off=0, width=60, height=40), None),  # the whole raster
        (Window(col_off=-5, row_off=30, width=20, height=20), None),  # past the left and bottom edges
        (Window(col_off=-30, row_off=-20, width=120, height=80), (20, 30)),  # decimated, padded all round
        (Window(col_off=2.5, row_off=1.5, width=17, height=13), (26, 34)),  # fractional, upsampled 2x
        (Window(col_off=100, row_off=0, width=10, height=10), None),  # wholly outside: all False
    ],
)
def test_read_footprint_matches_read_window(tmp_path, window, out_shape):
    path = write_tif(tmp_path / "a.tif", rgba(), alpha=True)
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        valid = read_footprint(ds, info, window, out_shape)
        _, expected = read_window(ds, info, window, out_shape, resampling=Resampling.nearest)
    assert valid.dtype == bool
    assert valid.shape == (out_shape or (round(window.height), round(window.width)))
    np.testing.assert_array_equal(valid, expected)


def test_read_footprint_values_and_no_colour_read(tmp_path, monkeypatch):
    path = write_tif(tmp_path / "a.tif", rgba(), alpha=True)
    with open_raster(path) as ds:
        info = inspect_raster(ds)

        def no_read(*args, **kwargs):
            raise AssertionError("read_footprint decoded colour bands")

        monkeypatch.setattr(ds, "read", no_read)  # only the dataset mask may be read
        valid = read_footprint(ds, info, Window(col_off=-5, row_off=30, width=20, height=20))
        half = read_footprint(ds, info, Window(0, 0, 60, 40), out_shape=(20, 30))
    assert not valid[:, :15].any() and valid[:10, 15:].all() and not valid[10:].any()
    # alpha is 0 in source columns 0-9: output columns 0-4 at half resolution
    assert not half[:, :5].any() and half[:, 5:].all()


def test_read_footprint_float_nan_is_invalid(tmp_path):
    data = np.full((3, 6, 6), 0.5, dtype=np.float32)
    data[:, 2, 3] = np.nan  # a hole GDAL's mask does not know about (no nodata declared)
    path = write_tif(tmp_path / "f.tif", data)
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        valid = read_footprint(ds, info, Window(-1, -1, 8, 8))
        _, expected = read_window(ds, info, Window(-1, -1, 8, 8))
    assert valid.sum() == 35 and not valid[3, 4]
    np.testing.assert_array_equal(valid, expected)


@pytest.mark.parametrize(
    ("window", "out_shape", "fill", "expected"),
    [
        # rows 0-2, cols 0-2 of a 4 x 4 raster holding 10 * row + col
        (Window(0, 0, 3, 3), None, 0, [[0, 1, 2], [10, 11, 12], [20, 21, 22]]),
        # one pixel past the top-left corner, filled with 255
        (Window(-1, -1, 3, 3), None, 255, [[255, 255, 255], [255, 0, 1], [255, 10, 11]]),
        # decimated 2x with nearest: each output pixel takes the source pixel under its centre (1, 3)
        (Window(0, 0, 4, 4), (2, 2), 0, [[11, 13], [31, 33]]),
    ],
)
def test_read_band(tmp_path, window, out_shape, fill, expected):
    values = (10 * np.arange(4)[:, None] + np.arange(4)[None, :]).astype(np.uint8)
    path = tmp_path / "p.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=4,
        width=4,
        count=1,
        dtype="uint8",
        crs="EPSG:32650",
        transform=from_origin(500000, 4000000, 0.03, 0.03),
    ) as ds:
        ds.write(values, 1)
    with rasterio.open(path) as ds:
        out = read_band(ds, 1, window, out_shape, fill=fill)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.uint8))
