"""training.trainer.fit with stand-in updates and validation: best epoch by the score tuple, validation cadence, resume.

The updates themselves (and fit's real validations) are exercised end to end in tests/test_train.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import training.loop
from models import build_model
from models.checkpoint import ModelSpec, load_checkpoint, load_training_state
from models.losses import DiceFocalLoss
from training.config import TrainConfig
from training.loop import CsvLog, EpochStats, make_optimizer, warmup_cosine
from training.trainer import Best, Validation, fit

FIELDS = ("epoch", "loss", "val_fake", "best")


class Chips(torch.utils.data.Dataset):
    """Four chips that are never read: the updates are stubbed out."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise AssertionError("the stubbed epoch reads no chips")

    def set_epoch(self, epoch: int) -> None:
        pass


@pytest.fixture(autouse=True)
def no_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoch of updates that only reports: fit's bookkeeping is what these tests are about."""

    def epoch(model, batches, criterion, optimizer, scheduler, device, prepare, **kw) -> EpochStats:
        return EpochStats(loss=0.5, chips=len(batches.dataset), seconds=1.0, lr=optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(training.loop, "train_one_epoch", epoch)


def run_fit(out: Path, scores: dict[int, tuple[float, ...]], epochs: int, val_every: int = 1, **kw) -> tuple:
    """``fit`` on a tiny fastunet; validation at epoch E scores ``scores[E]`` and sets the threshold to E / 10."""
    torch.manual_seed(0)
    model = build_model("fastunet", in_channels=3, num_classes=1, base_channels=4, depth=2)
    spec = ModelSpec(arch="fastunet", arch_args={"base_channels": 4, "depth": 2}, name="fake")
    optimizer = make_optimizer(model, 1e-3, 0.0)
    scheduler = warmup_cosine(optimizer, 1, 2 * epochs)
    s = TrainConfig(epochs=epochs, val_every=val_every, batch_size=2, workers=0, seed=0, quiet=False)
    validated = []

    def validate(model: torch.nn.Module, spec: ModelSpec, epoch: int) -> Validation:
        validated.append(epoch)
        return Validation(
            score=scores[epoch],
            metrics={"score": list(scores[epoch])},
            row={"val_fake": epoch * 10},
            text=f" | fake {epoch}",
            table=f"table of epoch {epoch}",
            spec=dataclasses.replace(spec, threshold=epoch / 10),
        )

    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "log.csv", FIELDS)
    kw.setdefault("start", 0)
    kw.setdefault("best", Best((-math.inf,) * len(next(iter(scores.values())))))
    best = fit(
        model, spec, Chips(), DiceFocalLoss(), optimizer, scheduler, torch.device("cpu"), s, out, validate, log,
        total_steps=2 * epochs, **kw,
    )  # fmt: skip
    return best, validated, log.rows()


def test_best_epoch_is_the_highest_score_tuple_and_its_files_follow(tmp_path: Path, capsys) -> None:
    # epoch 2 ties epoch 1 on the first element and wins on the second; epoch 3 loses on the first despite its second
    best, validated, rows = run_fit(tmp_path, {1: (0.5, 0.1), 2: (0.5, 0.3), 3: (0.4, 0.9)}, epochs=3)
    assert validated == [1, 2, 3]
    assert best == Best((0.5, 0.3), 2, {"epoch": 2, "score": [0.5, 0.3]})
    assert [(r["epoch"], r["val_fake"], r["best"]) for r in rows] == [
        ("1", "10", "1"),
        ("2", "20", "1"),
        ("3", "30", "0"),
    ]
    assert (tmp_path / "best_table.txt").read_text() == "table of epoch 2\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"best_epoch": 2, "best": best.metrics, "last": {"epoch": 3, "score": [0.4, 0.9]}}
    _, best_spec = load_checkpoint(tmp_path / "best.pt")
    _, last_spec = load_checkpoint(tmp_path / "last.pt")
    assert best_spec.threshold == 0.2 and best_spec.metrics == best.metrics  # the spec as validated at epoch 2
    assert last_spec.threshold == 0.3  # validate's spec is carried on
    state = load_training_state(tmp_path / "last.pt")
    assert state["epoch"] == 3 and state["best_epoch"] == 2 and state["best_score"] == [0.5, 0.3]
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch ")]
    assert [x.split(" | ")[1] for x in lines] == ["fake 1 (best)", "fake 2 (best)", "fake 3"]


def test_validation_every_n_epochs_and_always_the_last_a_tie_keeps_the_earlier(tmp_path: Path) -> None:
    best, validated, rows = run_fit(tmp_path, {2: (0.5,), 3: (0.5,)}, epochs=3, val_every=2)
    assert validated == [2, 3]
    assert [(r["val_fake"], r["best"]) for r in rows] == [("", "0"), ("20", "1"), ("30", "0")]
    assert best.epoch == 2 and json.loads((tmp_path / "metrics.json").read_text())["last"]["epoch"] == 3


@pytest.mark.parametrize(("start", "validated"), [(1, [2]), (2, [])])
def test_a_resumed_fit_keeps_the_restored_best(tmp_path: Path, start: int, validated: list[int]) -> None:
    restored = Best((0.9,), 1, {"epoch": 1, "score": [0.9]})
    best, seen, rows = run_fit(tmp_path, {2: (0.8,)}, epochs=2, start=start, best=restored)
    assert best == restored and seen == validated and len(rows) == len(validated)
    assert not (tmp_path / "best.pt").exists()  # nothing beat the restored best: its checkpoint is left alone
