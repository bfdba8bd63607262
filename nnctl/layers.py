"""The modules of a network: batch-first NumPy layers with forward / gradient / backward.

Every module follows one contract (docs/reference.md#maths):

- ``forward(x)`` takes ``(N, D)`` and returns ``(N, K)``, caching what backward needs;
- ``gradient()`` returns the Jacobian of the last forward as the slides define it
  (a teaching and testing aid, never used while training);
- ``backward(δ)`` returns ``δ · gradient()`` computed efficiently and fills ``grads``.

``params`` and ``grads`` are parallel dicts of arrays; ``grads`` arrays are written
in place so an optimiser can hold on to them. A module is one class with its options
schema (``Options``) and a ``build`` constructor, plus one line in ``LAYERS``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from nnctl.schema import Configured, Schema, lookup, validate_options

EPSILON = 1e-7
DEFAULT_SCALE = {"normal": 0.01, "uniform": 1e-4}  # the course initialises uniformly in ±1e-4


@dataclass
class BuildContext:
    """What every module may need when it is built from a config, besides its width and options."""

    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))
    epsilon: float = EPSILON
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))  # weight initialisation
    noise: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))  # dropout masks


class NoOptions(Schema):
    """A module without options (`relu`, `softmax`, ...)."""


class Module(Configured):
    """Base class: a parameter-free module. Subclasses override what differs."""

    name: ClassVar[str] = "module"
    jacobian_structure: ClassVar[str] = "diagonal"  # of ∂out/∂in per row: "diagonal", "full" or "Wᵀ"
    Options: ClassVar[type[Schema]] = NoOptions

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.out_features: int | None = None  # None: as wide as its input
        self.training = False  # set by Network.train() / Network.eval(); modules such as dropout read it
        self.noise: np.random.Generator | None = None  # what a stochastic module draws from while training

    @classmethod
    def build(cls, width: int, options: Any, context: BuildContext) -> Module:
        """The module for an input `width` from validated `options` (an instance of `cls.Options`)."""
        return cls()

    @classmethod
    def shapes(cls, width: int, options: Any) -> tuple[int, dict[str, tuple[int, ...]]]:
        """(output width, {array: shape}) of the module `build` would make, without allocating anything:
        a saved model is checked against them before any array is built."""
        return width, {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gradient(self) -> np.ndarray:
        raise NotImplementedError

    def backward(self, delta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward_params(self, delta: np.ndarray) -> None:
        """Only the parameter gradients of backward (the first layer's ∂J/∂x is never needed in training)."""
        self.backward(delta)

    def jacobian_shape(self, width_in: int) -> tuple[int, int]:
        """Shape of ∂out/∂in for one row, for `nnctl summary`'s chain."""
        return (width_in, width_in)


class Input(Module):
    """z-score normalisation with statistics fitted on training data (μ = 0, σ = 1 until fitted)."""

    name = "input"

    class Options(Schema):
        normalize: Literal["zscore", "none"] = Field("zscore", description="z-score with training statistics, or none")

    def __init__(self, n_features: int, normalize: str = "zscore", dtype: Any = np.float64) -> None:
        super().__init__()
        self.normalize = normalize
        self.out_features = n_features
        # Not parameters: the optimiser never sees them; saved with the model all the same.
        self.state = {
            "mean": np.zeros((1, n_features), dtype=dtype),
            "std": np.ones((1, n_features), dtype=dtype),
        }

    @classmethod
    def build(cls, width: int, options: Any, context: BuildContext) -> Input:
        return cls(width, options.normalize, context.dtype)

    @classmethod
    def shapes(cls, width: int, options: Any) -> tuple[int, dict[str, tuple[int, ...]]]:
        return width, {"mean": (1, width), "std": (1, width)}

    def fit(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Fit μ and σ on training rows: x (N, D), or its rows `rows` (σ of 0 → 1, so constant columns pass
        through centred). Float64 passes over blocks of rows: x (perhaps memory-mapped) is never copied whole."""
        if self.normalize == "none":
            return
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = _moments(x, rows)
            huge = ~(np.isfinite(mean) & np.isfinite(std))
            if huge.any():  # values near the float64 limit overflow the sums: scale those columns down first
                scale = np.zeros(int(huge.sum()))
                for block in _row_blocks(x, rows):
                    scale = np.maximum(scale, np.abs(block[:, huge]).max(axis=0, initial=0.0))
                scaled_mean, scaled_std = _moments(x, rows, huge, scale)
                mean[huge], std[huge] = scaled_mean * scale, scaled_std * scale
        std[std == 0] = 1.0
        self.state["mean"][...] = mean
        self.state["std"][...] = std

    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(x − μ) / σ; `out` (which may be `x`) lets the trainer choose where the result goes: a C-ordered copy
        of a small data set, or each gathered batch in place."""
        self._n = x.shape[0]
        out = np.subtract(x, self.state["mean"], out=out)
        out /= self.state["std"]
        return out

    def gradient(self) -> np.ndarray:
        return np.broadcast_to(1.0 / self.state["std"], (self._n, self.state["std"].shape[1])).copy()

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta / self.state["std"]


def _moments(
    x: np.ndarray, rows: np.ndarray | None, columns: np.ndarray | None = None, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (D,) of x's rows in float64: two passes over blocks of rows;
    only `columns` (a mask), divided by `scale`, when given."""
    n = len(x) if rows is None else len(rows)
    total = np.zeros(x.shape[1] if columns is None else int(columns.sum()))
    for block in _row_blocks(x, rows):
        total += (block if columns is None else block[:, columns] / scale).sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(mean)
    for block in _row_blocks(x, rows):
        deviation = (block if columns is None else block[:, columns] / scale) - mean  # (B, D) in float64
        squares += np.einsum("ij,ij->j", deviation, deviation)
    return mean, np.sqrt(squares / n)


def _row_blocks(x: np.ndarray, rows: np.ndarray | None, cells: int = 2**20) -> Iterator[np.ndarray]:
    """x's rows (all, or `rows`) in blocks of about `cells` values: views of x, or small gathered copies."""
    n, size = len(x) if rows is None else len(rows), max(1, cells // max(1, x.shape[1]))
    for start in range(0, n, size):
        yield x[start : start + size] if rows is None else x[rows[start : start + size]]


class FullyConnected(Module):
    """H = X W + b with W (D, K) and b (1, K)."""

    name = "fully_connected"
    jacobian_structure = "Wᵀ"

    class Options(Schema):
        units: int = Field(ge=1, description="output width K")
        init: Literal["xavier", "he", "normal", "uniform"] = Field("xavier", description="weight initialisation")
        scale: float | None = Field(None, gt=0, description="std of `normal`, half-width of `uniform`")

    def __init__(
        self,
        in_features: int,
        units: int,
        init: str = "xavier",
        scale: float | None = None,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.in_features, self.units = in_features, units
        self.out_features = units
        self.init, self.scale = init, scale
        D, K = in_features, units
        # Draw in float64 whatever the dtype, so float32 and float64 runs start from the same weights.
        if init == "xavier":  # Glorot uniform
            limit = math.sqrt(6.0 / (D + K))
            W = rng.uniform(-limit, limit, size=(D, K))
        elif init == "he":
            W = rng.normal(0.0, math.sqrt(2.0 / D), size=(D, K))
        elif init == "normal":
            W = rng.normal(0.0, scale if scale is not None else DEFAULT_SCALE["normal"], size=(D, K))
        else:
            limit = scale if scale is not None else DEFAULT_SCALE["uniform"]
            W = rng.uniform(-limit, limit, size=(D, K))
        self.params = {"W": W.astype(dtype), "b": np.zeros((1, K), dtype=dtype)}
        self.grads = {"W": np.zeros((D, K), dtype=dtype), "b": np.zeros((1, K), dtype=dtype)}

    @classmethod
    def build(cls, width: int, options: Any, context: BuildContext) -> FullyConnected:
        return cls(width, options.units, options.init, options.scale, context.rng, context.dtype)

    @classmethod
    def shapes(cls, width: int, options: Any) -> tuple[int, dict[str, tuple[int, ...]]]:
        return options.units, {"W": (width, options.units), "b": (1, options.units)}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        h = x @ self.params["W"]  # (N, K)
        h += self.params["b"]
        return h

    def gradient(self) -> np.ndarray:
        return self.params["W"].T.copy()  # (K, D): ∂h/∂x for every row

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """∂J/∂W = Xᵀδ / N and ∂J/∂b = mean(δ), written in place; returns δ Wᵀ."""
        self.backward_params(delta)
        return delta @ self.params["W"].T

    def backward_params(self, delta: np.ndarray) -> None:
        n = delta.shape[0]
        gW, gb = self.grads["W"], self.grads["b"]
        np.matmul(self._x.T, delta, out=gW)
        gW /= n
        np.add.reduce(delta, axis=0, keepdims=True, out=gb)  # the mean as np.mean computes it: Σ, then / N
        gb /= n

    def jacobian_shape(self, width_in: int) -> tuple[int, int]:
        return (self.units, width_in)


class Activation(Module):
    """An element-wise, parameter-free module: its Jacobian is diagonal, stored as (N, K)."""

    def __init__(self, epsilon: float = EPSILON) -> None:
        super().__init__()
        self.epsilon = epsilon

    @classmethod
    def build(cls, width: int, options: Any, context: BuildContext) -> Activation:
        return cls(epsilon=context.epsilon, **options.model_dump())

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._z = x
        self._g = self.activate(x)
        return self._g

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta * self.gradient()

    def activate(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Linear(Activation):
    """g(z) = z."""

    name = "linear"

    def activate(self, z: np.ndarray) -> np.ndarray:
        return z

    def gradient(self) -> np.ndarray:
        return np.ones_like(self._z)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta


class ReLU(Activation):
    """g(z) = max(0, z); derivative 1 where z ≥ 0 (the course's convention at 0)."""

    name = "relu"

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0)

    def gradient(self) -> np.ndarray:
        return (self._z >= 0).astype(self._z.dtype)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta * (self._z >= 0)


class Logistic(Activation):
    """g(z) = 1 / (1 + e^{−z}); derivative g(1 − g) + ε."""

    name = "logistic"

    def activate(self, z: np.ndarray) -> np.ndarray:
        # 1/(1+e^{-z}) = exp(−log(1 + e^{−z})): logaddexp never overflows, so |z| up to 1e4 is quiet.
        t = np.negative(z)  # (N, K), the one array: every step below is in place
        np.logaddexp(0, t, out=t)
        np.negative(t, out=t)
        return np.exp(t, out=t)

    def gradient(self) -> np.ndarray:
        t = 1 - self._g  # (N, K), the one array: then g(1 − g) + ε in place
        t *= self._g
        t += self.epsilon
        return t


class Tanh(Activation):
    """g(z) = tanh(z); derivative 1 − g² + ε."""

    name = "tanh"

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z)

    def gradient(self) -> np.ndarray:
        t = self._g * self._g  # (N, K), the one array: then 1 − g² + ε in place
        np.subtract(1, t, out=t)
        t += self.epsilon
        return t


class Softmax(Activation):
    """g_i = e^{z_i} / Σ_j e^{z_j}, computed after subtracting each row's max."""

    name = "softmax"
    jacobian_structure = "full"

    def activate(self, z: np.ndarray) -> np.ndarray:
        e = z - np.maximum.reduce(z, axis=1, keepdims=True)  # (N, K); ufunc reductions skip ndarray.max's wrapper
        np.exp(e, out=e)
        e /= np.add.reduce(e, axis=1, keepdims=True)
        return e

    def gradient(self) -> np.ndarray:
        """The full (N, K, K) Jacobian J[n, i, j] = g_i (δ_ij − g_j)."""
        g = self._g
        return g[:, :, None] * (np.eye(g.shape[1], dtype=g.dtype) - g[:, None, :])

    def backward(self, delta: np.ndarray) -> np.ndarray:
        # Vector-Jacobian product, O(N·K): (δJ)_j = g_j (δ_j − Σ_i δ_i g_i).
        g = self._g
        out = delta * g  # (N, K)
        np.subtract(delta, np.add.reduce(out, axis=1, keepdims=True), out=out)
        out *= g
        return out


class LeakyReLU(Activation):
    """g(z) = z where z ≥ 0, else α z; derivative 1 where z ≥ 0 (as relu), else α."""

    name = "leaky_relu"

    class Options(Schema):
        alpha: float = Field(0.01, ge=0, description="slope α for z < 0")

    def __init__(self, alpha: float = 0.01, epsilon: float = EPSILON) -> None:
        super().__init__(epsilon)
        self.alpha = alpha

    def activate(self, z: np.ndarray) -> np.ndarray:
        t = z * self.alpha  # max(z, αz) is z for z ≥ 0 and αz below, when α ≤ 1 (min when α > 1)
        return np.maximum(z, t, out=t) if self.alpha <= 1 else np.minimum(z, t, out=t)

    def gradient(self) -> np.ndarray:
        z = self._z
        return np.where(z >= 0, np.ones((), z.dtype), np.asarray(self.alpha, z.dtype))

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return np.where(self._z >= 0, delta, delta * self.alpha)


class Softplus(Activation):
    """g(z) = ln(1 + e^z); derivative 1 / (1 + e^{−z}), computed from the output as 1 − e^{−g}."""

    name = "softplus"

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.logaddexp(0, z)  # ln(e^0 + e^z) without overflow: z = 1e4 gives 1e4, z = −1e4 gives 0

    def gradient(self) -> np.ndarray:
        # e^{−g} = 1 / (1 + e^z), so 1 − e^{−g} = 1 / (1 + e^{−z}); −expm1(−g) keeps it exact where g ≈ 0.
        t = np.negative(self._g)
        np.expm1(t, out=t)
        return np.negative(t, out=t)


class Dropout(Module):
    """While training, x ⊙ m / (1 − rate), with m a Bernoulli(1 − rate) mask from the run's seeded generator;
    in evaluation mode the identity. Its Jacobian is diagonal: m / (1 − rate) (ones in evaluation mode)."""

    name = "dropout"
    noise: np.random.Generator  # never None here

    class Options(Schema):
        rate: float = Field(0.5, ge=0, lt=1, description="probability that a unit is zeroed while training")

    def __init__(self, rate: float = 0.5, noise: np.random.Generator | None = None) -> None:
        super().__init__()
        self.rate = rate
        self.noise = noise if noise is not None else np.random.default_rng(0)
        # A unit is kept when a uniform 32-bit draw u ≥ rate·2³²: P(keep) = 1 − rate to within 2⁻³², and the
        # masks are the same in float32 and float64 runs (no float draws, no float64 temporary).
        self._threshold = min(round(rate * 2**32), 2**32 - 1)
        self._scale = 1.0 / (1.0 - rate)
        self._mask: np.ndarray | None = None  # m / (1 − rate) of the last forward; None when it was the identity
        self._buffer: np.ndarray | None = None  # reused for every mask of a run
        self._shape: tuple[int, ...] = (0, 0)
        self._dtype = np.dtype(np.float64)
        self._frozen = False

    @classmethod
    def build(cls, width: int, options: Any, context: BuildContext) -> Dropout:
        return cls(options.rate, context.noise)

    def freeze_mask(self, frozen: bool = True) -> None:
        """Make every training forward reuse one mask (drawn at the next one), so the module is a fixed
        function that finite differences can check; `frozen=False` draws a new mask per forward again."""
        self._frozen = frozen
        self._mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._shape, self._dtype = x.shape, x.dtype
        if not self.training or self.rate == 0:
            self._mask = None
            return x
        mask = self._mask
        if not (self._frozen and mask is not None and mask.shape == x.shape and mask.dtype == x.dtype):
            mask = self._mask = self._draw(x.shape, x.dtype)
        return x * mask

    def _draw(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new mask m / (1 − rate) in the reused buffer: 32 random bits per unit, two per raw 64-bit draw."""
        n = math.prod(shape)
        raw = self.noise.bit_generator.random_raw((n + 1) // 2)
        bits = raw.astype("<u8", copy=False).view("<u4")[:n].reshape(shape)  # the same halves on any byte order
        buffer = self._buffer
        if buffer is None or buffer.dtype != dtype or buffer.shape[1:] != shape[1:] or len(buffer) < shape[0]:
            buffer = self._buffer = np.empty(shape, dtype)
        mask = buffer[: shape[0]]
        np.greater_equal(bits, self._threshold, out=mask)  # 1 where kept, 0 where dropped
        mask *= self._scale
        return mask

    def gradient(self) -> np.ndarray:
        return self._mask.copy() if self._mask is not None else np.ones(self._shape, self._dtype)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta * self._mask if self._mask is not None else delta


LAYERS: dict[str, type[Module]] = {
    "input": Input,
    "fully_connected": FullyConnected,
    "linear": Linear,
    "relu": ReLU,
    "logistic": Logistic,
    "sigmoid": Logistic,
    "tanh": Tanh,
    "softmax": Softmax,
    "leaky_relu": LeakyReLU,
    "softplus": Softplus,
    "dropout": Dropout,
}


def layer_class(name: str) -> type[Module]:
    """Look a layer up by its config name; the error lists every valid name."""
    return lookup(LAYERS, name, "layer")


def resolve(spec: Any) -> tuple[type[Module], Schema]:
    """A layer spec — a config's `NamedSpec`, or a (name, options) pair with options a mapping (validated here)
    or an `Options` instance — as its class and validated options."""
    name, options = (spec.kind, spec.options) if hasattr(spec, "kind") else spec
    cls = layer_class(name)
    return cls, options if isinstance(options, cls.Options) else validate_options(cls.Options, options, name)
