"""The review loop, end to end: detect, review as an analyst would, fine-tune on the verdicts, measure before/after.

1. Render review scenes and held-out scenes of the same kind (the generator with domain randomisation, so every
   scene is full of look-alikes: corn and ornamental poppies, flowering weeds, red roofs, tarps, films), with
   different seeds; the held-out ones are never trained on.
2. Run ``infer.py`` with the shipped model (its default settings) over the review scenes: ``STEM.gpkg`` per scene.
3. Review each output as an analyst would, scripted from the ground truth by the rule validation uses
   (:func:`training.matching.match_each`): a true detection gets ``review = confirmed`` and its outline is fixed
   to the plot(s) it hits, a false alarm gets ``rejected``, and every plot it missed is drawn as a new feature
   (no ``plot_id``) with ``review = added``.
   The reviewed GeoPackage goes beside a link to its orthomosaic in ``WORK/reviewed/``.
4. ``train.py --reviewed WORK/reviewed --init default`` (validation: whole reviewed scenes held out by train.py,
   never the held-out scenes).
5. Score the shipped and the fine-tuned model on the held-out scenes through the inference path, at fixed
   thresholds and at each model's own ``--sensitivity`` operating points: plot recall, precision and false-alarm
   area per hectare.

Steps already done in ``--work`` are reused (delete the folder to start over). The table and the exact
commands go to ``WORK/review_loop.md`` and ``WORK/review_loop.json``.

    nice -n 10 .venv/bin/python bench/review_loop.py --work runs/review_loop
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
TABLE_THRESHOLDS = (0.2, 0.5, 0.8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/review_loop"), help="working folder (steps are reused)")
    p.add_argument("--review", type=int, default=8, help="review scenes (default 8)")
    p.add_argument("--heldout", type=int, default=6, help="held-out scenes (default 6)")
    p.add_argument("--size", type=int, default=1024, help="scene side in px (default 1024)")
    p.add_argument("--gsd", type=float, default=0.03, help="scene GSD in metres (default 0.03, the model's)")
    p.add_argument("--randomise", type=int, default=1, help="generator randomisation level (default 1: look-alikes)")
    p.add_argument("--review-seed", type=int, default=15001, help="seed of the review scenes")
    p.add_argument("--heldout-seed", type=int, default=15501, help="seed of the held-out scenes")
    p.add_argument("--unreviewed-as", default="ignore", choices=("ignore", "negative"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--chips-per-epoch", type=int, default=320)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train-seed", type=int, default=5)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def run(cmd: list[str], log: list[str]) -> None:
    """Run a command from the repository root, echo it and keep it for the record."""
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    log.append(line)
    subprocess.run(cmd, cwd=ROOT, check=True)


def render(folder: Path, count: int, seed: int, a: argparse.Namespace) -> None:
    """Render ``count`` scenes once into ``folder`` (reused when complete)."""
    from datasets.synthetic import generate

    done = folder / "complete.json"
    if done.is_file():
        return
    options = {"randomise": a.randomise}
    generate(folder, count, seed, size=a.size, gsd_m=a.gsd, poppy_prob=1.0, options=options)
    done.write_text(json.dumps({"count": count, "seed": seed, "size": a.size, "gsd_m": a.gsd, "options": options}))


def review(raster: Path, detections: Path, truth: Path, out: Path) -> dict[str, int]:
    """The scripted analyst: confirm true detections, reject false alarms, draw missed plots as ``added``.

    Returns:
        Counts: ``confirmed``, ``rejected``, ``added``.
    """
    import pyogrio.raw
    import shapely

    from datasets.labels import read_labels
    from detect.raster import inspect_raster, open_raster
    from training.matching import area_m2, lonlat_transformer, match_each

    with open_raster(raster) as ds:
        crs = inspect_raster(ds).crs
    truth_set = read_labels(truth, crs)
    meta, _, wkb, fields = pyogrio.raw.read(detections, layer="plots")
    preds = [shapely.from_wkb(g) for g in wkb]
    to_ll = lonlat_transformer(crs)
    areas = np.array([area_m2(g, to_ll) for g in truth_set.geometries], dtype=float)
    found, is_true, _ = match_each(truth_set.geometries, areas, preds, to_ll)
    # infer.py writes an empty review field: the verdicts replace it.
    keep = [i for i, f in enumerate(meta["fields"]) if str(f).lower() != "review"]
    names, fields = [str(meta["fields"][i]) for i in keep], [fields[i] for i in keep]
    missed = [g for g, f in zip(truth_set.geometries, found, strict=True) if not f]
    # The analyst confirms a true detection and, in QGIS's vertex tool, fixes its outline to the plot on the image:
    # inside a confirmed outline is poppy and around it background, so the model's outline (often a part of the
    # plot, or the plot and its neighbours) would teach wrong pixels.
    tree = shapely.STRtree(truth_set.geometries)
    outlines = [
        shapely.union_all([truth_set.geometries[int(i)] for i in tree.query(g, predicate="intersects")]) if t else g
        for g, t in zip(preds, is_true, strict=True)
    ]
    geoms = np.array([shapely.to_wkb(g) for g in [*outlines, *missed]], dtype=object)
    columns = [np.concatenate([col, np.full(len(missed), None, dtype=col.dtype)]) if col.dtype == object
               else np.concatenate([col, np.full(len(missed), np.nan)]) for col in fields]  # fmt: skip
    verdicts = ["confirmed" if t else "rejected" for t in is_true] + ["added"] * len(missed)
    pyogrio.raw.write(
        str(out), geoms, [*columns, np.array(verdicts, dtype=object)], [*names, "review"], layer="plots",
        driver="GPKG", geometry_type="Polygon", crs=crs.to_wkt(),
    )  # fmt: skip
    return {"confirmed": int(is_true.sum()), "rejected": int((~is_true).sum()), "added": len(missed)}


def score(weights: str, heldout: Path, device: str) -> dict[str, Any]:
    """Score a model on the held-out scenes at every threshold of the sweep; rows and operating points."""
    from datasets.labelled import scenes_from_folder
    from detect.judge import resolve_operating_point
    from models.checkpoint import load_checkpoint
    from training.evaluate import evaluate_scenes
    from training.report import DEFAULT_THRESHOLDS

    model, spec = load_checkpoint(weights)
    with tempfile.TemporaryDirectory() as work:
        report = evaluate_scenes(
            model, spec, scenes_from_folder(heldout), thresholds=DEFAULT_THRESHOLDS, device=device, work_dir=work
        )
    rows = {round(float(r["threshold"]), 2): r for r in report.to_dict()["thresholds"]}
    points = {s: round(resolve_operating_point(spec, None, s).threshold, 2) for s in ("high", "balanced", "low")}
    return {"rows": rows, "points": points}


def row_text(label: str, threshold: float, r: dict[str, Any]) -> str:
    """One table row (a value the sweep left undefined, e.g. precision without any plot, shows as -)."""

    def f(v: Any, digits: int = 2) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    return (
        f"| {label} | {threshold:.2f} | {f(r['plot_recall'])} ({r['found']}/{r['labels']}) | "
        f"{f(r['plot_precision'])} ({r['true_preds']}/{r['preds']}) | {f(r['fp_m2_per_ha'], 1)} |"
    )


def main(a: argparse.Namespace) -> int:
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cmds: list[str] = []
    py = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
    t0 = time.perf_counter()
    scenes, heldout = work / "review_scenes", work / "heldout_scenes"
    render(scenes, a.review, a.review_seed, a)
    render(heldout, a.heldout, a.heldout_seed, a)
    t_render = time.perf_counter() - t0

    detected = work / "detected"
    if not (detected / "done").is_file():
        run([py, "infer.py", str(scenes), "--out", str(detected), "--formats", "gpkg", "--device", a.device,
             "--quiet", "--overwrite"], cmds)  # fmt: skip
        (detected / "done").write_text("")
    reviewed = work / "reviewed"
    reviewed.mkdir(exist_ok=True)
    counts = {"confirmed": 0, "rejected": 0, "added": 0}
    for raster in sorted(scenes.glob("*.tif")):
        if raster.name.endswith(".landcover.tif"):
            continue
        link = reviewed / raster.name
        if not link.exists():
            os.symlink(raster, link)
        c = review(
            raster, detected / f"{raster.stem}.gpkg", raster.with_suffix(".geojson"), reviewed / f"{raster.stem}.gpkg"
        )
        counts = {k: counts[k] + c[k] for k in counts}
    print(f"review: {counts}", flush=True)

    run_dir = work / f"finetune-{a.unreviewed_as}"
    t1 = time.perf_counter()
    if not (run_dir / "best.pt").is_file():
        run([py, "train.py", "--reviewed", str(reviewed), "--unreviewed-as", a.unreviewed_as, "--init", "default",
             "--out", str(run_dir), "--epochs", str(a.epochs), "--chips-per-epoch", str(a.chips_per_epoch),
             "--batch-size", "8", "--lr", str(a.lr), "--seed", str(a.train_seed), "--workers", "0",
             "--device", a.device], cmds)  # fmt: skip
    t_train = time.perf_counter() - t1

    before = score("default", heldout, a.device)
    after = score(str(run_dir / "best.pt"), heldout, a.device)
    lines = [
        "| model | threshold | plot recall (found/plots) | plot precision (true/flagged) | false area m2/ha |",
        "|---|---|---|---|---|",
    ]
    for t in TABLE_THRESHOLDS:
        lines += [
            row_text("shipped (before)", t, before["rows"][t]),
            row_text("fine-tuned (after)", t, after["rows"][t]),
        ]
    for s in ("high", "balanced"):
        tb, ta = before["points"][s], after["points"][s]
        lines += [
            row_text(f"shipped, --sensitivity {s}", tb, before["rows"][tb]),
            row_text(f"fine-tuned, --sensitivity {s}", ta, after["rows"][ta]),
        ]
    table = "\n".join(lines)
    record = {
        "args": {k: str(v) for k, v in vars(a).items()}, "review_counts": counts, "commands": cmds,
        "seconds": {"render": t_render, "train": t_train, "total": time.perf_counter() - t0},
        "before": before, "after": after,
    }  # fmt: skip
    (work / "review_loop.json").write_text(json.dumps(record, indent=2, default=str))
    (work / "review_loop.md").write_text(table + "\n")
    print(table)
    print(f"review verdicts: {counts}; seconds: {record['seconds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
