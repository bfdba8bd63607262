"""The run directory (docs/reference.md#run-directory): atomic writes, the saved model, the checkpoint, `load_run`.

A saved model is JSON plus arrays: `model.json` rebuilds the network, `model.npz` fills it.
Nothing is ever pickled; every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, ValidationError, model_validator

from nnctl import __version__
from nnctl.cells import finite
from nnctl.checkpoint import save_checkpoint
from nnctl.config import Config, NamedSpec, registered, relative_data_paths, validate_config
from nnctl.data import Encoding, encode_targets
from nnctl.errors import DataError, NnctlError, RunError
from nnctl.files import atomic_write, npz_bytes, read_json, read_npz
from nnctl.metrics import classification_report, multilabel_report, regression_report
from nnctl.network import Network, build_modules, planned_arrays
from nnctl.objectives import OBJECTIVES
from nnctl.optimizers import Optimizer
from nnctl.rundir import RunDirectory
from nnctl.runs import CONFIG_YAML, HISTORY_CSV, MODEL_JSON, TEST_METRICS_JSON
from nnctl.schema import Schema, describe, merge, shorten
from nnctl.tabular import Preprocessing, TargetScale
from nnctl.task import Task
from nnctl.train import TrainingState
from nnctl.yamlfile import dump_yaml, read_yaml

MODEL_NPZ = "model.npz"  # the other files' names are nnctl.runs's, which reads them without numpy or pydantic


@dataclass
class Run:
    """A trained model loaded from its run directory: predict and evaluate on DataFrames."""

    path: Path
    network: Network
    encoding: Encoding
    meta: dict[str, Any]
    config: Config | None = None

    @property
    def task(self) -> Task:
        return self.encoding.task

    @property
    def preprocessing(self) -> Preprocessing:
        """What turns raw columns into the network's inputs (an encoding without one: every feature numeric, as it is;
        a run loaded from its directory always has one)."""
        return self.encoding.preprocessing or Preprocessing(list(self.encoding.features))

    def outputs(self, frame: pd.DataFrame, source: str = "data", warn: Warn | None = None) -> np.ndarray:
        """ŷ (N, K) for a frame holding the feature columns (any order; extra columns ignored), encoded as in
        training (nnctl.tabular), in the targets' own units. `warn` receives each warning about the data (values
        not seen in training); by default they are Python warnings."""
        X, notes = self.preprocessing.encode_frame(frame, source, self.network.dtype)
        for note in notes:
            (warn or _python_warning)(note)
        return model_outputs(self.network, self.encoding, X)

    def predict(self, frame: pd.DataFrame, source: str = "data", warn: Warn | None = None) -> pd.DataFrame:
        """The prediction columns of docs/reference.md#predict, one row per input row in order."""
        yhat = self.outputs(frame, source, warn)
        enc, task = self.encoding, self.task
        columns: dict[str, Any] = {}
        if not task.classification:
            columns.update({f"predicted_{name}": yhat[:, j] for j, name in enumerate(enc.targets)})
        elif task.multilabel:  # several independent 0/1 targets
            for j, name in enumerate(enc.targets):
                columns[f"predicted_{name}"] = task.predict(yhat[:, [j]])
                columns[f"prob_{name}"] = yhat[:, j]
        else:
            columns["prediction"] = np.asarray(enc.classes, dtype=object)[task.predict(yhat)]
            probabilities = task.probabilities(yhat)
            columns.update({f"prob_{c}": probabilities[:, i] for i, c in enumerate(enc.classes)})
        return pd.DataFrame(columns, index=frame.index)

    def with_predictions(self, frame: pd.DataFrame, source: str = "data", warn: Warn | None = None) -> pd.DataFrame:
        """`frame` with the prediction columns after its own (`nnctl predict`'s output); a DataError when it already
        has a column of that name, which would be ambiguous."""
        predictions = self.predict(frame, source, warn)
        taken = [c for c in predictions.columns if c in frame.columns]
        if taken:
            raise DataError(
                f"{source}: already has column(s) {', '.join(map(repr, taken[:5]))}, which predict writes; "
                "rename or drop them (is this a file of earlier predictions?)"
            )
        return pd.concat([frame, predictions], axis=1)

    def evaluate(self, frame: pd.DataFrame, source: str = "data", warn: Warn | None = None) -> dict[str, Any]:
        """Objective loss and the metrics of docs/reference.md#json-outputs on a labelled frame."""
        yhat = self.outputs(frame, source, warn)
        Y = encode_targets(frame, self.encoding, source, self.network.dtype, key="the model's target")
        return report(self.network, self.encoding, Y, yhat)


Warn = Callable[[str], None]


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def model_outputs(network: Network, encoding: Encoding, X: np.ndarray) -> np.ndarray:
    """ŷ (N, K) for encoded inputs X, in evaluation mode and in the targets' own units (scale_target undone)."""
    yhat = network.eval().forward(X)
    return yhat if encoding.target_scale is None else encoding.target_scale.unscale(yhat)


def report(network: Network, encoding: Encoding, Y: np.ndarray, yhat: np.ndarray) -> dict[str, Any]:
    """The loss (unweighted, in the targets' units) and the metrics of targets Y against outputs ŷ."""
    result: dict[str, Any] = {
        "loss": network.loss(Y, yhat),
        "objective": network.objective.name,
        "n_samples": int(len(Y)),
    }
    task = encoding.task
    if not task.classification:
        result.update(regression_report(Y, yhat, encoding.targets))
    elif task.multilabel:
        result.update(multilabel_report(Y, yhat, encoding.targets))
    else:
        result.update(classification_report(Y, yhat, encoding.classes))
    return result


def model_meta(config: Config, network: Network, encoding: Encoding) -> dict[str, Any]:
    return {
        "nnctl_version": __version__,
        "name": config.name,
        "layers": [layer.to_yaml() for layer in config.layers],
        "objective": config.objective.to_yaml(),
        "epsilon": config.epsilon,
        "dtype": config.dtype,
        "n_features": encoding.n_features,
        "features": encoding.features,
        "targets": encoding.targets,
        "classes": encoding.classes,
        "task": encoding.task.kind,
        # nnctl.tabular: what eval, predict and export apply to raw columns, as fitted on the training rows
        "preprocessing": None if encoding.preprocessing is None else encoding.preprocessing.to_dict(),
        "target_scale": None if encoding.target_scale is None else encoding.target_scale.to_dict(),
        "class_weights": None
        if encoding.class_weights is None
        else {str(c): w for c, w in zip(encoding.classes, encoding.class_weights, strict=True)},
        "arrays": {name: list(a.shape) for name, a in network.arrays().items()},
    }


def save_model(
    path: Path, config: Config, network: Network, encoding: Encoding, extra: dict[str, Any] | None = None
) -> None:
    """model.npz then model.json, both atomically (model.json last: its presence marks a complete model)."""
    meta = model_meta(config, network, encoding) | (extra or {})
    atomic_write(path / MODEL_NPZ, npz_bytes(network.arrays()))
    atomic_write(path / MODEL_JSON, (json.dumps(meta, indent=2) + "\n").encode())


def save_history(path: Path, history: list[dict[str, Any]], task: Task) -> None:
    metric = task.metric_name
    columns = [
        "epoch",
        "train_loss",
        "validation_loss",
        f"train_{metric}",
        f"validation_{metric}",
        "learning_rate",
        "grad_norm",
        "seconds",
    ]
    frame = pd.DataFrame(history, columns=columns)
    atomic_write(path / HISTORY_CSV, frame.to_csv(index=False).encode())


def save_config(path: Path, config: Config, home: Path | None = None) -> None:
    """The resolved config, its data paths relative to the run directory `home` (so run and data can move
    together) — `load_config` reads them back relative to the file."""
    document = config.to_dict()
    relative_data_paths(document, (home or path).resolve())
    atomic_write(path / CONFIG_YAML, dump_yaml(document).encode())


def load_run(path: str | Path) -> Run:
    """Rebuild a trained network from model.json and fill it from model.npz (allow_pickle=False)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: run directory not found")
    meta = read_json(path / MODEL_JSON)
    try:
        schema = registered(ModelDescription)
        model = schema.model_validate(meta)
    except ValidationError as exc:
        problems = merge([describe(err, schema, meta) for err in exc.errors()])
        raise RunError(f"{path / MODEL_JSON}: malformed model description: {'; '.join(problems[:5])}") from None
    objective = OBJECTIVES[model.objective.kind].build(model.objective.options, model.epsilon)
    encoding = Encoding(model.features, model.targets, model.objective.kind, model.classes)
    encoding.preprocessing = Preprocessing.from_dict(
        model.preprocessing.model_dump() if model.preprocessing is not None else {"numeric": model.features}
    )
    if model.target_scale is not None:
        encoding.target_scale = TargetScale(model.target_scale.mean, model.target_scale.std)
    try:  # model.npz must hold exactly the arrays model.json describes: checked before anything is allocated
        planned = planned_arrays(model.layers, model.n_features)
        arrays = read_npz(path / MODEL_NPZ, dict(planned), required=planned, described_by=MODEL_JSON)
        modules = build_modules(model.layers, model.n_features, dtype=model.dtype, epsilon=model.epsilon)
    except NnctlError as exc:
        raise RunError(f"{path / MODEL_JSON}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    network = Network(modules, objective)
    wrong = next((name for name, array in arrays.items() if not np.issubdtype(array.dtype, np.floating)), None)
    if wrong is not None:
        dtype = arrays[wrong].dtype
        raise RunError(f"{path / MODEL_NPZ}: array {wrong!r} has dtype {dtype}, expected floating point")
    network.load_arrays(arrays)
    config = None
    if (path / CONFIG_YAML).exists():
        try:
            config = validate_config(read_yaml(path / CONFIG_YAML), path / CONFIG_YAML)
        except NnctlError:
            config = None  # the model itself is complete without it
    return Run(path, network, encoding, meta, config)


class CategoricalDescription(Schema):
    column: str
    categories: list[str | int]
    missing: bool

    @property
    def width(self) -> int:
        return len(self.categories) + self.missing


class PreprocessingDescription(Schema):
    numeric: list[str]
    categorical: list[CategoricalDescription]
    missing: Literal["error", "mean", "median", "most_frequent", "constant"]
    fills: list[float]


class TargetScaleDescription(Schema):
    mean: list[float]
    std: list[float]


class ModelDescription(Schema):
    """What model.json must hold to rebuild the network (other keys are information only)."""

    model_config = ConfigDict(extra="ignore")
    layers: list[NamedSpec] = Field(min_length=1)
    objective: NamedSpec
    dtype: Literal["float64", "float32"]
    epsilon: float = Field(gt=0)
    n_features: int = Field(ge=1)
    features: list[str]
    targets: list[str] = Field(min_length=1)
    classes: list[str | int]
    preprocessing: PreprocessingDescription | None = None  # absent: every feature numeric, no filling
    target_scale: TargetScaleDescription | None = None

    @model_validator(mode="after")
    def _unique(self) -> ModelDescription:
        for key in ("features", "targets", "classes"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                repeated = next(v for i, v in enumerate(values) if v in values[:i])
                raise ValueError(f"{key}: lists {shorten(repeated)} twice")
        pre = self.preprocessing
        if pre is not None:
            columns = pre.numeric + [c.column for c in pre.categorical]
            if sorted(columns) != sorted(self.features):
                raise ValueError("preprocessing: its numeric and categorical columns must be the features")
            if pre.missing != "error" and len(pre.fills) != len(pre.numeric):
                raise ValueError("preprocessing.fills: expected one value per numeric column")
        width = len(self.features) if pre is None else len(pre.numeric) + sum(c.width for c in pre.categorical)
        if width != self.n_features:
            raise ValueError(f"n_features: {self.n_features}, but the features encode to {width} columns")
        if self.target_scale is not None and not (
            len(self.target_scale.mean) == len(self.target_scale.std) == len(self.targets)
        ):
            raise ValueError("target_scale: expected a mean and a std for each target")
        return self


class RunWriter:
    """Writes one run's directory: the config once, then checkpoint, model and history whenever asked."""

    def __init__(
        self,
        directory: RunDirectory,
        config: Config,
        network: Network,
        encoding: Encoding,
        optimizer: Optimizer,
        rng: np.random.Generator,
        data: dict[str, str | None],
    ) -> None:
        self.directory, self.config, self.network, self.encoding = directory, config, network, encoding
        self.optimizer, self.rng, self.data = optimizer, rng, data
        self.provenance: dict[str, Any] | None = None  # model.json's `provenance` (nnctl.provenance)

    def save_config(self) -> None:
        self._write(lambda path: save_config(path, self.config, self.directory.final))

    def save(self, state: TrainingState) -> None:
        """The checkpoint, the latest weights and the history: the whole run as it stands."""

        def write(path: Path) -> None:
            save_checkpoint(path, state, self.optimizer, self.network, self.rng, self.data)
            save_model(path, self.config, self.network, self.encoding, self._extra(state))
            save_history(path, state.history, self.encoding.task)

        self._write(write)
        self.directory.commit()  # a run replacing another (--force) takes its place once it can be resumed

    def save_model(self, state: TrainingState, restored_best: bool = False) -> None:
        extra = self._extra(state) | ({"restored_best": True} if restored_best else {})
        self._write(lambda path: save_model(path, self.config, self.network, self.encoding, extra))

    def save_test(self, scores: dict[str, Any]) -> None:
        """test_metrics.json (non-finite numbers as null, so it is plain JSON)."""
        text = json.dumps(finite(scores), indent=2) + "\n"
        self._write(lambda path: atomic_write(path / TEST_METRICS_JSON, text.encode()))

    def _extra(self, state: TrainingState) -> dict[str, Any]:
        """model.json's fields beyond the model itself: how training went, and where the model came from."""
        return model_status(state) | ({"provenance": self.provenance} if self.provenance is not None else {})

    def _write(self, write: Callable[[Path], None]) -> None:
        try:
            write(self.directory.path)
        except OSError as exc:
            raise RunError(f"{self.directory.final}: cannot write the run directory: {exc.strerror or exc}") from None


def model_status(state: TrainingState) -> dict[str, Any]:
    """What model.json says about how training went."""
    return {"status": state.stop_reason or "training", "epochs_completed": state.epoch, "best_epoch": state.best_epoch}
