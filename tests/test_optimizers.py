"""nnctl.optimizers: each update rule of SPEC §1 against the textbook formula, in place, and its saved state."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nnctl.errors import ConfigError
from nnctl.optimizers import OPTIMIZERS, SGD, Adam, Momentum, Optimizer, optimizer_class

LR = 0.1
HYPER = {"sgd": {}, "momentum": {"momentum": 0.8}, "adam": {"beta1": 0.85, "beta2": 0.995, "delta": 1e-6}}


def textbook(name: str, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray], t: int, wd: float) -> np.ndarray:
    """SPEC §1 written out: g ← g + λp, then the rule; updates `slots` and returns the new p."""
    g = g + wd * p
    if name == "sgd":
        return p - LR * g
    if name == "momentum":
        slots["v"] = 0.8 * slots["v"] + g
        return p - LR * slots["v"]
    b1, b2, delta = 0.85, 0.995, 1e-6
    slots["m"] = b1 * slots["m"] + (1 - b1) * g
    slots["s"] = b2 * slots["s"] + (1 - b2) * g**2
    return p - LR * (slots["m"] / (1 - b1**t)) / (np.sqrt(slots["s"] / (1 - b2**t)) + delta)


def make(name: str, weight_decay: float = 0.0) -> Optimizer:
    return OPTIMIZERS[name](LR, weight_decay=weight_decay, **HYPER[name])


def params(rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    return {"1.W": rng.normal(size=(3, 2)).astype(dtype), "1.b": rng.normal(size=(1, 2)).astype(dtype)}


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_three_steps_equal_the_textbook_formula(name, weight_decay):
    rng = np.random.default_rng(1)
    ps = params(rng)
    expected = {key: p.copy() for key, p in ps.items()}
    slots = {key: {"v": 0.0, "m": 0.0, "s": 0.0} for key in ps}
    opt = make(name, weight_decay)
    for t in (1, 2, 3):  # a fresh gradient every step, so the bias correction 1 − βᵗ matters at each t
        grads = {key: rng.normal(size=p.shape) for key, p in ps.items()}
        opt.step((key, ps[key], grads[key]) for key in ps)
        for key in ps:
            expected[key] = textbook(name, expected[key], grads[key], slots[key], t, weight_decay)
            # the implementation evaluates the same expressions in the same order: bit-for-bit equal
            assert_array_equal(ps[key], expected[key], err_msg=f"{name} step {t} {key}")
    assert opt.t == 3


def test_adam_first_step_by_hand():
    # g = 0.5: m = 0.1·0.5 = 0.05, s = 0.001·0.25 = 0.00025; m̂ = 0.05/0.1 = 0.5, ŝ = 0.00025/0.001 = 0.25
    # p = 1 − 0.1 · 0.5 / (√0.25 + 1e-8) = 1 − 0.05/0.50000001 = 1 − 0.099999998 = 0.900000002
    p, g = np.array([[1.0, -1.0]]), np.array([[0.5, -0.5]])
    Adam(0.1).step([("w", p, g)])
    assert_allclose(p, [[0.900000002, -0.900000002]], rtol=1e-12)


def test_momentum_and_sgd_by_hand():
    # sgd: 1 − 0.1·(0.5 + 0.1·1) = 1 − 0.06 = 0.94 (weight decay 0.1)
    p = np.array([1.0])
    SGD(0.1, weight_decay=0.1).step([("w", p, np.array([0.5]))])
    assert_allclose(p, [0.94], rtol=1e-15)
    # momentum 0.9, g = 1 twice: v = 1 then 0.9 + 1 = 1.9; p = 0 − 0.1 − 0.19 = −0.29
    p, opt = np.array([0.0]), Momentum(0.1)
    for _ in range(2):
        opt.step([("w", p, np.array([1.0]))])
    assert_allclose(p, [-0.29], rtol=1e-15)


def test_defaults_are_the_specs():
    assert Momentum(0.1).momentum == 0.9
    adam = Adam(0.1)
    assert (adam.beta1, adam.beta2, adam.delta) == (0.9, 0.999, 1e-8)
    assert SGD(0.1).weight_decay == 0.0


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_updates_parameters_in_place_and_leaves_gradients_alone(name):
    rng = np.random.default_rng(2)
    ps = params(rng)
    before = {key: p.copy() for key, p in ps.items()}
    ids = {key: id(p) for key, p in ps.items()}
    grads = {key: rng.normal(size=p.shape) for key, p in ps.items()}
    saved = {key: g.copy() for key, g in grads.items()}
    make(name, weight_decay=0.1).step((key, ps[key], grads[key]) for key in ps)
    for key in ps:
        assert id(ps[key]) == ids[key]
        assert not np.array_equal(ps[key], before[key])
        assert_array_equal(grads[key], saved[key])  # weight decay must not write into the gradient


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_arrays_round_trip(name):
    rng = np.random.default_rng(3)
    ps = params(rng)
    grads = [{key: rng.normal(size=p.shape) for key, p in ps.items()} for _ in range(3)]
    first = make(name, weight_decay=0.05)
    for g in grads[:2]:
        first.step((key, ps[key], g[key]) for key in ps)
    state = first.state_arrays()
    expected_slots = {"sgd": set(), "momentum": {"v"}, "adam": {"m", "s"}}[name]
    assert set(state) == {f"{key}/{slot}" for key in ps for slot in expected_slots}

    second = make(name, weight_decay=0.05)
    second.load_state_arrays({key: a.copy() for key, a in state.items()}, first.t)
    assert second.t == 2
    copies = {key: p.copy() for key, p in ps.items()}
    first.step((key, ps[key], grads[2][key]) for key in ps)
    second.step((key, copies[key], grads[2][key]) for key in ps)
    for key in ps:
        assert_array_equal(copies[key], ps[key])
    for key, a in first.state_arrays().items():
        assert_array_equal(second.state_arrays()[key], a)


def test_loaded_state_does_not_alias_the_source():
    source = {"w/v": np.array([1.0, 2.0])}
    opt = Momentum(0.1)
    opt.load_state_arrays(source, 5)
    source["w/v"][0] = 99.0
    assert_array_equal(opt.state_arrays()["w/v"], [1.0, 2.0])
    assert opt.t == 5


def test_optimizer_registry_lookup():
    assert optimizer_class("adam") is Adam


def test_unknown_optimizer_lists_every_valid_name():
    with pytest.raises(ConfigError) as err:
        optimizer_class("rmsprop")
    assert "'rmsprop'" in str(err.value)
    assert all(name in str(err.value) for name in OPTIMIZERS)


# ----------------------------------------------------------------------------- gradient clipping


def test_clip_then_weight_decay_by_hand():
    # g = ([3, 0], [4]): ‖g‖ = √(9 + 0 + 16) = 5 > C = 1, so g ← g · 1 / (5 + 1e-6) (torch's clip_grad_norm_);
    # then weight decay g ← g + 0.5 p, then p ← p − 0.1 g:
    #   3 / 5.000001 = 0.599999880000024 and 4 / 5.000001 = 0.799999840000032, so
    #   p1 = [1, 2] − 0.1 · ([0.599999880000024, 0] + [0.5, 1]) = [0.8900000119999976, 1.9]
    #   p2 = −2 − 0.1 · (0.799999840000032 − 1) = −1.9799999840000032
    p1, p2 = np.array([[1.0, 2.0]]), np.array([[-2.0]])
    opt = SGD(0.1, weight_decay=0.5, clip_norm=1.0)
    opt.step([("a", p1, np.array([[3.0, 0.0]])), ("b", p2, np.array([[4.0]]))])
    assert_allclose(p1, [[0.8900000119999976, 1.9]], rtol=1e-15)
    assert_allclose(p2, [[-1.9799999840000032]], rtol=1e-15)
    assert opt.grad_norm == 5.0  # before clipping
    # decay first, then clip, would give ‖[3.5, 1, 3]‖ = √22.25 and p1[0] = 1 − 0.1 · 3.5 / 4.717 = 0.9258: far off


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_norm_within_clip_norm_changes_nothing(name):
    rng = np.random.default_rng(4)
    ps = params(rng)
    grads = {key: 0.01 * rng.normal(size=p.shape) for key, p in ps.items()}  # ‖g‖ ≈ 0.03 < 1
    clipped_ps = {key: p.copy() for key, p in ps.items()}
    make(name, 0.05).step((key, ps[key], grads[key]) for key in ps)
    clipped = OPTIMIZERS[name](LR, weight_decay=0.05, clip_norm=1.0, **HYPER[name])
    clipped.step((key, clipped_ps[key], grads[key]) for key in ps)
    for key in ps:
        assert_array_equal(clipped_ps[key], ps[key])
    assert clipped.grad_norm == pytest.approx(np.sqrt(sum(np.sum(g * g) for g in grads.values())), rel=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_clipping_equals_the_update_with_gradients_scaled_to_norm_c(name):
    rng = np.random.default_rng(5)
    ps = params(rng)
    grads = {key: 10 * rng.normal(size=p.shape) for key, p in ps.items()}
    norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
    scaled = {key: g * (2.0 / (norm + 1e-6)) for key, g in grads.items()}  # what clip_grad_norm_(·, 2.0) leaves
    expected = {key: p.copy() for key, p in ps.items()}
    for _ in range(2):
        make(name).step((key, expected[key], scaled[key]) for key in ps)  # (a fresh optimiser each step: t = 1)
        OPTIMIZERS[name](LR, clip_norm=2.0, **HYPER[name]).step((key, ps[key], grads[key]) for key in ps)
    for key in ps:
        assert_allclose(ps[key], expected[key], rtol=1e-14)


def test_clipping_leaves_the_gradient_arrays_alone():
    g = np.array([[30.0, 40.0]])
    SGD(0.1, clip_norm=1.0, weight_decay=0.1).step([("w", np.zeros((1, 2)), g)])
    assert_array_equal(g, [[30, 40]])


def test_no_clip_norm_no_norm():
    opt = SGD(0.1)
    opt.step([("w", np.zeros(2), np.ones(2))])
    assert opt.grad_norm is None  # computing it costs a pass over every gradient: only when clipping


def test_end_epoch_steps_the_schedule():
    from nnctl.schedules import StepDecay

    opt = Adam(0.1)
    opt.end_epoch(1.0)
    assert opt.learning_rate == 0.1  # no schedule: constant
    opt.schedule = StepDecay(0.1, step_size=1, gamma=0.5)
    opt.end_epoch(1.0)
    opt.end_epoch(1.0)
    assert opt.learning_rate == 0.025
