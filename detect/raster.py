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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import rasterio.features
import shapely
import shapely.geometry
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from core.errors import InputError
from core.geodesy import GEOD
from detect.tiling import window_placement

__all__ = [
    "RasterInfo",
    "check_has_pixels",
    "check_readable",
    "footprint_outline",
    "inspect_raster",
    "open_raster",
    "parse_bands",
    "read_band",
    "read_footprint",
    "read_window",
    "window_ground_size",
]

_SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
# Formats of single photos: without georeferencing these are camera frames, not orthomosaics.
_PHOTO_DRIVERS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "HEIF", "JPEGXL")
SAMPLE_SIDE = 512  # longest side of the decimated read that measures the value range of non-8-bit rasters
# Bit depths cameras store in 16- or 32-bit files; values are scaled from the smallest that holds the data.
_BIT_DEPTHS = (8, 10, 12, 14, 16, 24, 32)


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
        value_range: ``(low, high)`` stored values mapped to 0 and 255 (``(0, 255)`` for 8-bit).
        value_scaling: How ``value_range`` was found, one line for the log and the summary.
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
    value_range: tuple[float, float] = (0.0, 255.0)
    value_scaling: str = "8-bit values as stored"

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
    if p.stat().st_size == 0:
        raise InputError(f"{path}: is empty (0 bytes): the copy or export did not finish; copy or export it again")
    try:
        # inspect_raster says what is wrong with a photo; GDAL's warning would only add noise (and bad advice).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(p)
    except RasterioIOError as exc:
        raise InputError(
            f"{path}: not a raster GDAL can read ({' '.join(str(exc).split())}); if it is a GeoTIFF it may be "
            "truncated or damaged: copy or export it again; otherwise give a GeoTIFF, COG or VRT"
        ) from exc


def parse_bands(text: str | None) -> tuple[int, int, int] | None:
    """Parse ``--bands R,G,B`` (1-based band numbers of red, green and blue, e.g. ``3,2,1``).

    Raises:
        InputError: Unless three positive integers are given.
    """
    if text is None or str(text).strip() == "":
        return None
    try:
        bands = tuple(int(b) for b in str(text).split(","))
    except ValueError:
        bands = ()
    if len(bands) != 3 or min(bands) < 1:
        raise InputError(f"--bands {text}: give the band numbers of red, green and blue, e.g. --bands 3,2,1")
    return bands  # type: ignore[return-value]


def _pick_rgb(
    ds: rasterio.io.DatasetReader, bands: tuple[int, int, int] | None = None
) -> tuple[tuple[int, int, int], int | None]:
    """Choose the red, green, blue and alpha bands: as given, from the colour interpretation, else by position."""
    interp = list(ds.colorinterp)
    alpha = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None
    if bands is not None:
        if max(bands) > ds.count:
            raise InputError(
                f"{ds.name}: --bands {','.join(map(str, bands))} names band {max(bands)} but the raster has "
                f"{ds.count}; give numbers from 1 to {ds.count}"
            )
        return bands, (alpha if alpha not in bands else None)
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        rgb = tuple(interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
    elif ds.count > 4:
        # Multispectral cameras store blue, green, red, red edge, NIR in varying orders: guessing would feed
        # the model the wrong colours and find nothing, silently.
        raise InputError(
            f"{ds.name}: has {ds.count} bands and none is marked red, green or blue; name them with "
            "--bands R,G,B (e.g. --bands 3,2,1 when bands 1-3 are blue, green, red)"
        )
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


def _no_georeferencing(ds: rasterio.io.DatasetReader) -> InputError | None:
    """The error for a raster that cannot be placed on the map, saying what it most likely is and what to do."""
    name = ds.name
    gcps, _ = ds.gcps
    if gcps and ds.transform == Affine.identity():
        return InputError(
            f"{name}: is placed by {len(gcps)} ground control points, not a geotransform; warp it onto a "
            f"north-up grid first: gdalwarp -r bilinear {Path(name).name} warped.tif"
        )
    if ds.crs is None and ds.transform == Affine.identity():
        kind = "a photo" if ds.driver in _PHOTO_DRIVERS else "an image without georeferencing"
        return InputError(
            f"{name}: is {kind} ({ds.driver}, no map coordinates), not an orthomosaic; build an orthomosaic from "
            "the flight's photos with photogrammetry software (OpenDroneMap, Pix4D, DJI Terra) and give its "
            "GeoTIFF"
        )
    if ds.crs is None:
        return InputError(
            f"{name}: has no coordinate reference system; export the orthomosaic as a GeoTIFF with its CRS "
            "(or set it with `gdal_edit.py -a_srs EPSG:XXXX`)"
        )
    if not (ds.crs.is_projected or ds.crs.is_geographic):
        return InputError(
            f"{name}: its CRS is a local or engineering one ({pyproj.CRS.from_wkt(ds.crs.to_wkt()).name!r}), "
            "not tied to the Earth, so plots cannot be put on a map; export the orthomosaic in a projected CRS "
            "(e.g. UTM) or WGS84"
        )
    if ds.transform == Affine.identity():
        return InputError(
            f"{name}: has no georeferencing (identity geotransform); export a georeferenced GeoTIFF "
            "from your photogrammetry software"
        )
    return None


def _bit_depth_high(value: float) -> float:
    """Largest value of the smallest common bit depth that holds ``value`` (4000 -> 4095: 12-bit)."""
    for bits in _BIT_DEPTHS:
        if value <= 2**bits - 1:
            return float(2**bits - 1)
    return float(value)


def _value_range(ds: rasterio.io.DatasetReader, rgb: tuple[int, int, int], dtype: str) -> tuple[float, float, str]:
    """Which stored values map to black and white, and how that was found.

    8-bit is taken as stored. Otherwise, in this order: an ``NBITS`` tag (12-bit data in a 16-bit file says
    so when the writer was careful); else the values themselves, read once from a decimated view of the
    whole raster (GDAL serves it from overviews when there are any) inside the valid footprint. Integer data
    are scaled from 0 to the top of the smallest common bit depth holding the sample's maximum (a 12-bit
    camera's 0-4095, not 0-65535: divided by 257 such data would look black and nothing would be found);
    floats in [0, 1] (reflectance) and [0, 255] as they are, other floats and signed data from their 0.1 and
    99.9 percentiles. Deterministic, so every tile and every run of the same file is scaled the same.
    """
    if dtype == "uint8":
        return 0.0, 255.0, "8-bit values as stored"
    nbits = ds.tags(rgb[0], "IMAGE_STRUCTURE").get("NBITS")
    if nbits and nbits.isdigit() and not dtype.startswith("float"):
        return (
            0.0,
            float(2 ** int(nbits) - 1),
            f"{dtype} values 0-{2 ** int(nbits) - 1} from the file's NBITS={nbits} tag",
        )
    scale = min(1.0, SAMPLE_SIDE / max(ds.height, ds.width))
    shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
    data = ds.read(list(rgb), out_shape=(3, *shape), resampling=Resampling.nearest).astype(np.float64)
    mask = ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
    values = data[:, mask & np.all(np.isfinite(data), axis=0)]
    where = f"a {shape[1]} x {shape[0]} px sample"
    if values.size == 0:
        return 0.0, 255.0, f"{dtype}: no valid value in {where}"
    vmin, vmax = float(values.min()), float(values.max())
    if dtype.startswith("float"):
        if vmin >= 0 and vmax <= 1:
            return 0.0, 1.0, f"{dtype} reflectance 0-1 (data {vmin:.3g}-{vmax:.3g} in {where})"
        if vmin >= 0 and vmax <= 255:
            return 0.0, 255.0, f"{dtype} values 0-255 (data {vmin:.3g}-{vmax:.3g} in {where})"
    elif vmin >= 0:
        high = _bit_depth_high(vmax)
        bits = round(math.log2(high + 1))
        return 0.0, high, f"{dtype} values scaled as {bits}-bit, 0-{high:.0f} (data maximum {vmax:.0f} in {where})"
    low, high = (float(v) for v in np.percentile(values, [0.1, 99.9]))
    if not high > low:
        low, high = vmin, vmin + 1.0
    return low, high, f"{dtype} values stretched from their 0.1-99.9 % range {low:.4g}-{high:.4g} (in {where})"


def inspect_raster(ds: rasterio.io.DatasetReader, bands: tuple[int, int, int] | None = None) -> RasterInfo:
    """Check that a raster can be used for detection and describe it.

    Args:
        ds: The open raster.
        bands: 1-based band numbers of red, green and blue (``--bands``); ``None`` picks them from the colour
            interpretation, else the first three.

    Raises:
        InputError: If it is a photo or has no CRS or geotransform (or ground control points instead), a local
            CRS, fewer than three bands, more than four without ``bands``, a rotated grid, or a pixel type
            that cannot be brought to 8-bit colour.
    """
    name = ds.name
    problem = _no_georeferencing(ds)
    if problem is not None:
        raise problem
    if ds.transform.b != 0 or ds.transform.d != 0:
        raise InputError(
            f"{name}: rotated or sheared grids are not supported; warp it north-up: "
            f"gdalwarp -r bilinear {Path(name).name} northup.tif"
        )
    if ds.count < 3 and bands is None:
        what = {1: "a grey, thermal or elevation raster?", 2: "grey with alpha?"}.get(ds.count, "")
        raise InputError(
            f"{name}: has {ds.count} band(s) ({what}); detection needs red, green and blue (an RGB or RGBA orthomosaic)"
        )
    rgb, alpha = _pick_rgb(ds, bands)
    dtype = ds.dtypes[rgb[0] - 1]
    if dtype not in _SUPPORTED_DTYPES:
        raise InputError(
            f"{name}: pixel type {dtype} is not supported; use integer or float RGB, best 8-bit "
            "(e.g. `gdal_translate -ot Byte -scale`)"
        )
    try:
        gsd = window_ground_size(ds.crs, ds.transform, ds.height / 2, ds.width / 2)
    except Exception as exc:  # pyproj raises several types for CRSs it cannot take to WGS84
        raise InputError(
            f"{name}: its CRS {ds.crs.to_string()[:60]} cannot be converted to WGS84 ({type(exc).__name__}); "
            "export the orthomosaic in a standard CRS (an EPSG code)"
        ) from exc
    if not all(math.isfinite(g) and g > 0 for g in gsd):
        raise InputError(f"{name}: could not measure the ground size of a pixel; check the CRS and transform")
    low, high, how = _value_range(ds, rgb, dtype)
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
        value_range=(low, high),
        value_scaling=how,
    )


def check_readable(ds: rasterio.io.DatasetReader, info: RasterInfo) -> None:
    """Read the last block of each colour band, where a truncated copy fails, before any long work.

    Raises:
        InputError: Naming the file and saying to copy or export it again.
    """
    bh, bw = ds.block_shapes[0] if ds.block_shapes else (256, 256)
    row, col = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
    window = Window(col, row, min(bw, ds.width - col), min(bh, ds.height - row))
    try:
        ds.read(list(info.rgb_bands), window=window)
    except RasterioIOError as exc:
        raise InputError(
            f"{info.path}: the end of the file cannot be read ({' '.join(str(exc).split())[:160]}); it is "
            "truncated or damaged: copy or export it again"
        ) from exc


def check_has_pixels(ds: rasterio.io.DatasetReader, info: RasterInfo) -> None:
    """Refuse a raster whose footprint is empty (all nodata, or alpha 0 everywhere).

    Judged on an averaged, decimated read of GDAL's mask (served from overviews when present), so any cell
    holding valid pixels counts; a footprint so thin that it fills under 0.2 % of every cell is taken as empty.

    Raises:
        InputError: Naming the file.
    """
    scale = min(1.0, 1024 / max(ds.height, ds.width))
    shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
    mask = ds.dataset_mask(out_shape=shape, resampling=Resampling.average)
    if mask.any():
        return
    why = f"nodata value {info.nodata:g}" if info.nodata is not None else "its alpha band or mask"
    raise InputError(
        f"{info.path}: holds no valid pixel (every pixel is marked empty by {why}); check that the export "
        "finished, or give the right orthomosaic"
    )


def _to_uint8(arr: np.ndarray, dtype: str, value_range: tuple[float, float] = (0.0, 255.0)) -> np.ndarray:
    """Bring colour values to 0-255, mapping ``value_range`` (see :func:`inspect_raster`) linearly."""
    if dtype == "uint8":
        return arr.astype(np.uint8, copy=False)
    low, high = value_range
    x = (np.nan_to_num(arr.astype(np.float32)) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


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
    rgb[:, rows, cols] = np.where(mask, _to_uint8(data, info.dtype, info.value_range), 0)
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


def footprint_outline(ds: rasterio.io.DatasetReader, info: RasterInfo, side: int = 512) -> shapely.Geometry:
    """The valid footprint as a polygon in the raster's CRS, from one decimated read of GDAL's mask.

    For maps of a flight (where each orthomosaic lies), not for measuring: its edges are as coarse as the
    decimated read, at most ``side`` cells along the longer side (served from overviews when present).

    Returns:
        A (multi)polygon; empty when no cell is valid.
    """
    k = min(1.0, side / max(info.height, info.width))
    shape = (max(1, round(info.height * k)), max(1, round(info.width * k)))
    mask = (ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0).astype(np.uint8)
    transform = info.transform * Affine.scale(info.width / shape[1], info.height / shape[0])
    polys = [shapely.geometry.shape(g) for g, v in rasterio.features.shapes(mask, mask=mask > 0, transform=transform)]
    return shapely.union_all(polys) if polys else shapely.Polygon()
