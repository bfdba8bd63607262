"""nnctl.schedules: each schedule's rates against the closed form of the PyTorch scheduler it follows (written
out here, not imported), plateau's rule by hand, saved state, and the config keys."""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import pytest
from numpy.testing import assert_allclose
from pydantic import Field

from nnctl.config import validate_config
from nnctl.errors import ConfigError
from nnctl.optimizers import OPTIMIZERS
from nnctl.schedules import (
    SCHEDULES,
    CosineAnnealing,
    ExponentialDecay,
    ReduceOnPlateau,
    Schedule,
    ScheduleOptions,
    StepDecay,
    schedule_class,
)

ETA = 0.1


def rates(schedule: Any, epochs: int, losses: list[float] | None = None) -> list[float]:
    """The rate each epoch 1…epochs uses, stepping once at the end of every epoch as the trainer does."""
    used = []
    for e in range(epochs):
        used.append(schedule.learning_rate)
        schedule.step(losses[e] if losses else math.nan)
    return used


# ----------------------------------------------------------------------------- against PyTorch's closed forms


@pytest.mark.parametrize(("step_size", "gamma"), [(1, 0.5), (3, 0.1), (7, 0.9), (4, 1.5)])
def test_step_is_steplr(step_size, gamma):
    # StepLR: η_e = η₀ · γ^⌊e / step_size⌋ for e = 0, 1, … (the epoch count before the epoch runs)
    expected = [ETA * gamma ** (e // step_size) for e in range(40)]
    assert_allclose(rates(StepDecay(ETA, step_size, gamma), 40), expected, rtol=1e-13)
    assert StepDecay(ETA, step_size).gamma == 0.1  # PyTorch's default


@pytest.mark.parametrize("gamma", [0.5, 0.95, 0.999, 1.02])
def test_exponential_is_exponentiallr(gamma):
    # ExponentialLR: η_e = η₀ · γ^e
    assert_allclose(rates(ExponentialDecay(ETA, gamma), 60), [ETA * gamma**e for e in range(60)], rtol=1e-13)


@pytest.mark.parametrize(("t_max", "min_lr"), [(1, 0.0), (2, 0.0), (10, 0.0), (10, 0.01), (7, 0.05), (25, 0.001)])
def test_cosine_is_cosineannealinglr_down_and_back_up(t_max, min_lr):
    # CosineAnnealingLR: η_e = η_min + (η₀ − η_min)(1 + cos(π e / T_max)) / 2; past T_max it rises again
    epochs = 3 * t_max + 2
    expected = [min_lr + (ETA - min_lr) * (1 + math.cos(math.pi * e / t_max)) / 2 for e in range(epochs)]
    assert_allclose(rates(CosineAnnealing(ETA, t_max, min_lr), epochs), expected, rtol=1e-12, atol=1e-17)


def test_cosine_reaches_min_lr_exactly_at_t_max():
    used = rates(CosineAnnealing(0.1, 4, 0.002), 9)
    assert used[4] == 0.002 and used[0] == 0.1
    assert used[3] == pytest.approx(used[5], rel=1e-12)  # symmetric about the trough
    assert used[8] == pytest.approx(0.1, rel=1e-12)  # back at η₀ after 2·T_max


# ----------------------------------------------------------------------------- plateau by hand


def test_plateau_by_hand_with_a_relative_threshold():
    # patience 2, factor 0.5, threshold 0.1: an epoch improves only with loss < best · 0.9
    schedule = ReduceOnPlateau(1.0, factor=0.5, patience=2, threshold=0.1)
    losses = [1.0, 0.95, 0.85, 0.85, 0.8, 0.79, 0.7, 0.7, 0.7, 0.7]
    # best 1.0 | 0.95 ≥ 0.9: bad 1 | 0.85 < 0.9: best 0.85 | bad 1 | 0.8 ≥ 0.765: bad 2 | bad 3 > 2: η = 0.5
    # 0.7 < 0.765: best 0.7 | bad 1 | bad 2 | bad 3: η = 0.25 (used from the epoch after)
    expected = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert rates(schedule, 11, losses + [0.7]) == expected
    assert schedule.best == 0.7


def test_plateau_cooldown_and_min_lr_by_hand():
    # patience 0: every epoch that does not improve reduces, unless in cooldown (1 epoch after a reduction)
    schedule = ReduceOnPlateau(1.0, factor=0.1, patience=0, min_lr=0.005, cooldown=1)
    losses = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    # e1 best | e2 bad → 0.1, cooldown | e3 cooldown: not counted | e4 bad → 0.01 | e5 cooldown | e6 → max(0.001, 0.005)
    expected = [1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.005]
    assert_allclose(rates(schedule, 7, losses), expected, rtol=1e-15)
    assert rates(schedule, 3, [2.0] * 3) == [0.005] * 3  # at min_lr it stays there


def test_plateau_skips_a_reduction_smaller_than_pytorchs_eps():
    # min_lr 5e-9 below η: the cut to max(η · 0.1, min_lr) would change η by less than 1e-8, so it is skipped
    schedule = ReduceOnPlateau(1e-3, patience=0, min_lr=1e-3 - 5e-9)
    assert rates(schedule, 3, [1.0, 1.0, 1.0]) == [1e-3] * 3


def test_plateau_defaults_are_pytorchs():
    p = ReduceOnPlateau(0.1)
    assert (p.factor, p.patience, p.min_lr, p.threshold, p.cooldown) == (0.1, 10, 0.0, 1e-4, 0)


# ----------------------------------------------------------------------------- state and previews


@pytest.mark.parametrize(
    "make",
    [
        lambda: StepDecay(ETA, 2, 0.5),
        lambda: ExponentialDecay(ETA, 0.9),
        lambda: CosineAnnealing(ETA, 5, 0.01),
        lambda: ReduceOnPlateau(ETA, factor=0.5, patience=1, cooldown=1),
    ],
    ids=["step", "exponential", "cosine", "plateau"],
)
def test_state_round_trips_through_json_and_continues_exactly(make):
    import json

    losses = [1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    whole = make()
    expected = rates(whole, 12, losses)
    first = make()
    head = rates(first, 5, losses[:5])
    saved = json.loads(json.dumps(first.state()))  # what the checkpoint holds
    second = make()
    second.load_state(saved)
    assert head + rates(second, 7, losses[5:]) == expected  # bit for bit
    assert second.state() == whole.state()


def test_rates_preview_is_what_training_uses_and_none_for_plateau():
    schedule = CosineAnnealing(ETA, 6, 0.0)
    assert schedule.rates(10) == rates(CosineAnnealing(ETA, 6, 0.0), 10)
    assert ReduceOnPlateau(ETA).rates(10) is None


# ----------------------------------------------------------------------------- config


def raw(schedule: Any, **optimizer: Any) -> dict[str, Any]:
    return {
        "data": {"train": "t.csv", "target": "y"},
        "layers": ["input", {"fully_connected": {"units": 1}}],
        "objective": "squared_error",
        "optimizer": {"name": "adam", "learning_rate": 0.05, "schedule": schedule, **optimizer},
    }


@pytest.mark.parametrize(
    ("schedule", "saved"),
    [
        (
            "plateau",
            {"name": "plateau", "factor": 0.1, "patience": 10, "min_lr": 0.0, "threshold": 1e-4, "cooldown": 0},
        ),
        ({"name": "step", "step_size": 5}, {"name": "step", "step_size": 5, "gamma": 0.1}),
        ({"name": "exponential", "gamma": 0.9}, {"name": "exponential", "gamma": 0.9}),
        ({"name": "cosine", "t_max": 50}, {"name": "cosine", "t_max": 50, "min_lr": 0.0}),
        (None, None),
    ],
)
def test_schedule_config_is_validated_saved_and_built(schedule, saved):
    config = validate_config(copy.deepcopy(raw(schedule)))
    assert config.to_dict()["optimizer"]["schedule"] == saved
    optimizer = OPTIMIZERS["adam"].build(config.optimizer)
    if saved is None:
        assert optimizer.schedule is None
    else:
        assert type(optimizer.schedule) is SCHEDULES[saved["name"]]
        assert optimizer.schedule.base_rate == optimizer.learning_rate == 0.05
        assert optimizer.schedule.config() == {k: v for k, v in saved.items() if k != "name"}


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"name": "cosin", "t_max": 3}, "optimizer.schedule.name: unknown schedule 'cosin' (did you mean 'cosine'?)"),
        ({"name": "step"}, "optimizer.schedule.step_size: required key is missing"),
        ({"name": "cosine"}, "optimizer.schedule.t_max: required key is missing"),
        ({"name": "exponential"}, "optimizer.schedule.gamma: required key is missing"),
        ({"name": "step", "step_size": 0}, "optimizer.schedule.step_size: expected a positive integer, got 0"),
        ({"name": "plateau", "factor": 1}, "optimizer.schedule.factor: expected a number < 1, got 1"),
        ({"name": "plateau", "patiense": 3}, "optimizer.schedule.patiense: unknown key (did you mean 'patience'?)"),
        ({"name": "step", "step_size": 2, "t_max": 3}, "optimizer.schedule.t_max: only used by cosine"),
        ({"gamma": 0.5}, "optimizer.schedule.name: required key is missing; expected one of: step, exponential"),
        (3, "optimizer.schedule: expected a schedule name (step, exponential, cosine, plateau) or a mapping"),
    ],
)
def test_schedule_config_errors_name_the_key(schedule, message):
    with pytest.raises(ConfigError) as err:
        validate_config(raw(schedule))
    assert message in str(err.value)


@pytest.mark.parametrize(("value", "message"), [(0, "expected a positive number, got 0"), ("1", "expected a number")])
def test_clip_norm_must_be_a_positive_number(value, message):
    with pytest.raises(ConfigError, match=f"optimizer.clip_norm: {message}"):
        validate_config(raw(None, clip_norm=value))


def test_schedule_registry_lookup_lists_every_name():
    assert schedule_class("cosine") is CosineAnnealing
    with pytest.raises(ConfigError) as err:
        schedule_class("onecycle")
    assert all(name in str(err.value) for name in SCHEDULES)


class Warmup(Schedule):
    """A throwaway schedule registered the way a real one is: η₀ · min(1, (e + 1) / epochs)."""

    name = "warmup"

    class Options(ScheduleOptions):
        name: Literal["warmup"]
        epochs: int = Field(ge=1)

    def __init__(self, learning_rate: float, epochs: int) -> None:
        super().__init__(learning_rate)
        self.epochs = epochs
        self.learning_rate = learning_rate / epochs

    def next_rate(self, loss: float) -> float:
        return self.base_rate * min(1.0, (self.epoch + 1) / self.epochs)


def test_a_new_schedule_is_one_class_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEDULES, "warmup", Warmup)
    config = validate_config(raw({"name": "warmup", "epochs": 4}))
    optimizer = OPTIMIZERS["adam"].build(config.optimizer)
    assert rates(optimizer.schedule, 6) == pytest.approx([0.0125, 0.025, 0.0375, 0.05, 0.05, 0.05])
    with pytest.raises(ConfigError, match="optimizer.schedule.epochs: expected a positive integer, got 0"):
        validate_config(raw({"name": "warmup", "epochs": 0}))
