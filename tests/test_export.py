"""Output files (detect/export.py), read back with GDAL/OGR, xml.etree, csv and OpenCV."""

from __future__ import annotations

import csv
import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import shape

from core.errors import InputError
from detect.export import (
    ALL_FORMATS,
    CSV_COLUMNS,
    FORMATS,
    KML_NS,
    ExportContext,
    OutputFormat,
    output_paths,
    parse_formats,
    write_csv,
    write_geojson,
    write_gpkg,
    write_kml,
    write_outputs,
    write_preview,
    write_summary,
)
from detect.raster import inspect_raster, open_raster
from detect.vectorize import DetectedPlot, VectorParams, vectorize

GSD = 0.05
UTM = CRS.from_epsg(32650)
TRANSFORM = Affine(GSD, 0, 500000.0, 0, -GSD, 4000000.0)
K = f"{{{KML_NS}}}"


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory) -> list[DetectedPlot]:
    """Two plots from a hand-made probability raster: a ring with a 2 m x 2 m hole, and a square."""
    a = np.zeros((120, 120), dtype=np.uint8)
    a[10:70, 10:70] = 230
    a[25:55, 25:55] = 0  # 1.5 m x 1.5 m hole: kept
    a[80:110, 80:110] = 180
    path = tmp_path_factory.mktemp("prob") / "p.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=120, width=120, count=1, dtype="uint8", crs=UTM, transform=TRANSFORM
    ) as ds:
        ds.write(a, 1)
    res = vectorize(path, VectorParams(threshold=0.5), source="site.tif", model_name="test-model")
    assert len(res.plots) == 2
    return res.plots


@pytest.fixture(scope="module")
def ortho(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The matching RGB orthomosaic (grey), 120 x 120 px."""
    path = tmp_path_factory.mktemp("ortho") / "site.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=120, width=120, count=3, dtype="uint8", crs=UTM, transform=TRANSFORM
    ) as ds:
        ds.write(np.full((3, 120, 120), 90, dtype=np.uint8))
    return path


def test_geojson_rfc7946(tmp_path: Path, plots: list[DetectedPlot]) -> None:
    path = write_geojson(tmp_path / "s.geojson", plots)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert [f["properties"]["plot_id"] for f in doc["features"]] == ["P001", "P002"]
    ring_plot = shape(doc["features"][0]["geometry"])
    assert ring_plot.exterior.is_ccw
    assert len(ring_plot.interiors) == 1 and not ring_plot.interiors[0].is_ccw
    for f in doc["features"]:
        for ring in f["geometry"]["coordinates"]:
            for lon, lat in ring:
                assert 116.9 < lon < 117.1 and 36.0 < lat < 36.2  # lon, lat order, WGS84
                assert round(lon, 7) == lon and round(lat, 7) == lat
    # GDAL/OGR reads it as WGS84 with the attributes
    meta, _, geoms, fields = pyogrio.raw.read(path)
    assert meta["crs"] == "EPSG:4326"
    assert len(geoms) == 2
    names = list(meta["fields"])
    for key in ("plot_id", "score_mean", "score_max", "area_m2", "centroid_lat", "centroid_lon", "source", "model"):
        assert key in names
    areas = fields[names.index("area_m2")]
    assert areas[0] == pytest.approx(9.0 - 2.25, rel=0.02) and areas[1] == pytest.approx(2.25, rel=0.02)
    assert fields[names.index("source")][0] == "site.tif"


def test_gpkg_native_crs(tmp_path: Path, plots: list[DetectedPlot]) -> None:
    path = write_gpkg(tmp_path / "s.gpkg", plots, UTM)
    meta, _, geoms, fields = pyogrio.raw.read(path, layer="plots")
    assert CRS.from_user_input(meta["crs"]) == UTM
    assert meta["geometry_type"] == "Polygon"
    assert len(geoms) == 2
    names = list(meta["fields"])
    assert list(fields[names.index("plot_id")]) == ["P001", "P002"]
    assert fields[names.index("score_max")][0] == pytest.approx(229 / 254, abs=1e-3)
    g = shapely.from_wkb(geoms[1])
    assert g.equals_exact(plots[1].geometry, 1e-6)  # native coordinates, unchanged
    assert g.bounds[0] == pytest.approx(500000.0 + 80 * GSD)


def test_kml_placemarks_lon_lat(tmp_path: Path, plots: list[DetectedPlot]) -> None:
    path = write_kml(tmp_path / "s.kml", plots, title="Poppy plots: site.tif")
    root = ET.parse(path).getroot()
    assert root.tag == f"{K}kml"
    folder = root.find(f"{K}Document/{K}Folder")
    assert folder is not None
    placemarks = folder.findall(f"{K}Placemark")
    assert len(placemarks) == 4  # a polygon and a point per plot
    polys = [p for p in placemarks if p.find(f"{K}Polygon") is not None]
    points = [p for p in placemarks if p.find(f"{K}Point") is not None]
    assert len(polys) == 2 and len(points) == 2
    assert len(polys[0].findall(f"{K}Polygon/{K}innerBoundaryIs")) == 1  # the hole
    lon, lat = map(float, points[1].find(f"{K}Point/{K}coordinates").text.split(","))
    assert lon == pytest.approx(plots[1].centroid_lon, abs=1e-6)
    assert lat == pytest.approx(plots[1].centroid_lat, abs=1e-6)
    outer = polys[1].find(f"{K}Polygon/{K}outerBoundaryIs/{K}LinearRing/{K}coordinates").text.split()
    ring = [tuple(map(float, c.split(","))) for c in outer]
    assert all(116.9 < x < 117.1 and 36.0 < y < 36.2 for x, y in ring)
    assert ring[0] == ring[-1]
    desc = points[0].find(f"{K}description").text
    assert "score" in desc and "m2" in desc and "P001" in desc
    assert polys[0].find(f"{K}styleUrl").text == "#plot"


def test_csv_columns(tmp_path: Path, plots: list[DetectedPlot]) -> None:
    path = write_csv(tmp_path / "s.csv", plots)
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [r["plot_id"] for r in rows] == ["P001", "P002"]
    assert float(rows[1]["lat"]) == pytest.approx(plots[1].centroid_lat, abs=1e-7)
    assert float(rows[1]["lon"]) == pytest.approx(plots[1].centroid_lon, abs=1e-7)
    assert float(rows[1]["area_m2"]) == pytest.approx(2.25, rel=0.02)
    assert float(rows[1]["score"]) == pytest.approx(179 / 254, abs=1e-3)
    assert {r["score_kind"] for r in rows} == {"mean_pixel_probability"}  # no second stage scored these
    judged = dataclasses.replace(plots[0], judge_score=0.875)
    row = next(csv.DictReader(write_csv(tmp_path / "j.csv", [judged]).open()))
    assert (row["score"], row["score_kind"]) == ("0.875", "calibrated_probability")


@pytest.mark.parametrize(("max_side", "shape_"), [(2000, (120, 120)), (60, (60, 60))])
def test_preview(tmp_path: Path, ortho: Path, plots: list[DetectedPlot], max_side: int, shape_: tuple) -> None:
    with open_raster(ortho) as ds:
        path = write_preview(tmp_path / "s.preview.jpg", ds, inspect_raster(ds), plots, max_side=max_side)
    img = cv2.imread(str(path))
    assert img.shape[:2] == shape_
    # the plot outlines (yellow in BGR) are drawn on the grey orthomosaic
    b, g, r = img[..., 0].astype(int), img[..., 1].astype(int), img[..., 2].astype(int)
    yellow = (r > 180) & (g > 180) & (b < 120)
    assert yellow.sum() > 20
    # the outline of plot 2 runs along model column 80 (scaled to the preview)
    col = round(80 * shape_[1] / 120)
    assert yellow[:, col - 2 : col + 3].any()


def test_empty_outputs_are_valid(tmp_path: Path, ortho: Path) -> None:
    gj = write_geojson(tmp_path / "e.geojson", [])
    assert json.loads(gj.read_text()) == {"type": "FeatureCollection", "features": []}
    gp = write_gpkg(tmp_path / "e.gpkg", [], UTM)
    meta, _, geoms, _ = pyogrio.raw.read(gp, layer="plots")
    assert len(geoms) == 0 and "plot_id" in list(meta["fields"]) and "area_m2" in list(meta["fields"])
    assert CRS.from_user_input(meta["crs"]) == UTM
    km = write_kml(tmp_path / "e.kml", [], title="none")
    folder = ET.parse(km).getroot().find(f"{K}Document/{K}Folder")
    assert folder is not None and folder.findall(f"{K}Placemark") == []
    cs = write_csv(tmp_path / "e.csv", [])
    assert cs.read_text().strip() == ",".join(CSV_COLUMNS)
    with open_raster(ortho) as ds:
        pv = write_preview(tmp_path / "e.jpg", ds, inspect_raster(ds), [])
    assert cv2.imread(str(pv)).shape == (120, 120, 3)


def test_no_overwrite_without_flag(tmp_path: Path, plots: list[DetectedPlot]) -> None:
    path = write_csv(tmp_path / "s.csv", plots)
    before = path.read_text()
    writers = [
        lambda ow: write_csv(path, plots[:1], overwrite=ow),
        lambda ow: write_geojson(tmp_path / "s.csv", plots, overwrite=ow),
        lambda ow: write_summary(tmp_path / "s.csv", {"a": 1}, overwrite=ow),
    ]
    for write in writers:
        with pytest.raises(InputError, match=r"s\.csv already exists; pass --overwrite to replace it"):
            write(False)
        assert path.read_text() == before
    write_csv(path, plots[:1], overwrite=True)
    assert len(path.read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]  # no .tmp left behind


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_summary(tmp_path / "x.summary.json", {"bad": Boom()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", ALL_FORMATS),
        ("", ALL_FORMATS),
        ("kml,csv", ("kml", "csv")),
        ("CSV, kml", ("kml", "csv")),  # canonical order, case and spaces ignored
        ("prob", ("prob",)),
    ],
)
def test_parse_formats(text: str, expected: tuple[str, ...]) -> None:
    assert parse_formats(text) == expected


def test_parse_formats_rejects_unknown() -> None:
    with pytest.raises(InputError, match=r"--formats shp: unknown format; choose from geojson,gpkg,kml"):
        parse_formats("kml,shp")


def test_output_paths() -> None:
    paths = output_paths("out", "site", ("kml", "prob"))
    assert {k: v.name for k, v in paths.items()} == {
        "kml": "site.kml",
        "prob": "site.prob.tif",
        "summary": "site.summary.json",
    }


def test_formats_table_order_and_a_new_entry(
    tmp_path: Path, plots: list[DetectedPlot], ortho: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is the --formats order; a new output is one entry, and it sees the run record built first."""
    assert ALL_FORMATS == ("geojson", "gpkg", "kml", "csv", "prob", "preview", "chips", "report", "qml")

    def note(path: Path, ctx: ExportContext) -> Path:
        path.write_text(f"{ctx.record['run']}: {len(ctx.plots)} plots from {ctx.source.name}\n")
        return path

    monkeypatch.setitem(FORMATS, "note", OutputFormat("note", ".note.txt", note))
    paths = output_paths(tmp_path, "site", ("csv", "prob", "note"))
    with open_raster(ortho) as ds:
        ctx = ExportContext(source=ortho, ds=ds, info=inspect_raster(ds), plots=plots, record={"run": "r1"})
        write_outputs(paths, ("csv", "prob", "note"), ctx)
    # prob has no writer here (streamed while predicting); the summary is the caller's, last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.csv", "site.note.txt"]
    assert (tmp_path / "site.note.txt").read_text() == f"r1: {len(plots)} plots from {ortho.name}\n"


@pytest.mark.parametrize("fmt", ["gpkg", "geojson"])
def test_plots_files_carry_an_empty_review_field_that_train_py_reads(
    tmp_path: Path, plots: list[DetectedPlot], fmt: str
) -> None:
    from datasets.reviewed import read_reviewed

    path = (
        write_gpkg(tmp_path / "s.gpkg", plots, UTM) if fmt == "gpkg" else write_geojson(tmp_path / "s.geojson", plots)
    )
    meta, _, _, fields = pyogrio.raw.read(path)
    names = list(meta["fields"])
    assert list(fields[names.index("review")]) == [None, None]  # NULL until an analyst sets it in QGIS
    bounds = (500000.0, 4000000.0 - 6, 500006.0, 4000000.0)
    rev = read_reviewed(path, UTM, bounds, unreviewed_as="negative", per_metre=1.0)
    assert rev.counts == {"confirmed": 0, "added": 0, "rejected": 0, "unreviewed": 2}
    with pytest.raises(InputError, match="no plot is reviewed"):
        read_reviewed(path, UTM, bounds, unreviewed_as="ignore", per_metre=1.0)
