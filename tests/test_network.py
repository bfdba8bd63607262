"""nnctl.network: order of passes, named parameters, saved arrays, the builder, float32, whole-stack gradients."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ACTIVATIONS, STEP, central_difference, check_close
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from nnctl.config import validate_config
from nnctl.errors import ConfigError
from nnctl.layers import LAYERS, Activation, FullyConnected, Input, LeakyReLU, Logistic, Module, ReLU
from nnctl.network import Network, build_modules, build_network
from nnctl.objectives import OBJECTIVES, CrossEntropy, SquaredError
from nnctl.optimizers import OPTIMIZERS

KINKED = (ReLU, LeakyReLU)  # activations whose derivative jumps at 0
OBJECTIVE_KINKS = {"absolute_error": 0.0, "huber": 1.0}  # |y − ŷ| where the objective's derivative has a kink


def output_activation(objective: str) -> str:
    """The last layer an objective needs (linear for regression objectives, which take any)."""
    return (OBJECTIVES[objective].output_layers or ("linear",))[0]


def targets(objective: str, rng: np.random.Generator, N: int, K: int) -> np.ndarray:
    kind = OBJECTIVES[objective].targets
    if kind == "classes":
        return np.eye(K)[rng.integers(0, K, size=N)]
    if kind == "binary":
        return rng.integers(0, 2, size=(N, K)).astype(float)
    return rng.normal(size=(N, K))


def small_network(seed: int = 0, dtype=np.float64) -> Network:
    spec = [("input", {}), ("fully_connected", {"units": 5}), ("relu", {}), ("fully_connected", {"units": 3})]
    modules = build_modules(spec + [("softmax", {})], 4, rng=np.random.default_rng(seed), dtype=dtype)
    modules[0].fit(np.random.default_rng(100).normal(2.0, 3.0, size=(20, 4)).astype(dtype))
    return Network(modules, CrossEntropy())


# ----------------------------------------------------------------------------- passes, parameters, arrays


class Recorder(Module):
    """Appends its tag as a decimal digit, so the result spells the order the modules ran in."""

    def __init__(self, tag: int, log: list[str]) -> None:
        super().__init__()
        self.tag, self.log = tag, log

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.log.append(f"forward {self.tag}")
        return 10 * x + self.tag

    def backward(self, delta: np.ndarray) -> np.ndarray:
        self.log.append(f"backward {self.tag}")
        return 10 * delta + self.tag


def test_forward_runs_in_order_and_backward_in_reverse():
    log: list[str] = []
    net = Network([Recorder(1, log), Recorder(2, log), Recorder(3, log)], SquaredError())
    assert_array_equal(net.forward(np.zeros((2, 1))), [[123], [123]])
    assert_array_equal(net.backward(np.zeros((2, 1))), [[321], [321]])
    assert log == ["forward 1", "forward 2", "forward 3", "backward 3", "backward 2", "backward 1"]


def test_parameters_are_named_by_module_index_and_are_the_modules_arrays():
    net = small_network()
    named = net.parameters()
    assert [name for name, _, _ in named] == ["1.W", "1.b", "3.W", "3.b"]
    for name, p, g in named:
        index, key = name.split(".")
        assert p is net.modules[int(index)].params[key]
        assert g is net.modules[int(index)].grads[key]


def test_assigning_into_params_changes_the_next_forward():
    net = Network(build_modules([("fully_connected", {"units": 2})], 3), SquaredError())
    x = np.array([[1.0, 2.0, 3.0]])
    net.modules[0].params["W"][...] = 0.0
    net.modules[0].params["b"][...] = [[7.0, -1.0]]
    assert_array_equal(net.forward(x), [[7, -1]])
    net.modules[0].params["W"][2, 1] = 2.0  # output 1 gains 3·2
    assert_array_equal(net.forward(x), [[7, 5]])


def test_arrays_round_trip_through_load_arrays():
    source, target = small_network(seed=1), small_network(seed=2)
    target.modules[0].fit(np.zeros((3, 4)))  # different input statistics too
    x = np.random.default_rng(3).normal(size=(5, 4))
    assert not np.allclose(source.forward(x), target.forward(x))
    arrays = source.arrays()
    assert set(arrays) == {"0.mean", "0.std", "1.W", "1.b", "3.W", "3.b"}
    ids = {name: id(a) for name, a in target.arrays().items()}
    target.load_arrays({name: a.copy() for name, a in arrays.items()})
    assert_array_equal(target.forward(x), source.forward(x))
    assert {name: id(a) for name, a in target.arrays().items()} == ids  # loaded in place
    source.modules[1].params["W"][...] = 0.0  # and copied, not aliased
    assert not np.array_equal(target.modules[1].params["W"], source.modules[1].params["W"])


# ----------------------------------------------------------------------------- the builder


def test_build_modules_rejects_an_unknown_layer_listing_every_valid_name():
    with pytest.raises(ConfigError) as err:
        build_modules([("dense", {"units": 3})], 4)
    assert "'dense'" in str(err.value)
    assert all(name in str(err.value) for name in LAYERS)


def test_sigmoid_builds_a_logistic_module():
    (module,) = build_modules([("sigmoid", {})], 3)
    assert type(module) is Logistic


def test_build_modules_tracks_widths_and_passes_epsilon():
    spec = [("input", {}), ("fully_connected", {"units": 5}), ("tanh", {}), ("fully_connected", {"units": 2})]
    modules = build_modules(spec, 4, epsilon=1e-3)
    assert modules[0].out_features == 4
    assert modules[1].params["W"].shape == (4, 5)
    assert modules[3].params["W"].shape == (5, 2)
    assert modules[2].epsilon == 1e-3


def config(**overrides) -> dict:
    raw = {
        "seed": 3,
        "data": {"train": "train.csv", "target": "species"},
        "layers": [{"input": {"normalize": "zscore"}}, {"fully_connected": {"units": 8}}, "sigmoid"]
        + [{"fully_connected": {"units": 3}}, "softmax"],
        "objective": "cross_entropy",
    }
    raw.update(overrides)
    return raw


def test_build_network_from_a_config_uses_its_dtype_epsilon_and_seed():
    cfg = validate_config(config(dtype="float32", epsilon=1e-3))
    net = build_network(cfg, n_features=4, n_outputs=3)
    assert [m.name for m in net.modules] == ["input", "fully_connected", "logistic", "fully_connected", "softmax"]
    assert net.dtype == np.float32
    assert all(m.epsilon == 1e-3 for m in net.modules if isinstance(m, Activation))
    assert net.objective.epsilon == 1e-3
    again = build_network(cfg, n_features=4, n_outputs=3)
    for (_, p, _), (_, q, _) in zip(net.parameters(), again.parameters(), strict=True):
        assert_array_equal(p, q)  # same seed, same weights


def test_build_network_rejects_a_width_that_does_not_match_the_outputs():
    with pytest.raises(ConfigError) as err:
        build_network(validate_config(config()), n_features=4, n_outputs=2)
    message = str(err.value)
    assert "layers[3].fully_connected.units" in message
    assert "3" in message and "2" in message


# ----------------------------------------------------------------------------- float32 end to end


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_a_float32_network_stays_float32(objective, optimizer):
    f32 = np.float32
    spec = [("input", {}), ("fully_connected", {"units": 5}), ("tanh", {}), ("fully_connected", {"units": 4})]
    spec += [("relu", {}), ("fully_connected", {"units": 4}), ("logistic", {}), ("linear", {}), ("softmax", {})]
    spec += [("leaky_relu", {}), ("softplus", {}), ("dropout", {"rate": 0.5})]  # dropout: evaluation mode here
    spec += [("fully_connected", {"units": 3}), (output_activation(objective), {})]
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 4)).astype(f32), targets(objective, rng, 6, 3).astype(f32)
    net = Network(build_modules(spec, 4, dtype=f32, rng=np.random.default_rng(1)), OBJECTIVES[objective]())
    net64 = Network(build_modules(spec, 4, rng=np.random.default_rng(1)), OBJECTIVES[objective]())
    net.modules[0].fit(X)
    net64.modules[0].fit(X)

    h = X
    for module in net.modules:
        h = module.forward(h)
        assert h.dtype == f32, module.name
    assert_allclose(h, net64.forward(X.astype(np.float64)), rtol=1e-4, atol=1e-6)  # the same weights
    delta = net.objective.gradient(Y, h)
    assert delta.dtype == f32
    for module in reversed(net.modules):
        delta = module.backward(delta)
        assert delta.dtype == f32, module.name
        assert all(g.dtype == f32 for g in module.grads.values()), module.name
    assert type(net.loss(Y, h)) is float

    params = net.parameters()
    before = [p.copy() for _, p, _ in params]
    opt = OPTIMIZERS[optimizer](0.1, weight_decay=0.01)
    for _ in range(2):
        opt.step(params)
    for (name, p, _), old in zip(params, before, strict=True):
        assert p.dtype == f32, name
        assert not np.array_equal(p, old), name
    assert all(a.dtype == f32 for a in opt.state_arrays().values())


# ----------------------------------------------------------------------------- whole stacks against central differences

TOL = 1e-6
ROUNDING = 10 * np.finfo(np.float64).eps  # per evaluation of the loss, relative to |J| (measured ≈ 1·u)


@st.composite
def stacks(draw: st.DrawFn, objective: str) -> tuple[list[tuple[str, dict]], int, int, int]:
    """Random fully_connected + activation stacks ending in the activation the objective needs."""
    N, D = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    spec: list[tuple[str, dict]] = [("input", {})] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 2))):
        spec += [("fully_connected", {"units": draw(st.integers(1, 6))}), (draw(st.sampled_from(ACTIVATIONS)), {})]
    K = draw(st.integers(2 if objective == "cross_entropy" else 1, 6))
    regression = OBJECTIVES[objective].targets == "values"
    last = draw(st.sampled_from(ACTIVATIONS)) if regression else output_activation(objective)
    spec += [("fully_connected", {"units": K}), (last, {})]
    return spec, N, D, draw(st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_whole_stack_gradients_match_central_differences(objective, data):
    """Every parameter gradient and ∂J/∂X of a random stack, with ε = 0 so the SPEC formulas are exact derivatives.

    With the default ε = 1e-7 they are not: each logistic/tanh factor g′ + ε and log loss's denominator are off by a
    relative ε/g′, which grows without bound as units saturate (4.5e-4 measured on log-loss stacks with ŷ ≈ 5e-4).
    So this checks the chain rule exactly, and test_layers / test_objectives check each + ε term on its own.
    h = 1e-5: truncation h²·f‴/6 ≈ 1e-11 relative. The rounding of each loss evaluation, about u·|J|, becomes
    u·|J|/h in the difference; that budget is added to the tolerance, so a tiny gradient next to a large loss
    (where the numeric gradient itself is noise) cannot fail a correct network, while any error in the chain is
    of order 1. Measured: relative errors ≤ 1e-7.
    """
    spec, N, D, seed = data.draw(stacks(objective))
    rng = np.random.default_rng(seed)
    modules = build_modules(spec, D, rng=rng, epsilon=0.0)
    net = Network(modules, OBJECTIVES[objective](epsilon=0.0))
    if isinstance(modules[0], Input):
        modules[0].fit(rng.normal(1.0, 3.0, size=(8, D)))
    X, Y = rng.normal(0.0, 2.0, size=(N, D)), targets(objective, rng, N, spec[-2][1]["units"])

    h = X
    for module in modules:
        if isinstance(module, KINKED):  # a step of 1e-5 moves these inputs by ~1e-4 at most: keep clear of the kink
            assume(np.abs(h).min() > 1e-3)
        h = module.forward(h)
    if objective in OBJECTIVE_KINKS:  # and the objective's kink (|r| = 0 or δ) likewise
        assume(np.abs(np.abs(Y - h) - OBJECTIVE_KINKS[objective]).min() > 1e-3)
    dX = net.backward(net.objective.gradient(Y, h))
    grads = {name: g.copy() for name, _, g in net.parameters()}

    def loss() -> float:
        return net.loss(Y, net.forward(X))

    noise = ROUNDING * max(abs(loss()), 1.0) / STEP  # absolute, in units of ∂(mean J)
    where = f"{objective} stack {[name for name, _ in spec]}"
    # backward returns the per-row ∂J_n/∂x_n, while loss() is the mean over rows: hence the factor N
    numeric = N * central_difference(loss, X, STEP)
    check_close(dX, numeric, TOL, f"{where} ∂J/∂X", noise=N * noise)
    for name, p, _ in net.parameters():
        check_close(grads[name], central_difference(loss, p, STEP), TOL, f"{where} {name}", noise=noise)


def test_the_stack_check_can_fail():
    """A wrong gradient (∂J/∂b without the mean) is caught by the same check."""
    rng = np.random.default_rng(0)
    fc = FullyConnected(3, 2, rng=rng)
    net = Network([fc], SquaredError())
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    net.backward(net.objective.gradient(Y, net.forward(X)))
    numeric = central_difference(lambda: net.loss(Y, net.forward(X)), fc.params["b"], STEP)
    with pytest.raises(AssertionError, match="relative error"):
        check_close(fc.grads["b"] * 4, numeric, TOL, "sum instead of mean")
