"""Plot-level validation (training/evaluate.py and its rules) on hand-made probability rasters with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from torch import nn

from core.errors import InputError
from datasets.labelled import LabelledScene, hold_out, scenes_from_folder
from detect.vectorize import VectorParams
from models.checkpoint import ModelSpec
from tests import conftest
from tests.conftest import north_up, write_geotiff
from training.evaluate import evaluate_plot_files, evaluate_plots, evaluate_prob_raster, evaluate_scenes
from training.pixels import EvalGrid
from training.report import DEFAULT_THRESHOLDS, choose_threshold, gsd_bin, summarise

UTM = "EPSG:32650"
X0, Y0 = 500000.0, 4000000.0  # top-left corner of every hand-made raster
GSD = 0.05  # 20 px = 1 m
N = 200  # 10 m x 10 m rasters: 100 m2 = 0.01 ha
# No morphological clean-up and no simplification: plots are exactly the thresholded pixels, so the expected
# numbers below are exact.
EXACT = VectorParams(open_radius_m=0.0, close_radius_m=0.0, fill_holes_m2=0.0, simplify_px=0.0, min_area_m2=0.0)


def ground(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A box from ``(x0, y0)`` to ``(x1, y1)`` metres east/south of the raster's top-left corner."""
    return shapely.box(X0 + x0, Y0 - y1, X0 + x1, Y0 - y0)


def px(x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
    """The pixel rows and columns of the same box."""
    return slice(round(y0 / GSD), round(y1 / GSD)), slice(round(x0 / GSD), round(x1 / GSD))


def write_raster(path: Path, alpha: np.ndarray | None = None, red: list[tuple] | None = None) -> Path:
    """A grey RGB(A) orthomosaic; ``red`` boxes (metres) painted red."""
    rgb = np.full((3, N, N), 90, dtype=np.uint8)
    for box in red or []:
        r, c = px(*box)
        rgb[:, r, c] = np.array([230, 20, 20], dtype=np.uint8)[:, None, None]
    return write_geotiff(path, rgb, crs=UTM, transform=north_up(GSD, (X0, Y0)), alpha=alpha)


def write_prob(path: Path, values: np.ndarray) -> Path:
    return write_geotiff(path, values.astype(np.uint8), crs=UTM, transform=north_up(GSD, (X0, Y0)))


def write_polygons(path: Path, polys: list[shapely.Polygon], stages: list[str | None] | None = None) -> Path:
    stages = stages or [None] * len(polys)
    return conftest.write_polygons(path, polys, UTM, [{"stage": s} for s in stages])


def make_scene(
    tmp_path: Path,
    name: str,
    labels: list[shapely.Polygon],
    *,
    alpha=None,
    aoi=None,
    stages=None,
    sidecar: dict | None = None,
    red=None,
) -> LabelledScene:
    write_raster(tmp_path / f"{name}.tif", alpha=alpha, red=red)
    write_polygons(tmp_path / f"{name}.geojson", labels, stages)
    if aoi is not None:
        write_polygons(tmp_path / f"{name}.aoi.geojson", [aoi])
    if sidecar is not None:
        (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
    return LabelledScene.from_raster(tmp_path / f"{name}.tif")


def prob_with(*boxes: tuple[tuple[float, float, float, float], int]) -> np.ndarray:
    a = np.zeros((N, N), dtype=np.uint8)
    for box, value in boxes:
        a[px(*box)] = value
    return a


FOUND = (1, 1, 3, 3)  # 2 m x 2 m label, predicted exactly
MISSED = (6, 1, 8, 3)  # 2 m x 2 m label, not predicted
FALSE = (1, 6, 3, 8)  # 2 m x 2 m prediction, no label


def test_found_missed_and_false_plot(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "a", [ground(*FOUND), ground(*MISSED)])
    prob = write_prob(tmp_path / "a.prob.tif", prob_with((FOUND, 255), (FALSE, 255)))
    res = evaluate_prob_raster(scene, prob, thresholds=[0.5], params=EXACT)
    m = res.counts[0].metrics()
    assert (m["labels"], m["found"], m["preds"], m["true_preds"]) == (2, 1, 2, 1)
    assert m["plot_precision"] == 0.5 and m["plot_recall"] == 0.5 and m["plot_f1"] == 0.5
    # pixels: 40 x 40 found, 40 x 40 missed, 40 x 40 false
    assert (res.counts[0].tp_px, res.counts[0].fp_px, res.counts[0].fn_px) == (1600, 1600, 1600)
    assert m["pixel_iou"] == pytest.approx(1 / 3)
    # 4 m2 of false plot on 100 m2 = 0.01 ha of valid ground (geodesic: UTM's scale factor moves it slightly)
    assert m["fp_area_m2"] == pytest.approx(4.0, rel=2e-3)
    assert m["valid_ha"] == pytest.approx(0.01, rel=2e-3)
    assert m["fp_m2_per_ha"] == pytest.approx(400.0, rel=1e-3)
    assert res.label_found[0].tolist() == [True, False]


@pytest.mark.parametrize(
    ("pred_box", "found", "true"),
    [
        ((1, 1, 1.4, 3), True, True),  # 20 % of the label covered: found, and the plot lies wholly on it
        ((1, 1, 1.1, 3), False, True),  # 5 % of the label (0.2 m2): not found, yet a true plot (all on the label)
        ((0.2, 1, 1.1, 3), False, True),  # 0.2 m2 on the label is 11 % of this 1.8 m2 plot: true
        ((1, 2.9, 3, 5), False, False),  # 0.2 m2 on the label: 5 % of it, 4.8 % of the 4.2 m2 plot: neither
        ((0, 3.5, 3, 5.5), False, False),  # beside the label: neither
    ],
)
def test_ten_percent_rules(tmp_path: Path, pred_box: tuple, found: bool, true: bool) -> None:
    scene = make_scene(tmp_path, "b", [ground(*FOUND)])
    res = evaluate_plots(scene, {0.5: [ground(*pred_box)]}, EvalGrid(N, N, Affine(GSD, 0, X0, 0, -GSD, Y0)))
    c = res.counts[0]
    assert (c.found == 1) is found
    assert (c.true_preds == 1) is true


def test_big_field_found_by_half_a_square_metre(tmp_path: Path) -> None:
    # an 8 m x 8 m field (64 m2) touched by a 1 m x 0.6 m detection: 0.6 m2 < 10 % but >= 0.5 m2 -> found
    scene = make_scene(tmp_path, "c", [ground(1, 1, 9, 9)])
    grid = EvalGrid(N, N, Affine(GSD, 0, X0, 0, -GSD, Y0))
    res = evaluate_plots(scene, {0.3: [ground(1, 1, 2, 1.6)], 0.7: [ground(1, 1, 2, 1.4)]}, grid)
    assert [c.found for c in res.counts] == [1, 0]  # 0.6 m2 found, 0.4 m2 not
    assert [c.true_preds for c in res.counts] == [1, 1]


@pytest.mark.parametrize(
    ("spill_area_m2", "true"),
    [
        (100.0, True),  # an 81 m2 courtyard flagged around a 1 m2 plot: a spot the team checks, and finds it
        (10.0, False),  # the same prediction when only 10 m2 spots count: a blob over the field, finds nothing
    ],
)
def test_blob_over_the_field_is_not_a_detection(tmp_path: Path, monkeypatch, spill_area_m2: float, true: bool) -> None:
    monkeypatch.setattr("training.matching.SPILL_AREA_M2", spill_area_m2)
    scene = make_scene(tmp_path, "blob", [ground(4, 4, 5, 5)])
    c = evaluate_plots(scene, {0.5: [ground(0.5, 0.5, 9.5, 9.5)]}, EvalGrid(N, N, Affine(GSD, 0, X0, 0, -GSD, Y0)))
    c = c.counts[0]
    assert c.preds == 1 and (c.true_preds == 1) is true and (c.found == 1) is true
    assert c.fp_area_m2 == pytest.approx(80.0, rel=2e-3)  # counted either way


def test_poppy_free_scene_reports_false_positive_area_per_hectare(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "free", [])
    prob = write_prob(tmp_path / "free.prob.tif", prob_with(((2, 2, 3, 3), 200)))  # 1 m2 blob at p = 0.78
    report = summarise([evaluate_prob_raster(scene, prob, thresholds=[0.5, 0.9], params=EXACT)])
    low, high = report.rows
    assert low["labels"] == 0 and low["preds"] == 1 and low["true_preds"] == 0
    assert math.isnan(low["plot_recall"]) and math.isnan(low["plot_f1"]) and low["plot_precision"] == 0.0
    assert low["fp_m2_per_ha"] == pytest.approx(100.0, rel=2e-3)  # 1 m2 per 0.01 ha
    assert high["preds"] == 0 and high["fp_m2_per_ha"] == 0.0
    # only poppy-free scenes: the least false-positive area wins, and the score is minus that area
    assert report.threshold == 0.9 and "least false-positive" in report.reason
    assert report.score == (0.0, 0.0)
    d = report.to_dict()
    assert d["chosen"]["plot_recall"] is None  # NaN -> null in JSON
    json.dumps(d)


def test_aoi_excludes_plots_and_pixels_outside_it(tmp_path: Path) -> None:
    # AOI = left half (x < 5 m). MISSED (x 6-8) lies outside: not counted. A false plot outside: not counted.
    left = ground(0, 0, 5, 10)
    scene = make_scene(tmp_path, "aoi", [ground(*FOUND), ground(*MISSED)], aoi=left)
    prob = write_prob(tmp_path / "aoi.prob.tif", prob_with((FOUND, 255), ((6, 6, 8, 8), 255)))
    m = evaluate_prob_raster(scene, prob, thresholds=[0.5], params=EXACT).counts[0].metrics()
    assert (m["labels"], m["found"], m["preds"], m["true_preds"]) == (1, 1, 1, 1)
    assert m["pixel_iou"] == 1.0 and m["fp_m2_per_ha"] == 0.0
    assert m["valid_ha"] == pytest.approx(0.005, rel=2e-3)


def test_plot_partly_outside_the_aoi_counts_its_inside_part(tmp_path: Path) -> None:
    # a 4 m2 false plot straddling the AOI border (x = 5 m): 2 m2 inside
    scene = make_scene(tmp_path, "half", [ground(*FOUND)], aoi=ground(0, 0, 5, 10))
    grid = EvalGrid(N, N, Affine(GSD, 0, X0, 0, -GSD, Y0))
    c = evaluate_plots(scene, {0.5: [ground(*FOUND), ground(4, 6, 6, 8)]}, grid).counts[0]
    assert c.preds == 2 and c.true_preds == 1
    assert c.fp_area_m2 == pytest.approx(2.0, rel=2e-3)
    assert c.fp_px == 20 * 40  # 1 m x 2 m of pixels inside the AOI


def test_pixels_outside_the_footprint_are_ignored(tmp_path: Path) -> None:
    alpha = np.full((N, N), 255, dtype=np.uint8)
    alpha[:, 100:] = 0  # the right half is outside the orthomosaic's footprint
    scene = make_scene(tmp_path, "fp", [ground(*FOUND)], alpha=alpha)
    grid = EvalGrid(N, N, Affine(GSD, 0, X0, 0, -GSD, Y0))
    c = evaluate_plots(scene, {0.5: [ground(*FOUND), ground(6, 6, 8, 8)]}, grid).counts[0]
    assert c.fp_px == 0 and c.tp_px == 1600  # the false plot lies where there is no image
    assert c.valid_m2 == pytest.approx(50.0, rel=2e-3)


def test_threshold_sweep_picks_recall_first_then_precision(tmp_path: Path) -> None:
    # three labels scored 0.9, 0.6 and 0.3 and a false plot at 0.7: every label is found up to t = 0.30 and
    # precision is 3/4 there; above, recall drops. Ties (0.05 ... 0.30 all equal) go to the one nearest 0.5.
    labels = [(1, 1, 3, 3), (6, 1, 8, 3), (1, 6, 3, 8)]
    scene = make_scene(tmp_path, "sweep", [ground(*b) for b in labels])
    prob = write_prob(
        tmp_path / "sweep.prob.tif",
        prob_with((labels[0], 230), (labels[1], 154), (labels[2], 78), ((6, 6, 8, 8), 179)),
    )
    report = summarise([evaluate_prob_raster(scene, prob, params=EXACT)])
    assert report.thresholds == DEFAULT_THRESHOLDS
    assert report.threshold == 0.3
    assert report.chosen["plot_recall"] == 1.0 and report.chosen["plot_precision"] == 0.75
    assert "plot recall >= 0.95" in report.reason
    by_t = {r["threshold"]: r for r in report.rows}
    assert by_t[0.35]["found"] == 2 and by_t[0.65]["found"] == 1 and by_t[0.95]["preds"] == 0
    assert by_t[0.75]["plot_precision"] == 1.0  # the false plot (0.70) is gone, one label remains
    text = report.table(sweep=True)
    assert "threshold 0.30" in text and "3/3" in text and "3/4" in text


@pytest.mark.parametrize(
    ("rows", "expected", "reason"),
    [
        # recall >= 0.95 reached at 0.3 and 0.5: the better precision (0.5) wins
        ([(0.3, 1.0, 0.6, 0.5), (0.5, 0.96, 0.8, 0.5), (0.7, 0.8, 0.95, 0.6)], 1, ">="),
        # same precision: the higher pixel IoU wins
        ([(0.3, 1.0, 0.8, 0.4), (0.5, 1.0, 0.8, 0.6), (0.7, 0.9, 0.95, 0.6)], 1, ">="),
        # nothing reaches 0.95: the highest recall, ties by precision
        ([(0.3, 0.9, 0.5, 0.5), (0.5, 0.9, 0.7, 0.5), (0.7, 0.6, 0.95, 0.6)], 1, "highest recall"),
        # complete ties: the threshold nearest 0.5
        ([(0.1, 1.0, 1.0, 0.9), (0.45, 1.0, 1.0, 0.9), (0.8, 1.0, 1.0, 0.9)], 1, ">="),
        # no prediction anywhere (precision undefined), recall 0: nearest 0.5
        ([(0.2, 0.0, math.nan, 0.0), (0.5, 0.0, math.nan, 0.0), (0.9, 0.0, math.nan, 0.0)], 1, "highest recall"),
    ],
)
def test_choose_threshold_table(rows: list[tuple], expected: int, reason: str) -> None:
    table = [
        {"threshold": t, "plot_recall": r, "plot_precision": p, "pixel_iou": iou, "fp_m2_per_ha": 0.0}
        for t, r, p, iou in rows
    ]
    index, why = choose_threshold(table, 0.95)
    assert index == expected
    assert reason in why


def test_breakdown_by_stage_and_gsd(tmp_path: Path) -> None:
    # scene 1: two flowering labels (one found) and a capsule label (found); sidecar: 2.5 cm, "mixed" by labels
    s1 = make_scene(
        tmp_path,
        "s1",
        [ground(*FOUND), ground(*MISSED), ground(1, 6, 3, 8)],
        stages=["flowering", "flowering", "capsule"],
        sidecar={"gsd_m": 0.025},
    )
    p1 = write_prob(tmp_path / "s1.prob.tif", prob_with((FOUND, 255), ((1, 6, 3, 8), 255)))
    # scene 2: poppy-free, sidecar stage "flowering", GSD 4 cm, one false plot
    s2 = make_scene(tmp_path, "s2", [], sidecar={"stage": "flowering", "gsd_m": 0.04, "seed": 3})
    p2 = write_prob(tmp_path / "s2.prob.tif", prob_with(((5, 5, 6, 6), 255)))
    assert s2.stage == "flowering" and s2.gsd_m == 0.04 and s1.stage is None
    report = summarise([evaluate_prob_raster(s, p, thresholds=[0.5], params=EXACT) for s, p in ((s1, p1), (s2, p2))])
    stage = {r["group"]: r for r in report.by_stage}
    assert set(stage) == {"capsule", "flowering", "mixed"}
    assert (stage["flowering"]["labels"], stage["flowering"]["found"]) == (2, 1)
    assert (stage["capsule"]["labels"], stage["capsule"]["found"]) == (1, 1)
    # predictions go by the scene's stage: scene 2's false plot is "flowering", scene 1's plots are "mixed"
    assert (stage["flowering"]["preds"], stage["flowering"]["true_preds"]) == (1, 0)
    assert (stage["mixed"]["preds"], stage["mixed"]["true_preds"]) == (2, 2)
    gsd = {r["group"]: r for r in report.by_gsd}
    assert set(gsd) == {"2-3.5 cm", ">3.5 cm"}
    assert gsd[">3.5 cm"]["fp_m2_per_ha"] == pytest.approx(100.0, rel=2e-3) and gsd[">3.5 cm"]["scenes"] == 1
    assert gsd["2-3.5 cm"]["plot_recall"] == pytest.approx(2 / 3)
    assert [r["scene"] for r in report.scenes] == ["s1", "s2"]
    text = report.table()
    assert "stage flowering" in text and "GSD >3.5 cm" in text


@pytest.mark.parametrize(
    ("gsd", "name"), [(0.015, "<2 cm"), (0.02, "2-3.5 cm"), (0.034, "2-3.5 cm"), (0.05, ">3.5 cm")]
)
def test_gsd_bins(gsd: float, name: str) -> None:
    assert gsd_bin(gsd) == name


def test_plot_file_from_infer_scores_like_training(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "inf", [ground(*FOUND), ground(*MISSED)])
    prob = write_prob(tmp_path / "inf.prob.tif", prob_with((FOUND, 255), (FALSE, 255)))
    trained = summarise([evaluate_prob_raster(scene, prob, thresholds=[0.5], params=EXACT)])
    # what infer.py would have written: the same polygons in a vector file of the raster's CRS
    plots = write_polygons(tmp_path / "out.geojson", [ground(*FOUND), ground(*FALSE)])
    served = evaluate_plot_files([(scene, plots)], gsd_m=GSD, threshold=0.5)
    for key in ("plot_precision", "plot_recall", "pixel_iou", "fp_m2_per_ha", "labels", "preds"):
        assert served.chosen[key] == pytest.approx(trained.chosen[key], rel=1e-6)


class RedRule(nn.Module):
    """Logit +30 on red, -10 on grey: a 'model' with a known answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, 0:1] - x[:, 1:2]) - 10.0


def test_evaluate_scenes_runs_the_inference_path(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "red", [ground(*FOUND)], red=[FOUND, FALSE])
    spec = ModelSpec(arch="fastunet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), gsd_m=GSD, tile_size=64)
    report = evaluate_scenes(
        RedRule(), spec, [scene], thresholds=[0.3, 0.6], work_dir=tmp_path / "val", min_area_m2=0.5
    )
    assert (tmp_path / "val" / "red.prob.tif").exists()
    c = report.chosen
    assert (c["labels"], c["found"], c["preds"], c["true_preds"]) == (1, 1, 2, 1)
    assert c["pixel_iou"] == pytest.approx(0.5, abs=0.02)  # the painted false plot is as big as the label
    assert c["fp_area_m2"] == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize(
    ("n", "fraction", "n_val"),
    [(2, 0.2, 1), (5, 0.2, 1), (10, 0.2, 2), (10, 0.95, 9), (3, 0.5, 2)],
)
def test_hold_out_whole_rasters(n: int, fraction: float, n_val: int) -> None:
    items = [f"r{i}.tif" for i in range(n)]
    train, val = hold_out(items, fraction, seed=7)
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(train + val) == sorted(items) and not set(train) & set(val)
    assert hold_out(items, fraction, seed=7) == (train, val)  # the seed fixes the split


@pytest.mark.parametrize(
    ("n", "fraction", "match"),
    [(1, 0.2, "at least 2"), (3, 0.0, "between 0 and 1"), (3, 1.0, "between 0 and 1")],
)
def test_hold_out_refuses(n: int, fraction: float, match: str) -> None:
    with pytest.raises(InputError, match=match):
        hold_out(list(range(n)), fraction, seed=0)


def test_scenes_from_folder(tmp_path: Path) -> None:
    make_scene(tmp_path, "b", [ground(*FOUND)], aoi=ground(0, 0, 5, 5))
    make_scene(tmp_path, "a", [], sidecar={"stage": "rosette", "gsd_m": 0.05})
    write_raster(tmp_path / "unlabelled.tif")
    scenes = scenes_from_folder(tmp_path)
    assert [s.name for s in scenes] == ["a", "b"]
    assert scenes[0].stage == "rosette" and scenes[0].aoi is None
    assert scenes[1].aoi == tmp_path / "b.aoi.geojson"
    with pytest.raises(InputError, match="no such folder"):
        scenes_from_folder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no orthomosaic with labels"):
        scenes_from_folder(empty)


@pytest.mark.parametrize(
    ("thresholds", "match"), [([], "at least one"), ([0.0, 0.5], "between 0 and 1"), ([1.2], "between 0 and 1")]
)
def test_bad_thresholds_are_refused(tmp_path: Path, thresholds: list, match: str) -> None:
    scene = make_scene(tmp_path, "t", [])
    prob = write_prob(tmp_path / "t.prob.tif", prob_with())
    with pytest.raises(InputError, match=match):
        evaluate_prob_raster(scene, prob, thresholds=thresholds)


def test_geographic_raster_areas_are_in_square_metres(tmp_path: Path) -> None:
    # the same 10 m x 10 m scene in EPSG:4326: pixels of 5 cm expressed in degrees at 36 N
    lon0, lat0 = 117.0, 36.0
    dlat = GSD / 110_950.0  # metres per degree of latitude near 36 N (WGS84)
    dlon = GSD / (111_320.0 * math.cos(math.radians(lat0)) * 1.0008)  # and of longitude (ellipsoid correction)
    transform = Affine(dlon, 0, lon0, 0, -dlat, lat0)
    profile = dict(driver="GTiff", height=N, width=N, dtype="uint8", crs="EPSG:4326", transform=transform)
    with rasterio.open(tmp_path / "geo.tif", "w", count=3, **profile) as ds:
        ds.write(np.full((3, N, N), 90, dtype=np.uint8))
    with rasterio.open(tmp_path / "geo.prob.tif", "w", count=1, **profile) as ds:
        ds.write(prob_with((FALSE, 255)), 1)
    (tmp_path / "geo.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    report = summarise([evaluate_prob_raster(LabelledScene.from_raster(tmp_path / "geo.tif"), tmp_path / "geo.prob.tif",
                                             thresholds=[0.5], params=EXACT)])  # fmt: skip
    c = report.chosen
    assert c["preds"] == 1 and c["fp_area_m2"] == pytest.approx(4.0, rel=0.01)
    assert c["valid_ha"] == pytest.approx(0.01, rel=0.01)
    assert c["fp_m2_per_ha"] == pytest.approx(400.0, rel=0.01)
