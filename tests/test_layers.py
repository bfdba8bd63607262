"""nnctl.layers: hand-worked values from SPEC §1, finite differences over the registry, numerical care, init."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from helpers import (
    ACTIVATIONS,
    away_from_zero,
    build_layer,
    central_difference,
    check_close,
    jacobian_product,
    relative_error,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal

from nnctl.errors import ConfigError
from nnctl.layers import (
    LAYERS,
    Dropout,
    FullyConnected,
    Input,
    LeakyReLU,
    Linear,
    Logistic,
    ReLU,
    Softmax,
    Softplus,
    Tanh,
    layer_class,
)
from nnctl.network import Network, build_modules
from nnctl.objectives import SquaredError
from nnctl.seeds import streams

EPS = 1e-7
# Central differences with h = 1e-5 in float64: truncation h²·f‴/6 ≈ 1e-11 and rounding u·|f|/h ≈ 1e-10, both
# relative to O(1) gradients here (inputs kept in 0.1 ≤ |x| ≤ 2). Measured errors are ≤ 1e-8, so 1e-6 is tight
# while any real mistake (a sign, a missing /N, a transposed W, a wrong Jacobian term) gives errors of order 1.
FD_TOL = 1e-6
WITH_EPSILON = {"logistic", "sigmoid", "tanh"}  # SPEC §1: these derivatives carry a "+ ε"

shapes = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))  # (N, D, K)
seeds = st.integers(0, 2**32 - 1)


def rows(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float64)


# ----------------------------------------------------------------------------- hand-worked values


def course_layer() -> FullyConnected:
    fc = FullyConnected(4, 2)
    fc.params["W"][...] = [[1, 2], [3, 4], [5, 6], [7, 8]]
    fc.params["b"][...] = [[-1, 2]]
    return fc


def test_fully_connected_forward_is_the_course_example():
    # [1,2,3,4]·W = [1+6+15+28, 2+8+18+32] = [50, 60]; + b = [49, 62]
    assert_array_equal(course_layer().forward(rows(1, 2, 3, 4)), [[49, 62]])


def test_fully_connected_backward_and_parameter_gradients_by_hand():
    fc = course_layer()
    X = np.array([[1.0, 2, 3, 4], [0, 1, 0, -1]])
    # row 2: [0,1,0,-1]·W = [3-7, 4-8] = [-4, -4]; + b = [-5, -2]
    assert_array_equal(fc.forward(X), [[49, 62], [-5, -2]])
    delta = np.array([[1.0, 2], [3, -2]])
    # δWᵀ: row 1 [1+4, 3+8, 5+12, 7+16]; row 2 [3-4, 9-8, 15-12, 21-16]
    assert_array_equal(fc.backward(delta), [[5, 11, 17, 23], [-1, 1, 3, 5]])
    # Xᵀδ: d=0: 1·[1,2] + 0·[3,-2] = [1,2]; d=1: 2·[1,2] + 1·[3,-2] = [5,2];
    #      d=2: 3·[1,2] = [3,6];            d=3: 4·[1,2] − [3,-2] = [1,10];  then / N = 2
    assert_array_equal(fc.grads["W"], [[0.5, 1], [2.5, 1], [1.5, 3], [0.5, 5]])
    assert_array_equal(fc.grads["b"], [[2, 0]])  # mean([1,2], [3,-2])
    assert_array_equal(fc.gradient(), [[1, 3, 5, 7], [2, 4, 6, 8]])  # Wᵀ


def test_fully_connected_grads_are_written_in_place():
    fc = course_layer()
    gW, gb = fc.grads["W"], fc.grads["b"]
    fc.forward(rows(1, 2, 3, 4))
    fc.backward(rows(1, 2))
    assert fc.grads["W"] is gW and fc.grads["b"] is gb
    assert_array_equal(gW, [[1, 2], [2, 4], [3, 6], [4, 8]])  # Xᵀδ with N = 1


def test_linear_is_the_identity():
    m = Linear()
    z = rows(-2, 0, 3)
    assert_array_equal(m.forward(z), z)
    assert_array_equal(m.gradient(), [[1, 1, 1]])
    assert_array_equal(m.backward(rows(5, 6, 7)), [[5, 6, 7]])


def test_relu_by_hand_with_derivative_one_at_zero():
    m = ReLU()
    assert_array_equal(m.forward(rows(-2, 0, 3)), [[0, 0, 3]])
    assert_array_equal(m.gradient(), [[0, 1, 1]])  # SPEC: 1 where z ≥ 0, so 1 at exactly 0
    assert_array_equal(m.backward(rows(5, 6, 7)), [[0, 6, 7]])


def test_logistic_by_hand():
    m = Logistic()
    # g(0) = 1/2; g(ln 3) = 1/(1 + 1/3) = 3/4; g(−ln 3) = 1/(1 + 3) = 1/4
    assert_allclose(m.forward(rows(0, math.log(3), -math.log(3))), [[0.5, 0.75, 0.25]], rtol=1e-15)
    # g(1 − g) + ε: 1/4 + 1e-7 = 0.2500001; 3/16 + 1e-7 = 0.1875001 (twice)
    assert_allclose(m.gradient(), [[0.2500001, 0.1875001, 0.1875001]], rtol=1e-14)
    assert_allclose(m.backward(rows(2, 2, -4)), [[0.5000002, 0.3750002, -0.7500004]], rtol=1e-14)


def test_tanh_by_hand():
    m = Tanh()
    # tanh(ln 2) = (2 − 1/2) / (2 + 1/2) = 0.6; tanh(−ln 2) = −0.6
    assert_allclose(m.forward(rows(0, math.log(2), -math.log(2))), [[0, 0.6, -0.6]], rtol=1e-15)
    # 1 − g² + ε: 1 + 1e-7 = 1.0000001; 1 − 0.36 + 1e-7 = 0.6400001
    assert_allclose(m.gradient(), [[1.0000001, 0.6400001, 0.6400001]], rtol=1e-14)
    assert_allclose(m.backward(rows(1, 2, 3)), [[1.0000001, 1.2800002, 1.9200003]], rtol=1e-14)


def test_leaky_relu_by_hand_with_derivative_one_at_zero():
    m = LeakyReLU(alpha=0.1)
    assert_allclose(m.forward(rows(-2, 0, 3)), [[-0.2, 0, 3]], rtol=1e-15)
    assert_array_equal(m.gradient(), [[0.1, 1, 1]])  # 1 where z ≥ 0, as relu
    assert_allclose(m.backward(rows(5, 6, 7)), [[0.5, 6, 7]], rtol=1e-15)
    assert LeakyReLU().alpha == 0.01  # the default


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 2.5])
def test_leaky_relu_slopes_including_zero_and_above_one(alpha):
    z = rows(-4, -0.5, 0, 0.5, 4)
    m = LeakyReLU(alpha=alpha)
    assert_allclose(m.forward(z), np.where(z >= 0, z, alpha * z), rtol=1e-15)
    assert_array_equal(m.backward(np.ones_like(z)), [[alpha, alpha, 1, 1, 1]])


def test_softplus_by_hand():
    m = Softplus()
    # ln(1 + e^0) = ln 2; ln(1 + 3) = ln 4; ln(1 + 1/3) = ln(4/3)
    assert_allclose(m.forward(rows(0, math.log(3), -math.log(3))), [[math.log(2), math.log(4), math.log(4 / 3)]])
    # 1 / (1 + e^{−z}): 1/2, 1/(1 + 1/3) = 3/4, 1/(1 + 3) = 1/4
    assert_allclose(m.gradient(), [[0.5, 0.75, 0.25]], rtol=1e-15)
    assert_allclose(m.backward(rows(2, 4, -4)), [[1, 3, -1]], rtol=1e-15)


@pytest.mark.parametrize(
    ("z", "g", "derivative"),
    [
        (1e4, 1e4, 1.0),  # ln(1 + e^{1e4}) overflows if computed naively
        (-1e4, 0.0, 0.0),
        (-700.0, math.exp(-700), math.exp(-700)),  # ≈ 9.86e-305: the far tail stays positive, not 0
        (40.0, 40.0, 1.0),  # ln(1 + e^40) = 40 + 4e-18 and 1 − 4e-18 both round to these
    ],
)
def test_softplus_extremes_neither_overflow_nor_warn(z, g, derivative):
    m = Softplus()
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        out, grad = m.forward(rows(z)), m.gradient()
    assert_allclose(out, [[g]], rtol=1e-12)
    assert_allclose(grad, [[derivative]], rtol=1e-12)


# ----------------------------------------------------------------------------- dropout


def training_dropout(rate: float, seed: int = 0, dtype=np.float64) -> Dropout:
    (m,) = build_modules([("dropout", {"rate": rate})], 4, noise=np.random.default_rng(seed), dtype=dtype)
    m.training = True
    return m


@pytest.mark.parametrize(("rate", "scale"), [(0.5, 2.0), (0.75, 4.0), (0.2, 1.25)])
def test_dropout_by_hand_keeps_or_zeroes_and_scales_by_one_over_one_minus_rate(rate, scale):
    m = training_dropout(rate)
    x = np.arange(1.0, 41.0).reshape(10, 4)
    out = m.forward(x)
    kept = out != 0
    assert 0 < kept.sum() < x.size  # 40 units: some of each
    assert_array_equal(out[kept], scale * x[kept])  # x ⊙ m / (1 − rate)
    assert_array_equal(m.gradient(), scale * kept)  # the diagonal m / (1 − rate)
    delta = np.full_like(x, 3.0)
    assert_array_equal(m.backward(delta), 3.0 * scale * kept)


def test_dropout_is_the_identity_in_evaluation_mode_and_at_rate_zero():
    x = np.arange(12.0).reshape(3, 4)
    m = training_dropout(0.5)
    m.training = False
    assert m.forward(x) is x
    assert_array_equal(m.gradient(), np.ones_like(x))
    assert_array_equal(m.backward(2 * x), 2 * x)
    zero = training_dropout(0.0)
    before = zero.noise.bit_generator.state
    assert zero.forward(x) is x and zero.noise.bit_generator.state == before  # no draws at all


def test_dropout_keeps_units_with_probability_one_minus_rate_and_is_unbiased():
    m = training_dropout(0.3)
    x = np.ones((1000, 1000))
    out = m.forward(x)
    # 10⁶ Bernoulli(0.7) draws: the kept fraction has std √(0.7·0.3/10⁶) ≈ 4.6e-4
    assert abs(np.count_nonzero(out) / x.size - 0.7) < 3e-3
    assert abs(out.mean() - 1.0) < 5e-3  # E[m / (1 − rate)] = 1: inverted dropout leaves the mean alone
    columns = np.count_nonzero(out, axis=0) / 1000  # and no unit is favoured: every column near 0.7
    assert np.abs(columns - 0.7).max() < 0.08


def test_dropout_masks_come_from_the_seeded_generator():
    x = np.ones((16, 4))
    first = [training_dropout(0.5, seed=1).forward(x) for _ in range(2)]
    assert_array_equal(first[0], first[1])  # same seed, same mask
    assert not np.array_equal(first[0], training_dropout(0.5, seed=2).forward(x))
    m = training_dropout(0.5, seed=1)
    assert not np.array_equal(m.forward(x), m.forward(x))  # a new mask every batch
    # float32 and float64 runs drop the same units (the mask is drawn as bits, not as floats)
    assert_array_equal(training_dropout(0.5, seed=1, dtype=np.float32).forward(x.astype(np.float32)), first[0])


def test_dropout_in_float32_makes_no_float64_temporary():
    m = training_dropout(0.5, dtype=np.float32)
    x = np.ones((500, 400), dtype=np.float32)
    m.forward(x)  # allocates the reused mask buffer
    tracemalloc.start()
    try:
        out = m.forward(x)
        _, peak = tracemalloc.get_traced_memory()
        back = m.backward(x)
    finally:
        tracemalloc.stop()
    assert out.dtype == back.dtype == m.gradient().dtype == np.float32
    # 4 bytes per unit: the 32 random bits (freed once compared into the reused mask), then the output;
    # a float64 temporary would need 8 (measured: 4.05 here, 12 for rng.random(shape).astype(np.float32))
    assert peak < 6 * x.size


def test_dropout_frozen_mask_is_reused_until_released():
    m = training_dropout(0.5)
    x = np.ones((8, 4))
    m.freeze_mask()
    first = m.forward(x)
    assert_array_equal(m.forward(2 * x), 2 * first)
    m.freeze_mask(False)
    assert not np.array_equal(m.forward(x), first)


def test_dropout_in_a_network_draws_only_in_training_mode():
    rng = np.random.default_rng(0)
    spec = [("fully_connected", {"units": 50}), ("dropout", {"rate": 0.5}), ("fully_connected", {"units": 2})]
    net = Network(build_modules(spec, 3, rng=rng, noise=streams(0)["dropout"]), SquaredError())
    x = rng.normal(size=(20, 3))
    evaluated = net.forward(x)
    assert_array_equal(net.forward(x), evaluated)  # evaluation mode (a network's default): deterministic
    net.train()
    assert not np.allclose(net.forward(x), evaluated)
    assert_array_equal(net.eval().forward(x), evaluated)
    assert net.generators() == [net.modules[1].noise]


@pytest.mark.parametrize(("rate", "expected"), [(1, "a number < 1, got 1"), (-0.1, "a number ≥ 0, got -0.1")])
def test_dropout_rate_outside_zero_to_one_is_a_config_error_naming_the_key(rate, expected):
    with pytest.raises(ConfigError, match=f"dropout.rate: expected {expected}"):
        build_modules([("dropout", {"rate": rate})], 3)


@pytest.mark.parametrize("shift", [0.0, 1000.0, -1000.0])
def test_softmax_and_its_jacobian_by_hand(shift):
    m = Softmax()
    # e^z = [1, 2, 5], Σ = 8 → g = [1/8, 2/8, 5/8]; adding a constant to every logit changes nothing
    z = np.log([[1.0, 2.0, 5.0]]) + shift
    assert_allclose(m.forward(z), [[0.125, 0.25, 0.625]], rtol=1e-12)
    # J_ij = g_i (δ_ij − g_j), e.g. J_00 = 1/8 · 7/8 = 0.109375, J_01 = −1/8 · 2/8 = −0.03125, J_22 = 5/8 · 3/8
    jac = [
        [0.109375, -0.03125, -0.078125],
        [-0.03125, 0.1875, -0.15625],
        [-0.078125, -0.15625, 0.234375],
    ]
    assert m.gradient().shape == (1, 3, 3)
    assert_allclose(m.gradient()[0], jac, rtol=1e-12, atol=1e-15)
    # δ·J with δ = [1, 2, 3]: Σ δ_i g_i = 1/8 + 4/8 + 15/8 = 2.5; g_j (δ_j − 2.5) = [−0.1875, −0.125, 0.3125]
    assert_allclose(m.backward(rows(1, 2, 3)), [[-0.1875, -0.125, 0.3125]], rtol=1e-12)


def test_input_before_fitting_is_the_identity():
    m = Input(2)
    assert_array_equal(m.state["mean"], [[0, 0]])
    assert_array_equal(m.state["std"], [[1, 1]])
    assert_array_equal(m.forward(rows(3, -4)), [[3, -4]])


def test_input_fits_zscore_with_zero_std_as_one():
    m = Input(2)
    m.fit(np.array([[0.0, 10], [4, 10]]))
    # μ = [2, 10]; σ = [2 (population std of 0 and 4), 0 → 1]
    assert_array_equal(m.state["mean"], [[2, 10]])
    assert_array_equal(m.state["std"], [[2, 1]])
    assert_array_equal(m.forward(np.array([[0.0, 10], [4, 10], [6, 12]])), [[-1, 0], [1, 0], [2, 2]])
    assert_array_equal(m.gradient(), [[0.5, 1]] * 3)  # 1/σ
    assert_array_equal(m.backward(np.array([[2.0, 3]] * 3)), [[1, 3]] * 3)  # δ/σ


def test_input_without_normalisation_ignores_fit():
    m = Input(2, normalize="none")
    m.fit(np.array([[0.0, 10], [4, 10]]))
    assert_array_equal(m.forward(rows(3, -4)), [[3, -4]])


def test_input_rejects_an_unknown_normalisation():
    with pytest.raises(ConfigError, match="'minmax'"):
        build_modules([("input", {"normalize": "minmax"})], 2)


@pytest.mark.parametrize(
    ("cls", "epsilon", "expected"),
    [
        (Logistic, 1e-3, 0.251),  # g(0)(1 − g(0)) + ε = 1/4 + 1e-3
        (Tanh, 0.5, 1.5),  # 1 − tanh(0)² + ε = 1 + 0.5
    ],
)
def test_epsilon_is_configurable(cls, epsilon, expected):
    m = cls(epsilon=epsilon)
    m.forward(rows(0.0))
    assert_allclose(m.gradient(), [[expected]], rtol=1e-15)


# ----------------------------------------------------------------------------- every registered layer


@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds)
def test_backward_and_parameter_gradients_match_central_differences(name, shape, seed):
    """With ε = 0 the analytic derivative must be the exact one; the + ε of SPEC §1 is tested on its own below."""
    N, D, K = shape
    rng = np.random.default_rng(seed)
    m = build_layer(name, D, K, rng, epsilon=0.0)
    if hasattr(m, "fit"):
        m.fit(rng.normal(1.0, 3.0, size=(8, D)))
    x = away_from_zero(rng, (N, D))  # keeps every ReLU input ≥ 0.1 from its kink
    out = m.forward(x)
    assert out.shape == (N, m.out_features or D)
    upstream = rng.normal(size=out.shape)
    analytic = m.backward(upstream)
    grads = {key: g.copy() for key, g in m.grads.items()}

    def f() -> float:  # a random linear functional of the output: its gradient w.r.t. x is upstream · ∂out/∂x
        return float(np.sum(upstream * m.forward(x)))

    check_close(analytic, central_difference(f, x), FD_TOL, f"{name} δ")
    assert set(grads) == set(m.params)
    for key, p in m.params.items():  # grads are of the batch mean: ∂J/∂W = Xᵀδ / N
        check_close(grads[key], central_difference(f, p) / N, FD_TOL, f"{name} {key}")


@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds)
def test_backward_is_delta_times_gradient(name, shape, seed):
    N, D, K = shape
    rng = np.random.default_rng(seed)
    m = build_layer(name, D, K, rng)
    out = m.forward(rng.normal(size=(N, D)))
    delta = rng.normal(size=out.shape)
    assert relative_error(m.backward(delta), jacobian_product(m, delta)) < 1e-12


@pytest.mark.parametrize("name", ACTIVATIONS)
@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=seeds)
def test_epsilon_enters_only_the_derivatives_the_spec_names(name, shape, seed):
    """backward with ε minus backward with ε = 0 is ε·δ for logistic and tanh, and exactly 0 for the others."""
    N, D, _ = shape
    rng = np.random.default_rng(seed)
    x, delta = rng.normal(0, 3, size=(N, D)), rng.normal(size=(N, D))
    with_eps, without = build_layer(name, D, 1, rng, epsilon=EPS), build_layer(name, D, 1, rng, epsilon=0.0)
    assert_array_equal(with_eps.forward(x), without.forward(x))
    expected = EPS * delta if name in WITH_EPSILON else np.zeros_like(delta)
    assert_allclose(with_eps.backward(delta) - without.backward(delta), expected, rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 40), k=st.integers(1, 40), seed=seeds)
def test_shapes_of_forward_gradient_and_backward(name, n, d, k, seed):
    rng = np.random.default_rng(seed)
    m = build_layer(name, d, k, rng)
    x = rng.normal(size=(n, d))
    out = m.forward(x)
    width = m.out_features or d
    assert out.shape == (n, width)
    assert m.backward(np.ones_like(out)).shape == x.shape
    jac = m.gradient()
    if isinstance(m, FullyConnected):
        assert jac.shape == (width, d)  # Wᵀ
    elif isinstance(m, Softmax):
        assert jac.shape == (n, width, width)
    else:
        assert jac.shape == (n, width)  # the diagonals of element-wise Jacobians


# ----------------------------------------------------------------------------- softmax


@settings(max_examples=50, deadline=None)
@given(z=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8), elements=st.floats(-300, 300)))
def test_softmax_rows_are_probabilities(z):
    g = Softmax().forward(z)
    assert g.shape == z.shape
    assert np.all(g > 0) and np.all(g <= 1)  # logits within 600 of each other: e^{−600} is still > 0
    assert_allclose(g.sum(axis=1), 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        ([1e4, 0.0, -1e4], [1.0, 0.0, 0.0]),
        ([1e4, 1e4, 1e4], [1 / 3, 1 / 3, 1 / 3]),
        ([-1e4, -1e4, -1e4], [1 / 3, 1 / 3, 1 / 3]),
        ([1e4, 1e4 - math.log(3)], [0.75, 0.25]),  # e^0 : e^{−ln 3} = 1 : 1/3
    ],
)
def test_softmax_of_huge_logits_is_finite_and_correct(z, expected):
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        g = Softmax().forward(np.array([z]))
    assert_allclose(g, [expected], rtol=1e-11, atol=0)


def test_softmax_backward_builds_no_k_by_k_matrix():
    K = 2000
    m = Softmax()
    rng = np.random.default_rng(0)
    m.forward(rng.normal(size=(2, K)))
    delta = rng.normal(size=(2, K))
    tracemalloc.start()
    try:
        m.backward(delta)
        _, vjp_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        m.gradient()  # proves the measurement sees a (N, K, K) array when one is built
        _, jacobian_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert jacobian_peak >= K * K * 8
    assert vjp_peak < K * K * 8 / 100  # a few (N, K) temporaries: ~100 kB against 32 MB for one K×K


# ----------------------------------------------------------------------------- logistic and tanh extremes


@pytest.mark.parametrize(
    ("z", "g", "derivative"),
    [
        (1e4, 1.0, EPS),  # g(1 − g) underflows to 0, leaving ε
        (-1e4, 0.0, EPS),
        (1e-300, 0.5, 0.25 + EPS),
        (-1e-300, 0.5, 0.25 + EPS),
        (0.0, 0.5, 0.25 + EPS),
    ],
)
def test_logistic_extremes_neither_overflow_nor_warn(z, g, derivative):
    m = Logistic()
    # Underflow is ignored (NumPy's default): e^{−1e4} → 0 is the correctly rounded answer, not an error.
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        out = m.forward(rows(z))
        grad = m.gradient()
        back = m.backward(rows(2.0))
    assert_array_equal(out, [[g]])
    assert_allclose(grad, [[derivative]], rtol=1e-15)
    assert_allclose(back, [[2 * derivative]], rtol=1e-15)


def test_logistic_far_tail_is_positive_not_zero():
    # 1/(1 + e^{700}) ≈ e^{−700} ≈ 9.86e-305: representable, so it must not be flushed to 0
    g = Logistic().forward(rows(-700.0))
    assert_allclose(g, [[math.exp(-700)]], rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(z=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4)), elements=st.floats(allow_nan=False)))
def test_logistic_and_tanh_stay_in_range_for_any_input_but_nan(z):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g, t = Logistic().forward(z), Tanh().forward(z)
    assert np.all((g >= 0) & (g <= 1))
    assert np.all((t >= -1) & (t <= 1))


# ----------------------------------------------------------------------------- fully_connected: validation and init


@pytest.mark.parametrize("units", [0, -3, 2.5, "4", True])
def test_fully_connected_rejects_units_that_are_not_positive_integers(units):
    with pytest.raises(ConfigError, match="fully_connected.units: expected (a positive integer|an integer)") as err:
        build_modules([("fully_connected", {"units": units})], 3)
    assert repr(units) in str(err.value)


def test_fully_connected_rejects_an_unknown_init():
    with pytest.raises(ConfigError) as err:
        build_modules([("fully_connected", {"units": 2, "init": "glorot"})], 3)
    assert "'glorot'" in str(err.value)
    assert all(name in str(err.value) for name in ("xavier", "he", "normal", "uniform"))


def weights(init: str, D: int = 200, K: int = 100, seed: int = 0, **options) -> np.ndarray:
    fc = FullyConnected(D, K, init=init, rng=np.random.default_rng(seed), **options)
    assert_array_equal(fc.params["b"], np.zeros((1, K)))
    return fc.params["W"]


@pytest.mark.parametrize(
    ("init", "options", "limit"),
    [
        ("xavier", {}, math.sqrt(6 / (200 + 100))),  # Glorot: √(6/(D+K)) = √0.02 ≈ 0.1414
        ("uniform", {}, 1e-4),  # the course's ±1e-4
        ("uniform", {"scale": 0.5}, 0.5),
    ],
)
def test_uniform_inits_fill_their_interval(init, options, limit):
    W = weights(init, **options)
    assert np.abs(W).max() <= limit
    assert np.abs(W).max() > 0.99 * limit  # 20,000 draws reach the edges
    assert abs(W.mean()) < 0.02 * limit
    assert_allclose(W.std(), limit / math.sqrt(3), rtol=0.02)  # the std of U(−a, a) is a/√3


@pytest.mark.parametrize(
    ("init", "options", "std"),
    [
        ("he", {}, math.sqrt(2 / 200)),  # √(2/D) = 0.1
        ("normal", {}, 0.01),
        ("normal", {"scale": 2.0}, 2.0),
    ],
)
def test_normal_inits_have_their_std(init, options, std):
    W = weights(init, **options)
    assert abs(W.mean()) < 0.03 * std  # the standard error of the mean of 20,000 draws is 0.007·std
    assert_allclose(W.std(), std, rtol=0.03)


@pytest.mark.parametrize("init", ["xavier", "he", "normal", "uniform"])
def test_init_is_reproducible_and_the_same_in_float32(init):
    W64 = weights(init, 5, 3, seed=7)
    assert_array_equal(weights(init, 5, 3, seed=7), W64)
    assert not np.array_equal(weights(init, 5, 3, seed=8), W64)
    fc32 = FullyConnected(5, 3, init=init, rng=np.random.default_rng(7), dtype=np.float32)
    assert fc32.params["W"].dtype == fc32.params["b"].dtype == np.float32
    assert fc32.grads["W"].dtype == fc32.grads["b"].dtype == np.float32
    assert_array_equal(fc32.params["W"], W64.astype(np.float32))


# ----------------------------------------------------------------------------- registry


def test_layer_registry_lookup_and_sigmoid_alias():
    assert layer_class("fully_connected") is FullyConnected
    assert layer_class("sigmoid") is layer_class("logistic") is Logistic


def test_unknown_layer_lists_every_valid_name():
    with pytest.raises(ConfigError) as err:
        layer_class("relu6")
    assert "'relu6'" in str(err.value)
    assert all(name in str(err.value) for name in LAYERS)
