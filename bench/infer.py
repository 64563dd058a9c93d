"""Benchmark the whole ``infer.py`` path: throughput and peak memory on a generated orthomosaic.

A synthetic-looking RGBA scene (fields of noisy green, a few red and white flower blobs, an elliptical alpha
footprint like an OpenDroneMap orthophoto's) is written window by window at the model's GSD as a tiled,
deflate-compressed GeoTIFF (512 x 512 blocks, predictor 2, as ODM writes them) and kept in ``--scene-dir``
for later runs. Each run is a fresh child process running ``infer.main(infer.parse_args([...]))`` with all
outputs, so its peak resident memory (``ru_maxrss`` from ``os.wait4``) covers everything: Python, torch,
GDAL's block cache, the blending strips and the vectoriser. A thread in the child also samples RSS every 20 ms
to pin the peak to a stage (``--rss-trace`` writes the samples). Stage timings come from the run's
``summary.json``; ``read`` runs in the read-ahead thread, overlapped with ``model``, so the stages do not add
up to the total. Throughput is megapixels of SOURCE per second of ``run_one`` (the whole input as infer.py
runs it: prediction, vectorising, every export, the input's hash), without process start-up and model load.

The model is the shipped default (``models/weights/poppy_default.pt``) when it exists, else a ``fastunet``
with random weights (stated in the output). Random weights cost the same to run through the network, but
their plots mean nothing (this seed's network flags the whole footprint as one plot), so ``vectorise`` and
``exports`` times are not those of a real survey.

Commands (nice: the machine is shared)::

    nice -n 10 .venv/bin/python bench/infer.py --size 10000                # one run, several minutes on 2 cores
    nice -n 10 .venv/bin/python bench/infer.py --size 4096 --runs 3        # median of 3
    nice -n 10 .venv/bin/python bench/infer.py --size 4096 --height 1024   # peak memory vs width, not area
    nice -n 10 .venv/bin/python bench/infer.py --size 4096 --rss-trace /tmp/rss.csv   # RSS over time, by stage
    .venv/bin/python bench/infer.py --size 2048 --batch-size 4 --threads 2 --gdal-cachemax 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.windows import Window  # noqa: E402

SCENE_BLOCK = 512  # GeoTIFF block size of the generated scene (ODM's default tiling)
SCENE_ORIGIN = (500000.0, 4000000.0)  # UTM 50N (north China), easting on the central meridian


# --- the scene -------------------------------------------------------------------------------------------------


def scene_path(scene_dir: Path, height: int, width: int, gsd: float, overviews: bool) -> Path:
    ov = "-ov" if overviews else ""
    return scene_dir / f"bench_{height}x{width}_{gsd * 100:g}cm{ov}.tif"


def write_scene(path: Path, height: int, width: int, gsd: float, *, overviews: bool = False, seed: int = 0) -> Path:
    """Write the benchmark orthomosaic strip by strip (memory ``O(512 x width)``); returns ``path``.

    Fields are 20 m x 20 m blocks of one of three greens, with +-12 of per-pixel noise so the file compresses
    like real imagery rather than like flat colour. About 40 flower blobs per hectare, 0.5-3 m across, red or
    white. The alpha footprint is the ellipse inscribed in the raster (79 % of it), so corner tiles are skipped
    as on a real orthophoto.
    """
    rng = np.random.default_rng(seed)
    field_px = max(1, round(20.0 / gsd))
    greens = np.array([[70, 120, 60], [95, 140, 70], [60, 100, 55]], dtype=np.int16)
    n_fields = (height // field_px + 1, width // field_px + 1)
    field_kind = rng.integers(0, len(greens), size=n_fields)
    n_blobs = max(3, round(40 * height * width * gsd * gsd / 1e4))
    blob_r = rng.uniform(0.25, 1.5, n_blobs) / gsd  # radius in pixels
    blob_y = rng.uniform(0, height, n_blobs)
    blob_x = rng.uniform(0, width, n_blobs)
    blob_rgb = np.where(rng.random(n_blobs)[:, None] < 0.6, [[215, 35, 40]], [[235, 235, 225]]).astype(np.int16)

    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:32650",
        "transform": Affine(gsd, 0, SCENE_ORIGIN[0], 0, -gsd, SCENE_ORIGIN[1]),
        "tiled": True,
        "blockxsize": SCENE_BLOCK,
        "blockysize": SCENE_BLOCK,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    cols = np.arange(width)
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        for r0 in range(0, height, SCENE_BLOCK):
            r1 = min(r0 + SCENE_BLOCK, height)
            rows = np.arange(r0, r1)
            kind = field_kind[(rows // field_px)[:, None], (cols // field_px)[None, :]]
            img = greens[kind]  # [h, w, 3] int16
            img += rng.integers(-12, 13, size=img.shape, dtype=np.int16)
            for k in np.nonzero((blob_y + blob_r >= r0) & (blob_y - blob_r < r1))[0]:
                c0, c1 = max(0, int(blob_x[k] - blob_r[k])), min(width, int(blob_x[k] + blob_r[k]) + 1)
                yy = rows[:, None] - blob_y[k]
                xx = cols[None, c0:c1] - blob_x[k]
                inside = yy * yy + xx * xx <= blob_r[k] ** 2
                img[:, c0:c1][inside] = blob_rgb[k] + rng.integers(-20, 21, size=(int(inside.sum()), 3))
            ey = (rows[:, None] + 0.5 - height / 2) / (height / 2)
            ex = (cols[None, :] + 0.5 - width / 2) / (width / 2)
            alpha = np.where(ey * ey + ex * ex <= 1.0, 255, 0).astype(np.uint8)
            rgb = np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1) * (alpha > 0)
            ds.write(np.concatenate([rgb, alpha[None]]), window=Window(0, r0, width, r1 - r0))
        if overviews:
            factors = [f for f in (2, 4, 8, 16, 32, 64) if max(height, width) / f >= 256]
            ds.build_overviews(factors, rasterio.enums.Resampling.average)
    os.replace(tmp, path)
    return path


# --- one run, in a child process -------------------------------------------------------------------------------


def _rss_kb() -> int:
    """Current resident set size of this process, in kB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class _RssSampler:
    """Samples RSS every 20 ms in a thread, so the peak can be pinned to a stage (ru_maxrss cannot)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append((time.perf_counter(), _rss_kb()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, t0: float, t1: float) -> float:
        inside = [kb for t, kb in self.samples if t0 <= t < t1]
        return max(inside, default=0) / 1024


def child(args: argparse.Namespace) -> None:
    """Run infer.py once in this (fresh) process and write what it measured to ``args.child``."""
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    import detect.pipeline as pipeline
    from infer import main, parse_args

    # Stage boundaries for the RSS samples: when prediction and vectorising start.
    marks: dict[str, float] = {}

    def marked(name: str, fn: Callable) -> Callable:
        def wrapper(*a: object, **k: object) -> object:
            marks[name] = time.perf_counter()
            return fn(*a, **k)

        return wrapper

    pipeline.predict_raster = marked("predict", pipeline.predict_raster)
    pipeline.vectorize = marked("vectorize", pipeline.vectorize)

    argv = [
        str(args.scene),
        "--out",
        str(args.out),
        "--weights",
        str(args.weights),
        "--device",
        args.device,
        "--overwrite",
        "--quiet",
    ]
    if args.batch_size is not None:
        argv += ["--batch-size", str(args.batch_size)]
    if args.threshold is not None:
        argv += ["--threshold", str(args.threshold)]
    # ru_maxrss here is the high-water mark so far: Python, torch and the imports, before infer.main runs.
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sampler = _RssSampler()
    t0 = time.perf_counter()
    code = main(parse_args(argv))
    t1 = time.perf_counter()
    sampler.stop()
    run_s = t1 - t0
    tp, tv = marks.get("predict", t0), marks.get("vectorize", t1)
    if args.rss_trace:
        with open(args.rss_trace, "w") as f:
            f.write("seconds,rss_mb,stage\n")
            for t, kb in sampler.samples:
                stage = "load_prepare" if t < tp else "predict" if t < tv else "vectorise_export"
                f.write(f"{t - t0:.2f},{kb / 1024:.0f},{stage}\n")
    summary = json.loads((args.out / f"{args.scene.stem}.summary.json").read_text()) if code == 0 else {}
    result = {
        "exit_code": code,
        "run_s": run_s,
        "process_s": time.perf_counter() - t_start,
        "rss_before_run_kb": rss_before_kb,
        "rss_peak_mb": {
            "load_prepare": sampler.peak_mb(t0, tp),
            "predict": sampler.peak_mb(tp, tv),
            "vectorise_export": sampler.peak_mb(tv, t1),
        },
        "summary": summary,
    }
    Path(args.child).write_text(json.dumps(result))


def run_once(args: argparse.Namespace, scene: Path, weights: Path, out: Path) -> dict:
    """One child run; adds its peak RSS (from the kernel's accounting of that child) to its result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = Path(f.name)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(result_path),
        "--scene",
        str(scene),
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.threshold is not None:
        cmd += ["--threshold", str(args.threshold)]
    if args.sensitivity is not None:
        cmd += ["--sensitivity", args.sensitivity]
    env = dict(os.environ)
    if args.rss_trace:
        cmd += ["--rss-trace", str(args.rss_trace)]
    if args.gdal_cachemax is not None:
        env["GDAL_CACHEMAX"] = str(args.gdal_cachemax)  # a plain number is megabytes to GDAL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the maximum over all runs so far).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed with exit code {proc.returncode}: {' '.join(cmd)}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    if result["exit_code"] != 0:
        raise SystemExit(f"infer.py exited with {result['exit_code']} (see its message above)")
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    result["wall_s"] = wall
    return result


def stages(result: dict) -> dict[str, float]:
    """Stage timings in seconds from a run's summary."""
    t = result["summary"]["timings_s"]
    p = t["predict_detail"]
    return {
        "footprint": p.get("footprint", 0.0),
        "read": p["read"],
        "model": p["model"],
        "blend_write": p["blend_write"],
        "predict": t["predict"],
        "vectorise": t["vectorize"],
        "judge": t.get("judge", 0.0),
        "exports": t["export"],
        "hash_input": t["hash_input"],
        "run_one": t["total"],
    }


# --- the driver --------------------------------------------------------------------------------------------------


def model_weights(work: Path, weights: Path | None = None) -> tuple[Path, str, float, int]:
    """``weights``, else the shipped default model, else a random-weight fastunet saved in ``work``; with a
    description."""
    from models import build_model
    from models.checkpoint import ModelSpec, default_weights_path, load_checkpoint, load_judge, save_checkpoint

    if weights is not None:
        _, spec = load_checkpoint(weights)
        stages = "two-stage" if load_judge(weights) is not None else "one-stage"
        desc = f"{spec.name} ({spec.arch}, {stages}, {spec.gsd_m * 100:g} cm/px, {weights})"
        return weights, desc, spec.gsd_m, spec.tile_size
    default = default_weights_path()
    if default.is_file():
        _, spec = load_checkpoint(default)
        return default, f"shipped default model {spec.name} ({spec.arch}, {default.name})", spec.gsd_m, spec.tile_size
    import torch

    torch.manual_seed(0)
    spec = ModelSpec(arch="fastunet", name="bench-random")
    model = build_model("fastunet", in_channels=3, num_classes=1)
    path = work / "bench_random_fastunet.pt"
    save_checkpoint(path, model, spec)
    return (
        path,
        "fastunet with RANDOM weights (no shipped default model yet): its plots mean nothing",
        spec.gsd_m,
        spec.tile_size,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=10000, help="scene width in pixels (default 10000)")
    p.add_argument("--height", type=int, default=None, help="scene height in pixels (default: --size, square)")
    p.add_argument("--runs", type=int, default=1, help="runs; medians are reported (default 1: 10000 px takes minutes)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass (default: infer.py's)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads in the run (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threshold", type=float, default=None, help="passed to infer.py (default: the model's)")
    p.add_argument(
        "--gdal-cachemax",
        type=int,
        default=None,
        help="GDAL_CACHEMAX in MB set in the run's environment (default: unset, the pipeline chooses)",
    )
    p.add_argument("--overviews", action="store_true", help="give the scene overviews (ODM builds them)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint to run (default: the shipped model)")
    p.add_argument(
        "--scene-gsd",
        type=float,
        default=None,
        help="scene GSD in metres (default: the model's); 0.03 measures a coarser model on 3 cm input",
    )
    p.add_argument("--sensitivity", default=None, help="passed to infer.py (default: infer.py's)")
    p.add_argument(
        "--rss-trace", type=Path, default=None, help="write RSS samples (every 20 ms) of the last run to a CSV"
    )
    p.add_argument(
        "--scene-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "poppy-bench",
        help="where generated scenes are kept between runs (default: TMPDIR/poppy-bench)",
    )
    # Internal: one measured run in a child process.
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scene", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--weights", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    if args.child:
        child(args)
        return
    height = args.height or args.size
    width = args.size
    args.scene_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="poppy-bench-") as tmp:
        work = Path(tmp)
        weights, model_desc, gsd, tile = model_weights(work, args.model)
        gsd = args.scene_gsd or gsd
        scene = scene_path(args.scene_dir, height, width, gsd, args.overviews)
        if not scene.exists():
            t0 = time.perf_counter()
            print(f"writing scene {scene} ...", file=sys.stderr, flush=True)
            write_scene(scene, height, width, gsd, overviews=args.overviews)
            print(f"  written in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        results = []
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs} ...", file=sys.stderr, flush=True)
            results.append(run_once(args, scene, weights, work / f"out{i}"))

    mp = height * width / 1e6
    s0 = results[0]["summary"]
    tiles = s0["tiles"]
    med = {k: statistics.median(stages(r)[k] for r in results) for k in stages(results[0])}
    peak = statistics.median(r["peak_rss_mb"] for r in results)
    base = statistics.median(r["rss_before_run_kb"] / 1024 for r in results)
    wall = statistics.median(r["wall_s"] for r in results)
    cachemax = f"{args.gdal_cachemax} MB" if args.gdal_cachemax is not None else "unset (pipeline chooses)"

    print(
        f"\ninfer.py on {scene.name}: {height} x {width} px ({mp:.1f} MP) RGBA at {gsd * 100:g} cm/px, "
        f"{scene.stat().st_size / 2**20:.0f} MiB on disk{', with overviews' if args.overviews else ''}"
    )
    print(f"model: {model_desc}")
    print(
        f"device {args.device}, {args.threads} torch threads, batch {s0['parameters']['batch_size']}, tile {tile}, "
        f"GDAL_CACHEMAX {cachemax}, median of {args.runs} run(s); plots found: {s0['plots']['count']}"
    )
    print(f"tiles: {tiles['run']} run, {tiles['skipped']} skipped of {tiles['total']}")
    print(f"\n{'stage':<26}{'seconds':>9}")
    notes = {
        "read": "  (reader thread, overlaps model)",
        "footprint": "",
        "predict": "  (footprint + model + blend/write + read stalls)",
        "run_one": "  (the whole input, as infer.py runs it)",
    }
    stage_names = (
        "footprint",
        "read",
        "model",
        "blend_write",
        "predict",
        "vectorise",
        "judge",
        "exports",
        "hash_input",
    )
    for k in (*stage_names, "run_one"):
        print(f"{k:<26}{med[k]:>9.1f}{notes.get(k, '')}")
    print(f"{'process wall (+ startup)':<26}{wall:>9.1f}")
    print(
        f"\n{'throughput':<26}{mp / med['run_one']:>9.3f} MP/s of source (run_one), "
        f"{mp / wall:.3f} MP/s with process startup"
    )
    print(f"{'tiles/s':<26}{tiles['run'] / med['predict']:>9.2f} (tiles run / predict)")
    print(f"{'peak RSS':<26}{peak:>9.0f} MB (child process ru_maxrss; {base:.0f} MB after imports)")
    for k in ("load_prepare", "predict", "vectorise_export"):
        v = statistics.median(r["rss_peak_mb"][k] for r in results)
        print(f"{'  sampled peak ' + k:<26}{v:>9.0f} MB")
    if args.runs > 1:
        runs = ", ".join(f"{stages(r)['run_one']:.1f}" for r in results)
        peaks = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in results)
        print(f"{'each run':<26}run_one {runs} s; peak RSS {peaks} MB")


if __name__ == "__main__":
    main(parse_args())
