"""Our pipeline against a TorchGeo one on the same scene, model, tile and overlap: wall time and peak memory.

The peer is what a TorchGeo user writes for inference over one orthomosaic (the pattern of TorchGeo's tutorials
and of the issues its users file about large scenes): a ``RasterDataset`` over the file at the model's GSD, a
``GridGeoSampler`` of ``tile`` pixels with stride ``tile - overlap``, a ``DataLoader`` with ``stack_samples``
batching ``--batch-size`` tiles, the same network and normalisation under ``torch.inference_mode``, and in-memory
stitching: a probability sum and a count the size of the whole raster (float32), averaged where tiles overlap
and written as one GeoTIFF at the end. It runs every tile of the grid (the sampler does not know the footprint)
and produces only the probability raster, so two ratios are printed: against our whole ``run_one`` (every
output: polygons, GeoPackage, KML, report ...) and against our ``predict`` stage alone (the probability
raster, like the peer's). Each side runs in a fresh child process; peak memory is the child's ``ru_maxrss``.

TorchGeo is a bench-only dependency (``pip install -r requirements-bench.txt``: torchgeo 0.8.1 and requests;
it leaves torch and torchvision as they are); CI never imports it. Timings mean something only on a quiet
machine::

    nice -n 10 .venv/bin/python bench/torchgeo_peer.py --scenes 4096,10000 --runs 1
    .venv/bin/python bench/torchgeo_peer.py --scenes 2048 --batch-size 8     # both sides batch 8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402


def _bench_infer():
    spec = importlib.util.spec_from_file_location("bench_infer", ROOT / "bench" / "infer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_infer"] = module
    spec.loader.exec_module(module)
    return module


def _torchgeo():
    try:
        import torchgeo.datasets
        import torchgeo.samplers
    except ImportError as exc:
        raise SystemExit(
            f"error: the TorchGeo peer needs torchgeo ({exc}): .venv/bin/pip install -r requirements-bench.txt"
        ) from exc
    return torchgeo


def chip_offset(bounds: tuple[slice, slice, slice], left: float, top: float, res: float) -> tuple[int, int]:
    """``(row_off, col_off)`` in raster pixels of a GridGeoSampler query (x and y slices in CRS units)."""
    xs, ys = bounds[0], bounds[1]
    return round((top - ys.stop) / res), round((xs.start - left) / res)


def stitch(
    acc: np.ndarray, count: np.ndarray, prob: np.ndarray, row: int, col: int
) -> None:  # the peer's in-memory stitching: add where the chip lies inside the raster
    h, w = acc.shape
    ph, pw = prob.shape
    r1, c1 = min(h, row + ph), min(w, col + pw)
    r0, c0 = max(0, row), max(0, col)
    if r1 <= r0 or c1 <= c0:
        return
    acc[r0:r1, c0:c1] += prob[r0 - row : r1 - row, c0 - col : c1 - col]
    count[r0:r1, c0:c1] += 1


def peer_child(args: argparse.Namespace) -> None:
    """The TorchGeo pipeline, once, in this fresh process; writes its measurements to ``args.peer_child``."""
    torch.set_num_threads(args.threads)
    _torchgeo()
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    from models.checkpoint import load_checkpoint, normalise, poppy_probability

    model, spec = load_checkpoint(args.weights)
    tile = spec.tile_size
    overlap = tile // 8
    t0 = time.perf_counter()
    ds = RasterDataset(paths=[str(args.scene)], res=spec.gsd_m)
    sampler = GridGeoSampler(ds, size=tile, stride=tile - overlap)
    loader = DataLoader(ds, sampler=sampler, batch_size=args.batch_size, collate_fn=stack_samples, num_workers=0)
    res = ds.res[0] if isinstance(ds.res, tuple) else ds.res
    left, top = ds.bounds[0].start, ds.bounds[1].stop
    height = round((ds.bounds[1].stop - ds.bounds[1].start) / res)
    width = round((ds.bounds[0].stop - ds.bounds[0].start) / res)
    acc = np.zeros((height, width), dtype=np.float32)
    count = np.zeros((height, width), dtype=np.float32)
    forward_s, tiles = 0.0, 0
    with torch.inference_mode():
        for batch in loader:
            x = normalise(batch["image"][:, :3].float().div_(255.0), spec)
            t1 = time.perf_counter()
            prob = poppy_probability(model(x), spec).numpy()
            forward_s += time.perf_counter() - t1
            for bounds, p in zip(batch["bounds"], prob, strict=True):
                stitch(acc, count, p, *chip_offset(bounds, left, top, res))
            tiles += len(prob)
    out = np.divide(acc, count, out=np.zeros_like(acc), where=count > 0)
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "float32",
        "crs": ds.crs,
        "transform": rasterio.Affine(res, 0, left, 0, -res, top),
        "tiled": True,
        "compress": "deflate",
    }
    with rasterio.open(args.out, "w", **profile) as dst:
        dst.write(out, 1)
    wall = time.perf_counter() - t0
    Path(args.peer_child).write_text(json.dumps({"wall_s": wall, "forward_s": forward_s, "tiles": tiles}))


def run_peer(args: argparse.Namespace, scene: Path, weights: Path, out: Path) -> dict:
    """One peer run in a child process; its peak RSS from the kernel's accounting of that child."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-child", str(result_path), "--scene", str(scene)]
    cmd += ["--weights", str(weights), "--out", str(out), "--threads", str(args.threads)]
    cmd += ["--batch-size", str(args.batch_size)]
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the TorchGeo run failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    out.unlink(missing_ok=True)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default="4096,10000", help="scenes as in bench/infer.py (default 4096,10000)")
    p.add_argument("--runs", type=int, default=1, help="runs of each side per scene; medians (default 1)")
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass, both sides (default 1)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads, both sides (default 2)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    p.add_argument(
        "--scene-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "poppy-bench",
        help="where generated scenes are kept (shared with bench/infer.py)",
    )
    p.add_argument("--peer-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scene", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--weights", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    if args.peer_child:
        peer_child(args)
        return
    _torchgeo()
    bench = _bench_infer()
    ours_args = bench.parse_args(["--batch-size", str(args.batch_size), "--threads", str(args.threads)])
    ours_args.forward_sample = 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="poppy-peer-") as tmp:
        work = Path(tmp)
        weights, model_desc, gsd, tile = bench.model_weights(work, args.model)
        for scene in bench.parse_scenes(args.scenes):
            path = bench.ensure_scene(args.scene_dir, scene, gsd)
            ours, peer = [], []
            for i in range(args.runs):
                print(f"{scene.label}: run {i + 1}/{args.runs}, ours then TorchGeo ...", file=sys.stderr, flush=True)
                ours.append(bench.run_once(ours_args, path, weights, work / "ours"))
                peer.append(run_peer(args, path, weights, work / "peer.tif"))
            rows.append((scene, ours, peer))

    print(f"\nours (infer.py, all outputs) against TorchGeo 0.8.1 (GridGeoSampler, in-memory stitching); {model_desc}")
    print(
        f"tile {tile}, overlap {tile // 8}, batch {args.batch_size}, {args.threads} torch threads, "
        f"median of {args.runs}; machine: {bench.machine_line()}\n"
    )
    head = (
        f"{'scene':<10}{'tiles ours':>11}{'TorchGeo':>9}{'ours run_one s':>15}{'ours predict s':>15}"
        f"{'TorchGeo s':>11}{'TG/run_one':>11}{'TG/predict':>11}{'ours MB':>9}{'TorchGeo MB':>12}{'TG/ours MB':>11}"
    )
    print(head + "\n" + "-" * len(head))
    for scene, ours, peer in rows:

        def med(runs: list[dict], fn: object) -> float:
            return statistics.median(fn(r) for r in runs)  # type: ignore[operator]

        run_one = med(ours, lambda r: r["summary"]["timings_s"]["total"])
        predict = med(ours, lambda r: r["summary"]["timings_s"]["predict"])
        tg = med(peer, lambda r: r["wall_s"])
        mb_ours, mb_tg = med(ours, lambda r: r["peak_rss_mb"]), med(peer, lambda r: r["peak_rss_mb"])
        print(
            f"{scene.label:<10}{ours[0]['summary']['tiles']['run']:>11}{peer[0]['tiles']:>9}{run_one:>15.1f}"
            f"{predict:>15.1f}{tg:>11.1f}{tg / run_one:>11.2f}{tg / predict:>11.2f}{mb_ours:>9.0f}{mb_tg:>12.0f}"
            f"{mb_tg / mb_ours:>11.2f}"
        )
    print("\nTG/x > 1: TorchGeo slower or larger than ours by that factor")


if __name__ == "__main__":
    main(parse_args())
