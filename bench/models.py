"""Benchmark the registered networks on one 512x512 RGB tile on the CPU.

For each network: trainable parameters, GFLOPs per tile (counted by ``torch.utils.flop_counter``; one
multiply-add = 2 FLOPs), and the median of several timed forward passes after a warm-up, plus each network's
time as a ratio of the fastest one, measured in this same run (timings on shared machines are noisy: compare
the ratios, not the seconds, across machines).

    .venv/bin/python bench/models.py                 # all networks, 5 timed runs each
    .venv/bin/python bench/models.py --runs 9 --threads 2 --tile 512
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import build_model, list_models
from models.common import count_parameters


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tile", type=int, default=512, help="tile side in pixels (default 512)")
    p.add_argument("--runs", type=int, default=5, help="timed forward passes per network (default 5)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--models", nargs="*", default=None, help="networks to run (default: all)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    x = torch.rand(1, 3, args.tile, args.tile)
    rows = []
    for name in args.models or list_models():
        model = build_model(name, in_channels=3, num_classes=1).eval()
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                model(x)
            gflops = counter.get_total_flops() / 1e9
            model(x)  # warm-up: allocator and oneDNN kernel selection
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        rows.append((name, count_parameters(model), gflops, statistics.median(times)))
    fastest = min(r[3] for r in rows)
    print(f"CPU forward, 1 x 3 x {args.tile} x {args.tile}, {args.threads} threads, median of {args.runs} runs")
    print(f"{'network':<16}{'params':>12}{'GFLOPs':>10}{'median s':>11}{'x fastest':>11}")
    for name, params, gflops, t in rows:
        print(f"{name:<16}{params:>12,}{gflops:>10.1f}{t:>11.3f}{t / fastest:>11.2f}")


if __name__ == "__main__":
    main(parse_args())
