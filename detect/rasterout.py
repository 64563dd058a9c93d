"""Streaming the poppy-probability raster to disk, window by window.

The probability raster is a single-band ``uint8`` GeoTIFF at the model's GSD. Value ``v`` in 1-255 means
probability ``(v - 1) / 254`` (1 = 0.0, 255 = 1.0); 0 is the nodata value, outside the orthomosaic's valid
footprint. The band carries that decoding as GDAL scale and offset (``scale = 1/254``, ``offset = -1/254``:
GDAL's ``value = raw * scale + offset``), so QGIS and ``gdalinfo`` show probabilities 0-1 and the area
outside the footprint as transparent. Nodata at 0 rather than 255 keeps thresholding safe without a special
case: every threshold above 0 encodes to 2 or more, so nodata never reaches it.

It is tiled 256 x 256 and deflate-compressed, so readers (the vectoriser, QGIS) fetch only the blocks they need.
Strips are written as soon as they are final to a plain work file (in place, durable on
:meth:`ProbRasterWriter.sync`, so a killed run can resume from it), and the GeoTIFF is made from it at the end as
``NAME.tmp``, renamed to ``NAME`` when complete: a crash never leaves a truncated raster under the final name.
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
    "work_path",
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

    Windows go first to a plain *work file* ``NAME.work`` (the encoded probabilities, nodata outside the
    footprint, ``height x width`` bytes, row by row), written in place with ordinary file writes: what :meth:`sync` has
    flushed is on disk, whatever GDAL's block cache would have done, so a killed run can continue from it
    (``resumable``). On a clean exit the GeoTIFF is made from the work file in one pass of 256-row strips and
    renamed to ``path``: its bytes depend only on the pixels, never on the order or the number of sessions that
    wrote them, so a resumed run gives the same file as one run straight through. On an exception the work
    file is deleted, unless ``resumable``.

    Args:
        path: Final file name (``.tif``).
        height: Rows of the raster, in model pixels.
        width: Columns.
        crs: The input's CRS.
        transform: Transform of the model grid (derived from the input's transform).
        overwrite: Replace an existing ``path``; otherwise an existing file is an error.
        overviews: Build overviews (2, 4, 8, ...) when the raster is larger than one screen, so GIS software
            opens it quickly.
        resumable: Keep the work file after the GeoTIFF is made and after an exception (the caller deletes it).
        reuse_work: Continue an existing work file (of a run that was interrupted) instead of starting an empty
            one; the caller has checked that it is of the same raster.

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
        resumable: bool = False,
        reuse_work: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise InputError(f"{self.path} already exists; pass --overwrite to replace it")
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.work_path = work_path(self.path)
        self.height, self.width = int(height), int(width)
        self.overviews = overviews
        self.resumable = resumable
        self.crs, self.transform = crs, transform
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.height * self.width
        reuse = reuse_work and self.work_path.is_file() and self.work_path.stat().st_size == size
        # Unbuffered: a write() that returned is in the operating system's hands, which a SIGKILL cannot undo.
        self._work = open(self.work_path, "r+b" if reuse else "w+b", buffering=0)  # noqa: SIM115 (closed in close/abort)
        if not reuse:
            self._work.truncate(size)  # sparse where nothing is written yet; reads back as 0 (invalid)

    def write(self, prob: np.ndarray, row_off: int, valid: np.ndarray | None = None, col_off: int = 0) -> None:
        """Write a block of probabilities.

        Args:
            prob: ``float`` array ``[h, w]`` in [0, 1] (or already-encoded ``uint8``, 1-255).
            row_off: First row of the block in the raster.
            valid: Optional ``bool`` array ``[h, w]``: the footprint; pixels outside it are written as nodata.
            col_off: First column of the block.
        """
        h, w = prob.shape
        data = prob.copy() if prob.dtype == np.uint8 else prob_to_uint8(prob)
        if valid is not None:
            data[~valid] = PROB_NODATA
        if col_off == 0 and w == self.width:  # whole rows: one contiguous write
            self._work.seek(row_off * self.width)
            self._work.write(data.tobytes())
            return
        for i in range(h):
            self._work.seek((row_off + i) * self.width + col_off)
            self._work.write(data[i].tobytes())

    def sync(self) -> None:
        """Make every window written so far durable (also across a power cut), before a resume record names it."""
        os.fsync(self._work.fileno())

    def _read_rows(self, row_off: int, height: int) -> np.ndarray:
        self._work.seek(row_off * self.width)
        buf = self._work.read(height * self.width)
        return np.frombuffer(buf, dtype=np.uint8).reshape(height, self.width)

    def close(self) -> Path:
        """Make the GeoTIFF from the work file and move it to its final name; returns the final path."""
        if self._work.closed:
            return self.path
        profile = {
            "driver": "GTiff",
            "height": self.height,
            "width": self.width,
            "count": 1,
            "dtype": "uint8",
            "crs": self.crs,
            "transform": self.transform,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
            "compress": "deflate",
            "predictor": 2,  # horizontal differencing: probabilities are smooth, this halves the file
            "interleave": "band",
            "BIGTIFF": "IF_SAFER",
            "nodata": PROB_NODATA,
        }
        try:
            with rasterio.open(self.tmp_path, "w", **profile) as ds:
                ds.scales = (PROB_SCALE,)
                ds.offsets = (PROB_OFFSET,)
                ds.set_band_description(1, "poppy probability")
                # One block row at a time, top to bottom: GDAL then writes every block once, in the same order.
                for row in range(0, self.height, BLOCK):
                    n = min(BLOCK, self.height - row)
                    window = Window(col_off=0, row_off=row, width=self.width, height=n)
                    ds.write(self._read_rows(row, n), 1, window=window)
                if self.overviews and max(self.height, self.width) > 2 * BLOCK:
                    factors = []
                    f = 2
                    while max(self.height, self.width) / f >= BLOCK:
                        factors.append(f)
                        f *= 2
                    ds.build_overviews(factors, Resampling.average)
        except BaseException:
            self.abort()
            raise
        self._work.close()
        if not self.resumable:
            self.work_path.unlink(missing_ok=True)
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary files (the work file stays when ``resumable``)."""
        if not self._work.closed:
            self._work.close()
        self.tmp_path.unlink(missing_ok=True)
        if not self.resumable:
            self.work_path.unlink(missing_ok=True)

    def __enter__(self) -> ProbRasterWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def work_path(path: str | Path) -> Path:
    """The work file :class:`ProbRasterWriter` writes before making ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".work")
