"""Tests for datasets/labels.py: reading, reprojecting, repairing and rasterising label polygons."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from core.errors import InputError
from datasets.labels import (
    IGNORE,
    LabelSet,
    check_overlap,
    find_label_files,
    rasterize_window,
    read_labels,
)

UTM = CRS.from_epsg(32650)  # UTM zone 50N (north China)
ORIGIN = (500000.0, 4400000.0)  # top-left corner of the test raster in UTM metres
GSD = 0.05  # 5 cm pixels
SIZE = 200  # 200 x 200 px = 10 m x 10 m
RASTER_TRANSFORM = Affine(GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1])
RASTER_BOUNDS = (ORIGIN[0], ORIGIN[1] - SIZE * GSD, ORIGIN[0] + SIZE * GSD, ORIGIN[1])


def utm_box(row0: int, col0: int, row1: int, col1: int) -> shapely.Polygon:
    """The UTM polygon covering raster pixels rows row0..row1-1, cols col0..col1-1."""
    x0, y0 = RASTER_TRANSFORM @ (col0, row0)
    x1, y1 = RASTER_TRANSFORM @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def write_geojson(path: Path, geoms: list[dict | None], props: list[dict] | None = None, crs: str | None = None):
    """Write a FeatureCollection by hand (so invalid and null geometries go in exactly as given)."""
    props = props or [{} for _ in geoms]
    fc: dict = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": p, "geometry": g} for g, p in zip(geoms, props, strict=True)],
    }
    if crs is not None:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(fc))
    return path


def write_vector(path: Path, geoms: list, crs: str | None, stages: list[str] | None = None, driver=None):
    """Write shapely geometries (None allowed) with a `stage` field through pyogrio."""
    wkb = np.array([shapely.to_wkb(g) if g is not None else None for g in geoms], dtype=object)
    stages = stages or ["flowering"] * len(geoms)
    pyogrio.raw.write(
        path,
        wkb,
        [np.array(stages, dtype=object)],
        ["stage"],
        geometry_type="Unknown" if driver != "ESRI Shapefile" else "Polygon",
        crs=CRS.from_user_input(crs).to_wkt() if crs else None,
        driver=driver,
    )
    return path


def to_lonlat(poly: shapely.Polygon) -> dict:
    """GeoJSON geometry of a UTM polygon in WGS84 lon/lat, densified so edges stay where they were."""
    tr = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    dense = shapely.segmentize(poly, 0.1)
    ll = shapely.transform(dense, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return shapely.geometry.mapping(ll)


# --- reading and reprojecting -------------------------------------------------------------------------------


def test_wgs84_geojson_lands_on_the_right_utm_pixels(tmp_path):
    # A 40 x 40 px plot at rows 40-79, cols 60-99 of a 5 cm UTM raster, stored as lon/lat GeoJSON (no crs
    # member, so WGS84 by RFC 7946).
    plot = utm_box(40, 60, 80, 100)
    path = write_geojson(tmp_path / "site.geojson", [to_lonlat(plot)], [{"stage": "flowering"}])
    labels = read_labels(path, UTM)
    assert len(labels) == 1
    assert labels.properties == [{"stage": "flowering"}]
    assert labels.geometries[0].area == pytest.approx(plot.area, rel=1e-3)
    mask = rasterize_window(labels, RASTER_TRANSFORM, (SIZE, SIZE))
    rows, cols = np.nonzero(mask == 1)
    assert mask.dtype == np.uint8
    assert len(rows) == pytest.approx(1600, abs=40)  # within one pixel row/column of the exact square
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (40, 79, 60, 99)
    assert set(np.unique(mask)) == {0, 1}


@pytest.mark.parametrize(
    ("suffix", "driver", "crs"),
    [
        (".gpkg", "GPKG", "EPSG:3857"),  # web mercator, must be reprojected
        (".shp", "ESRI Shapefile", "EPSG:32650"),  # already in the raster's CRS
        (".gpkg", "GPKG", "EPSG:4326"),  # degrees stored east-first
    ],
)
def test_gpkg_and_shp_read_and_reproject(tmp_path, suffix, driver, crs):
    plot = utm_box(10, 20, 50, 60)  # 2 m x 2 m = 4 m^2
    tr = Transformer.from_crs(UTM, crs, always_xy=True)
    src_plot = shapely.transform(
        shapely.segmentize(plot, 0.1), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    path = write_vector(tmp_path / f"site{suffix}", [src_plot], crs, ["capsule"], driver=driver)
    labels = read_labels(path, UTM)
    assert labels.properties == [{"stage": "capsule"}]
    assert labels.crs == UTM
    assert labels.geometries[0].area == pytest.approx(4.0, rel=1e-3)
    assert labels.geometries[0].symmetric_difference(plot).area < 0.01
    assert labels.warnings == []


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
@pytest.mark.parametrize(
    ("suffix", "driver"),
    [(".shp", "ESRI Shapefile"), (".gpkg", "GPKG")],
)
def test_file_without_crs_is_refused(tmp_path, suffix, driver):
    path = write_vector(tmp_path / f"nocrs{suffix}", [utm_box(0, 0, 10, 10)], None, driver=driver)
    with pytest.raises(InputError, match=r"nocrs.*no coordinate reference system.*Layer > Set CRS"):
        read_labels(path, UTM)


def test_geojson_with_projected_coordinates_but_no_crs_is_refused(tmp_path):
    # GeoJSON without a crs member is WGS84, so UTM metres in it are a CRS mistake, not a location in space.
    path = write_geojson(tmp_path / "metres.geojson", [shapely.geometry.mapping(utm_box(0, 0, 10, 10))])
    with pytest.raises(InputError, match=r"not longitude/latitude"):
        read_labels(path, UTM)


def test_geojson_with_legacy_crs_member_is_honoured(tmp_path):
    plot = utm_box(0, 0, 20, 20)
    path = write_geojson(
        tmp_path / "legacy.geojson", [shapely.geometry.mapping(plot)], crs="urn:ogc:def:crs:EPSG::32650"
    )
    labels = read_labels(path, UTM)
    assert labels.geometries[0].equals_exact(plot, tolerance=1e-6)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"no such label file"):
        read_labels(tmp_path / "nothing.geojson", UTM)


# --- repairs and drops are counted ---------------------------------------------------------------------------


def test_invalid_empty_and_non_polygon_geometries_are_counted(tmp_path, caplog):
    x0, y0 = ORIGIN
    bowtie = {  # self-intersecting bow-tie in a 1 x 1 m square: repairs to two triangles of 0.25 m^2
        "type": "Polygon",
        "coordinates": [[[x0, y0 - 1], [x0 + 1, y0], [x0 + 1, y0 - 1], [x0, y0], [x0, y0 - 1]]],
    }
    good = shapely.geometry.mapping(utm_box(100, 100, 120, 120))
    geoms = [
        bowtie,
        None,  # null geometry
        {"type": "Polygon", "coordinates": []},  # empty geometry
        {"type": "Point", "coordinates": [x0 + 1, y0 - 1]},
        {"type": "LineString", "coordinates": [[x0, y0 - 1], [x0 + 1, y0 - 2]]},
        good,
    ]
    props = [{"id": i} for i in range(len(geoms))]
    path = write_geojson(tmp_path / "messy.geojson", geoms, props, crs="EPSG:32650")
    with caplog.at_level(logging.WARNING, logger="datasets.labels"):
        labels = read_labels(path, UTM)
    assert len(labels) == 2
    assert [p["id"] for p in labels.properties] == [0, 5]
    repaired = labels.geometries[0]
    assert repaired.is_valid
    assert repaired.geom_type == "MultiPolygon"
    assert repaired.area == pytest.approx(0.5)
    text = "\n".join(labels.warnings)
    assert "1 invalid polygon" in text
    assert "2 features with an empty or missing geometry" in text
    assert "2 non-polygon features" in text
    # The same counts reach the log, so a training run shows them too.
    assert "1 invalid polygon" in caplog.text
    assert "2 non-polygon features" in caplog.text


def test_clean_file_has_no_warnings(tmp_path):
    path = write_geojson(tmp_path / "clean.geojson", [shapely.geometry.mapping(utm_box(0, 0, 5, 5))], crs="EPSG:32650")
    assert read_labels(path, UTM).warnings == []


# --- overlap with the raster ---------------------------------------------------------------------------------


def test_labels_that_miss_the_raster_are_refused(tmp_path):
    far = shapely.box(600000, 4300000, 600010, 4300010)
    labels = LabelSet([far], [{}], UTM, path=str(tmp_path / "far.geojson"))
    with pytest.raises(InputError, match=r"far\.geojson: none of its 1 label polygons fall on the raster ortho\.tif"):
        check_overlap(labels, RASTER_BOUNDS, "ortho.tif")


def test_labels_partly_outside_give_a_counted_warning():
    inside = utm_box(10, 10, 20, 20)
    straddling = shapely.box(ORIGIN[0] - 1, ORIGIN[1] - 2, ORIGIN[0] + 1, ORIGIN[1] - 1)
    far = shapely.box(600000, 4300000, 600010, 4300010)
    labels = LabelSet([inside, straddling, far], [{}, {}, {}], UTM, path="l.geojson")
    notes = check_overlap(labels, RASTER_BOUNDS, "ortho.tif")
    assert notes == labels.warnings
    assert len(notes) == 1
    assert "of 3 label polygons, 1 lie wholly and 1 partly outside" in notes[0]


def test_labels_all_inside_no_warning():
    labels = LabelSet([utm_box(10, 10, 20, 20)], [{}], UTM)
    assert check_overlap(labels, RASTER_BOUNDS, "ortho.tif") == []


# --- rasterising windows -------------------------------------------------------------------------------------


def test_aoi_sets_ignore_outside():
    labels = LabelSet([utm_box(10, 10, 30, 30), utm_box(150, 150, 160, 160)], [{}, {}], UTM)
    aoi = LabelSet([utm_box(0, 0, 100, 100)], [{}], UTM)
    mask = rasterize_window(labels, RASTER_TRANSFORM, (SIZE, SIZE), aoi=aoi)
    assert (mask[100:, :] == IGNORE).all()
    assert (mask[:, 100:] == IGNORE).all()
    assert (mask[10:30, 10:30] == 1).all()
    assert int((mask == 1).sum()) == 400  # the second plot lies outside the AOI: ignored, not poppy
    assert int((mask == 0).sum()) == 100 * 100 - 400


def test_window_rasterises_only_its_part_at_a_scaled_transform():
    labels = LabelSet([utm_box(40, 40, 80, 80)], [{}], UTM)
    # Window rows 50-149, cols 30-129, read at half resolution (10 cm): 50 x 50 px.
    win = Window(col_off=30, row_off=50, width=100, height=100)
    tr = window_transform(win, RASTER_TRANSFORM) @ Affine.scale(2.0)
    mask = rasterize_window(labels, tr, (50, 50))
    rows, cols = np.nonzero(mask == 1)
    # Plot rows 50-79 -> chip rows 0-14; plot cols 40-79 -> chip cols 5-24.
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 14, 5, 24)
    assert len(rows) == 15 * 20


def test_window_with_no_labels_is_background():
    labels = LabelSet([], [], UTM)
    assert labels.bounds is None
    mask = rasterize_window(labels, RASTER_TRANSFORM, (8, 8))
    assert mask.shape == (8, 8)
    assert (mask == 0).all()


# --- the folder convention -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["site.tif", "site.aoi.geojson"], (None, "site.aoi.geojson")),  # the AOI is never the labels
        (["site.tif", "site.geojson", "site.aoi.geojson"], ("site.geojson", "site.aoi.geojson")),
        (["site.tif", "site.gpkg"], ("site.gpkg", None)),
        (["site.tif", "site.shp", "other.geojson"], ("site.shp", None)),
        (["site.tif", "Site.GeoJSON"], ("Site.GeoJSON", None)),
        (["site.tif", "site2.geojson", "site.aoi.gpkg"], (None, "site.aoi.gpkg")),
    ],
)
def test_find_label_files(tmp_path, files, expected):
    for name in files:
        (tmp_path / name).write_text("")
    labels, aoi = find_label_files(tmp_path / "site.tif")
    assert (labels.name if labels else None, aoi.name if aoi else None) == expected


def test_find_label_files_refuses_two_label_files(tmp_path):
    for name in ("site.tif", "site.geojson", "site.gpkg"):
        (tmp_path / name).write_text("")
    with pytest.raises(InputError, match=r"several label files.*keep one"):
        find_label_files(tmp_path / "site.tif")


def test_read_labels_with_raster_crs_from_a_real_raster(tmp_path):
    # The CRS handed over is a rasterio CRS from an open dataset, as the training code does.
    tif = tmp_path / "site.tif"
    profile = dict(driver="GTiff", height=SIZE, width=SIZE, count=3, dtype="uint8", crs=UTM, transform=RASTER_TRANSFORM)
    with rasterio.open(tif, "w", **profile) as ds:
        ds.write(np.zeros((3, SIZE, SIZE), dtype=np.uint8))
    write_geojson(tmp_path / "site.geojson", [to_lonlat(utm_box(0, 0, 20, 20))])
    labels_path, _ = find_label_files(tif)
    with rasterio.open(tif) as ds:
        labels = read_labels(labels_path, ds.crs)
        check_overlap(labels, ds.bounds, tif)
    assert labels.warnings == []
    assert labels.bounds == pytest.approx((ORIGIN[0], ORIGIN[1] - 1, ORIGIN[0] + 1, ORIGIN[1]), abs=1e-3)
