"""A longer fuzz run than the tests': mutated GeoTIFF bytes through infer.py, mutated GeoJSON through the label checks.

Every case must end in a clean error (exit 2, one ``error:`` line) or a valid result (exit 0 with a summary);
anything else (exit 1, a traceback, an exception escaping, a case slower than --case-timeout) is listed with
its seed, which rebuilds it (``tests/fuzz_cases.py``). Run from the repository root::

    .venv/bin/python bench/fuzz_inputs.py --tiff 500 --geojson 1000
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.errors import InputError  # noqa: E402
from datasets.training_folder import check_training_folder  # noqa: E402
from infer import main as infer_main  # noqa: E402
from infer import parse_args  # noqa: E402
from tests.bad_input_cases import tiny_checkpoint, write_tif  # noqa: E402
from tests.fuzz_cases import labelled_folder, mutate  # noqa: E402


def tiff_case(seed: int, seed_bytes: bytes, weights: Path, work: Path) -> tuple[str, str]:
    """Run one mutated GeoTIFF; returns ``(outcome, first message line)``."""
    case = work / f"t{seed}"
    case.mkdir()
    src = case / "site.tif"
    src.write_bytes(mutate(seed_bytes, seed))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = infer_main(parse_args([str(src), "--out", str(case / "out"), "--weights", str(weights), "--quiet"]))
    except BaseException as exc:
        return "CRASH", f"{type(exc).__name__}: {exc}"
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
    if code == 0:
        return ("ok" if (case / "out" / "site.summary.json").is_file() else "CRASH"), ""
    if code == 2 and len(lines) == 1 and "Traceback" not in err.getvalue():
        return "clean error", lines[0].split(": ", 2)[-1][:70]
    return "CRASH", f"exit {code}: {err.getvalue()[:200]}"


def geojson_case(seed: int, work: Path) -> tuple[str, str]:
    """Run one mutated label file through train.py's folder check."""
    data = labelled_folder(work / f"g{seed}", seed)
    try:
        check_training_folder(data)
    except InputError as exc:
        return "clean error", str(exc).split(": ", 1)[-1][:70]
    except BaseException as exc:
        return "CRASH", f"{type(exc).__name__}: {exc}"
    return "ok", ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiff", type=int, default=200, help="mutated GeoTIFFs (default 200)")
    parser.add_argument("--geojson", type=int, default=500, help="mutated label files (default 500)")
    parser.add_argument("--first-seed", type=int, default=1000, help="seeds start here (the tests use 0-59)")
    parser.add_argument("--case-timeout", type=float, default=60.0, help="a case slower than this counts as a hang")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    crashes: list[tuple[str, int, str]] = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        weights = tiny_checkpoint(work / "tiny.pt")
        seed_tif = write_tif(work / "seed.tif", height=96, width=80, tiled=True, blockxsize=32, blockysize=32)
        seed_bytes = seed_tif.read_bytes()
        for kind, n in (("tiff", args.tiff), ("geojson", args.geojson)):
            outcomes: collections.Counter[str] = collections.Counter()
            messages: collections.Counter[str] = collections.Counter()
            t0 = time.perf_counter()
            slowest = 0.0
            for seed in range(args.first_seed, args.first_seed + n):
                t1 = time.perf_counter()
                if kind == "tiff":
                    outcome, message = tiff_case(seed, seed_bytes, weights, work)
                else:
                    outcome, message = geojson_case(seed, work)
                took = time.perf_counter() - t1
                slowest = max(slowest, took)
                if took > args.case_timeout:
                    outcome, message = "HANG", f"{took:.0f} s"
                outcomes[outcome] += 1
                if outcome in ("CRASH", "HANG"):
                    crashes.append((kind, seed, message))
                elif message:
                    messages[message] += 1
            print(
                f"{kind}: {n} cases in {time.perf_counter() - t0:.0f} s (slowest {slowest:.1f} s): "
                + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            )
            for message, count in messages.most_common(8):
                print(f"  {count:4d} x {message}")
    for kind, seed, message in crashes:
        print(f"{kind} seed {seed}: {message}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
