"""The speed and memory paths give the same numbers as the plain ones, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnctl.data
import nnctl.train
from nnctl.config import rngs, validate_config
from nnctl.data import Dataset, infer_encoding, load_dataset, read_csv
from nnctl.network import build_network
from nnctl.optimizers import optimizer_class
from nnctl.train import Trainer

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.mark.parametrize("name", ["iris_train", "wine_train", "digits_train", "breast_cancer_train", "diabetes_train"])
def test_a_large_file_read_in_chunks_gives_the_same_frame(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_csv(DATA / f"{name}.csv")
    monkeypatch.setattr(nnctl.data, "CHUNKED_READ_BYTES", 0)  # every file counts as large: ≥ 1,000-row chunks
    chunked = read_csv(DATA / f"{name}.csv")
    pd.testing.assert_frame_equal(chunked, whole)


def test_chunks_smaller_than_the_file_are_concatenated_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.standard_normal(2_500), "b": rng.integers(0, 9, 2_500), "y": rng.choice(["u", "v"], 2_500)})
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    monkeypatch.setattr(nnctl.data, "CHUNKED_READ_BYTES", 0)
    pd.testing.assert_frame_equal(read_csv(path), pd.read_csv(path))


def test_features_keep_pandas_column_order_and_values() -> None:
    frame = read_csv(DATA / "digits_train.csv")
    encoding = infer_encoding(frame, "digits", ["digit"], None, "cross_entropy")
    X = load_dataset("digits", encoding, np.float32, frame).X
    np.testing.assert_array_equal(X, frame[encoding.features].to_numpy(dtype=np.float32))
    assert X.flags.f_contiguous  # the layout Input.fit's statistics were always computed on


def _train(dtype: str, X: np.ndarray, labels: np.ndarray, epochs: int = 2) -> list[np.ndarray]:
    raw = {
        "seed": 3,
        "dtype": dtype,
        "data": {"train": "x.csv", "target": "y"},
        "layers": ["input", {"fully_connected": {"units": 7}}, "tanh", {"fully_connected": {"units": 3}}, "softmax"],
        "objective": "cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
        "training": {"epochs": epochs, "batch_size": 10},
    }
    config = validate_config(raw)
    streams = rngs(config.seed)
    network = build_network(config, X.shape[1], 3, rng=streams["init"])
    network.input.fit(np.asfortranarray(X))  # statistics from one layout; the trainer then gets either
    Y = np.eye(3, dtype=dtype)[labels]
    trainer = Trainer(network, optimizer_class("sgd")(learning_rate=0.1), config.training, streams["shuffle"])
    state = trainer.fit(Dataset(X.astype(dtype, copy=False), Y, "x"))
    assert state.history[-1]["train_accuracy"] > 0.5
    return [p.copy() for _, p, _ in network.parameters()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_normalising_batch_by_batch_or_once_and_any_layout_give_the_same_weights(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((95, 5)) * 4 + 2  # 95 rows: the last batch is short
    labels = np.argmax(X[:, :3], axis=1)
    once = _train(dtype, np.asfortranarray(X), labels)
    monkeypatch.setattr(nnctl.train, "NORMALIZE_ONCE_BYTES", 0)
    per_batch_f = _train(dtype, np.asfortranarray(X), labels)
    per_batch_c = _train(dtype, np.ascontiguousarray(X), labels)
    for a, b, c in zip(once, per_batch_f, per_batch_c):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
