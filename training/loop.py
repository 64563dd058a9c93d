"""The training engine: optimiser and schedule, one epoch of updates, and exact resumption.

``training/trainer.py`` wires data, this engine and validation together. Everything a resumed run needs to continue
exactly (model, optimiser, scheduler, every random generator, the epoch) is captured by
:func:`training_state` and restored by :func:`restore_training_state`; the chip sampler itself is seeded per
``(seed, epoch, index)``, so an epoch replayed after an interruption draws the same chips.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.errors import InputError
from core.files import write_aside
from detect.predict import autocast_context

__all__ = [
    "CsvLog",
    "EpochStats",
    "epoch_loader",
    "make_optimizer",
    "restore_training_state",
    "seed_everything",
    "train_one_epoch",
    "training_state",
    "warmup_cosine",
    "worker_init",
]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and normalisation parameters (decaying them only hurts)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.02
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_ratio`` of the peak at ``total_steps``.

    Warm-up matters with AdamW from random or foreign weights: the first steps' second-moment estimates are
    noisy, and a full learning rate then can wreck a pretrained encoder.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class EpochStats:
    """What one epoch of training did."""

    loss: float
    chips: int
    seconds: float
    lr: float

    @property
    def chips_per_s(self) -> float:
        return self.chips / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    grad_clip: float = 1.0,
    progress: bool = True,
    desc: str = "train",
    total: int | None = None,
    step_hook: Callable[[int], None] | None = None,
) -> EpochStats:
    """Run one epoch of updates.

    Args:
        model: The network, put in training mode here.
        batches: ``(image [B, C, H, W] in [0, 1], mask [B, H, W])`` batches.
        criterion: Loss of ``(logits, mask)``.
        optimizer: The optimiser.
        scheduler: Stepped once per batch.
        device: Where to compute.
        prepare: Normalises an image batch on the device (the model's mean/std).
        grad_clip: Maximum gradient norm (stabilises the first epochs on tiny batches).
        progress: Show a progress bar with loss and speed.
        desc: Progress bar label.
        total: Batches in the epoch, for the bar.
        step_hook: Called with the batch index after each update (tests use it to interrupt a run).

    Returns:
        The epoch's mean loss, chips seen, seconds and last learning rate.
    """
    model.train()
    t0 = time.perf_counter()
    total_loss, n_chips, n_batches = 0.0, 0, 0
    bar = tqdm(batches, total=total, desc=desc, unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
    for i, (image, mask) in enumerate(bar):
        image = prepare(image.to(device, non_blocking=True))
        mask = mask.to(device, non_blocking=True)
        with autocast_context(device):
            logits = model(image)
        loss = criterion(logits.float(), mask)
        if not torch.isfinite(loss):
            # Stop before the update: one NaN step would poison every weight, and the checkpoints already on disk
            # (last.pt, best.pt, written at epoch ends) are the last good state, so they are left as they are.
            raise InputError(
                f"{desc}: the loss became {float(loss.detach())} at batch {i + 1} (training diverged); stopped before "
                "updating the weights, the last checkpoint (last.pt, best.pt) is kept; lower --lr (e.g. by half) "
                "and start a new run, or --init from best.pt"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        total_loss += float(loss.detach())
        n_chips += image.shape[0]
        n_batches += 1
        elapsed = time.perf_counter() - t0
        bar.set_postfix(loss=f"{total_loss / n_batches:.4f}", chips_s=f"{n_chips / max(elapsed, 1e-9):.1f}")
        if step_hook is not None:
            step_hook(i)
    return EpochStats(
        loss=total_loss / max(1, n_batches),
        chips=n_chips,
        seconds=time.perf_counter() - t0,
        lr=optimizer.param_groups[0]["lr"],
    )


def training_state(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int, **more: object
) -> dict:
    """Everything besides the weights that a resumed run needs, in types ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    return {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        **more,
    }


def restore_training_state(
    state: dict, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> int:
    """Restore optimiser, scheduler and random generators; returns the epoch the state was saved after."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    kind, keys, *rest = state["numpy_rng"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return int(state["epoch"])


def worker_init(worker_id: int) -> None:
    """DataLoader worker start-up: single-threaded OpenCV and torch, since the workers already run in parallel
    (oversubscribed threads make every worker slower, and OpenCV's pool can deadlock after a fork)."""
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def epoch_loader(
    dataset: Dataset, batch_size: int, *, workers: int, seed: int, epoch: int, pin_memory: bool = False
) -> DataLoader:
    """The batches of one epoch, a function of ``(seed, epoch)`` only.

    Items are read in index order, without a shuffling sampler: each index of a
    :class:`datasets.chips.ChipDataset` is already an independent random draw from ``(seed, epoch, index)``, so
    order adds nothing and an epoch replayed after ``--resume`` yields the same batches. The loader's own
    generator (which seeds worker processes) is derived from ``(seed, epoch)`` too, not from the global RNG.
    """
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=worker_init if workers > 0 else None,
        generator=generator,
        pin_memory=pin_memory,
        drop_last=False,
    )


class CsvLog:
    """A CSV log with one row per epoch, safe to continue after ``--resume``.

    Args:
        path: The CSV file (created with a header on the first row).
        fields: Column names, in order; rows may leave some empty.
    """

    def __init__(self, path: str | Path, fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)

    def rows(self) -> list[dict[str, str]]:
        """The rows written so far."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate(self, last_epoch: int) -> None:
        """Drop rows after ``last_epoch``: a run interrupted after logging an epoch but before saving its
        checkpoint replays that epoch on resume, and must not log it twice."""
        keep = [r for r in self.rows() if int(r["epoch"]) <= last_epoch]
        with write_aside(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in self.fields} for r in keep)

    def append(self, row: dict[str, object]) -> None:
        """Append one row (flushed to disk, so a crash loses at most the epoch in progress)."""
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.fields})
            f.flush()
            os.fsync(f.fileno())
