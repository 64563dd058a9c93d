"""Shared test data: tiny GeoTIFFs and label files written to ``tmp_path`` from an explicit CRS and transform.

The writers are plain functions (``from tests.conftest import write_geotiff``) for module-level scene builders,
and fixtures of the same names for tests that take them as arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.enums import ColorInterp

UTM = "EPSG:32650"
ORIGIN = (500000.0, 4000000.0)  # top-left corner of a raster unless a test says otherwise


def north_up(gsd: float, origin: tuple[float, float] = ORIGIN) -> Affine:
    """A north-up transform of ``gsd`` CRS units per pixel with its top-left corner at ``origin``."""
    return Affine(gsd, 0, origin[0], 0, -gsd, origin[1])


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: Any = UTM,
    transform: Affine | None = None,
    gsd: float = 0.05,
    nodata: float | None = None,
    dtype: Any = None,
    alpha: np.ndarray | None = None,
    colorinterp: Sequence[ColorInterp] | None = None,
) -> Path:
    """Write ``data`` (``[bands, rows, cols]``, or ``[rows, cols]`` for one band) as a GeoTIFF.

    Args:
        path: The file.
        data: The pixels.
        crs: Any CRS rasterio takes.
        transform: Pixel to CRS; None for :func:`north_up` at ``gsd``.
        gsd: Pixel size when ``transform`` is None.
        nodata: The nodata value, if any.
        dtype: The pixel type; None for the array's.
        alpha: A ``[rows, cols]`` alpha band appended as a GDAL alpha band (``ALPHA=YES``).
        colorinterp: Colour interpretation per band (e.g. RGBA marked by interpretation only).
    """
    bands = data[None] if data.ndim == 2 else data
    if alpha is not None:
        bands = np.concatenate([bands, alpha[None]], axis=0)
    profile: dict[str, Any] = dict(
        driver="GTiff",
        height=bands.shape[1],
        width=bands.shape[2],
        count=bands.shape[0],
        dtype=dtype or bands.dtype,
        crs=crs,
        transform=transform if transform is not None else north_up(gsd),
        nodata=nodata,
    )
    if alpha is not None:
        profile.update(photometric="RGB", alpha="YES")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
        if colorinterp is not None:
            ds.colorinterp = list(colorinterp)
    return path


def write_polygons(
    path: Path,
    polys: Sequence[shapely.Geometry],
    crs: Any = UTM,
    properties: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
) -> Path:
    """A GeoJSON FeatureCollection of ``polys`` with a legacy ``crs`` member (as QGIS writes for non-WGS84).

    ``properties``: one mapping for every feature, or one per feature; empty by default.
    """
    if properties is None or isinstance(properties, Mapping):
        properties = [dict(properties or {}) for _ in polys]
    fc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": str(crs)}},
        "features": [
            {"type": "Feature", "properties": dict(props), "geometry": shapely.geometry.mapping(p)}
            for p, props in zip(polys, properties, strict=True)
        ],
    }
    path.write_text(json.dumps(fc))
    return path


@pytest.fixture(name="write_geotiff")
def write_geotiff_fixture() -> Any:
    """:func:`write_geotiff`, as a fixture."""
    return write_geotiff


@pytest.fixture(name="write_polygons")
def write_polygons_fixture() -> Any:
    """:func:`write_polygons`, as a fixture."""
    return write_polygons
