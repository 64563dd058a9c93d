"""Batches: names that cannot collide, --keep-going, nothing left by a failed input, --resume after a kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detect.inputs import output_stems
from infer import main, parse_args
from tests.bad_input_cases import tiny_checkpoint, write_tif

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt")


def run(args: list[str]) -> int:
    return main(parse_args([*args, "--quiet", "--device", "cpu"]))


@pytest.mark.parametrize(
    ("paths", "stems"),
    [
        (["a/site.tif", "b/other.tif"], ["site", "other"]),
        (["north/odm_orthophoto.tif", "south/odm_orthophoto.tif"], ["north_odm_orthophoto", "south_odm_orthophoto"]),
        # the parents differ only further up: as many folders as it takes
        (["2025/n/odm/o.tif", "2025/s/odm/o.tif", "x/p.tif"], ["n_odm_o", "s_odm_o", "p"]),
        # letter case alone would collide on a case-insensitive disk
        (["a/Site.tif", "b/site.tif"], ["a_Site", "b_site"]),
        # a clash only among some inputs leaves the others alone
        (["a/s.tif", "b/s.tif", "c/t.tif"], ["a_s", "b_s", "t"]),
    ],
)
def test_output_stems_are_unique(tmp_path: Path, paths: list[str], stems: list[str]) -> None:
    full = [tmp_path / p for p in paths]
    got = output_stems(full)
    assert [got[p] for p in full] == stems
    assert len({s.lower() for s in got.values()}) == len(full)


def test_keep_going_runs_the_rest_and_lists_failures(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "night"
    folder.mkdir()
    write_tif(folder / "a.tif")
    (folder / "b.tif").write_bytes(b"")  # a copy that never happened
    write_tif(folder / "c.tif")
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--weights", str(weights), "--formats", "geojson"]
    assert run(args) == 2  # without --keep-going the bad file stops the batch before any work
    assert not out.exists()
    capsys.readouterr()
    assert run([*args, "--keep-going"]) == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.geojson", "a.summary.json", "c.geojson", "c.summary.json"]
    assert len(captured.out.splitlines()) == 2
    assert "error: 1 of 3 input(s) failed (--keep-going):" in captured.err
    assert f"  {folder / 'b.tif'}: {folder / 'b.tif'}: is empty (0 bytes)" in captured.err
    assert "Traceback" not in captured.err


def test_failed_input_leaves_nothing(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    src = write_tif(tmp_path / "site.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the analyst's notes")
    import detect.pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash while vectorising")

    monkeypatch.setattr(detect.pipeline, "vectorize", broken)
    assert run([str(src), "--out", str(out), "--weights", str(weights)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error (RuntimeError: simulated crash") and err.count("\n") == 1
    assert "--debug" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # not even the staging folder or a .prob.tif
    with pytest.raises(RuntimeError, match="simulated crash"):  # --debug: the real traceback
        main(parse_args([str(src), "--out", str(out), "--weights", str(weights), "--quiet", "--debug"]))


def test_resume_skips_finished_inputs(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "night"
    folder.mkdir()
    for name in ("a", "b"):
        write_tif(folder / f"{name}.tif")
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--weights", str(weights), "--formats", "geojson"]
    assert run(args) == 0
    first = (out / "a.geojson").read_bytes()
    (out / "b.summary.json").unlink()  # b was interrupted before its summary: not finished
    (out / ".b.partial").mkdir()  # and a killed run left its staging folder
    capsys.readouterr()
    assert run(args) == 2  # outputs exist: refused without --resume or --overwrite
    assert "a.geojson already exists" in capsys.readouterr().err
    assert run([*args, "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("a.tif: finished by an earlier run, skipped (--resume)")
    assert lines[1].startswith("b.tif: ")
    assert (out / "a.geojson").read_bytes() == first
    assert not (out / ".b.partial").exists()
    # Other settings are another result: --resume does not take the earlier one for it.
    assert run([*args, "--resume", "--threshold", "0.9"]) == 2
    assert "a.geojson already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "a.geojson").read_bytes() == first


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"infer.py ended early: {proc.returncode}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


@pytest.mark.slow  # three runs of infer.py in subprocesses: ~50 s on 2 cores
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_gives_identical_geojson(tmp_path: Path, weights: Path) -> None:
    folder = tmp_path / "night"
    folder.mkdir()
    for name in ("a", "b", "c"):
        write_tif(folder / f"{name}.tif", height=400, width=400)
    cmd = [sys.executable, str(ROOT / "infer.py"), str(folder), "--weights", str(weights), "--quiet"]
    cmd += ["--device", "cpu", "--formats", "geojson,prob"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([*cmd, "--out", str(straight)], check=True, cwd=ROOT, timeout=300)

    proc = subprocess.Popen([*cmd, "--out", str(killed)], cwd=ROOT, stdout=subprocess.DEVNULL)
    _wait_for(killed / "a.summary.json", proc)
    os.kill(proc.pid, signal.SIGKILL)  # mid-batch: a is done, b is somewhere in its staging folder
    proc.wait()
    assert not (killed / "c.summary.json").exists(), "the batch finished before the kill; make the inputs larger"
    again = subprocess.run([*cmd, "--out", str(killed), "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "a.tif: finished by an earlier run, skipped (--resume)" in again.stdout
    for name in ("a", "b", "c"):
        assert (killed / f"{name}.geojson").read_bytes() == (straight / f"{name}.geojson").read_bytes()
        record = json.loads((killed / f"{name}.summary.json").read_text())
        assert record["outputs"] == {
            "geojson": f"{name}.geojson",
            "prob": f"{name}.prob.tif",
            "summary": f"{name}.summary.json",
        }
    assert not [p for p in killed.iterdir() if p.name.startswith(".")], "staging folders left behind"


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    src = write_tif(tmp_path / "site.tif")
    out = tmp_path / "out"
    import detect.pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread, here while vectorising

    monkeypatch.setattr(detect.pipeline, "vectorize", interrupted)
    assert run([str(src), "--out", str(out), "--weights", str(weights)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "run the same command with --resume" in err
    # Nothing published; the finished probability raster is kept in the staging folder for the rerun.
    assert [p.name for p in out.iterdir()] == [".site.partial"]
    monkeypatch.undo()
    assert run([str(src), "--out", str(out), "--weights", str(weights)]) == 0
    assert "site.tif: resuming from model row 48 of 48 (1 of 1 tiles done by an earlier run)" in capsys.readouterr().err
    assert json.loads((out / "site.summary.json").read_text())["tiles"]["run"] == 0


def test_keep_going_lists_a_missing_input_and_runs_the_rest(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture
) -> None:
    write_tif(tmp_path / "a.tif")
    gone, empty = tmp_path / "gone.tif", tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    args = [str(gone), str(tmp_path / "a.tif"), str(empty), "--out", str(out), "--weights", str(weights)]
    assert run([*args, "--formats", "geojson"]) == 2  # without --keep-going: refused before any work
    assert not out.exists()
    capsys.readouterr()
    assert run([*args, "--formats", "geojson", "--keep-going"]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("a.tif: ") and (out / "a.summary.json").exists()
    assert "error: 2 of 3 input(s) failed (--keep-going):" in captured.err
    assert f"  {gone}: {gone}: no such file or folder; check the path" in captured.err
    assert f"  {empty}: {empty}: folder holds no raster" in captured.err


@pytest.mark.slow  # three runs of infer.py in subprocesses on a 121-tile input: ~60 s on 2 cores
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_input_resumes_from_its_tiles(tmp_path: Path, weights: Path) -> None:
    src = write_tif(tmp_path / "big.tif", height=600, width=600)  # 11 x 11 tiles of 64 px, overlap 8
    cmd = [sys.executable, str(ROOT / "infer.py"), str(src), "--weights", str(weights), "--quiet", "--device", "cpu"]
    cmd += ["--formats", "geojson,csv,prob", "--batch-size", "2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    t0 = time.monotonic()
    subprocess.run([*cmd, "--out", str(straight)], check=True, cwd=ROOT, timeout=300)
    straight_s = time.monotonic() - t0

    proc = subprocess.Popen([*cmd, "--out", str(killed)], cwd=ROOT, stdout=subprocess.DEVNULL)
    record = killed / ".big.partial" / "big.prob.progress.json"
    t0 = time.monotonic()
    while True:  # kill -9 in the model stage, once four rows of tiles (44 of 121) are on disk
        assert proc.poll() is None, "infer.py ended before the kill"
        assert time.monotonic() - t0 < 240, "no progress recorded"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text())["tiles_done"] >= 44:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "big.summary.json").exists()
    rows_done = json.loads(record.read_text())["rows_done"]

    t0 = time.monotonic()
    again = subprocess.run([*cmd, "--out", str(killed)], cwd=ROOT, capture_output=True, text=True)  # same command
    resume_s = time.monotonic() - t0
    assert again.returncode == 0, again.stderr
    assert f"big.tif: resuming from model row {rows_done} of 600" in again.stderr
    tiles = json.loads((killed / "big.summary.json").read_text())["tiles"]
    assert tiles["resumed_from_row"] == rows_done and tiles["taken_from_earlier_run"] >= 22
    assert tiles["run"] == 121 - tiles["taken_from_earlier_run"]
    for name in ("big.geojson", "big.csv", "big.prob.tif"):
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name
    assert not [p for p in killed.iterdir() if p.name.startswith(".")], "staging folder left behind"
    print(f"straight {straight_s:.1f} s, resume {resume_s:.1f} s, {tiles['run']} of 121 tiles run on resume")
