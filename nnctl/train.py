"""The trainer: seeded mini-batch gradient descent with per-epoch metrics, early stopping and exact resume.

The library never prints: progress goes to a `Callback`. Everything a resume needs (weights,
optimiser moments, RNG state, position inside the epoch, history) lives in a `TrainingState`,
which the run directory saves as its checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnctl.config import TrainingConfig
from nnctl.data import Dataset
from nnctl.errors import DivergenceError
from nnctl.network import Network
from nnctl.optimizers import Optimizer
from nnctl.runs import FINISHED
from nnctl.tabular import TargetScale
from nnctl.task import Task, predicted_classes

NORMALIZE_ONCE_BYTES = 32 * 2**20  # larger training sets are z-scored batch by batch instead of copied


class Callback:
    """Progress hooks the trainer calls; each is a no-op here, so a callback overrides only what it needs."""

    def set_trainer(self, trainer: Trainer) -> None:
        """Once, by the trainer it is given to (a callback that may stop training keeps it: `request_stop`)."""

    def on_train_begin(self, state: TrainingState, epochs: int, n_batches: int) -> None:
        """Before the first batch (of this call: a resumed run begins mid-way)."""

    def on_batch_end(self, epoch: int, batch: int, n_batches: int, samples: int) -> None:
        """After about every 25th of an epoch's batches (1-based epoch and batch)."""

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        """After an epoch's history row is recorded (`record`)."""

    def on_warning(self, message: str) -> None:
        """A warning about the data (a column that looks like an identifier, categories not seen in training)."""


@dataclass
class TrainingState:
    """Where training stands: enough to continue bit for bit (saved as the run's checkpoint)."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # next batch inside the current epoch (0 at an epoch boundary)
    permutation: np.ndarray | None = None  # row order of the current epoch
    loss_sum: float = 0.0  # Σ per-row loss over the current epoch's finished batches
    metric_sum: float = 0.0  # Task.metric_sum over the rows scored so far this epoch
    seen: int = 0  # rows seen so far this epoch
    grad_norm_sum: float = 0.0  # Σ of each finished batch's global gradient norm (before clipping) this epoch
    epoch_seconds: float = 0.0  # wall time already spent in the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0  # epochs since validation loss last improved
    best_params: dict[str, np.ndarray] = field(default_factory=dict)
    stop_reason: str | None = None  # "epochs", "early_stopping", "tolerance", "interrupted", "diverged"

    @property
    def finished(self) -> bool:
        return self.stop_reason in FINISHED


# A gathered batch: inputs x, targets y in their own units, targets t the network learns (y itself unless
# data.scale_target standardises them), and loss weights w per row (data.class_weight; None without).
Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def batch_layout(rows: int, batch_size: int | None) -> tuple[int, int]:
    """(rows per batch, batches per epoch) for `rows` training rows and training.batch_size (None: one batch)."""
    size = min(batch_size or rows, rows)
    return size, math.ceil(rows / size)


class Batches:
    """The training arrays laid out once for fast gathering, and one reused buffer for every batch.

    The input layer is a fixed affine map applied here (same numbers as the network's own forward):
    to a small data set once, into a C-ordered copy; to a large one batch by batch, in the buffer.
    A large X is never copied: batches are gathered from it where it lies (in memory, or memory-mapped
    from the data cache), through the set's `rows` when it is a view (a validation split).
    The network then runs from `start`, past its input layer.
    """

    def __init__(
        self, network: Network, data: Dataset, batch_size: int | None, target_scale: TargetScale | None = None
    ) -> None:
        dtype = network.dtype
        self.Y = np.ascontiguousarray(data.Y, dtype=dtype)  # the targets, in their own units (losses, metrics)
        # What the network learns: standardised targets with data.scale_target (gathered alongside), else Y.
        self.T = None if target_scale is None else target_scale.scale(self.Y)
        self.W = None if data.weights is None else np.ascontiguousarray(data.weights, dtype=dtype)
        self.normalize = network.input
        self.start = 0 if network.input is None else 1
        X, self.index = data.matrix, None if data.rows is None else np.asarray(data.rows, dtype=np.intp)
        if self.normalize is not None and len(data) * X.shape[1] * dtype.itemsize <= NORMALIZE_ONCE_BYTES:
            X = self.normalize.forward(data.X.astype(dtype, copy=False), out=np.empty((len(data), X.shape[1]), dtype))
            self.normalize, self.index = None, None
        # take(out=...) copies the whole array first unless it is C-contiguous and of the buffer's dtype:
        # the loader hands out exactly that, so this copies only arrays built some other way.
        self.X = np.ascontiguousarray(X, dtype=dtype)
        self.rows = len(data)
        self.size, self.count = batch_layout(self.rows, batch_size)
        self._x = np.empty((self.size, self.X.shape[1]), dtype=dtype)
        self._y = np.empty((self.size, self.Y.shape[1]), dtype=dtype)
        self._t = None if self.T is None else np.empty_like(self._y)
        self._w = None if self.W is None else np.empty(self.size, dtype=dtype)
        self._i = np.empty(self.size, dtype=np.intp)

    def gather(self, index: np.ndarray) -> Batch:
        """The rows `index` as views of the reused buffers (valid until the next gather)."""
        m = len(index)
        x, y = self._x[:m], self._y[:m]
        stored = index if self.index is None else self.index.take(index, out=self._i[:m])
        self.X.take(stored, axis=0, out=x)
        self.Y.take(index, axis=0, out=y)
        if self.normalize is not None:
            self.normalize.forward(x, out=x)
        t = y if self.T is None or self._t is None else self.T.take(index, axis=0, out=self._t[:m])
        w = None if self.W is None or self._w is None else self.W.take(index, out=self._w[:m])
        return x, y, t, w


class EpochScore:
    """The training metric of an epoch, batch by batch. Single-label predictions are only stored per row
    and scored against the labels in bulk (`settle`), which keeps per-batch work to one argmax."""

    def __init__(self, task: Task, Y: np.ndarray) -> None:
        self.task = task
        self.bulk = task.classification and not task.multilabel
        self.labels = task.labels(Y) if self.bulk else None
        # This epoch's predictions, in batch order (only when they are scored in bulk: none otherwise).
        self.predicted = np.empty(len(Y) if self.bulk else 0, dtype=np.intp)
        self.settled = 0  # rows before this position are already in state.metric_sum

    def add(self, y: np.ndarray, yhat: np.ndarray, position: int) -> float:
        """Score a batch that starts at `position` in the epoch's order; returns what is already countable."""
        if self.bulk:
            predicted_classes(yhat, self.predicted[position : position + len(yhat)])  # Task.predict, one call less
            return 0.0
        return self.task.metric_sum(y, yhat)

    def settle(self, order: np.ndarray, stop: int) -> float:
        """Correct stored predictions among rows settled:stop of the epoch's order."""
        start, self.settled = self.settled, stop
        if self.labels is None or stop <= start:
            return 0.0
        return float(np.count_nonzero(self.predicted[start:stop] == self.labels[order[start:stop]]))


class Trainer:
    """Trains a network on a Dataset with one optimiser; the same object the CLI and benchmarks use."""

    def __init__(
        self,
        network: Network,
        optimizer: Optimizer,
        training: TrainingConfig,
        rng: np.random.Generator,
        callback: Callback | None = None,
        save: Callable[[TrainingState], None] | None = None,
        save_every: float = 10.0,
        target_scale: TargetScale | None = None,
    ) -> None:
        self.network = network
        self.target_scale = target_scale  # losses and metrics are reported in the targets' own units
        self.optimizer = optimizer
        self.training = training
        self.rng = rng
        self.callback = callback if callback is not None else Callback()
        self.callback.set_trainer(self)
        self.state = TrainingState()
        self._stop_requested = False
        self.save, self.save_every = save, save_every  # keeps the run directory current (a checkpoint)
        self._save_due = math.inf

    def request_stop(self) -> None:
        """Ask training to stop after the current batch (what Ctrl-C does)."""
        self._stop_requested = True

    def fit(
        self, train: Dataset, validation: Dataset | None = None, state: TrainingState | None = None
    ) -> TrainingState:
        """Train until the configured epochs, early stopping, tolerance, a stop request or divergence."""
        # Overflow on the way to a NaN is detected and reported as divergence; numpy's warnings would only add noise.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                return self._fit(train, validation, state)
            finally:
                self.network.eval()
                self._stop_requested = False  # a request is for this fit (one made before it starts counts too)

    def _fit(self, train: Dataset, validation: Dataset | None, state: TrainingState | None) -> TrainingState:
        state = self.state = state or TrainingState()
        if state.stop_reason in ("epochs", "interrupted", "tolerance"):
            state.stop_reason = None  # resuming, perhaps with more epochs
        batches = Batches(self.network, train, self.training.batch_size, self.target_scale)
        self.task = Task(self.network.objective.name, batches.Y.shape[1])
        self._flat = self.network.flat_parameters()  # what the optimiser updates: one vector, the arrays its views
        self._parameters = self.network.parameters()  # (name, param, grad) of each array, views into it
        self._plan = self.network.backward_plan(batches.start)
        held_out = self._validation_inputs(validation)
        score = EpochScore(self.task, batches.Y)
        last_good = {name: p.copy() for name, p, _ in self._parameters}  # weights after the last finished epoch
        self.callback.on_train_begin(state, self.training.epochs, batches.count)
        self._save_due = math.inf if self.save is None else time.monotonic() + self.save_every
        while state.epoch < self.training.epochs:
            if self._stop_requested or not self._train_epoch(state, batches, score, last_good):
                state.stop_reason = "interrupted"
                return state
            record = self._end_epoch(state, held_out)
            for name, p, _ in self._parameters:
                np.copyto(last_good[name], p)
            self.callback.on_epoch_end(record, state)
            if state.stop_reason is not None:
                return state
            if time.monotonic() >= self._save_due:
                self._save(state)
            if self._stop_requested:
                state.stop_reason = "interrupted"
                return state
        state.stop_reason = "epochs"
        return state

    def _save(self, state: TrainingState) -> None:
        if self.save is not None:
            self.save(state)
            self._save_due = time.monotonic() + self.save_every

    def _validation_inputs(self, validation: Dataset | None) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(X, Y, start): validation rows in the network's dtype, the input layer applied once."""
        if validation is None:
            return None
        net, dtype = self.network, self.network.dtype
        X, Y = validation.X.astype(dtype, copy=False), validation.Y.astype(dtype, copy=False)
        if net.input is None:
            return X, Y, 0
        return net.input.forward(X), Y, 1

    def _train_epoch(
        self, state: TrainingState, batches: Batches, score: EpochScore, last_good: dict[str, np.ndarray]
    ) -> bool:
        """Run the current epoch's remaining batches; False when a stop request ends it early."""
        epoch, started = state.epoch + 1, time.perf_counter()
        if state.batch == 0:
            state.permutation = self.rng.permutation(batches.rows) if self.training.shuffle else np.arange(batches.rows)
            state.loss_sum, state.metric_sum, state.seen, state.epoch_seconds = 0.0, 0.0, 0, 0.0
            state.grad_norm_sum = 0.0
        order = state.permutation
        assert order is not None  # set above, or restored with the checkpoint
        score.settled = state.batch * batches.size  # earlier rows were counted before an interruption
        report_every = max(1, batches.count // 25)
        self.network.train()
        gather, step, add, optimizer, size = batches.gather, self._step, score.add, self.optimizer, batches.size
        monotonic = time.monotonic
        for b in range(state.batch, batches.count):  # the hot loop: names looked up once, above
            position = b * size
            batch = gather(order[position : position + size])
            batch_loss, yhat = step(batch, batches.start)
            y = batch[1]
            if not math.isfinite(batch_loss):
                what = f"the loss became {batch_loss} at epoch {epoch}, batch {b + 1} of {batches.count}"
                self._diverged(state, last_good, what, epoch, b + 1)
            state.loss_sum += batch_loss
            state.seen += len(y)
            if optimizer.grad_norm is not None:
                state.grad_norm_sum += optimizer.grad_norm
            state.metric_sum += add(y, yhat, position)
            state.batch = b + 1
            if (b + 1) % report_every == 0:
                self.callback.on_batch_end(epoch, b + 1, batches.count, state.seen)
            if b + 1 < batches.count and (self._stop_requested or monotonic() >= self._save_due):
                state.metric_sum += score.settle(order, position + len(y))  # the state is whole from here
                state.epoch_seconds += time.perf_counter() - started
                if self._stop_requested:
                    return False
                self._save(state)  # mid-epoch: a long epoch is checkpointed too
                started = time.perf_counter()
        state.metric_sum += score.settle(order, batches.rows)
        state.epoch_seconds += time.perf_counter() - started
        self._check_parameters(state, last_good, epoch, batches.count)
        return True

    def _step(self, batch: Batch, start: int) -> tuple[float, np.ndarray]:
        """One gradient step on a batch: forward, loss, backward, update. Returns (Σ per-row loss, ŷ), ŷ in the
        targets' own units. Row weights multiply each row's loss and its δ = ∂J/∂ŷ."""
        x, y, t, w = batch
        net, objective, scale = self.network, self.network.objective, self.target_scale
        output = net.forward(x, start)
        yhat = output if scale is None else scale.unscale(output)  # the loss the user reads: in y's own units
        per_row = objective.per_row(y, yhat)
        delta = objective.gradient(t, output)
        if w is not None:  # both are new arrays of this batch: weighted in place
            per_row *= w
            delta *= w[:, None]
        net.backward_params(delta, self._plan)
        self.optimizer.step(self._flat)
        return float(np.add.reduce(per_row)), yhat

    def _check_parameters(self, state: TrainingState, last_good: dict[str, np.ndarray], epoch: int, n: int) -> None:
        """A step can overflow the weights after the epoch's last finite loss: never keep those as good."""
        bad = next((name for name, p, _ in self.network.parameters() if not np.isfinite(p).all()), None)
        if bad is not None:
            what = f"parameter {bad} became NaN or infinite in epoch {epoch}, by batch {n} of {n}"
            self._diverged(state, last_good, what, epoch, n)

    def _end_epoch(self, state: TrainingState, held_out: tuple[np.ndarray, np.ndarray, int] | None) -> dict[str, Any]:
        """Close an epoch: its history row (validation scored in evaluation mode), then the stopping rules."""
        epoch, metric = state.epoch + 1, self.task.metric_name
        train_loss = state.loss_sum / state.seen
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "validation_loss": None}
        record[f"train_{metric}"] = self.task.metric_value(state.metric_sum, state.seen)
        record[f"validation_{metric}"] = None
        started = time.perf_counter()
        if held_out is not None:
            X, Y, start = held_out
            yhat = self.network.eval().forward(X, start)
            if self.target_scale is not None:
                yhat = self.target_scale.unscale(yhat)
            record["validation_loss"] = self.network.objective.eval(Y, yhat)
            record[f"validation_{metric}"] = self.task.metric(Y, yhat)
        record["learning_rate"] = self.optimizer.learning_rate  # the rate this epoch used
        norms = self.optimizer.grad_norm is not None
        record["grad_norm"] = state.grad_norm_sum / state.batch if norms and state.batch else None
        state.epoch_seconds += time.perf_counter() - started  # an epoch's time includes its validation
        record["seconds"] = state.epoch_seconds
        state.history.append(record)
        state.epoch, state.batch = epoch, 0
        self._update_stopping(state, record)
        watched = record["validation_loss"] if record["validation_loss"] is not None else train_loss
        self.optimizer.end_epoch(watched)  # the schedule sets the next epoch's rate, whether or not one follows
        return record

    def _update_stopping(self, state: TrainingState, record: dict[str, Any]) -> None:
        """Early stopping on the validation loss (or the best train loss), tolerance, and the epoch limit."""
        cfg, epoch, watched = self.training, record["epoch"], record["validation_loss"]
        stopping = cfg.early_stopping
        if watched is not None:
            if watched < state.best_loss - (stopping.min_delta if stopping else 0.0):
                state.best_loss, state.best_epoch, state.wait = watched, epoch, 0
                if stopping is not None:
                    state.best_params = {name: p.copy() for name, p, _ in self.network.parameters()}
            else:
                state.wait += 1
                if stopping is not None and state.wait >= stopping.patience:
                    state.stop_reason = "early_stopping"
        elif record["train_loss"] < state.best_loss:
            state.best_loss, state.best_epoch = record["train_loss"], epoch
        previous = state.history[-2]["train_loss"] if len(state.history) > 1 else math.inf
        change = abs(previous - record["train_loss"])
        if state.stop_reason is None and cfg.tolerance is not None and change < cfg.tolerance:
            state.stop_reason = "tolerance"
        if state.stop_reason is None and epoch >= cfg.epochs:
            state.stop_reason = "epochs"

    def restore_best(self, state: TrainingState) -> bool:
        """Load the best validation epoch's weights (kept when early stopping is on); True if it did."""
        if not state.best_params:
            return False
        self._restore(state.best_params)
        return True

    def _diverged(
        self, state: TrainingState, last_good: dict[str, np.ndarray], what: str, epoch: int, batch: int
    ) -> None:
        """Put back the last finished epoch's weights and stop with a DivergenceError naming where."""
        self._restore(last_good)
        state.batch, state.stop_reason = 0, "diverged"
        rate = self.optimizer.learning_rate
        message = f"training diverged: {what}; try a smaller optimizer.learning_rate (now {rate:g})"
        raise DivergenceError(message, epoch=epoch, batch=batch)

    def _restore(self, saved: dict[str, np.ndarray]) -> None:
        for name, p, _ in self.network.parameters():
            np.copyto(p, saved[name])
