"""A Network: modules in forward order plus an objective, and the builder that makes one from a config."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nnctl.errors import ConfigError
from nnctl.layers import EPSILON, BuildContext, FullyConnected, Input, Module, resolve
from nnctl.objectives import OBJECTIVES, Objective
from nnctl.seeds import streams

if TYPE_CHECKING:
    from nnctl.config import Config


BackwardPlan = tuple[list[Module], Module | None]  # modules δ passes through, then the first with parameters


class Network:
    """Modules applied in order, then an objective; backward walks them in reverse (the slides' pseudo-code).

    A network is in evaluation mode until `train()` is called: modules that behave differently while
    training (dropout) read `module.training`. The trainer switches modes; eval, predict, gradcheck and
    summary use evaluation mode.
    """

    def __init__(self, modules: Sequence[Module], objective: Objective) -> None:
        self.modules = list(modules)
        self.objective = objective
        self._flat: tuple[np.ndarray, np.ndarray] | None = None
        self.flat_parameters()  # from here on, the modules' params and grads are views of two vectors
        self.eval()

    def train(self, mode: bool = True) -> Network:
        """Training mode (or evaluation mode with `mode=False`) for every module; returns the network."""
        for module in self.modules:
            module.training = mode
        return self

    def eval(self) -> Network:
        return self.train(False)

    def forward(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        """ŷ for a batch X (N, D); `start` skips leading modules already applied to x (the trainer's input)."""
        for module in self.modules[start:] if start else self.modules:
            x = module.forward(x)
        return x

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """Pass δ = ∂J/∂ŷ back through every module; fills grads and returns ∂J/∂X."""
        for module in reversed(self.modules):
            delta = module.backward(delta)
        return delta

    def backward_params(self, delta: np.ndarray, plan: BackwardPlan | None = None) -> None:
        """Fill every parameter gradient, skipping the work nothing needs: ∂J/∂X of the data, and δ below
        the first module with parameters. `plan` (from `backward_plan`) lets a training loop work it out once."""
        through, last = plan if plan is not None else self.backward_plan()
        for module in through:
            delta = module.backward(delta)
        if last is not None:
            last.backward_params(delta)

    def backward_plan(self, start: int = 0) -> BackwardPlan:
        """(modules to pass δ through, from the output down, then the first one with parameters, at or after
        `start`, which only fills its gradients); ([], None) for a network without parameters."""
        modules = self.modules[start:]
        first = next((i for i, module in enumerate(modules) if module.params), None)
        if first is None:
            return [], None
        return list(reversed(modules[first + 1 :])), modules[first]

    def generators(self) -> list[np.random.Generator]:
        """The distinct generators stochastic modules (dropout) draw from, in module order: their states are
        part of a checkpoint, so a resumed run draws the masks an uninterrupted one would."""
        found: dict[int, np.random.Generator] = {}
        for module in self.modules:
            if module.noise is not None:
                found.setdefault(id(module.noise), module.noise)
        return list(found.values())

    def loss(self, y: np.ndarray, yhat: np.ndarray) -> float:
        return self.objective.eval(y, yhat)

    def flat_parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Every parameter and gradient as one vector each, [("parameters", p, g)] ([] with none): the modules'
        arrays are views into them, so an optimiser updates all of them in one call per step."""
        arrays = [(module, key) for module in self.modules for key in module.params]
        if not arrays:
            return []
        if self._flat is None or not all(np.may_share_memory(m.params[k], self._flat[0]) for m, k in arrays):
            self._flat = _pack(arrays)
        return [("parameters", *self._flat)]

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, param, grad) for every parameter, named "<module index>.<key>" (e.g. "1.W")."""
        return [
            (f"{i}.{key}", module.params[key], module.grads[key])
            for i, module in enumerate(self.modules)
            for key in module.params
        ]

    @property
    def input(self) -> Input | None:
        """The leading Input module, if the stack starts with one."""
        return self.modules[0] if self.modules and isinstance(self.modules[0], Input) else None

    @property
    def dtype(self) -> np.dtype:
        for module in self.modules:
            for p in module.params.values():
                return p.dtype
            if isinstance(module, Input):
                return module.state["mean"].dtype
        return np.dtype(np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array a saved model needs: parameters and input statistics, by "<index>.<key>"."""
        out = {name: p for name, p, _ in self.parameters()}
        if self.input is not None:
            out.update({f"0.{key}": a for key, a in self.input.state.items()})
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy saved arrays into the existing parameter arrays (shapes must agree)."""
        targets = self.arrays()
        for name, target in targets.items():
            target[...] = arrays[name]

    def layer_table(self, n_features: int) -> list[dict[str, Any]]:
        """One row per module: name, options, output width, parameter count, Jacobian shape (one row)."""
        rows, width = [], n_features
        for i, module in enumerate(self.modules):
            jac = module.jacobian_shape(width)
            width = module.out_features if module.out_features is not None else width
            rows.append(
                {
                    "index": i,
                    "module": module.name,
                    "options": module.config(),
                    "output_shape": [None, width],
                    "parameters": int(sum(p.size for p in module.params.values())),
                    "jacobian_shape": list(jac),
                }
            )
        return rows

    def jacobian_chain(self, n_features: int) -> list[dict[str, Any]]:
        """The factors backprop multiplies for one row, objective first: ∂J/∂ŷ · ∂ŷ/∂h · … · ∂h₁/∂x."""
        rows = self.layer_table(n_features)
        names = ["x"] + [f"h{i + 1}" for i in range(len(rows) - 1)] + ["ŷ"]
        width = rows[-1]["output_shape"][1] if rows else n_features
        chain = [{"of": "J", "by": "ŷ", "shape": [1, width], "module": self.objective.name, "structure": "row"}]
        for row in reversed(rows):
            i = row["index"]
            structure = self.modules[i].jacobian_structure
            factor = {"of": names[i + 1], "by": names[i], "shape": row["jacobian_shape"], "module": row["module"]}
            chain.append(factor | {"structure": structure})
        return chain

    def __repr__(self) -> str:
        inner = ", ".join(repr(m) for m in self.modules)
        return f"Network([{inner}], {self.objective!r})"


def _pack(arrays: list[tuple[Module, str]]) -> tuple[np.ndarray, np.ndarray]:
    """One parameter vector and one gradient vector; each module's params/grads become reshaped views of them."""
    params = [module.params[key] for module, key in arrays]
    P = np.concatenate([a.ravel() for a in params])
    G = np.zeros_like(P)
    offset = 0
    for (module, key), array in zip(arrays, params, strict=True):
        size = array.size
        module.params[key] = P[offset : offset + size].reshape(array.shape)
        module.grads[key] = G[offset : offset + size].reshape(array.shape)
        offset += size
    return P, G


def planned_arrays(layers: Sequence[Any], n_features: int) -> dict[str, tuple[int, ...]]:
    """The arrays building these layers would allocate ("<index>.<key>" → shape), computed without allocating."""
    shapes: dict[str, tuple[int, ...]] = {}
    width = n_features
    for i, spec in enumerate(layers):
        cls, options = resolve(spec)
        width, arrays = cls.shapes(width, options)
        shapes.update({f"{i}.{key}": shape for key, shape in arrays.items()})
    return shapes


def check_size(shapes: dict[str, tuple[int, ...]], dtype: Any, copies: int = 4) -> None:
    """Refuse a network whose arrays (weights, gradients, optimiser moments: `copies` each) exceed this machine's
    memory, naming the layer with the largest one, before anything is allocated."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    need = sum(sizes.values()) * np.dtype(dtype).itemsize * copies
    memory = physical_memory()
    if sizes and need > memory:
        largest = max(sizes, key=lambda name: sizes[name])
        index = largest.split(".")[0]
        raise ConfigError(
            f"layers[{index}]: the network needs about {need / 2**30:,.3g} GiB for its parameters (array {largest} has "
            f"shape {shapes[largest]}), more than this machine's {memory / 2**30:.3g} GiB; use fewer units"
        )


def physical_memory() -> int:
    """Bytes of RAM (a generous stand-in where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**40


def build_modules(
    layers: Sequence[Any],
    n_features: int,
    *,
    dtype: Any = np.float64,
    epsilon: float = EPSILON,
    rng: np.random.Generator | None = None,
    noise: np.random.Generator | None = None,
) -> list[Module]:
    """Build layer specs in order (config `NamedSpec`s, or (name, options) pairs), tracking each one's width.
    `rng` initialises weights; `noise` is what dropout draws its masks from while training."""
    context = BuildContext(np.dtype(dtype), epsilon, rng if rng is not None else np.random.default_rng(0))
    if noise is not None:
        context.noise = noise
    modules: list[Module] = []
    width = n_features
    for spec in layers:
        cls, options = resolve(spec)
        module = cls.build(width, options, context)
        width = module.out_features if module.out_features is not None else width
        modules.append(module)
    return modules


def build_network(
    cfg: Config,
    n_features: int,
    n_outputs: int,
    *,
    rng: np.random.Generator | None = None,
    dtype: Any = None,
    noise: np.random.Generator | None = None,
) -> Network:
    """Build the config's network for data with `n_features` columns and `n_outputs` targets or classes;
    `rng` and `noise` default to the seed's weight-initialisation and dropout streams."""
    seeded = streams(cfg.seed)
    rng = rng if rng is not None else seeded["init"]
    noise = noise if noise is not None else seeded["dropout"]
    check_size(planned_arrays(cfg.layers, n_features), dtype or cfg.dtype)
    dtype = np.dtype(dtype or cfg.dtype)
    modules = build_modules(cfg.layers, n_features, dtype=dtype, epsilon=cfg.epsilon, rng=rng, noise=noise)
    width = next((m.out_features for m in reversed(modules) if m.out_features is not None), n_features)
    if width != n_outputs:
        last = max((i for i, m in enumerate(modules) if isinstance(m, FullyConnected)), default=None)
        if last is None:
            raise ConfigError(
                f"layers: the network ends with {width} outputs (its input width), expected {n_outputs} "
                f"(one per target or class); add a fully_connected layer with {n_outputs} units before the output"
            )
        raise ConfigError(
            f"layers[{last}].fully_connected.units: the network ends with {width} outputs, expected {n_outputs} "
            f"(one per target or class); set the last fully_connected layer's units to {n_outputs}"
        )
    objective = OBJECTIVES[cfg.objective.kind].build(cfg.objective.options, cfg.epsilon)
    return Network(modules, objective)
