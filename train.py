"""Train (or fine-tune) a poppy detector on labelled orthomosaics, validating on whole held-out orthomosaics.

The data folder holds NAME.tif orthomosaics with NAME.geojson (or .gpkg/.shp) poppy polygons, an optional
NAME.aoi.geojson (where labelling is complete) and an optional NAME.json sidecar (stage, GSD). Training reads
balanced chips at the model's ground resolution; validation runs the inference path (tiled prediction, then
polygons) over whole orthomosaics never seen in training and scores plots: precision, recall, pixel IoU and
false-positive area per hectare, at every threshold from 0.05 to 0.95. The threshold reaching plot recall 0.95
with the best precision is stored in the checkpoint, so infer.py uses it by default.

Examples:
    # fine-tune the shipped model on your own flights; 20 % of the orthomosaics are held out for validation
    python train.py --data data/labelled --out runs/county-2025 --init default --epochs 20

    # from scratch on CPU, 200 synthetic scenes mixed in, validated on a separate labelled folder
    python train.py --data data/labelled --val-data data/checked --synthetic 200 --out runs/synth \\
        --arch fastunet --epochs 40 --device cpu

    # synthetic data only, with 20 synthetic validation scenes, a ResNet-34 U-Net on the GPU
    python train.py --synthetic 400 --synthetic-val 20 --out runs/r34 --arch unet_resnet34 --device cuda

    # a quarter of the chips centred on the model's own false alarms on the training scenes, found again every
    # 2 epochs (hard-negative mining: what cuts false alarms on your local crops when fine-tuning)
    python train.py --data data/labelled --init default --hard-negatives 0.25 --mine-every 2 --out runs/hn

    # continue an interrupted run exactly where its last finished epoch left it
    python train.py --out runs/county-2025 --resume

    # pretrain on the land cover of a public aerial data set on disk, then fine-tune on poppy from it
    python train.py --pretrain agriculture-vision:/data/Agriculture-Vision-2021 --out runs/pre-av --epochs 10
    python train.py --data data/labelled --synthetic 200 --init runs/pre-av/best.pt --out runs/poppy-av

    # a fifth of the chips poppy-free public farmland (labelled 0 where valid, ignored elsewhere)
    python train.py --data data/labelled --negatives loveda-rural:/data/LoveDA --negative-share 0.2 --out runs/neg

Outputs in --out: best.pt (the checkpoint for infer.py --weights), last.pt (with the optimiser state, for
--resume), log.csv (one row per epoch), metrics.json (validation of the best and last epochs), split.json
(which orthomosaics trained and which validated), settings.json, val/NAME.prob.tif (last validation's
probabilities). A --pretrain run writes the same files, with per-class IoU on fixed validation chips in place
of plot metrics (best.pt is the best mean IoU) and no val/ rasters.

Public data sets (NAME[@GSD]:PATH, read in their publishers' layout, never downloaded): agriculture-vision,
loveda, loveda-rural, loveda-urban, landcover.ai, synthetic-landcover; see datasets/public/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from core.errors import InputError, PoppyError

# Settings that may differ when a run is resumed: they change how it runs, not what it learns.
RESUMABLE = ("epochs", "val_every", "device", "workers", "quiet")
DEFAULTS: dict[str, Any] = {
    "data": None,
    "val_data": None,
    "arch": None,  # None: fastunet (the CPU-friendly network), or the --init checkpoint's
    "arch_args": None,  # None: the network's defaults, or the --init checkpoint's
    "init": None,
    "epochs": 30,
    "batch_size": 8,
    "chips_per_epoch": 2000,  # ~15 min per epoch for fastunet on a 2-core CPU at 256 px
    "chip_size": 256,  # 7.7 m at 3 cm/px: a plot and its surroundings
    "lr": 1e-3,  # AdamW peak; 1e-4 is kinder to --init weights
    "weight_decay": 1e-2,
    "gsd": None,  # None: 0.03 m, or the --init checkpoint's
    "positive_fraction": 0.5,  # half the chips centred on plots: poppy is a fraction of a percent of a survey
    "scale_jitter": 0.25,  # chips read at GSD x U(0.75, 1.25): flights at 60-100 m look alike to the model
    "synthetic": 0,
    "synthetic_val": 0,
    "synthetic_size": 1024,  # px per synthetic scene side: 30 m at 3 cm, room for several plots
    "pretrain": None,  # NAME:PATH of a public data set: land-cover pretraining instead of poppy training
    "negatives": None,  # NAME:PATH of a public data set whose valid pixels are mixed in as poppy-free chips
    "negative_share": 0.2,  # a fifth of the chips real farmland without poppy; the rest keep the plot balance
    "hard_negatives": 0.0,  # share of chips centred on the model's false alarms on the training scenes (0: off)
    "mine_every": 2,  # epochs between minings: each is one inference pass over every training scene
    "val_chips": 200,  # fixed validation chips of a --pretrain run: ~7 ha at 256 px and 3 cm, seconds on a CPU
    "val_fraction": 0.2,
    "val_every": 1,
    "val_tile": None,  # None: the model's tile size
    "min_area_m2": 1.0,  # as infer.py's default, so validation scores what users get
    "device": "auto",
    "seed": 0,
    "workers": min(4, max(0, (os.cpu_count() or 1) - 1)),
    "name": None,
    "quiet": False,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``); unset flags stay None (see DEFAULTS)."""
    p = argparse.ArgumentParser(
        prog="train.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = DEFAULTS
    p.add_argument("--data", help="folder of NAME.tif + NAME.geojson training orthomosaics")
    p.add_argument("--val-data", help="folder of validation orthomosaics (default: hold out whole ones of --data)")
    p.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME (created if missing)")
    p.add_argument("--arch", help="network: fastunet, unet_resnet18 or unet_resnet34 (default fastunet)")
    p.add_argument("--arch-args", help='network options as JSON, e.g. \'{"base_channels": 8, "depth": 3}\'')
    p.add_argument("--init", help="fine-tune from a checkpoint: a .pt path, or 'default' for the shipped model")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly (same data and settings)")
    p.add_argument("--epochs", type=int, help=f"epochs in total (default {d['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"chips per step (default {d['batch_size']})")
    p.add_argument("--chips-per-epoch", type=int, help=f"chips drawn per epoch (default {d['chips_per_epoch']})")
    p.add_argument("--chip-size", type=int, help=f"chip side in model pixels (default {d['chip_size']})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d['lr']})")
    p.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {d['weight_decay']})")
    p.add_argument("--gsd", type=float, help="model ground resolution in metres/pixel (default 0.03, or --init's)")
    p.add_argument("--positive-fraction", type=float, help="share of chips centred on plots (default 0.5)")
    p.add_argument("--synthetic", type=int, help="generate N synthetic training scenes into OUT/synthetic/")
    p.add_argument("--synthetic-val", type=int, help="generate N synthetic validation scenes")
    p.add_argument("--synthetic-size", type=int, help=f"synthetic scene side in px (default {d['synthetic_size']})")
    p.add_argument("--pretrain", help="pretrain on land cover of a public data set, NAME[@GSD]:PATH (see below)")
    p.add_argument("--negatives", help="mix in poppy-free chips of a public data set, NAME[@GSD]:PATH")
    p.add_argument("--negative-share", type=float, help="share of chips from --negatives (default 0.2)")
    p.add_argument(
        "--hard-negatives",
        type=float,
        metavar="SHARE",
        help="share of chips centred on the model's false alarms on the training scenes (default 0: off)",
    )
    p.add_argument("--mine-every", type=int, metavar="N", help="find false alarms again every N epochs (default 2)")
    p.add_argument("--val-chips", type=int, help=f"validation chips of a --pretrain run (default {d['val_chips']})")
    p.add_argument("--val-fraction", type=float, help="share of --data orthomosaics held out (default 0.2)")
    p.add_argument("--val-every", type=int, help="validate every N epochs (default 1; the last epoch always)")
    p.add_argument("--val-tile", type=int, help="validation tile size in model pixels (default: the model's)")
    p.add_argument("--min-area-m2", type=float, help="smallest plot counted in validation (default 1.0)")
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, help="seed for the split, the chips and the initial weights (default 0)")
    p.add_argument("--workers", type=int, help=f"DataLoader worker processes (default {d['workers']})")
    p.add_argument("--name", help="model name written into outputs (default: the --out folder's name)")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars or per-epoch lines")
    return p.parse_args(argv)


def resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Fill defaults; on ``--resume``, take the run's saved settings and refuse conflicting flags.

    Raises:
        InputError: On a bad value, a missing run to resume, or a flag that contradicts the resumed run.
    """
    given = {k: v for k, v in vars(args).items() if k not in ("out", "resume") and v is not None}
    for key in ("data", "val_data", "init"):
        if key in given and not (key == "init" and given[key] == "default"):
            given[key] = str(Path(given[key]).resolve())
    for key in ("pretrain", "negatives"):
        if key in given:
            from datasets.public import normalise_spec

            given[key] = normalise_spec(given[key], f"--{key}")
    settings_path = args.out / "settings.json"
    if args.resume:
        if not (args.out / "last.pt").is_file() or not settings_path.is_file():
            raise InputError(f"--resume: {args.out} holds no run to resume (no last.pt); drop --resume to start one")
        saved = json.loads(settings_path.read_text())
        for key, value in given.items():
            if key not in RESUMABLE and saved.get(key) != value:
                raise InputError(
                    f"--{key.replace('_', '-')} {value}: the run in {args.out} used {saved.get(key)}; "
                    "drop the flag to resume, or start a new run with another --out"
                )
        # Defaults first: a run saved before a setting existed resumes with that setting's default.
        settings = {**DEFAULTS, **saved, **{k: v for k, v in given.items() if k in RESUMABLE}}
    else:
        if (args.out / "last.pt").exists():
            raise InputError(f"{args.out} already holds a run; pass --resume to continue it, or choose another --out")
        settings = {**DEFAULTS, **given}
    s = settings
    checks = [
        (s["epochs"] >= 1, f"--epochs {s['epochs']}: must be at least 1"),
        (s["batch_size"] >= 1, f"--batch-size {s['batch_size']}: must be at least 1"),
        (s["chips_per_epoch"] >= 1, f"--chips-per-epoch {s['chips_per_epoch']}: must be at least 1"),
        (s["lr"] > 0, f"--lr {s['lr']}: must be positive (e.g. 1e-3)"),
        (s["weight_decay"] >= 0, f"--weight-decay {s['weight_decay']}: must be 0 or more"),
        (s["gsd"] is None or 0.001 <= s["gsd"] <= 1.0, f"--gsd {s['gsd']}: give metres per pixel, e.g. 0.03"),
        (s["synthetic"] >= 0 and s["synthetic_val"] >= 0, "--synthetic/--synthetic-val: must be 0 or more"),
        (s["synthetic_size"] >= 64, f"--synthetic-size {s['synthetic_size']}: must be at least 64 px"),
        (s["val_every"] >= 1, f"--val-every {s['val_every']}: must be at least 1"),
        (s["workers"] >= 0, f"--workers {s['workers']}: must be 0 or more"),
        (s["min_area_m2"] >= 0, f"--min-area-m2 {s['min_area_m2']}: must be 0 or more"),
        (0 < s["negative_share"] < 1, f"--negative-share {s['negative_share']}: must be between 0 and 1 (e.g. 0.2)"),
        (s["val_chips"] >= 1, f"--val-chips {s['val_chips']}: must be at least 1"),
        (
            0 <= s["hard_negatives"] < 1 and s["positive_fraction"] + s["hard_negatives"] <= 1,
            f"--hard-negatives {s['hard_negatives']}: must be 0 or more, and with --positive-fraction "
            f"{s['positive_fraction']} at most 1 in all (e.g. 0.25)",
        ),
        (s["mine_every"] >= 1, f"--mine-every {s['mine_every']}: must be at least 1"),
        (
            s["hard_negatives"] == 0 or s["pretrain"] is None,
            "--hard-negatives applies to poppy training, not to --pretrain",
        ),
        ("negative_share" not in given or s["negatives"] is not None, "--negative-share needs --negatives NAME:PATH"),
        ("val_chips" not in given or s["pretrain"] is not None, "--val-chips applies to --pretrain runs only"),
        (
            s["pretrain"] is None
            or not any(s[k] for k in ("data", "val_data", "synthetic", "synthetic_val", "negatives")),
            "--pretrain trains land cover on the public data set alone; drop --data/--val-data/--synthetic/"
            "--negatives, then fine-tune on poppy with --init OUT/best.pt",
        ),
        (
            s["data"] is not None or s["synthetic"] > 0 or s["pretrain"] is not None,
            "give --data DIR (labelled orthomosaics), --synthetic N or --pretrain DATASET:PATH",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    if s["arch_args"] is not None:
        try:
            arch_args = json.loads(s["arch_args"])
        except json.JSONDecodeError as exc:
            raise InputError(f"--arch-args {s['arch_args']!r}: not JSON ({exc.msg}); e.g. '{{\"depth\": 3}}'") from exc
        if not isinstance(arch_args, dict):
            raise InputError(f"--arch-args {s['arch_args']!r}: give a JSON object, e.g. '{{\"depth\": 3}}'")
    if s["init"] is None:  # a new network: fill its defaults (with --init they come from the checkpoint)
        s["arch"] = s["arch"] or "fastunet"
        s["arch_args"] = s["arch_args"] or "{}"
    s["name"] = s["name"] or args.out.resolve().name
    return s


def main(args: argparse.Namespace) -> int:
    """Train; returns the exit code (0 done, 2 for a problem the user can fix, 130 when interrupted)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        out: Path = args.out.resolve()  # split.json records absolute paths: a resume may start elsewhere
        s = resolve_settings(args)
        if s["pretrain"] is None:
            from datasets.training_folder import check_training_folder

            for flag, key in (("--data", "data"), ("--val-data", "val_data")):
                if s[key] is not None:  # every pair read now: a bad label file stops the run before any epoch
                    for note in check_training_folder(s[key], flag):
                        print("warning: " + note, file=sys.stderr)
        # Imported only now (torch and the data stack), so --help and argument errors answer at once.
        from training.trainer import pretrain, train_poppy

        (pretrain if s["pretrain"] is not None else train_poppy)(s, out, args.resume)
        return 0
    except PoppyError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python train.py --out {args.out} --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(parse_args()))
