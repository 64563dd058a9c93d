"""Quality gates, the run-time estimate, the batch progress bar and the flight summary.

The measures are tested as pure functions on arrays; the verdicts on tiny GeoTIFFs made to be blurred,
over-exposed, too coarse, mostly nodata or clean; the command line for refusal, ``--force``, the summary's
``quality`` and ``estimate`` blocks, and a two-input batch's flight page and GeoPackage.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyogrio
import pyogrio.raw
import pytest
from affine import Affine

from detect.pipeline import RunOptions, check_input
from detect.quality import (
    BLUR_REFUSE,
    BLUR_WARN,
    QualityReport,
    blur_effect,
    exposure,
    judge,
    sample_windows,
)
from infer import main, parse_args
from models.checkpoint import load_checkpoint
from tests.bad_input_cases import GSD, tiny_checkpoint, write_tif

SIDE = 128  # 3.8 m at 3 cm/px: 9 tiles of the tiny model's 64 px
COARSE = (0.15, 0, 500000.0, 0, -0.15, 4000000.0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt")


def texture(seed: int = 3, side: int = SIDE) -> np.ndarray:
    """Fields of 16 px with sharp borders and a little noise: ``[3, side, side]`` uint8, luminance 40-200."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.integers(40, 200, size=(3, side // 16, side // 16)), np.ones((1, 16, 16)))
    return np.clip(blocks + rng.normal(0, 6, size=blocks.shape), 0, 255).astype(np.uint8)


def blurred(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(rgb.transpose(1, 2, 0), (0, 0), sigma).transpose(2, 0, 1).copy()


def rgba(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    a = np.full(rgb.shape[1:], 255, np.uint8) if alpha is None else alpha
    return np.concatenate([rgb, a[None]])


# ----------------------------------------------------------------------------------------------- measures


def test_blur_effect_of_a_step_edge_is_one_over_the_reblur_width() -> None:
    step = np.zeros((64, 64))
    step[:, 32:] = 100
    # The re-blur spreads the step over 11 px and keeps 1/11 of its contrast in each: 1/11 survives.
    assert blur_effect(step) == pytest.approx(1 / 11)
    assert blur_effect(step.T) == pytest.approx(1 / 11)  # the axis without contrast is not judged
    assert blur_effect(np.full((16, 16), 7.0)) == 1.0  # no contrast at all: nothing says it is sharp


def test_blur_effect_grows_with_blur_and_ignores_size_and_contrast() -> None:
    gray = texture()[0].astype(np.float64)
    values = [blur_effect(cv2.GaussianBlur(gray, (0, 0), s) if s else gray) for s in (0, 1, 2, 4, 8)]
    assert values == sorted(values) and values[0] < BLUR_WARN < BLUR_REFUSE < values[-1]
    assert blur_effect(0.3 * gray + 50) == pytest.approx(values[0])  # contrast and brightness do not count
    assert blur_effect(gray[:128, :128]) == pytest.approx(values[0], abs=0.05)  # nor does the size


def test_exposure_counts_clipped_pixels_in_every_band() -> None:
    px = np.array([[255, 255, 0, 3, 120], [252, 255, 0, 2, 120], [250, 10, 0, 5, 120]], dtype=np.uint8)
    white, black, luma = exposure(px)
    assert (white, black) == (pytest.approx(0.2), pytest.approx(0.4))  # [255, 255, 10] is not clipped white
    assert luma == pytest.approx(np.mean(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]), rel=1e-5)
    assert exposure(np.zeros((3, 0), np.uint8)) == (0.0, 0.0, 0.0)


def test_sample_windows_spread_over_the_tiles() -> None:
    tiles = [(r, c) for r in range(0, 4000, 448) for c in range(0, 4000, 448)]  # 9 x 9 tiles of 512
    wins = sample_windows(tiles, 512, count=24)
    assert len(wins) == 24 and all(w.width == w.height == 256 for w in wins)
    rows = sorted({w.row_off // 448 for w in wins})
    assert rows[0] == 0 and rows[-1] == 8  # from the first row of tiles to the last
    for w in wins:  # each inside a tile
        assert any(r <= w.row_off and w.row_off + 256 <= r + 512 and c <= w.col_off <= c + 256 for r, c in tiles)
    assert len(sample_windows(tiles[:2], 512)) == 8  # few tiles: their quarters
    assert sample_windows([], 512) == []


def report(**kw: float) -> QualityReport:
    base = dict(gsd_m=0.03, model_gsd_m=0.03, gsd_ratio=1.0, mean_luminance=120.0, blur_median=0.2, blur_windows=9)
    return judge(QualityReport(**{**base, **kw}), max_gsd_ratio=3.0, min_gsd_ratio=0.05)


@pytest.mark.parametrize(
    ("numbers", "verdict", "words"),
    [
        ({}, "ok", ""),
        # GSD
        ({"gsd_ratio": 2.0, "gsd_m": 0.06}, "warn", "2.0x coarser than the model's: small plants"),
        ({"gsd_ratio": 16.7, "gsd_m": 0.5}, "refuse", "GSD 50 cm/px is 16.7x coarser"),
        ({"gsd_ratio": 0.02, "gsd_m": 0.0006}, "refuse", "50x finer"),
        # blur: the median, and the share of blurred windows alone
        ({"blur_median": 0.40}, "warn", "median blur 0.40"),
        ({"blur_median": 0.25, "blurred_share": 0.4}, "warn", "blurred in 40% of sampled windows"),
        ({"blur_median": 0.80}, "refuse", "blurred (blur 0.80"),
        ({"blur_median": None, "blur_windows": 0, "flat_windows": 5}, "warn", "too little texture"),
        # exposure
        ({"clipped_white_share": 0.10}, "warn", "over-exposed: 10% clipped to white"),
        ({"mean_luminance": 215.0}, "warn", "mean luminance 215"),
        ({"clipped_white_share": 0.65}, "refuse", "65% of the ground clipped to white"),
        ({"clipped_black_share": 0.20}, "warn", "black borders without a mask or nodata value?"),
        ({"clipped_black_share": 0.90}, "warn", "90% clipped to black"),  # maybe a border: the rest may be fine
        ({"clipped_black_share": 0.97}, "refuse", "under-exposed: 97% of the ground clipped to black"),
        ({"mean_luminance": 30.0}, "warn", "under-exposed: mean luminance 30"),
        # nodata
        ({"nodata_share": 0.5}, "ok", ""),  # an irregular footprint is normal
        ({"nodata_share": 0.95}, "warn", "95% of the raster is nodata"),
        ({"nodata_share": 0.995}, "refuse", "99.5% of the raster is nodata"),
    ],
)
def test_verdicts(numbers: dict, verdict: str, words: str) -> None:
    r = report(**numbers)
    assert r.verdict == verdict, r.reasons
    assert (words in "; ".join(r.reasons)) if words else r.reasons == []


def test_allow_gsd_mismatch_turns_the_gsd_refusal_into_a_warning() -> None:
    r = judge(
        QualityReport(gsd_m=0.5, model_gsd_m=0.03, gsd_ratio=16.7, blur_median=0.2, mean_luminance=120.0),
        max_gsd_ratio=3.0,
        min_gsd_ratio=0.05,
        allow_gsd=True,
    )
    assert r.verdict == "warn" and "(--allow-gsd-mismatch)" in r.reasons[0]


# ------------------------------------------------------------------------------------- inputs on disk


def scenes(folder: Path) -> dict[str, Path]:
    """A clean, a blurred, an over-exposed, a too-coarse and a mostly-nodata orthomosaic."""
    folder.mkdir(exist_ok=True)
    clean = texture()
    bright = np.clip(clean.astype(np.int32) * 2 + 150, 0, 255).astype(np.uint8)  # all but a few pixels saturate
    nodata = np.zeros((SIDE, SIDE), np.uint8)
    nodata[:8, :8] = 255  # 0.4 % of the raster
    return {
        "clean": write_tif(folder / "clean.tif", rgba(clean)),
        "blurred": write_tif(folder / "blurred.tif", rgba(blurred(clean, 6))),
        "bright": write_tif(folder / "bright.tif", rgba(bright)),
        # 5x coarser than the model; small, because --force runs it at the model's GSD (160 x 160 px)
        "coarse": write_tif(folder / "coarse.tif", rgba(clean[:, :32, :32]), transform=Affine(*COARSE)),
        "nodata": write_tif(folder / "nodata.tif", rgba(clean, nodata)),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return scenes(tmp_path_factory.mktemp("scenes"))


@pytest.mark.parametrize(
    ("name", "verdict", "words"),
    [
        ("clean", "ok", ""),
        ("blurred", "refuse", "blurred (blur"),
        ("bright", "refuse", "clipped to white"),
        ("coarse", "refuse", "GSD 15 cm/px is 5.0x coarser than the model's 3 cm/px"),
        ("nodata", "refuse", "of the raster is nodata"),
    ],
)
def test_check_input_verdicts(files: dict[str, Path], weights: Path, name: str, verdict: str, words: str) -> None:
    _, spec = load_checkpoint(weights)
    check = check_input(files[name], RunOptions(out_dir=Path("unused")), spec)
    q = check.quality
    assert q.verdict == verdict, q.reasons
    assert words in "; ".join(q.reasons)
    assert (check.tiles > 0 or name == "nodata") and q.bands["dtype"] == "uint8" and q.bands["alpha"] == 4
    if name == "clean":
        assert q.blur_median is not None and q.blur_median < BLUR_WARN and q.blur_windows >= 8
        assert q.nodata_share == 0 and q.clipped_white_share == 0
        assert q.valid_area_m2 == pytest.approx((SIDE * GSD) ** 2, rel=1e-3)


def test_a_mildly_blurred_input_warns(tmp_path: Path, weights: Path) -> None:
    path = write_tif(tmp_path / "soft.tif", rgba(blurred(texture(), 2)))
    _, spec = load_checkpoint(weights)
    q = check_input(path, RunOptions(out_dir=tmp_path), spec).quality
    assert q.verdict == "warn" and BLUR_WARN <= q.blur_median < BLUR_REFUSE, q


# ------------------------------------------------------------------------------------------ command line


def run(args: list[str], quiet: bool = True) -> int:
    return main(parse_args([*args, *(["--quiet"] if quiet else []), "--device", "cpu"]))


def test_refused_input_is_not_run_and_force_runs_it(
    tmp_path: Path, files: dict[str, Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = [str(files["blurred"]), "--out", str(out), "--weights", str(weights), "--formats", "geojson"]
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"error: {files['blurred']}: refused by the quality gates: blurred (blur")
    assert err.splitlines()[-1].endswith("or pass --force to run it anyway")
    assert "Traceback" not in err and not out.exists()
    # The verdict is printed even with --quiet (before the error).
    assert err.splitlines()[0].startswith("blurred.tif: quality refuse; blurred")

    assert run([*args, "--force"]) == 0
    summary = json.loads((out / "blurred.summary.json").read_text())
    q = summary["quality"]
    assert q["verdict"] == "refuse" and q["forced"] is True and q["blur_median"] >= BLUR_REFUSE
    assert "(run anyway: --force)" in capsys.readouterr().err


def test_force_also_overrides_the_gsd_refusal(tmp_path: Path, files: dict[str, Path], weights: Path) -> None:
    out = tmp_path / "out"
    args = [str(files["coarse"]), "--out", str(out), "--weights", str(weights), "--formats", "geojson"]
    assert run(args) == 2  # refused by the GSD check, as before the gates
    assert run([*args, "--force"]) == 0
    q = json.loads((out / "coarse.summary.json").read_text())["quality"]
    assert q["verdict"] == "refuse" and q["forced"] and q["gsd_ratio"] == pytest.approx(5.0, abs=0.01)


def test_summary_has_quality_and_estimate_beside_the_timings(
    tmp_path: Path, files: dict[str, Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert run([str(files["clean"]), "--out", str(out), "--weights", str(weights), "--formats", "geojson"], False) == 0
    err = capsys.readouterr().err
    assert "clean.tif: quality ok [GSD 3 cm/px" in err
    assert "estimate: about " in err and "on this machine for the model stage" in err
    s = json.loads((out / "clean.summary.json").read_text())
    q = s["quality"]
    keys = ("verdict", "reasons", "forced", "gsd_ratio", "bands", "nodata_share", "valid_area_m2")
    keys += ("clipped_white_share", "clipped_black_share", "mean_luminance", "blur_median", "blurred_share")
    assert all(k in q for k in keys)
    assert q["verdict"] == "ok" and q["forced"] is False
    est = s["estimate"]
    assert est["tiles"] == s["tiles"]["run"] and est["warmup_tiles_timed"] >= 1
    assert est["predict_s"] == pytest.approx(est["tiles"] * est["seconds_per_tile"], abs=0.01)
    assert est["seconds_per_tile"] > 0 and s["timings_s"]["predict"] > 0


def test_keep_going_runs_the_rest_and_the_flight_summary_lists_all(
    tmp_path: Path, files: dict[str, Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "flight"
    folder.mkdir()
    for name in ("clean", "nodata"):
        (folder / f"{name}.tif").write_bytes(files[name].read_bytes())
    a = write_tif(folder / "second.tif", rgba(texture(seed=9)))
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--weights", str(weights), "--formats", "geojson,report,gpkg"]
    assert run([*args, "--threshold", "0.4", "--keep-going"]) == 2
    err = capsys.readouterr().err
    assert "error: 1 of 3 input(s) failed (--keep-going):" in err
    assert f"  {folder / 'nodata.tif'}: {folder / 'nodata.tif'}: refused by the quality gates" in err
    names = sorted(p.name for p in out.iterdir())
    assert "flight.report.html" in names and "flight.gpkg" in names and "nodata.summary.json" not in names

    page = (out / "flight.report.html").read_text()
    assert "Flight summary: 3 orthomosaics" in page and "2 of 3 run" in page
    assert '<a href="clean.report.html">clean.tif</a>' in page and '<a href="second.report.html">' in page
    assert "<b>refuse</b>" in page and "of the raster is nodata" in page and "not run (--force runs it)" in page
    assert "<dt>Input quality</dt><dd>ok</dd>" in (out / "clean.report.html").read_text()  # each report says it too
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
    counts = {n: json.loads((out / f"{n}.summary.json").read_text())["plots"]["count"] for n in ("clean", "second")}
    info = pyogrio.read_info(out / "flight.gpkg", layer="plots")
    assert info["crs"] == "EPSG:4326" and info["features"] == sum(counts.values())
    _, _, _, (inputs,) = pyogrio.raw.read(out / "flight.gpkg", layer="plots", columns=["input"])
    assert sorted(set(inputs)) == sorted(n + ".tif" for n, c in counts.items() if c)
    foot = pyogrio.read_info(out / "flight.gpkg", layer="footprints")
    assert foot["features"] == 3 and foot["crs"] == "EPSG:4326"  # the refused one is on the map too
    assert a.exists()

    # Again into the same folder: the flight files are refused like any output (before any work).
    (out / "clean.summary.json").unlink()
    (out / "clean.geojson").unlink()
    (out / "clean.report.html").unlink()
    assert run([str(folder / "clean.tif"), str(a), *args[1:], "--threshold", "0.4", "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("second.tif: finished by an earlier run") and lines[1].startswith("clean.tif: ")
    assert "2 of 2 run" in (out / "flight.report.html").read_text()  # rewritten for this batch (--resume)
    for p in out.iterdir():
        if not p.name.startswith("flight."):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert run([str(folder / "clean.tif"), str(a), *args[1:], "--threshold", "0.4"]) == 2
    assert "flight.report.html already exists; pass --overwrite" in capsys.readouterr().err


def test_one_progress_bar_for_the_whole_batch(
    tmp_path: Path, files: dict[str, Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    two = [str(files["clean"]), str(write_tif(tmp_path / "b.tif", rgba(texture(seed=4))))]
    assert run([*two, "--out", str(out), "--weights", str(weights), "--formats", "geojson"], quiet=False) == 0
    err = capsys.readouterr().err
    tiles = sum(json.loads((out / f"{n}.summary.json").read_text())["tiles"]["run"] for n in ("clean", "b"))
    shown = re.findall(r"(\d+)/(\d+) \[", err)
    assert shown and {int(total) for _, total in shown} == {tiles}  # one bar over both inputs' tiles, no other
    assert (str(tiles), str(tiles)) in shown  # counted to the end
    # --quiet: no bar, no estimate, just one line per input.
    capsys.readouterr()
    assert run([*two, "--out", str(tmp_path / "q"), "--weights", str(weights), "--formats", "geojson"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and len(captured.out.splitlines()) == 2
