"""A batch's inputs spread over the workers of a Dask distributed cluster (``infer.py --scheduler``).

Each input is one task, and a task runs exactly what a single-process ``infer.py`` runs for an input
(:func:`detect.pipeline.run_one`, with the same options, plans, quality check and estimate), so the outputs are
the same bytes. The lead process keeps everything else: gating, ``--resume``, the one-line results, the
``--keep-going`` failures and the flight summary. Workers read the inputs and the weights and write into the
same ``--out``, so all three must be at the same path on every machine (a shared filesystem).

A worker loads the network once (cached per worker process, keyed by the :class:`detect.pipeline.ModelRequest`
and the weights' SHA-256, which must equal the lead's). A worker that dies mid-task (killed, out of memory, its
machine gone) loses only that task: the scheduler hands it to another worker (up to its ``allowed-failures``,
3 by default), and the retried input continues from the last row of tiles the dead one finished
(:mod:`detect.progress`), in the same ``--out/.STEM.partial/`` folder. ``retries`` (re-running a task that
*raised*) is not used: the task returns its error instead of raising it, because an error in one input (a bad
file, a bug) comes back the same on any worker.

Dask is optional: ``pip install "dask[distributed]"`` (imported only when ``--scheduler`` is given).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import socket
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import InputError, PoppyError
from detect.pipeline import InputCheck, ModelRequest, RunOptions, RunResult, load_inference_model, run_one
from models.checkpoint import ModelSpec, load_judge
from models.plotnet import JudgeSpec

__all__ = ["PIP_INSTALL", "Outcome", "check_workers", "connect", "parse_scheduler", "run_inputs"]

PIP_INSTALL = 'pip install "dask[distributed]==2026.8.0"'
CONNECT_TIMEOUT_S = 30
# Cached networks of this (worker) process: loading one per task would cost more than a small input's run.
_MODELS: dict[tuple[ModelRequest, str, str], tuple[nn.Module, ModelSpec, tuple[nn.Module, JudgeSpec] | None]] = {}


def parse_scheduler(text: str) -> str | int:
    """``--scheduler``: ``local:N`` gives ``N`` (workers of a local cluster), else the scheduler's address.

    Raises:
        InputError: For ``local:`` without a whole number of workers of 1 or more, or an empty address.
    """
    text = text.strip()
    if text.lower().startswith("local:"):
        count = text[len("local:") :]
        if not count.isdigit() or int(count) < 1:
            raise InputError(f"--scheduler {text}: local:N needs N whole workers, 1 or more, e.g. local:2")
        return int(count)
    if not text or text.lower() == "local":
        raise InputError(
            f"--scheduler {text!r}: give a scheduler address (tcp://host:8786) or local:N for N local workers"
        )
    return text


def _distributed() -> Any:
    """The ``distributed`` package, or an error naming the install command."""
    try:
        import distributed
    except ImportError as exc:
        raise InputError(f"--scheduler needs Dask distributed, not installed here ({exc}): {PIP_INSTALL}") from exc
    return distributed


@contextlib.contextmanager
def connect(scheduler: str | int) -> Iterator[Any]:
    """A ``distributed.Client`` on the scheduler, or on a local cluster of ``scheduler`` worker processes.

    A local cluster listens on 127.0.0.1 only, one thread per worker process (the network's own threads are
    the worker's parallelism), without the dashboard; it and its workers are stopped on leaving.

    Raises:
        InputError: If Dask is missing or no scheduler answers at the address.
    """
    distributed = _distributed()
    with contextlib.ExitStack() as stack:
        if isinstance(scheduler, int):
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=scheduler,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,  # a restarted worker is expected, not news for the console
                )
            )
            address = cluster.scheduler_address
        else:
            address = scheduler
        try:
            client = stack.enter_context(distributed.Client(address, timeout=CONNECT_TIMEOUT_S))
        except ValueError as exc:  # an address Dask cannot parse
            raise InputError(
                f"--scheduler {address}: not an address Dask reads ({_line(exc)}); give tcp://HOST:PORT "
                "(8786 by default) or local:N"
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"--scheduler {address}: no Dask scheduler answered in {CONNECT_TIMEOUT_S} s ({_line(exc)}); start one "
                "with `dask scheduler` and check the address and port (8786 by default), or use local:N"
            ) from exc
        yield client


def _worker_problems(weights: str | None, inputs: list[str], out_dir: str) -> list[str]:
    """On a worker: what it lacks of the weights, the inputs and the output folder (all at the lead's paths)."""
    problems = [] if weights is None or os.path.isfile(weights) else [f"no weights file {weights}"]
    problems += [f"no input {p}" for p in inputs if not os.path.exists(p)]
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK | os.X_OK):
        problems.append(f"output folder {out_dir} missing or not writable")
    return problems


def check_workers(client: Any, request: ModelRequest, inputs: Sequence[Path], out_dir: Path) -> int:
    """Check before any work that every worker sees the weights, the inputs and ``out_dir`` at the lead's paths.

    Returns:
        The number of workers.

    Raises:
        InputError: If there is no worker, a worker cannot import this project, or lacks a file.
    """
    weights = None if request.weights is None else str(Path(request.weights).resolve())
    try:
        found = client.run(_worker_problems, weights, [str(Path(p).resolve()) for p in inputs], str(out_dir.resolve()))
    except (ImportError, AttributeError) as exc:  # the worker unpickles this module's function by name
        raise InputError(
            f"the Dask workers cannot import poppy-survey ({exc}): start each worker with this repository on its "
            "PYTHONPATH and its venv's Python (README: Running on a cluster)"
        ) from exc
    if not found:
        raise InputError("--scheduler: the cluster has no worker; start some with `dask worker ADDRESS --nthreads 1`")
    bad = [f"{worker}: {'; '.join(p[:3])}" for worker, p in sorted(found.items()) if p]
    if bad:
        raise InputError(
            f"{len(bad)} of {len(found)} Dask worker(s) do not see the run's files at the same paths ({bad[0]}): "
            "put the weights, the inputs and --out on a filesystem every worker mounts at the same path"
        )
    return len(found)


@dataclass
class Outcome:
    """What one input's task gave back to the lead.

    Attributes:
        result: The input's result, or None if it failed.
        said: Lines the run printed (resumed, or started over and why), for the lead to print.
        error: The input's error, or None.
        trace: The error's traceback on the worker (for ``--debug``), or "".
    """

    result: RunResult | None
    said: list[str] = field(default_factory=list)
    error: BaseException | None = None
    trace: str = ""


def _cached_model(
    request: ModelRequest, sha256: str, device: str
) -> tuple[nn.Module, ModelSpec, tuple[nn.Module, JudgeSpec] | None]:
    """This process's network for ``request`` (loaded on first use), checked to be the lead's (``sha256``)."""
    key = (request, sha256, device)
    if key not in _MODELS:
        model, spec = load_inference_model(request, torch.device(device))
        if spec.sha256 != sha256:
            raise InputError(
                f"worker {socket.gethostname()}: weights {request.weights or 'shipped model'} have sha256 "
                f"{spec.sha256[:12]}, the lead's {sha256[:12]}: give every machine the same file (a shared path)"
            )
        judge = load_judge(request.weights, map_location=torch.device(device))
        _MODELS.clear()  # one network per worker: a new request replaces the old one
        _MODELS[key] = (model, spec, judge)
    return _MODELS[key]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to travel to the lead), else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _run_input(
    path: Path,
    request: ModelRequest,
    sha256: str,
    options: RunOptions,
    weights_path: str | Path,
    paths: dict[str, Path],
    check: InputCheck,
    estimate: dict[str, Any],
    threads: int,
) -> Outcome:
    """The task: :func:`detect.pipeline.run_one` on a worker, errors returned rather than raised.

    The network runs with ``threads`` threads (the lead's count): PyTorch's CPU kernels split their sums by
    thread, so another count changes the probabilities' last bits (measured on the shipped model: 1 thread
    against 2 gave a different STEM.prob.tif, the same plots), and Dask starts workers with one thread.
    """
    said: list[str] = []
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        model, spec, judge = _cached_model(request, sha256, options.device)
        result = run_one(
            path, model, spec, options, weights_path=weights_path, paths=paths, judge=judge, say=said.append,
            check=check, estimate=estimate,
        )  # fmt: skip
    except Exception as exc:
        return Outcome(None, said, _portable(exc), f"on {socket.gethostname()}:\n{traceback.format_exc()}")
    result.plots = list(result.plots)
    return Outcome(result, said)


def run_inputs(
    client: Any,
    inputs: Sequence[Path],
    request: ModelRequest,
    spec: ModelSpec,
    options: RunOptions,
    *,
    weights_path: str | Path,
    plans: Mapping[Path, dict[str, Path]],
    checks: Mapping[Path, InputCheck],
    estimates: Mapping[Path, dict[str, Any]],
) -> Iterator[tuple[Path, Outcome]]:
    """Run every input as a task on the cluster; yield ``(input, outcome)`` as each finishes (not in order).

    Leaving the loop early (an error without ``--keep-going``, Ctrl-C) cancels the tasks not yet started.
    A task whose workers all died (``allowed-failures`` exceeded) comes back as a failed outcome.
    """
    distributed = _distributed()
    # No progress bars on the workers (the lead's bar counts finished inputs' tiles).
    task_options = dataclasses.replace(options, progress=False)
    run = uuid.uuid4().hex[:8]
    threads = torch.get_num_threads()  # the lead's: the outputs are those of a single-process run here
    futures = {}
    for path in inputs:
        stem = plans[path]["summary"].name.removesuffix(".summary.json")
        future = client.submit(
            _run_input, path, request, spec.sha256, task_options, weights_path, plans[path], checks[path],
            estimates[path], threads, key=f"poppy-infer-{stem}-{run}", pure=False,
        )  # fmt: skip
        futures[future] = path
    try:
        for future in distributed.as_completed(list(futures)):
            path = futures[future]
            try:
                outcome = future.result()
            except distributed.KilledWorker as exc:
                outcome = Outcome(None, error=_killed(path, exc))
            yield path, outcome
    finally:
        client.cancel(list(futures))


def _killed(path: Path, exc: BaseException) -> PoppyError:
    """The error for an input whose task killed every worker it was given (its memory, most likely)."""
    return PoppyError(
        f"{path}: the Dask workers running it died each time ({_line(exc)}); look for a worker out of memory, "
        "rerun with the same command to continue it from its last row of tiles"
    )


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
