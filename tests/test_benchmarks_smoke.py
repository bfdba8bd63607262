"""The benchmark compares like with like: nnctl's trainer and the hand-written NumPy loop
produce the same weights from the same start, data and batch order (correctness only, no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(BENCHMARKS))  # as `python benchmarks/NAME.py` has it: the scripts import their siblings
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_train")


@pytest.mark.parametrize("epochs", [1, 3])
def test_nnctl_and_hand_loop_reach_the_same_weights(bench, epochs):
    from nnctl.seeds import streams as rngs

    workload = bench.Workload("tiny", (13, 16, 8, 3), 16, epochs, 0.05, "wine")
    X, labels = bench.load_raw(workload)  # 178 rows: the last batch of each epoch is short
    trainer, train = bench.nnctl_setup(workload, X, labels, "float64")
    weights = [(m.params["W"].copy(), m.params["b"].copy()) for m in trainer.network.modules if "W" in m.params]
    state = trainer.fit(train)
    Y = bench.one_hot(labels, 3, np.float64)
    loss = bench.train_numpy(bench.zscore(X), Y, weights, epochs, 16, 0.05, rngs(bench.SEED)["shuffle"])
    trained = [(m.params["W"], m.params["b"]) for m in trainer.network.modules if "W" in m.params]
    for (W, b), (W_hand, b_hand) in zip(trained, weights, strict=True):
        np.testing.assert_allclose(W, W_hand, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b, b_hand, rtol=0, atol=1e-12)
    assert state.history[-1]["train_loss"] == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("system", ["nnctl", "numpy", "numpy-fused"])
def test_every_numpy_system_runs(bench, system):
    workload = bench.WORKLOADS["W1"]
    X, labels = bench.load_raw(workload, rows=300)
    assert bench.RUNNERS[system](workload, X, labels, "float32", 1) > 0


def test_gemm_shapes_cover_one_step(bench):
    shapes = bench.gemm_shapes(bench.WORKLOADS["W1"])
    assert len(shapes) == 3 + 3 + 2  # forward, ∂W, and δWᵀ except into the data


def test_data_benchmark_loads_like_nnctl(tmp_path):
    bench_data = _load("bench_data")
    path = bench_data.generate(tmp_path / "small.csv", rows=200, columns=5)
    X = bench_data.load_nnctl(path)
    assert X.shape == (200, 5) and X.dtype == np.float64
    parquet = bench_data.to_parquet(path, tmp_path / "small.parquet", row_group=64)
    np.testing.assert_array_equal(bench_data.load_nnctl(parquet, "float32"), X.astype(np.float32))
    result = bench_data.train_nnctl(parquet, "float32", cache=True)
    assert result["memory_mapped"] and result["samples_per_second"] > 0


def test_runs_benchmark_makes_a_sweep_like_tree(tmp_path):
    from nnctl.runs import list_runs, table_rows

    _load("bench_runs").make_runs(tmp_path, 4)
    records, warnings = list_runs(tmp_path / "runs")
    assert warnings == [] and [r.name for r in records] == [
        "sweep/trials/0002",
        "sweep/trials/0004",
        "tiny-1",
        "tiny-3",
    ]
    assert table_rows(records)[1] == ["optimizer.learning_rate"]
