"""The run directory (docs/reference.md#run-directory): atomic writes, the saved model, the checkpoint, `load_run`.

A saved model is JSON plus arrays: `model.json` rebuilds the network, `model.npz` fills it.
Nothing is ever pickled; every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import ConfigDict, Field, ValidationError

from nnctl import __version__
from nnctl.config import Config, NamedSpec, dump_yaml, registered, validate_config
from nnctl.data import Encoding, encode_targets, feature_matrix
from nnctl.errors import NnctlError, RunError
from nnctl.metrics import classification_report, multilabel_report, regression_report
from nnctl.network import Network, build_modules
from nnctl.objectives import OBJECTIVES
from nnctl.optimizers import Optimizer
from nnctl.schema import Schema, describe, merge
from nnctl.task import Task
from nnctl.train import TrainingState

MODEL_JSON, MODEL_NPZ, CONFIG_YAML, HISTORY_CSV, CHECKPOINT = (
    "model.json",
    "model.npz",
    "config.yaml",
    "history.csv",
    "checkpoint",
)

# ----------------------------------------------------------------------------- atomic files


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (or keep the old file's)
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # (numpy's stub fears a key named allow_pickle)
    return buffer.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an .npz, refusing pickled objects; damage becomes a RunError naming the file."""
    if not path.exists():
        raise RunError(f"{path}: file not found; the run directory is incomplete")
    if not zipfile.is_zipfile(path):  # else np.load would take any other bytes for a pickle and say so
        raise RunError(f"{path}: truncated or corrupted: not a NumPy .npz archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise RunError(
                f"{path}: holds a pickled object array; refused (nnctl never unpickles model files)"
            ) from None
        raise RunError(f"{path}: corrupted: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zlib.error) as exc:
        raise RunError(f"{path}: truncated or corrupted ({type(exc).__name__}: {exc})") from None


def read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RunError(f"{path.parent}: not a complete run directory: {path.name} is missing")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: corrupted JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object")
    return value


# ----------------------------------------------------------------------------- the run


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

    def outputs(self, frame: pd.DataFrame, source: str = "data") -> np.ndarray:
        """ŷ (N, K) for a frame holding the feature columns (any order; extra columns ignored)."""
        X = feature_matrix(frame, self.encoding.features, source, self.network.dtype, key="the model's features")
        return self.network.eval().forward(X)

    def predict(self, frame: pd.DataFrame, source: str = "data") -> pd.DataFrame:
        """The prediction columns of docs/reference.md#predict, one row per input row in order."""
        yhat = self.outputs(frame, source)
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

    def evaluate(self, frame: pd.DataFrame, source: str = "data") -> dict[str, Any]:
        """Objective loss and the metrics of docs/reference.md#json-outputs on a labelled frame."""
        yhat = self.outputs(frame, source)
        Y = encode_targets(frame, self.encoding, source, self.network.dtype, key="the model's target")
        result: dict[str, Any] = {"loss": self.network.loss(Y, yhat), "n_samples": int(len(Y))}
        enc, task = self.encoding, self.task
        if not task.classification:
            result.update(regression_report(Y, yhat, enc.targets))
        elif task.multilabel:
            result.update(multilabel_report(Y, yhat, enc.targets))
        else:
            result.update(classification_report(Y, yhat, enc.classes))
        return result


def model_meta(config: Config, network: Network, encoding: Encoding) -> dict[str, Any]:
    return {
        "nnctl_version": __version__,
        "name": config.name,
        "layers": [layer.to_yaml() for layer in config.layers],
        "objective": config.objective.to_yaml(),
        "epsilon": config.epsilon,
        "dtype": config.dtype,
        "n_features": len(encoding.features),
        "features": encoding.features,
        "targets": encoding.targets,
        "classes": encoding.classes,
        "task": encoding.task.kind,
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
        "seconds",
    ]
    frame = pd.DataFrame(history, columns=columns)
    atomic_write(path / HISTORY_CSV, frame.to_csv(index=False).encode())


def save_config(path: Path, config: Config) -> None:
    atomic_write(path / CONFIG_YAML, dump_yaml(config.to_dict()).encode())


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
    try:
        modules = build_modules(model.layers, model.n_features, dtype=model.dtype, epsilon=model.epsilon)
    except NnctlError as exc:
        raise RunError(f"{path / MODEL_JSON}: {exc}") from None
    network = Network(modules, objective)
    arrays = read_npz(path / MODEL_NPZ)
    _check_arrays(arrays, network.arrays(), path / MODEL_NPZ)
    network.load_arrays(arrays)
    config = None
    if (path / CONFIG_YAML).exists():
        try:
            config = validate_config(
                yaml.safe_load((path / CONFIG_YAML).read_text(encoding="utf-8")), path / CONFIG_YAML
            )
        except (NnctlError, yaml.YAMLError, OSError, UnicodeDecodeError):
            config = None  # the model itself is complete without it
    return Run(path, network, encoding, meta, config)


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


def _check_arrays(found: dict[str, np.ndarray], expected: dict[str, np.ndarray], path: Path) -> None:
    for name, target in expected.items():
        if name not in found:
            raise RunError(f"{path}: array {name!r} is missing")
        if found[name].shape != target.shape:
            raise RunError(
                f"{path}: array {name!r} has shape {found[name].shape}, but model.json describes {target.shape}"
            )
        if not np.issubdtype(found[name].dtype, np.floating):
            raise RunError(f"{path}: array {name!r} has dtype {found[name].dtype}, expected floating point")


# ----------------------------------------------------------------------------- checkpoint


def save_checkpoint(
    path: Path, state: TrainingState, optimizer: Optimizer, network: Network, rng: np.random.Generator
) -> None:
    """Everything `--resume` needs; arrays first, then state.json, which names the arrays' step."""
    folder = path / CHECKPOINT
    marker = np.array([state.epoch, state.batch, optimizer.t], dtype=np.int64)
    arrays = {"marker": marker}
    arrays.update({f"param/{k}": a for k, a in network.arrays().items()})
    arrays.update({f"opt/{k}": a for k, a in optimizer.state_arrays().items()})
    arrays.update({f"best/{k}": a for k, a in state.best_params.items()})
    if state.permutation is not None:
        arrays["permutation"] = state.permutation
    atomic_write(folder / "arrays.npz", npz_bytes(arrays))
    document = {
        "marker": marker.tolist(),
        "epoch": state.epoch,
        "batch": state.batch,
        "loss_sum": state.loss_sum,
        "metric_sum": state.metric_sum,
        "seen": state.seen,
        "epoch_seconds": state.epoch_seconds,
        "best_loss": None if math.isinf(state.best_loss) else state.best_loss,
        "best_epoch": state.best_epoch,
        "wait": state.wait,
        "stop_reason": state.stop_reason,
        "optimizer_step": optimizer.t,
        "rng": rng.bit_generator.state,
        "history": state.history,
    }
    atomic_write(folder / "state.json", (json.dumps(document) + "\n").encode())


def load_checkpoint(path: Path, optimizer: Optimizer, network: Network, rng: np.random.Generator) -> TrainingState:
    """Restore weights, optimiser moments, RNG and position; the inverse of `save_checkpoint`."""
    folder = path / CHECKPOINT
    doc = read_json(folder / "state.json")
    arrays = read_npz(folder / "arrays.npz")
    if "marker" not in arrays or arrays["marker"].tolist() != doc.get("marker"):
        raise RunError(f"{folder}: arrays.npz and state.json are from different moments; cannot resume exactly")
    params = {k[len("param/") :]: a for k, a in arrays.items() if k.startswith("param/")}
    _check_arrays(params, network.arrays(), folder / "arrays.npz")
    network.load_arrays(params)
    optimizer.load_state_arrays(
        {k[len("opt/") :]: a for k, a in arrays.items() if k.startswith("opt/")}, doc["optimizer_step"]
    )
    rng.bit_generator.state = doc["rng"]
    best = doc.get("best_loss")
    return TrainingState(
        epoch=doc["epoch"],
        batch=doc["batch"],
        permutation=arrays.get("permutation"),
        loss_sum=doc["loss_sum"],
        metric_sum=doc["metric_sum"],
        seen=doc["seen"],
        epoch_seconds=doc["epoch_seconds"],
        history=doc["history"],
        best_loss=math.inf if best is None else best,
        best_epoch=doc["best_epoch"],
        wait=doc["wait"],
        best_params={k[len("best/") :]: a for k, a in arrays.items() if k.startswith("best/")},
        stop_reason=doc["stop_reason"],
    )


class RunWriter:
    """Writes one run's directory: the config once, then checkpoint, model and history whenever asked."""

    def __init__(
        self,
        path: Path,
        config: Config,
        network: Network,
        encoding: Encoding,
        optimizer: Optimizer,
        rng: np.random.Generator,
    ) -> None:
        self.path, self.config, self.network, self.encoding = path, config, network, encoding
        self.optimizer, self.rng = optimizer, rng

    def save_config(self) -> None:
        self._write(lambda: save_config(self.path, self.config))

    def save(self, state: TrainingState) -> None:
        """The checkpoint, the latest weights and the history: the whole run as it stands."""

        def write() -> None:
            save_checkpoint(self.path, state, self.optimizer, self.network, self.rng)
            save_model(self.path, self.config, self.network, self.encoding, model_status(state))
            save_history(self.path, state.history, self.encoding.task)

        self._write(write)

    def save_model(self, state: TrainingState, restored_best: bool = False) -> None:
        extra = model_status(state) | ({"restored_best": True} if restored_best else {})
        self._write(lambda: save_model(self.path, self.config, self.network, self.encoding, extra))

    def _write(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:
            raise RunError(f"{self.path}: cannot write the run directory: {exc.strerror or exc}") from None


def model_status(state: TrainingState) -> dict[str, Any]:
    """What model.json says about how training went."""
    return {"status": state.stop_reason or "training", "epochs_completed": state.epoch, "best_epoch": state.best_epoch}
