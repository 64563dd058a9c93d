"""Table of the pretraining stand-in (``bench/pretrain_stand_in.sh``): pretrained vs scratch, per labelled scenes.

    .venv/bin/python bench/pretrain_stand_in_table.py runs/exp6 2 4 8 16

Reads ``RUN/test.json`` (``bench/evaluate_model.py`` on the held-out scenes) and ``RUN/metrics.json`` (the run's
own validation) of every ``run_{pre,scratch}_kK`` and prints one row per run, with the poppy-free scenes' false
positive area from the per-stage breakdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def row(run: Path) -> str | None:
    """One Markdown table row for a run folder, or None when its test score is missing."""
    test_file = run / "test.json"
    if not test_file.is_file():
        return None
    test = json.loads(test_file.read_text())["fixed"]
    val = json.loads((run / "metrics.json").read_text())["best"]["chosen"]
    c = test["chosen"]
    stages = {g["group"]: g for g in test["by_stage"]}
    none = stages.get("none", {}).get("fp_m2_per_ha")
    recall = " / ".join(
        f"{stages[s]['found']}/{stages[s]['labels']}" if s in stages else "-"
        for s in ("flowering", "vegetative", "capsule")
    )
    seconds = (run / "seconds.txt").read_text().strip() if (run / "seconds.txt").is_file() else "-"
    return (
        f"| {run.name} | {_fmt(val['plot_recall'])} / {_fmt(val['plot_precision'])} | {test['threshold']:.2f} "
        f"| {c['found']}/{c['labels']} ({_fmt(c['plot_recall'])}) | {recall} "
        f"| {c['true_preds']}/{c['preds']} ({_fmt(c['plot_precision'])}) | {_fmt(c['plot_f1'])} "
        f"| {_fmt(c['pixel_iou'])} | {_fmt(c['fp_m2_per_ha'], 0)} | {_fmt(none, 0)} | {seconds} |"
    )


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    print(
        "| run | val recall / precision | threshold | test plots found (recall) | flowering / vegetative / capsule "
        "| test true/preds (precision) | F1 | pixel IoU | FP m2/ha all | FP m2/ha poppy-free | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in argv[1:]:
        for arm in ("pre", "scratch"):
            line = row(root / f"run_{arm}_k{k}")
            if line is not None:
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
