"""Check that infer.py reproduces train.py's validation: same scenes, same model, same plot-level numbers.

Takes a finished training run, runs ``infer.py`` (its ``main``) with the run's ``best.pt`` on every validation
orthomosaic listed in the run's ``split.json``, then scores the GeoPackages it wrote against the labels with the
same matching rules training uses (``training.evaluate.evaluate_plot_files``), and prints both sets of numbers side
by side with the ratio infer/train for each.

    .venv/bin/python bench/infer_vs_train.py runs/default
    .venv/bin/python bench/infer_vs_train.py runs/default --out /tmp/ivt --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import infer
from datasets.labelled import LabelledScene
from models.checkpoint import load_checkpoint
from training.evaluate import evaluate_plot_files

KEYS = ("plot_precision", "plot_recall", "plot_f1", "pixel_iou", "fp_m2_per_ha", "labels", "found", "preds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="training run folder (has best.pt, split.json, metrics.json)")
    p.add_argument("--out", type=Path, default=None, help="where infer.py writes (default: a temporary folder)")
    p.add_argument("--device", default="cpu", help="device for infer.py (default cpu)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    settings = json.loads((args.run / "settings.json").read_text())
    split = json.loads((args.run / "split.json").read_text())
    metrics = json.loads((args.run / "metrics.json").read_text())
    _, spec = load_checkpoint(args.run / "best.pt")
    out = args.out or Path(tempfile.mkdtemp(prefix="infer_vs_train."))
    val = [Path(p) for p in split["val"]]
    t0 = time.perf_counter()
    argv = [
        *map(str, val),
        "--out",
        str(out),
        "--weights",
        str(args.run / "best.pt"),
        "--formats",
        "gpkg",
        "--min-area-m2",
        str(settings["min_area_m2"]),
        "--device",
        args.device,
        "--overwrite",
        "--quiet",
    ]
    if settings.get("val_tile"):
        argv += ["--tile", str(settings["val_tile"])]
    code = infer.main(infer.parse_args(argv))
    if code != 0:
        return code
    seconds = time.perf_counter() - t0
    pairs = [(LabelledScene.from_raster(p), out / f"{p.stem}.gpkg") for p in val]
    report = evaluate_plot_files(pairs, gsd_m=spec.gsd_m, threshold=spec.threshold)
    ours = report.to_dict()["chosen"]
    theirs = metrics["best"]["chosen"]
    print(
        f"run {args.run} (best epoch {metrics['best_epoch']}), {len(val)} validation orthomosaics, "
        f"threshold {spec.threshold}; infer.py took {seconds:.1f} s"
    )
    print(f"{'metric':<16}{'train.py':>12}{'infer.py':>12}{'ratio':>8}")
    for k in KEYS:
        a, b = theirs.get(k), ours.get(k)
        ratio = f"{b / a:.4f}" if isinstance(a, int | float) and isinstance(b, int | float) and a else "-"
        fa = f"{a:.4f}" if isinstance(a, float) else str(a)
        fb = f"{b:.4f}" if isinstance(b, float) else str(b)
        print(f"{k:<16}{fa:>12}{fb:>12}{ratio:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
