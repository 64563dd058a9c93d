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
import math
import os
import sys
from pathlib import Path
from typing import Any

from detect.errors import InputError, PoppyError

# Settings that may differ when a run is resumed: they change how it runs, not what it learns.
RESUMABLE = ("epochs", "val_every", "device", "workers", "quiet")
POPPY_CLASSES = ("background", "poppy")
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
LOG_FIELDS = (
    "epoch", "loss", "lr", "chips_per_s", "seconds", "val_threshold", "val_plot_precision", "val_plot_recall",
    "val_plot_f1", "val_pixel_iou", "val_fp_m2_per_ha", "best",
)  # fmt: skip
PRETRAIN_LOG_FIELDS = ("epoch", "loss", "lr", "chips_per_s", "seconds", "val_miou", "val_pixel_accuracy", "best")


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


def synthetic_scenes(out: Path, kind: str, count: int, seed: int, size: int) -> list:
    """Generate ``count`` synthetic scenes once into ``OUT/synthetic/KIND-...`` (reused when already complete)."""
    from detect.evaluate import scenes_from_folder

    folder = out / "synthetic" / f"{kind}-n{count}-seed{seed}-px{size}"
    done = folder / "complete.json"
    if not done.is_file():
        try:
            from datasets.synthetic import generate
        except ImportError as exc:
            raise InputError(f"--synthetic: the scene generator is not available ({exc}); train on --data") from exc
        generate(folder, count, seed, size=size)
        done.write_text(json.dumps({"count": count, "seed": seed, "size": size}))
    return scenes_from_folder(folder)


def split_scenes(s: dict[str, Any], out: Path, resume: bool) -> tuple[list, list, str]:
    """Training and validation scenes: whole orthomosaics, recorded in ``OUT/split.json`` and reused on resume."""
    from detect.evaluate import Scene, hold_out, scenes_from_folder

    split_path = out / "split.json"
    if resume and split_path.is_file():
        split = json.loads(split_path.read_text())
        for p in split["train"] + split["val"]:
            if not Path(p).is_file():
                raise InputError(f"--resume: {p} from the run's split.json is missing; restore it to resume")
        return (
            [Scene.from_raster(p) for p in split["train"]],
            [Scene.from_raster(p) for p in split["val"]],
            split["rule"],
        )

    real = scenes_from_folder(s["data"]) if s["data"] else []
    synth = synthetic_scenes(out, "train", s["synthetic"], s["seed"], s["synthetic_size"]) if s["synthetic"] else []
    val = scenes_from_folder(s["val_data"]) if s["val_data"] else []
    synth_val = (
        synthetic_scenes(out, "val", s["synthetic_val"], s["seed"] + 1_000_003, s["synthetic_size"])
        if s["synthetic_val"]
        else []
    )
    if s["val_data"]:
        train, rule = real + synth, f"validation folder {s['val_data']}"
    elif len(real) >= 2:
        kept, held = hold_out(real, s["val_fraction"], s["seed"])
        train, val = kept + synth, held
        rule = f"held out {len(held)} of {len(real)} --data orthomosaics (seed {s['seed']})"
    elif synth_val:
        train, rule = real + synth, "synthetic validation scenes only"
    else:
        train, val = hold_out(real + synth, s["val_fraction"], s["seed"])
        rule = f"held out {len(val)} of {len(real) + len(synth)} orthomosaics (seed {s['seed']})"
    val += synth_val
    if synth_val and val != synth_val:
        rule += f", plus {len(synth_val)} synthetic"
    split = {"rule": rule, "train": [str(x.raster) for x in train], "val": [str(x.raster) for x in val]}
    split_path.write_text(json.dumps(split, indent=2))
    return train, val, rule


def build_model_and_spec(
    s: dict[str, Any], out: Path, resume: bool, classes: tuple[str, ...] = POPPY_CLASSES
) -> tuple[Any, Any]:
    """The network and its spec: resumed, fine-tuned from ``--init`` (its settings carried over), or new.

    An ``--init`` checkpoint with other classes (a ``--pretrain`` land-cover run, or the poppy model for a
    pretraining run) initialises a new network of its architecture for ``classes``: every tensor matching in name
    and shape is copied (encoder, decoder, batch-norm statistics); the head starts afresh.
    """
    import dataclasses

    from models import build_model
    from models.checkpoint import ModelSpec, load_checkpoint, load_pretrained_into

    outputs = 1 if len(classes) == 2 else len(classes)  # as ModelSpec.num_outputs: one logit for a binary model
    if resume:
        model, spec = load_checkpoint(out / "last.pt")
    elif s["init"] is not None:
        model, init = load_checkpoint(s["init"])
        arch_args = json.loads(s["arch_args"]) if s["arch_args"] is not None else init.arch_args
        if s["arch"] not in (None, init.arch) or arch_args != init.arch_args:
            raise InputError(
                f"--arch {s['arch'] or init.arch} {arch_args}: the --init checkpoint is {init.arch} "
                f"{init.arch_args}; drop --arch/--arch-args to fine-tune it, or drop --init to train a new network"
            )
        spec = dataclasses.replace(init, gsd_m=s["gsd"] or init.gsd_m, metrics={}, sha256="")
        if tuple(init.classes) != tuple(classes):
            model = build_model(init.arch, in_channels=len(init.bands), num_classes=outputs, **init.arch_args)
            report = load_pretrained_into(model, s["init"])
            spec = dataclasses.replace(spec, classes=tuple(classes), threshold=0.5)
            if not s["quiet"]:
                print(report.summary())
        s["arch"], s["arch_args"] = init.arch, json.dumps(init.arch_args)  # recorded as what was trained
    else:
        arch_args = json.loads(s["arch_args"])
        model = build_model(s["arch"], in_channels=3, num_classes=outputs, **arch_args)
        spec = ModelSpec(arch=s["arch"], arch_args=arch_args, gsd_m=s["gsd"] or 0.03, classes=tuple(classes))
    return model.train(), dataclasses.replace(spec, name=s["name"], train_args=dict(s))


def main(args: argparse.Namespace) -> int:
    """Train; returns the exit code (0 done, 2 for a problem the user can fix, 130 when interrupted)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return _train(args)
    except PoppyError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python train.py --out {args.out} --resume", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    # Heavy imports here, so --help and argument errors answer at once.
    import dataclasses

    import torch

    from datasets.chips import ChipDataset, ChipSource
    from datasets.transforms import train_augment
    from detect.evaluate import DEFAULT_THRESHOLDS, evaluate_scenes
    from detect.predict import resolve_device
    from models.checkpoint import data_hash, save_checkpoint
    from models.losses import DiceFocalLoss
    from models.training import CsvLog, seed_everything, training_state

    out: Path = args.out.resolve()  # split.json records absolute paths: a resume may start elsewhere
    s = resolve_settings(args)
    device = resolve_device(s["device"])
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - s["workers"]))
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(s["seed"])  # before the network is built: the initial weights follow the seed
    if s["pretrain"] is not None:
        return _pretrain(args, s, out, device)

    train_scenes, val_scenes, rule = split_scenes(s, out, args.resume)
    model, spec = build_model_and_spec(s, out, args.resume)
    (out / "settings.json").write_text(json.dumps(s, indent=2))
    model.to(device)
    sources = [ChipSource(x.raster, x.labels, x.aoi) for x in train_scenes]
    files = [p for x in train_scenes for p in (x.raster, x.labels, x.aoi) if p is not None]
    spec = dataclasses.replace(spec, data_hash=data_hash(files))
    dataset = ChipDataset(
        sources,
        target_gsd_m=spec.gsd_m,
        chip_size=s["chip_size"],
        chips_per_epoch=s["chips_per_epoch"],
        positive_fraction=s["positive_fraction"],
        scale_jitter=s["scale_jitter"],
        seed=s["seed"],
        transform=train_augment(),
    )
    say = (lambda *a: None) if s["quiet"] else print
    if s["negatives"] is not None:
        dataset, negatives_hash, described = with_negatives(dataset, s, spec.gsd_m)
        spec = dataclasses.replace(spec, data_hash=data_hash_of(spec.data_hash, negatives_hash))
        say(f"negatives: {s['negative_share']:.0%} of the chips from {described}")
    optimizer, scheduler, total_steps = _optimiser(model, s)
    criterion = DiceFocalLoss()
    log = CsvLog(out / "log.csv", LOG_FIELDS)
    start, best_score, best_epoch, best_metrics = _resume_state(args, out, optimizer, scheduler, total_steps, log, 2)
    say(f"{len(train_scenes)} training and {len(val_scenes)} validation orthomosaics ({rule}); device {device}")

    last_metrics = None
    for epoch in range(start + 1, s["epochs"] + 1):
        row, line = _train_epoch(model, dataset, criterion, optimizer, scheduler, device, spec, s, epoch)
        if epoch % s["val_every"] == 0 or epoch == s["epochs"]:
            report = evaluate_scenes(
                model, spec, val_scenes, thresholds=DEFAULT_THRESHOLDS, device=device, min_area_m2=s["min_area_m2"],
                tile=s["val_tile"], batch_size=s["batch_size"], work_dir=out / "val", progress=not s["quiet"],
            )  # fmt: skip
            c = report.chosen
            row.update({
                "val_threshold": report.threshold, "val_plot_precision": c["plot_precision"],
                "val_plot_recall": c["plot_recall"], "val_plot_f1": c["plot_f1"], "val_pixel_iou": c["pixel_iou"],
                "val_fp_m2_per_ha": c["fp_m2_per_ha"],
            })  # fmt: skip
            spec = dataclasses.replace(spec, threshold=report.threshold)
            last_metrics = {"epoch": epoch, **report.to_dict()}
            line += (
                f" | val @ {report.threshold:.2f}: plots P {c['plot_precision']:.2f} R {c['plot_recall']:.2f}"
                f" F1 {c['plot_f1']:.2f}, pixel IoU {c['pixel_iou']:.2f}, FP {c['fp_m2_per_ha']:.1f} m2/ha"
            )
            if report.score > best_score:
                best_score, best_epoch, best_metrics = report.score, epoch, last_metrics
                save_checkpoint(out / "best.pt", model, dataclasses.replace(spec, metrics=best_metrics))
                row["best"] = 1
                line += " (best)"
                (out / "best_table.txt").write_text(report.table(sweep=True) + "\n")
            _write_json(out / "metrics.json", {"best_epoch": best_epoch, "best": best_metrics, "last": last_metrics})
        log.append(row)
        state = training_state(
            optimizer, scheduler, epoch, best_score=list(best_score), best_epoch=best_epoch, best_metrics=best_metrics,
            total_steps=total_steps,
        )  # fmt: skip
        save_checkpoint(out / "last.pt", model, spec, extra=state)
        say(line)
    if best_metrics is not None and (out / "best_table.txt").is_file():
        say(f"best epoch {best_epoch}, saved to {out / 'best.pt'}:\n" + (out / "best_table.txt").read_text())
    return 0


def _train_epoch(
    model: Any,
    dataset: Any,
    criterion: Any,
    optimizer: Any,
    scheduler: Any,
    device: Any,
    spec: Any,
    s: dict[str, Any],
    epoch: int,
) -> tuple[dict[str, Any], str]:
    """One epoch of updates (shared by poppy training and pretraining); returns its log row and summary line."""
    import functools

    from models.checkpoint import normalise
    from models.training import epoch_loader, train_one_epoch

    dataset.set_epoch(epoch)
    loader = epoch_loader(
        dataset, s["batch_size"], workers=s["workers"], seed=s["seed"], epoch=epoch, pin_memory=device.type == "cuda"
    )
    stats = train_one_epoch(
        model, loader, criterion, optimizer, scheduler, device, functools.partial(normalise, spec=spec),
        progress=not s["quiet"], desc=f"epoch {epoch}/{s['epochs']}", total=len(loader),
    )  # fmt: skip
    row: dict[str, Any] = {
        "epoch": epoch, "loss": f"{stats.loss:.6f}", "lr": f"{stats.lr:.6g}",
        "chips_per_s": f"{stats.chips_per_s:.2f}", "seconds": f"{stats.seconds:.1f}", "best": 0,
    }  # fmt: skip
    return row, f"epoch {epoch}/{s['epochs']}: loss {stats.loss:.4f}, {stats.chips_per_s:.1f} chips/s"


def with_negatives(chips: Any, s: dict[str, Any], gsd_m: float) -> tuple[Any, str, str]:
    """Poppy chips with ``--negatives`` mixed in at ``--negative-share``: ``(dataset, fingerprint, description)``."""
    from datasets.public import MixedChipDataset, PublicChipDataset, open_public
    from datasets.transforms import train_augment

    source = open_public(s["negatives"], "--negatives")
    tiles = source.negative_tiles()
    negatives = PublicChipDataset(
        source, tiles, target_gsd_m=gsd_m, chip_size=s["chip_size"], chips_per_epoch=s["chips_per_epoch"],
        labels="negative", scale_jitter=s["scale_jitter"], seed=s["seed"], transform=train_augment(),
    )  # fmt: skip
    mixed = MixedChipDataset(chips, negatives, s["negative_share"], s["seed"])
    return mixed, source.fingerprint(tiles), source.describe()


def data_hash_of(*parts: str) -> str:
    """One SHA-256 over several data hashes (poppy scenes and public negatives)."""
    import hashlib

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _optimiser(model: Any, s: dict[str, Any]) -> tuple[Any, Any, int]:
    """AdamW and its schedule for the whole run: ``(optimizer, scheduler, total_steps)``."""
    from models.training import make_optimizer, warmup_cosine

    total_steps = s["epochs"] * math.ceil(s["chips_per_epoch"] / s["batch_size"])
    optimizer = make_optimizer(model, s["lr"], s["weight_decay"])
    # Warm-up of 5 % of the run (at most 500 steps): AdamW's first moment estimates are noisy.
    scheduler = warmup_cosine(optimizer, max(1, min(500, total_steps // 20)), total_steps)
    return optimizer, scheduler, total_steps


def _resume_state(
    args: argparse.Namespace, out: Path, optimizer: Any, scheduler: Any, total_steps: int, log: Any, n_score: int
) -> tuple[int, tuple[float, ...], int, dict | None]:
    """``(last finished epoch, best score, best epoch, best metrics)``: a new run's, or restored on ``--resume``
    (optimiser, schedule and random generators included; log rows after the last checkpoint dropped)."""
    from models.checkpoint import load_training_state
    from models.training import restore_training_state

    if not args.resume:
        return 0, (-math.inf,) * n_score, 0, None
    state = load_training_state(out / "last.pt")  # on the CPU: RNG states must stay there
    start = restore_training_state(state, optimizer, scheduler)
    if state.get("total_steps") != total_steps:
        logging.warning("--epochs changed from the resumed run: the learning-rate schedule is stretched")
    log.truncate(start)
    best_score = tuple(float(v) for v in state["best_score"])
    return start, best_score, int(state["best_epoch"]), state.get("best_metrics")


def _pretrain(args: argparse.Namespace, s: dict[str, Any], out: Path, device: Any) -> int:
    """Land-cover pretraining on a public data set (``--pretrain``): multi-class chips at the model's GSD,
    validated by per-class IoU on fixed chips of held-out tiles; ``best.pt`` then initialises a poppy run
    (``--init``)."""
    import dataclasses

    from datasets.public import PublicChipDataset, open_public, pretraining_split
    from datasets.transforms import train_augment
    from detect.evaluate import evaluate_chips
    from models.checkpoint import save_checkpoint
    from models.losses import MultiClassDiceCELoss
    from models.training import CsvLog, epoch_loader, training_state

    source = open_public(s["pretrain"], "--pretrain")
    train_tiles, val_tiles, rule = pretraining_split(source, s["val_fraction"], s["seed"])
    model, spec = build_model_and_spec(s, out, args.resume, classes=source.classes)
    if tuple(spec.classes) != source.classes:
        raise InputError(f"--resume: the run in {out} learnt other classes than {source.title} has now")
    (out / "settings.json").write_text(json.dumps(s, indent=2))
    split = {"rule": rule, "data_set": source.describe(), "train_tiles": len(train_tiles),
             "val_tiles": len(val_tiles), "val_groups": sorted({t.group for t in val_tiles})}  # fmt: skip
    (out / "split.json").write_text(json.dumps(split, indent=2))
    model.to(device)
    spec = dataclasses.replace(spec, data_hash=source.fingerprint(train_tiles))
    common = {"target_gsd_m": spec.gsd_m, "chip_size": s["chip_size"], "labels": "landcover"}
    dataset = PublicChipDataset(
        source, train_tiles, chips_per_epoch=s["chips_per_epoch"], scale_jitter=s["scale_jitter"], seed=s["seed"],
        transform=train_augment(), **common,
    )  # fmt: skip
    val_set = PublicChipDataset(source, val_tiles, chips_per_epoch=s["val_chips"], seed=s["seed"] + 1, **common)
    optimizer, scheduler, total_steps = _optimiser(model, s)
    criterion = MultiClassDiceCELoss()
    log = CsvLog(out / "log.csv", PRETRAIN_LOG_FIELDS)
    start, best_score, best_epoch, best_metrics = _resume_state(args, out, optimizer, scheduler, total_steps, log, 1)
    say = (lambda *a: None) if s["quiet"] else print
    say(f"{source.describe()}\n{len(train_tiles)} training and {len(val_tiles)} validation tiles ({rule}); "
        f"{len(spec.classes)} classes at {spec.gsd_m * 100:g} cm/px; device {device}")  # fmt: skip
    for note in dataset.warnings:
        say(note)

    last_metrics = None
    for epoch in range(start + 1, s["epochs"] + 1):
        row, line = _train_epoch(model, dataset, criterion, optimizer, scheduler, device, spec, s, epoch)
        if epoch % s["val_every"] == 0 or epoch == s["epochs"]:
            val_loader = epoch_loader(val_set, s["batch_size"], workers=s["workers"], seed=s["seed"], epoch=0)
            report = evaluate_chips(model, spec, val_loader, device)
            row.update({"val_miou": f"{report.miou:.6f}", "val_pixel_accuracy": f"{report.pixel_accuracy:.6f}"})
            last_metrics = {"epoch": epoch, **report.to_dict()}
            line += f" | val mIoU {report.miou:.3f}, pixel accuracy {report.pixel_accuracy:.3f}"
            if report.score > best_score:
                best_score, best_epoch, best_metrics = report.score, epoch, last_metrics
                save_checkpoint(out / "best.pt", model, dataclasses.replace(spec, metrics=best_metrics))
                row["best"] = 1
                line += " (best)"
                (out / "best_table.txt").write_text(report.table() + "\n")
            _write_json(out / "metrics.json", {"best_epoch": best_epoch, "best": best_metrics, "last": last_metrics})
        log.append(row)
        state = training_state(
            optimizer, scheduler, epoch, best_score=list(best_score), best_epoch=best_epoch, best_metrics=best_metrics,
            total_steps=total_steps,
        )  # fmt: skip
        save_checkpoint(out / "last.pt", model, spec, extra=state)
        say(line)
    if best_metrics is not None and (out / "best_table.txt").is_file():
        say(f"best epoch {best_epoch}, saved to {out / 'best.pt'}:\n" + (out / "best_table.txt").read_text())
    return 0


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
