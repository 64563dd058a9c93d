"""A NaN loss stops training with one clear line before it touches the weights."""

from __future__ import annotations

import pytest
import torch

from core.errors import InputError
from training.loop import make_optimizer, train_one_epoch, warmup_cosine


def test_nan_loss_stops_before_the_update() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, 1e-3, 0.0)
    scheduler = warmup_cosine(optimizer, total_steps=10, warmup_steps=1)
    batches = [(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8)) for _ in range(3)]
    calls = []

    def criterion(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], mask)
        return loss * float("nan") if len(calls) == 2 else loss  # the second batch diverges

    message = r"epoch 3/9: the loss became nan at batch 2 \(training diverged\).*lower --lr"
    with pytest.raises(InputError, match=message):
        train_one_epoch(
            model, batches, criterion, optimizer, scheduler, torch.device("cpu"), lambda x: x,
            progress=False, desc="epoch 3/9",
        )  # fmt: skip
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed  # the first, finite batch was applied ...
    assert all(torch.isfinite(v).all() for v in after.values())  # ... the NaN one was not
