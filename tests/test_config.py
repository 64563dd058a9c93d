"""training.config.TrainConfig: frozen, typed, checked in one place, recorded and read back whole."""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import InputError
from training.config import TrainConfig


def test_frozen_and_round_trips_through_a_record() -> None:
    c = TrainConfig(data="/d", epochs=3, arch="fastunet", arch_args="{}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 4  # type: ignore[misc]
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert list(c.to_dict()) == list(TrainConfig.names())


def test_old_records_take_defaults_and_unknown_names_are_ignored() -> None:
    c = TrainConfig.from_dict({"data": "/d", "epochs": 5, "setting_of_the_future": 1})
    assert (c.epochs, c.mine_every, c.hard_negatives) == (5, 2, 0.0)


@pytest.mark.parametrize(
    ("changes", "given", "match"),
    [
        ({"epochs": 0}, (), r"--epochs 0: must be at least 1"),
        ({"lr": 0.0}, (), r"--lr 0.0: must be positive"),
        ({"gsd": 3.0}, (), r"--gsd 3.0: give metres per pixel"),
        ({"hard_negatives": 0.6}, (), r"--hard-negatives 0.6: .* at most 1 in all"),
        ({"negative_share": 0.3}, ("negative_share",), r"--negative-share needs --negatives"),
        ({"pretrain": "loveda:/x"}, (), r"--pretrain trains land cover on the public data set alone"),
        ({"arch_args": "[1]"}, (), r"--arch-args '\[1\]': give a JSON object"),
        ({"arch_args": "{"}, (), r"--arch-args '\{': not JSON"),
        ({"data": None}, (), r"give --data DIR"),
        ({"threads": 0}, (), r"--threads 0: must be at least 1"),
    ],
)
def test_check_refuses_with_the_flag_and_the_fix(changes: dict, given: tuple, match: str) -> None:
    c = TrainConfig(data="/d").replace(**changes)
    with pytest.raises(InputError, match=match):
        c.check(given)


def test_a_good_config_passes() -> None:
    TrainConfig(data="/d", hard_negatives=0.25, negatives="loveda:/x", negative_share=0.3).check({"negative_share"})


def test_threads_may_change_on_resume_but_the_learning_settings_may_not() -> None:
    # How many cores a run uses changes its speed, not what it learns.
    assert "threads" in TrainConfig.RESUMABLE
    assert "lr" not in TrainConfig.RESUMABLE
