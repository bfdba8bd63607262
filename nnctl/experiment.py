"""One training run end to end: validated config → data → network → trainer → run directory.

This is what `nnctl train` calls; the CLI only renders what it reports.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl import provenance
from nnctl.cache import MEMO, cache_dir
from nnctl.checkpoint import checkpoint_path, load_checkpoint, read_state
from nnctl.config import Config, load_config
from nnctl.data import Dataset, Encoding
from nnctl.errors import ConfigError, DataError, DivergenceError, NnctlError, RunError
from nnctl.files import file_sha256, read_json
from nnctl.interrupt import SignalHandler
from nnctl.layers import Input
from nnctl.loading import encode_raw, load_data, read_files, read_test, split_off  # data files → arrays, cached
from nnctl.network import Network, build_network
from nnctl.optimizers import OPTIMIZERS, Optimizer
from nnctl.run import CONFIG_YAML, MODEL_JSON, RunWriter, model_outputs, report
from nnctl.rundir import RunDirectory, check_new
from nnctl.schema import shorten_list
from nnctl.seeds import streams
from nnctl.tabular import describe_features
from nnctl.train import Callback, Trainer, TrainingState, batch_layout

# The run directory is kept current at least this often (NNCTL_SAVE_EVERY overrides it: a slow disk, a test).
SAVE_EVERY_SECONDS = 10.0


def save_every() -> float:
    try:
        return float(os.environ.get("NNCTL_SAVE_EVERY", SAVE_EVERY_SECONDS))
    except ValueError:
        return SAVE_EVERY_SECONDS


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
    warnings: list[str] = field(default_factory=list)  # about the data: identifier-like columns, unseen categories
    test: Dataset | None = None  # data.test, scored once training ends
    fingerprint: dict[str, str | None] = field(default_factory=dict)  # sha256 of train/validation, hashed once

    def summary(self) -> dict[str, Any]:
        """What `nnctl summary` says of the config (its --json as it is): the layers and their parameters, the
        backprop chain, the data and features, the optimiser and its learning rates."""
        n_features, schedule = self.encoding.n_features, self.optimizer.schedule
        rows = self.network.layer_table(n_features)
        return {
            "name": self.config.name,
            "n_features": n_features,
            "n_outputs": self.encoding.n_outputs,
            "layers": rows,
            "total_parameters": sum(r["parameters"] for r in rows),
            "objective": self.network.objective.name,
            "jacobian_chain": self.network.jacobian_chain(n_features),
            "train_rows": len(self.train),
            "validation_rows": len(self.validation) if self.validation is not None else 0,
            "test_rows": len(self.test) if self.test is not None else 0,
            **describe_features(self.encoding),
            "optimizer": self.config.to_dict()["optimizer"],
            "learning_rates": schedule.rates(self.config.training.epochs) if schedule is not None else None,
        }


@dataclass(frozen=True)
class LoadedData:
    """The data files read and encoded once, before any validation split, with their sha256: what a sweep
    loads once and hands to many runs (a run's split, network and optimiser are still its own)."""

    encoding: Encoding
    train: Dataset
    validation: Dataset | None  # data.validation read from its file; a split is made per run
    fingerprint: dict[str, str | None]  # sha256 of each file
    files: dict[str, Any] | None = None  # their provenance records (a run elsewhere cannot read the files)
    test: Dataset | None = None  # data.test as read, encoded per run like the rest
    notes: tuple[str, ...] = ()  # warnings about the files (identifier-like columns)


def set_up(config: Config, data: LoadedData | None = None) -> Setup:
    """Read and encode the data (or take them already `data`), check them against the stack, build and fit
    the network (no training)."""
    rngs = streams(config.seed)
    warnings: list[str] = []
    if data is None:
        encoding, train, validation = load_data(config, rngs["split"], warnings)
        raw_test = read_test(config, encoding)
    else:
        encoding, train, validation = split_validation(config, data, rngs["split"], warnings)
        raw_test = data.test
    network = build_for_data(config, encoding, rngs["init"])
    if network.input is not None:
        network.input.fit(train.matrix, train.rows)  # statistics of the training rows only, in blocks
        names = encoding.preprocessing.names if encoding.preprocessing is not None else encoding.features
        _check_statistics(network.input, names, str(config.data.train))
    optimizer = OPTIMIZERS[config.optimizer.name].build(config.optimizer)
    test = None
    if raw_test is not None:  # read with the others: a bad test file is an error before training, not after it
        test, found = encode_raw(encoding, raw_test)
        warnings += found
    fingerprint = data.fingerprint if data is not None else data_fingerprint(config)
    return Setup(config, encoding, train, validation, network, optimizer, rngs["shuffle"], warnings, test, fingerprint)


def _check_statistics(layer: Input, features: list[str], source: str) -> None:
    """μ and σ must be finite numbers in the run's dtype (a column near the float limit cannot be standardised)."""
    finite = np.isfinite(layer.state["mean"][0]) & np.isfinite(layer.state["std"][0])
    if not finite.all():
        column = features[int(np.argmin(finite))]
        raise DataError(
            f"{source}: column {column!r}: its values are too large to standardise in {layer.state['std'].dtype} "
            "(the mean or standard deviation overflows); rescale the column"
        )


def read_data(config: Config) -> LoadedData:
    """The config's data files read and encoded (no split yet), and their sha256."""
    notes: list[str] = []
    encoding, train, validation = read_files(config, notes)
    test = read_test(config, encoding)
    sha256 = data_fingerprint(config)
    test_rows = len(test) if test is not None else 0
    files = data_files(config, len(train), len(validation) if validation is not None else 0, sha256, test_rows)
    return LoadedData(encoding, train, validation, sha256, files, test, tuple(notes))


def split_validation(
    config: Config, loaded: LoadedData, split_rng: np.random.Generator, warnings: list[str] | None = None
) -> tuple[Encoding, Dataset, Dataset | None]:
    """(encoding, train, validation): data.validation as read, or `validation_split` of the training rows; the
    categories, fills, target scaling and class weights fitted on this run's training rows."""
    if warnings is not None:
        warnings += loaded.notes
    return split_off(config, loaded.encoding, loaded.train, loaded.validation, split_rng, warnings)


def build_for_data(config: Config, encoding: Encoding, rng: np.random.Generator) -> Network:
    """The config's network for the data's features and outputs; a mismatch names what the data has."""
    try:
        return build_network(config, encoding.n_features, encoding.n_outputs, rng=rng)
    except ConfigError as exc:
        found = shorten_list(encoding.classes, "classes") if encoding.classes else f"target columns {encoding.targets}"
        raise ConfigError(f"{config.source}: {exc} (the data has {found})") from None
    except MemoryError:
        widths = [getattr(layer.options, "units", None) for layer in config.layers]
        widths = [w for w in widths if w is not None]
        raise ConfigError(f"{config.source}: layers: not enough memory for layer widths {widths}") from None


def run_directory(config: Config, out: str | Path | None = None) -> Path:
    return Path(out) if out is not None else Path(config.output) / str(config.name)


def config_differences(
    new: Config, saved: Config, ignored: Collection[str] = ("training.epochs", "name", "output")
) -> list[str]:
    """Dotted keys whose values differ, but for `ignored` (by default those a run's resume may change)."""

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
    signal: int | None = None  # the signal that interrupted it (SIGINT, SIGTERM)
    test: dict[str, Any] | None = None  # test_metrics.json: the saved model scored on data.test

    @classmethod
    def of(
        cls,
        path: Path,
        state: TrainingState,
        restored_best: bool,
        signal: int | None = None,
        test: dict[str, Any] | None = None,
    ) -> TrainResult:
        status = state.stop_reason or "unknown"
        history = list(state.history)
        return cls(path, status, state.epoch, state.batch, state.best_epoch, history, restored_best, signal, test)


def train(
    config: Config,
    *,
    out: str | Path | None = None,
    force: bool = False,
    resume: str | Path | None = None,
    callback: Callback | None = None,
    handle_signals: bool = False,
    command: Sequence[str] | None = None,
    data: LoadedData | None = None,
) -> TrainResult:
    """Train a config into its run directory (or continue one with `resume`); returns where and how it ended.

    With `handle_signals`, SIGINT and SIGTERM stop training after the current batch and the checkpoint is
    saved (before training starts they raise `nnctl.interrupt.Interrupted`). `command`, the argument list
    (default: this process's `sys.argv`), is recorded in model.json's provenance and names this process in
    the run directory's lock, for whoever finds it in use. `data`: the config's data already read
    (`read_data`), as a sweep shares them; the numbers are the same as when the run reads them itself.
    """
    argv = list(command) if command is not None else provenance.default_command()
    signals = SignalHandler() if handle_signals else None
    with signals if signals is not None else nullcontext():
        directory, setup, state = _claim(config, out, force, resume, shlex.join(argv)[:200], data)
        try:
            return _run(config, directory, setup, state, callback, signals, argv, data)
        finally:
            directory.release()


def _claim(
    config: Config,
    out: str | Path | None,
    force: bool,
    resume: str | Path | None,
    command: str,
    data: LoadedData | None = None,
) -> tuple[RunDirectory, Setup, TrainingState | None]:
    """Lock the run directory (an existing one before loading data, a new one after: it is created only
    once the config and data are known to be good) and load the data, the network and any checkpoint."""
    if resume is None:
        preflight(config, out, force)
        setup = set_up(config, data)
        return RunDirectory.new(run_directory(config, out), out is not None, force, command), setup, None
    directory = RunDirectory.existing(Path(resume), command)
    try:
        setup = set_up(config, data)
        return directory, setup, resumed_state(config, setup, directory.final)
    except BaseException:
        directory.release()
        raise


def _run(
    config: Config,
    directory: RunDirectory,
    setup: Setup,
    state: TrainingState | None,
    callback: Callback | None,
    signals: SignalHandler | None,
    command: list[str],
    loaded: LoadedData | None = None,
) -> TrainResult:
    data = setup.fingerprint
    writer = RunWriter(directory, config, setup.network, setup.encoding, setup.optimizer, setup.shuffle_rng, data)
    resumed = directory.final if state is not None else None
    files = loaded.files if loaded is not None else None
    writer.provenance = run_provenance(config, setup, data, command, resumed, files)
    trainer = Trainer(
        setup.network,
        setup.optimizer,
        config.training,
        setup.shuffle_rng,
        callback,
        writer.save,
        save_every(),
        setup.encoding.target_scale,
    )
    if signals is not None:
        signals.attach(trainer)
    writer.save_config()
    for warning in setup.warnings:
        trainer.callback.on_warning(warning)
    if state is None:
        writer.save(TrainingState())  # from the first moment, a killed run can be resumed
    try:
        state = trainer.fit(setup.train, setup.validation, state)
    except DivergenceError:
        writer.save(trainer.state)  # the weights of the last finished epoch, and the history up to it
        raise
    except MemoryError:
        writer.save(trainer.state)
        raise RunError(
            f"{directory.final}: out of memory while training; try a smaller training.batch_size or fewer units "
            "(the last checkpoint is kept: --resume continues from it)"
        ) from None
    writer.save(state)  # the checkpoint keeps the last weights, so more epochs continue exactly
    restored = config.training.early_stopping is not None and state.finished and trainer.restore_best(state)
    if restored:
        writer.save_model(state, restored_best=True)
    test = None
    if setup.test is not None and state.finished:
        test = score_test(setup, state.best_epoch if restored else state.epoch)
        writer.save_test(test)
    received = signals.received if signals is not None else None
    return TrainResult.of(directory.final, state, restored, received, test)


def score_test(setup: Setup, epoch: int) -> dict[str, Any]:
    """test_metrics.json: the model as saved (the best weights when early stopping restored them) on data.test."""
    assert setup.test is not None
    test, encoding, network = setup.test, setup.encoding, setup.network
    yhat = model_outputs(network, encoding, test.X.astype(network.dtype, copy=False))
    scores = report(network, encoding, test.Y.astype(network.dtype, copy=False), yhat)
    return {"data": test.source, "epoch": epoch, "metric": encoding.task.metric_name} | scores


def preflight(config: Config, out: str | Path | None, force: bool) -> None:
    """Before loading data: `--out` into an existing run without --force, or into a file, is an error."""
    check_new(run_directory(config, out), out is not None, force)


def data_fingerprint(config: Config) -> dict[str, str | None]:
    """sha256 of the training and validation files, recorded in the checkpoint and checked on resume."""
    files = {"train": config.data.train, "validation": config.data.validation}
    return {key: None if path is None else _sha256(config, path) for key, path in files.items()}


def _sha256(config: Config, path: str | Path) -> str:
    """A data file's sha256, remembered in the data cache unless data.cache is off."""
    return file_sha256(Path(path), cache_dir() / MEMO if config.data.cache else None)


def run_provenance(
    config: Config,
    setup: Setup,
    data: dict[str, str | None],
    command: list[str],
    resumed: Path | None = None,
    files: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """model.json's `provenance`: versions, time, command, and each data file's sha256 (`data`, hashed once for
    the checkpoint too), rows and columns (`files`: those records, made where the data were read); a resumed
    run keeps its original record and lists the resume."""
    if files is None:
        validation = setup.validation
        held_out = len(validation) if validation is not None and config.data.validation is None else 0  # a split
        test_rows = len(setup.test) if setup.test is not None else 0
        files = data_files(
            config, len(setup.train) + held_out, len(validation) if validation is not None else 0, data, test_rows
        )
    current = provenance.record(command, files)
    if resumed is None:
        return current
    try:
        original = read_json(resumed / MODEL_JSON).get("provenance")
    except NnctlError:
        original = None
    return provenance.resumed(original if isinstance(original, dict) else None, current)


def data_files(
    config: Config, train_rows: int, validation_rows: int, data: dict[str, str | None], test_rows: int = 0
) -> dict[str, Any]:
    """The provenance records of the data files: path, sha256, rows read (the training file's before any split)."""
    files = {"train": provenance.data_file(config.data.train, data["train"], train_rows)}
    if config.data.validation is not None:
        files["validation"] = provenance.data_file(config.data.validation, data["validation"], validation_rows)
    if config.data.test is not None:  # data.test is not part of the fingerprint a resume checks: hashed here
        files["test"] = provenance.data_file(config.data.test, _sha256(config, config.data.test), test_rows)
    return files


def resumed_state(config: Config, setup: Setup, path: Path) -> TrainingState:
    """The checkpoint's state, once the config and data match the run's and there is training left to do."""
    saved = load_config(path / CONFIG_YAML)
    differing = config_differences(config, saved)
    if differing:
        raise ConfigError(
            f"cannot resume {path}: the config differs from the run's in {', '.join(differing)}; "
            "only training.epochs may change (start a new run instead)"
        )
    config.name, config.output = saved.name, saved.output
    if not checkpoint_path(path).exists():
        raise RunError(f"{path}: cannot resume: no checkpoint in this directory")
    document = read_state(path)
    _check_same_data(config, document.data, path, setup.fingerprint)
    rng, rows = setup.shuffle_rng, len(setup.train)
    _, batches = batch_layout(rows, config.training.batch_size)  # as the trainer lays the epoch out
    state = load_checkpoint(path, setup.optimizer, setup.network, rng, rows, batches, document)
    _check_resumable(config, state, path)
    return state


def _check_same_data(config: Config, saved: dict[str, str | None], path: Path, now: dict[str, str | None]) -> None:
    for key, digest in saved.items():
        if key in now and digest != now[key]:
            file = getattr(config.data, key)
            raise RunError(
                f"cannot resume {path}: data.{key} {file} has changed since the run started (sha256 "
                f"{(now[key] or 'none')[:12]}…, was {(digest or 'none')[:12]}…); restore it or start a new run"
            )


def _check_resumable(config: Config, state: TrainingState, path: Path) -> None:
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
