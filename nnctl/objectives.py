"""Objective functions J(y, ŷ): ``eval`` is the batch mean, ``gradient`` the per-row ∂J/∂ŷ (N, K).

An objective is one class (with its ``Options`` schema) plus one line in ``OBJECTIVES``; what its
outputs mean (task, classes, accuracy) is decided in one place, ``nnctl.task``, from ``targets``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from nnctl.layers import EPSILON, NoOptions
from nnctl.schema import Configured, Schema, lookup

# How an objective reads its target column(s) (nnctl.task turns this into classes and accuracy):
#   "values"  one or more numeric columns (regression);
#   "classes" one column of class labels, one-hot encoded, one output per class;
#   "binary"  0/1 per output: one column of two classes, or several 0/1 columns (multi-label).
Targets = Literal["values", "classes", "binary"]


class Objective(Configured):
    name: ClassVar[str] = "objective"
    targets: ClassVar[Targets] = "values"
    output_layers: ClassVar[tuple[str, ...]] = ()  # the last layers whose outputs it can score (empty: any)
    Options: ClassVar[type[Schema]] = NoOptions

    def __init__(self, epsilon: float = EPSILON) -> None:
        self.epsilon = epsilon

    @classmethod
    def build(cls, options: Any, epsilon: float) -> Objective:
        """The objective from validated `options` (an instance of `cls.Options`) and the config's ε."""
        return cls(epsilon=epsilon, **options.model_dump())

    def eval(self, y: np.ndarray, yhat: np.ndarray) -> float:
        """The mean over rows of the per-row loss J."""
        return float(self.per_row(y, yhat).mean())

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SquaredError(Objective):
    """J = Σ_k (y_k − ŷ_k)²;  ∂J/∂ŷ = −2 (y − ŷ)."""

    name = "squared_error"

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        r = y - yhat  # (N, K), squared in place
        return np.multiply(r, r, out=r).sum(axis=1)

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        r = y - yhat  # (N, K), scaled in place: one array, not two
        r *= -2
        return r


class LogLoss(Objective):
    """J = −Σ_k [y ln(ŷ + ε) + (1 − y) ln(1 − ŷ + ε)];  ∂J/∂ŷ = −(y − ŷ) / (ŷ(1 − ŷ) + ε)."""

    name = "log_loss"
    targets = "binary"
    output_layers = ("logistic", "sigmoid")

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        eps = self.epsilon
        return -(y * np.log(yhat + eps) + (1 - y) * np.log(1 - yhat + eps)).sum(axis=1)

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return -(y - yhat) / (yhat * (1 - yhat) + self.epsilon)


class CrossEntropy(Objective):
    """J = −Σ_k y_k ln(ŷ_k + ε);  ∂J/∂ŷ = −y / (ŷ + ε)."""

    name = "cross_entropy"
    targets = "classes"
    output_layers = ("softmax",)

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        t = yhat + self.epsilon  # (N, K), reused in place
        np.log(t, out=t)
        t *= y
        total = np.add.reduce(t, axis=1)
        return np.negative(total, out=total)

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        t = yhat + self.epsilon  # (N, K), reused in place
        np.divide(y, t, out=t)
        return np.negative(t, out=t)  # −(y / t) is exactly (−y) / t


class AbsoluteError(Objective):
    """J = Σ_k |y_k − ŷ_k|;  ∂J/∂ŷ = −sign(y − ŷ) (0 where ŷ = y)."""

    name = "absolute_error"

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        r = y - yhat
        return np.abs(r, out=r).sum(axis=1)

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        r = y - yhat
        np.sign(r, out=r)
        return np.negative(r, out=r)


class Huber(Objective):
    """J = Σ_k ½ r² where |r| ≤ δ, else δ (|r| − ½ δ), with r = y − ŷ;  ∂J/∂ŷ = −r, or −δ sign(r) beyond δ."""

    name = "huber"

    class Options(Schema):
        delta: float = Field(1.0, gt=0, description="δ: quadratic within it, linear beyond")

    def __init__(self, delta: float = 1.0, epsilon: float = EPSILON) -> None:
        super().__init__(epsilon)
        self.delta = delta

    def per_row(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        r = y - yhat
        a = np.abs(r)
        inside = a <= self.delta
        quadratic = 0.5 * (r * r)
        linear = self.delta * (a - 0.5 * self.delta)
        return np.where(inside, quadratic, linear).sum(axis=1)

    def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        r = y - yhat  # −r inside ±δ, −δ sign(r) outside: exactly −clip(r, −δ, δ)
        np.clip(r, -self.delta, self.delta, out=r)
        return np.negative(r, out=r)


OBJECTIVES: dict[str, type[Objective]] = {
    "squared_error": SquaredError,
    "log_loss": LogLoss,
    "cross_entropy": CrossEntropy,
    "absolute_error": AbsoluteError,
    "huber": Huber,
}


def objective_class(name: str) -> type[Objective]:
    """Look an objective up by its config name; the error lists every valid name."""
    return lookup(OBJECTIVES, name, "objective")
