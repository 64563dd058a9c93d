"""The field packet: report page (detect/report.py), chips (detect/pictures.py), QGIS styles (detect/styles.py).

Fast tests read the outputs back with html.parser, OpenCV, csv/json and xml.etree; the browser test (slow) renders
the page in headless Chromium and skips where Chromium is not installed.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from core.errors import InputError
from detect.export import ExportContext, output_paths, write_outputs
from detect.pictures import CHIP_PX, chip_window, render_chip
from detect.raster import inspect_raster, open_raster
from detect.report import build_report, map_links
from detect.styles import PROB_RAMP, SCORE_CLASSES, plots_qml, prob_qml
from detect.vectorize import DetectedPlot, VectorParams, vectorize

GSD = 0.05
UTM = CRS.from_epsg(32650)
TRANSFORM = Affine(GSD, 0, 500000.0, 0, -GSD, 4000000.0)
MAP_PREFIXES = ("geo:", "https://www.openstreetmap.org/", "https://www.google.com/maps/")
PACKET = ("geojson", "csv", "prob", "chips", "report", "qml")


@pytest.fixture(scope="module")
def ortho(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200 x 200 px RGB orthomosaic: green field, a red 2 m square at rows/cols 40-80."""
    path = tmp_path_factory.mktemp("ortho") / "site.tif"
    rgb = np.zeros((3, 200, 200), dtype=np.uint8)
    rgb[1] = 120
    rgb[:, 40:80, 40:80] = np.array([200, 30, 30], dtype=np.uint8)[:, None, None]
    with rasterio.open(
        path, "w", driver="GTiff", height=200, width=200, count=3, dtype="uint8", crs=UTM, transform=TRANSFORM
    ) as ds:
        ds.write(rgb)
    return path


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory) -> list[DetectedPlot]:
    """Three plots of a hand-made probability raster (stored 1-255; 128 = 0.5), one of them the red square."""
    a = np.ones((200, 200), dtype=np.uint8)
    a[40:80, 40:80] = 230
    a[120:150, 20:60] = 180
    a[150:190, 150:190] = 140
    path = tmp_path_factory.mktemp("prob") / "p.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=200, width=200, count=1, dtype="uint8", crs=UTM, transform=TRANSFORM
    ) as ds:
        ds.write(a, 1)
    res = vectorize(path, VectorParams(threshold=0.5), source="site.tif", model_name="test-model")
    assert len(res.plots) == 3
    return res.plots


RECORD = {
    "created_utc": "2026-12-07T21:00:00+00:00",
    "model": {"name": "test-model", "stages": 1},
    "operating_point": {
        "sensitivity": "high",
        "threshold": 0.2,
        "applies_to": "pixel probability",
        "precision": 0.32,
        "recall": 0.92,
        "note": "chosen on the model's validation threshold sweep",
    },
    "score": "the mean poppy probability of the plot's pixels (one-stage model, not calibrated)",
    "parameters": {"formats": list(PACKET)},
}


class _Collect(HTMLParser):
    """Every tag with its attributes, and the text, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    parser.close()
    return parser


def _report(ortho: Path, plots: list[DetectedPlot], record: dict | None = None, **kwargs: object) -> str:
    with open_raster(ortho) as ds:
        return build_report(ds, inspect_raster(ds), plots, record or RECORD, source_name="site.tif", **kwargs)


def test_report_is_self_contained(ortho: Path, plots: list[DetectedPlot]) -> None:
    page = _report(ortho, plots)
    doc = _parse(page)
    srcs = [a["src"] for _, a in doc.tags if "src" in a]
    hrefs = [a["href"] for _, a in doc.tags if "href" in a]
    assert len(srcs) == 1 + len(plots)  # the overview and a chip per plot
    assert all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    # no reference that leaves the page but the map links: no stylesheet, script, font or image URL
    assert all(h.startswith("#") or h.startswith(MAP_PREFIXES) for h in hrefs)
    assert not any(tag in ("script", "link", "iframe") for tag, _ in doc.tags)
    assert "url(" not in page and "@import" not in page
    # every chip decodes to a CHIP_PX square
    for s in srcs[1:]:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(s.split(",", 1)[1]), np.uint8), 1)
        assert img.shape == (CHIP_PX, CHIP_PX, 3)


def test_report_lists_every_plot_once_sorted_by_score(ortho: Path, plots: list[DetectedPlot]) -> None:
    doc = _parse(_report(ortho, plots))
    cards = [a["id"] for tag, a in doc.tags if tag == "div" and a.get("id")]
    assert sorted(cards) == sorted(p.plot_id for p in plots)  # one card each
    table_links = [a["href"][1:] for tag, a in doc.tags if tag == "a" and (a.get("href") or "").startswith("#")]
    by_score = [p.plot_id for p in sorted(plots, key=lambda p: -p.score)]
    assert table_links == by_score  # one table row each, highest score first
    geo = [a["href"] for tag, a in doc.tags if tag == "a" and (a.get("href") or "").startswith("geo:")]
    assert len(geo) == 2 * len(plots)  # in the table and on the card
    text = " ".join(doc.text)
    assert "precision 0.32, recall 0.92" in text and "not calibrated" in text


def test_report_caps_chips_with_a_note(ortho: Path, plots: list[DetectedPlot]) -> None:
    doc = _parse(_report(ortho, plots, max_chips=2))
    assert sum(1 for _, a in doc.tags if (a.get("src") or "").startswith("data:")) == 1 + 2
    assert "Images of the 2 highest-scoring plots of 3" in " ".join(doc.text)
    # the plot without a card is still in the table, without a dead link to a card
    rows = [a for tag, a in doc.tags if tag == "tr"]
    assert len(rows) == 1 + 3


def test_report_escapes_every_string(ortho: Path, plots: list[DetectedPlot]) -> None:
    evil = '<script>alert("x")</script>&'
    hostile = [dataclasses.replace(plots[0], plot_id='P"1<b>'), *plots[1:]]
    record = {**RECORD, "model": {"name": evil, "stages": 1}, "input": evil}
    with open_raster(ortho) as ds:
        page = build_report(ds, inspect_raster(ds), hostile, record, source_name=evil)
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    doc = _parse(page)
    assert not any(tag in ("script", "b") for tag, _ in doc.tags)
    assert 'P"1<b>' in [a.get("id") for _, a in doc.tags]  # the attribute survives, escaped, as the same value


def test_report_without_plots(ortho: Path) -> None:
    doc = _parse(_report(ortho, []))
    assert "No plot was found" in " ".join(doc.text)
    assert [a["src"].split(",")[0] for _, a in doc.tags if "src" in a] == ["data:image/jpeg;base64"]  # the overview


@pytest.mark.parametrize(("lat", "lon"), [(34.4669930, 118.4823190), (-33.8688, -70.1234567)])
def test_map_links(lat: float, lon: float) -> None:
    links = map_links(lat, lon)
    assert links["geo"] == f"geo:{lat:.7f},{lon:.7f}"
    assert f"mlat={lat:.7f}&mlon={lon:.7f}" in links["osm"]
    assert links["google"].endswith(f"query={lat:.7f},{lon:.7f}")


def test_chip_window_centres_the_plot_with_context(ortho: Path, plots: list[DetectedPlot]) -> None:
    with open_raster(ortho) as ds:
        info = inspect_raster(ds)
        red = plots[0]  # the square at rows/cols 40-80 (2 m): context makes the window 8 m = 160 px
        win = chip_window(info, red)
        assert (win.height, win.width) == (160, 160)
        assert win.row_off + win.height / 2 == pytest.approx(60, abs=1) and win.col_off + 80 == pytest.approx(60, abs=1)
        chip = render_chip(ds, info, red)
    assert chip.shape == (CHIP_PX, CHIP_PX, 3)
    # outside the raster (above and left of row/col 0) is light grey; the red square is in the middle
    assert (chip[:5, :5] == 235).all()
    _, g, r = chip[CHIP_PX // 2, CHIP_PX // 2]
    assert r > 150 and g < 80
    # the yellow outline (BGR 0, 255, 255) runs along the square's edge
    yellow = (chip[:, :, 0] < 80) & (chip[:, :, 1] > 200) & (chip[:, :, 2] > 200)
    assert yellow.sum() > 4 * 40


def test_packet_outputs_and_chip_references(tmp_path: Path, ortho: Path, plots: list[DetectedPlot]) -> None:
    paths = output_paths(tmp_path, "site", PACKET)
    (tmp_path / "site.prob.tif").write_bytes(b"")  # stands for the raster streamed while predicting
    with open_raster(ortho) as ds:
        ctx = ExportContext(source=ortho, ds=ds, info=inspect_raster(ds), plots=plots, record=RECORD)
        write_outputs(paths, PACKET, ctx)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["site.geojson", "site.csv", "site.prob.tif", "site.chips", "site.report.html", "site.qml", "site.prob.qml"]
    )
    chips = sorted(p.name for p in (tmp_path / "site.chips").iterdir())
    assert chips == [f"{p.plot_id}.jpg" for p in plots]
    assert cv2.imread(str(tmp_path / "site.chips" / chips[0])).shape == (CHIP_PX, CHIP_PX, 3)
    feats = json.loads((tmp_path / "site.geojson").read_text())["features"]
    rows = list(csv.DictReader((tmp_path / "site.csv").open()))
    for f, row in zip(feats, rows, strict=True):
        assert f["properties"]["chip"] == row["chip"] == f"site.chips/{row['plot_id']}.jpg"
        assert (tmp_path / row["chip"]).is_file()  # relative to the output folder
    # existing outputs are refused without --overwrite, replaced with it
    with open_raster(ortho) as ds:
        ctx = ExportContext(source=ortho, ds=ds, info=inspect_raster(ds), plots=plots[:1], record=RECORD)
        for name in ("chips", "report", "qml"):
            with pytest.raises(InputError, match=r"already exists; pass --overwrite"):
                write_outputs(paths, (name,), ctx)
        write_outputs(paths, ("chips",), dataclasses.replace(ctx, overwrite=True))
    assert [p.name for p in (tmp_path / "site.chips").iterdir()] == [f"{plots[0].plot_id}.jpg"]
    assert not list(tmp_path.glob("*.tmp"))


def test_no_chip_reference_without_chips(tmp_path: Path, ortho: Path, plots: list[DetectedPlot]) -> None:
    record = {**RECORD, "parameters": {"formats": ["geojson", "csv", "qml"]}}
    paths = output_paths(tmp_path, "site", ("geojson", "csv", "qml"))
    with open_raster(ortho) as ds:
        ctx = ExportContext(source=ortho, ds=ds, info=inspect_raster(ds), plots=plots, record=record)
        write_outputs(paths, ("geojson", "csv", "qml"), ctx)
    assert all(f["properties"]["chip"] is None for f in json.loads(paths["geojson"].read_text())["features"])
    assert all(r["chip"] == "" for r in csv.DictReader(paths["csv"].open()))
    assert not (tmp_path / "site.prob.qml").exists()  # no probability raster, no style for it


def test_plots_qml() -> None:
    text = plots_qml()
    assert text.startswith("<!DOCTYPE qgis")
    root = ET.fromstring(text)
    assert root.tag == "qgis" and root.get("labelsEnabled") == "1"
    renderer = root.find("renderer-v2")
    assert renderer is not None and renderer.get("type") == "graduatedSymbol" and renderer.get("attr") == "score"
    ranges = renderer.findall("ranges/range")
    assert [(float(r.get("lower")), float(r.get("upper"))) for r in ranges] == [(lo, hi) for lo, hi, _ in SCORE_CLASSES]
    assert ranges[0].get("lower") == "0.000000" and ranges[-1].get("upper") == "1.000000"  # every score 0-1
    symbols = {s.get("name") for s in renderer.findall("symbols/symbol")}
    assert symbols == {r.get("symbol") for r in ranges}  # every range has its symbol
    colors = [s.find("layer/prop[@k='color']").get("v") for s in renderer.findall("symbols/symbol")]
    assert len(set(colors)) == len(SCORE_CLASSES)
    assert root.find("labeling/settings/text-style").get("fieldName") == "plot_id"


def test_prob_qml() -> None:
    root = ET.fromstring(prob_qml())
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    assert (renderer.get("classificationMin"), renderer.get("classificationMax")) == ("0", "1")
    items = renderer.findall("rastershader/colorrampshader/item")
    values = [float(i.get("value")) for i in items]
    assert values == [v for v, _, _ in PROB_RAMP] and values[0] == 0.0 and values[-1] == 1.0
    assert all(re.fullmatch(r"#[0-9a-f]{6}", i.get("color")) for i in items)
    assert items[0].get("alpha") == "0"  # low probabilities transparent: the orthomosaic shows through


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path, ortho: Path, plots: list[DetectedPlot]) -> None:
    """The page opens in a real browser with its network off and draws the overview and chips."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    page = tmp_path / "site.report.html"
    page.write_text(_report(ortho, plots), encoding="utf-8")
    shot = tmp_path / "shot.png"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=900,1400",
        f"--screenshot={shot}", page.as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1400, 900)
    # the overview shows the green field: a page that failed to load its images would be white and text only
    green = (img[:, :, 1] > 100) & (img[:, :, 2] < 60) & (img[:, :, 0] < 60)
    assert green.sum() > 10_000


def test_preview_labels_are_plot_ids(ortho: Path, plots: list[DetectedPlot], monkeypatch: pytest.MonkeyPatch) -> None:
    """The preview names plots as every other output does (P001, ...), not 1, 2, ..."""
    import detect.pictures

    texts: list[str] = []
    real = cv2.putText

    def record(img: np.ndarray, text: str, *args: object, **kwargs: object) -> np.ndarray:
        texts.append(text)
        return real(img, text, *args, **kwargs)

    monkeypatch.setattr(detect.pictures.cv2, "putText", record)
    with open_raster(ortho) as ds:
        img = detect.pictures.render_preview(ds, inspect_raster(ds), plots)
    assert img.shape == (200, 200, 3)
    assert sorted(set(texts)) == [p.plot_id for p in plots]  # each drawn twice: dark halo, then white text


def test_infer_writes_the_packet_and_replaces_it_with_overwrite(tmp_path: Path) -> None:
    """End to end through infer.py's staging folder: the chips folder and the extra style file are published,
    and a second run with --overwrite replaces them (a folder cannot be renamed over a non-empty one)."""
    from infer import main, parse_args
    from tests.test_infer import tiny_checkpoint, write_ortho

    src = write_ortho(tmp_path / "site.tif")
    weights = tiny_checkpoint(tmp_path / "all.pt", all_poppy=True)
    out = tmp_path / "out"
    args = [str(src), "--out", str(out), "--weights", str(weights), "--quiet", "--device", "cpu"]
    args += ["--formats", "geojson,prob,chips,report,qml"]
    assert main(parse_args(args)) == 0
    names = sorted(p.name for p in out.iterdir())
    expected = ["site.chips", "site.geojson", "site.prob.qml", "site.prob.tif", "site.qml", "site.report.html"]
    assert names == sorted([*expected, "site.summary.json"])
    feats = json.loads((out / "site.geojson").read_text())["features"]
    assert feats and all((out / f["properties"]["chip"]).is_file() for f in feats)
    (out / "site.chips" / "stale.jpg").write_bytes(b"")  # left from an older run: must go with the folder
    assert main(parse_args([*args, "--overwrite"])) == 0
    chips = sorted(p.name for p in (out / "site.chips").iterdir())
    assert chips == [f"{f['properties']['plot_id']}.jpg" for f in feats]
    assert sorted(p.name for p in out.iterdir()) == names  # no staging folder or .tmp left
