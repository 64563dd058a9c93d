"""The settings of a training run: one frozen, typed record, checked in one place.

``train.py`` fills a :class:`TrainConfig` from its flags (defaults here, or the resumed run's recorded settings)
and calls :meth:`TrainConfig.check`; the trainer only reads it. The run stores it whole in every checkpoint
(``ModelSpec.train_args``) and in ``settings.json``; ``--resume`` reads it back from ``last.pt``
(:meth:`TrainConfig.from_dict`), so a resumed run continues with exactly the settings it started with.

Adding a flag: one field here (with its default and why), one ``add_argument`` in ``train.py``, and a check in
:meth:`TrainConfig.check` if it has a range.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.errors import InputError

__all__ = ["TrainConfig"]


def _default_workers() -> int:
    return min(4, max(0, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (one per ``train.py`` flag; see ``train.py --help``)."""

    data: str | None = None
    val_data: str | None = None
    reviewed: str | None = None  # folder of NAME.tif + reviewed infer.py output (review field): verdicts as labels
    unreviewed_as: str = "ignore"  # the ground nobody reviewed: ignored (safe: it may hold poppy) or "negative"
    rejected_share: float = 0.25  # share of chips centred on rejected plots: the false alarms analysts found
    arch: str | None = None  # None: fastunet (the CPU-friendly network), or the --init checkpoint's
    arch_args: str | None = None  # JSON; None: the network's defaults, or the --init checkpoint's
    init: str | None = None
    epochs: int = 30
    batch_size: int = 8
    chips_per_epoch: int = 2000  # ~15 min per epoch for fastunet on a 2-core CPU at 256 px
    chip_size: int = 256  # 7.7 m at 3 cm/px: a plot and its surroundings
    lr: float = 1e-3  # AdamW peak; 1e-4 is kinder to --init weights
    weight_decay: float = 1e-2
    gsd: float | None = None  # None: 0.03 m, or the --init checkpoint's
    positive_fraction: float = 0.5  # half the chips centred on plots: poppy is a fraction of a percent of a survey
    scale_jitter: float = 0.25  # chips read at GSD x U(0.75, 1.25): flights at 60-100 m look alike to the model
    synthetic: int = 0
    synthetic_val: int = 0
    synthetic_size: int = 1024  # px per synthetic scene side: 30 m at 3 cm, room for several plots
    synthetic_randomise: int = 0  # 0: today's renderer; 1-2 re-draw every non-poppy look (datasets/scene/randomise.py)
    synthetic_appearance: str = "all"  # train|holdout: training scenes from that half, synthetic validation the other
    synthetic_plot_area: str | None = None  # None: plots of 1.5-200 m2; "MIN,MAX" (e.g. "1.5,2000") adds whole fields
    aux_landcover: bool = False  # fastunet's auxiliary land-cover head on generated scenes: every pixel teaches
    judge: str | None = None  # a first-stage checkpoint: train its second stage (the plot judge) instead
    pretrain: str | None = None  # NAME:PATH of a public data set: land-cover pretraining instead of poppy training
    negatives: str | None = None  # NAME:PATH of a public data set whose valid pixels are mixed in as poppy-free chips
    negative_share: float = 0.2  # a fifth of the chips real farmland without poppy; the rest keep the plot balance
    hard_negatives: float = 0.0  # share of chips centred on the model's false alarms on the training scenes (0: off)
    mine_every: int = 2  # epochs between minings: each is one inference pass over every training scene
    val_chips: int = 200  # fixed validation chips of a --pretrain run: ~7 ha at 256 px and 3 cm, seconds on a CPU
    val_fraction: float = 0.2
    val_every: int = 1
    val_tile: int | None = None  # None: the model's tile size
    min_area_m2: float = 1.0  # as infer.py's default, so validation scores what users get
    device: str = "auto"
    seed: int = 0
    workers: int = field(default_factory=_default_workers)
    threads: int | None = None  # torch CPU threads; None: the cores the DataLoader workers leave
    name: str | None = None
    quiet: bool = False

    # Settings that may differ when a run is resumed: they change how it runs, not what it learns.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "val_every", "device", "workers", "threads", "quiet")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The setting names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting's default."""
        return cls().to_dict()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from recorded settings (``settings.json``, a checkpoint's ``train_args``).

        Settings the record lacks (a run saved before they existed) take their defaults; names this version does
        not know are ignored.
        """
        known = set(cls.names())
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of every setting, in declaration order."""
        return {name: getattr(self, name) for name in self.names()}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    def check(self, given: Collection[str] = ()) -> None:
        """Refuse values out of range and flags that contradict each other.

        Args:
            given: The settings the user set explicitly (some flags only make sense with others).

        Raises:
            InputError: Naming the flag, its value and what is allowed.
        """
        s = self
        checks = [
            (s.epochs >= 1, f"--epochs {s.epochs}: must be at least 1"),
            (s.batch_size >= 1, f"--batch-size {s.batch_size}: must be at least 1"),
            (s.chips_per_epoch >= 1, f"--chips-per-epoch {s.chips_per_epoch}: must be at least 1"),
            (s.lr > 0, f"--lr {s.lr}: must be positive (e.g. 1e-3)"),
            (s.weight_decay >= 0, f"--weight-decay {s.weight_decay}: must be 0 or more"),
            (s.gsd is None or 0.001 <= s.gsd <= 1.0, f"--gsd {s.gsd}: give metres per pixel, e.g. 0.03"),
            (s.synthetic >= 0 and s.synthetic_val >= 0, "--synthetic/--synthetic-val: must be 0 or more"),
            (s.synthetic_size >= 64, f"--synthetic-size {s.synthetic_size}: must be at least 64 px"),
            (s.val_every >= 1, f"--val-every {s.val_every}: must be at least 1"),
            (s.workers >= 0, f"--workers {s.workers}: must be 0 or more"),
            (s.threads is None or s.threads >= 1, f"--threads {s.threads}: must be at least 1"),
            (s.min_area_m2 >= 0, f"--min-area-m2 {s.min_area_m2}: must be 0 or more"),
            (0 < s.negative_share < 1, f"--negative-share {s.negative_share}: must be between 0 and 1 (e.g. 0.2)"),
            (s.val_chips >= 1, f"--val-chips {s.val_chips}: must be at least 1"),
            (
                0 <= s.hard_negatives < 1 and s.positive_fraction + s.hard_negatives <= 1,
                f"--hard-negatives {s.hard_negatives}: must be 0 or more, and with --positive-fraction "
                f"{s.positive_fraction} at most 1 in all (e.g. 0.25)",
            ),
            (s.mine_every >= 1, f"--mine-every {s.mine_every}: must be at least 1"),
            (
                s.unreviewed_as in ("ignore", "negative"),
                f"--unreviewed-as {s.unreviewed_as}: must be ignore (only reviewed plots and their surroundings "
                "teach) or negative (the rest of the orthomosaic is background)",
            ),
            (
                0 <= s.rejected_share < 1
                and (s.reviewed is None or s.positive_fraction + s.hard_negatives + s.rejected_share <= 1),
                f"--rejected-share {s.rejected_share}: must be 0 or more, and with --positive-fraction "
                f"{s.positive_fraction} and --hard-negatives {s.hard_negatives} at most 1 in all (e.g. 0.25)",
            ),
            (
                s.reviewed is not None or not {"unreviewed_as", "rejected_share"} & set(given),
                "--unreviewed-as and --rejected-share apply to reviewed outputs; give --reviewed DIR",
            ),
            (s.reviewed is None or s.pretrain is None, "--reviewed applies to poppy training, not to --pretrain"),
            (
                s.hard_negatives == 0 or s.pretrain is None,
                "--hard-negatives applies to poppy training, not to --pretrain",
            ),
            ("negative_share" not in given or s.negatives is not None, "--negative-share needs --negatives NAME:PATH"),
            ("val_chips" not in given or s.pretrain is not None, "--val-chips applies to --pretrain runs only"),
            (
                s.pretrain is None or not any((s.data, s.val_data, s.synthetic, s.synthetic_val, s.negatives)),
                "--pretrain trains land cover on the public data set alone; drop --data/--val-data/--synthetic/"
                "--negatives, then fine-tune on poppy with --init OUT/best.pt",
            ),
            (
                not s.aux_landcover or (s.pretrain is None and s.judge is None),
                "--aux-landcover trains poppy with an auxiliary land-cover head; drop --pretrain/--judge",
            ),
            (
                s.judge is None or (s.pretrain is None and s.init is None and s.hard_negatives == 0),
                "--judge trains the second stage of the --judge checkpoint; drop --pretrain/--init/--hard-negatives",
            ),
            (
                s.data is not None or s.reviewed is not None or s.synthetic > 0 or s.pretrain is not None,
                "give --data DIR (labelled orthomosaics), --reviewed DIR (reviewed infer.py outputs), --synthetic N "
                "or --pretrain DATASET:PATH",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        if s.arch_args is not None:
            try:
                arch_args = json.loads(s.arch_args)
            except json.JSONDecodeError as exc:
                raise InputError(f"--arch-args {s.arch_args!r}: not JSON ({exc.msg}); e.g. '{{\"depth\": 3}}'") from exc
            if not isinstance(arch_args, dict):
                raise InputError(f"--arch-args {s.arch_args!r}: give a JSON object, e.g. '{{\"depth\": 3}}'")
