"""Analysts' verdicts as training labels: masks per review value, both --unreviewed-as rules, bad values, train.py.

Scenes are tiny GeoTIFFs at 10 cm with a reviewed ``infer.py`` output beside them (GeoPackage layer ``plots``
with ``plot_id`` and ``review``, as QGIS saves it after an analyst's edits, or GeoJSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
import shapely.affinity
from rasterio.windows import Window

import train
from core.errors import InputError
from datasets.chips import ChipDataset, ChipSource
from datasets.labelled import LabelledScene, scenes_from_folder
from datasets.reviewed import REVIEW_MARGIN_M, find_reviewed_file, read_reviewed, verdict
from datasets.training_folder import check_training_folder
from tests.conftest import ORIGIN, UTM, north_up, write_geotiff, write_polygons
from training.evaluate import evaluate_plots
from training.pixels import EvalGrid

GSD = 0.1  # 10 cm: a 40 m square scene in 400 px
N = 400
X0, Y0 = ORIGIN


def square(row: float, col: float, side_px: float, x0: float = X0) -> shapely.Polygon:
    """A square plot whose top-left pixel is ``(row, col)`` and side ``side_px`` pixels."""
    left, top = x0 + col * GSD, Y0 - row * GSD
    return shapely.box(left, top - side_px * GSD, left + side_px * GSD, top)


# (plot_id, review, polygon): what an analyst leaves after a review, in pixel terms of a 400 x 400 scene.
PLOTS = [
    ("P001", "confirmed", square(20, 20, 30)),  # a detection the analyst confirmed: poppy
    ("P002", "rejected", square(20, 300, 30)),  # a false alarm: background, and a hard negative
    ("P003", None, square(300, 300, 30)),  # nobody looked at it: ignored
    ("P004", "added", square(300, 20, 20)),  # an analyst may also mark a detection "added": poppy
    (None, None, square(160, 20, 20)),  # drawn by the analyst (no plot_id), review left empty: a missed plot
    (None, "Confirmed ", square(160, 300, 20)),  # drawn and marked, in another case with a trailing blank
]


def write_reviewed(
    path: Path, plots: Sequence[tuple[str | None, str | None, shapely.Geometry]], *, review_field: bool = True
) -> Path:
    """A reviewed GeoPackage as infer.py writes it (layer ``plots``, raster CRS) with a ``review`` text field."""
    geoms = np.array([shapely.to_wkb(g) for _, _, g in plots], dtype=object)
    fields = [np.array([p for p, _, _ in plots], dtype=object), np.array([0.9] * len(plots))]
    names = ["plot_id", "score"]
    if review_field:
        fields.append(np.array([r for _, r, _ in plots], dtype=object))
        names.append("review")
    pyogrio.raw.write(str(path), geoms, fields, names, layer="plots", driver="GPKG", geometry_type="Polygon", crs=UTM)
    return path


def write_scene(folder: Path, name: str = "site", plots=PLOTS, x0: float = X0) -> Path:
    """A green field with red squares where every plot of ``plots`` is (real or not), and its reviewed GeoPackage;
    ``x0`` moves the scene (and its plots) east."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.empty((3, N, N), dtype=np.uint8)
    rgb[:] = np.array([70, 120, 60], dtype=np.uint8)[:, None, None]
    shifted = []
    for plot_id, review, g in plots:
        left, bottom, right, top = g.bounds
        c0, r0, c1, r1 = (
            round(v) for v in ((left - X0) / GSD, (Y0 - top) / GSD, (right - X0) / GSD, (Y0 - bottom) / GSD)
        )
        rgb[:, r0:r1, c0:c1] = np.array([220, 40, 40], dtype=np.uint8)[:, None, None]
        shifted.append((plot_id, review, shapely.affinity.translate(g, xoff=x0 - X0)))
    raster = write_geotiff(folder / f"{name}.tif", rgb, transform=north_up(GSD, (x0, Y0)))
    write_reviewed(folder / f"{name}.gpkg", shifted)
    return raster


def whole_mask(source: ChipSource) -> np.ndarray:
    """The mask of the whole scene at its own resolution."""
    return source.read_chip(Window(0, 0, N, N), N)[1]


def at(mask: np.ndarray, poly: shapely.Polygon) -> int:
    """The mask value at a polygon's centre."""
    c = poly.centroid
    return int(mask[int((Y0 - c.y) / GSD), int((c.x - X0) / GSD)])


@pytest.fixture()
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "reviewed")


# -- the mask per review value --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ignore", "negative"])
def test_mask_per_review_value(scene: Path, mode: str) -> None:
    source = ChipSource(scene, unreviewed_as=mode)
    mask = whole_mask(source)
    expected = [1, 0, 255, 1, 1, 1]  # confirmed, rejected, unreviewed, added, drawn, drawn and marked
    assert [at(mask, g) for _, _, g in PLOTS] == expected
    assert len(source.labels) == 4 and len(source.rejected_geoms) == 1
    # Just beside a reviewed plot (inside the margin) is background in both modes...
    beside = shapely.affinity.translate(PLOTS[0][2], xoff=3.5)  # 0.5 m right of the confirmed 3 m plot
    assert at(mask, beside) == 0
    # ... just beside an unreviewed one (within its 0.5 m margin) is ignored in both modes.
    c = PLOTS[2][2]
    edge = shapely.Point(c.bounds[0] - 0.3, c.centroid.y)
    assert mask[int((Y0 - edge.y) / GSD), int((edge.x - X0) / GSD)] == 255
    # Far from any plot: ignored, or background when the analyst says the rest holds no poppy.
    far = shapely.box(X0 + 19, Y0 - 21, X0 + 21, Y0 - 19)  # the middle of the scene, > 5 m from every plot
    assert at(mask, far) == (255 if mode == "ignore" else 0)
    share_taught = float(np.mean(mask != 255))
    assert (share_taught < 0.5) if mode == "ignore" else (share_taught > 0.9)


def test_ignore_mode_teaches_the_margin_around_reviewed_plots_only(scene: Path) -> None:
    mask = whole_mask(ChipSource(scene, unreviewed_as="ignore"))
    row = 35  # through the confirmed plot (rows 20-50, cols 20-50)
    inside = REVIEW_MARGIN_M / GSD
    assert mask[row, 50 + int(inside) - 2] == 0  # background up to the margin
    assert mask[row, 50 + int(inside) + 2] == 255  # ignored beyond it


def test_an_area_of_interest_limits_the_reviewed_ground(scene: Path) -> None:
    write_polygons(scene.with_name("site.aoi.geojson"), [shapely.box(X0, Y0 - 40, X0 + 20, Y0)])  # the west half
    source = ChipSource(scene, unreviewed_as="negative")
    mask = whole_mask(source)
    assert [at(mask, g) for _, _, g in PLOTS] == [1, 255, 255, 1, 1, 255]  # the east half is not taught
    assert len(source.rejected_geoms) == 0  # the rejected plot lies outside: no chip is centred on it


@pytest.mark.parametrize(
    ("value", "has_id", "expected"),
    [
        ("confirmed", True, "confirmed"),
        ("REJECTED", True, "rejected"),
        (" added ", True, "added"),
        ("", True, "unreviewed"),
        (None, True, "unreviewed"),
        (float("nan"), True, "unreviewed"),
        ("", False, "added"),
        (None, False, "added"),
        ("rejected", False, "rejected"),
    ],
)
def test_verdict_table(value: object, has_id: bool, expected: str) -> None:
    assert verdict(value, has_id, "f: feature 1") == expected


# -- bad values ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["maybe", "confimed", "yes", 1])
def test_a_value_that_is_not_a_verdict_is_named_with_the_fix(tmp_path: Path, value: object) -> None:
    plots = [*PLOTS[:2], ("P007", value, square(100, 100, 10))]
    path = write_reviewed(tmp_path / "site.gpkg", plots) if isinstance(value, str) else None
    if path is None:  # a number in the review field: check the rule itself
        with pytest.raises(InputError, match=r"feature 3 \(P007\): review 1 is not a verdict; set it to confirmed"):
            verdict(value, True, "site.gpkg: feature 3 (P007)")
        return
    with pytest.raises(InputError, match=rf"site.gpkg: feature 3 \(P007\): review '{value}' is not a verdict; set it"):
        read_reviewed(path, UTM, (X0, Y0 - 40, X0 + 40, Y0), unreviewed_as="ignore", per_metre=1.0)


def test_a_file_without_a_review_field_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_reviewed(tmp_path / "site.gpkg", PLOTS, review_field=False)
    with pytest.raises(InputError, match="has no review field, so it is not a reviewed output; in QGIS add a text"):
        read_reviewed(path, UTM, (X0, Y0 - 40, X0 + 40, Y0), unreviewed_as="ignore", per_metre=1.0)


def test_nothing_reviewed_is_refused_when_the_rest_is_ignored_and_fine_when_it_is_background(tmp_path: Path) -> None:
    path = write_reviewed(tmp_path / "site.gpkg", [("P001", None, square(20, 20, 30)), ("P002", "", square(9, 9, 9))])
    bounds = (X0, Y0 - 40, X0 + 40, Y0)
    with pytest.raises(InputError, match=r"no plot is reviewed \(2 with an empty review\).*--unreviewed-as negative"):
        read_reviewed(path, UTM, bounds, unreviewed_as="ignore", per_metre=1.0)
    rev = read_reviewed(path, UTM, bounds, unreviewed_as="negative", per_metre=1.0)
    assert len(rev.positives) == 0 and rev.counts["unreviewed"] == 2
    # the whole scene but the two unreviewed detections grown by 0.5 m (15.8 m2 and 3.4 m2, overlapping a little)
    assert 1600 - 19.2 < rev.aoi.geometries[0].area < 1600 - 17


def test_unknown_unreviewed_rule_is_refused(scene: Path) -> None:
    with pytest.raises(InputError, match="--unreviewed-as 'maybe': must be ignore or negative"):
        ChipSource(scene, unreviewed_as="maybe")


# -- which file of infer.py's pair ----------------------------------------------------------------------------


def test_the_edited_file_of_infer_outputs_pair_is_the_one_found(scene: Path) -> None:
    gpkg, geojson = scene.with_suffix(".gpkg"), scene.with_suffix(".geojson")
    untouched = {"plot_id": "P001", "review": None}  # as infer.py writes it
    write_polygons(geojson, [PLOTS[0][2]], properties=untouched)
    assert find_reviewed_file(scene) == gpkg  # the GeoPackage holds verdicts
    write_reviewed(gpkg, [("P001", None, PLOTS[0][2])])
    assert find_reviewed_file(scene) == gpkg  # neither edited yet: the GeoPackage
    write_polygons(geojson, [PLOTS[0][2]], properties={"plot_id": "P001", "review": "confirmed"})
    assert find_reviewed_file(scene) == geojson  # the GeoJSON was the one edited
    write_polygons(geojson, [PLOTS[0][2], PLOTS[1][2]], properties=[untouched, {"plot_id": None, "review": None}])
    assert find_reviewed_file(scene) == geojson  # ... by drawing a missed plot
    write_reviewed(gpkg, PLOTS)
    with pytest.raises(InputError, match=r"several files hold review verdicts \(site.geojson, site.gpkg\); keep"):
        find_reviewed_file(scene)
    write_reviewed(gpkg, PLOTS, review_field=False)
    write_polygons(geojson, [PLOTS[0][2]], properties={"plot_id": "P001"})
    with pytest.raises(InputError, match=r"none of site.geojson, site.gpkg has a review field; add a text field"):
        find_reviewed_file(scene)


def test_infer_output_folder_with_the_orthomosaic_linked_in_is_a_reviewed_folder(tmp_path: Path) -> None:
    out = tmp_path / "results"
    raster = write_scene(tmp_path / "flight")
    out.mkdir()
    (out / "site.tif").symlink_to(raster)
    write_reviewed(out / "site.gpkg", PLOTS)
    write_polygons(out / "site.geojson", [g for _, _, g in PLOTS], properties={"plot_id": "P001", "review": None})
    write_geotiff(out / "site.prob.tif", np.ones((N, N), dtype=np.uint8), gsd=GSD)
    (scene_,) = scenes_from_folder(out, unreviewed_as="ignore")
    assert scene_.raster == out / "site.tif" and scene_.labels == out / "site.gpkg"
    assert check_training_folder(out, "--reviewed", unreviewed_as="ignore") == []


# -- chips on rejected plots ----------------------------------------------------------------------------------


def test_rejected_chips_are_centred_on_rejected_plots(scene: Path) -> None:
    source = ChipSource(scene, unreviewed_as="ignore")
    common = {"target_gsd_m": GSD, "chip_size": 32, "chips_per_epoch": 40, "seed": 1, "min_usable_fraction": 0.0}
    chips = ChipDataset(source, positive_fraction=0.25, rejected_fraction=0.5, **common)
    kinds = [chips.get_chip(i).kind for i in range(40)]
    assert 10 <= kinds.count("rejected") <= 30 and kinds.count("hard") == 0
    rejected = PLOTS[1][2].buffer(32 * GSD / 2)  # within half a chip of the rejected plot
    for i, kind in enumerate(kinds):
        if kind == "rejected":
            chip = chips.get_chip(i)
            w = chip.window
            x, y = source.info.transform * (w.col_off + w.width / 2, w.row_off + w.height / 2)
            assert rejected.contains(shapely.Point(x, y))


def test_rejected_share_changes_nothing_for_labels_without_rejected_plots(tmp_path: Path) -> None:
    raster = write_geotiff(tmp_path / "a.tif", np.full((3, 64, 64), 90, dtype=np.uint8), gsd=GSD)
    write_polygons(tmp_path / "a.geojson", [square(10, 10, 20)])
    common = {"target_gsd_m": GSD, "chip_size": 16, "chips_per_epoch": 12, "seed": 4, "hard_fraction": 0.2}
    plain = ChipDataset(ChipSource(raster), **common)
    more = ChipDataset(ChipSource(raster), rejected_fraction=0.3, **common)
    for i in range(12):
        a, b = plain.get_chip(i), more.get_chip(i)
        assert a.kind == b.kind and a.window == b.window


# -- validation scores a reviewed scene on its reviewed ground ----------------------------------------------


def test_validation_counts_confirmed_plots_and_ignores_unreviewed_ones(scene: Path) -> None:
    reviewed = LabelledScene.from_raster(scene, unreviewed_as="ignore")
    assert reviewed.labels == scene.with_suffix(".gpkg")
    grid = EvalGrid(N, N, north_up(GSD))
    preds = {0.5: [PLOTS[0][2], PLOTS[1][2], PLOTS[2][2]]}  # the confirmed, the rejected and the unreviewed one
    counts = evaluate_plots(reviewed, preds, grid).counts[0]
    assert counts.labels == 4 and counts.found == 1
    assert counts.preds == 2 and counts.true_preds == 1  # the unreviewed detection lies outside what is scored
    assert counts.fp_area_m2 == pytest.approx(9.0, rel=0.02)  # the rejected 3 m x 3 m plot


# -- train.py on reviewed outputs --------------------------------------------------------------------------

FAST = [
    "--arch-args", '{"base_channels": 4, "depth": 2}', "--chip-size", "48", "--chips-per-epoch", "8",
    "--batch-size", "4", "--workers", "0", "--val-tile", "128", "--device", "cpu", "--seed", "3", "--quiet",
    "--gsd", "0.1",
]  # fmt: skip


def run(*argv: str | Path) -> int:
    return train.main(train.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def reviewed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reviewed")
    for k, name in enumerate(("north", "south", "west")):
        write_scene(folder, name, x0=X0 + 100 * k)
    return folder


@pytest.mark.parametrize("mode", ["ignore", "negative"])
def test_train_on_reviewed_outputs_end_to_end(reviewed_folder: Path, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "run"
    assert run("--reviewed", reviewed_folder, "--unreviewed-as", mode, "--out", out, "--epochs", "1", *FAST) == 0
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 2 and len(split["val"]) == 1
    assert sorted(split["reviewed"]) == sorted(split["train"] + split["val"])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["unreviewed_as"] == mode and settings["rejected_share"] == 0.25
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best"]["chosen"]["labels"] == 4  # the held-out scene's confirmed, added and drawn plots
    assert len(scenes_from_folder(reviewed_folder, unreviewed_as=mode)) == 3


def test_train_resumes_a_reviewed_run_with_the_verdict_rules(reviewed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run("--reviewed", reviewed_folder, "--out", out, "--epochs", "1", *FAST) == 0
    assert run("--out", out, "--resume", "--epochs", "2", "--quiet") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["last"]["epoch"] == 2 and metrics["last"]["chosen"]["labels"] == 4


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--unreviewed-as", "negative"], "--unreviewed-as and --rejected-share apply to reviewed outputs; give"),
        (["--rejected-share", "0.2"], "--unreviewed-as and --rejected-share apply to reviewed outputs"),
        (["--reviewed", "{bad}", "--rejected-share", "0.6"], "--rejected-share 0.6: must be 0 or more, and with"),
        (["--reviewed", "{bad}"], r"feature 2 \(P002\): review 'false alarm' is not a verdict; set it to confirmed"),
        (["--reviewed", "{nofield}"], "has no review field, so it is not a reviewed output"),
    ],
)
def test_bad_reviewed_inputs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str
) -> None:
    bad = tmp_path / "bad"
    write_scene(bad, plots=[PLOTS[0], ("P002", "false alarm", PLOTS[1][2])])
    nofield = tmp_path / "nofield"
    write_scene(nofield)
    write_reviewed(nofield / "site.gpkg", PLOTS, review_field=False)
    data = tmp_path / "data"
    write_scene(data)
    (data / "site.gpkg").rename(data / "site_labels.gpkg")
    write_polygons(data / "site.geojson", [PLOTS[0][2]])
    argv = [a.format(bad=bad, nofield=nofield) for a in argv]
    base = [] if "--reviewed" in argv else ["--data", str(data)]
    assert run(*base, *argv, "--out", tmp_path / "run", "--epochs", "1", *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(match, err[0]), err[0]
