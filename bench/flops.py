"""How far the model runs from this machine's limit: FLOPs per megapixel against the measured convolution rate.

For each checkpoint (default: the shipped model and the v3 first stage) the FLOPs of one forward pass over a
tile are counted by ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOPs; convolutions,
matrix products and upsampling counted, element-wise ops such as batch norm and ReLU are not, so this is the
arithmetic the CPU's convolution kernels have to do). It is given per megapixel of the MODEL grid and per
megapixel of 3 cm SOURCE, where a model coarser than the source reads fewer pixels ((source GSD / model GSD)^2 of
them) and overlapping tiles compute every overlap twice ((tile / (tile - overlap))^2, 1.31 for 512/64).

The convolution rate is measured here, in this process, with the same torch threads: ``conv2d`` forward passes
on shapes large enough to be compute-bound (64 -> 64 channels, 3x3, 256x256), and on the shapes of this model's
full-resolution stage (16 -> 16 channels, 512x512), each in contiguous and channels-last memory format; the best
rate is the machine's limit for this kind of network, and the model's own measured forward rate (batch 1, one
tile, inference mode, median of ``--runs``; contiguous, and again in channels-last, "CL") is set against it:

    limit MP/s  = best conv GFLOP/s / GFLOP per source MP
    distance    = limit MP/s / model's measured MP/s (1.0 would be a model running at the best conv rate)

Timings are meaningful only on a quiet machine. Commands::

    nice -n 10 .venv/bin/python bench/flops.py                      # both models, 2 threads, about a minute
    .venv/bin/python bench/flops.py --weights models/weights/poppy_default.pt --runs 9 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from models.checkpoint import load_checkpoint  # noqa: E402

DEFAULT_WEIGHTS = (ROOT / "models/weights/poppy_default.pt", ROOT / "models/campaign/v3-stage1/best.pt")
# (name, batch, in channels, out channels, side): a compute-bound shape and the shipped model's widest-area stage.
CONV_SHAPES = (("64->64 3x3 @256", 1, 64, 64, 256), ("16->16 3x3 @512", 1, 16, 16, 512))


def count_flops(model: torch.nn.Module, tile: int, batch: int = 1) -> int:
    """FLOPs of one forward pass of ``model`` over ``batch`` RGB tiles of ``tile x tile`` (counted, not timed)."""
    x = torch.rand(batch, 3, tile, tile)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def overlap_factor(tile: int, overlap: int) -> float:
    """Model pixels computed per model pixel of the raster, tiles overlapping by ``overlap`` (interior tiles)."""
    return (tile / (tile - overlap)) ** 2


def median_seconds(fn: object, runs: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls after ``warmup`` untimed ones (kernel selection)."""
    for _ in range(warmup):
        fn()  # type: ignore[operator]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def conv_rate(batch: int, cin: int, cout: int, side: int, *, channels_last: bool, runs: int) -> float:
    """Measured GFLOP/s of a 3x3, padding-1 ``conv2d`` forward of the given shape (2 FLOPs a multiply-add)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(batch, cin, side, side).contiguous(memory_format=fmt)
    w = torch.rand(cout, cin, 3, 3).contiguous(memory_format=fmt)
    flops = 2 * batch * cout * side * side * cin * 9
    with torch.inference_mode():
        s = median_seconds(lambda: F.conv2d(x, w, padding=1), runs)
    return flops / s / 1e9


def model_rate(model: torch.nn.Module, tile: int, runs: int, *, channels_last: bool = False) -> float:
    """Measured seconds of one forward pass over one tile (batch 1, inference mode), in either memory format."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(1, 3, tile, tile).contiguous(memory_format=fmt)
    model = model.to(memory_format=fmt)
    try:
        with torch.inference_mode():
            return median_seconds(lambda: model(x), runs)
    finally:
        model.to(memory_format=torch.contiguous_format)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, nargs="*", default=None, help="checkpoints (default: v2 and v3-stage1)")
    p.add_argument("--source-gsd", type=float, default=0.03, help="GSD of the input survey in metres (default 0.03)")
    p.add_argument("--tile", type=int, default=None, help="tile in model pixels (default: the model's)")
    p.add_argument("--overlap", type=int, default=None, help="overlap in model pixels (default: an eighth of the tile)")
    p.add_argument("--runs", type=int, default=5, help="timed passes per measurement (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-timing", action="store_true", help="count FLOPs only (no conv or model timing)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    best = 0.0
    if not args.no_timing:
        print(f"conv2d forward, fp32, {args.threads} torch threads, median of {args.runs}")
        print(f"{'shape':<22}{'contiguous GFLOP/s':>20}{'channels-last GFLOP/s':>23}")
        for name, b, cin, cout, side in CONV_SHAPES:
            plain = conv_rate(b, cin, cout, side, channels_last=False, runs=args.runs)
            last = conv_rate(b, cin, cout, side, channels_last=True, runs=args.runs)
            best = max(best, plain, last)
            print(f"{name:<22}{plain:>20.1f}{last:>23.1f}")
        print(f"best measured conv rate: {best:.1f} GFLOP/s\n")

    header = f"{'model':<22}{'GSD cm':>7}{'GFLOP/tile':>11}{'GFLOP/MP model':>15}{'GFLOP/MP src':>13}"
    if not args.no_timing:
        header += f"{'s/tile':>8}{'MP/s src':>9}{'limit MP/s':>11}{'distance':>9}{'s/tile CL':>10}{'dist. CL':>9}"
    print(header)
    for path in args.weights or DEFAULT_WEIGHTS:
        model, spec = load_checkpoint(path)
        tile = args.tile or spec.tile_size
        overlap = tile // 8 if args.overlap is None else args.overlap
        flops = count_flops(model, tile)
        per_model_mp = flops / (tile * tile / 1e6) / 1e9
        src_per_model = (spec.gsd_m / args.source_gsd) ** 2  # source pixels one model pixel stands for
        per_src_mp = per_model_mp * overlap_factor(tile, overlap) / src_per_model
        row = f"{spec.name:<22}{spec.gsd_m * 100:>7g}{flops / 1e9:>11.2f}{per_model_mp:>15.2f}{per_src_mp:>13.2f}"
        if not args.no_timing:
            s = model_rate(model, tile, args.runs)
            # Source MP per second if the whole raster were tiled like this (interior tiles, overlap included).
            mps = (tile * tile / 1e6) * src_per_model / overlap_factor(tile, overlap) / s
            limit = best / per_src_mp
            s_cl = model_rate(model, tile, args.runs, channels_last=True)
            row += f"{s:>8.3f}{mps:>9.2f}{limit:>11.2f}{limit / mps:>9.1f}{s_cl:>10.3f}{limit / (mps * s / s_cl):>9.1f}"
        print(row)
    print(
        f"\nsource: {args.source_gsd * 100:g} cm/px; per source MP includes the tile overlap (tile/stride)^2 and the "
        "model/source GSD ratio; 'distance' = limit / measured (1.0: at the best conv rate); CL: the model and its "
        "input in channels-last memory format"
    )


if __name__ == "__main__":
    main(parse_args())
