"""An int8 ONNX network for ONNX Runtime on the CPU, statically quantised on tiles of labelled-free scenes.

Exports the checkpoint to ONNX (``models.runtime.export_onnx``), then quantises it with ONNX Runtime's static
quantiser (QDQ format, int8 weights per output channel, uint8 activations, min-max ranges calibrated on
``--tiles`` tiles read from the rasters of ``--calibration`` at the model's GSD and normalised exactly as
``detect.predict`` does). An int8 network is kept only where accuracy holds: check it on held-out scenes (never
the calibration ones) against the float network, then time it::

    python -m datasets.synthetic --out /tmp/calib --count 4 --seed 11 --size 1536 --gsd 0.03 --stage mixed
    python -m datasets.synthetic --out /tmp/heldout --count 4 --seed 7141 --size 1536 --gsd 0.03 --stage mixed
    .venv/bin/python bench/quantize_int8.py default /tmp/v2_int8.onnx --calibration /tmp/calib
    .venv/bin/python bench/evaluate_model.py --data /tmp/heldout --sweep --json /tmp/int8.json \\
        --runtime onnxruntime --onnx /tmp/v2_int8.onnx
    .venv/bin/python bench/evaluate_model.py --data /tmp/heldout --sweep --json /tmp/fp32.json
    .venv/bin/python bench/infer.py --scenes 4096 --runs 2 --runtime onnxruntime --onnx /tmp/v2_int8.onnx

``infer.py --runtime onnxruntime --onnx FILE`` runs the result. Needs ``pip install onnxruntime onnx onnxscript``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from detect.predict import model_grid  # noqa: E402
from detect.raster import inspect_raster, open_raster, read_window  # noqa: E402
from detect.tiling import model_to_source_window  # noqa: E402
from models.checkpoint import ModelSpec, load_checkpoint, normalise  # noqa: E402
from models.runtime import export_onnx  # noqa: E402


def calibration_tiles(folder: Path, spec: ModelSpec, tile: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` normalised ``[1, 3, tile, tile]`` tiles at random places inside the footprints of the rasters in
    ``folder`` (a tile is kept when at least half of it is valid), read as predict reads them."""
    rasters = sorted(p for p in folder.glob("*.tif") if not p.name.endswith((".prob.tif", ".landcover.tif")))
    if not rasters:
        raise SystemExit(f"error: --calibration {folder}: no .tif orthomosaic in it")
    rng = np.random.default_rng(seed)
    tiles: list[np.ndarray] = []
    tries = 0
    while len(tiles) < count and tries < 50 * count:
        tries += 1
        path = rasters[len(tiles) % len(rasters)]
        with open_raster(path) as ds:
            info = inspect_raster(ds)
            grid = model_grid(info, spec.gsd_m)
            r = int(rng.integers(0, max(1, grid.height - tile)))
            c = int(rng.integers(0, max(1, grid.width - tile)))
            src = model_to_source_window(Window(col_off=c, row_off=r, width=tile, height=tile), grid.scale)
            rgb, valid = read_window(ds, info, src, out_shape=(tile, tile))
        if valid.mean() < 0.5:
            continue
        x = normalise(torch.from_numpy(rgb[None]).float().div_(255.0), spec)
        tiles.append(x.numpy())
    if len(tiles) < count:
        raise SystemExit(f"error: found only {len(tiles)} of {count} calibration tiles with a footprint in {folder}")
    return tiles


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .pt from train.py, or 'default'")
    p.add_argument("out", type=Path, help="the int8 .onnx file to write")
    p.add_argument("--calibration", type=Path, required=True, help="folder of orthomosaics to calibrate on")
    p.add_argument("--tiles", type=int, default=32, help="calibration tiles (default 32)")
    p.add_argument("--tile", type=int, default=None, help="tile side in model pixels (default: the model's)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise SystemExit(f"error: int8 quantisation needs onnxruntime ({exc}): pip install onnxruntime onnx") from exc

    model, spec = load_checkpoint(args.checkpoint)
    tile = args.tile or spec.tile_size
    tiles = calibration_tiles(args.calibration, spec, tile, args.tiles)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tiles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {"x": x}

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", tile, in_channels=len(spec.bands))
        quantize_static(
            str(fp32),
            str(args.out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    print(f"{args.out}: {spec.name} int8 (QDQ, per-channel weights), {tile} px tiles, calibrated on {len(tiles)} tiles")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
