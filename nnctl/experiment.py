"""One training run end to end: validated config → data → network → trainer → run directory.

This is what `nnctl train` calls; the CLI only renders what it reports.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.config import Config, read_yaml, validate_config
from nnctl.data import Dataset, Encoding, infer_encoding, load_dataset, read_csv, split
from nnctl.errors import ConfigError, DivergenceError, RunError
from nnctl.network import Network, build_network
from nnctl.optimizers import OPTIMIZERS, Optimizer
from nnctl.run import CHECKPOINT, CONFIG_YAML, MODEL_JSON, RunWriter, load_checkpoint
from nnctl.seeds import streams
from nnctl.train import Callback, Trainer, TrainingState

CHECKPOINT_EVERY_SECONDS = 10.0  # the run directory is kept current at least this often


@dataclass
class Setup:
    """Everything built from a config before the first step: data, encoding, network, optimiser."""

    config: Config
    encoding: Encoding
    train: Dataset
    validation: Dataset | None
    network: Network
    optimizer: Optimizer
    shuffle_rng: np.random.Generator


def set_up(config: Config) -> Setup:
    """Read and encode the data, check it against the stack, build and fit the network (no training)."""
    rngs = streams(config.seed)
    encoding, train, validation = load_data(config, rngs["split"])
    network = build_for_data(config, encoding, rngs["init"])
    if network.input is not None:
        network.input.fit(train.X)  # statistics of the training rows only
    optimizer = OPTIMIZERS[config.optimizer.name].build(config.optimizer)
    return Setup(config, encoding, train, validation, network, optimizer, rngs["shuffle"])


def load_data(config: Config, split_rng: np.random.Generator) -> tuple[Encoding, Dataset, Dataset | None]:
    """The encoding decided from the training file, the training set, and the validation set or split."""
    data, dtype = config.data, np.dtype(config.dtype)
    frame = read_csv(data.train, f"{config.source}: data.train")
    encoding = infer_encoding(frame, str(data.train), data.targets, data.features, config.objective.kind)
    train = load_dataset(data.train, encoding, dtype, frame)
    if data.features is None:  # the resolved config names the columns it trained on
        data.features = list(encoding.features)
    if data.validation is not None:
        frame = read_csv(data.validation, f"{config.source}: data.validation")
        return encoding, train, load_dataset(data.validation, encoding, dtype, frame)
    if data.validation_split:
        # Stratified by class; several independent 0/1 columns have no single class to stratify by.
        task = encoding.task
        labels = task.labels(train.Y) if task.classification and not task.multilabel else None
        return encoding, *split(train, data.validation_split, split_rng, labels)
    return encoding, train, None


def build_for_data(config: Config, encoding: Encoding, rng: np.random.Generator) -> Network:
    """The config's network for the data's features and outputs; a mismatch names what the data has."""
    try:
        return build_network(config, len(encoding.features), encoding.n_outputs, rng=rng)
    except ConfigError as exc:
        found = f"classes {encoding.classes}" if encoding.classes else f"target columns {encoding.targets}"
        raise ConfigError(f"{config.source}: {exc} (the data has {found})") from None
    except MemoryError:
        widths = [getattr(layer.options, "units", None) for layer in config.layers]
        widths = [w for w in widths if w is not None]
        raise ConfigError(f"{config.source}: layers: not enough memory for layer widths {widths}") from None


def run_directory(config: Config, out: str | Path | None = None) -> Path:
    return Path(out) if out is not None else Path(config.output) / str(config.name)


def config_differences(new: Config, saved: Config) -> list[str]:
    """Dotted keys whose values differ, ignoring those a resume may change (epochs, name, output)."""
    ignored = {"training.epochs", "name", "output"}

    def walk(a: Any, b: Any, key: str) -> Iterator[str]:
        """The deepest keys where a and b differ (`layers[1].fully_connected.units`, `training.early_stopping`)."""
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                yield from walk(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from walk(x, y, f"{key}[{i}]")
        elif a != b:
            yield key

    return sorted(k for k in walk(new.to_dict(), saved.to_dict(), "") if k not in ignored)


def load_saved_config(path: Path) -> Config:
    file = path / CONFIG_YAML
    if not file.exists():
        raise RunError(f"{path}: cannot resume: {CONFIG_YAML} is missing")
    return validate_config(read_yaml(file), file)


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: small and picklable (a sweep returns it from worker processes)."""

    path: Path
    status: str  # TrainingState.stop_reason: "epochs", "early_stopping", "tolerance", "interrupted", …
    epoch: int  # epochs completed
    batch: int  # batches done in an interrupted epoch
    best_epoch: int
    history: list[dict[str, Any]]
    restored_best: bool = False  # the saved model holds the best validation epoch's weights

    @classmethod
    def of(cls, path: Path, state: TrainingState, restored_best: bool) -> TrainResult:
        status = state.stop_reason or "unknown"
        return cls(path, status, state.epoch, state.batch, state.best_epoch, list(state.history), restored_best)


class Checkpointer(Callback):
    """Forwards progress to the user's callback and keeps the run directory current every so often."""

    def __init__(self, inner: Callback | None, save: Any, every: float | None = None) -> None:
        self.inner = inner if inner is not None else Callback()
        self.every = CHECKPOINT_EVERY_SECONDS if every is None else every
        self.save, self.last = save, time.monotonic()

    def on_train_begin(self, state: TrainingState, epochs: int, n_batches: int) -> None:
        self.inner.on_train_begin(state, epochs, n_batches)

    def on_batch_end(self, epoch: int, batch: int, n_batches: int, samples: int) -> None:
        self.inner.on_batch_end(epoch, batch, n_batches, samples)

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        self.inner.on_epoch_end(record, state)
        if time.monotonic() - self.last > self.every and state.stop_reason is None:
            self.save(state)
            self.last = time.monotonic()


@contextmanager
def stop_on_sigint(trainer: Trainer) -> Iterator[None]:
    """The first Ctrl-C asks the trainer to stop after this batch; a second one aborts at once."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.request_stop()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def train(
    config: Config,
    *,
    out: str | Path | None = None,
    force: bool = False,
    resume: str | Path | None = None,
    callback: Callback | None = None,
    handle_sigint: bool = False,
) -> TrainResult:
    """Train a config into its run directory (or continue one with `resume`); returns where and how it ended."""
    if resume is not None:
        path = _resumable(Path(resume))
        saved: Config | None = load_saved_config(path)
    else:
        path, saved = new_run_path(config, out, force), None
    setup = set_up(config)  # fills in defaults that depend on the data (the feature list)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the run directory: {exc.strerror or exc}") from None
    state = resumed_state(config, saved, setup, path) if saved is not None else None
    if resume is None and force:
        _clear_run(path)
    writer = RunWriter(path, config, setup.network, setup.encoding, setup.optimizer, setup.shuffle_rng)
    writer.save_config()
    trainer = Trainer(
        setup.network, setup.optimizer, config.training, setup.shuffle_rng, Checkpointer(callback, writer.save)
    )
    try:
        with stop_on_sigint(trainer) if handle_sigint else nullcontext():
            state = trainer.fit(setup.train, setup.validation, state)
    except DivergenceError:
        writer.save(trainer.state)  # the weights of the last finished epoch, and the history up to it
        raise
    writer.save(state)  # the checkpoint keeps the last weights, so more epochs continue exactly
    restored = config.training.early_stopping is not None and state.finished and trainer.restore_best(state)
    if restored:
        writer.save_model(state, restored_best=True)
    return TrainResult.of(path, state, restored)


def _resumable(path: Path) -> Path:
    if not (path / CHECKPOINT / "state.json").exists():
        raise RunError(f"{path}: cannot resume: no checkpoint in this directory (is it a run directory?)")
    return path


def new_run_path(config: Config, out: str | Path | None, force: bool) -> Path:
    """Where a new run goes; an existing run there is an error unless `force`."""
    path = run_directory(config, out)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: is a file, not a run directory; choose another directory with --out")
    if path.exists() and not force and any(path.iterdir()):
        raise RunError(
            f"{path}: a run already exists here; pass --force to overwrite it or --out to choose another directory"
        )
    return path


def resumed_state(config: Config, saved: Config, setup: Setup, path: Path) -> TrainingState:
    """The checkpoint's state, once the config matches the run's and there is training left to do."""
    differing = config_differences(config, saved)
    if differing:
        raise ConfigError(
            f"cannot resume {path}: the config differs from the run's in {', '.join(differing)}; "
            "only training.epochs may change (start a new run instead)"
        )
    config.name, config.output = saved.name, saved.output
    state = load_checkpoint(path, setup.optimizer, setup.network, setup.shuffle_rng)
    if state.stop_reason == "diverged":
        raise RunError(f"{path}: this run diverged; start a new run with a smaller learning rate instead")
    if state.stop_reason in ("early_stopping", "tolerance"):  # an uninterrupted run would stop here too
        raise RunError(
            f"{path}: nothing to resume: the run stopped after {state.epoch} epoch(s) by {state.stop_reason}; "
            "more epochs would not change that (start a new run instead)"
        )
    if state.finished and state.epoch >= config.training.epochs:
        raise RunError(
            f"{path}: nothing to resume: the run finished after {state.epoch} epoch(s) ({state.stop_reason}); "
            "raise training.epochs with --set to train longer"
        )
    reached = state.epoch + (1 if state.batch else 0)  # an interrupted epoch counts: it must be finished
    if config.training.epochs < reached:
        raise ConfigError(
            f"training.epochs: cannot resume {path} with {config.training.epochs} epoch(s): the run "
            + (f"is already inside epoch {reached}" if state.batch else f"has already completed {reached} epochs")
            + f"; set training.epochs to at least {reached}"
        )
    return state


def _clear_run(path: Path) -> None:
    """--force: remove what a previous run left (only nnctl's own files)."""
    if (path / CHECKPOINT).is_dir():
        shutil.rmtree(path / CHECKPOINT)
    (path / MODEL_JSON).unlink(missing_ok=True)
