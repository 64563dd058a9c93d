"""Train a second-stage judge for a first-stage checkpoint and write the two-stage checkpoint.

An experiment driver over :func:`training.judge.train_judge` on folders (``train.py --judge`` is the same for users,
on train.py's scene split).
It reads labelled orthomosaics from folders (``NAME.tif`` + ``NAME.geojson``), runs the first stage over them,
trains the judge on its proposals and the labels, calibrates it on the validation folder, and writes
``OUT/two_stage.pt`` (the first stage unchanged, plus the judge), ``OUT/judge_report.txt``,
``OUT/judge_report.json`` and ``OUT/reliability.png``.

Example::

    python bench/train_judge.py --stage1 default --train runs/v3s1/synthetic/train-n60-seed3101-px2048 \\
        --val runs/v3s1/synthetic/val-n12-seed1003104-px2048 --limit-train 30 --out runs/judge-v2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reliability_png(table: list[dict], out: Path, title: str) -> None:
    """The reliability diagram: mean calibrated score against the share of true plots, per score bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table if r["n"]]
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=100)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot([r["mean_score"] for r in rows], [r["share_true"] for r in rows], "o-", label="judge")
    for r in rows:
        ax.annotate(
            str(r["n"]), (r["mean_score"], r["share_true"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
        )
    ax.set_xlabel("mean calibrated score in bin")
    ax.set_ylabel("share of plots that are poppy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage1", default="default", help="first-stage checkpoint (or 'default')")
    p.add_argument("--train", type=Path, required=True, help="folder of labelled training orthomosaics")
    p.add_argument("--val", type=Path, required=True, help="folder of labelled validation orthomosaics")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N training orthomosaics")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--chips-per-epoch", type=int, default=1500)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import torch

    from datasets.chips import ChipSource
    from models.checkpoint import load_checkpoint, save_checkpoint
    from training.judge import train_judge, write_judge_report

    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stage1, spec1 = load_checkpoint(a.stage1)
    train = sorted(a.train.glob("*.tif"))
    train = [t for t in train if not t.name.endswith((".prob.tif", ".landcover.tif"))]
    if a.limit_train:
        train = train[: a.limit_train]
    val = sorted(t for t in a.val.glob("*.tif") if not t.name.endswith((".prob.tif", ".landcover.tif")))
    judge, jspec, report = train_judge(
        [ChipSource(t) for t in train], [ChipSource(v) for v in val], stage1, spec1,
        epochs=a.epochs, chips_per_epoch=a.chips_per_epoch, lr=a.lr, seed=a.seed,
        say=lambda s: print(s, flush=True),
    )  # fmt: skip
    save_checkpoint(a.out / "two_stage.pt", stage1, spec1, judge=(judge, jspec))
    write_judge_report(
        a.out, report, stage1=str(a.stage1), train=[str(t) for t in train], val=[str(v) for v in val],
        seconds=time.perf_counter() - t0,
    )  # fmt: skip
    text = report.table()
    reliability_png(report.reliability, a.out / "reliability.png", f"judge on {a.stage1}: validation candidates")
    print(text)
    print(f"wrote {a.out / 'two_stage.pt'} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
