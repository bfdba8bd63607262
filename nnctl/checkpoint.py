"""The checkpoint: everything `--resume` needs, committed as one file so it is never half written.

`checkpoint/checkpoint.npz` holds the weights, the optimiser's moments, the best weights, the
epoch's row order and, as a member named `state`, a JSON document with the position, running sums,
history, RNG state and the sha256 of the data it trained on. It replaces the previous checkpoint in
one atomic rename, so a crash, a full disk or a signal at any moment leaves the old one or the new one.
Reading it back checks every array's name and shape and validates the JSON before anything is restored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from nnctl.errors import RunError
from nnctl.files import atomic_write, npz_bytes, read_npz
from nnctl.network import Network
from nnctl.optimizers import Optimizer
from nnctl.schema import Schema, describe
from nnctl.train import TrainingState

CHECKPOINT = "checkpoint"
CHECKPOINT_FILE = "checkpoint.npz"
STATE = "state"  # the member holding the JSON document


class CheckpointState(Schema):
    """The JSON part of a checkpoint (validated on load: a tampered file is an error, never a crash)."""

    model_config = ConfigDict(strict=False, extra="forbid")
    epoch: int = Field(ge=0)
    batch: int = Field(ge=0)
    loss_sum: float
    metric_sum: float
    seen: int = Field(ge=0)
    epoch_seconds: float = Field(ge=0)
    best_loss: float | None
    best_epoch: int = Field(ge=0)
    wait: int = Field(ge=0)
    stop_reason: Literal["epochs", "early_stopping", "tolerance", "interrupted", "diverged"] | None
    optimizer_step: int = Field(ge=0)
    rng: dict[str, Any]
    history: list[dict[str, Any]]
    data: dict[str, str | None] = Field(default_factory=dict)  # "train"/"validation" → sha256 of the file
    # dropout, schedules, clipping (absent from checkpoints written before them: the defaults)
    noise: list[dict[str, Any]] = Field(default_factory=list)  # states of the dropout generators
    learning_rate: float | None = Field(None, ge=0)  # the next batch's rate (cosine reaches 0)
    schedule: dict[str, Any] | None = None  # the learning-rate schedule's state
    grad_norm_sum: float = Field(0.0, ge=0)  # Σ of this epoch's gradient norms so far


def checkpoint_path(run: Path) -> Path:
    return run / CHECKPOINT / CHECKPOINT_FILE


def save_checkpoint(
    run: Path,
    state: TrainingState,
    optimizer: Optimizer,
    network: Network,
    rng: np.random.Generator,
    data: dict[str, str | None],
) -> None:
    """Write the whole checkpoint as one file, atomically."""
    document = CheckpointState(
        epoch=state.epoch,
        batch=state.batch,
        loss_sum=state.loss_sum,
        metric_sum=state.metric_sum,
        seen=state.seen,
        epoch_seconds=state.epoch_seconds,
        best_loss=None if math.isinf(state.best_loss) else state.best_loss,
        best_epoch=state.best_epoch,
        wait=state.wait,
        stop_reason=state.stop_reason,
        optimizer_step=optimizer.t,
        rng=rng.bit_generator.state,
        history=state.history,
        data=data,
        **_training_extras(state, optimizer, network),
    )
    arrays = {STATE: np.frombuffer(json.dumps(document.model_dump()).encode(), dtype=np.uint8)}
    arrays.update({f"param/{k}": a for k, a in network.arrays().items()})
    arrays.update({f"opt/{k}": a for k, a in optimizer.state_arrays().items()})
    arrays.update({f"best/{k}": a for k, a in state.best_params.items()})
    if state.permutation is not None:
        arrays["permutation"] = state.permutation
    atomic_write(checkpoint_path(run), npz_bytes(arrays))


def read_state(run: Path) -> CheckpointState:
    """The checkpoint's JSON document alone (with the data's sha256: checked before reading arrays whose
    shapes depend on the data)."""
    path = checkpoint_path(run)
    return _document(read_npz(path, required=[STATE], only=[STATE])[STATE], path)


def _allowed_arrays(network: Network, optimizer: Optimizer, rows: int) -> dict[str, tuple[int, ...] | None]:
    """Every array a checkpoint of this network may hold, with its shape."""
    shapes: dict[str, tuple[int, ...] | None] = {STATE: None, "permutation": (rows,)}
    for name, array in network.arrays().items():
        shapes[f"param/{name}"] = array.shape
    for name, param, _ in network.parameters():
        shapes[f"best/{name}"] = param.shape
    for name, param, _ in network.flat_parameters():  # the optimiser's moments, one vector per slot
        shapes.update({f"opt/{name}/{slot}": param.shape for slot in optimizer.slots})
    return shapes


def load_checkpoint(
    run: Path,
    optimizer: Optimizer,
    network: Network,
    rng: np.random.Generator,
    rows: int,
    n_batches: int,
    doc: CheckpointState | None = None,
) -> TrainingState:
    """Restore weights, optimiser moments, RNG and position (`doc`: the JSON document, when already read)."""
    path = checkpoint_path(run)
    allowed = _allowed_arrays(network, optimizer, rows)
    arrays = read_npz(path, allowed, required=[STATE, *(k for k in allowed if k.startswith("param/"))])
    doc = doc if doc is not None else _document(arrays[STATE], path)
    permutation = arrays.get("permutation")
    if doc.batch >= n_batches or (doc.batch and permutation is None):
        raise RunError(f"{path}: inside epoch {doc.epoch + 1} at batch {doc.batch} of {n_batches}; corrupted")
    if permutation is not None and not np.array_equal(np.sort(permutation), np.arange(rows)):
        raise RunError(f"{path}: the saved row order is not a permutation of the {rows} training rows; corrupted")
    network.load_arrays({k.removeprefix("param/"): a for k, a in arrays.items() if k.startswith("param/")})
    moments = {k.removeprefix("opt/"): a for k, a in arrays.items() if k.startswith("opt/")}
    optimizer.load_state_arrays(moments, doc.optimizer_step)
    try:
        rng.bit_generator.state = doc.rng
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path}: the saved random generator state is not valid ({exc}); corrupted") from None
    _restore_training_extras(doc, optimizer, network, path)
    state = TrainingState(
        epoch=doc.epoch,
        batch=doc.batch,
        permutation=permutation,
        loss_sum=doc.loss_sum,
        metric_sum=doc.metric_sum,
        seen=doc.seen,
        epoch_seconds=doc.epoch_seconds,
        history=doc.history,
        best_loss=math.inf if doc.best_loss is None else doc.best_loss,
        best_epoch=doc.best_epoch,
        wait=doc.wait,
        best_params={k.removeprefix("best/"): a for k, a in arrays.items() if k.startswith("best/")},
        stop_reason=doc.stop_reason,
        grad_norm_sum=doc.grad_norm_sum,
    )
    return state


def _training_extras(state: TrainingState, optimizer: Optimizer, network: Network) -> dict[str, Any]:
    """The checkpoint's entries for dropout masks, the learning-rate schedule and gradient norms."""
    return {
        "noise": [generator.bit_generator.state for generator in network.generators()],
        "learning_rate": optimizer.learning_rate,
        "schedule": optimizer.schedule.state() if optimizer.schedule is not None else None,
        "grad_norm_sum": state.grad_norm_sum,
    }


def _restore_training_extras(doc: CheckpointState, optimizer: Optimizer, network: Network, path: Path) -> None:
    """Put back what `_training_extras` saved."""
    generators = network.generators()
    try:
        if doc.noise and len(doc.noise) != len(generators):
            raise ValueError(f"{len(doc.noise)} states for {len(generators)} generators")
        for generator, saved in zip(generators, doc.noise, strict=False):
            generator.bit_generator.state = saved
        if optimizer.schedule is not None and doc.schedule is not None:
            optimizer.schedule.load_state(doc.schedule)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path}: the saved dropout or schedule state is not valid ({exc}); corrupted") from None
    if doc.learning_rate is not None:
        optimizer.learning_rate = doc.learning_rate


def _document(raw: np.ndarray, path: Path) -> CheckpointState:
    try:
        value = json.loads(raw.tobytes().decode("utf-8"))
        return CheckpointState.model_validate(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RunError(f"{path}: the saved training state is not valid JSON ({str(exc)[:100]}); corrupted") from None
    except ValidationError as exc:
        problem = describe(exc.errors()[0], CheckpointState, value)
        raise RunError(f"{path}: the saved training state is corrupted: {problem}") from None
