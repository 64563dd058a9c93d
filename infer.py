"""Find suspected opium-poppy plots in drone orthomosaics.

Each INPUT (a GeoTIFF/COG/VRT, or a folder of them) is read tile by tile at the model's ground resolution, the
model's poppy probability is written as STEM.prob.tif, and plots are written as polygons with a score, a
geodesic area and a centroid: STEM.geojson (WGS84), STEM.gpkg (the raster's CRS), STEM.kml (Google Earth and
phone apps), STEM.csv (lat/lon list), STEM.preview.jpg (plots outlined and numbered) and STEM.summary.json
(what ran, on what, how long). An orthomosaic more than 3x coarser than the model's ground resolution (e.g. 50
cm/px against 3 cm/px) is refused rather than upsampled: export it finer, or pass --allow-gsd-mismatch.

Examples:
    # one orthomosaic, the shipped model, all outputs in results/
    python infer.py odm_orthophoto.tif --out results/

    # every raster in a folder, on the GPU, precision first (fewest empty fields), plots of 2 m2 and more
    python infer.py flights/2025-04-18/ --out results/ --device cuda --sensitivity low --min-area-m2 2

    # only what the field team needs on their phones, replacing an earlier run
    python infer.py site3.tif --out results/ --formats kml,csv --overwrite

    # a retrained model with test-time augmentation (four passes: slower, a little steadier)
    python infer.py site3.tif --out results/ --weights runs/exp1/best.pt --tta
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (default 8)")
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--allow-gsd-mismatch",
        action="store_true",
        help="run on orthomosaics more than 3x coarser than the model's GSD (refused by default: the model "
        "would see blurred, upsampled pixels)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars; only the one-line result per input")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Run detection for every input; returns the exit code (0 ok, 2 for a problem the user can fix)."""
    # Heavy imports here, so `--help` and argument errors answer at once.
    from detect.export import parse_formats
    from detect.pipeline import RunOptions, find_inputs, prepare, run_one
    from detect.predict import resolve_device
    from models.checkpoint import default_weights_path, load_checkpoint, load_judge

    try:
        device = resolve_device(args.device)
        options = RunOptions(
            out_dir=args.out,
            threshold=args.threshold,
            sensitivity=args.sensitivity,
            min_area_m2=args.min_area_m2,
            device=str(device),
            batch_size=args.batch_size,
            tile=args.tile,
            overlap=args.overlap,
            tta=args.tta,
            formats=parse_formats(args.formats),
            overwrite=args.overwrite,
            progress=not args.quiet,
            allow_gsd_mismatch=args.allow_gsd_mismatch,
        )
        inputs = find_inputs(args.inputs)
        model, spec = load_checkpoint(args.weights, map_location=device)
        judge = load_judge(args.weights, map_location=device)
        plans = prepare(inputs, options, spec, warn=lambda m: print("warning: " + m, file=sys.stderr))
        weights = args.weights if args.weights is not None else default_weights_path()
        if not args.quiet:
            print(
                f"model {spec.name} ({spec.arch}, {spec.gsd_m * 100:g} cm/px, sha256 {spec.sha256[:12]}) on {device}; "
                f"{len(inputs)} input(s)",
                file=sys.stderr,
            )
        for path in inputs:
            if not args.quiet and len(inputs) > 1:
                print(f"[{inputs.index(path) + 1}/{len(inputs)}] {path}", file=sys.stderr)
            result = run_one(path, model, spec, options, weights_path=weights, paths=plans[path], judge=judge)
            print(result.line())
    except PoppyError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; outputs written so far are complete, the one in progress was discarded",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
