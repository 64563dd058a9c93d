"""Train (or fine-tune) a poppy detector on labelled orthomosaics, validating on whole held-out orthomosaics.

The data folder holds NAME.tif orthomosaics with NAME.geojson (or .gpkg/.shp) poppy polygons, an optional
NAME.aoi.geojson (where labelling is complete) and an optional NAME.json sidecar (stage, GSD). A --reviewed folder
holds NAME.tif beside infer.py's NAME.gpkg (or .geojson) with analysts' verdicts in its review field. Training reads
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

    # randomised synthetic scenes from one appearance half, validated on scenes drawn from the other half
    python train.py --synthetic 400 --synthetic-val 40 --synthetic-randomise 2 --synthetic-appearance train \\
        --out runs/dr

    # a quarter of the chips centred on the model's own false alarms on the training scenes, found again every
    # 2 epochs (hard-negative mining: what cuts false alarms on your local crops when fine-tuning)
    python train.py --data data/labelled --init default --hard-negatives 0.25 --mine-every 2 --out runs/hn

    # analysts' verdicts: infer.py's STEM.gpkg with a review field (confirmed/rejected/added) beside STEM.tif
    python train.py --reviewed results/ --init default --out runs/reviewed --unreviewed-as ignore

    # continue an interrupted run exactly where its last finished epoch left it
    python train.py --out runs/county-2025 --resume

    # pretrain on the land cover of a public aerial data set on disk, then fine-tune on poppy from it
    python train.py --pretrain agriculture-vision:/data/Agriculture-Vision-2021 --out runs/pre-av --epochs 10
    python train.py --data data/labelled --synthetic 200 --init runs/pre-av/best.pt --out runs/poppy-av

    # a fifth of the chips poppy-free public farmland (labelled 0 where valid, ignored elsewhere)
    python train.py --data data/labelled --negatives loveda-rural:/data/LoveDA --negative-share 0.2 --out runs/neg

    # the second stage for a first-stage model: a plot judge trained on its proposals, calibrated on validation
    python train.py --judge runs/stage1/best.pt --data data/labelled --out runs/judge --epochs 6 \
        --chips-per-epoch 1500 --batch-size 32 --lr 2e-3

Outputs in --out: best.pt (the checkpoint for infer.py --weights), last.pt (with the optimiser state, for
--resume), log.csv (one row per epoch), metrics.json (validation of the best and last epochs), split.json
(which orthomosaics trained and which validated), settings.json, val/NAME.prob.tif (last validation's
probabilities). A --pretrain run writes the same files, with per-class IoU on fixed validation chips in place
of plot metrics (best.pt is the best mean IoU) and no val/ rasters. A --judge run writes two_stage.pt (the first
stage unchanged, plus the judge with its calibration and operating points: give it to infer.py --weights),
judge_report.txt and judge_report.json (precision-recall curve, reliability table), split.json, settings.json.

Public data sets (NAME[@GSD]:PATH, read in their publishers' layout, never downloaded): agriculture-vision,
loveda, loveda-rural, loveda-urban, landcover.ai, synthetic-landcover; see datasets/public/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from core.errors import InputError, PoppyError
from training.config import TrainConfig

DEFAULTS: dict[str, Any] = TrainConfig.defaults()  # for the --help texts; the defaults live in training/config.py


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
    p.add_argument(
        "--reviewed",
        help="folder of NAME.tif + NAME.gpkg (or .geojson): infer.py's output with analysts' verdicts in a review "
        "field: confirmed/added plots are poppy, rejected plots hard negatives, unreviewed plots ignored",
    )
    p.add_argument(
        "--unreviewed-as",
        choices=("ignore", "negative"),
        help="what --reviewed ground away from any reviewed plot teaches: ignore (default: only the reviewed plots "
        "and a few metres around them) or negative (the rest of the orthomosaic is background)",
    )
    p.add_argument(
        "--rejected-share",
        type=float,
        metavar="SHARE",
        help=f"share of chips centred on plots analysts rejected (default {d['rejected_share']})",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME (created if missing)")
    p.add_argument("--arch", help="network: fastunet, unet_resnet18 or unet_resnet34 (default fastunet)")
    p.add_argument("--arch-args", help='network options as JSON, e.g. \'{"base_channels": 8, "depth": 3}\'')
    p.add_argument("--init", help="fine-tune from a checkpoint: a .pt path, or 'default' for the shipped model")
    p.add_argument(
        "--aux-landcover",
        action="store_true",
        default=None,
        help="train an auxiliary land-cover head (fastunet) on the generated scenes' per-pixel classes, so every "
        "pixel of a chip teaches (roof, road, each crop, look-alike flowers...); inference ignores the head",
    )
    p.add_argument(
        "--judge",
        help="train the second stage (plot judge) for this first-stage checkpoint ('default' or a .pt) on its "
        "proposals over --data/--synthetic scenes; --epochs/--chips-per-epoch/--batch-size/--lr then set the judge's "
        "training",
    )
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
    p.add_argument(
        "--synthetic-randomise",
        type=int,
        choices=(0, 1, 2),
        help="domain randomisation of generated scenes: 0 today's renderer (default), 1 wider materials and camera, "
        "2 any colour and procedural textures on every non-poppy surface",
    )
    p.add_argument(
        "--synthetic-appearance",
        choices=("all", "train", "holdout"),
        help="appearance half of generated training scenes (default all); synthetic validation scenes then use "
        "the other half, so validation measures appearance never trained on (needs --synthetic-randomise 1 or 2)",
    )
    p.add_argument(
        "--synthetic-plot-area",
        metavar="MIN,MAX",
        help="poppy plot area range of generated scenes in m2 (default 1.5,200; a MAX above 200 adds whole fields)",
    )
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
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: the cores the workers leave); 1 keeps a run steady on a busy machine",
    )
    p.add_argument("--name", help="model name written into outputs (default: the --out folder's name)")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars or per-epoch lines")
    return p.parse_args(argv)


def resolve_settings(args: argparse.Namespace) -> TrainConfig:
    """Fill defaults; on ``--resume``, take the run's recorded settings and refuse conflicting flags; check.

    A resumed run's settings are read back from its ``last.pt`` (``train_args``, what it trained with), or from
    ``settings.json`` for a checkpoint that does not record them.

    Raises:
        InputError: On a bad value, a missing run to resume, or a flag that contradicts the resumed run.
    """
    given = {k: v for k, v in vars(args).items() if k not in ("out", "resume") and v is not None}
    for key in ("data", "val_data", "reviewed", "init"):
        if key in given and not (key == "init" and given[key] == "default"):
            given[key] = str(Path(given[key]).resolve())
    for key in ("pretrain", "negatives"):
        if key in given:
            from datasets.public import normalise_spec

            given[key] = normalise_spec(given[key], f"--{key}")
    if args.resume:
        saved = _recorded_settings(args.out)
        for key, value in given.items():
            if key not in TrainConfig.RESUMABLE and saved.get(key) != value:
                raise InputError(
                    f"--{key.replace('_', '-')} {value}: the run in {args.out} used {saved.get(key)}; "
                    "drop the flag to resume, or start a new run with another --out"
                )
        # Defaults first (in from_dict): a run saved before a setting existed resumes with that setting's default.
        config = TrainConfig.from_dict({**saved, **{k: v for k, v in given.items() if k in TrainConfig.RESUMABLE}})
    else:
        if (args.out / "last.pt").exists():
            raise InputError(f"{args.out} already holds a run; pass --resume to continue it, or choose another --out")
        config = TrainConfig.from_dict(given)
    config.check(given)
    if config.synthetic or config.synthetic_val:
        from training.trainer import synthetic_options

        synthetic_options(config)  # refuses a bad level, half or plot-area range, naming the --synthetic-* flag
    if config.init is None:  # a new network: fill its defaults (with --init they come from the checkpoint)
        config = config.replace(arch=config.arch or "fastunet", arch_args=config.arch_args or "{}")
    return config.replace(name=config.name or args.out.resolve().name)


def _recorded_settings(out: Path) -> dict[str, Any]:
    """The settings a run in ``out`` recorded: its ``last.pt``'s ``train_args``, else its ``settings.json``."""
    settings_path = out / "settings.json"
    if not (out / "last.pt").is_file() or not settings_path.is_file():
        raise InputError(f"--resume: {out} holds no run to resume (no last.pt); drop --resume to start one")
    from models.checkpoint import read_train_args  # torch: only when resuming

    return read_train_args(out / "last.pt") or json.loads(settings_path.read_text())


def main(args: argparse.Namespace) -> int:
    """Train; returns the exit code (0 done, 2 for a problem the user can fix, 130 when interrupted)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        out: Path = args.out.resolve()  # split.json records absolute paths: a resume may start elsewhere
        s = resolve_settings(args)
        if s.pretrain is None:
            from datasets.training_folder import check_training_folder

            reviewed = ("--reviewed", s.reviewed, s.unreviewed_as)
            for flag, folder, unreviewed_as in (("--data", s.data, None), ("--val-data", s.val_data, None), reviewed):
                if folder is not None:  # every pair read now: a bad label file stops the run before any epoch
                    for note in check_training_folder(folder, flag, unreviewed_as=unreviewed_as):
                        print("warning: " + note, file=sys.stderr)
        # Imported only now (torch and the data stack), so --help and argument errors answer at once.
        from training.trainer import pretrain, train_judge_run, train_poppy

        if s.judge is not None:
            train_judge_run(s, out)
        else:
            (pretrain if s.pretrain is not None else train_poppy)(s, out, args.resume)
        return 0
    except PoppyError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python train.py --out {args.out} --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(parse_args()))
