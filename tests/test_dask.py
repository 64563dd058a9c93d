"""``infer.py --scheduler``: a batch's inputs on a Dask distributed cluster give the single-process outputs.

Needs ``dask[distributed]`` (requirements-dev.txt); skipped without it, except the checks of the flag itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from core.errors import InputError
from detect.cluster import PIP_INSTALL, _cached_model, _run_input, _worker_problems, parse_scheduler
from detect.pipeline import ModelRequest, RunOptions, check_input, prepare
from infer import main, parse_args
from models.checkpoint import load_checkpoint
from tests.bad_input_cases import tiny_checkpoint, write_tif

try:
    import distributed
except ImportError:  # the tests of the flag itself still run
    distributed = None

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from compare_outputs import _files, same  # noqa: E402  (bench/ is scripts, not a package)

needs_dask = pytest.mark.skipif(distributed is None, reason="dask[distributed] is not installed")
# Wall-clock values that differ between any two runs, single-process or not: the summary's run-time estimate
# (a warm-up timed by the lead) beside compare_outputs' created_utc and timings_s, and the same two times in the
# flight report's "time / estimate" cell.
_FLIGHT_TIMES = re.compile(rb"<td>\d+ s / \d+ s</td>")
# Recorded by a resumed input (the killed worker's task continued by another): its only summary difference.
_RESUME_FIELDS = ("run", "resumed_from_row", "taken_from_earlier_run")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt")


def run(args: list[str]) -> int:
    return main(parse_args([*args, "--quiet", "--device", "cpu"]))


def differences(a: Path, b: Path, *, resumed: tuple[str, ...] = ()) -> list[str]:
    """Files of two output folders that differ, by bench/compare_outputs.py's rules and the two above."""
    names = _files(a)
    if names != _files(b):
        return [f"file lists: {sorted(set(names) ^ set(_files(b)))}"]
    diff = []
    for name in names:
        if name.endswith(".summary.json"):
            ja, jb = (json.loads((d / name).read_text()) for d in (a, b))
            for j in (ja, jb):
                for key in ("created_utc", "timings_s", "estimate"):
                    j.pop(key)
                if name.removesuffix(".summary.json") in resumed:
                    for key in _RESUME_FIELDS:
                        j["tiles"].pop(key)
            match = ja == jb
        elif name == "flight.report.html":
            match = _FLIGHT_TIMES.sub(b"", (a / name).read_bytes()) == _FLIGHT_TIMES.sub(b"", (b / name).read_bytes())
        else:
            match = same(a / name, b / name)[0]
        if not match:
            diff.append(name)
    return diff


@pytest.mark.parametrize(
    ("text", "expected"),
    [("local:2", 2), ("LOCAL:16", 16), ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"), (" host:8786 ", "host:8786")],
)
def test_parse_scheduler(text: str, expected: object) -> None:
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local:x", "local:", "local:-1", "local", ""])
def test_parse_scheduler_refuses(tmp_path: Path, weights: Path, text: str, capsys: pytest.CaptureFixture) -> None:
    src = write_tif(tmp_path / "a.tif")
    assert run([str(src), "--out", str(tmp_path / "out"), "--weights", str(weights), "--scheduler", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --scheduler {text if text.startswith('local:') else repr(text)}")
    assert "e.g. local:2" in err or "local:N" in err
    assert not (tmp_path / "out").exists()


def test_without_dask_says_what_to_install(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    src = write_tif(tmp_path / "a.tif")
    assert run([str(src), "--out", str(tmp_path / "out"), "--weights", str(weights), "--scheduler", "local:2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: --scheduler needs Dask distributed, not installed here")
    assert err[0].endswith(PIP_INSTALL)
    assert not (tmp_path / "out").exists()


def test_worker_problems_name_what_a_worker_does_not_see(tmp_path: Path, weights: Path) -> None:
    src = write_tif(tmp_path / "a.tif")
    assert _worker_problems(str(weights), [str(src)], str(tmp_path)) == []
    assert _worker_problems(None, [str(src)], str(tmp_path)) == []  # the shipped model: each worker's own copy
    missing = tmp_path / "elsewhere"
    assert _worker_problems(str(missing / "w.pt"), [str(src), str(missing / "b.tif")], str(missing)) == [
        f"no weights file {missing / 'w.pt'}",
        f"no input {missing / 'b.tif'}",
        f"output folder {missing} missing or not writable",
    ]


def test_a_worker_with_other_weights_refuses(weights: Path) -> None:
    with pytest.raises(InputError, match=r"have sha256 [0-9a-f]{12}, the lead's 000000000000: give every machine"):
        _cached_model(ModelRequest(weights=str(weights)), "0" * 64, "cpu")


def test_a_task_returns_its_error_with_the_workers_traceback(tmp_path: Path, weights: Path) -> None:
    """An input gone between the lead's checks and its task: the error comes back as a value (not retried)."""
    src = write_tif(tmp_path / "a.tif")
    options = RunOptions(out_dir=tmp_path / "out", device="cpu", batch_size=1, progress=False)
    spec = load_checkpoint(str(weights))[1]
    plans, check = prepare([src], options, spec)[src], check_input(src, options, spec)
    src.unlink()
    threads = torch.get_num_threads()
    try:
        outcome = _run_input(src, ModelRequest(weights=str(weights)), spec.sha256, options, weights, plans, check, {},
                             threads + 1)  # fmt: skip
        assert torch.get_num_threads() == threads + 1  # the lead's count, whatever the worker started with
    finally:
        torch.set_num_threads(threads)
    assert outcome.result is None
    assert isinstance(outcome.error, FileNotFoundError)
    assert outcome.trace.startswith("on ") and "Traceback (most recent call last)" in outcome.trace
    assert not (tmp_path / "out" / "a.summary.json").exists()


@needs_dask
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("foo:bar", "error: --scheduler foo:bar: not an address Dask reads ("),
        ("tcp://127.0.0.1:1", "error: --scheduler tcp://127.0.0.1:1: no Dask scheduler answered in 2 s ("),
    ],
)
def test_a_scheduler_that_does_not_answer(
    tmp_path: Path,
    weights: Path,
    address: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr("detect.cluster.CONNECT_TIMEOUT_S", 2)
    src = write_tif(tmp_path / "a.tif")
    assert run([str(src), "--out", str(tmp_path / "out"), "--weights", str(weights), "--scheduler", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("flight")
    return [write_tif(folder / "a.tif", height=300, width=280), write_tif(folder / "b.tif", height=200, width=320)]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, inputs: list[Path], weights: Path) -> Path:
    """The single-process run's outputs (every format), moved aside so a cluster run can use the same --out."""
    work = tmp_path_factory.mktemp("single")
    assert run([*map(str, inputs), "--out", str(work / "out"), "--weights", str(weights)]) == 0
    return Path(shutil.move(work / "out", work / "reference"))


def _line(reference: Path, src: Path, out: Path) -> str:
    """The result line infer.py prints for ``src`` into ``out``, from the reference run's summary."""
    plots = json.loads((reference / f"{src.stem}.summary.json").read_text())["plots"]
    return f"{src.name}: {plots['count']} plot(s), {plots['flagged_area_m2']:.1f} m2 flagged -> {out}"


def _fresh(out: Path) -> Path:
    """``out`` emptied: the reference's --out path (the flight report names it), left by a failed test."""
    shutil.rmtree(out, ignore_errors=True)
    return out


@needs_dask
def test_local_cluster_gives_the_single_process_outputs(
    single: Path, inputs: list[Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _fresh(single.parent / "out")
    capsys.readouterr()
    assert run([*map(str, inputs), "--out", str(out), "--weights", str(weights), "--scheduler", "local:2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == [_line(single, src, out) for src in inputs]  # as each input finishes, not in order
    assert differences(single, out) == []
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    shutil.rmtree(out)


def _kill_worker_mid_input(address: str, progress: Path, stem: str, killed: list[int], stop: threading.Event) -> None:
    """Once ``progress`` (the resume record) counts 10 tiles done (of 30), SIGKILL the worker running ``stem``."""
    with distributed.Client(address, timeout=30) as client:
        while not stop.is_set():
            tiles_done = 0
            with contextlib.suppress(OSError, ValueError):  # not there yet (it is replaced whole, never half-written)
                tiles_done = json.loads(progress.read_text())["tiles_done"]
            if tiles_done >= 10:
                for worker, keys in client.processing().items():
                    if any(k.startswith(f"poppy-infer-{stem}-") for k in keys):
                        pid = client.run(os.getpid, workers=[worker])[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
            time.sleep(0.01)


def _run_killing_a(out: Path, inputs: list[Path], weights: Path, extra: tuple[str, ...] = ()) -> tuple[int, list[int]]:
    """infer.py on a 2-worker local cluster, the worker running a.tif SIGKILLed mid-input; (exit code, pids)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        killed: list[int] = []
        stop = threading.Event()
        progress = out / ".a.partial" / "a.prob.progress.json"
        killer = threading.Thread(
            target=_kill_worker_mid_input, args=(cluster.scheduler_address, progress, "a", killed, stop)
        )
        killer.start()
        try:
            code = run([*map(str, inputs), "--out", str(out), "--weights", str(weights),
                        "--scheduler", cluster.scheduler_address, *extra])  # fmt: skip
        finally:
            stop.set()
            killer.join()
    return code, killed


@needs_dask
def test_a_worker_killed_mid_input_loses_only_its_task(
    single: Path, inputs: list[Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _fresh(single.parent / "out")
    code, killed = _run_killing_a(out, inputs, weights)
    assert killed, "the worker was not killed while it ran a.tif"
    assert code == 0, capsys.readouterr().err
    tiles = json.loads((out / "a.summary.json").read_text())["tiles"]
    assert tiles["resumed_from_row"] > 0 and tiles["taken_from_earlier_run"] > 0  # the retry continued a's rows
    assert tiles["run"] < tiles["total"]
    assert differences(single, out, resumed=("a",)) == []
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    shutil.rmtree(out)


@needs_dask
def test_an_input_killing_its_workers_fails_alone(
    single: Path, inputs: list[Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    """With no retry allowed after a worker death, a.tif fails (one line, --keep-going) and b.tif is done."""
    import dask

    out = _fresh(single.parent / "out")
    capsys.readouterr()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        code, killed = _run_killing_a(out, inputs, weights, ("--keep-going",))
    captured = capsys.readouterr()
    assert killed
    assert code == 2, captured.err
    assert captured.out.splitlines() == [_line(single, inputs[1], out)]
    assert "error: 1 of 2 input(s) failed (--keep-going):" in captured.err
    assert f"  {inputs[0]}: {inputs[0]}: the Dask workers running it died each time (" in captured.err
    assert "rerun with the same command to continue it from its last row of tiles" in captured.err
    assert "Traceback" not in captured.err
    assert same(single / "b.gpkg", out / "b.gpkg")[0]
    assert (out / "b.geojson").read_bytes() == (single / "b.geojson").read_bytes()
    assert "failed" in (out / "flight.report.html").read_text()
    assert not (out / "a.summary.json").exists()
    assert (out / ".a.partial" / "a.prob.progress.json").exists()  # what the rerun continues from
    shutil.rmtree(out)


@needs_dask
@pytest.mark.slow
def test_shipped_model_on_a_local_cluster_gives_the_single_process_outputs(tmp_path: Path) -> None:
    """The shipped model, whose probabilities depend on the thread count (the tiny one's do not): every file."""
    demo = ROOT / "samples" / "demo_ortho.tif"
    inputs = []
    for side in ("n", "s"):
        (tmp_path / side).mkdir()
        inputs.append(Path(shutil.copy(demo, tmp_path / side / demo.name)))
    out = tmp_path / "out"
    assert run([*map(str, inputs), "--out", str(out)]) == 0
    reference = Path(shutil.move(out, tmp_path / "reference"))
    assert run([*map(str, inputs), "--out", str(out), "--scheduler", "local:2"]) == 0
    assert len(_files(out)) > 20
    assert differences(reference, out) == []
