"""Benchmark the whole ``infer.py`` path: throughput, peak memory and pipeline efficiency, one table per run.

Scenes: a synthetic-looking RGBA orthomosaic (fields of noisy green, a few red and white flower blobs, an
irregular alpha footprint like an OpenDroneMap orthophoto's: a lobed outline covering about half of the raster) is
written strip by strip (never a whole-scene array) at 3 cm/px (or ``--scene-gsd``) as a tiled, deflate-compressed
GeoTIFF (512 x 512 blocks, predictor 2, as ODM writes them); ``cog:SIZE`` copies it into a Cloud-Optimised GeoTIFF
(GDAL's COG driver: tiled, with overviews). Scenes are kept in ``--scene-dir`` between runs (a 20000 px scene
takes minutes to write: ``--prepare`` writes them ahead, untimed).

Each run is a fresh child process running ``infer.main(infer.parse_args([...]))`` with all outputs, so its peak
resident memory (``ru_maxrss`` from ``os.wait4``) covers everything: Python, torch, GDAL's block cache, the
blending strips and the vectoriser. A thread in the child also samples RSS every 20 ms to pin the peak to a stage
(``--rss-trace`` writes the samples). Stage timings come from the run's ``summary.json``; ``read`` runs in the
read-ahead thread, overlapped with ``model``, so the stages do not add up to the total. Throughput is megapixels
of SOURCE per second of ``run_one`` (the whole input as infer.py runs it: prediction, vectorising, every export,
the input's hash), without process start-up and model load; km2/h is the raster's extent over the same time.

Pipeline efficiency = ``run_one`` / the network's forward time over the same tiles and batches, measured in the
same child: (1) ``forward``: every ``model(x)`` call inside the run, timed by a wrapper around the network
(normalisation, sigmoid and copies excluded), and (2) ``pure``: after the run, the same network in a bare loop over
``--forward-sample`` random tiles in batches of the run's size, scaled to the tiles the run ran. 1.00 would be a
pipeline that costs nothing beyond the network.

The model is the shipped default (``models/weights/poppy_default.pt``) when it exists, else a ``fastunet``
with random weights (stated in the output). Random weights cost the same to run through the network, but
their plots mean nothing, so ``vectorise`` and ``exports`` times are not those of a real survey.

Commands (nice: the machine is shared; timings mean something only on a quiet one)::

    nice -n 10 .venv/bin/python bench/infer.py --scenes 4096,10000,20000,cog:4096 --prepare   # write scenes only
    nice -n 10 .venv/bin/python bench/infer.py --scenes 4096,10000,20000,cog:4096 --runs 3 --large-runs 1
    nice -n 10 .venv/bin/python bench/infer.py --size 4096 --runs 3 --channels-last         # one lever alone
    nice -n 10 .venv/bin/python bench/infer.py --size 4096 --runtime onnxruntime
    nice -n 10 .venv/bin/python bench/infer.py --size 4096 --rss-trace /tmp/rss.csv   # RSS over time, by stage
    .venv/bin/python bench/infer.py --size 2048 --batch-size 4 --threads 2 --gdal-cachemax 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import rasterio.shutil  # noqa: E402
import torch  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from models.runtime import runtime_name  # noqa: E402

SCENE_BLOCK = 512  # GeoTIFF block size of the generated scene (ODM's default tiling)
SCENE_ORIGIN = (500000.0, 4000000.0)  # UTM 50N (north China), easting on the central meridian


# --- the scene -------------------------------------------------------------------------------------------------


WRITE_CACHE_BYTES = 128 << 20  # GDAL block cache while writing a scene
SCENE_VERSION = "fp2"  # in the file name: scenes of an older writer (elliptical footprint) are not reused
LARGE_MP = 50.0  # scenes above this many megapixels (10000 px and up) get --large-runs runs


@dataclass(frozen=True)
class SceneSpec:
    """One benchmark scene: its size in source pixels and its layout (plain tiled GeoTIFF or COG)."""

    height: int
    width: int
    cog: bool = False

    @property
    def label(self) -> str:
        side = f"{self.width}" if self.height == self.width else f"{self.height}x{self.width}"
        return ("COG " if self.cog else "") + side

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


def parse_scenes(text: str) -> list[SceneSpec]:
    """``"4096,10000,cog:4096,2048x1024"`` -> scenes; ``cog:`` makes a Cloud-Optimised GeoTIFF."""
    scenes = []
    for item in text.split(","):
        item = item.strip().lower()
        cog = item.startswith("cog:")
        size = item.removeprefix("cog:")
        try:
            h, w = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
        except ValueError:
            raise SystemExit(
                f"--scenes {text}: {item!r} is not SIZE, HEIGHTxWIDTH or cog:SIZE (e.g. 4096,cog:4096)"
            ) from None
        if min(h, w) < 64:
            raise SystemExit(f"--scenes {text}: {item!r} is too small; use at least 64 px a side")
        scenes.append(SceneSpec(h, w, cog))
    return scenes


def scene_path(scene_dir: Path, height: int, width: int, gsd: float, overviews: bool, cog: bool = False) -> Path:
    ov = "-ov" if overviews else ""
    kind = "-cog" if cog else ""
    return scene_dir / f"bench_{height}x{width}_{gsd * 100:g}cm_{SCENE_VERSION}{ov}{kind}.tif"


def footprint_strip(rows: np.ndarray, width: int, height: int, phases: np.ndarray) -> np.ndarray:
    """Alpha (0/255) of source ``rows`` for the lobed footprint: inside where the radius from the centre, in
    half-sizes, is under ``0.8 + 0.09 sin(3t + p0) + 0.06 sin(5t + p1) + 0.03 sin(11t + p2)`` (at most 0.98, so
    the outline never touches the raster's edge, like a drone survey's); about half of the raster is inside."""
    ey = (rows[:, None] + 0.5 - height / 2) / (height / 2)
    ex = (np.arange(width)[None, :] + 0.5 - width / 2) / (width / 2)
    theta = np.arctan2(ey, ex)
    limit = 0.8 + 0.09 * np.sin(3 * theta + phases[0]) + 0.06 * np.sin(5 * theta + phases[1])
    limit += 0.03 * np.sin(11 * theta + phases[2])
    return np.where(ey * ey + ex * ex <= limit * limit, 255, 0).astype(np.uint8)


def write_scene(path: Path, height: int, width: int, gsd: float, *, overviews: bool = False, seed: int = 0) -> Path:
    """Write the benchmark orthomosaic strip by strip (memory ``O(512 x width)``); returns ``path``.

    Fields are 20 m x 20 m blocks of one of three greens, with +-12 of per-pixel noise so the file compresses
    like real imagery rather than like flat colour. About 40 flower blobs per hectare, 0.5-3 m across, red or
    white. The alpha footprint is lobed and irregular (:func:`footprint_strip`, about half of the raster), so
    tiles along the outline and in the corners are skipped as on a real orthophoto.
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
    phases = rng.uniform(0, 2 * np.pi, 3)

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
    # GDAL's block cache (default 5 % of RAM) would keep every block written until full: memory bounded by
    # the strip, not the scene, needs a small one (measured peak 1.5 GB writing 20000 px with the default).
    with rasterio.Env(GDAL_CACHEMAX=WRITE_CACHE_BYTES), rasterio.open(tmp, "w", **profile) as ds:
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
            alpha = footprint_strip(rows, width, height, phases)
            rgb = np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1) * (alpha > 0)
            ds.write(np.concatenate([rgb, alpha[None]]), window=Window(0, r0, width, r1 - r0))
        if overviews:
            factors = [f for f in (2, 4, 8, 16, 32, 64) if max(height, width) / f >= 256]
            ds.build_overviews(factors, rasterio.enums.Resampling.average)
    os.replace(tmp, path)
    return path


def write_cog(src: Path, path: Path) -> Path:
    """Copy ``src`` into a Cloud-Optimised GeoTIFF (GDAL's COG driver streams it: no whole-scene array):
    512 px blocks, deflate with predictor 2, overviews down to 256 px built by averaging."""
    tmp = path.with_name(path.name + ".tmp")
    with rasterio.Env(GDAL_CACHEMAX=WRITE_CACHE_BYTES):
        rasterio.shutil.copy(
            src, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="2", BLOCKSIZE="512", RESAMPLING="AVERAGE"
        )
    os.replace(tmp, path)
    return path


def ensure_scene(scene_dir: Path, scene: SceneSpec, gsd: float, overviews: bool = False) -> Path:
    """The scene's file in ``scene_dir``, written first if it is not there yet (a COG from its plain twin)."""
    path = scene_path(scene_dir, scene.height, scene.width, gsd, overviews, scene.cog)
    if path.exists():
        return path
    scene_dir.mkdir(parents=True, exist_ok=True)
    plain = scene_path(scene_dir, scene.height, scene.width, gsd, overviews)
    t0 = time.perf_counter()
    if not plain.exists():
        print(f"writing scene {plain} ...", file=sys.stderr, flush=True)
        write_scene(plain, scene.height, scene.width, gsd, overviews=overviews)
    if scene.cog:
        print(f"writing COG {path} ...", file=sys.stderr, flush=True)
        write_cog(plain, path)
    print(f"  written in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
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


class _TimedForward(torch.nn.Module):
    """Wraps the network infer.py runs: adds the seconds of every ``model(x)`` call, and the tiles it saw."""

    def __init__(self, net: torch.nn.Module, tally: dict[str, float]) -> None:
        super().__init__()
        self.net = net
        self.tally = tally
        self.runtime = runtime_name(net)  # the summary and resume record see the wrapped runtime

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        y = self.net(x)
        self.tally["forward_s"] += time.perf_counter() - t0
        self.tally["forward_tiles"] += x.shape[0]
        return y


def pure_forward(net: torch.nn.Module, spec: object, tile: int, batch: int, tiles: int) -> float:
    """Seconds per tile of ``net`` alone, in a bare loop over ``tiles`` random tiles in batches of ``batch``
    (inputs normalised as predict does; one untimed warm-up batch for kernel selection)."""
    from models.checkpoint import normalise

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, tile, tile), dtype=torch.uint8, generator=gen)
    x = normalise(x.float().div_(255.0), spec)
    n_batches = max(1, round(tiles / batch))
    with torch.inference_mode():
        net(x)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            net(x)
        return (time.perf_counter() - t0) / (n_batches * batch)


def _infer_argv(args: argparse.Namespace) -> list[str]:
    """The infer.py options a run passes on (the levers and settings), besides input, output and weights."""
    argv = ["--device", args.device]
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--threshold", args.threshold),
        ("--sensitivity", args.sensitivity),
        ("--runtime", args.runtime),
        ("--onnx", args.onnx),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.channels_last:
        argv.append("--channels-last")
    return argv


def child(args: argparse.Namespace) -> None:
    """Run infer.py once in this (fresh) process and write what it measured to ``args.child``."""
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    import detect.pipeline as pipeline
    import models.runtime
    from infer import main, parse_args
    from models.checkpoint import load_checkpoint

    # Stage boundaries for the RSS samples: when prediction and vectorising start.
    marks: dict[str, float] = {}

    def marked(name: str, fn: Callable, on_start: Callable[[], None] | None = None) -> Callable:
        def wrapper(*a: object, **k: object) -> object:
            marks[name] = time.perf_counter()
            if on_start is not None:
                on_start()
            return fn(*a, **k)

        return wrapper

    def _start_predict() -> None:
        # infer.py's run-time estimate runs a few warm-up tiles before run_one: counted apart, not as the run's.
        tally["warmup_forward_s"], tally["warmup_tiles"] = tally["forward_s"], tally["forward_tiles"]
        tally["forward_s"], tally["forward_tiles"] = 0.0, 0

    pipeline.predict_raster = marked("predict", pipeline.predict_raster, on_start=_start_predict)
    pipeline.vectorize = marked("vectorize", pipeline.vectorize)
    # The network infer.py builds goes through models.runtime.for_inference (imported when infer runs): wrap it.
    tally = {"forward_s": 0.0, "forward_tiles": 0, "warmup_forward_s": 0.0, "warmup_tiles": 0}
    wrap_runtime = models.runtime.for_inference
    models.runtime.for_inference = lambda *a, **k: _TimedForward(wrap_runtime(*a, **k), tally)
    # detect.pipeline.load_inference_model imported the name itself: wrap that binding too (else eff. is empty).
    pipeline.for_inference = models.runtime.for_inference

    argv = [str(args.scene), "--out", str(args.out), "--weights", str(args.weights), "--overwrite", "--quiet"]
    argv += _infer_argv(args)
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
    pure_s = None
    if code == 0 and args.forward_sample > 0:  # after the run: it must not add to the run's peak memory
        model, spec = load_checkpoint(args.weights)
        p = summary["parameters"]
        net = wrap_runtime(
            model,
            runtime=args.runtime or "torch",
            channels_last=args.channels_last,
            tile=p["tile"],
            onnx_path=args.onnx,
        )
        tiles = min(args.forward_sample, max(1, summary["tiles"]["run"]))
        pure_s = pure_forward(net, spec, p["tile"], p["batch_size"], tiles)
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
        "forward_s": tally["forward_s"],
        "forward_tiles": tally["forward_tiles"],
        "warmup_forward_s": tally["warmup_forward_s"],
        "warmup_tiles": tally["warmup_tiles"],
        "pure_forward_s_per_tile": pure_s,
        "summary": summary,
    }
    Path(args.child).write_text(json.dumps(result))


def run_once(args: argparse.Namespace, scene: Path, weights: Path, out: Path) -> dict:
    """One child run; adds its peak RSS (from the kernel's accounting of that child) to its result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(result_path), "--scene", str(scene)]
    cmd += ["--weights", str(weights), "--out", str(out), "--threads", str(args.threads)]
    cmd += ["--forward-sample", str(args.forward_sample), *_infer_argv(args)]
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
    shutil.rmtree(out, ignore_errors=True)  # a 20000 px scene's outputs are large; the summary is in result
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
    p.add_argument(
        "--scenes",
        default=None,
        help="several scenes, one row each: SIZE, HEIGHTxWIDTH or cog:SIZE, comma-separated "
        "(e.g. 4096,10000,20000,cog:4096); replaces --size/--height",
    )
    p.add_argument("--prepare", action="store_true", help="only write the scenes (untimed), then stop")
    p.add_argument("--runs", type=int, default=1, help="runs per scene; medians are reported (default 1)")
    p.add_argument(
        "--large-runs",
        type=int,
        default=None,
        help=f"runs for scenes over {LARGE_MP:g} MP (default: --runs); a 20000 px scene takes about 5 min a run",
    )
    p.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass (default: infer.py's)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads in the run (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threshold", type=float, default=None, help="passed to infer.py (default: the model's)")
    p.add_argument("--runtime", default=None, help="passed to infer.py: torch or onnxruntime (default: infer.py's)")
    p.add_argument("--onnx", type=Path, default=None, help="passed to infer.py with --runtime onnxruntime")
    p.add_argument("--channels-last", action="store_true", help="passed to infer.py: channels-last memory format")
    p.add_argument(
        "--forward-sample",
        type=int,
        default=24,
        help="tiles of the pure-forward loop run after each run (default 24; 0: skip it)",
    )
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
    p.add_argument("--json", type=Path, default=None, help="also write every run's measurements to this JSON file")
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


def machine_line() -> str:
    """The CPU, its cores and the load average: what the numbers were measured on and beside."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores; load average {load} (1, 5, 15 min)"


@dataclass
class SceneRow:
    """Medians over the runs of one scene."""

    scene: SceneSpec
    path: Path
    results: list[dict]
    gsd: float

    def med(self, fn: Callable[[dict], float]) -> float:
        return statistics.median(fn(r) for r in self.results)

    @property
    def run_one(self) -> float:
        return self.med(lambda r: stages(r)["run_one"])

    @property
    def km2(self) -> float:
        return self.scene.megapixels * 1e6 * self.gsd * self.gsd / 1e6

    def efficiency(self) -> float:
        """run_one / the forward time inside the run."""
        return self.med(lambda r: stages(r)["run_one"] / r["forward_s"] if r["forward_s"] else float("nan"))

    def efficiency_pure(self) -> float | None:
        """run_one / (pure-forward seconds per tile x tiles run)."""
        if self.results[0].get("pure_forward_s_per_tile") is None:
            return None
        return self.med(
            lambda r: stages(r)["run_one"] / (r["pure_forward_s_per_tile"] * max(1, r["summary"]["tiles"]["run"]))
        )


def throughput_table(rows: list[SceneRow]) -> str:
    """The one table of a run: per scene, throughput, memory and pipeline efficiency (medians over runs)."""
    head = (
        f"{'scene':<12}{'MP':>7}{'tiles':>12}{'runs':>5}{'run_one s':>10}{'s/MP':>7}{'MP/s':>7}{'km2/h':>7}"
        f"{'peak RSS MB':>12}{'forward s':>10}{'eff.':>6}{'pure s/tile':>12}{'eff. pure':>10}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        t = row.results[0]["summary"]["tiles"]
        run_one = row.run_one
        pure = row.efficiency_pure()
        pure_tile = row.med(lambda r: r["pure_forward_s_per_tile"] or 0.0)
        tiles = f"{t['run']}/{t['total']}"
        lines.append(
            f"{row.scene.label:<12}{row.scene.megapixels:>7.1f}{tiles:>12}"
            f"{len(row.results):>5}{run_one:>10.1f}{run_one / row.scene.megapixels:>7.3f}"
            f"{row.scene.megapixels / run_one:>7.2f}{row.km2 / (run_one / 3600):>7.2f}"
            f"{row.med(lambda r: r['peak_rss_mb']):>12.0f}{row.med(lambda r: r['forward_s']):>10.1f}"
            f"{row.efficiency():>6.2f}"
            + (f"{pure_tile:>12.3f}{pure:>10.2f}" if pure is not None else f"{'-':>12}{'-':>10}")
        )
    return "\n".join(lines)


def stage_table(rows: list[SceneRow]) -> str:
    """Median seconds per stage, a column per scene (``read`` overlaps ``model`` in its own thread)."""
    names = ("footprint", "read", "model", "blend_write", "predict", "vectorise", "judge", "exports", "hash_input")
    lines = [f"{'stage (s)':<14}" + "".join(f"{r.scene.label:>12}" for r in rows)]
    for k in (*names, "run_one"):
        lines.append(f"{k:<14}" + "".join(f"{r.med(lambda x, k=k: stages(x)[k]):>12.1f}" for r in rows))
    warm = "".join(f"{r.med(lambda x: x.get('warmup_forward_s', 0.0)):>12.1f}" for r in rows)
    lines.append(f"{'warm-up fwd':<14}{warm}  (infer.py's run-time estimate, before run_one)")
    lines.append(f"{'process wall':<14}" + "".join(f"{r.med(lambda x: x['wall_s']):>12.1f}" for r in rows))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    if args.child:
        child(args)
        return
    scenes = parse_scenes(args.scenes) if args.scenes else [SceneSpec(args.height or args.size, args.size)]
    levers = " ".join(_infer_argv(args)[2:]) or "none (infer.py's defaults)"
    load_before = machine_line()
    with tempfile.TemporaryDirectory(prefix="poppy-bench-") as tmp:
        work = Path(tmp)
        weights, model_desc, gsd, tile = model_weights(work, args.model)
        gsd = args.scene_gsd or gsd
        paths = [ensure_scene(args.scene_dir, s, gsd, args.overviews) for s in scenes]
        if args.prepare:
            print("\n".join(str(p) for p in paths))
            return
        rows = []
        for scene, path in zip(scenes, paths, strict=True):
            runs = args.large_runs if args.large_runs is not None and scene.megapixels > LARGE_MP else args.runs
            results = []
            for i in range(runs):
                print(f"{scene.label}: run {i + 1}/{runs} ...", file=sys.stderr, flush=True)
                results.append(run_once(args, path, weights, work / f"out{i}"))
            rows.append(SceneRow(scene, path, results, gsd))

    s0 = rows[0].results[0]["summary"]
    print(
        f"\ninfer.py, all outputs, on generated RGBA scenes at {gsd * 100:g} cm/px (irregular footprint; "
        f"{args.scene_dir}); medians over the runs"
    )
    print(f"model: {model_desc}")
    print(
        f"device {args.device}, {args.threads} torch threads, batch {s0['parameters']['batch_size']}, tile {tile}, "
        f"runtime {s0['parameters'].get('runtime', 'torch')}, levers: {levers}, GDAL_CACHEMAX "
        f"{f'{args.gdal_cachemax} MB' if args.gdal_cachemax is not None else 'unset (pipeline chooses)'}"
    )
    print(f"machine: {load_before}; after: {machine_line().split('; ')[-1]}")
    print()
    print(throughput_table(rows))
    print(
        "\nMP/s and km2/h: the raster's extent over run_one (the whole input as infer.py runs it, model load and "
        "process start-up excluded);\neff. = run_one / forward s (every model(x) call in the run); eff. pure = "
        "run_one / (pure s/tile x tiles run)"
    )
    print()
    print(stage_table(rows))
    for row in rows:
        peaks = ", ".join(
            f"{k} {statistics.median(r['rss_peak_mb'][k] for r in row.results):.0f}"
            for k in ("load_prepare", "predict", "vectorise_export")
        )
        base = row.med(lambda r: r["rss_before_run_kb"] / 1024)
        print(f"{row.scene.label}: sampled peak RSS MB by stage: {peaks} ({base:.0f} after imports)")
    if args.json:
        record = {
            "model": model_desc,
            "levers": levers,
            "machine": load_before,
            "scenes": [
                {"scene": r.scene.label, "path": str(r.path), "megapixels": r.scene.megapixels, "runs": r.results}
                for r in rows
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(parse_args())
