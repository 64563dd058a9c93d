"""Opening orthomosaics and reading windows of them, the only place that reads rasters for inference.

An orthomosaic is checked once (:func:`inspect_raster`): it must be georeferenced, carry red, green and blue
bands, and have a pixel type we can bring to 8 bits. Its ground sample distance (GSD) is measured in metres
with :class:`pyproj.Geod` at the raster's centre, so geographic (EPSG:4326) and Web Mercator (EPSG:3857)
rasters get their true ground size rather than their nominal units.

Windows are read with :func:`read_window`, optionally resampled to the model's GSD, together with the valid
footprint from GDAL's dataset mask (which unifies an alpha band, a nodata value and an internal mask band).
A window may reach past the raster's edge: the outside is zero-filled and marked invalid, so callers can tile
without special cases at the borders. :func:`read_footprint` reads the same footprint alone (to skip tiles or
score valid pixels without decoding colour), and :func:`read_band` one band as stored (the probability raster).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from core.errors import InputError
from core.geodesy import GEOD
from detect.tiling import window_placement

__all__ = [
    "RasterInfo",
    "inspect_raster",
    "open_raster",
    "read_band",
    "read_footprint",
    "read_window",
    "window_ground_size",
]

_SUPPORTED_DTYPES = ("uint8", "uint16", "float32", "float64")


@dataclass(frozen=True)
class RasterInfo:
    """What inference needs to know about an orthomosaic.

    Attributes:
        path: The file the raster was opened from.
        height: Rows in the raster.
        width: Columns in the raster.
        count: Number of bands.
        dtype: Pixel type of the colour bands (e.g. ``"uint8"``).
        crs: The raster's coordinate reference system.
        transform: Pixel-to-CRS affine transform.
        gsd_m: Ground size of one pixel in metres, ``(row/y, col/x)``, measured geodesically at the centre.
        rgb_bands: 1-based band indexes of red, green and blue.
        alpha_band: 1-based index of the alpha band, if any.
        nodata: The nodata value, if any.
    """

    path: str
    height: int
    width: int
    count: int
    dtype: str
    crs: CRS
    transform: Affine
    gsd_m: tuple[float, float]
    rgb_bands: tuple[int, int, int]
    alpha_band: int | None
    nodata: float | None

    @property
    def mean_gsd_m(self) -> float:
        """Geometric mean of the row and column ground sizes, in metres per pixel."""
        return math.sqrt(self.gsd_m[0] * self.gsd_m[1])


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """Open a raster that GDAL can read (GeoTIFF, COG, VRT, ...).

    Raises:
        InputError: If the file is missing or GDAL cannot read it.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file; check the path")
    if p.is_dir():
        raise InputError(f"{path}: is a folder; give a raster file (GeoTIFF, COG, VRT)")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        raise InputError(f"{path}: not a raster GDAL can read ({exc}); give a GeoTIFF, COG or VRT") from exc


def _pick_rgb(ds: rasterio.io.DatasetReader) -> tuple[tuple[int, int, int], int | None]:
    """Choose the red, green, blue and alpha bands from the colour interpretation, else by position."""
    interp = list(ds.colorinterp)
    alpha = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        rgb = tuple(interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
    else:
        # Many writers leave colour interpretation as 'gray/undefined': the convention is then RGB(A) order.
        rgb = (1, 2, 3)
    if alpha is None and ds.count == 4 and ds.dtypes[3] == "uint8" and 4 not in rgb:
        # An unflagged fourth uint8 band after RGB is, in drone orthomosaics, always the footprint alpha.
        alpha = 4
    return rgb, alpha  # type: ignore[return-value]


def window_ground_size(crs: CRS, transform: Affine, row: float, col: float) -> tuple[float, float]:
    """Ground size in metres ``(row/y, col/x)`` of the pixel at ``(row, col)``, measured geodesically.

    Works for projected and geographic CRSs alike: the pixel's corners are taken to WGS84 longitude/latitude
    with pyproj and the distances measured on the ellipsoid.
    """
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x0, y0 = transform @ (col, row)
    x1, y1 = transform @ (col + 1, row)
    x2, y2 = transform @ (col, row + 1)
    (lon0, lon1, lon2), (lat0, lat1, lat2) = to_lonlat.transform([x0, x1, x2], [y0, y1, y2])
    _, _, dx = GEOD.inv(lon0, lat0, lon1, lat1)
    _, _, dy = GEOD.inv(lon0, lat0, lon2, lat2)
    return float(dy), float(dx)


def inspect_raster(ds: rasterio.io.DatasetReader) -> RasterInfo:
    """Check that a raster can be used for detection and describe it.

    Raises:
        InputError: If it has no CRS or geotransform, fewer than three bands, a rotated grid, or a pixel type
            that cannot be brought to 8-bit colour.
    """
    name = ds.name
    if ds.crs is None:
        raise InputError(
            f"{name}: has no coordinate reference system; export the orthomosaic as a GeoTIFF with its CRS "
            "(or set it with `gdal_edit.py -a_srs EPSG:XXXX`)"
        )
    if ds.transform == Affine.identity():
        raise InputError(
            f"{name}: has no georeferencing (identity geotransform); export a georeferenced GeoTIFF "
            "from your photogrammetry software"
        )
    if ds.transform.b != 0 or ds.transform.d != 0:
        raise InputError(f"{name}: rotated or sheared grids are not supported; warp it north-up with gdalwarp")
    if ds.count < 3:
        raise InputError(
            f"{name}: has {ds.count} band(s); detection needs red, green and blue (an RGB or RGBA orthomosaic)"
        )
    rgb, alpha = _pick_rgb(ds)
    dtype = ds.dtypes[rgb[0] - 1]
    if dtype not in _SUPPORTED_DTYPES:
        raise InputError(
            f"{name}: pixel type {dtype} is not supported; use 8-bit (uint8) or 16-bit (uint16) RGB "
            "(e.g. `gdal_translate -ot Byte -scale`)"
        )
    gsd = window_ground_size(ds.crs, ds.transform, ds.height / 2, ds.width / 2)
    if not all(math.isfinite(g) and g > 0 for g in gsd):
        raise InputError(f"{name}: could not measure the ground size of a pixel; check the CRS and transform")
    return RasterInfo(
        path=name,
        height=ds.height,
        width=ds.width,
        count=ds.count,
        dtype=dtype,
        crs=ds.crs,
        transform=ds.transform,
        gsd_m=gsd,
        rgb_bands=rgb,
        alpha_band=alpha,
        nodata=ds.nodata,
    )


def _to_uint8(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Bring colour values to 0-255: 16-bit RGB is divided by 257, float RGB in [0, 1] is scaled."""
    if dtype == "uint8":
        return arr.astype(np.uint8, copy=False)
    if dtype == "uint16":
        return (arr.astype(np.uint32) // 257).astype(np.uint8)
    # Float orthomosaics are reflectance-like values in [0, 1].
    return np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _out_shape(window: Window, out_shape: tuple[int, int] | None) -> tuple[int, int]:
    return out_shape if out_shape is not None else (round(float(window.height)), round(float(window.width)))


def read_window(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    window: Window,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the RGB pixels and the valid footprint of a window, optionally resampled.

    Args:
        ds: An open raster.
        info: Its description from :func:`inspect_raster`.
        window: The window in source pixels; it may extend past the raster's edges and have fractional offsets.
        out_shape: ``(height, width)`` of the result; ``None`` keeps the window's own size.
        resampling: How colour is resampled; the mask always uses nearest neighbour so that the footprint
            stays binary.

    Returns:
        ``(rgb, valid)``: ``uint8`` array ``[3, h, w]`` and ``bool`` array ``[h, w]``. Pixels outside the raster
        or outside its footprint are 0 in ``rgb`` and False in ``valid``.
    """
    out_h, out_w = _out_shape(window, out_shape)
    rgb = np.zeros((3, out_h, out_w), dtype=np.uint8)
    valid = np.zeros((out_h, out_w), dtype=bool)
    placed = window_placement(ds.height, ds.width, window, out_h, out_w)
    if placed is None:
        return rgb, valid
    src, (rows, cols) = placed
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    data = ds.read(list(info.rgb_bands), window=src, out_shape=(3, *shape), resampling=resampling)
    mask = ds.dataset_mask(window=src, out_shape=shape, resampling=Resampling.nearest) > 0
    if info.dtype.startswith("float"):
        mask &= np.all(np.isfinite(data), axis=0)
    rgb[:, rows, cols] = np.where(mask, _to_uint8(data, info.dtype), 0)
    valid[rows, cols] = mask
    return rgb, valid


def read_footprint(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    window: Window,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read only the valid footprint of a window, nearest neighbour, without decoding colour.

    The same footprint :func:`read_window` returns, for callers that need only the mask (skipping tiles,
    scoring only valid pixels): GDAL's dataset mask (alpha band, nodata value or internal mask band), sampled
    with nearest neighbour. A decimated read is served from the mask's overviews when the file has them.

    Args:
        ds: An open raster.
        info: Its description from :func:`inspect_raster`.
        window: The window in source pixels; it may extend past the raster's edges and have fractional offsets.
        out_shape: ``(height, width)`` of the result; ``None`` keeps the window's own size.

    Returns:
        ``bool`` array ``[h, w]``: True inside the raster and its footprint.

    Note:
        Float rasters may mark missing pixels as NaN without declaring it as nodata; GDAL's mask does not see
        those, so for float rasters the colour bands are read too (nearest) to keep this equal to
        :func:`read_window`'s footprint. Integer rasters read the mask alone.
    """
    out_h, out_w = _out_shape(window, out_shape)
    valid = np.zeros((out_h, out_w), dtype=bool)
    placed = window_placement(ds.height, ds.width, window, out_h, out_w)
    if placed is None:
        return valid
    src, (rows, cols) = placed
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    mask = ds.dataset_mask(window=src, out_shape=shape, resampling=Resampling.nearest) > 0
    if info.dtype.startswith("float"):
        data = ds.read(list(info.rgb_bands), window=src, out_shape=(3, *shape), resampling=Resampling.nearest)
        mask &= np.all(np.isfinite(data), axis=0)
    valid[rows, cols] = mask
    return valid


def read_band(
    ds: rasterio.io.DatasetReader,
    band: int,
    window: Window,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.nearest,
    fill: float = 0,
) -> np.ndarray:
    """Read one band of a window as stored (no colour conversion, no footprint), optionally resampled.

    For single-band rasters such as the probability raster, whose values are read back as they were written.

    Args:
        ds: An open raster.
        band: 1-based band index.
        window: The window in source pixels; it may extend past the raster's edges and have fractional offsets.
        out_shape: ``(height, width)`` of the result; ``None`` keeps the window's own size.
        resampling: How values are resampled when ``out_shape`` differs from the window's size.
        fill: Value of the pixels outside the raster.

    Returns:
        Array ``[h, w]`` in the band's own dtype.
    """
    out_h, out_w = _out_shape(window, out_shape)
    out = np.full((out_h, out_w), fill, dtype=ds.dtypes[band - 1])
    placed = window_placement(ds.height, ds.width, window, out_h, out_w)
    if placed is None:
        return out
    src, (rows, cols) = placed
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    out[rows, cols] = ds.read(band, window=src, out_shape=shape, resampling=resampling)
    return out
