"""Evaluate a checkpoint on a folder of labelled orthomosaics, the way train.py validates.

Runs the inference path (tiled prediction, then polygons) over every labelled ``NAME.tif`` in the folder and
prints plot precision/recall, pixel IoU and false-positive area per hectare, by growth stage and GSD, at the
checkpoint's own threshold (``--threshold`` to override) and, with ``--sweep``, at every threshold from 0.05 to
0.95 with the one a recall >= 0.95 rule would choose.

    .venv/bin/python bench/evaluate_model.py --weights default --data scenes/heldout
    .venv/bin/python bench/evaluate_model.py --weights runs/ft/best.pt --data scenes/heldout --sweep --json out.json
    .venv/bin/python bench/evaluate_model.py --data scenes/heldout --runtime onnxruntime   # a speed lever's accuracy
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import PoppyError
from datasets.labelled import scenes_from_folder
from models.checkpoint import load_checkpoint
from models.runtime import for_inference, runtime_name
from training.evaluate import evaluate_scenes
from training.report import DEFAULT_THRESHOLDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="default", help="checkpoint (.pt) or 'default' (the shipped model)")
    p.add_argument("--data", required=True, type=Path, help="folder of NAME.tif + NAME.geojson")
    p.add_argument("--threshold", type=float, default=None, help="score at this threshold (default: the model's)")
    p.add_argument("--sweep", action="store_true", help="also print every threshold and the one recall>=0.95 picks")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--runtime", default="torch", help="torch or onnxruntime, as infer.py --runtime (default torch)")
    p.add_argument("--channels-last", action="store_true", help="as infer.py --channels-last")
    p.add_argument("--onnx", type=Path, default=None, help="with --runtime onnxruntime: this ONNX file (e.g. int8)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    try:
        model, spec = load_checkpoint(args.weights)
        model = for_inference(
            model, runtime=args.runtime, channels_last=args.channels_last, tile=spec.tile_size, onnx_path=args.onnx
        )
        scenes = scenes_from_folder(args.data)
        with tempfile.TemporaryDirectory() as work:
            fixed = evaluate_scenes(
                model,
                spec,
                scenes,
                thresholds=[args.threshold or spec.threshold],
                device=args.device,
                work_dir=Path(work),
            )
            print(
                f"model {spec.name} ({spec.arch}, runtime {runtime_name(model)}), {len(scenes)} orthomosaics in "
                f"{args.data}"
            )
            print(fixed.table())
            record = {"fixed": fixed.to_dict()}
            if args.sweep:
                sweep = evaluate_scenes(
                    model, spec, scenes, thresholds=DEFAULT_THRESHOLDS, device=args.device, work_dir=Path(work)
                )
                print(sweep.table(sweep=True))
                record["sweep"] = sweep.to_dict()
        if args.json:
            args.json.write_text(json.dumps(record, indent=2, default=str))
    except PoppyError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
