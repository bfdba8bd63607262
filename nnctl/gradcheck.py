"""Analytic gradients against central finite differences (docs/reference.md#gradcheck), always in float64.

For every checked array, with `a` analytic and `n` numerical:
max_abs_error = max|a − n| and max_rel_error = max|a − n| / max(max|a|, max|n|, 1e-8);
a check passes when max_rel_error < 1e-4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nnctl.layers import LAYERS, Dropout, Input, Module
from nnctl.network import Network, build_modules
from nnctl.objectives import OBJECTIVES, Objective
from nnctl.task import Task

TOLERANCE = 1e-4
DEFAULT_EPS = 1e-6
# The maths' ε (in logistic/tanh derivatives and the objectives) is a stabiliser that makes the formulas
# differ from the true derivative by O(ε); with ε = 0 they are exact, so differences can check them tightly.
EXACT = 0.0


def fix_noise(modules: list[Module]) -> None:
    """Training mode with every dropout mask fixed (drawn at the next forward, then reused): the modules are
    then one fixed function, as finite differences need, and dropout's training path is the one checked."""
    for module in modules:
        if isinstance(module, Dropout):
            module.training = True
            module.freeze_mask()


def exact_derivatives(network: Network) -> None:
    """Set ε = 0 in every module and the objective, so analytic gradients are exact derivatives."""
    for part in [*network.modules, network.objective]:
        if hasattr(part, "epsilon"):
            part.epsilon = EXACT


@dataclass
class Check:
    module: str
    parameter: str
    shape: list[int]
    max_abs_error: float
    max_rel_error: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(module: str, parameter: str, analytic: np.ndarray, numeric: np.ndarray) -> Check:
    """One Check with the normwise relative error of the module docstring."""
    diff = np.abs(analytic - numeric)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = max(float(np.abs(analytic).max(initial=0.0)), float(np.abs(numeric).max(initial=0.0)), 1e-8)
    rel = max_abs / scale
    return Check(module, parameter, list(analytic.shape), max_abs, rel, bool(rel < TOLERANCE))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences (f(x + e) − f(x − e)) / 2e of a scalar f, perturbing x in place."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):  # one probe per element: a checker, never on the training path
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        out[i] = (plus - minus) / (2 * eps)
    return grad


def _label(index: int, module: Module) -> str:
    return f"{module.name} (layers[{index}])"


def check_network(network: Network, X: np.ndarray, Y: np.ndarray, eps: float = DEFAULT_EPS) -> list[Check]:
    """Every parameter gradient and the δ at every module boundary, against the batch loss."""
    modules, objective = network.modules, network.objective
    n = len(X)
    # Inputs of every module, from one forward pass.
    inputs = [np.array(X, dtype=np.float64)]
    for module in modules:
        inputs.append(module.forward(inputs[-1]))
    yhat = inputs[-1]
    deltas = [objective.gradient(Y, yhat)]  # deltas[j]: δ at the output of module len-1-j
    for module in reversed(modules):
        deltas.append(module.backward(deltas[-1]))
    deltas.reverse()  # deltas[i]: δ at the input of module i (per-row, not divided by N)
    analytic_params = {(i, k): g.copy() for i, m in enumerate(modules) for k, g in m.grads.items()}

    def loss_from(i: int, x: np.ndarray) -> float:
        for module in modules[i:]:
            x = module.forward(x)
        return objective.eval(Y, x)

    def whole_loss() -> float:
        return loss_from(0, inputs[0])

    checks: list[Check] = []
    for i, module in enumerate(modules):
        for key, param in module.params.items():
            numeric = numerical_gradient(whole_loss, param, eps)
            checks.append(compare(_label(i, module), key, analytic_params[(i, key)], numeric))
        x = inputs[i].copy()
        numeric = numerical_gradient(functools.partial(loss_from, i, x), x, eps) * n  # δ is per row: Σ_rows J
        checks.append(compare(_label(i, module), "δ (input)", deltas[i], numeric))
    return checks


def check_module(module: Module, x: np.ndarray, rng: np.random.Generator, eps: float = DEFAULT_EPS) -> list[Check]:
    """A module alone: L = Σ(r ⊙ forward(x)) / N for a random r; also softmax's full Jacobian."""
    n = len(x)
    y = module.forward(x)
    r = rng.normal(size=y.shape)
    delta = module.backward(r)
    analytic = {k: g.copy() for k, g in module.grads.items()}
    label = module.name

    def loss() -> float:
        return float((r * module.forward(x)).sum() / n)

    checks = [compare(label, key, analytic[key], numerical_gradient(loss, p, eps)) for key, p in module.params.items()]
    checks.append(compare(label, "δ (input)", delta / n, numerical_gradient(loss, x, eps)))
    if not module.params and module.jacobian_structure in ("diagonal", "full"):
        module.forward(x)
        jacobian = module.gradient()
        numeric = _numerical_jacobian(module, x, eps)
        if module.jacobian_structure == "full":
            checks.append(compare(label, "gradient() (N, K, K)", jacobian, numeric))
        else:
            checks.append(compare(label, "gradient() diagonal", jacobian, np.einsum("nkk->nk", numeric)))
    return checks


def _numerical_jacobian(module: Module, x: np.ndarray, eps: float) -> np.ndarray:
    """J[n, i, j] = ∂out_i/∂x_j for each row n, by central differences over the K inputs."""
    n, k = x.shape
    jac = np.zeros((n, k, k))
    for j in range(k):
        step = np.zeros_like(x)
        step[:, j] = eps
        jac[:, :, j] = (module.forward(x + step) - module.forward(x - step)) / (2 * eps)
    return jac


def check_objective(objective: Objective, y: np.ndarray, yhat: np.ndarray, eps: float = DEFAULT_EPS) -> Check:
    """Per-row ∂J/∂ŷ against differences of Σ_rows J."""
    yhat = yhat.copy()
    numeric = numerical_gradient(lambda: float(objective.per_row(y, yhat).sum()), yhat, eps)
    return compare(objective.name, "∂J/∂ŷ", objective.gradient(y, yhat), numeric)


def _objective_data(name: str, rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets and outputs an objective accepts: one-hot and a distribution, 0/1 and probabilities, or values."""
    targets = Task(name, k).targets
    if targets == "classes":
        y = np.eye(k)[rng.integers(0, k, size=n)]
        yhat = rng.dirichlet(np.ones(k), size=n) * 0.9 + 0.1 / k
    elif targets == "binary":
        y = rng.integers(0, 2, size=(n, k)).astype(np.float64)
        yhat = rng.uniform(0.05, 0.95, size=(n, k))
    else:
        y, yhat = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    return y, yhat


# One small stack per way of reading targets (nnctl.objectives.Targets), ending in the output it needs.
STACKS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "classes": [
        ("input", {}),
        ("fully_connected", {"units": 6}),
        ("tanh", {}),
        ("fully_connected", {"units": 3}),
        ("softmax", {}),
    ],
    "binary": [
        ("input", {}),
        ("fully_connected", {"units": 6}),
        ("relu", {}),
        ("fully_connected", {"units": 2}),
        ("logistic", {}),
    ],
    "values": [
        ("input", {}),
        ("fully_connected", {"units": 6}),
        ("logistic", {}),
        ("dropout", {"rate": 0.3}),
        ("fully_connected", {"units": 4}),
        ("softplus", {}),
        ("fully_connected", {"units": 4}),
        ("leaky_relu", {"alpha": 0.1}),
        ("fully_connected", {"units": 2}),
        ("linear", {}),
    ],
}
# Options for building a module alone where its defaults will not do (required keys, or a visible scale).
EXAMPLE_OPTIONS: dict[str, dict[str, Any]] = {"fully_connected": {"units": 3, "init": "normal", "scale": 0.5}}


def check_builtin(rows: int = 8, eps: float = DEFAULT_EPS, seed: int = 0) -> list[Check]:
    """Every registered module and objective alone on random data, then one stack per objective; dropout
    in training mode with its mask fixed."""
    rng = np.random.default_rng(seed)
    checks: list[Check] = []
    seen: set[type] = set()
    for name, cls in LAYERS.items():
        if cls in seen:
            continue  # aliases (sigmoid) share a class
        seen.add(cls)
        (module,) = build_modules([(name, EXAMPLE_OPTIONS.get(name, {}))], 5, epsilon=EXACT, rng=rng)
        if isinstance(module, Input):
            module.fit(rng.normal(2.0, 3.0, size=(20, 5)))
        fix_noise([module])
        checks += check_module(module, rng.normal(size=(rows, 5)), rng, eps)
    for name, objective_cls in OBJECTIVES.items():
        y, yhat = _objective_data(name, rng, rows, 3)
        checks.append(check_objective(objective_cls.build(objective_cls.Options(), EXACT), y, yhat, eps))
    for name, objective_cls in OBJECTIVES.items():
        modules = build_modules(STACKS[objective_cls.targets], 4, rng=rng, epsilon=EXACT)
        network = Network(modules, objective_cls.build(objective_cls.Options(), EXACT))
        fix_noise(modules)
        X = rng.normal(size=(rows, 4))
        modules[0].fit(rng.normal(size=(50, 4)))  # type: ignore[attr-defined]
        y, _ = _objective_data(name, rng, rows, modules[-2].out_features or 1)
        checks += [
            Check(f"{name} stack: {c.module}", c.parameter, c.shape, c.max_abs_error, c.max_rel_error, c.passed)
            for c in check_network(network, X, y, eps)
        ]
    return checks


def check_config(config: Any, rows: int = 8, eps: float = DEFAULT_EPS) -> tuple[list[Check], int]:
    """A config's network in float64 with its seed, input fitted on the training CSV, on its first rows;
    returns the checks and how many rows they used (fewer than asked when the data has fewer)."""
    from nnctl.experiment import set_up

    config.dtype = "float64"
    setup = set_up(config)
    exact_derivatives(setup.network)
    X, Y = setup.train.X[:rows], setup.train.Y[:rows]  # X encoded as training sees it (nnctl.tabular)
    network = setup.network
    if setup.encoding.target_scale is not None:  # the loss training differentiates: on standardised targets
        Y = setup.encoding.target_scale.scale(Y)
    if setup.train.weights is not None:  # data.class_weight: each row's loss weighted
        network = Network(network.modules, RowWeighted(network.objective, setup.train.weights[:rows]))
    return check_network(network.eval(), X, Y, eps), len(X)


class RowWeighted(Objective):
    """An objective with fixed per-row weights w (N,), as class weights make it: J_i ← w_i J_i, δ_i ← w_i δ_i."""

    def __init__(self, inner: Objective, weights: np.ndarray) -> None:
        super().__init__(inner.epsilon)
        self.inner, self.weights, self.name = inner, weights, inner.name  # type: ignore[misc]

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return self.weights * self.inner.per_row(y, yhat)

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return self.weights[:, None] * self.inner.gradient(y, yhat)
