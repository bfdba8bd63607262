"""Training speed: nnctl against a hand-written NumPy loop, PyTorch (CPU) and scikit-learn.

Every system trains the same network (fully connected, ReLU, softmax, cross-entropy) on the
same z-scored data, for the same epochs and batch size, with plain SGD in the same dtype.
Each measurement is a fresh subprocess: it builds the data, warms up on a throwaway model,
then times only the training loop. The table shows the median samples/s of the repeats.

    python benchmarks/bench_train.py                 # everything, 5 repeats
    python benchmarks/bench_train.py --quick         # smoke run: 1 repeat, shorter W1
    python benchmarks/bench_train.py --workloads W3 --dtypes float64 --systems nnctl numpy
    python benchmarks/bench_train.py --unset-openblas-env   # also measure with OPENBLAS_CORETYPE/L2_SIZE removed

The hand-written loop computes exactly nnctl's math (SPEC §1): the unfused softmax backward
(a vector-Jacobian product) fed by the cross-entropy gradient −y/(ŷ+ε), ∂W = Xᵀδ/N, ∂b = mean δ,
p ← p − η g, and the same running training loss; `numpy-fused` uses δ = ŷ − y instead (for
information only: it skips the ε and the softmax VJP).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SEED = 0
EPSILON = 1e-7
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]  # widths: features, hidden..., classes
    batch_size: int
    epochs: int
    learning_rate: float
    source: str  # "synthetic", "digits" or "wine"
    rows: int = 0  # synthetic only
    description: str = ""


WORKLOADS = {
    "W1": Workload(
        "W1", (784, 256, 128, 10), 128, 1, 0.05, "synthetic", 60_000, "784-256-128-10, 60,000 synthetic rows"
    ),
    "W2": Workload("W2", (64, 32, 10), 32, 50, 0.05, "digits", 0, "64-32-10, digits (1,437 rows)"),
    "W3": Workload("W3", (13, 16, 3), 16, 200, 0.05, "wine", 0, "13-16-3, wine (178 rows)"),
}
SYSTEMS = ("nnctl", "numpy", "numpy-fused", "torch", "sklearn")
TARGETS = {  # nnctl's speed / the peer's, as medians (the goals)
    ("W1", "numpy"): 0.9,
    ("W2", "numpy"): 0.75,
    ("W3", "numpy"): 0.75,
    ("W1", "torch"): 1.2,
    ("W2", "torch"): 3.0,
    ("W3", "torch"): 3.0,
    ("W2", "sklearn"): 2.5,
    ("W3", "sklearn"): 2.5,
}


# ----------------------------------------------------------------------------- data


def load_raw(workload: Workload, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 (N, D) as nnctl's loader returns it — F order from pandas for the CSVs —, labels int (N,))."""
    if workload.source == "synthetic":
        n = rows or workload.rows
        d, k = workload.sizes[0], workload.sizes[-1]
        rng = np.random.default_rng(12345)
        X = rng.standard_normal((n, d))
        teacher = rng.standard_normal((d, k))
        labels = np.argmax(X @ teacher + rng.standard_normal((n, k)), axis=1)
    else:
        from nnctl.data import infer_encoding, load_dataset, read_csv

        paths = {"digits": [DATA / "digits_train.csv"], "wine": [DATA / "wine_train.csv", DATA / "wine_test.csv"]}
        target = {"digits": "digit", "wine": "cultivar"}[workload.source]
        frames = [read_csv(p) for p in paths[workload.source]]
        import pandas as pd

        frame = pd.concat(frames, ignore_index=True)
        encoding = infer_encoding(frame, str(paths[workload.source][0]), [target], None, "cross_entropy")
        data = load_dataset(paths[workload.source][0], encoding, np.float64, frame)
        X, labels = data.X, data.Y.argmax(axis=1)
    return X, labels.astype(np.int64)


def zscore(X: np.ndarray) -> np.ndarray:
    """(x − μ) / σ per column (σ of 0 → 1), C order: what nnctl's input layer computes."""
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return np.ascontiguousarray((X - X.mean(axis=0)) / std)


def one_hot(labels: np.ndarray, k: int, dtype: Any) -> np.ndarray:
    Y = np.zeros((len(labels), k), dtype=dtype)
    Y[np.arange(len(labels)), labels] = 1
    return Y


# ----------------------------------------------------------------------------- nnctl


def nnctl_setup(workload: Workload, X: np.ndarray, labels: np.ndarray, dtype: str, epochs: int | None = None):
    """A Trainer exactly as `nnctl train` builds one, with the CLI's TrainingDisplay attached.

    X is raw, laid out as nnctl's loader returns it; nnctl's input layer z-scores it inside fit (timed).
    """
    from rich.console import Console

    from nnctl.config import validate_config
    from nnctl.data import Dataset
    from nnctl.network import build_network
    from nnctl.optimizers import optimizer_class
    from nnctl.render import TrainingDisplay
    from nnctl.seeds import streams as rngs
    from nnctl.train import Trainer

    layers: list[Any] = [{"input": {"normalize": "zscore"}}]
    for units in workload.sizes[1:-1]:
        layers += [{"fully_connected": {"units": units, "init": "xavier"}}, "relu"]
    layers += [{"fully_connected": {"units": workload.sizes[-1], "init": "xavier"}}, "softmax"]
    raw = {
        "seed": SEED,
        "dtype": dtype,
        "epsilon": EPSILON,
        "data": {"train": "bench.csv", "target": "label"},
        "layers": layers,
        "objective": "cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": workload.learning_rate},
        "training": {"epochs": epochs or workload.epochs, "batch_size": workload.batch_size, "shuffle": True},
    }
    config = validate_config(raw, "bench")
    streams = rngs(config.seed)
    network = build_network(config, X.shape[1], workload.sizes[-1], rng=streams["init"])
    optimizer = optimizer_class("sgd")(learning_rate=workload.learning_rate)
    display = TrainingDisplay(Console(file=io.StringIO(), force_terminal=False, width=120), quiet=False)
    # as the CLI builds it, with a run-directory save that does nothing (saves are not timed)
    trainer = Trainer(network, optimizer, config.training, streams["shuffle"], display, lambda state: None, 10.0)
    train = Dataset(X.astype(dtype), one_hot(labels, workload.sizes[-1], dtype), "bench")  # keeps X's layout
    network.input.fit(train.X)  # as nnctl.experiment.set_up does
    return trainer, train


def run_nnctl(workload: Workload, X: np.ndarray, labels: np.ndarray, dtype: str, epochs: int | None = None) -> float:
    trainer, train = nnctl_setup(workload, X, labels, dtype, epochs)
    started = time.perf_counter()
    trainer.fit(train)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- hand-written NumPy


def initial_weights(workload: Workload, n_features: int, dtype: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """nnctl's initial (W, b) for this workload (same seed, same stream)."""
    trainer, _ = nnctl_setup(workload, np.zeros((2, n_features)), np.zeros(2, dtype=np.int64), dtype, 1)  # no RNG use
    return [(m.params["W"].copy(), m.params["b"].copy()) for m in trainer.network.modules if "W" in m.params]


def train_numpy(
    X: np.ndarray,
    Y: np.ndarray,
    weights: list[tuple[np.ndarray, np.ndarray]],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
    fused: bool = False,
) -> float:
    """Minibatch SGD on an MLP (ReLU hidden layers, softmax, cross-entropy), every buffer preallocated.

    Same math and order as nnctl (SPEC §1); returns the last epoch's mean training loss.
    """
    n, L = len(X), len(weights)
    B = min(batch_size, n)
    dtype = X.dtype
    widths = [X.shape[1]] + [W.shape[1] for W, _ in weights]
    gW = [np.empty_like(W) for W, _ in weights]
    gb = [np.empty_like(b) for _, b in weights]
    add, maximum = np.add.reduce, np.maximum.reduce
    buffers: dict[int, tuple] = {}

    def buffers_for(m: int) -> tuple:  # one set per batch length (the last batch may be shorter)
        if m not in buffers:
            x, y = np.empty((m, widths[0]), dtype), np.empty((m, widths[-1]), dtype)
            H = [np.empty((m, k), dtype) for k in widths[1:]]  # pre-activations z
            A = [np.empty((m, k), dtype) for k in widths[1:]]  # activations g(z)
            D = [np.empty((m, k), dtype) for k in widths]  # δ at each width
            masks = [np.empty((m, k), bool) for k in widths]
            t, r = np.empty((m, widths[-1]), dtype), np.empty((m, 1), dtype)
            buffers[m] = (x, y, H, A, D, masks, t, r, [x] + A[:-1])
        return buffers[m]

    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        loss = 0.0
        for start in range(0, n, B):
            index = order[start : start + B]
            m = len(index)
            x, y, H, A, D, masks, t, r, inputs = buffers_for(m)
            X.take(index, axis=0, out=x)
            Y.take(index, axis=0, out=y)
            a = x
            for i, (W, b) in enumerate(weights):  # forward
                h = np.matmul(a, W, out=H[i])
                h += b
                if i < L - 1:
                    a = np.maximum(h, 0, out=A[i])
            z, p, d = H[-1], A[-1], D[-1]
            maximum(z, axis=1, keepdims=True, out=r)  # softmax, stably
            np.subtract(z, r, out=p)
            np.exp(p, out=p)
            add(p, axis=1, keepdims=True, out=r)
            p /= r
            np.add(p, EPSILON, out=t)  # ŷ + ε, shared by the loss and its gradient
            np.log(t, out=d)
            d *= y
            loss -= float(add(add(d, axis=1)))
            if fused:
                np.subtract(p, y, out=d)
            else:
                np.divide(y, t, out=d)  # ∂J/∂ŷ = −y / (ŷ + ε)
                np.negative(d, out=d)
                np.multiply(d, p, out=t)  # softmax VJP: g (δ − Σ δ g)
                add(t, axis=1, keepdims=True, out=r)
                d -= r
                d *= p
            for i in range(L - 1, -1, -1):  # backward
                np.matmul(inputs[i].T, d, out=gW[i])  # ∂W = Xᵀ δ / N
                gW[i] /= m
                add(d, axis=0, keepdims=True, out=gb[i])  # ∂b = mean δ
                gb[i] /= m
                if i > 0:
                    d_in = np.matmul(d, weights[i][0].T, out=D[i])
                    d_in *= np.greater_equal(H[i - 1], 0, out=masks[i])  # ReLU: 1 where z ≥ 0
                    d = d_in
            for (W, b), g, g_b in zip(weights, gW, gb, strict=True):  # SGD: p ← p − η g
                g *= learning_rate
                W -= g
                g_b *= learning_rate
                b -= g_b
        loss /= n
    return loss


def run_numpy(
    workload: Workload, X: np.ndarray, labels: np.ndarray, dtype: str, epochs: int | None = None, fused: bool = False
) -> float:
    from nnctl.seeds import streams as rngs

    weights = initial_weights(workload, X.shape[1], dtype)
    Xd, Y = zscore(X).astype(dtype), one_hot(labels, workload.sizes[-1], dtype)
    rng = rngs(SEED)["shuffle"]
    started = time.perf_counter()
    train_numpy(Xd, Y, weights, epochs or workload.epochs, workload.batch_size, workload.learning_rate, rng, fused)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- PyTorch


def run_torch(workload: Workload, X: np.ndarray, labels: np.ndarray, dtype: str, epochs: int | None = None) -> float:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    layers: list[Any] = []
    for i, (W, b) in enumerate(initial_weights(workload, X.shape[1], dtype)):
        linear = torch.nn.Linear(W.shape[0], W.shape[1], dtype=tdtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b[0].copy()))
        layers.append(linear)
        if i < len(workload.sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    loss_fn = torch.nn.CrossEntropyLoss()  # log-softmax + NLL, fused (PyTorch's idiomatic head)
    optimizer = torch.optim.SGD(model.parameters(), lr=workload.learning_rate)
    Xt = torch.from_numpy(zscore(X).astype(dtype))
    yt = torch.from_numpy(labels)
    n, B = len(X), workload.batch_size
    generator = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    for _ in range(epochs or workload.epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, B):
            index = order[start : start + B]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[index]), yt[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- scikit-learn


def run_sklearn(workload: Workload, X: np.ndarray, labels: np.ndarray, dtype: str, epochs: int | None = None) -> float:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    epochs = epochs or workload.epochs
    model = MLPClassifier(
        hidden_layer_sizes=workload.sizes[1:-1],
        activation="relu",
        solver="sgd",
        learning_rate="constant",
        learning_rate_init=workload.learning_rate,
        batch_size=workload.batch_size,
        max_iter=epochs,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=epochs + 1,  # never stop early: run every epoch
        early_stopping=False,
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=0.0,
        random_state=SEED,
    )
    Xd = zscore(X).astype(dtype)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xd, labels)
    seconds = time.perf_counter() - started
    if model.n_iter_ != epochs or model.coefs_[0].dtype != np.dtype(dtype):
        raise RuntimeError(
            f"scikit-learn ran {model.n_iter_} epochs in {model.coefs_[0].dtype}, expected {epochs} in {dtype}"
        )
    return seconds


# ----------------------------------------------------------------------------- GEMMs alone


def gemm_shapes(workload: Workload) -> list[tuple[int, int, int, str]]:
    """(M, K, N, kind) of every matrix product in one training step (batch B)."""
    B, sizes = workload.batch_size, workload.sizes
    shapes = [(B, d, k, "forward X W") for d, k in pairwise(sizes)]
    shapes += [(d, B, k, "backward Xᵀ δ") for d, k in pairwise(sizes)]
    shapes += [(B, k, d, "backward δ Wᵀ") for d, k in list(pairwise(sizes))[1:]]
    return shapes


def run_gemm(workload: Workload, dtype: str, steps: int) -> dict[str, float]:
    """Seconds per step of the step's GEMMs alone (same shapes and layouts), and a large GEMM's GFLOP/s."""
    rng = np.random.default_rng(0)
    B, sizes = workload.batch_size, workload.sizes
    acts = [rng.standard_normal((B, k)).astype(dtype) for k in sizes]
    Ws = [rng.standard_normal((d, k)).astype(dtype) for d, k in pairwise(sizes)]
    outs = [np.empty((B, k), dtype) for k in sizes]
    gWs = [np.empty_like(W) for W in Ws]

    def step() -> None:
        for i, W in enumerate(Ws):
            np.matmul(acts[i], W, out=outs[i + 1])
        for i in range(len(Ws) - 1, -1, -1):
            np.matmul(acts[i].T, acts[i + 1], out=gWs[i])
            if i > 0:
                np.matmul(acts[i + 1], Ws[i].T, out=outs[i])

    for _ in range(20):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - started) / steps
    flops = sum(2.0 * m * k * n for m, k, n, _ in gemm_shapes(workload))
    big = rng.standard_normal((1024, 1024)).astype(dtype)
    out = np.empty_like(big)
    np.matmul(big, big, out=out)
    reps, started = 10, time.perf_counter()
    for _ in range(reps):
        np.matmul(big, big, out=out)
    peak = 2.0 * 1024**3 * reps / (time.perf_counter() - started)
    return {
        "seconds_per_step": per_step,
        "step_gflops": flops / per_step / 1e9,
        "peak_gflops": peak / 1e9,
        "flops_per_step": flops,
    }


# ----------------------------------------------------------------------------- worker and driver


RUNNERS = {
    "nnctl": run_nnctl,
    "numpy": run_numpy,
    "numpy-fused": lambda *a, **k: run_numpy(*a, **k, fused=True),
    "torch": run_torch,
    "sklearn": run_sklearn,
}


def blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed"}]
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads")
    return [{k: v for k, v in info.items() if k in keep} for info in threadpool_info()]


def worker(system: str, workload_name: str, dtype: str, rows: int | None) -> dict[str, Any]:
    """One measurement: data, warm-up on a throwaway model, then the timed training run."""
    workload = WORKLOADS[workload_name]
    X, labels = load_raw(workload, rows)
    n = len(X)
    n_batches = math.ceil(n / workload.batch_size)
    if system == "gemm":
        result = run_gemm(workload, dtype, n_batches * workload.epochs)
        result.update(blas=blas_info())
        return result
    runner = RUNNERS[system]
    warm = min(n, workload.batch_size * 30)  # a few dozen steps: BLAS threads, caches, lazy imports
    runner(workload, X[:warm], labels[:warm], dtype, 1)
    seconds = runner(workload, X, labels, dtype)
    blas = blas_info()
    if system == "torch":
        import torch

        blas.append({"user_api": "torch", "num_threads": torch.get_num_threads(), "version": torch.__version__})
    return {"seconds": seconds, "samples": n * workload.epochs, "steps": n_batches * workload.epochs, "blas": blas}


def available(system: str) -> bool:
    module = {"torch": "torch", "sklearn": "sklearn"}.get(system)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def measure(system: str, workload: str, dtype: str, rows: int | None, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", system, workload, dtype]
    if rows:
        cmd += ["--rows", str(rows)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{system} {workload} {dtype} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe_blas(blas: list[dict[str, Any]]) -> str:
    parts = []
    for info in blas:
        if info.get("user_api") == "torch":
            continue
        parts.append(
            f"{info.get('prefix', info.get('internal_api', '?'))} {info.get('version', '')} "
            f"kernel={info.get('architecture', '?')} threads={info.get('num_threads', '?')}"
        )
    return "; ".join(parts)


def busy_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has spent busy, CPU seconds of this process's finished children), Linux only."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)  # all but idle and iowait
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / os.sysconf("SC_CLK_TCK"), children.ru_utime + children.ru_stime


def suite(args: argparse.Namespace, env: dict[str, str], label: str) -> dict[str, Any]:
    systems = [s for s in args.systems if available(s)]
    skipped = [s for s in args.systems if s not in systems]
    rows = 6_000 if args.quick and not args.rows else args.rows
    results: dict[str, Any] = {"label": label, "skipped": skipped, "runs": {}, "gemm": {}, "blas": None}
    results["load_before"] = os.getloadavg()[0]
    started, busy_before = time.time(), busy_seconds()
    for workload in args.workloads:
        for dtype in args.dtypes:
            key = f"{workload}/{dtype}"
            times: dict[str, list[float]] = {s: [] for s in systems}
            samples = 0
            for rep in range(args.repeats):  # interleaved, so drift hits every system alike
                for system in systems:
                    out = measure(system, workload, dtype, rows, env)
                    times[system].append(out["seconds"])
                    samples = out["samples"]
                    results["blas"] = results["blas"] or out["blas"]
                    print(
                        f"  {label:>9} {key:<11} {system:<12} run {rep + 1}: "
                        f"{out['samples'] / out['seconds']:>12,.0f} samples/s",
                        file=sys.stderr,
                        flush=True,
                    )
                if workload == "W1":  # the step's GEMMs alone, in the same round
                    results["gemm"].setdefault(key, []).append(measure("gemm", workload, dtype, rows, env))
            results["runs"][key] = {"samples": samples, "seconds": times}
    results["load_after"] = os.getloadavg()[0]
    busy_after = busy_seconds()
    if busy_before and busy_after:  # CPU time of everything else on the machine, as a share of all CPUs
        others = (busy_after[0] - busy_before[0]) - (busy_after[1] - busy_before[1])
        results["others_share"] = max(0.0, others) / ((time.time() - started) * (os.cpu_count() or 1))
    return results


def median_rate(run: dict[str, Any], system: str) -> float:
    return run["samples"] / statistics.median(run["seconds"][system])


def report(results: dict[str, Any]) -> str:
    lines = [f"### {results['label']}", "", f"BLAS: {describe_blas(results['blas'] or [])}", ""]
    others = results.get("others_share")
    if others is not None:
        lines += [
            f"Other processes used {others:.0%} of the machine's CPU time during these measurements"
            + (" — expect noise; rerun when the machine is idle." if others > 0.05 else "."),
            "",
        ]
    if results["skipped"]:
        lines += [f"Not installed, skipped: {', '.join(results['skipped'])}", ""]
    lines += [
        "| workload | dtype | system | samples/s (median) | spread (min–max) | nnctl ÷ system | target |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for key, run in results["runs"].items():
        workload, dtype = key.split("/")
        nnctl = median_rate(run, "nnctl") if "nnctl" in run["seconds"] else None
        for system, seconds in run["seconds"].items():
            rate = median_rate(run, system)
            spread = f"{run['samples'] / max(seconds):,.0f}–{run['samples'] / min(seconds):,.0f}"
            ratio = f"{nnctl / rate:.2f}×" if nnctl and system != "nnctl" else ""
            target = TARGETS.get((workload, system))
            goal = ""
            if target is not None and nnctl:
                goal = f"≥ {target}× {'✓' if nnctl / rate >= target else '✗'}"
            lines.append(f"| {workload} | {dtype} | {system} | {rate:,.0f} | {spread} | {ratio} | {goal} |")
    for key, gemms in results["gemm"].items():
        gemm = {
            k: statistics.median(g[k] for g in gemms)
            for k in ("seconds_per_step", "step_gflops", "peak_gflops", "flops_per_step")
        }
        run = results["runs"][key]
        if "nnctl" not in run["seconds"]:
            continue
        steps = math.ceil(run["samples"] / WORKLOADS["W1"].batch_size)
        nnctl_step = statistics.median(run["seconds"]["nnctl"]) / steps
        lines += [
            "",
            f"{key}: the step's {len(gemm_shapes(WORKLOADS['W1']))} GEMMs alone take "
            f"{gemm['seconds_per_step'] * 1e3:.3f} ms "
            f"({gemm['step_gflops']:.1f} GFLOP/s); nnctl's whole step takes {nnctl_step * 1e3:.3f} ms "
            f"({gemm['flops_per_step'] / nnctl_step / 1e9:.1f} GFLOP/s): nnctl runs at "
            f"{gemm['seconds_per_step'] / nnctl_step:.0%} of the GEMM bound, "
            f"{gemm['flops_per_step'] / nnctl_step / 1e9 / gemm['peak_gflops']:.0%} of a 1024² GEMM's "
            f"{gemm['peak_gflops']:.1f} GFLOP/s (the machine's practical peak).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("SYSTEM", "WORKLOAD", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, W1 on 6,000 rows")
    parser.add_argument("--repeats", type=int, default=None, help="measurements per system (default 5; --quick: 1)")
    parser.add_argument("--rows", type=int, default=None, help="rows of W1's synthetic data (default 60,000)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument(
        "--unset-openblas-env",
        action="store_true",
        help="measure again with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from the workers' env",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    if args.worker:
        system, workload, dtype = args.worker
        print(json.dumps(worker(system, workload, dtype, args.rows)))
        return
    args.repeats = args.repeats or (1 if args.quick else 5)
    if "nnctl" not in args.systems:
        args.systems.insert(0, "nnctl")
    env = dict(os.environ)
    set_vars = {k: env[k] for k in OPENBLAS_VARS if k in env}
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs; "
        f"{', '.join(f'{k}={v}' for k, v in set_vars.items()) or 'OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE not set'}",
        flush=True,
    )
    everything = [suite(args, env, "as set" if set_vars else "default")]
    if args.unset_openblas_env:
        if set_vars:
            clean = {k: v for k, v in env.items() if k not in OPENBLAS_VARS}
            everything.append(suite(args, clean, "unset"))
        else:
            print("--unset-openblas-env: neither variable is set; the measurement above is already without them.")
    for results in everything:
        print()
        print(report(results))
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
