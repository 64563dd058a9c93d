"""Carry a training campaign across sessions: snapshot a run's state into the repository, restore it, plot it.

A session on these machines ends at a fixed time and takes nothing uncommitted with it, so a long CPU training
run is saved into the repository every hour or so (``snapshot``, then ``git commit``) and continued in the next
session (``restore``, then ``train.py --out RUN --resume``). The snapshot holds what ``--resume`` needs besides the
data: ``last.pt`` (weights, optimiser, scheduler, RNG), ``best.pt`` (weights only), ``settings.json``,
``split.json``, ``log.csv``, ``metrics.json``, ``best_table.txt`` and ``hard_negatives.json``. The training scenes
are not stored: they are regenerated from the seeds in ``settings.json`` (the generator is deterministic), into the
same absolute paths that ``split.json`` names. It also draws the learning curve (chips seen against validation
F1 and false-positive area, with wall time) into ``learning_curve.png``.

Examples::

    python bench/campaign.py snapshot --run runs/v3s1 --to models/campaign/v3-stage1
    python bench/campaign.py restore --from models/campaign/v3-stage1 --run runs/v3s1
    python train.py --out runs/v3s1 --resume
    python bench/campaign.py plot --log models/campaign/v3-stage1/log.csv --out learning_curve.png
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STATE_FILES = (
    "last.pt",
    "best.pt",
    "settings.json",
    "split.json",
    "log.csv",
    "metrics.json",
    "best_table.txt",
    "hard_negatives.json",
)


def snapshot(run: Path, to: Path, note: str | None) -> None:
    """Copy a run's resumable state into ``to`` and draw its learning curve there."""
    if not (run / "last.pt").is_file():
        raise SystemExit(f"error: {run} holds no last.pt; give the --out folder of a train.py run")
    to.mkdir(parents=True, exist_ok=True)
    for name in STATE_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, to / name)
    rows = read_log(to / "log.csv")
    record = {
        "run": str(run.resolve()),
        "epochs_done": len(rows),
        "chips_seen": chips_seen(rows, json.loads((to / "settings.json").read_text())),
        "training_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
        "note": note,
    }
    (to / "campaign.json").write_text(json.dumps(record, indent=2) + "\n")
    if rows:
        plot(to / "log.csv", to / "learning_curve.png")
    print(f"snapshot of {run} in {to}: {record['epochs_done']} epochs, {record['chips_seen']} chips")


def restore(src: Path, run: Path) -> None:
    """Regenerate the run's synthetic scenes where its split names them, and put its state back in ``run``."""
    settings = json.loads((src / "settings.json").read_text())
    split = json.loads((src / "split.json").read_text())
    wanted = [Path(p) for p in split["train"] + split["val"]]
    from training.config import TrainConfig  # heavy imports only now
    from training.trainer import synthetic_sets

    run.mkdir(parents=True, exist_ok=True)
    synthetic_sets(TrainConfig.from_dict(settings), run.resolve())  # as train.py renders them, options included
    still = [str(p) for p in wanted if not p.is_file()]
    if still:
        raise SystemExit(f"error: {len(still)} scenes of the split are still missing, e.g. {still[0]}")
    for name in STATE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, run / name)
    print(f"restored {src} into {run}; continue with: python train.py --out {run} --resume")


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def chips_seen(rows: list[dict[str, str]], settings: dict) -> int:
    return len(rows) * int(settings["chips_per_epoch"])


def plot(log_path: Path, out: Path) -> None:
    """Learning curve: validation plot F1 and false-positive area against chips seen, wall time on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    settings_path = log_path.with_name("settings.json")
    per_epoch = int(json.loads(settings_path.read_text())["chips_per_epoch"]) if settings_path.is_file() else 1
    val = [r for r in rows if r.get("val_plot_f1") not in (None, "")]
    x = [int(r["epoch"]) * per_epoch for r in val]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(x, [float(r["val_plot_f1"]) for r in val], "o-", color="tab:blue", label="plot F1")
    ax.plot(x, [float(r["val_plot_recall"]) for r in val], "s--", color="tab:green", label="plot recall")
    ax.plot(x, [float(r["val_plot_precision"]) for r in val], "^--", color="tab:orange", label="plot precision")
    ax.set_xlabel("training chips seen")
    ax.set_ylabel("validation, at the chosen threshold")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(x, [float(r["val_fp_m2_per_ha"]) for r in val], "x:", color="tab:red", label="FP m²/ha")
    ax2.set_ylabel("false-positive area, m²/ha", color="tab:red")
    hours = sum(float(r["seconds"]) for r in rows) / 3600
    ax.set_title(f"{log_path.parent.name}: {len(rows)} epochs, {hours:.1f} h of training")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot", help="copy a run's state into the repository")
    s.add_argument("--run", type=Path, required=True)
    s.add_argument("--to", type=Path, required=True)
    s.add_argument("--note", help="a line for campaign.json")
    r = sub.add_parser("restore", help="regenerate the data and put the state back")
    r.add_argument("--from", dest="src", type=Path, required=True)
    r.add_argument("--run", type=Path, required=True)
    g = sub.add_parser("plot", help="draw the learning curve of a log.csv")
    g.add_argument("--log", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if a.cmd == "snapshot":
        snapshot(a.run, a.to, a.note)
    elif a.cmd == "restore":
        restore(a.src, a.run)
    else:
        plot(a.log, a.out)


if __name__ == "__main__":
    main()
