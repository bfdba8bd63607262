"""The speed and memory paths give the same numbers as the plain ones, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnctl.train
from nnctl.config import validate_config
from nnctl.data import Dataset, infer_encoding, load_dataset, read_csv
from nnctl.network import build_network
from nnctl.optimizers import optimizer_class
from nnctl.seeds import streams as rngs
from nnctl.train import Trainer

DATA = Path(__file__).resolve().parent.parent / "data"


def test_features_keep_pandas_column_order_and_values() -> None:
    frame = read_csv(DATA / "digits_train.csv")
    encoding = infer_encoding(frame, "digits", ["digit"], None, "cross_entropy")
    X = load_dataset("digits", encoding, np.float32, frame).X
    np.testing.assert_array_equal(X, frame[encoding.features].to_numpy(dtype=np.float32))
    assert X.flags.c_contiguous  # the layout the trainer gathers batches from without a copy


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
    for a, b, c in zip(once, per_batch_f, per_batch_c, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
