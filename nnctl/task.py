"""What a network's outputs mean, decided once from the objective and the target columns.

The task (classification or regression), whether it is multi-label, how outputs become
predicted classes and probabilities, and the metric (accuracy, or RMSE pooled over every
target): every other module asks a `Task`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnctl.objectives import objective_class

THRESHOLD = 0.5  # a logistic output at or above it predicts class 1


@dataclass(frozen=True)
class Task:
    """The meaning of an objective's outputs for a network with `n_outputs` outputs (encoded target columns)."""

    objective: str
    n_outputs: int = 1

    @property
    def targets(self) -> str:
        """How the target columns are read: "values", "classes" or "binary" (see nnctl.objectives)."""
        return objective_class(self.objective).targets

    @property
    def kind(self) -> str:
        return "regression" if self.targets == "values" else "classification"

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    @property
    def multilabel(self) -> bool:
        """Several independent 0/1 columns, each its own binary classification."""
        return self.targets == "binary" and self.n_outputs > 1

    @property
    def metric_name(self) -> str:
        """The metric history.csv reports next to the loss."""
        return "accuracy" if self.classification else "rmse"

    def labels(self, Y: np.ndarray) -> np.ndarray:
        return true_classes(Y)

    def predict(self, yhat: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return predicted_classes(yhat, out)

    def probabilities(self, yhat: np.ndarray) -> np.ndarray:
        """One column per class (N, C): a binary model's single output becomes [1 − ŷ, ŷ]."""
        return np.hstack([1 - yhat, yhat]) if self.targets == "binary" and not self.multilabel else yhat

    def hits(self, Y: np.ndarray, yhat: np.ndarray) -> float:
        """Correct predictions; multi-label counts each row's fraction of correct columns."""
        if self.multilabel:
            return np.count_nonzero((yhat >= THRESHOLD) == (Y >= THRESHOLD)) / Y.shape[1]
        return float(np.count_nonzero(self.predict(yhat) == self.labels(Y)))

    def accuracy(self, Y: np.ndarray, yhat: np.ndarray) -> float:
        return self.hits(Y, yhat) / max(len(Y), 1)

    def metric_sum(self, Y: np.ndarray, yhat: np.ndarray) -> float:
        """A batch's share of the metric: correct predictions, or the sum of squared errors."""
        if self.classification:
            return self.hits(Y, yhat)
        r = Y - yhat  # (N, K), squared in place
        return float(np.add.reduce(np.multiply(r, r, out=r).ravel()))

    def metric_value(self, total: float, rows: int) -> float:
        """The metric from the shares of `rows` rows: accuracy, or RMSE pooled over every target."""
        if self.classification:
            return total / max(rows, 1)
        return math.sqrt(total / max(rows * self.n_outputs, 1))

    def metric(self, Y: np.ndarray, yhat: np.ndarray) -> float:
        return self.metric_value(self.metric_sum(Y, yhat), len(Y))


def true_classes(Y: np.ndarray) -> np.ndarray:
    """True class index per row (N,) of encoded targets (one-hot, or one 0/1 column)."""
    return Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] >= THRESHOLD).astype(np.intp)


def predicted_classes(yhat: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Predicted class index per row (N,): the argmax of several outputs, or ŷ ≥ 0.5 for one."""
    if yhat.shape[1] > 1:
        return yhat.argmax(axis=1, out=out)
    if out is None:
        return (yhat[:, 0] >= THRESHOLD).astype(np.intp)
    return np.greater_equal(yhat[:, 0], THRESHOLD, out=out)
