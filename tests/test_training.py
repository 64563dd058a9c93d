"""Losses, schedule and exact resumption state of the training engine."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from models import build_model
from models.checkpoint import ModelSpec, load_training_state, save_checkpoint
from models.losses import DiceFocalLoss, MultiClassDiceCELoss
from training.loop import make_optimizer, restore_training_state, training_state, warmup_cosine


def test_dice_focal_ignores_ignored_pixels() -> None:
    loss = DiceFocalLoss()
    logits = torch.full((1, 1, 4, 4), -8.0)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    good = float(loss(logits, target))
    valid_half = float(loss(logits[:, :, 2:], target[:, 2:]))
    target_ignored = target.clone()
    target_ignored[0, :2] = 255
    logits_wrong_where_ignored = logits.clone()
    logits_wrong_where_ignored[0, 0, :2] = 8.0  # confidently wrong, but only where ignored
    # Confident mistakes on ignored pixels change nothing: the loss equals that of the valid half alone.
    assert float(loss(logits_wrong_where_ignored, target_ignored)) == pytest.approx(valid_half, abs=1e-6)
    target_pos = target.clone()
    target_pos[0, 2:] = 1
    assert float(loss(logits, target_pos)) > good + 0.5  # missing poppy is punished


def test_dice_focal_all_ignored_is_zero_with_gradient() -> None:
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    out = DiceFocalLoss()(logits, torch.full((1, 2, 2), 255))
    out.backward()
    assert out.item() == 0.0 and logits.grad is not None


def test_multiclass_loss_prefers_right_class() -> None:
    target = torch.tensor([[[0, 1], [2, 255]]])
    right = torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 10
    wrong = right.roll(1, dims=1)
    loss = MultiClassDiceCELoss()
    assert float(loss(right, target)) < 0.05 < float(loss(wrong, target))


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.1), (9, 1.0), (10, 1.0), (55, 0.02 + 0.98 * 0.5), (100, 0.02), (150, 0.02)],
)
def test_warmup_cosine_table(step: int, expected: float) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=10, total_steps=100)
    for _ in range(step):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-6)


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = build_model("fastunet", base_channels=4, depth=1)
    opt = make_optimizer(model, 1e-3, 0.05)
    assert all(p.ndim > 1 for p in opt.param_groups[0]["params"])
    assert all(p.ndim <= 1 for p in opt.param_groups[1]["params"])


def test_training_state_survives_a_weights_only_checkpoint(tmp_path) -> None:
    model = build_model("fastunet", base_channels=4, depth=1)
    opt = make_optimizer(model, 1e-3, 0.01)
    sched = warmup_cosine(opt, 2, 10)
    model(torch.rand(1, 3, 8, 8)).sum().backward()
    opt.step()
    sched.step()
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = training_state(opt, sched, epoch=3, best_score=0.5)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, ModelSpec(arch="fastunet", arch_args={"base_channels": 4, "depth": 1}), extra=state)

    opt2 = make_optimizer(model, 1e-3, 0.01)
    sched2 = warmup_cosine(opt2, 2, 10)
    torch.manual_seed(99)
    epoch = restore_training_state(load_training_state(path), opt2, sched2)
    assert epoch == 3 and sched2.last_epoch == 1
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
