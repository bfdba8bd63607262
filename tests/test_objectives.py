"""nnctl.objectives: hand-worked values from SPEC §1, finite differences, and ε at ŷ = 0 or 1."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import central_difference, check_close
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from nnctl.errors import ConfigError
from nnctl.objectives import OBJECTIVES, AbsoluteError, CrossEntropy, Huber, LogLoss, SquaredError, objective_class

EPS = 1e-7


def a(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# ----------------------------------------------------------------------------- hand-worked values


def test_squared_error_by_hand():
    y, yhat = a([1, 2], [0, 0]), a([0, 4], [1, 1])
    # rows: (1−0)² + (2−4)² = 5 and 1 + 1 = 2; mean 3.5
    assert SquaredError().eval(y, yhat) == 3.5
    assert_array_equal(SquaredError().gradient(y, yhat), [[-2, 4], [2, 2]])  # −2 (y − ŷ)


def test_absolute_error_by_hand():
    y, yhat = a([1, 2, 3], [0, 0, 0]), a([0, 4, 3], [1, -0.5, 0])
    # rows: |1| + |−2| + |0| = 3 and |−1| + |0.5| + 0 = 1.5; mean 2.25
    assert AbsoluteError().eval(y, yhat) == 2.25
    assert_array_equal(AbsoluteError().per_row(y, yhat), [3, 1.5])
    # −sign(y − ŷ): y − ŷ = [1, −2, 0] and [−1, 0.5, 0]; 0 where ŷ = y
    assert_array_equal(AbsoluteError().gradient(y, yhat), [[-1, 1, 0], [1, -1, 0]])


def test_huber_by_hand():
    y, yhat = a([0, 0, 0, 0]), a([0.5, -1, 3, -2.5])
    # r = y − ŷ = [−0.5, 1, −3, 2.5], δ = 1: ½·0.25 = 0.125; |r| = δ is quadratic: ½; beyond: 1·(3 − ½) = 2.5 and
    # 1·(2.5 − ½) = 2; row sum 0.125 + 0.5 + 2.5 + 2 = 5.125
    assert Huber().eval(y, yhat) == 5.125
    # −r inside: [0.5, −1]; −δ sign(r) outside: [1, −1]
    assert_array_equal(Huber().gradient(y, yhat), [[0.5, -1, 1, -1]])
    # δ = 2: ½·0.25 = 0.125 and ½·1 = 0.5 inside; 2·(3 − 1) = 4 and 2·(2.5 − 1) = 3 beyond; sum 7.625
    wide = Huber(delta=2.0)
    assert wide.eval(y, yhat) == 7.625
    assert_array_equal(wide.gradient(y, yhat), [[0.5, -1, 2, -2]])


@pytest.mark.parametrize("delta", [0.5, 1.0, 3.0])
def test_huber_is_half_squared_error_within_delta_and_linear_beyond(delta):
    """Within ±δ Huber is ½ of squared error (value and gradient); far out it grows like δ·|r|, as absolute error."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(20, 3))
    near = y - rng.uniform(-delta, delta, size=y.shape)
    assert_allclose(Huber(delta=delta).per_row(y, near), SquaredError().per_row(y, near) / 2, rtol=1e-14)
    assert_allclose(Huber(delta=delta).gradient(y, near), SquaredError().gradient(y, near) / 2, rtol=1e-14)
    far = y - rng.choice([-1, 1], size=y.shape) * rng.uniform(delta, 10 * delta, size=y.shape)
    assert_allclose(Huber(delta=delta).gradient(y, far), delta * AbsoluteError().gradient(y, far), rtol=0)
    shift = delta * delta / 2 * y.shape[1]  # δ(|r| − δ/2) summed over the 3 columns
    assert_allclose(Huber(delta=delta).per_row(y, far), delta * AbsoluteError().per_row(y, far) - shift, rtol=1e-13)


def test_log_loss_at_y0_yhat_02():
    y, yhat = a([0]), a([0.2])
    # −ln(1 − 0.2 + ε) = −(ln 0.8 + 1e-7/0.8 − …) = 0.2231435513142098 − 1.25e-7 = 0.22314342631421…
    assert LogLoss().eval(y, yhat) == pytest.approx(0.22314342631421757, rel=1e-14)
    # −(0 − 0.2) / (0.2·0.8 + ε) = 0.2 / 0.1600001 = 1.25 · (1 − 6.25e-7 + …) = 1.24999921875049
    assert_allclose(LogLoss().gradient(y, yhat), [[1.2499992187504883]], rtol=1e-14)


def test_log_loss_sums_columns_and_averages_rows():
    y, yhat = a([0, 1], [1, 0]), a([0.2, 0.2], [0.5, 0.5])
    # row 1: −ln(0.8 + ε) − ln(0.2 + ε) = 0.2231434263142 + 1.6094374124342 = 1.8325808387484
    # row 2: −ln(0.5 + ε) − ln(0.5 + ε) = 2·(0.6931471805599 − 2e-7) = 1.3862939611199
    # mean: (1.8325808387484 + 1.3862939611199) / 2 = 1.6094373999342
    assert LogLoss().eval(y, yhat) == pytest.approx(1.6094373999342, rel=1e-12)
    # −(y − ŷ)/(ŷ(1 − ŷ) + ε): 0.2/0.1600001, −0.8/0.1600001, −0.5/0.2500001, 0.5/0.2500001 = 2/(1 + 4e-7)
    expected = [[1.2499992187504883, -4.999996875001953], [-1.99999920000032, 1.99999920000032]]
    assert_allclose(LogLoss().gradient(y, yhat), expected, rtol=1e-13)


def test_cross_entropy_by_hand():
    y, yhat = a([1, 0, 0]), a([0.2, 0.2, 0.6])
    # −ln(0.2 + ε) = −(ln 0.2 + 1e-7/0.2 − …) = 1.6094379124341003 − 5e-7 = 1.6094374124342…
    assert CrossEntropy().eval(y, yhat) == pytest.approx(1.6094374124342252, rel=1e-14)
    # −y/(ŷ + ε) = [−1/0.2000001, 0, 0] = [−5·(1 − 5e-7 + …), 0, 0]
    assert_allclose(CrossEntropy().gradient(y, yhat), [[-4.99999750000125, 0, 0]], rtol=1e-14)


@pytest.mark.parametrize(
    ("cls", "y", "yhat", "value", "grad"),
    [
        # −[ln(0 + ε) + ln(1 − 1 + ε)] = −2 ln 1e-7 = 2·16.11809565095832; −(1 − 0)/ε = −1e7, −(0 − 1)/ε = 1e7
        (LogLoss, [1, 0], [0, 1], 32.23619130191664, [-1e7, 1e7]),
        # right answers: −[ln(1 + ε) + ln(1 − 0 + ε)] ≈ −2e-7 (ε makes it a hair negative); gradients 0
        (LogLoss, [1, 0], [1, 0], -2e-7, [0, 0]),
        # −ln(0 + ε) = 16.11809565095832; −1/ε = −1e7
        (CrossEntropy, [1, 0], [0, 1], 16.11809565095832, [-1e7, 0]),
        (CrossEntropy, [0, 1], [0, 1], -1e-7, [0, -1 / (1 + 1e-7)]),  # −ln(1 + ε) ≈ −1e-7
    ],
)
def test_losses_are_finite_at_yhat_zero_or_one(cls, y, yhat, value, grad):
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss = cls().eval(a(y), a(yhat))
        g = cls().gradient(a(y), a(yhat))
    assert loss == pytest.approx(value, rel=1e-6)
    assert_allclose(g, [grad], rtol=1e-12)


def test_epsilon_is_configurable():
    # cross entropy, ε = 0.05: −ln(0.2 + 0.05) = ln 4 = 1.3862943611198906; −1/0.25 = −4
    ce = CrossEntropy(epsilon=0.05)
    assert ce.eval(a([1, 0]), a([0.2, 0.8])) == pytest.approx(1.3862943611198906, rel=1e-15)
    assert_allclose(ce.gradient(a([1, 0]), a([0.2, 0.8])), [[-4, 0]], rtol=1e-15)
    # log loss, ε = 0.01 at y = 0, ŷ = 0.5: −ln(0.51) = 0.6733445532637656; 0.5 / (0.25 + 0.01) = 1.923076923…
    ll = LogLoss(epsilon=0.01)
    assert ll.eval(a([0]), a([0.5])) == pytest.approx(0.6733445532637656, rel=1e-15)
    assert_allclose(ll.gradient(a([0]), a([0.5])), [[1.923076923076923]], rtol=1e-15)


# ----------------------------------------------------------------------------- against central differences


KINKS = {"absolute_error": 0.0, "huber": 1.0}  # |y − ŷ| where the derivative (or its derivative) jumps


def targets_and_predictions(name: str, rng: np.random.Generator, N: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """y and ŷ where each objective is smooth: ŷ ∈ (0.05, 0.95) for log loss, (0.05, 1) for cross entropy, and
    |y − ŷ| at least 0.05 from a kink for absolute error and Huber."""
    kind = OBJECTIVES[name].targets
    if kind == "binary":
        return rng.integers(0, 2, size=(N, K)).astype(float), rng.uniform(0.05, 0.95, size=(N, K))
    if kind == "classes":
        return np.eye(K)[rng.integers(0, K, size=N)], rng.dirichlet(np.ones(K), size=N) * 0.95 + 0.05
    y = rng.normal(size=(N, K))
    if name not in KINKS:
        return y, rng.normal(size=(N, K))
    distance = rng.uniform(0.05, 1.5, size=(N, K)) * rng.choice([-1, 1], size=(N, K))  # from the kink, either side
    r = np.abs(KINKS[name] + distance) * rng.choice([-1, 1], size=(N, K))
    return y, y - r


# h = 1e-5: truncation h²·f‴/6 and rounding u·|J|/h are both ~1e-10 relative for these well-scaled values.
# ε = 0 makes the SPEC formulas exact derivatives (tolerance 1e-6); cross entropy's −y/(ŷ + ε) is the exact
# derivative of −y ln(ŷ + ε) at any ε, and squared error has no ε. Log loss's −(y − ŷ)/(ŷ(1 − ŷ) + ε) differs
# from the derivative of its own ε-value by a relative ε/ŷ or ε/(1 − ŷ), at most 1e-7/0.05 = 2e-6 here: 1e-5.
@pytest.mark.parametrize(
    ("name", "epsilon", "tol"),
    [(name, 0.0, 1e-6) for name in OBJECTIVES]
    + [("squared_error", EPS, 1e-6), ("cross_entropy", EPS, 1e-6), ("log_loss", EPS, 1e-5)],
)
@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 6), K=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_gradient_matches_central_differences(name, epsilon, tol, N, K, seed):
    objective = OBJECTIVES[name](epsilon=epsilon)
    y, yhat = targets_and_predictions(name, np.random.default_rng(seed), N, K)
    analytic = objective.gradient(y, yhat)
    assert analytic.shape == (N, K)
    # gradient() is per row (∂J_n/∂ŷ_n) and eval() the mean over rows, so the numeric gradient is scaled by N
    numeric = N * central_difference(lambda: objective.eval(y, yhat), yhat)
    check_close(analytic, numeric, tol, f"{name} ε={epsilon}")


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_eval_returns_a_python_float(name):
    y, yhat = targets_and_predictions(name, np.random.default_rng(0), 3, 2)
    assert type(OBJECTIVES[name]().eval(y, yhat)) is float


# ----------------------------------------------------------------------------- registry


def test_objective_registry_lookup():
    assert objective_class("cross_entropy") is CrossEntropy


def test_unknown_objective_lists_every_valid_name():
    with pytest.raises(ConfigError) as err:
        objective_class("hinge")
    assert "'hinge'" in str(err.value)
    assert all(name in str(err.value) for name in OBJECTIVES)
