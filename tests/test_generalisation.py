"""Tests of the generalisation tests: the real-negatives split, composites, and the table arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from core.errors import InputError
from datasets.public import PublicChipDataset, open_public
from datasets.public.real_negatives import SPLIT, RealNegatives, frame_gsd_m

SHARED_NEGATIVES = Path(__file__).resolve().parents[2] / "shared/data/real/negatives"


def _png(path: Path, value: int = 120, size: int = 64) -> None:
    data = np.full((3, size, size), value, dtype=np.uint8)
    with rasterio.open(path, "w", driver="PNG", height=size, width=size, count=3, dtype="uint8") as dst:
        dst.write(data)


# --- the fixed split ---------------------------------------------------------------------------------------------


def test_split_names_both_parts_and_only_two():
    assert set(SPLIT.values()) == {"train", "test"}
    assert sum(v == "test" for v in SPLIT.values()) >= 3


def test_negative_tiles_never_include_a_test_file(tmp_path):
    # Tiny stand-ins under the real names: the reader decides by name, so the split is tested without ../shared.
    test_name = next(n for n, s in SPLIT.items() if s == "test" and n.endswith(".jpg"))
    train_name = next(n for n, s in SPLIT.items() if s == "train" and n.endswith(".png"))
    _png(tmp_path / train_name.replace(".png", ".png"))
    with rasterio.open(tmp_path / test_name, "w", driver="JPEG", height=64, width=64, count=3, dtype="uint8") as d:
        d.write(np.full((3, 64, 64), 90, np.uint8))
    ds = open_public(f"real-negatives:{tmp_path}")
    assert isinstance(ds, RealNegatives)
    assert [t.key for t in ds.negative_tiles()] == [f"train/{Path(train_name).stem}"]
    assert [t.key for t in ds.tiles("test")] == [f"test/{Path(test_name).stem}"]
    # The chips train.py draws come from the training file only, whatever the seed.
    chips = PublicChipDataset(ds, ds.negative_tiles(), target_gsd_m=0.25, chip_size=16, chips_per_epoch=20,
                              labels="negative", min_usable_fraction=0.0)  # fmt: skip
    assert {chips.get_chip(i).tile for i in range(20)} == {0}


def test_unknown_file_is_refused(tmp_path):
    _png(tmp_path / "my_new_flight.png")
    with pytest.raises(InputError, match=r"my_new_flight.png is not in the fixed train/test split"):
        RealNegatives(tmp_path)


def test_black_outside_is_not_valid(tmp_path):
    name = "aukerman_oh_park_ortho_preview.png"
    data = np.full((3, 32, 32), 100, np.uint8)
    data[:, :8, :8] = 0
    with rasterio.open(tmp_path / name, "w", driver="PNG", height=32, width=32, count=3, dtype="uint8") as dst:
        dst.write(data)
    ds = RealNegatives(tmp_path)
    read = ds.read(ds.tile(name), Window(0, 0, 32, 32), (32, 32))
    assert read.valid.sum() == 32 * 32 - 64 and not read.valid[:8, :8].any()


@pytest.mark.skipif(not SHARED_NEGATIVES.is_dir(), reason="shared real negatives not present")
def test_shared_folder_is_fully_split_with_true_gsd():
    ds = RealNegatives(SHARED_NEGATIVES)
    assert sorted(ds.files) == sorted(SPLIT)  # every file there is named, none missing
    train = {t.key for t in ds.negative_tiles()}
    test = {t.key for t in ds.tiles("test")}
    assert train and test and not train & test
    # DJI FC300S at 40.1 m above take-off, 20 mm equivalent, 4000 px wide: 40.1 * 36 / (20 * 4000) = 1.80 cm.
    dji = SHARED_NEGATIVES / "brighton_beach_mn_park_DJI_0021.JPG"
    assert frame_gsd_m(dji, 4000) == pytest.approx(0.018045, abs=1e-5)
    # The Manila GeoTIFF's own transform: 0.10 Web-Mercator-like units at 14.6 N are 0.097 m on the ground.
    assert ds.file_gsd_m("manila_ph_river_roads_oam_10cm_3395.tif") == pytest.approx(0.0968, abs=5e-4)


# --- composites ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["patch", "interplanted"])
def test_composite_labels_cover_the_pasted_plot(tmp_path, setting):
    import cv2
    from shapely import affinity
    from shapely.geometry import box

    from datasets.composite import PlotSpec, composite_scene, write_composite
    from datasets.labels import rasterize_window, read_labels
    from datasets.synthetic import pick_crs, scene_transform

    gsd, size = 0.03, 256
    background = np.zeros((size, size, 3), np.uint8)
    background[...] = (96, 120, 70)  # a flat lawn
    valid = np.ones((size, size), bool)
    plot = affinity.rotate(box(80, 90, 180, 150), 20)  # 100 x 60 px = 3 x 1.8 m, turned
    spec = PlotSpec(plot, "flowering", setting, "lawn", seed=5)
    image, kept, gains = composite_scene(background, valid, gsd, [spec], sun_azimuth_deg=150, sun_elevation_deg=50)
    assert len(kept) == 1 and 2.0**-0.6 <= gains[0] <= 2.0**0.6
    crs = pick_crs("utm", 110.0, 30.0)
    transform = scene_transform(crs, 110.0, 30.0, gsd, size, size)
    paths = write_composite(tmp_path, "c", image, valid, crs, transform, gsd, kept, {"source": "test"})
    with rasterio.open(paths["image"]) as src:
        written = np.moveaxis(src.read([1, 2, 3]), 0, -1)
        labels = read_labels(paths["labels"], src.crs)
    np.testing.assert_array_equal(written, image)
    label = rasterize_window(labels, transform, (size, size)) == 1
    changed = np.abs(image.astype(int) - background.astype(int)).max(axis=-1) > 12
    # Every pasted pixel lies on the label or within the 0.6 m (20 px) that plants may lean over its border ...
    near = cv2.dilate(label.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    assert changed.sum() > 200 and not (changed & ~near).any()
    # ... the label polygon is where the plot was asked for, with its geodesic area ...
    assert abs(int(label.sum()) - round(plot.area)) <= 0.03 * plot.area
    assert labels.properties[0]["area_m2"] == pytest.approx(plot.area * gsd**2, rel=0.02)
    assert labels.properties[0]["setting"] == setting and labels.properties[0]["stage"] == "flowering"
    # ... and it covers the plot: sown ground fills it, interplanted plants dot it.
    share = (changed & label).sum() / label.sum()
    assert share > 0.9 if setting == "patch" else 0.05 < share < 0.9


def test_sun_position_known_values():
    from datetime import UTC, datetime

    from datasets.composite import sun_position

    # Equinox noon at the equator on the Greenwich meridian: sun close to the zenith.
    _, el = sun_position(0.0, 0.0, datetime(2024, 3, 20, 12, 7, tzinfo=UTC))
    assert el == pytest.approx(90.0, abs=1.0)
    # Solar noon on the June solstice at Duluth, MN (46.84 N, 92.0 W): 12:00 + 92 deg * 4 min + 1.7 min (the
    # equation of time is -1.7 min) = 18:09.7 UTC; the sun due south at 90 - 46.84 + 23.44 = 66.6 degrees.
    az, el = sun_position(46.84, -92.0, datetime(2016, 6, 21, 18, 10, tzinfo=UTC))
    assert az == pytest.approx(180.0, abs=2.0) and el == pytest.approx(66.6, abs=0.5)
    # Equinox sunrise at the equator: on the horizon, due east.
    az, el = sun_position(0.0, 0.0, datetime(2024, 3, 20, 6, 7, tzinfo=UTC))
    assert az == pytest.approx(90.0, abs=1.0) and el == pytest.approx(0.0, abs=1.0)


# --- the table arithmetic ------------------------------------------------------------------------------------------

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench():
    import importlib
    import sys

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("generalisation")


def _hand_made():
    g = _bench()
    from training.report import PlotCounts

    a = g.SceneOutcome(
        "t", "a", "flowering", 0.03, (0.2, 0.5),
        [PlotCounts(2, 1, 4, 2, 3.0, 60, 20, 20, 10_000.0), PlotCounts(2, 0, 1, 0, 1.0, 0, 5, 80, 10_000.0)], 0.2,
        [g.LabelOutcome("flowering", "courtyard", 3.0, True, 0.5),
         g.LabelOutcome("flowering", "field", 50.0, False, None)],
    )  # fmt: skip
    b = g.SceneOutcome(
        "t", "b", "capsule", 0.045, (0.2, 0.5),
        [PlotCounts(1, 1, 1, 1, 1.0, 30, 0, 10, 20_000.0), PlotCounts(1, 1, 1, 1, 0.0, 20, 0, 20, 20_000.0)], 0.2,
        [g.LabelOutcome("capsule", "field", 600.0, True, -0.2)],
    )  # fmt: skip
    return g, [a, b]


def test_table_rows_known_values():
    g, outcomes = _hand_made()
    rows = {(r["by"], r["value"]): r for r in g.table_rows(outcomes, ["t", "absent"])}
    every = rows[("all", "all")]
    assert every["labels"] == 3 and every["scenes"] == 2
    assert every["recall"] == pytest.approx(2 / 3)
    assert every["precision"] == pytest.approx(3 / 5)
    assert every["iou"] == pytest.approx(90 / 140)
    assert every["area_error"] == pytest.approx(0.35)  # median of |+0.5| and |-0.2|
    assert every["fp_m2_per_ha"] == pytest.approx(4.0 / 3.0)  # 4 m2 off the labels on 3 ha
    flowering = rows[("stage", "flowering")]
    assert (flowering["recall"], flowering["precision"], flowering["iou"], flowering["fp_m2_per_ha"]) == (
        pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.6), pytest.approx(3.0),
    )  # fmt: skip
    assert rows[("gsd", "2-3.5 cm")]["scenes"] == 1 and rows[("gsd", ">3.5 cm")]["recall"] == 1.0
    assert rows[("size", "1.5-5 m2")]["recall"] == 1.0 and rows[("size", "20-100 m2")]["recall"] == 0.0
    assert rows[("size", "500-2000 m2")]["area_error"] == pytest.approx(0.2)
    assert ("size", "5-20 m2") not in rows  # no plot of that size: no row
    field = rows[("context", "field")]
    assert field["labels"] == 2 and field["recall"] == 0.5 and field["area_error"] == pytest.approx(0.2)
    assert all(r["test"] == "t" for r in rows.values())  # a test with no scene gives no row
    pr = g.pr_points(outcomes, "t")
    assert [p["threshold"] for p in pr] == [0.2, 0.5]
    assert pr[1]["recall"] == pytest.approx(1 / 3) and pr[1]["precision"] == pytest.approx(0.5)
    text = g.format_table("m", 0.2, g.table_rows(outcomes, ["t"]), [("holdout", "not yet")])
    assert "67%" in text and "60%" in text and "holdout     pending: not yet" in text


def test_score_scene_area_error_on_a_hand_made_probability_raster(tmp_path):
    """A prediction 1.5 times the label's area, exactly over it: found, area error +0.5, no false area."""
    import json

    from affine import Affine
    from rasterio.crs import CRS
    from shapely.geometry import box

    from datasets.composite import PlotSpec, write_composite
    from datasets.labelled import LabelledScene as Scene

    g = _bench()
    gsd, size = 0.03, 240
    crs = CRS.from_epsg(32650)
    transform = Affine(gsd, 0, 500_000.0, 0, -gsd, 3_300_000.0)
    image = np.full((size, size, 3), 110, np.uint8)
    valid = np.ones((size, size), bool)

    label_px = box(60, 60, 120, 120)  # 60 x 60 px = 3.24 m2
    plot = PlotSpec(label_px, "capsule", "patch", "edge", 1)
    write_composite(tmp_path, "s", image, valid, crs, transform, gsd, [plot], {})
    prob = np.zeros((size, size), np.uint8)
    prob[60:120, 60:150] = 255  # 60 x 90 px: 1.5 times the label
    with rasterio.open(tmp_path / "s.prob.tif", "w", driver="GTiff", height=size, width=size, count=1, dtype="uint8",
                       crs=crs, transform=transform) as dst:  # fmt: skip
        dst.write(prob, 1)
    out = g.score_scene("t", Scene.from_raster(tmp_path / "s.tif"), tmp_path / "s.prob.tif", 0.5)
    (lab,) = out.labels
    assert lab.found and lab.context == "edge" and lab.stage == "capsule"
    assert lab.area_error == pytest.approx(0.5, abs=0.04)
    at = out.at_threshold
    assert (at.labels, at.found, at.preds, at.true_preds) == (1, 1, 1, 1)
    assert at.fp_area_m2 == pytest.approx(60 * 30 * gsd * gsd, rel=0.1)  # the 30 px beyond the label
    assert json.loads((tmp_path / "s.json").read_text())["stage"] == "capsule"
