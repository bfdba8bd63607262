"""The trainer: seeded mini-batch gradient descent with per-epoch metrics, early stopping and exact resume.

The library never prints: progress goes to an optional callback. Everything a resume needs
(weights, optimiser moments, RNG state, position inside the epoch, history) lives in a
`TrainingState`, which the run directory saves as its checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nnctl.config import TrainingConfig
from nnctl.data import Dataset
from nnctl.errors import DivergenceError
from nnctl.layers import FullyConnected
from nnctl.network import Network
from nnctl.optimizers import Optimizer

NORMALIZE_ONCE_BYTES = 32 * 2**20  # larger training sets are z-scored batch by batch instead of copied


class Callback(Protocol):
    """What a progress display implements; every method is optional."""

    def on_train_begin(self, state: TrainingState, epochs: int, n_batches: int) -> None: ...
    def on_batch_end(self, epoch: int, batch: int, n_batches: int, samples: int) -> None: ...
    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None: ...


@dataclass
class TrainingState:
    """Where training stands: enough to continue bit for bit (saved as the run's checkpoint)."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # next batch inside the current epoch (0 at an epoch boundary)
    permutation: np.ndarray | None = None  # row order of the current epoch
    loss_sum: float = 0.0  # Σ per-row loss over the current epoch's finished batches
    hits: float = 0.0  # correct predictions (classification) so far this epoch
    seen: int = 0  # rows seen so far this epoch
    epoch_seconds: float = 0.0  # wall time already spent in the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0  # epochs since validation loss last improved
    best_params: dict[str, np.ndarray] = field(default_factory=dict)
    stop_reason: str | None = None  # "epochs", "early_stopping", "tolerance", "interrupted", "diverged"

    @property
    def finished(self) -> bool:
        return self.stop_reason in ("epochs", "early_stopping", "tolerance")


def metric_name(task: str) -> str:
    return "accuracy" if task == "classification" else "rmse"


class Trainer:
    """Trains a network on a Dataset with one optimiser; the same object the CLI and benchmarks use."""

    def __init__(
        self,
        network: Network,
        optimizer: Optimizer,
        training: TrainingConfig,
        rng: np.random.Generator,
        callback: Callback | None = None,
    ) -> None:
        self.network = network
        self.optimizer = optimizer
        self.training = training
        self.rng = rng
        self.callback = callback
        self.task = network.objective.task
        self._stop_requested = False

    def request_stop(self) -> None:
        """Ask training to stop after the current batch (what Ctrl-C does)."""
        self._stop_requested = True

    def fit(
        self, train: Dataset, validation: Dataset | None = None, state: TrainingState | None = None
    ) -> TrainingState:
        """Train until the configured epochs, early stopping, tolerance, a stop request or divergence."""
        # Overflow on the way to a NaN is detected and reported as divergence; numpy's warnings would only add noise.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._fit(train, validation, state)

    def _fit(self, train: Dataset, validation: Dataset | None, state: TrainingState | None) -> TrainingState:
        state = self.state = state or TrainingState()
        if state.stop_reason in ("epochs", "interrupted", "tolerance"):
            state.stop_reason = None  # resuming, perhaps with more epochs
        self._stop_requested = False
        cfg, net, objective = self.training, self.network, self.network.objective
        dtype = net.dtype
        # The input layer is a fixed affine map, applied outside the trained stack (same numbers): to a small
        # data set once, into a copy; to a large one batch by batch, in the batch buffer (no normalised copy).
        trainable = net.modules
        X, Y = train.X.astype(dtype, copy=False), np.ascontiguousarray(train.Y, dtype=dtype)
        Xv = Yv = None
        if validation is not None:
            Xv, Yv = validation.X.astype(dtype, copy=False), validation.Y.astype(dtype, copy=False)
        normalize = None
        if net.input is not None:
            trainable = net.modules[1:]
            Xv = net.input.forward(Xv) if Xv is not None else None
            if X.nbytes <= NORMALIZE_ONCE_BYTES:
                X = net.input.forward(X, out=np.empty(X.shape, dtype))  # C order, see below
            else:
                normalize = net.input
        # Batches are gathered with take(out=...), which copies the whole array first unless it is C-contiguous
        # (pandas hands out columns, so loaded data are in F order): convert once here, never per batch; this
        # is the one copy of a large data set that training makes.
        X = np.ascontiguousarray(X)
        first = trainable[0] if trainable else None
        # (module, is it the first layer): ∂J/∂X of the data is never needed, so the first layer skips it.
        backward_plan = [(m, m is first and isinstance(m, FullyConnected)) for m in reversed(trainable)]
        n, self._n_targets = len(X), Y.shape[1]
        batch_size = min(cfg.batch_size or n, n)
        n_batches = math.ceil(n / batch_size)
        parameters = net.parameters()
        good = {name: p.copy() for name, p, _ in parameters}  # weights at the last finished epoch
        step = self.optimizer.step
        classification = self.task == "classification"
        multilabel = classification and Y.shape[1] > 1 and objective.name == "log_loss"
        labels = predicted = None
        if classification and not multilabel:
            labels = _predict_index(Y)
            predicted = np.empty_like(labels)  # this epoch's predictions, row by row; scored against labels in bulk
        report_every = max(1, n_batches // 25)
        callback = self.callback
        if callback is not None and hasattr(callback, "on_train_begin"):
            callback.on_train_begin(state, cfg.epochs, n_batches)
        xb = np.empty((batch_size, X.shape[1]), dtype=dtype)
        yb = np.empty((batch_size, Y.shape[1]), dtype=dtype)

        while state.epoch < cfg.epochs:
            epoch = state.epoch + 1
            started = time.perf_counter()
            if state.batch == 0:
                state.permutation = self.rng.permutation(n) if cfg.shuffle else np.arange(n)
                state.loss_sum, state.hits, state.seen, state.epoch_seconds = 0.0, 0.0, 0, 0.0
            order = state.permutation
            unscored = state.batch * batch_size  # rows before this one are already counted in state.hits
            for b in range(state.batch, n_batches):
                start = b * batch_size
                index = order[start : start + batch_size]
                m = len(index)
                x, y = (xb, yb) if m == batch_size else (xb[:m], yb[:m])
                X.take(index, axis=0, out=x)
                Y.take(index, axis=0, out=y)
                if normalize is not None:
                    normalize.forward(x, out=x)
                out = x
                for module in trainable:
                    out = module.forward(out)
                batch_loss = float(np.add.reduce(objective.per_row(y, out)))
                if not math.isfinite(batch_loss):
                    what = f"the loss became {batch_loss} at epoch {epoch}, batch {b + 1} of {n_batches}"
                    self._diverged(state, good, what, epoch, b + 1)
                state.loss_sum += batch_loss
                state.seen += m
                if predicted is not None:
                    _predict_index(out, out=predicted[start : start + m])
                elif multilabel:
                    state.hits += int(np.count_nonzero((out >= 0.5) == (y >= 0.5))) / y.shape[1]
                delta = objective.gradient(y, out)
                for module, into_data in backward_plan:
                    if into_data:
                        module.backward(delta, need_input_grad=False)
                    else:
                        delta = module.backward(delta)
                step(parameters)
                state.batch = b + 1
                if callback is not None and (b + 1) % report_every == 0:
                    callback.on_batch_end(epoch, b + 1, n_batches, state.seen)
                if self._stop_requested and b + 1 < n_batches:
                    state.hits += _hits(predicted, labels, order, unscored, start + m)
                    state.epoch_seconds += time.perf_counter() - started
                    state.stop_reason = "interrupted"
                    return state
            state.hits += _hits(predicted, labels, order, unscored, n)
            state.epoch_seconds += time.perf_counter() - started
            # A step can overflow the weights after the epoch's last finite loss: never keep those as "good".
            bad = next((name for name, p, _ in parameters if not np.isfinite(p).all()), None)
            if bad is not None:
                what = f"parameter {bad} became NaN or infinite in epoch {epoch}, by batch {n_batches} of {n_batches}"
                self._diverged(state, good, what, epoch, n_batches)
            record = self._end_epoch(state, epoch, Xv, Yv, trainable)
            for name, p, _ in parameters:
                np.copyto(good[name], p)
            if callback is not None:
                callback.on_epoch_end(record, state)
            if state.stop_reason is not None:
                break
            if self._stop_requested:
                state.stop_reason = "interrupted"
                return state
        else:
            state.stop_reason = "epochs"
        return state

    def restore_best(self, state: TrainingState) -> bool:
        """Load the best validation epoch's weights (kept when early stopping is on); True if it did."""
        if not state.best_params:
            return False
        self._restore(self.network.parameters(), state.best_params)
        return True

    def _end_epoch(self, state: TrainingState, epoch: int, Xv: Any, Yv: Any, trainable: list) -> dict[str, Any]:
        """Close an epoch: history row, early stopping and tolerance bookkeeping."""
        cfg, objective = self.training, self.network.objective
        train_loss = state.loss_sum / state.seen
        metric = metric_name(self.task)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "validation_loss": None}
        if self.task == "classification":
            record[f"train_{metric}"] = state.hits / state.seen
        else:  # squared_error's per-row loss sums over the K targets: RMSE pooled over every target
            record[f"train_{metric}"] = math.sqrt(train_loss / self._n_targets)
        record[f"validation_{metric}"] = None
        started = time.perf_counter()
        if Xv is not None:
            out = Xv
            for module in trainable:
                out = module.forward(out)
            record["validation_loss"] = objective.eval(Yv, out)
            if self.task == "classification":
                if Yv.shape[1] > 1 and objective.name == "log_loss":
                    record[f"validation_{metric}"] = float(((out >= 0.5) == (Yv >= 0.5)).mean())
                else:
                    truth = Yv.argmax(axis=1) if Yv.shape[1] > 1 else (Yv[:, 0] >= 0.5)
                    record[f"validation_{metric}"] = float(np.mean(_predict_index(out) == truth))
            else:
                record[f"validation_{metric}"] = float(np.sqrt(((Yv - out) ** 2).mean()))
        record["learning_rate"] = self.optimizer.learning_rate
        state.epoch_seconds += time.perf_counter() - started  # an epoch's time includes its validation
        record["seconds"] = state.epoch_seconds
        state.history.append(record)
        state.epoch, state.batch = epoch, 0

        watched = record["validation_loss"]
        if watched is not None:
            stopping = cfg.early_stopping
            min_delta = stopping.min_delta if stopping else 0.0
            if watched < state.best_loss - min_delta:
                state.best_loss, state.best_epoch, state.wait = watched, epoch, 0
                if stopping is not None:
                    state.best_params = {name: p.copy() for name, p, _ in self.network.parameters()}
            else:
                state.wait += 1
                if stopping is not None and state.wait >= stopping.patience:
                    state.stop_reason = "early_stopping"
        elif train_loss < state.best_loss:
            state.best_loss, state.best_epoch = train_loss, epoch
        if (
            cfg.tolerance is not None
            and len(state.history) > 1
            and state.stop_reason is None
            and abs(state.history[-2]["train_loss"] - train_loss) < cfg.tolerance
        ):
            state.stop_reason = "tolerance"
        if state.stop_reason is None and epoch >= cfg.epochs:
            state.stop_reason = "epochs"
        return record

    def _diverged(self, state: TrainingState, good: dict[str, np.ndarray], what: str, epoch: int, batch: int) -> None:
        """Put back the last finished epoch's weights and stop with a DivergenceError naming where."""
        self._restore(self.network.parameters(), good)
        state.batch, state.stop_reason = 0, "diverged"
        rate = self.optimizer.learning_rate
        message = f"training diverged: {what}; try a smaller optimizer.learning_rate (now {rate:g})"
        raise DivergenceError(message, epoch=epoch, batch=batch)

    @staticmethod
    def _restore(parameters: list[tuple[str, np.ndarray, np.ndarray]], saved: dict[str, np.ndarray]) -> None:
        for name, p, _ in parameters:
            np.copyto(p, saved[name])


def _predict_index(yhat: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The predicted class of each row (N,): the argmax, or ŷ ≥ 0.5 for one column."""
    if yhat.shape[1] > 1:
        return yhat.argmax(axis=1, out=out)
    return np.greater_equal(yhat[:, 0], 0.5, out=out)


def _hits(predicted: np.ndarray | None, labels: np.ndarray | None, order: np.ndarray, start: int, stop: int) -> int:
    """Correct predictions among this epoch's rows start:stop (in batch order)."""
    if predicted is None or labels is None or stop <= start:
        return 0
    return int(np.count_nonzero(predicted[start:stop] == labels[order[start:stop]]))
