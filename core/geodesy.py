"""Ground measures on the WGS84 ellipsoid: one :class:`pyproj.Geod` for the whole project.

Areas and distances are geodesic, never planar in a projected CRS: the same plot has the same square metres
whatever CRS its orthomosaic was delivered in (UTM, EPSG:4326, Web Mercator, whose scale error reaches 30 %
at 45 degrees latitude).
"""

from __future__ import annotations

from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

__all__ = ["GEOD", "geodesic_area_m2"]

GEOD = Geod(ellps="WGS84")


def geodesic_area_m2(geom_lonlat: Polygon | MultiPolygon) -> float:
    """Area on the WGS84 ellipsoid of a lon/lat polygon, holes excluded, in square metres.

    A polygon is oriented counter-clockwise first (pyproj signs the area by the ring direction); a
    multipolygon is measured as it is, and the absolute value of the sum returned.
    """
    area, _ = GEOD.geometry_area_perimeter(
        orient(geom_lonlat, sign=1.0) if isinstance(geom_lonlat, Polygon) else geom_lonlat
    )
    return abs(float(area))
