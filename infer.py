"""Find suspected opium-poppy plots in drone orthomosaics.

Each INPUT (a GeoTIFF/COG/VRT, or a folder of them) is read tile by tile at the model's ground resolution, the
model's poppy probability is written as STEM.prob.tif, and plots are written as polygons with a score, a
geodesic area and a centroid: STEM.geojson (WGS84), STEM.gpkg (the raster's CRS), STEM.kml (Google Earth and
phone apps), STEM.csv (lat/lon list), STEM.preview.jpg (plots outlined and numbered) and STEM.summary.json
(what ran, on what, how long). An orthomosaic more than 3x coarser than the model's ground resolution (e.g. 50
cm/px against 3 cm/px) is refused rather than upsampled: export it finer, or pass --allow-gsd-mismatch.
Before any run every input gets a quality verdict (ok, warn or refuse: blur, exposure, nodata, GSD; a refused
one is not run unless --force) and the run time is estimated from a few tiles through the model; a batch gets
one progress bar, flight.report.html and flight.gpkg.

Examples:
    # one orthomosaic, the shipped model, all outputs in results/
    python infer.py odm_orthophoto.tif --out results/

    # every raster in a folder, on the GPU, precision first (fewest empty fields), plots of 2 m2 and more
    python infer.py flights/2025-04-18/ --out results/ --device cuda --sensitivity low --min-area-m2 2

    # only what the field team needs on their phones, replacing an earlier run
    python infer.py site3.tif --out results/ --formats kml,csv --overwrite

    # a retrained model with test-time augmentation (four passes: slower, a little steadier)
    python infer.py site3.tif --out results/ --weights runs/exp1/best.pt --tta

    # a season's flights on a Dask cluster (inputs, weights and --out on a filesystem every worker mounts)
    python infer.py /mnt/flights/2026-04/ --out /mnt/results/2026-04 --scheduler tcp://sched:8786 --keep-going

    # triage a flight's raw photos (DJI JPEGs) at once, before photogrammetry: plots placed on the map
    python infer.py DCIM/100MEDIA/ --out triage/ --camera cameras.json

After a crash, kill or Ctrl-C, run the same command again: an input that was interrupted continues from the
last row of tiles it finished (with the same input, model and settings; else it starts over and says why), and
gives the same outputs, byte for byte, as an uninterrupted run. Add --resume to skip the inputs of a batch that
were finished.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import PoppyError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        prog="infer.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="orthomosaic(s) GDAL reads, or folder(s) of them")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument(
        "--weights", default=None, help="model checkpoint (.pt from train.py); default: the shipped model"
    )
    parser.add_argument(
        "--sensitivity",
        choices=("high", "balanced", "low"),
        default="balanced",
        help="operating point chosen on the model's validation: high finds the most plots (recall first), low sends "
        "the fewest teams to empty fields (precision first), balanced the best of both (default balanced); the "
        "summary says what precision and recall it had on validation",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="set the threshold by hand instead of --sensitivity: of the plot score for a two-stage model, else of "
        "the pixel probability",
    )
    parser.add_argument(
        "--min-area-m2",
        type=float,
        default=1.0,
        help="drop plots smaller than this many square metres (default 1.0: a few dozen plants)",
    )
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu or cuda (default auto)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="tiles per forward pass (default 1 on the CPU: measured fastest and leanest there; 8 on a GPU)",
    )
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="what runs the network on the CPU: torch (default) or onnxruntime (optional package: pip install "
        "onnxruntime onnx onnxscript; probabilities equal to torch's within 1e-4)",
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        default=None,
        help="with --runtime onnxruntime: a file from `python -m models.export_onnx` (default: export in memory)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="run the torch network in channels-last memory format (a speed option; same results within 1e-5)",
    )
    parser.add_argument("--tile", type=int, default=None, help="tile size in model pixels; default: the model's")
    parser.add_argument(
        "--overlap", type=int, default=None, help="tile overlap in model pixels; default: an eighth of the tile"
    )
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: flips and a quarter turn (4x slower)"
    )
    parser.add_argument(
        "--formats",
        default="all",
        help="comma-separated outputs among geojson,gpkg,kml,csv,prob,preview,chips,report,qml "
        "(default all; summary always)",
    )
    parser.add_argument(
        "--bands",
        default=None,
        help="band numbers of red, green and blue, e.g. 3,2,1 (default: from the colour interpretation, else 1,2,3; "
        "needed for rasters of five or more bands)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="on a bad input, say why and go on with the others; the failures are listed at the end "
        "(exit code non-zero if any failed)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs an earlier run into the same --out finished with the same model and settings (after a "
        "crash, a kill or Ctrl-C); an interrupted input continues from its last finished row of tiles, with or "
        "without this flag",
    )
    parser.add_argument(
        "--allow-gsd-mismatch",
        action="store_true",
        help="run on orthomosaics more than 3x coarser than the model's GSD (refused by default: the model "
        "would see blurred, upsampled pixels)",
    )
    parser.add_argument(
        "--frames",
        action="store_true",
        help="the inputs are a flight's raw frames (drone JPEGs), not orthomosaics: each frame is placed on the map "
        "from its EXIF/XMP and searched, and plots seen in several frames are merged (default: detected, for JPEGs "
        "with GPS tags and no CRS)",
    )
    parser.add_argument(
        "--camera",
        default=None,
        help="frames: the camera's sensor width and focal length in mm for every frame, e.g. 13.2,8.8, or a JSON file "
        'adding cameras to the table by EXIF model: {"FC9999": {"sensor_width_mm": 6.3, "focal_mm": 4.5}}',
    )
    parser.add_argument(
        "--gps-error-m",
        type=float,
        default=None,
        help="frames: 95 %% horizontal error of the drone's GPS in metres (default 3; RTK frames give their own)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run inputs the quality gates refuse (almost all nodata, extreme blur or exposure, a GSD far out of "
        "range); the summary's quality block says it was forced",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the inputs on a Dask distributed cluster: a scheduler's address (tcp://host:8786), or local:N "
        "to start N local worker processes; inputs, weights and --out must be at the same paths on every worker "
        '(needs pip install "dask[distributed]")',
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars; only the one-line result per input")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (for bug reports)")
    return parser.parse_args(argv)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (GDAL and torch messages span several)."""
    return " ".join(str(exc).split())


def main(args: argparse.Namespace) -> int:
    """Run detection for every input and report errors as one line each.

    Returns:
        The exit code: 0 done, 2 for a problem the user can fix (bad input, flag, output folder or disk), 1 for
        an internal error (a bug: rerun with ``--debug`` for the traceback), 130 when interrupted.
    """
    existed = os.path.exists(args.out)  # unlike Path.exists(), False (not OSError) for an impossible name
    code = 1
    try:
        code = _run(args)
        return code
    except PoppyError as exc:
        if args.debug:
            traceback.print_exc()
        print("error: " + _one_line(exc), file=sys.stderr)  # always one line
        return 2
    except OSError as exc:
        # The disk or the network share failed under us (full, gone, read-only): the user's to fix, not a bug.
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or _one_line(exc)}; check the disk and rerun", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; inputs finished so far are complete in --out, the one in progress continues from "
            "its last finished row of tiles (if it finished one): run the same command with --resume",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"error: internal error ({type(exc).__name__}: {_one_line(exc)[:300]}); "
            "rerun with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return 1
    finally:
        if code != 0 and not existed:
            with contextlib.suppress(OSError):  # only an empty folder goes: a failed run adds nothing
                Path(args.out).rmdir()


def _run(args: argparse.Namespace) -> int:
    """:func:`main` without the error handling."""
    with contextlib.ExitStack() as stack:  # holds the Dask client (and local cluster) of --scheduler to the end
        return _run_batch(args, stack)


def _run_batch(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    """:func:`_run` with a place to keep resources open for the whole run."""
    # Heavy imports here, so `--help` and argument errors answer at once.
    from tqdm import tqdm

    from core.errors import InputError
    from detect.export import parse_formats
    from detect.flight_summary import check_flight_outputs, flight_entries, write_flight_summary
    from detect.inputs import check_out_dir, output_stems
    from detect.pipeline import RunOptions, estimate_record, find_inputs, finished_inputs, prepare, run_one
    from detect.predict import resolve_device
    from detect.raster import parse_bands
    from models.checkpoint import default_weights_path, load_judge

    device = resolve_device(args.device)
    options = RunOptions(
        out_dir=args.out,
        threshold=args.threshold,
        sensitivity=args.sensitivity,
        min_area_m2=args.min_area_m2,
        device=str(device),
        # On 2 CPU cores one tile per pass ran 1.5x faster than 8 and peaked at half the memory (bench/infer.py,
        # 2026-12-07); a GPU wants batches.
        batch_size=args.batch_size if args.batch_size is not None else (1 if device.type == "cpu" else 8),
        tile=args.tile,
        overlap=args.overlap,
        tta=args.tta,
        formats=parse_formats(args.formats),
        overwrite=args.overwrite,
        progress=not args.quiet,
        allow_gsd_mismatch=args.allow_gsd_mismatch,
        bands=parse_bands(args.bands),
        resume=args.resume,
        force=args.force,
    )
    check_out_dir(args.out)
    from detect.flight import find_frames

    frames = find_frames(args.inputs, force=args.frames)
    scheduler = None
    if args.scheduler is not None:
        from detect.cluster import parse_scheduler

        scheduler = parse_scheduler(args.scheduler)
        if frames is not None:
            raise InputError(f"--scheduler {args.scheduler}: raw frames run in one process; drop --scheduler")
    if frames is not None:
        return _run_frames(args, options, frames, device)
    missing: list = []  # with --keep-going, INPUT arguments that name nothing are failures, not the end
    inputs = find_inputs(args.inputs, missing if args.keep_going else None)
    stems = output_stems(inputs)
    model, spec = _load_model(args, device)
    judge = load_judge(args.weights, map_location=device)
    weights = args.weights if args.weights is not None else default_weights_path()

    done = finished_inputs(inputs, stems, options, spec) if args.resume else []
    for path in done:
        print(f"{path.name}: finished by an earlier run, skipped (--resume) -> {args.out}")
    todo = [p for p in inputs if p not in done]

    def warn(message: str) -> None:
        tqdm.write("warning: " + message, file=sys.stderr)

    def say(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    # Without --keep-going every input is checked before the first is run: a batch that would fail, fails now.
    plans = {} if args.keep_going else prepare(todo, options, spec, warn=warn, stems=stems)
    batch = len(inputs) > 1
    if batch:  # a flight summary would replace an earlier one: refused now, not after an hour's work
        check_flight_outputs(args.out, options.formats, args.overwrite or args.resume)
    # The cluster answers, and its workers see the files, before the warm-up or any input runs.
    client = None if scheduler is None else _open_cluster(args, scheduler, todo, stack)
    if not args.quiet:
        print(
            f"model {spec.name} ({spec.arch}, {spec.gsd_m * 100:g} cm/px, sha256 {spec.sha256[:12]}) on {device}; "
            f"{len(todo)} input(s) to run",
            file=sys.stderr,
        )
    failed: list[tuple[Path, str, int]] = [(p, _one_line(exc), 2) for p, exc in missing]
    for _, message, _ in failed:
        print(f"error: {message}", file=sys.stderr)

    def fail(path: Path, exc: Exception) -> None:
        """With --keep-going: note the failure and go on; else raise it."""
        if not args.keep_going:
            raise exc
        if args.debug:
            traceback.print_exc()
        code = 2 if isinstance(exc, PoppyError | OSError) else 1
        message = _one_line(exc) if code == 2 else f"internal error ({type(exc).__name__}: {_one_line(exc)})"
        failed.append((path, message, code))
        tqdm.write(f"error: {message}", file=sys.stderr)

    checks = _gate(todo, options, spec, plans, stems=stems, args=args, warn=warn, fail=fail)
    runnable = [p for p in todo if p in checks and p not in {f for f, *_ in failed}]
    per_tile, timed = _estimate(runnable, checks, model, spec, options, quiet=args.quiet)
    tiles = sum(checks[p].tiles for p in runnable)
    results = {}
    with tqdm(total=tiles, unit="tile", disable=args.quiet, dynamic_ncols=True, desc="batch") as bar:
        if client is not None:
            estimates = {p: estimate_record(checks[p].tiles, per_tile, timed) for p in runnable}
            results = _run_on_cluster(args, client, runnable, spec, options, weights, plans, checks, estimates,
                                      bar=bar, say=say, fail=fail)  # fmt: skip
            runnable = []  # done
        for i, path in enumerate(runnable, 1):
            if not args.quiet and len(runnable) > 1:
                tqdm.write(f"[{i}/{len(runnable)}] {path}", file=sys.stderr)
            try:
                estimate = estimate_record(checks[path].tiles, per_tile, timed)
                results[path] = run_one(
                    path, model, spec, options, weights_path=weights, paths=plans[path], judge=judge, say=say,
                    check=checks[path], estimate=estimate, bar=bar,
                )  # fmt: skip
            except Exception as exc:
                fail(path, exc)
                continue
            tqdm.write(results[path].line(), file=sys.stdout)
    if batch:
        entries = flight_entries(inputs, stems, args.out, done, checks, results, failed)
        written = write_flight_summary(args.out, entries, formats=options.formats, overwrite=True)  # checked above
        if written and not args.quiet:
            print(f"flight summary: {', '.join(str(p) for p in written.values())}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(todo) + len(missing)} input(s) failed (--keep-going):", file=sys.stderr)
        for path, message, _ in failed:
            print(f"  {path}: {message}", file=sys.stderr)
        return 2 if all(code == 2 for *_, code in failed) else 1  # 1 when any was a bug
    return 0


def _open_cluster(args: argparse.Namespace, scheduler: str | int, todo: list[Path], stack: Any) -> Any:
    """``--scheduler``: a Dask client (kept open by ``stack``) whose workers all see the run's files."""
    from detect.cluster import check_workers, connect

    args.out.mkdir(parents=True, exist_ok=True)  # for the workers to see (removed again if the run fails)
    client = stack.enter_context(connect(scheduler))
    workers = check_workers(client, _model_request(args), todo, args.out)
    if not args.quiet:
        print(f"cluster: {workers} Dask worker(s) at {client.scheduler.address}", file=sys.stderr)
    return client


def _run_on_cluster(
    args: argparse.Namespace,
    client: Any,
    runnable: list[Path],
    spec: Any,
    options: Any,
    weights: Any,
    plans: dict,
    checks: dict,
    estimates: dict,
    *,
    bar: Any,
    say: Callable[[str], None],
    fail: Callable[[Path, Exception], None],
) -> dict:
    """``--scheduler``: the runnable inputs as tasks on the cluster; results printed as each input finishes.

    Returns the :class:`detect.pipeline.RunResult` of every input done.
    """
    from tqdm import tqdm

    from detect.cluster import run_inputs

    results = {}
    outcomes = run_inputs(
        client, runnable, _model_request(args), spec, options, weights_path=weights, plans=plans, checks=checks,
        estimates=estimates,
    )  # fmt: skip
    with contextlib.closing(outcomes):  # a failure stops the batch: unstarted tasks are cancelled first
        for path, outcome in outcomes:
            for line in outcome.said:
                say(line)
            bar.update(checks[path].tiles)
            if outcome.error is not None:
                if args.debug:
                    print(f"traceback of {path.name} {outcome.trace}", file=sys.stderr, end="")
                fail(path, outcome.error)  # type: ignore[arg-type]  # raises without --keep-going
                continue
            results[path] = outcome.result
            tqdm.write(outcome.result.line(), file=sys.stdout)  # type: ignore[union-attr]
    return results


def _load_model(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    """The checkpoint's network, wrapped for the runtime asked (``--runtime``, ``--channels-last``, ``--onnx``)."""
    from detect.pipeline import load_inference_model

    return load_inference_model(_model_request(args), device)


def _model_request(args: argparse.Namespace) -> Any:
    """The :class:`detect.pipeline.ModelRequest` of the command line."""
    from detect.pipeline import ModelRequest

    return ModelRequest(
        weights=args.weights, runtime=args.runtime, channels_last=args.channels_last, tile=args.tile, onnx=args.onnx
    )


def _run_frames(args: argparse.Namespace, options: Any, frames: list[Path], device: Any) -> int:
    """A flight's raw frames: placed, searched and merged by :func:`detect.flight.run_flight`."""
    from detect.flight import FlightOptions, load_cameras, run_flight
    from detect.frames import ErrorBudget
    from models.checkpoint import default_weights_path, load_judge

    cameras, camera = load_cameras(args.camera)
    budget = ErrorBudget() if args.gps_error_m is None else ErrorBudget(gps_m=args.gps_error_m)
    budget.check()
    model, spec = _load_model(args, device)
    judge = load_judge(args.weights, map_location=device)
    if not args.quiet:
        print(
            f"model {spec.name} ({spec.arch}, {spec.gsd_m * 100:g} cm/px, sha256 {spec.sha256[:12]}) on {device}; "
            f"{len(frames)} raw frame(s) of a flight",
            file=sys.stderr,
        )
    result = run_flight(
        frames,
        model,
        spec,
        options,
        FlightOptions(cameras=cameras, camera=camera, budget=budget),
        weights_path=args.weights if args.weights is not None else default_weights_path(),
        judge=judge,
        say=print,  # one line per frame, skipped ones with their reason, --quiet or not
    )
    print(result.line())
    return 0


def _gate(
    todo: list[Path],
    options: Any,
    spec: Any,
    plans: dict,
    *,
    stems: dict,
    args: argparse.Namespace,
    warn: Callable[[str], None],
    fail: Callable[[Path, Exception], None],
) -> dict:
    """Quality gates before any run: each input's verdict printed, refused ones left out (or the batch stops).

    With ``--keep-going`` each input is also prepared here (into ``plans``), its failure noted by ``fail``.
    Returns the :class:`detect.pipeline.InputCheck` of every input measured (refused ones included).
    """
    from detect.pipeline import check_input, enforce_quality, prepare

    checks = {}
    for path in todo:
        try:
            if args.keep_going:
                plans[path] = prepare([path], options, spec, warn=warn, stems=stems)[path]
            check = check_input(path, options, spec)
            checks[path] = check  # refused ones too: the flight summary shows their numbers
            q = check.quality
            if not args.quiet or q.verdict != "ok":
                # Inputs that run despite a problem are warnings; a refusal is followed by its error line.
                warned = q.verdict == "warn" or q.forced
                print(("warning: " if warned else "") + q.line(path.name), file=sys.stderr)
            enforce_quality(check)
        except Exception as exc:
            fail(path, exc)
    return checks


def _estimate(
    runnable: list[Path], checks: dict, model: Any, spec: Any, options: Any, *, quiet: bool
) -> tuple[float, int]:
    """The run-time estimate: a few tiles of the first input through the model; printed for all inputs' tiles.

    Returns ``(seconds_per_tile, tiles_timed)``.
    """
    from detect.pipeline import duration_text, warm_up

    if not runnable:
        return 0.0, 0
    per_tile, timed = warm_up(runnable[0], model, spec, options)
    tiles = sum(checks[p].tiles for p in runnable)
    if not quiet:
        print(
            f"estimate: {duration_text(tiles * per_tile)} on this machine for the model stage ({tiles} tiles at "
            f"{per_tile:.3g} s/tile, measured on {timed} warm-up tiles)",
            file=sys.stderr,
        )
    return per_tile, timed


if __name__ == "__main__":
    sys.exit(main(parse_args()))
