"""Export a checkpoint's network to ONNX, for ONNX Runtime (or any ONNX runtime) on CPU-only stations.

The graph takes a normalised ``float32`` batch ``x`` of ``[B, 3, TILE, TILE]`` (any B) and returns the logits
``[B, C, TILE, TILE]``; normalisation (the checkpoint's mean and std) and the sigmoid stay outside, as in
``detect.predict``. After writing, the file is run once by ONNX Runtime (when installed) on random tiles and
compared with PyTorch; the largest difference in logits is printed, and a difference over 1e-3 is an error.

    python -m models.export_onnx models/weights/poppy_default.pt poppy_default.onnx
    python -m models.export_onnx runs/exp1/best.pt exp1_768.onnx --tile 768

``infer.py --runtime onnxruntime --onnx FILE`` runs it; without ``--onnx`` infer.py exports in memory itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from core.errors import PoppyError
from models.checkpoint import load_checkpoint
from models.runtime import OnnxRuntimeNet, export_onnx

MAX_LOGIT_DIFF = 1e-3  # fp32 in both runtimes; only the summation order differs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m models.export_onnx",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("    python") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a .pt from train.py, or 'default' for the shipped model")
    p.add_argument("out", type=Path, help="the .onnx file to write")
    p.add_argument("--tile", type=int, default=None, help="tile side in model pixels (default: the model's)")
    p.add_argument("--no-check", action="store_true", help="skip running the file against PyTorch")
    return p.parse_args(argv)


def check_against_torch(model: torch.nn.Module, onnx_path: Path, tile: int, batch: int = 2) -> float:
    """Largest absolute difference in logits between ONNX Runtime and PyTorch on ``batch`` random tiles."""
    x = torch.rand(batch, 3, tile, tile) * 4 - 2  # about the range of normalised colours
    with torch.inference_mode():
        want = model(x).numpy()
        got = OnnxRuntimeNet(onnx_path, tile)(x).numpy()
    return float(np.abs(got - want).max())


def main(args: argparse.Namespace) -> int:
    try:
        model, spec = load_checkpoint(args.checkpoint)
        tile = args.tile or spec.tile_size
        export_onnx(model, args.out, tile, in_channels=len(spec.bands))
        line = f"{args.out}: {spec.name} ({spec.arch}) for {tile} x {tile} tiles, any batch"
        if not args.no_check:
            diff = check_against_torch(model, args.out, tile)
            if diff > MAX_LOGIT_DIFF:
                print(f"error: {args.out} differs from PyTorch by {diff:.2e} in logits (> {MAX_LOGIT_DIFF:g})")
                return 1
            line += f"; ONNX Runtime vs PyTorch: largest logit difference {diff:.1e}"
        print(line)
        return 0
    except PoppyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(parse_args()))
