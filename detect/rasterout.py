"""Streaming the poppy-probability raster to disk, window by window.

The probability raster is a single-band ``uint8`` GeoTIFF at the model's GSD. Value ``v`` in 1-255 means
probability ``(v - 1) / 254`` (1 = 0.0, 255 = 1.0); 0 is the nodata value, outside the orthomosaic's valid
footprint. The band carries that decoding as GDAL scale and offset (``scale = 1/254``, ``offset = -1/254``:
GDAL's ``value = raw * scale + offset``), so QGIS and ``gdalinfo`` show probabilities 0-1 and the area
outside the footprint as transparent. Nodata at 0 rather than 255 keeps thresholding safe without a special
case: every threshold above 0 encodes to 2 or more, so nodata never reaches it.

It is tiled 256 x 256 and deflate-compressed, so a strip can be written as soon as it is final and readers (the
vectoriser, QGIS) fetch only the blocks they need. The file is written as ``NAME.tmp`` and renamed to ``NAME``
when complete, so a crash never leaves a truncated raster under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from core.errors import InputError

__all__ = [
    "PROB_LEVELS",
    "PROB_NODATA",
    "PROB_OFFSET",
    "PROB_SCALE",
    "ProbRasterWriter",
    "decode_level",
    "prob_to_uint8",
    "threshold_to_uint8",
]

BLOCK = 256  # GeoTIFF block size: small enough for cheap windowed reads, large enough to compress well
PROB_NODATA = 0  # outside the footprint; every valid pixel is 1 or more
PROB_LEVELS = 254  # steps between probability 0 (stored 1) and 1 (stored 255)
PROB_SCALE = 1.0 / PROB_LEVELS
PROB_OFFSET = -1.0 / PROB_LEVELS


def prob_to_uint8(prob: np.ndarray) -> np.ndarray:
    """Encode probabilities in [0, 1] as ``uint8`` 1-255 (rounded; values outside are clipped); 0 stays nodata."""
    # One float32 temporary, then in place: strips are the raster's full width, so temporaries add up.
    x = np.multiply(prob, np.float32(PROB_LEVELS), dtype=np.float32)
    np.rint(x, out=x)
    np.clip(x, 0, PROB_LEVELS, out=x)
    x += 1
    return x.astype(np.uint8)


def decode_level(v: int | float) -> float:
    """Probability of one encoded value (or of a mean of encoded values), as GDAL's scale and offset decode it."""
    return (v - 1) / PROB_LEVELS


def threshold_to_uint8(threshold: float) -> int:
    """Smallest encoded value ``v`` with ``decode_level(v) >= threshold``, so thresholding can stay in ``uint8``.

    Computed by search rather than by a ceiling of ``threshold * 254``, whose rounding error (0.6 * 255 is
    153.00000000000003) can move the cut by one level. Never below 1, so nodata (0) is never above a cut.
    """
    return next((v for v in range(1, 256) if decode_level(v) >= threshold), 256)


class ProbRasterWriter:
    """Writes a probability raster by windows; use as a context manager.

    Example:
        >>> with ProbRasterWriter(path, height=h, width=w, crs=crs, transform=t) as out:  # doctest: +SKIP
        ...     out.write(prob_strip, row_off=0, valid=valid_strip)

    On a clean exit the temporary file is finished (overviews built) and renamed to ``path``; on an exception
    it is deleted.

    Args:
        path: Final file name (``.tif``).
        height: Rows of the raster, in model pixels.
        width: Columns.
        crs: The input's CRS.
        transform: Transform of the model grid (derived from the input's transform).
        overwrite: Replace an existing ``path``; otherwise an existing file is an error.
        overviews: Build overviews (2, 4, 8, ...) when the raster is larger than one screen, so GIS software
            opens it quickly.

    Raises:
        InputError: If ``path`` exists and ``overwrite`` is False.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        height: int,
        width: int,
        crs: CRS,
        transform: Affine,
        overwrite: bool = False,
        overviews: bool = True,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise InputError(f"{self.path} already exists; pass --overwrite to replace it")
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.height, self.width = int(height), int(width)
        self.overviews = overviews
        profile = {
            "driver": "GTiff",
            "height": self.height,
            "width": self.width,
            "count": 1,
            "dtype": "uint8",
            "crs": crs,
            "transform": transform,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
            "compress": "deflate",
            "predictor": 2,  # horizontal differencing: probabilities are smooth, this halves the file
            "interleave": "band",
            "BIGTIFF": "IF_SAFER",
            "nodata": PROB_NODATA,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # GDAL >= 3.x keeps the mask inside the TIFF (GDAL_TIFF_INTERNAL_MASK defaults to YES), not in a
        # .msk sidecar that could be lost when the file is copied.
        self._ds = rasterio.open(self.tmp_path, "w", **profile)
        self._ds.scales = (PROB_SCALE,)
        self._ds.offsets = (PROB_OFFSET,)
        self._ds.set_band_description(1, "poppy probability")

    def write(self, prob: np.ndarray, row_off: int, valid: np.ndarray | None = None, col_off: int = 0) -> None:
        """Write a block of probabilities.

        Args:
            prob: ``float`` array ``[h, w]`` in [0, 1] (or already-encoded ``uint8``, 1-255).
            row_off: First row of the block in the raster.
            valid: Optional ``bool`` array ``[h, w]``: the footprint; pixels outside it are written as nodata.
            col_off: First column of the block.
        """
        h, w = prob.shape
        window = Window(col_off=col_off, row_off=row_off, width=w, height=h)
        data = prob.copy() if prob.dtype == np.uint8 else prob_to_uint8(prob)
        if valid is not None:
            data[~valid] = PROB_NODATA
        self._ds.write(data, 1, window=window)

    def close(self) -> Path:
        """Finish the file and move it to its final name; returns the final path."""
        if self._ds.closed:
            return self.path
        try:
            if self.overviews and max(self.height, self.width) > 2 * BLOCK:
                factors = []
                f = 2
                while max(self.height, self.width) / f >= BLOCK:
                    factors.append(f)
                    f *= 2
                self._ds.build_overviews(factors, Resampling.average)
        finally:
            self._ds.close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if not self._ds.closed:
            self._ds.close()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> ProbRasterWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
