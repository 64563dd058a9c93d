"""Tile-level resume: an input interrupted mid-prediction continues from its last finished row of tiles.

Each test runs a batch straight through and again with an interruption injected after some batches of tiles
(monkeypatching the model call), then reruns it, and compares the outputs byte for byte.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import detect.predict
from detect.predict import predict_raster
from detect.progress import progress_path
from detect.rasterout import work_path
from infer import main, parse_args
from models.checkpoint import load_checkpoint
from tests.bad_input_cases import tiny_checkpoint, write_tif

# 300 x 260 source px at the model's GSD; with --tile 64 --overlap 24 that is 7 rows of 6 tiles, and the last
# row starts only 16 px below the one before, so three rows of tiles add to some raster rows.
HEIGHT, WIDTH = 300, 260
TILING = ["--tile", "64", "--overlap", "24"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 255, size=(3, HEIGHT, WIDTH)).astype("uint8")
    data[:, 100:180, 60:150] = [[[200]], [[40]], [[60]]]  # a red field, so that there are plots to write
    return write_tif(tmp_path_factory.mktemp("in") / "site.tif", data)


def run(args: list[str]) -> int:
    return main(parse_args([*args, "--quiet", "--device", "cpu"]))


def interrupt_after(monkeypatch: pytest.MonkeyPatch, batches: int, exc: type[BaseException]) -> None:
    """Make the model call raise ``exc`` once ``batches`` batches have run."""
    real = detect.predict.predict_batch
    calls = [0]

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        if calls[0] == batches:
            raise exc("injected interruption")
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(detect.predict, "predict_batch", counted)


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.endswith(".summary.json")}


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, weights: Path, scene: Path) -> Path:
    out = tmp_path_factory.mktemp("straight")
    args = [str(scene), "--out", str(out), "--weights", str(weights), *TILING, "--batch-size", "4"]
    assert run([*args, "--formats", "geojson,csv,prob"]) == 0
    return out


@pytest.mark.parametrize("batches", [2, 4, 9, 10])  # 42 tiles in batches of 4: rows 2, 3, last two, last batch
def test_ctrl_c_mid_prediction_resumes_to_identical_outputs(
    tmp_path: Path,
    weights: Path,
    scene: Path,
    straight: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    batches: int,
) -> None:
    out = tmp_path / "out"
    args = [str(scene), "--out", str(out), "--weights", str(weights), *TILING, "--batch-size", "4"]
    args += ["--formats", "geojson,csv,prob"]
    interrupt_after(monkeypatch, batches, KeyboardInterrupt)
    assert run(args) == 130
    assert "its last finished row of tiles (if it finished one): run the same command" in capsys.readouterr().err
    stage = out / ".site.partial"
    assert [p.name for p in out.iterdir()] == [".site.partial"]  # nothing published
    record = json.loads(progress_path(stage / "site.prob.tif").read_text())
    assert 0 < record["rows_done"] < HEIGHT
    monkeypatch.undo()

    assert run(args) == 0  # the same command
    err = capsys.readouterr().err
    summary = json.loads((out / "site.summary.json").read_text())
    tiles = summary["tiles"]
    assert f"{scene}: resuming from model row {record['rows_done']} of {HEIGHT} " in err
    assert f"({tiles['taken_from_earlier_run']} of 42 tiles done by an earlier run)" in err
    assert tiles["resumed_from_row"] == record["rows_done"]
    assert tiles["run"] + tiles["taken_from_earlier_run"] == 42
    assert tiles["taken_from_earlier_run"] % 4 == 0  # whole batches, as in the straight run
    # After two batches only the first row of tiles is done, and its lower edge blends into the next: rerun.
    assert (tiles["taken_from_earlier_run"] > 0) == (batches > 2)
    assert tiles["taken_from_earlier_run"] <= 4 * batches
    assert outputs(out) == outputs(straight)
    assert not stage.exists()


def test_other_settings_start_over_and_say_why(
    tmp_path: Path, weights: Path, scene: Path, straight: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    args = [str(scene), "--out", str(out), "--weights", str(weights), *TILING, "--formats", "geojson,csv,prob"]
    interrupt_after(monkeypatch, 5, KeyboardInterrupt)
    assert run([*args, "--batch-size", "3"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert run([*args, "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert f"{scene}: starting over, not resuming: the batch size differs (3 then, 4 now)" in err
    assert json.loads((out / "site.summary.json").read_text())["tiles"]["run"] == 42
    assert outputs(out) == outputs(straight)


def test_a_crash_leaves_nothing_to_resume(
    tmp_path: Path, weights: Path, scene: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    interrupt_after(monkeypatch, 3, RuntimeError)
    assert run([str(scene), "--out", str(out), "--weights", str(weights), *TILING]) == 1
    assert not out.exists()  # a bug is not resumed from: its partial results may be what is wrong


def test_predict_raster_resumes_after_an_exception(tmp_path: Path, weights: Path, scene: Path, monkeypatch) -> None:
    model, spec = load_checkpoint(weights)
    kw = dict(tile=64, overlap=24, batch_size=5, progress=False, resume_key={"input": "site"})
    whole = predict_raster(scene, model, spec, prob_path=tmp_path / "whole.prob.tif", **kw)
    assert whole.tiles_run == 42 and whole.resumed_from_row == 0

    prob = tmp_path / "cut.prob.tif"
    interrupt_after(monkeypatch, 6, RuntimeError)
    with pytest.raises(RuntimeError, match="injected"):
        predict_raster(scene, model, spec, prob_path=prob, **kw)
    monkeypatch.undo()
    assert not prob.exists() and work_path(prob).exists()
    said: list[str] = []
    again = predict_raster(scene, model, spec, prob_path=prob, say=said.append, **kw)
    # Rows of tiles start at 0, 40, 80, 120, 160, 200, 236. Six batches of 5 ran rows 0-4; the last row written
    # ends where row 4 starts (160). Row 3 (120 + 64 > 160) blends into the unwritten rows, so the rerun starts
    # at its first tile, 18, rounded down to a whole batch: 15.
    assert (again.resumed_from_row, again.tiles_resumed, again.tiles_run) == (160, 15, 27)
    assert said == [f"{scene}: resuming from model row 160 of 300 (15 of 42 tiles done by an earlier run)"]
    assert prob.read_bytes() == whole.prob_path.read_bytes()
    with rasterio.open(prob) as ds:  # the mask came through the work file too
        assert ds.read_masks(1).all()


def test_a_batch_bar_counts_only_the_tiles_a_resumed_input_runs(
    tmp_path: Path, weights: Path, scene: Path, monkeypatch
) -> None:
    """infer.py's one bar over a batch holds every input's tiles; a resumed input takes its earlier tiles off."""
    from tqdm import tqdm

    model, spec = load_checkpoint(weights)
    kw = dict(tile=64, overlap=24, batch_size=5, progress=False, resume_key={"input": "site"})
    prob = tmp_path / "cut.prob.tif"
    interrupt_after(monkeypatch, 6, RuntimeError)
    with pytest.raises(RuntimeError, match="injected"):
        predict_raster(scene, model, spec, prob_path=prob, **kw)
    monkeypatch.undo()
    with tqdm(total=42 + 10, file=io.StringIO()) as bar:  # this input's 42 tiles and 10 of another input
        again = predict_raster(scene, model, spec, prob_path=prob, bar=bar, **kw)
        assert again.tiles_resumed == 15 and bar.total == 52 - 15 and bar.n == 27  # what ran, of what is left
        assert not bar.disable  # left open for the next input
