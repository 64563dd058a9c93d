"""The second stage (detect/judge.py, models/plotnet.py): chip placement, chip reading, calibration, operating
points, on tiny hand-made rasters and numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from shapely.geometry import box

from core.errors import InputError
from datasets.chips import ChipSource
from detect.judge import (
    calibrate,
    chip_centres,
    choose_operating_points,
    judge_input,
    plot_chip_centres,
    read_judge_chip,
    resolve_operating_point,
    score_plots,
)
from detect.pipeline import RunOptions, run_one
from detect.raster import inspect_raster
from models.checkpoint import ModelSpec, load_checkpoint, load_judge, save_checkpoint
from models.plotnet import JudgeSpec, PlotNet, build_judge
from models.registry import build_model
from tests.conftest import north_up, write_geotiff
from training.judge import (
    Candidate,
    JudgeChips,
    cross_fitted_scores,
    expected_calibration_error,
    fit_platt,
    match_candidates,
    pr_curve,
    reliability,
    roc_auc,
    train_judge,
)

UTM = "EPSG:32650"


def write_rgb(path: Path, rgb: np.ndarray, gsd: float, crs: str = UTM, origin=(500000.0, 4000000.0)) -> Path:
    return write_geotiff(path, rgb, crs=crs, transform=north_up(gsd, origin), dtype="uint8")


# --- chip placement: a table of cases -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("poly", "chip_m", "max_chips", "expected"),
    [
        # fits in one chip: one centre at the bounding-box centre
        (box(0, 0, 2, 1), 4.0, 6, [(1.0, 0.5)]),
        (box(10, 10, 13.2, 11), 4.0, 6, [(11.6, 10.5)]),
        # larger than 80 % of a chip but max_chips 1: still one, at the box centre
        (box(0, 0, 40, 40), 4.0, 1, [(20.0, 20.0)]),
    ],
)
def test_chip_centres_small_plots(poly, chip_m, max_chips, expected) -> None:
    np.testing.assert_allclose(chip_centres(poly, chip_m, max_chips), expected)


@pytest.mark.parametrize(("side", "max_chips"), [(10.0, 6), (40.0, 6), (40.0, 3), (9.0, 2)])
def test_chip_centres_large_plots_are_inside_spread_and_capped(side: float, max_chips: int) -> None:
    poly = box(0, 0, side, side)
    centres = chip_centres(poly, 4.0, max_chips)
    assert 2 <= len(centres) <= max_chips
    assert all(poly.contains(shapely.Point(c)) for c in centres)
    d = [np.hypot(a[0] - b[0], a[1] - b[1]) for i, a in enumerate(centres) for b in centres[i + 1 :]]
    assert min(d) >= 0.5 * 0.75 * 4.0  # no two chips on top of each other
    assert chip_centres(poly, 4.0, max_chips) == centres  # deterministic


def test_chip_centres_of_a_thin_long_plot_stay_on_it() -> None:
    poly = box(0, 0, 30, 1.0)  # a field-edge strip 1 m wide: no grid point inside, the representative point is
    centres = chip_centres(poly, 4.0, 6)
    assert len(centres) >= 1 and all(poly.contains(shapely.Point(c)) for c in centres)


# --- chip reading -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crs", [UTM, "EPSG:4326"])
def test_read_judge_chip_puts_the_candidate_where_its_pixels_are(tmp_path: Path, crs: str) -> None:
    gsd = 0.015 if crs == UTM else 0.015 / 111_000  # 1.5 cm (about, in degrees): the chip is resampled to 3 cm
    origin = (500000.0, 4000000.0) if crs == UTM else (117.0, 36.0)
    rgb = np.zeros((3, 400, 400), dtype=np.uint8)
    rgb[0, 150:250, 180:260] = 255  # a red 1.5 m x 1.2 m plot
    path = write_rgb(tmp_path / "s.tif", rgb, gsd, crs, origin)
    t = Affine(gsd, 0, origin[0], 0, -gsd, origin[1])
    plot = shapely.Polygon([t * (180, 150), t * (260, 150), t * (260, 250), t * (180, 250)])
    spec = JudgeSpec(chip_px=64, gsd_m=0.03)
    with rasterio.open(path) as ds:
        info = inspect_raster(ds)
        poly_px, centres = plot_chip_centres(plot, info, spec)
        assert len(centres) == 1
        np.testing.assert_allclose(centres[0], (200.0, 220.0), atol=0.5)
        chip, mask = read_judge_chip(ds, info, poly_px, centres[0], spec.chip_px, spec.gsd_m)
    assert chip.shape == (3, 64, 64) and mask.shape == (64, 64)
    red = chip[0] > 127
    # the red plot and its mask are the same pixels, centred in the chip: its ground size at 3 cm (in EPSG:4326 a
    # degree of longitude is shorter than one of latitude, and the measured GSD says by how much)
    expected_px = (100 * info.gsd_m[0] / 0.03) * (80 * info.gsd_m[1] / 0.03)
    assert abs(int(red.sum()) - expected_px) <= 120
    assert (red == mask).mean() > 0.97
    rows, cols = np.nonzero(mask)
    assert rows.mean() == pytest.approx(31.5, abs=1.0) and cols.mean() == pytest.approx(31.5, abs=1.0)


def test_judge_input_normalises_and_adds_the_mask_channel() -> None:
    spec = JudgeSpec()
    rgb = np.full((2, 3, 8, 8), 255, dtype=np.uint8)
    mask = np.zeros((2, 8, 8), dtype=bool)
    mask[:, :4] = True
    x = judge_input(rgb, mask, spec)
    assert x.shape == (2, 4, 8, 8) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx((1.0 - 0.485) / 0.229)
    assert x[0, 3, 0, 0] == 1.0 and x[0, 3, 7, 0] == -1.0


def test_score_plots_averages_chip_logits_per_plot(tmp_path: Path) -> None:
    rgb = np.zeros((3, 600, 600), dtype=np.uint8)
    path = write_rgb(tmp_path / "s.tif", rgb, 0.03)
    t = Affine(0.03, 0, 500000.0, 0, -0.03, 4000000.0)
    small = box(*(t * (10, 60)), *(t * (60, 10)))  # 1.5 m: one chip
    large = box(*(t * (100, 590)), *(t * (590, 100)))  # 14.7 m: several chips

    class CountChips(torch.nn.Module):  # logit = share of the mask channel that is inside the plot
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x[:, 3] > 0).float().mean(dim=(1, 2))

    spec = JudgeSpec(chip_px=64, max_chips=4, calibration=(2.0, -1.0))
    with rasterio.open(path) as ds:
        logits, scores = score_plots(ds, inspect_raster(ds), [small, large], CountChips(), spec)
    assert logits[0] == pytest.approx(50 * 50 / 64**2, abs=0.03)  # the whole small plot lies in its chip
    assert logits[1] == pytest.approx(1.0)  # every chip of the large plot lies inside it
    assert scores == pytest.approx(1 / (1 + np.exp(-(2.0 * logits - 1.0))))


# --- calibration and operating points -----------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n"), [(0, 4000), (1, 2000), (1, 1000)])
def test_fit_platt_recovers_a_known_scaling(seed: int, n: int) -> None:
    # Seed 1 once made undamped Newton steps diverge to a ~ 5e10.
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, n)
    labels = rng.random(n) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(0.5, abs=0.08) and b == pytest.approx(-1.0, abs=0.2)
    table = reliability(calibrate(logits, (a, b)), labels)
    assert expected_calibration_error(table) < 0.04
    assert sum(r["n"] for r in table) == n


def test_fit_platt_refuses_one_sided_validation() -> None:
    with pytest.raises(InputError, match="at least 2 true and 2 false"):
        fit_platt(np.array([1.0, 2.0, 3.0]), np.array([True, True, False]))


def test_cross_fitted_scores_are_out_of_sample() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, 2000)
    labels = rng.random(2000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))
    scene = np.arange(2000) % 7
    scores, how = cross_fitted_scores(logits, labels, scene)
    assert how == "2-fold by scene"
    # Each half is scored by the fit on the other half, not by the fit on all candidates.
    even = scene % 2 == 0
    expected = calibrate(logits[even], fit_platt(logits[~even], labels[~even]))
    np.testing.assert_allclose(scores[even], expected)
    assert not np.allclose(scores, calibrate(logits, fit_platt(logits, labels)))
    assert expected_calibration_error(reliability(scores, labels)) < 0.05


def test_cross_fitted_scores_fall_back_in_sample_when_a_fold_is_one_sided() -> None:
    logits = np.array([-3.0, -2.0, 2.0, 3.0, -1.0, 1.0])
    labels = np.array([False, False, True, True, False, True])
    scene = np.array([0, 0, 0, 0, 1, 1])  # the odd fold has one true and one false candidate: too few to fit
    scores, how = cross_fitted_scores(logits, labels, scene)
    assert how == "in-sample"
    np.testing.assert_allclose(scores, calibrate(logits, fit_platt(logits, labels)))


def test_pr_curve_counts_plots_and_unproposed_misses() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.2])
    is_true = np.array([True, False, True, False])
    found_by = [[0], [], [1, 2], []]  # candidate 2 finds two labelled plots; label 3 is never proposed
    curve = pr_curve(scores, is_true, found_by, n_labels=4, thresholds=np.array([0.1, 0.5, 0.85, 0.95]))
    assert curve == [
        [0.1, 0.5, 0.75, 4.0],
        [0.5, 0.5, 0.25, 2.0],
        [0.85, 1.0, 0.25, 1.0],
        [0.95, 1.0, 0.0, 0.0],
    ]


def test_choose_operating_points() -> None:
    curve = [
        [0.1, 0.30, 1.00, 30],
        [0.3, 0.50, 0.96, 20],
        [0.5, 0.80, 0.90, 12],
        [0.7, 0.92, 0.70, 8],
        [0.9, 1.00, 0.20, 2],
    ]
    points = choose_operating_points(curve)
    assert points["high"]["threshold"] == 0.3  # recall >= 0.95, best precision
    assert points["balanced"]["threshold"] == 0.5  # F1 0.847
    assert points["low"]["threshold"] == 0.7  # precision >= 0.90, best recall
    # no threshold reaches the targets: highest recall, best precision
    weak = [[0.1, 0.2, 0.8, 9], [0.5, 0.5, 0.5, 4]]
    points = choose_operating_points(weak)
    assert points["high"]["threshold"] == 0.1 and points["low"]["threshold"] == 0.5


# --- the network and its spec ---------------------------------------------------------------------------------------


def test_plotnet_gives_one_logit_per_chip_and_learns() -> None:
    torch.manual_seed(0)
    net = PlotNet(in_channels=4, base_channels=4, depth=2)
    x = torch.randn(6, 4, 24, 24)
    assert net(x).shape == (6,)
    assert net(torch.randn(2, 4, 40, 32)).shape == (2,)
    y = torch.tensor([1.0, 0, 1, 0, 1, 0])
    x[y == 1, 0] += 2.0  # positives are redder
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_build_judge_names_the_valid_choices() -> None:
    with pytest.raises(InputError, match="unknown judge network 'resnet'; choose one of: plotnet"):
        build_judge("resnet")
    with pytest.raises(InputError, match="plotnet needs 2 <= depth <= 5"):
        build_judge("plotnet", depth=9)


def test_judge_spec_round_trips_through_plain_types() -> None:
    spec = JudgeSpec(
        calibration=(1.5, -0.25),
        operating_points={"high": {"threshold": 0.2, "precision": 0.5, "recall": 0.96}},
        pr_curve=[[0.1, 0.5, 1.0, 3.0]],
        metrics={"auc": 0.9},
    )
    d = spec.to_dict()
    assert JudgeSpec.from_dict(d) == spec
    with pytest.raises(InputError, match="judge settings in the checkpoint are damaged"):
        JudgeSpec.from_dict({"arch": "plotnet"})


# --- matching candidates to labels: a table of cases ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "expected_true", "expected_found"),
    [
        (box(0, 0, 2, 2), True, (0,)),  # on the label
        (box(1.5, 1.5, 3, 3), True, ()),  # 11 % of it on the label: true, but covers only 6 % of the label
        (box(5, 5, 6, 6), False, ()),  # off every label
        (box(-3, -3, 3, 3), True, (0,)),  # covers the whole label, 4x its area: a loose outline, not a blob
        (box(-20, -20, 20, 20), False, ()),  # a blob over the field: 400x the label and 1600 m2
        (box(1.5, 0, 10.5, 2), True, (0, 1)),  # spans two labels, finds both
    ],
)
def test_match_candidates(pred, expected_true: bool, expected_found: tuple[int, ...]) -> None:
    labels = [box(0, 0, 2, 2), box(8, 0, 10, 2)]  # metres in a UTM CRS: 4 m2 each
    is_true, found_by = match_candidates(labels, [(pred, pred.area)])
    assert bool(is_true[0]) is expected_true
    assert found_by[0] == expected_found


def test_roc_auc() -> None:
    assert roc_auc(np.array([3.0, 2.0, 1.0, 0.0]), np.array([True, True, False, False])) == 1.0
    assert roc_auc(np.array([0.0, 1.0, 2.0, 3.0]), np.array([True, True, False, False])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5


# --- a tiny scene: red squares are poppy, one red square is not labelled -------------------------------------------


def _scene(tmp_path: Path) -> Path:
    """256 x 256 px at 3 cm: two labelled red plots, one unlabelled orange one (a look-alike), grey ground."""
    rgb = np.full((3, 256, 256), 90, dtype=np.uint8)
    rgb[:, 30:80, 30:80] = np.array([220, 40, 40], dtype=np.uint8)[:, None, None]
    rgb[:, 150:220, 60:120] = np.array([220, 40, 40], dtype=np.uint8)[:, None, None]
    rgb[:, 40:100, 160:230] = np.array([230, 120, 30], dtype=np.uint8)[:, None, None]
    path = write_rgb(tmp_path / "scene.tif", rgb, 0.03)
    t = Affine(0.03, 0, 500000.0, 0, -0.03, 4000000.0)
    feats = []
    for r0, r1, c0, c1 in ((30, 80, 30, 80), (150, 220, 60, 120)):
        ring = [t * (c0, r0), t * (c1, r0), t * (c1, r1), t * (c0, r1), t * (c0, r0)]
        feats.append(
            {
                "type": "Feature",
                "properties": {"stage": "flowering"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    (tmp_path / "scene.geojson").write_text(
        json.dumps(
            {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": UTM}}, "features": feats}
        )
    )
    return path


class RedDetector(torch.nn.Module):
    """A stand-in first stage: poppy where red clearly beats green (the orange look-alike too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, 0:1] - x[:, 1:2] - 1.0)


def test_judge_chips_are_balanced_reproducible_and_on_their_polygons(tmp_path: Path) -> None:
    source = ChipSource(_scene(tmp_path))
    t = source.info.transform
    false = box(*(t * (160, 100)), *(t * (230, 40)))
    cands = [Candidate(0, g, True, "label") for g in source.positive_geoms] + [Candidate(0, false, False, "proposal")]
    spec = JudgeSpec(chip_px=96, gsd_m=0.03)  # larger than the plots: the jitter moves their edges in the chip
    chips = JudgeChips([source], cands, spec, chips_per_epoch=16, seed=3, augment=False, random_share=0.0)
    ys = [float(chips[i][1]) for i in range(16)]
    assert ys == [1.0, 0.0] * 8
    x0, _ = chips[1]
    assert torch.equal(chips[1][0], x0)  # the same chip for the same seed, epoch and index
    chips.set_epoch(1)
    assert not torch.equal(chips[1][0], x0)  # another draw the next epoch
    # a negative chip shows the orange look-alike under its mask: red high, green middling
    red = x0[0] * 0.229 + 0.485
    inside = x0[3] > 0
    assert inside.any() and float(red[inside].mean()) > 0.8


def test_train_judge_end_to_end_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ChipSource(_scene(tmp_path))
    stage1_spec = ModelSpec(arch="fastunet", threshold=0.5, gsd_m=0.03)
    spec = JudgeSpec(chip_px=48, arch_args={"base_channels": 8, "depth": 3})
    # validation on the same scene, only to exercise the code: 3 proposals (2 true), calibrated
    model, spec, report = train_judge(
        [source], [source, source], RedDetector(), stage1_spec, spec=spec, epochs=2, chips_per_epoch=64,
        batch_size=16, say=lambda s: None,
    )  # fmt: skip
    assert report.candidates == 6 and report.true_candidates == 4 and report.labels == 4 and report.proposed == 4
    assert set(spec.operating_points) == {"high", "balanced", "low"}
    assert len(spec.pr_curve) == 41 and 0 <= report.ece <= 1
    assert "operating point" in report.table()
    stage1 = build_model("fastunet", base_channels=4, depth=1)
    path = tmp_path / "two_stage.pt"
    save_checkpoint(
        path, stage1, ModelSpec(arch="fastunet", arch_args={"base_channels": 4, "depth": 1}), judge=(model, spec)
    )
    loaded, loaded_spec = load_judge(path)
    assert loaded_spec == spec
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    load_checkpoint(path)  # the first stage still loads as before
    one_stage = tmp_path / "one_stage.pt"
    save_checkpoint(one_stage, stage1, ModelSpec(arch="fastunet", arch_args={"base_channels": 4, "depth": 1}))
    assert load_judge(one_stage) is None


def test_resolve_operating_point_from_judge_sweep_or_default() -> None:
    judge = JudgeSpec(operating_points={"high": {"threshold": 0.2, "precision": 0.5, "recall": 0.96}})
    one_stage = ModelSpec(arch="fastunet", threshold=0.35)
    point = resolve_operating_point(one_stage, judge, "high")
    assert (point.threshold, point.applies_to, point.recall) == (0.2, "plot score", 0.96)
    sweep = {"thresholds": [
        {"threshold": 0.2, "plot_precision": 0.3, "plot_recall": 0.96},
        {"threshold": 0.5, "plot_precision": 0.6, "plot_recall": 0.9},
        {"threshold": 0.8, "plot_precision": 0.95, "plot_recall": 0.5},
    ]}  # fmt: skip
    with_sweep = ModelSpec(arch="fastunet", threshold=0.35, metrics=sweep)
    assert resolve_operating_point(with_sweep, None, "high").threshold == 0.2
    assert resolve_operating_point(with_sweep, None, "balanced").threshold == 0.5
    low = resolve_operating_point(with_sweep, None, "low")
    assert (low.threshold, low.applies_to, low.precision) == (0.8, "pixel probability", 0.95)
    bare = resolve_operating_point(one_stage, None, "low")
    assert bare.threshold == 0.35 and "no operating points" in bare.note
    assert resolve_operating_point(with_sweep, None, "low", threshold=0.6).sensitivity == "custom"
    with pytest.raises(InputError, match="--sensitivity medium: choose one of high, balanced, low"):
        resolve_operating_point(one_stage, None, "medium")


class GreenJudge(torch.nn.Module):
    """A stand-in judge: poppy when the plot's pixels (the mask channel) are red with little green."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x[:, 3] > 0).float()
        green = (x[:, 1] * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2)).clamp(min=1)
        return -10.0 * (green + 0.6)  # red plots (green 40/255): about +7; the orange look-alike: about -7


def test_run_one_with_a_judge_keeps_and_renumbers_the_plots_it_passes(tmp_path: Path) -> None:
    path = _scene(tmp_path)
    stage1 = ModelSpec(arch="fastunet", threshold=0.5, gsd_m=0.03, tile_size=128)
    points = {name: {"threshold": 0.5, "precision": 0.9, "recall": 0.8} for name in ("high", "balanced", "low")}
    judge = JudgeSpec(chip_px=48, gsd_m=0.03, calibration=(1.0, 0.0), operating_points=points)
    options = RunOptions(out_dir=tmp_path / "two", formats=("geojson", "csv"), progress=False)
    two = run_one(path, RedDetector(), stage1, options, judge=(GreenJudge(), judge))
    summary = two.summary
    assert summary["plots"]["proposed_by_first_stage"] == 3 and two.plot_count == 2
    assert summary["operating_point"]["sensitivity"] == "balanced"
    assert summary["operating_point"]["applies_to"] == "plot score" and summary["model"]["stages"] == 2
    assert "calibrated probability" in summary["score"]
    feats = json.loads(two.outputs["geojson"].read_text())["features"]
    assert [f["properties"]["plot_id"] for f in feats] == ["P001", "P002"]
    assert all(f["properties"]["score"] > 0.99 for f in feats)
    rows = two.outputs["csv"].read_text().splitlines()
    assert rows[0] == "plot_id,lat,lon,area_m2,score,score_kind,chip"
    assert all(float(r.split(",")[4]) > 0.99 and r.split(",")[5] == "calibrated_probability" for r in rows[1:])

    # Without the judge every proposal is a plot, and its score is the mean pixel probability.
    one = run_one(
        path, RedDetector(), stage1, RunOptions(out_dir=tmp_path / "one", formats=("geojson",), progress=False)
    )
    assert one.plot_count == 3 and one.summary["model"]["stages"] == 1
    props = [f["properties"] for f in json.loads(one.outputs["geojson"].read_text())["features"]]
    assert all(p["score"] == p["score_mean"] for p in props)

    # A hand-set threshold over every score keeps nothing.
    strict = RunOptions(out_dir=tmp_path / "strict", formats=("geojson",), progress=False, threshold=1.0)
    assert run_one(path, RedDetector(), stage1, strict, judge=(GreenJudge(), judge)).plot_count == 0


def test_evaluate_judged_scores_the_kept_plots_per_plot_score_threshold(tmp_path: Path) -> None:
    from datasets.labelled import LabelledScene
    from detect.predict import predict_raster
    from training.evaluate import evaluate_judged

    path = _scene(tmp_path)
    stage1 = ModelSpec(arch="fastunet", threshold=0.5, gsd_m=0.03, tile_size=128)
    prob = tmp_path / "scene.prob.tif"
    predict_raster(path, RedDetector(), stage1, prob_path=prob, progress=False)
    judge = JudgeSpec(chip_px=48, gsd_m=0.03, calibration=(1.0, 0.0))
    res = evaluate_judged(
        LabelledScene.from_raster(path), prob, 0.5, GreenJudge(), judge, thresholds=(0.0005, 0.5)
    )  # the look-alike scores ~0.0013
    everything, judged = (c.metrics() for c in res.counts)
    assert (everything["preds"], everything["true_preds"], everything["found"]) == (3, 2, 2)
    assert (judged["preds"], judged["true_preds"], judged["found"], judged["labels"]) == (2, 2, 2, 2)
