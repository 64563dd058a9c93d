"""Training runs: the set-up of a poppy run and of a land-cover pretraining run, and the epoch loop they share.

``train.py`` parses and checks the arguments into a :class:`training.config.TrainConfig` and calls
:func:`train_poppy` or :func:`pretrain`. Each builds its data, network, loss and validation, then hands them to
:func:`fit`, which owns everything the two kinds of run have in common: one epoch of updates, validation every
``val_every`` epochs, keeping the best checkpoint by a score tuple, and the files a run leaves in its folder.

A run folder holds ``best.pt`` (the best validation), ``last.pt`` (weights plus the optimiser, schedule and
random-generator state of the last finished epoch, so ``--resume`` continues exactly), ``log.csv`` (one row per
epoch), ``metrics.json`` (the best and the last validation), ``best_table.txt``, ``split.json`` and
``settings.json``; a poppy run also leaves ``val/NAME.prob.tif``, the last validation's probabilities.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import training.loop as loop  # looked up at call time: tests interrupt train_one_epoch through it
from core.errors import InputError
from core.files import write_aside
from datasets.chips import ChipDataset, ChipSource
from datasets.labelled import LabelledScene, hold_out, scenes_from_folder
from datasets.public import MixedChipDataset, PublicChipDataset, open_public, pretraining_split
from datasets.scene.items import LANDCOVER
from datasets.transforms import train_augment
from detect.predict import resolve_device
from models.checkpoint import (
    ModelSpec,
    data_hash,
    load_checkpoint,
    load_pretrained_into,
    load_training_state,
    normalise,
    save_checkpoint,
)
from models.losses import DiceFocalLoss, MultiClassDiceCELoss, PoppyWithLandCoverLoss
from models.registry import build_model
from training.classes import evaluate_chips
from training.config import TrainConfig
from training.evaluate import evaluate_scenes
from training.judge import JudgeReport, train_judge, write_judge_report
from training.mining import MiningResult, mine_hard_negatives
from training.report import DEFAULT_THRESHOLDS, MIN_VALIDATION_PLOTS, summarise

__all__ = [
    "LOG_FIELDS",
    "POPPY_CLASSES",
    "PRETRAIN_LOG_FIELDS",
    "Best",
    "Validation",
    "build_model_and_spec",
    "data_hash_of",
    "fit",
    "pretrain",
    "split_scenes",
    "synthetic_options",
    "synthetic_scenes",
    "train_poppy",
    "with_negatives",
]

POPPY_CLASSES = ("background", "poppy")
LOG_FIELDS = (
    "epoch", "loss", "lr", "chips_per_s", "seconds", "val_threshold", "val_plot_precision", "val_plot_recall",
    "val_plot_f1", "val_pixel_iou", "val_fp_m2_per_ha", "best",
)  # fmt: skip
PRETRAIN_LOG_FIELDS = ("epoch", "loss", "lr", "chips_per_s", "seconds", "val_miou", "val_pixel_accuracy", "best")

Settings = TrainConfig  # filled and checked by train.py's resolve_settings


@dataclass(frozen=True)
class Validation:
    """One validation pass, in the terms :func:`fit` needs; the two kinds of run differ only here.

    Attributes:
        score: Compared as a tuple, higher is better: picks ``best.pt`` (a tie keeps the earlier epoch).
        metrics: JSON-ready record for ``metrics.json`` and ``best.pt``'s ``spec.metrics`` (``fit`` adds the epoch).
        row: ``log.csv`` fields of the validation.
        text: Appended to the printed epoch line.
        table: The text of ``best_table.txt`` should this be the best epoch.
        spec: The spec to save from now on (a poppy run's carries the threshold chosen on this validation).
    """

    score: tuple[float, ...]
    metrics: dict[str, Any]
    row: dict[str, Any]
    text: str
    table: str
    spec: ModelSpec


@dataclass(frozen=True)
class Best:
    """The best validation so far, as ``last.pt`` records it for ``--resume``.

    Attributes:
        score: Its score tuple (``-inf`` everywhere before the first validation).
        epoch: Its epoch (0 before the first validation).
        metrics: Its ``metrics.json`` record, with the epoch (None before the first validation).
    """

    score: tuple[float, ...]
    epoch: int = 0
    metrics: dict[str, Any] | None = None


Validate = Callable[[nn.Module, ModelSpec, int], Validation]


def _say(s: Settings) -> Callable[..., None]:
    """``print``, or nothing with ``--quiet``."""
    return (lambda *a: None) if s.quiet else print


def _start(s: Settings, out: Path) -> torch.device:
    """What every run does first: pick the device, size the thread pool, create ``out``, seed everything."""
    device = resolve_device(s.device)
    if device.type == "cpu":
        # The DataLoader workers take a core each; the model's threads get the rest. On a machine shared with
        # other jobs, one thread wastes less time waiting for a descheduled partner at each operation.
        torch.set_num_threads(s.threads or max(1, (os.cpu_count() or 1) - s.workers))
    out.mkdir(parents=True, exist_ok=True)
    loop.seed_everything(s.seed)  # before the network is built: the initial weights follow the seed
    return device


def train_poppy(s: Settings, out: Path, resume: bool = False) -> Best:
    """Train (or fine-tune, or resume) a poppy detector into the run folder ``out``, validating on whole
    held-out orthomosaics by the inference path, and return the best validation.

    Args:
        s: train.py's resolved settings (``resolve_settings``); ``arch``/``arch_args`` are filled from ``--init``.
        out: The run folder, absolute (``split.json`` records absolute paths: a resume may start elsewhere).
        resume: Continue the run in ``out`` from its ``last.pt``.

    Raises:
        InputError: On data, a checkpoint or a resumed run that cannot be used.
    """
    device = _start(s, out)
    train_scenes, val_scenes, rule = split_scenes(s, out, resume)
    model, spec, s = build_model_and_spec(s, out, resume)
    (out / "settings.json").write_text(json.dumps(s.to_dict(), indent=2))
    model.to(device)
    sources = [ChipSource.from_scene(x) for x in train_scenes]
    files = [p for x in train_scenes for p in (x.raster, x.labels, x.aoi) if p is not None]
    spec = dataclasses.replace(spec, data_hash=data_hash(files))
    dataset = ChipDataset(
        sources,
        target_gsd_m=spec.gsd_m,
        chip_size=s.chip_size,
        chips_per_epoch=s.chips_per_epoch,
        positive_fraction=s.positive_fraction,
        scale_jitter=s.scale_jitter,
        seed=s.seed,
        transform=train_augment(),
        hard_fraction=s.hard_negatives,
        landcover=s.aux_landcover,
        rejected_fraction=s.rejected_share if s.reviewed is not None else 0.0,
    )
    chips = dataset  # the poppy chips, also when --negatives wraps them below: hard negatives are set on these
    say = _say(s)
    if s.negatives is not None:
        dataset, negatives_hash, described = with_negatives(dataset, s, spec.gsd_m)
        spec = dataclasses.replace(spec, data_hash=data_hash_of(spec.data_hash, negatives_hash))
        say(f"negatives: {s.negative_share:.0%} of the chips from {described}")
    optimizer, scheduler, total_steps = _optimiser(model, s)
    log = loop.CsvLog(out / "log.csv", LOG_FIELDS)
    start, best = _resume_state(resume, out, optimizer, scheduler, total_steps, log, n_score=2)
    say(f"{len(train_scenes)} training and {len(val_scenes)} validation orthomosaics ({rule}); device {device}")
    starting = load_checkpoint(s.init)[1] if s.init is not None else None
    validate = functools.partial(_validate_on_scenes, scenes=val_scenes, device=device, s=s, out=out, starting=starting)
    before_epoch = None
    if s.hard_negatives > 0:
        before_epoch = HardNegativeMiner(chips, s, out, device)
        if resume:
            before_epoch.restore()
    return fit(
        model, spec, dataset, PoppyWithLandCoverLoss() if s.aux_landcover else DiceFocalLoss(), optimizer, scheduler,
        device, s, out, validate, log,
        start=start, best=best, total_steps=total_steps, before_epoch=before_epoch,
    )  # fmt: skip


class HardNegativeMiner:
    """``--hard-negatives``: before every ``--mine-every``-th epoch, find where the model calls poppy on the
    training scenes and the labels do not (:func:`training.mining.mine_hard_negatives`), and centre that share of the
    chips on those places.

    Not before the first epoch of a new network, whose output is noise; with ``--init`` yes, since the fine-tuned
    model's false alarms on the user's own crops are the point. The mined polygons are kept in
    ``OUT/hard_negatives.json``, so ``--resume`` draws the same chips as the interrupted run would have.

    Args:
        chips: The poppy chip dataset (``hard_fraction`` > 0).
        s: Settings: ``hard_negatives``, ``mine_every``, ``init``, ``batch_size``, ``val_tile``, ``quiet``.
        out: The run folder.
        device: Where to predict.
    """

    def __init__(self, chips: ChipDataset, s: Settings, out: Path, device: torch.device) -> None:
        self.chips, self.s, self.device = chips, s, device
        self.path = out / "hard_negatives.json"

    def due(self, epoch: int) -> bool:
        """Whether to mine before ``epoch``."""
        return (epoch - 1) % self.s.mine_every == 0 and (epoch > 1 or self.s.init is not None)

    def restore(self) -> None:
        """Set the last mined polygons again (a resumed run), when there are any."""
        if self.path.is_file():
            self.chips.set_hard_negatives(MiningResult.from_dict(json.loads(self.path.read_text())))

    def __call__(self, model: nn.Module, spec: ModelSpec, epoch: int) -> None:
        if not self.due(epoch):
            return
        mined = mine_hard_negatives(
            model, spec, self.chips.sources, threshold=spec.threshold, device=self.device,
            batch_size=self.s.batch_size, tile=self.s.val_tile, progress=not self.s.quiet,
        )  # fmt: skip
        self.chips.set_hard_negatives(mined)
        _write_json(self.path, {"epoch": epoch, **mined.to_dict()})
        _say(self.s)(f"epoch {epoch}/{self.s.epochs}: {mined.line()}")


def train_judge_run(s: Settings, out: Path) -> JudgeReport:
    """``train.py --judge STAGE1``: train the second stage for a first-stage checkpoint and write ``two_stage.pt``.

    The scenes are split as for a poppy run (``--val-data``, or whole orthomosaics of ``--data`` held out, or
    ``--synthetic-val``); the first stage runs over all of them at its own threshold, the judge learns on the
    training scenes' proposals and labels and is calibrated, with its operating points, on the validation ones
    (:func:`training.judge.train_judge`).

    Raises:
        InputError: For a checkpoint or data that cannot be used, or fewer than
            :data:`training.report.MIN_VALIDATION_PLOTS` labelled validation plots (too few to place operating
            points).
    """
    device = _start(s, out)
    train_scenes, val_scenes, rule = split_scenes(s, out, resume=False)
    stage1, spec1 = load_checkpoint(s.judge, map_location=device)
    (out / "settings.json").write_text(json.dumps(s.to_dict(), indent=2))
    val_sources = [ChipSource.from_scene(x) for x in val_scenes]
    labels = sum(len(x.positive_geoms) for x in val_sources)
    if labels < MIN_VALIDATION_PLOTS:
        raise InputError(
            f"--judge: the validation scenes hold {labels} labelled plot(s), fewer than {MIN_VALIDATION_PLOTS}: too "
            "few to calibrate the judge and place its operating points; add validation scenes (--val-data or "
            "--synthetic-val)"
        )
    say = _say(s)
    say(f"{len(train_scenes)} training and {len(val_scenes)} validation orthomosaics ({rule}); device {device}")
    t0 = time.perf_counter()
    judge, jspec, report = train_judge(
        [ChipSource.from_scene(x) for x in train_scenes], val_sources, stage1, spec1,
        epochs=s.epochs, chips_per_epoch=s.chips_per_epoch, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
        device=device, min_area_m2=s.min_area_m2, say=say,
    )  # fmt: skip
    save_checkpoint(out / "two_stage.pt", stage1, spec1, judge=(judge, jspec))
    write_judge_report(out, report, stage1=str(s.judge), seconds=time.perf_counter() - t0)
    say(report.table())
    return report


def pretrain(s: Settings, out: Path, resume: bool = False) -> Best:
    """Land-cover pretraining on a public data set (``--pretrain``), and return the best validation.

    Multi-class chips at the model's GSD, validated by per-class IoU on fixed chips of held-out tiles;
    ``best.pt`` (the best mean IoU) then initialises a poppy run (``--init``).

    Args:
        s: train.py's resolved settings, with ``pretrain`` set to a public data set ``NAME[@GSD]:PATH``.
        out: The run folder, absolute.
        resume: Continue the run in ``out`` from its ``last.pt``.

    Raises:
        InputError: On a data set that cannot be read, or a resumed run that learnt other classes.
    """
    device = _start(s, out)
    source = open_public(s.pretrain, "--pretrain")
    train_tiles, val_tiles, rule = pretraining_split(source, s.val_fraction, s.seed)
    model, spec, s = build_model_and_spec(s, out, resume, classes=source.classes)
    if tuple(spec.classes) != source.classes:
        raise InputError(f"--resume: the run in {out} learnt other classes than {source.title} has now")
    (out / "settings.json").write_text(json.dumps(s.to_dict(), indent=2))
    split = {"rule": rule, "data_set": source.describe(), "train_tiles": len(train_tiles),
             "val_tiles": len(val_tiles), "val_groups": sorted({t.group for t in val_tiles})}  # fmt: skip
    (out / "split.json").write_text(json.dumps(split, indent=2))
    model.to(device)
    spec = dataclasses.replace(spec, data_hash=source.fingerprint(train_tiles))
    common = {"target_gsd_m": spec.gsd_m, "chip_size": s.chip_size, "labels": "landcover"}
    dataset = PublicChipDataset(
        source, train_tiles, chips_per_epoch=s.chips_per_epoch, scale_jitter=s.scale_jitter, seed=s.seed,
        transform=train_augment(), **common,
    )  # fmt: skip
    val_set = PublicChipDataset(source, val_tiles, chips_per_epoch=s.val_chips, seed=s.seed + 1, **common)
    optimizer, scheduler, total_steps = _optimiser(model, s)
    log = loop.CsvLog(out / "log.csv", PRETRAIN_LOG_FIELDS)
    start, best = _resume_state(resume, out, optimizer, scheduler, total_steps, log, n_score=1)
    say = _say(s)
    say(f"{source.describe()}\n{len(train_tiles)} training and {len(val_tiles)} validation tiles ({rule}); "
        f"{len(spec.classes)} classes at {spec.gsd_m * 100:g} cm/px; device {device}")  # fmt: skip
    for note in dataset.warnings:
        say(note)
    validate = functools.partial(_validate_on_chips, chips=val_set, device=device, s=s)
    return fit(
        model, spec, dataset, MultiClassDiceCELoss(), optimizer, scheduler, device, s, out, validate, log,
        start=start, best=best, total_steps=total_steps,
    )  # fmt: skip


def fit(
    model: nn.Module,
    spec: ModelSpec,
    dataset: Any,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    s: Settings,
    out: Path,
    validate: Validate,
    log: loop.CsvLog,
    *,
    start: int,
    best: Best,
    total_steps: int,
    before_epoch: Callable[[nn.Module, ModelSpec, int], None] | None = None,
) -> Best:
    """Train from epoch ``start + 1`` to ``s.epochs``, validating every ``s.val_every`` epochs and after the
    last, and return the best validation.

    After each validation ``metrics.json`` is rewritten and, when ``validate``'s score beats ``best``, so are
    ``best.pt`` and ``best_table.txt``. After every epoch its row goes to ``log`` and ``last.pt`` is saved with the
    training state (``best`` included), so an interruption loses at most the epoch in progress. A resumed run
    whose last epoch is done trains nothing and only prints the best epoch's table again.

    Args:
        model: The network, on ``device``.
        spec: Its spec, saved with every checkpoint; ``validate`` may replace it.
        dataset: Training chips with ``set_epoch(epoch)``, an independent draw per ``(seed, epoch, index)``.
        criterion: Loss of ``(logits, mask)``.
        optimizer: The optimiser.
        scheduler: Stepped once per batch.
        device: Where to compute.
        s: Settings: ``epochs``, ``val_every``, ``batch_size``, ``workers``, ``seed`` and ``quiet`` are read.
        out: The run folder.
        validate: ``validate(model, spec, epoch)``: one validation pass.
        log: The run's ``log.csv``.
        start: The last finished epoch (0 for a new run).
        best: The best validation so far (``Best((-inf, ...))`` for a new run).
        total_steps: Updates in the whole run, recorded so a resume can tell the schedule changed.
        before_epoch: ``before_epoch(model, spec, epoch)``, called before each epoch's chips are drawn (hard
            negative mining).
    """
    say = _say(s)
    for epoch in range(start + 1, s.epochs + 1):
        if before_epoch is not None:
            before_epoch(model, spec, epoch)
        row, line = _train_epoch(model, dataset, criterion, optimizer, scheduler, device, spec, s, epoch)
        if epoch % s.val_every == 0 or epoch == s.epochs:
            result = validate(model, spec, epoch)
            spec = result.spec
            row.update(result.row)
            last = {"epoch": epoch, **result.metrics}
            line += result.text
            if result.score > best.score:
                best = Best(result.score, epoch, last)
                save_checkpoint(out / "best.pt", model, dataclasses.replace(spec, metrics=last))
                row["best"] = 1
                line += " (best)"
                (out / "best_table.txt").write_text(result.table + "\n")
            _write_json(out / "metrics.json", {"best_epoch": best.epoch, "best": best.metrics, "last": last})
        log.append(row)
        state = loop.training_state(
            optimizer, scheduler, epoch, best_score=list(best.score), best_epoch=best.epoch, best_metrics=best.metrics,
            total_steps=total_steps,
        )  # fmt: skip
        save_checkpoint(out / "last.pt", model, spec, extra=state)
        say(line)
    if best.metrics is not None and (out / "best_table.txt").is_file():
        say(f"best epoch {best.epoch}, saved to {out / 'best.pt'}:\n" + (out / "best_table.txt").read_text())
    return best


def _validate_on_scenes(
    model: nn.Module,
    spec: ModelSpec,
    epoch: int,
    *,
    scenes: list[LabelledScene],
    device: torch.device,
    s: Settings,
    out: Path,
    starting: ModelSpec | None = None,
) -> Validation:
    """A poppy run's validation: the inference path over whole held-out orthomosaics, scored as plots at every
    threshold; the threshold chosen goes into the spec (``val/`` keeps the probabilities).

    A fine-tune (``starting``: the ``--init`` model's spec) validated on fewer than
    :data:`training.report.MIN_VALIDATION_PLOTS` labelled plots keeps the starting model's threshold and its
    threshold sweep (where ``infer.py --sensitivity`` finds its operating points), and says so: a threshold chosen
    on a handful of plots is noise. This validation's own sweep is kept beside it as ``own_thresholds``.
    """
    report = evaluate_scenes(
        model, spec, scenes, thresholds=DEFAULT_THRESHOLDS, device=device, min_area_m2=s.min_area_m2,
        tile=s.val_tile, batch_size=s.batch_size, work_dir=out / "val", progress=not s.quiet,
    )  # fmt: skip
    labels = int(report.chosen.get("labels") or 0)
    # Only a poppy detector's threshold carries over (a land-cover pretraining checkpoint has none worth keeping).
    kept_from_start = (
        starting is not None and labels < MIN_VALIDATION_PLOTS and tuple(starting.classes) == ("background", "poppy")
    )
    if kept_from_start:
        reason = (
            f"validation has {labels} labelled plot(s), fewer than {MIN_VALIDATION_PLOTS}: kept the starting model's "
            f"threshold {starting.threshold:.2f} and operating points"
        )
        report = summarise(report.results, target_recall=report.target_recall, keep=(starting.threshold, reason))
    c = report.chosen
    row = {
        "val_threshold": report.threshold, "val_plot_precision": c["plot_precision"],
        "val_plot_recall": c["plot_recall"], "val_plot_f1": c["plot_f1"], "val_pixel_iou": c["pixel_iou"],
        "val_fp_m2_per_ha": c["fp_m2_per_ha"],
    }  # fmt: skip
    metrics = report.to_dict()
    if kept_from_start:
        metrics["own_thresholds"] = metrics["thresholds"]
        metrics["thresholds"] = (starting.metrics or {}).get("thresholds", [])
    return Validation(
        score=report.score,
        metrics=metrics,
        row=row,
        text=(
            f" | val @ {report.threshold:.2f}: plots P {c['plot_precision']:.2f} R {c['plot_recall']:.2f}"
            f" F1 {c['plot_f1']:.2f}, pixel IoU {c['pixel_iou']:.2f}, FP {c['fp_m2_per_ha']:.1f} m2/ha"
        ),
        table=report.table(sweep=True),
        spec=dataclasses.replace(spec, threshold=starting.threshold if kept_from_start else report.threshold),
    )


def _validate_on_chips(
    model: nn.Module, spec: ModelSpec, epoch: int, *, chips: Any, device: torch.device, s: Settings
) -> Validation:
    """A pretraining run's validation: per-class IoU on the same fixed chips of held-out tiles every time."""
    loader = loop.epoch_loader(chips, s.batch_size, workers=s.workers, seed=s.seed, epoch=0)
    report = evaluate_chips(model, spec, loader, device)
    return Validation(
        score=report.score,
        metrics=report.to_dict(),
        row={"val_miou": f"{report.miou:.6f}", "val_pixel_accuracy": f"{report.pixel_accuracy:.6f}"},
        text=f" | val mIoU {report.miou:.3f}, pixel accuracy {report.pixel_accuracy:.3f}",
        table=report.table(),
        spec=spec,
    )


def _train_epoch(
    model: nn.Module,
    dataset: Any,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    spec: ModelSpec,
    s: Settings,
    epoch: int,
) -> tuple[dict[str, Any], str]:
    """One epoch of updates; returns its log row and summary line."""
    dataset.set_epoch(epoch)
    loader = loop.epoch_loader(
        dataset, s.batch_size, workers=s.workers, seed=s.seed, epoch=epoch, pin_memory=device.type == "cuda"
    )
    stats = loop.train_one_epoch(
        model, loader, criterion, optimizer, scheduler, device, functools.partial(normalise, spec=spec),
        progress=not s.quiet, desc=f"epoch {epoch}/{s.epochs}", total=len(loader),
    )  # fmt: skip
    row: dict[str, Any] = {
        "epoch": epoch, "loss": f"{stats.loss:.6f}", "lr": f"{stats.lr:.6g}",
        "chips_per_s": f"{stats.chips_per_s:.2f}", "seconds": f"{stats.seconds:.1f}", "best": 0,
    }  # fmt: skip
    return row, f"epoch {epoch}/{s.epochs}: loss {stats.loss:.4f}, {stats.chips_per_s:.1f} chips/s"


def synthetic_options(s: Settings, kind: str = "train") -> Any:
    """The generator's ``SceneOptions`` for ``kind`` (train|val) scenes from the ``--synthetic-*`` settings, or
    None for today's scenes (then the generator is not even imported here).

    Validation scenes draw from the other appearance half than training scenes when a half is given, so that
    validation scores looks the model never trained on.

    Raises:
        InputError: A bad level, half or plot-area range (the message names the ``--synthetic-*`` flag).
    """
    default = s.synthetic_appearance in (None, "all") and not s.synthetic_plot_area
    if default and not s.synthetic_randomise:
        return None  # today's scenes
    try:
        from datasets.synthetic import parse_plot_area, scene_options  # optional, as in synthetic_scenes
    except ImportError as exc:
        raise InputError(f"--synthetic: the scene generator is not available ({exc}); train on --data") from exc
    appearance = s.synthetic_appearance or "all"
    if kind == "val" and appearance != "all":
        appearance = "holdout" if appearance == "train" else "train"
    options: dict[str, Any] = {"randomise": s.synthetic_randomise or 0, "appearance": appearance}
    try:
        if s.synthetic_plot_area:
            options["plot_area"] = parse_plot_area(s.synthetic_plot_area)
        return scene_options(options)
    except InputError as exc:
        raise InputError(str(exc).replace("--", "--synthetic-")) from None


def synthetic_sets(s: Settings, out: Path) -> tuple[list[LabelledScene], list[LabelledScene]]:
    """A run's generated training and validation scenes (``--synthetic``, ``--synthetic-val``), rendered once into
    ``OUT/synthetic/`` with the run's ``--synthetic-*`` options (validation seeds offset from training's), and
    with land cover per pixel for ``--aux-landcover``."""
    lc = s.aux_landcover
    train = synthetic_scenes(out, "train", s.synthetic, s.seed, s.synthetic_size, synthetic_options(s), landcover=lc)
    val_options = synthetic_options(s, "val")
    val = synthetic_scenes(out, "val", s.synthetic_val, s.seed + 1_000_003, s.synthetic_size, val_options, landcover=lc)
    return (train if s.synthetic else []), (val if s.synthetic_val else [])


def synthetic_scenes(
    out: Path, kind: str, count: int, seed: int, size: int, options: Any = None, *, landcover: bool = False
) -> list[LabelledScene]:
    """Generate ``count`` synthetic scenes once into ``OUT/synthetic/KIND-...`` (reused when already complete).

    ``options`` (the generator's ``SceneOptions``; None or the default: today's renderer) are part of the folder
    name when they differ from the default, so runs with other options never reuse these scenes; so is
    ``landcover`` (also write ``NAME.landcover.tif``). ``count`` 0 renders nothing.
    """
    if count < 1:
        return []
    name = f"{kind}-n{count}-seed{seed}-px{size}"
    if options is not None and not options.is_default:
        lo, hi = options.plot_area
        name += f"-r{options.randomise}-{options.appearance}-area{lo:g}-{hi:g}"
    if landcover:
        name += "-lc"
    folder = out / "synthetic" / name
    done = folder / "complete.json"
    if not done.is_file():
        try:
            from datasets.synthetic import generate  # optional: the scene generator has its own dependencies
        except ImportError as exc:
            raise InputError(f"--synthetic: the scene generator is not available ({exc}); train on --data") from exc
        extra = {"options": options} if options is not None else {}  # today's call when there are none
        if landcover:
            extra["landcover"] = True
        generate(folder, count, seed, size=size, **extra)
        record = {"count": count, "seed": seed, "size": size}
        if options is not None and not options.is_default:
            record["options"] = options.to_dict()
        done.write_text(json.dumps(record))
    return scenes_from_folder(folder)


def split_scenes(s: Settings, out: Path, resume: bool) -> tuple[list[LabelledScene], list[LabelledScene], str]:
    """Training and validation scenes: whole orthomosaics, recorded in ``OUT/split.json`` and reused on resume."""
    split_path = out / "split.json"
    if resume and split_path.is_file():
        split = json.loads(split_path.read_text())
        for p in split["train"] + split["val"]:
            if not Path(p).is_file():
                raise InputError(f"--resume: {p} from the run's split.json is missing; restore it to resume")
        reviewed = set(split.get("reviewed", []))

        def scene(p: str) -> LabelledScene:
            return LabelledScene.from_raster(p, unreviewed_as=s.unreviewed_as if p in reviewed else None)

        return [scene(p) for p in split["train"]], [scene(p) for p in split["val"]], split["rule"]

    real = scenes_from_folder(s.data) if s.data else []
    if s.reviewed:  # reviewed outputs join the labelled orthomosaics: held out whole, as they are
        real += scenes_from_folder(s.reviewed, unreviewed_as=s.unreviewed_as)
    val = scenes_from_folder(s.val_data) if s.val_data else []
    synth, synth_val = synthetic_sets(s, out)
    if s.val_data:
        train, rule = real + synth, f"validation folder {s.val_data}"
    elif len(real) >= 2:
        kept, held = hold_out(real, s.val_fraction, s.seed)
        train, val = kept + synth, held
        flags = "/".join(f for f, v in (("--data", s.data), ("--reviewed", s.reviewed)) if v)
        rule = f"held out {len(held)} of {len(real)} {flags} orthomosaics (seed {s.seed})"
    elif synth_val:
        train, rule = real + synth, "synthetic validation scenes only"
    else:
        train, val = hold_out(real + synth, s.val_fraction, s.seed)
        rule = f"held out {len(val)} of {len(real) + len(synth)} orthomosaics (seed {s.seed})"
    val += synth_val
    if synth_val and val != synth_val:
        rule += f", plus {len(synth_val)} synthetic"
    split: dict[str, Any] = {"rule": rule, "train": [str(x.raster) for x in train], "val": [str(x.raster) for x in val]}
    if s.reviewed:  # which rasters are reviewed outputs, so --resume reads their labels with the verdict rules
        split["reviewed"] = [str(x.raster) for x in train + val if x.unreviewed_as is not None]
    split_path.write_text(json.dumps(split, indent=2))
    return train, val, rule


def build_model_and_spec(
    s: Settings, out: Path, resume: bool, classes: tuple[str, ...] = POPPY_CLASSES
) -> tuple[nn.Module, ModelSpec, Settings]:
    """The network, its spec and the settings as trained: resumed, fine-tuned from ``--init`` (its architecture
    carried over into the returned settings), or new.

    An ``--init`` checkpoint with other classes (a ``--pretrain`` land-cover run, or the poppy model for a
    pretraining run) initialises a new network of its architecture for ``classes``: every tensor matching in name
    and shape is copied (encoder, decoder, batch-norm statistics); the head starts afresh.
    """
    outputs = 1 if len(classes) == 2 else len(classes)  # as ModelSpec.num_outputs: one logit for a binary model
    aux = {"aux_classes": len(LANDCOVER)} if s.aux_landcover else {}
    if aux and (s.arch or "fastunet") != "fastunet":
        raise InputError(f"--aux-landcover: the auxiliary head is fastunet's; --arch {s.arch} has none")
    if resume:
        model, spec = load_checkpoint(out / "last.pt")
    elif s.init is not None:
        model, init = load_checkpoint(s.init)
        if aux and init.arch != "fastunet":
            raise InputError(f"--aux-landcover: the auxiliary head is fastunet's; --init {s.init} is {init.arch}")
        arch_args = json.loads(s.arch_args) if s.arch_args is not None else init.arch_args
        if s.arch not in (None, init.arch) or {**arch_args, **aux} != {**init.arch_args, **aux}:
            raise InputError(
                f"--arch {s.arch or init.arch} {arch_args}: the --init checkpoint is {init.arch} "
                f"{init.arch_args}; drop --arch/--arch-args to fine-tune it, or drop --init to train a new network"
            )
        spec = dataclasses.replace(init, gsd_m=s.gsd or init.gsd_m, metrics={}, sha256="")
        wanted = {**init.arch_args, **aux}
        if tuple(init.classes) != tuple(classes) or wanted != init.arch_args:
            # Another head (classes), or the auxiliary land-cover head added: copy every tensor that fits.
            model = build_model(init.arch, in_channels=len(init.bands), num_classes=outputs, **wanted)
            report = load_pretrained_into(model, s.init)
            spec = dataclasses.replace(spec, arch_args=wanted)
            if tuple(init.classes) != tuple(classes):
                spec = dataclasses.replace(spec, classes=tuple(classes), threshold=0.5)
            if not s.quiet:
                print(report.summary())
        s = s.replace(arch=init.arch, arch_args=json.dumps(wanted))  # recorded as what was trained
    else:
        arch_args = {**json.loads(s.arch_args), **aux}
        model = build_model(s.arch, in_channels=3, num_classes=outputs, **arch_args)
        spec = ModelSpec(arch=s.arch, arch_args=arch_args, gsd_m=s.gsd or 0.03, classes=tuple(classes))
    return model.train(), dataclasses.replace(spec, name=s.name, train_args=s.to_dict()), s


def with_negatives(chips: ChipDataset, s: Settings, gsd_m: float) -> tuple[MixedChipDataset, str, str]:
    """Poppy chips with ``--negatives`` mixed in at ``--negative-share``: ``(dataset, fingerprint, description)``."""
    source = open_public(s.negatives, "--negatives")
    tiles = source.negative_tiles()
    negatives = PublicChipDataset(
        source, tiles, target_gsd_m=gsd_m, chip_size=s.chip_size, chips_per_epoch=s.chips_per_epoch,
        labels="negative", scale_jitter=s.scale_jitter, seed=s.seed, transform=train_augment(),
    )  # fmt: skip
    mixed = MixedChipDataset(chips, negatives, s.negative_share, s.seed)
    return mixed, source.fingerprint(tiles), source.describe()


def data_hash_of(*parts: str) -> str:
    """One SHA-256 over several data hashes (poppy scenes and public negatives)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _optimiser(
    model: nn.Module, s: Settings
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, int]:
    """AdamW and its schedule for the whole run: ``(optimizer, scheduler, total_steps)``."""
    total_steps = s.epochs * math.ceil(s.chips_per_epoch / s.batch_size)
    optimizer = loop.make_optimizer(model, s.lr, s.weight_decay)
    # Warm-up of 5 % of the run (at most 500 steps): AdamW's first moment estimates are noisy.
    scheduler = loop.warmup_cosine(optimizer, max(1, min(500, total_steps // 20)), total_steps)
    return optimizer, scheduler, total_steps


def _resume_state(
    resume: bool,
    out: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    total_steps: int,
    log: loop.CsvLog,
    n_score: int,
) -> tuple[int, Best]:
    """``(last finished epoch, best validation)``: a new run's, or restored on ``resume`` (optimiser, schedule and
    random generators included; log rows after the last checkpoint dropped)."""
    if not resume:
        return 0, Best((-math.inf,) * n_score)
    state = load_training_state(out / "last.pt")  # on the CPU: RNG states must stay there
    start = loop.restore_training_state(state, optimizer, scheduler)
    if state.get("total_steps") != total_steps:
        logging.warning("--epochs changed from the resumed run: the learning-rate schedule is stretched")
    log.truncate(start)
    best = Best(tuple(float(v) for v in state["best_score"]), int(state["best_epoch"]), state.get("best_metrics"))
    return start, best


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` whole or not at all: a run killed mid-write keeps the previous file."""
    with write_aside(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
