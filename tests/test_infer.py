"""infer.py end to end through main(parse_args([...])) with tiny checkpoints saved in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pyogrio.raw
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

from core.files import file_sha256
from infer import main, parse_args
from models import build_model
from models.checkpoint import ModelSpec, save_checkpoint

GSD = 0.03
ARCH_ARGS = {"base_channels": 8, "depth": 2}


def tiny_checkpoint(path: Path, *, all_poppy: bool = False) -> Path:
    """A fastunet with random weights; with ``all_poppy`` its head says 'poppy' everywhere (logit +4)."""
    torch.manual_seed(0)
    model = build_model("fastunet", in_channels=3, num_classes=1, **ARCH_ARGS)
    if all_poppy:
        head = model.net.head
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.constant_(head.bias, 4.0)
    spec = ModelSpec(arch="fastunet", arch_args=ARCH_ARGS, gsd_m=GSD, tile_size=64, threshold=0.5, name="tiny-test")
    save_checkpoint(path, model, spec)
    return path


def write_ortho(path: Path, height: int = 100, width: int = 120, footprint: tuple | None = None) -> Path:
    """A textured RGBA orthomosaic in UTM; alpha is 255 inside ``footprint`` (row0, row1, col0, col1)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(40, 200, size=(3, height, width), dtype=np.uint8)
    alpha = np.zeros((height, width), dtype=np.uint8)
    r0, r1, c0, c1 = footprint or (0, height, 0, width)
    alpha[r0:r1, c0:c1] = 255
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=height,
        width=width,
        count=4,
        dtype="uint8",
        crs="EPSG:32650",
        transform=Affine(GSD, 0, 500000.0, 0, -GSD, 4000000.0),
    ) as ds:
        ds.write(np.concatenate([rgb, alpha[None]]))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {"random": tiny_checkpoint(d / "random.pt"), "all": tiny_checkpoint(d / "all.pt", all_poppy=True)}


def run(args: list[str]) -> int:
    return main(parse_args([*args, "--quiet", "--device", "cpu"]))


def test_end_to_end_random_weights(tmp_path: Path, weights: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    src = write_ortho(tmp_path / "site.tif")
    out = tmp_path / "out"
    assert run([str(src), "--out", str(out), "--weights", str(weights["random"])]) == 0
    names = sorted(p.name for p in out.iterdir())
    outputs = ("geojson", "gpkg", "kml", "csv", "prob.tif", "preview.jpg", "chips", "report.html", "qml")
    assert names == sorted(f"site.{s}" for s in (*outputs, "prob.qml", "summary.json"))
    summary = json.loads((out / "site.summary.json").read_text())
    n = summary["plots"]["count"]
    assert len(json.loads((out / "site.geojson").read_text())["features"]) == n
    assert len(list(csv.DictReader((out / "site.csv").open()))) == n
    assert len(pyogrio.raw.read(out / "site.gpkg")[2]) == n
    assert summary["input_sha256"] == file_sha256(src)
    assert summary["model"]["sha256"] == file_sha256(weights["random"])
    assert summary["model"]["name"] == "tiny-test"
    assert summary["parameters"]["threshold"] == 0.5 and summary["parameters"]["min_area_m2"] == 1.0
    assert summary["tiles"] == {  # 100 x 120 px in 64-px tiles, overlap 8
        "total": 4,
        "run": 4,
        "skipped": 0,
        "resumed_from_row": 0,
        "taken_from_earlier_run": 0,
    }
    assert summary["raster"]["crs"] == "EPSG:32650"
    for key in ("torch", "rasterio", "gdal", "numpy"):
        assert summary["software"][key]
    for key in ("predict", "vectorize", "export", "total"):
        assert summary["timings_s"][key] >= 0
    with rasterio.open(out / "site.prob.tif") as ds:
        assert ds.crs.to_epsg() == 32650 and (ds.height, ds.width) == (100, 120)
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"site.tif: {n} plot(s), ") and str(out) in line


def test_all_poppy_model_flags_the_footprint(tmp_path: Path, weights: dict[str, Path]) -> None:
    # valid footprint 60 x 90 px = 1.8 m x 2.7 m = 4.86 m2; everything inside is 'poppy'
    src = write_ortho(tmp_path / "field.tif", footprint=(20, 80, 15, 105))
    out = tmp_path / "out"
    assert run([str(src), "--out", str(out), "--weights", str(weights["all"]), "--formats", "geojson,csv"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["field.csv", "field.geojson", "field.summary.json"]
    doc = json.loads((out / "field.geojson").read_text())
    assert len(doc["features"]) == 1
    props = doc["features"][0]["properties"]
    assert props["area_m2"] == pytest.approx(4.86 / 0.9996**2, rel=0.02)
    assert props["score_mean"] == pytest.approx(float(torch.sigmoid(torch.tensor(4.0))), abs=0.01)
    summary = json.loads((out / "field.summary.json").read_text())
    assert summary["plots"]["flagged_area_m2"] == pytest.approx(props["area_m2"], abs=0.01)
    assert summary["outputs"] == {"geojson": "field.geojson", "csv": "field.csv", "summary": "field.summary.json"}


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_same_field_in_other_crs_gives_the_same_area(tmp_path: Path, weights: dict[str, Path], crs: str) -> None:
    utm = write_ortho(tmp_path / "utm.tif", footprint=(20, 80, 15, 105))
    with rasterio.open(utm) as src:
        transform, width, height = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        data = np.zeros((4, height, width), dtype=np.uint8)
        reproject(
            src.read(),
            data,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.nearest,
        )
    other = tmp_path / "other.tif"
    with rasterio.open(
        other, "w", driver="GTiff", height=height, width=width, count=4, dtype="uint8", crs=crs, transform=transform
    ) as ds:
        ds.write(data)
    out = tmp_path / "out"
    for path in (utm, other):
        assert run([str(path), "--out", str(out), "--weights", str(weights["all"]), "--formats", "csv"]) == 0
    area = {p: float(next(csv.DictReader((out / f"{p}.csv").open()))["area_m2"]) for p in ("utm", "other")}
    truth = 4.86 / 0.9996**2
    assert area["utm"] == pytest.approx(truth, rel=0.02)
    assert area["other"] == pytest.approx(truth, rel=0.02)
    summary = json.loads((out / "other.summary.json").read_text())
    assert summary["raster"]["crs"] == crs
    assert summary["raster"]["model_grid"]["gsd_m"] == pytest.approx([0.03, 0.03], rel=0.01)


def test_folder_input_and_no_overwrite(tmp_path: Path, weights: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "flights"
    folder.mkdir()
    write_ortho(folder / "a.tif", 40, 40)
    write_ortho(folder / "b.tif", 40, 50)
    (folder / "notes.txt").write_text("not a raster")
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--weights", str(weights["all"]), "--formats", "csv"]
    assert run(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "a.summary.json", "b.csv", "b.summary.json"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # one line per input
    before = (out / "a.csv").read_text()
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "a.csv already exists" in err and "--overwrite" in err
    assert (out / "a.csv").read_text() == before
    assert run([*args, "--overwrite"]) == 0


def test_bad_inputs_exit_2_with_one_line(
    tmp_path: Path, weights: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    png = tmp_path / "photo.png"
    cv2.imwrite(str(png), np.full((20, 20, 3), 128, dtype=np.uint8))
    cases = [
        ([str(png)], "photo.png", "is a photo"),
        ([str(tmp_path / "missing.tif")], "missing.tif", "no such file"),
        ([str(png), "--threshold", "1.5"], "--threshold 1.5", "between 0 and 1"),
        ([str(png), "--formats", "shp"], "--formats shp", "unknown format"),
        ([str(png), "--weights", str(tmp_path / "nope.pt")], "nope.pt", "no such file"),
    ]
    for extra, name, reason in cases:
        if "--threshold" in extra:  # a valid raster, so the threshold is what fails
            extra = [str(write_ortho(tmp_path / "ok.tif", 40, 40)), *extra[1:]]
        code = run(
            [
                *extra,
                "--out",
                str(tmp_path / "out"),
                *(["--weights", str(weights["random"])] if "--weights" not in extra else []),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, extra
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert name in err and reason in err, err
        assert "Traceback" not in err
    # nothing was written for the failed runs
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_repeated_names_get_their_folder(
    tmp_path: Path, weights: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    # Two OpenDroneMap results: both odm_orthophoto.tif, in folders named after the flights.
    for flight in ("north", "south"):
        (tmp_path / flight / "odm").mkdir(parents=True)
    a = write_ortho(tmp_path / "north" / "odm" / "odm_orthophoto.tif", 40, 40)
    b = write_ortho(tmp_path / "south" / "odm" / "odm_orthophoto.tif", 40, 40)
    c = write_ortho(tmp_path / "north" / "site.tif", 40, 40)
    out = tmp_path / "out"
    args = [str(a), str(b), str(c), str(c), "--out", str(out), "--weights", str(weights["random"]), "--formats", "csv"]
    assert run(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "north_odm_odm_orthophoto.csv",
        "north_odm_odm_orthophoto.summary.json",
        "site.csv",
        "site.summary.json",
        "south_odm_odm_orthophoto.csv",
        "south_odm_odm_orthophoto.summary.json",
    ]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # the input named twice ran once
    assert lines[0].endswith("as north_odm_odm_orthophoto.*") and "as " not in lines[2]


def test_help_has_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and "python infer.py" in text and "--min-area-m2" in text
