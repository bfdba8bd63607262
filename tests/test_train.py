"""Training guarantees: reproducibility, dtype, early stopping, tolerance, divergence, atomic writes.

Every test trains on a tiny CSV written into tmp_path, so the whole file runs in about a second.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import model_arrays, toy_config, write_config, write_csv

from nnctl.config import load_config
from nnctl.errors import DivergenceError
from nnctl.experiment import train
from nnctl.run import atomic_write, load_run


def write_toy(path: Path, **sections: Any) -> Path:
    """The helpers' toy config, with its CSVs beside it; keyword sections replace the defaults."""
    if not (path.parent / "train.csv").exists():
        write_csv(path.parent / "train.csv", 60, seed=1)
        write_csv(path.parent / "valid.csv", 40, seed=2)
    return write_config(path, toy_config(**sections))


def losses(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv").drop(columns="seconds")


# ----------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_bit_identical_weights_and_history(tmp_path: Path) -> None:
    cfg = write_toy(tmp_path / "toy.yaml")
    first = train(load_config(cfg), out=tmp_path / "first").path
    second = train(load_config(cfg), out=tmp_path / "second").path
    a, b = model_arrays(first), model_arrays(second)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name
    assert losses(first).equals(losses(second))
    assert (first / "config.yaml").read_bytes() == (second / "config.yaml").read_bytes()


def test_another_seed_gives_other_weights(tmp_path: Path) -> None:
    cfg = write_toy(tmp_path / "toy.yaml")
    a = model_arrays(train(load_config(cfg), out=tmp_path / "seed0").path)
    b = model_arrays(train(load_config(cfg, ["seed=1"]), out=tmp_path / "seed1").path)
    assert not np.array_equal(a["1.W"], b["1.W"])
    assert np.array_equal(a["0.mean"], b["0.mean"])  # the data, and so its statistics, did not change


def test_float32_config_trains_and_saves_float32(tmp_path: Path) -> None:
    run = train(load_config(write_toy(tmp_path / "toy.yaml", dtype="float32")), out=tmp_path / "run")
    arrays = model_arrays(run.path)
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float32)}
    assert np.isfinite(losses(run.path).drop(columns="grad_norm").to_numpy(dtype=float)).all()  # no clip_norm
    assert load_run(run.path).network.dtype == np.float32


# ----------------------------------------------------------------------------- stopping rules


def test_early_stopping_keeps_the_best_epochs_weights(tmp_path: Path) -> None:
    # Noisy labels and a wide net: validation loss bottoms out after a few epochs, then rises.
    write_csv(tmp_path / "train.csv", 40, seed=1, noise=1.5)
    write_csv(tmp_path / "valid.csv", 40, seed=2, noise=1.5)
    layers = [
        {"input": {"normalize": "zscore"}},
        {"fully_connected": {"units": 32}},
        "tanh",
        {"fully_connected": {"units": 2}},
        "softmax",
    ]
    training = {"epochs": 60, "batch_size": 8, "early_stopping": {"patience": 4}}
    result = train(load_config(write_toy(tmp_path / "es.yaml", layers=layers, training=training)), out=tmp_path / "run")

    history = pd.read_csv(result.path / "history.csv")
    best = int(history["validation_loss"].idxmin()) + 1
    assert result.status == "early_stopping"
    assert result.best_epoch == best
    assert len(history) == best + 4 < 60  # stopped exactly `patience` epochs after the best one
    assert history["validation_loss"].iloc[-1] > history["validation_loss"].min()  # the last weights were worse
    assert yaml.safe_load((result.path / "model.json").read_text())["best_epoch"] == best

    # The saved model is the best epoch's: its validation loss is that epoch's, to the last bit.
    saved = load_run(result.path).evaluate(pd.read_csv(tmp_path / "valid.csv"))
    assert saved["loss"] == history["validation_loss"].min()


def test_tolerance_stops_when_train_loss_stops_changing(tmp_path: Path) -> None:
    training = {"epochs": 200, "batch_size": None, "tolerance": 1e-3}
    result = train(load_config(write_toy(tmp_path / "tol.yaml", training=training)), out=tmp_path / "run")
    change = losses(result.path)["train_loss"].diff().abs().dropna()
    assert result.status == "tolerance"
    assert 2 <= len(change) + 1 < 200
    assert change.iloc[-1] < 1e-3  # the rule fired on the last epoch ...
    assert (change.iloc[:-1] >= 1e-3).all()  # ... and not before


def test_a_large_tolerance_stops_after_the_second_epoch(tmp_path: Path) -> None:
    training = {"epochs": 50, "batch_size": 8, "tolerance": 100.0}
    result = train(load_config(write_toy(tmp_path / "tol.yaml", training=training)), out=tmp_path / "run")
    assert (result.status, result.epoch, len(losses(result.path))) == ("tolerance", 2, 2)


# ----------------------------------------------------------------------------- dropout, schedules, clipping


def dropout_layers(rate: float, hidden: int = 32) -> list[Any]:
    return [
        {"input": {"normalize": "zscore"}},
        {"fully_connected": {"units": hidden}},
        "tanh",
        {"dropout": {"rate": rate}},
        {"fully_connected": {"units": 2}},
        "softmax",
    ]


def test_dropout_trains_with_masks_and_validates_without(tmp_path: Path) -> None:
    cfg = write_toy(tmp_path / "drop.yaml", layers=dropout_layers(0.9), training={"epochs": 3, "batch_size": 8})
    result = train(load_config(cfg), out=tmp_path / "run")
    history = losses(result.path)
    run = load_run(result.path)  # the last epoch's weights
    valid = pd.read_csv(tmp_path / "valid.csv")
    # the validation loss in the history is the model's loss without dropout, as `nnctl eval` computes it
    assert history["validation_loss"].iloc[-1] == pytest.approx(run.evaluate(valid)["loss"], rel=1e-12)
    # while the training loss saw 90 % of the hidden units dropped: far worse than the same weights without
    assert history["train_loss"].iloc[-1] > run.evaluate(pd.read_csv(tmp_path / "train.csv"))["loss"]
    no_dropout = train(load_config(cfg, ["layers.3.dropout.rate=0"]), out=tmp_path / "rate0")
    assert not np.array_equal(model_arrays(no_dropout.path)["4.W"], model_arrays(result.path)["4.W"])
    again = train(load_config(cfg), out=tmp_path / "again")  # same seed, same masks
    assert model_arrays(again.path)["4.W"].tobytes() == model_arrays(result.path)["4.W"].tobytes()


def test_dropout_rate_zero_changes_nothing_and_masks_do_not_move_other_streams(tmp_path: Path) -> None:
    """Rate 0 trains exactly as no dropout layer (the masks' stream is separate: init and shuffling keep theirs)."""
    plain = [layer for layer in dropout_layers(0.0) if not (isinstance(layer, dict) and "dropout" in layer)]
    with_zero = train(load_config(write_toy(tmp_path / "z.yaml", layers=dropout_layers(0.0))), out=tmp_path / "z")
    without = train(load_config(write_toy(tmp_path / "n.yaml", layers=plain)), out=tmp_path / "n")
    a, b = model_arrays(with_zero.path), model_arrays(without.path)
    assert a["1.W"].tobytes() == b["1.W"].tobytes() and a["4.W"].tobytes() == b["3.W"].tobytes()
    assert losses(with_zero.path).equals(losses(without.path))


@pytest.mark.parametrize("validation", [True, False])
def test_plateau_watches_the_validation_loss_else_the_training_loss(tmp_path: Path, validation: bool) -> None:
    from nnctl.schedules import ReduceOnPlateau

    write_csv(tmp_path / "train.csv", 40, seed=1, noise=1.5)  # noisy labels: validation loss soon rises
    write_csv(tmp_path / "valid.csv", 40, seed=2, noise=1.5)
    data = {"train": "train.csv", "target": "label"} | ({"validation": "valid.csv"} if validation else {})
    schedule = {"name": "plateau", "factor": 0.5, "patience": 1, "threshold": 0.01}
    cfg = write_toy(
        tmp_path / "plateau.yaml",
        data=data,
        layers=dropout_layers(0.0),
        optimizer={"name": "adam", "learning_rate": 0.05, "schedule": schedule},
        training={"epochs": 40, "batch_size": 8},
    )
    history = losses(train(load_config(cfg), out=tmp_path / "run").path)
    watched = history["validation_loss" if validation else "train_loss"].tolist()
    replay = ReduceOnPlateau(0.05, factor=0.5, patience=1, threshold=0.01)
    expected = [replay.learning_rate] + [replay.step(loss) for loss in watched[:-1]]
    assert history["learning_rate"].tolist() == expected  # the rate each epoch used, bit for bit
    assert len(set(expected)) > 2  # and it did reduce, more than once


def test_grad_norm_is_the_mean_pre_clip_norm_of_the_epochs_steps(tmp_path: Path) -> None:
    from nnctl.experiment import set_up
    from nnctl.optimizers import global_norm

    optimizer = {"name": "sgd", "learning_rate": 0.5, "clip_norm": 1e-3}  # binds at every step
    cfg = load_config(
        write_toy(tmp_path / "clip.yaml", optimizer=optimizer, training={"epochs": 2, "batch_size": None})
    )
    history = losses(train(cfg, out=tmp_path / "run").path)
    setup = set_up(load_config(tmp_path / "clip.yaml"))  # the same initial weights
    net, X, Y = setup.network, setup.train.X, setup.train.Y
    net.backward(net.objective.gradient(Y, net.forward(X)))
    first = global_norm(g for _, _, g in net.parameters())
    assert history["grad_norm"].iloc[0] == pytest.approx(first, rel=1e-12)  # full batch: one step per epoch
    assert first > 100 * 1e-3  # so it is the norm before clipping
    # after one clipped step of length η·C = 5e-4 the weights barely moved: the next norm is nearly the same
    assert history["grad_norm"].iloc[1] == pytest.approx(first, rel=1e-2)


# ----------------------------------------------------------------------------- divergence


def regression_config(tmp_path: Path, learning_rate: float, batch_size: int | None, dtype: str = "float64") -> Path:
    write_csv(tmp_path / "reg.csv", 80, seed=3, task="regression")
    layers = [
        {"input": {"normalize": "zscore"}},
        {"fully_connected": {"units": 4}},
        "relu",
        {"fully_connected": {"units": 1}},
    ]
    return write_toy(
        tmp_path / "diverge.yaml",
        dtype=dtype,
        data={"train": "reg.csv", "target": "y"},
        layers=layers,
        objective="squared_error",
        optimizer={"name": "sgd", "learning_rate": learning_rate},
        training={"epochs": 20, "batch_size": batch_size},
    )


@pytest.mark.parametrize(
    ("learning_rate", "batch_size", "dtype"),
    [
        (1e6, 16, "float64"),  # the loss overflows mid-epoch
        (1e6, None, "float64"),  # full batch: several epochs of finite but exploding losses first
        (1e308, None, "float64"),  # one step overflows the weights while the loss that led to it was finite
        (1e6, None, "float32"),
    ],
)
def test_divergence_stops_and_keeps_a_finite_model(
    tmp_path: Path, learning_rate: float, batch_size: int | None, dtype: str
) -> None:
    config = load_config(regression_config(tmp_path, learning_rate, batch_size, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow is reported as divergence, not as numpy RuntimeWarnings
        with pytest.raises(DivergenceError) as caught:
            train(config, out=tmp_path / "run")
    error = caught.value
    assert f"epoch {error.epoch}, " in str(error) and f"batch {error.batch} of" in str(error)
    assert "smaller optimizer.learning_rate" in str(error)

    run = load_run(tmp_path / "run")  # the last good model loads ...
    assert all(np.isfinite(a).all() for a in run.network.arrays().values())  # ... and is finite
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(history) == error.epoch - 1  # the epochs that finished before the bad batch
    assert np.isfinite(history[["train_loss", "train_rmse"]].to_numpy(dtype=float)).all()
    meta = yaml.safe_load((tmp_path / "run" / "model.json").read_text())
    assert (meta["status"], meta["epochs_completed"]) == ("diverged", error.epoch - 1)


# ----------------------------------------------------------------------------- atomic writes


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "model.npz")


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.npz"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_atomic_write_creates_files_with_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "model.npz"
    atomic_write(target, b"data")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like open(); mkstemp alone would give 0600
    target.chmod(0o640)
    atomic_write(target, b"again")
    assert target.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_a_failed_atomic_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "model.npz"
    atomic_write(target, b"old contents")

    def disk_full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(failing, disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new contents that never arrive")
    assert target.read_bytes() == b"old contents"
    assert leftovers(tmp_path) == []
