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

from nnctl.config import Config, read_yaml, rngs, validate_config
from nnctl.data import Dataset, Encoding, infer_encoding, load_dataset, read_csv, split
from nnctl.errors import ConfigError, DivergenceError, RunError
from nnctl.network import Network, build_network
from nnctl.optimizers import Optimizer, optimizer_class
from nnctl.run import (
    CHECKPOINT,
    CONFIG_YAML,
    MODEL_JSON,
    load_checkpoint,
    save_checkpoint,
    save_config,
    save_history,
    save_model,
)
from nnctl.train import Callback, Trainer, TrainingState

CHECKPOINT_EVERY_SECONDS = 30.0


@dataclass
class Prepared:
    """Everything built from a config before the first step: data, encoding, network, optimiser."""

    config: Config
    encoding: Encoding
    train: Dataset
    validation: Dataset | None
    network: Network
    optimizer: Optimizer
    shuffle_rng: np.random.Generator


def prepare(config: Config) -> Prepared:
    """Read and encode the data, check it against the stack, build and fit the network (no training)."""
    dtype = np.dtype(config.dtype)
    streams = rngs(config.seed)
    frame = read_csv(config.data.train, f"{config.source}: data.train")
    encoding = infer_encoding(
        frame, str(config.data.train), config.data.targets, config.data.features, config.objective
    )
    train = load_dataset(config.data.train, encoding, dtype, frame)
    if config.data.features is None:  # the resolved config names the columns it trained on
        config.data.features = list(encoding.features)
    validation = None
    if config.data.validation is not None:
        validation = load_dataset(
            config.data.validation,
            encoding,
            dtype,
            read_csv(config.data.validation, f"{config.source}: data.validation"),
        )
    elif config.data.validation_split:
        # Stratified by class; several independent 0/1 columns have no single class to stratify by.
        train, validation = split(train, config.data.validation_split, streams["split"], bool(encoding.classes))
    try:
        network = build_network(config, len(encoding.features), encoding.n_outputs, rng=streams["init"])
    except ConfigError as exc:
        found = f"classes {encoding.classes}" if encoding.classes else f"target columns {encoding.targets}"
        raise ConfigError(f"{config.source}: {exc} (the data has {found})") from None
    except MemoryError:
        widths = [layer.options.get("units") for layer in config.layers if layer.kind == "fully_connected"]
        raise ConfigError(f"{config.source}: layers: not enough memory for fully_connected widths {widths}") from None
    if network.input is not None:
        network.input.fit(train.X)  # statistics of the training rows only
    opt = config.optimizer
    options: dict[str, Any] = {"learning_rate": opt.learning_rate, "weight_decay": opt.weight_decay}
    if opt.name == "momentum":
        options["momentum"] = opt.momentum
    elif opt.name == "adam":
        options.update(beta1=opt.beta1, beta2=opt.beta2, delta=opt.delta)
    optimizer = optimizer_class(opt.name)(**options)
    return Prepared(config, encoding, train, validation, network, optimizer, streams["shuffle"])


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


@dataclass
class TrainResult:
    path: Path
    state: TrainingState
    prepared: Prepared
    restored_best: bool = False  # the saved model holds the best validation epoch's weights

    @property
    def status(self) -> str:
        return self.state.stop_reason or "unknown"


class _Checkpointer:
    """Forwards progress to the user's callback and saves a checkpoint every so often."""

    def __init__(self, inner: Callback | None, save: Any) -> None:
        self.inner, self.save, self.last = inner, save, time.monotonic()

    def on_train_begin(self, state: TrainingState, epochs: int, n_batches: int) -> None:
        if self.inner is not None and hasattr(self.inner, "on_train_begin"):
            self.inner.on_train_begin(state, epochs, n_batches)

    def on_batch_end(self, epoch: int, batch: int, n_batches: int, samples: int) -> None:
        if self.inner is not None and hasattr(self.inner, "on_batch_end"):
            self.inner.on_batch_end(epoch, batch, n_batches, samples)

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        if self.inner is not None and hasattr(self.inner, "on_epoch_end"):
            self.inner.on_epoch_end(record, state)
        if time.monotonic() - self.last > CHECKPOINT_EVERY_SECONDS and state.stop_reason is None:
            self.save(state)
            self.last = time.monotonic()


@contextmanager
def stop_on_sigint(trainer: Trainer) -> Iterator[None]:
    """The first Ctrl-C asks the trainer to stop after this batch; a second one aborts at once."""

    def handler(signum: int, frame: Any) -> None:
        if trainer._stop_requested:
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
        path = Path(resume)
        if not (path / CHECKPOINT / "state.json").exists():
            raise RunError(f"{path}: cannot resume: no checkpoint in this directory (is it a run directory?)")
        saved = load_saved_config(path)
    else:
        path = run_directory(config, out)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path}: is a file, not a run directory; choose another directory with --out")
        if path.exists() and not force and any(path.iterdir()):
            raise RunError(
                f"{path}: a run already exists here; pass --force to overwrite it or --out to choose another directory"
            )
    prepared = prepare(config)  # fills in defaults that depend on the data (the feature list)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the run directory: {exc.strerror or exc}") from None
    state = None
    if resume is not None:
        differing = config_differences(config, saved)
        if differing:
            raise ConfigError(
                f"cannot resume {path}: the config differs from the run's in {', '.join(differing)}; "
                "only training.epochs may change (start a new run instead)"
            )
        config.name, config.output = saved.name, saved.output
        state = load_checkpoint(path, prepared.optimizer, prepared.network, prepared.shuffle_rng)
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
    elif path.exists() and force:
        _clear_run(path)

    def save(current: TrainingState) -> None:
        try:
            save_config(path, config)
            save_checkpoint(path, current, prepared.optimizer, prepared.network, prepared.shuffle_rng)
            save_model(path, config, prepared.network, prepared.encoding, model_status(current))
            save_history(path, current.history, prepared.encoding.task)
        except OSError as exc:
            raise RunError(f"{path}: cannot write the run directory: {exc.strerror or exc}") from None

    trainer = Trainer(
        prepared.network, prepared.optimizer, config.training, prepared.shuffle_rng, _Checkpointer(callback, save)
    )
    try:
        with stop_on_sigint(trainer) if handle_sigint else nullcontext():
            state = trainer.fit(prepared.train, prepared.validation, state)
    except DivergenceError:
        save(trainer.state)  # the weights of the last finished epoch, and the history up to it
        raise
    save(state)  # the checkpoint keeps the last weights, so more epochs continue exactly
    restored = config.training.early_stopping is not None and state.finished and trainer.restore_best(state)
    if restored:
        save_model(path, config, prepared.network, prepared.encoding, model_status(state) | {"restored_best": True})
    return TrainResult(path, state, prepared, restored)


def model_status(state: TrainingState) -> dict[str, Any]:
    """What model.json says about how training went."""
    return {"status": state.stop_reason or "training", "epochs_completed": state.epoch, "best_epoch": state.best_epoch}


def _clear_run(path: Path) -> None:
    """--force: remove what a previous run left (only nnctl's own files)."""
    for name in (CHECKPOINT,):
        if (path / name).is_dir():
            shutil.rmtree(path / name)
    for name in (MODEL_JSON,):
        (path / name).unlink(missing_ok=True)
