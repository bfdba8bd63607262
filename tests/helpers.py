"""Shared test helpers: central finite differences, SPEC §5's relative error, and module construction."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from nnctl.cli import main
from nnctl.gradcheck import fix_noise
from nnctl.layers import LAYERS, Activation, FullyConnected, Module
from nnctl.network import build_modules
from nnctl.train import Callback

STEP = 1e-5  # float64 central differences: truncation h²·f‴/6 ≈ 1e-11, rounding u·|f|/h ≈ 1e-11·|f|

# Registry names of parameter-free element-wise/softmax activations (so a newly registered one joins the stacks).
ACTIVATIONS = sorted(name for name, cls in LAYERS.items() if issubclass(cls, Activation))

# The largest relative error finite-difference checks have seen this session, per tolerance (conftest reports it
# with -v): tolerance → (error, where).
LARGEST: dict[float, tuple[float, str]] = {}

# The largest onnxruntime-vs-nnctl difference (|a − b| / max(1, |b|)) the export tests have seen: (error, where).
ONNX_LARGEST: list[tuple[float, str]] = []


def central_difference(f: Callable[[], float], x: np.ndarray, h: float = STEP) -> np.ndarray:
    """∂f/∂x by (f(x + h) − f(x − h)) / 2h, one entry at a time; x is perturbed in place and restored."""
    assert x.dtype == np.float64, "finite differences are only meaningful in float64"
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)  # views: writing to flat perturbs x
    assert np.shares_memory(flat, x), "x must be contiguous"
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        plus = f()
        flat[i] = saved - h
        minus = f()
        flat[i] = saved
        out[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """SPEC §5: max|a − n| / max(max|a|, max|n|, 1e-8), normwise so exact zeros don't fail on rounding noise."""
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), 1e-8)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


def check_close(analytic: np.ndarray, numeric: np.ndarray, tol: float, where: str, noise: float = 0.0) -> None:
    """Assert max|a − n| < tol·scale + noise, i.e. a relative error below tol plus an absolute rounding budget.

    The relative error of a passing check is remembered, per tolerance, for the session's report.
    """
    assert analytic.shape == numeric.shape, where
    err = relative_error(analytic, numeric)
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), 1e-8)
    assert err < tol + noise / scale, f"{where}: relative error {err:.3g} >= {tol:.0e} (+ noise {noise / scale:.1g})"
    if err >= LARGEST.get(tol, (-1.0, ""))[0]:
        LARGEST[tol] = (err, where)


def layer_options(name: str, units: int) -> dict[str, Any]:
    """The options a registry entry needs to be built alone (only fully_connected has required ones)."""
    return {"units": units, "init": "normal", "scale": 1.0} if LAYERS[name] is FullyConnected else {}


def build_layer(name: str, width_in: int, units: int, rng: np.random.Generator, **kwargs: Any) -> Module:
    """One registered layer built the way a config builds it (through nnctl.network.build_modules); a module
    that draws noise while training (dropout) is in training mode with one fixed mask, so the registry's
    checks see its training path as one fixed function."""
    (module,) = build_modules([(name, layer_options(name, units))], width_in, rng=rng, **kwargs)
    fix_noise([module])
    return module


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.1, high: float = 2.0) -> np.ndarray:
    """Random values with |x| in [low, high], so a step of 1e-6 never crosses ReLU's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def jacobian_product(module: Module, delta: np.ndarray) -> np.ndarray:
    """δ · gradient(), for each Jacobian layout SPEC §1 defines."""
    jac = module.gradient()
    if jac.ndim == 3:  # (N, K, K), e.g. softmax
        return np.einsum("ni,nij->nj", delta, jac)
    if isinstance(module, FullyConnected):  # Wᵀ (K, D), the same for every row
        return delta @ jac
    return delta * jac  # (N, K) diagonals of element-wise modules


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run `nnctl ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def toy_layers(hidden: int = 8, activation: str = "tanh", classes: int = 2) -> list[Any]:
    """input → fully_connected(hidden) → activation → fully_connected(classes) → softmax."""
    return [
        {"input": {"normalize": "zscore"}},
        {"fully_connected": {"units": hidden}},
        activation,
        {"fully_connected": {"units": classes}},
        "softmax",
    ]


def toy_config(**sections: Any) -> dict[str, Any]:
    """The tests' small classification config (train.csv / valid.csv with a yes/no `label`, as `write_csv`
    makes them); keyword sections replace the defaults."""
    config: dict[str, Any] = {
        "seed": 0,
        "data": {"train": "train.csv", "validation": "valid.csv", "target": "label"},
        "layers": toy_layers(),
        "objective": "cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "training": {"epochs": 5, "batch_size": 8},
    }
    return config | sections


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def checkpoint_state(run: Path) -> dict[str, Any]:
    """The JSON document inside a run's checkpoint (position, sums, history, RNG state)."""
    with np.load(run / "checkpoint" / "checkpoint.npz", allow_pickle=False) as npz:
        return json.loads(npz["state"].tobytes().decode())


def write_csv(path: Path, rows: int, seed: int, noise: float = 0.3, task: str = "classification") -> Path:
    """`rows` rows of 3 features; a class label (yes/no) or a number from a noisy linear score."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    score = X @ np.array([1.0, -1.0, 0.5]) + noise * rng.normal(size=rows)
    target = {"label": np.where(score > 0, "yes", "no")} if task == "classification" else {"y": score}
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], **target}).to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- runs: compare, interrupt, watch


def model_arrays(run: Path) -> dict[str, np.ndarray]:
    """A run's model.npz, arrays only."""
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def assert_same_run(a: Path, b: Path) -> None:
    """Weights byte for byte, every history.csv value except the wall-clock `seconds` as written, and how
    model.json says training ended."""
    wa, wb = model_arrays(a), model_arrays(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].dtype == wb[name].dtype and wa[name].tobytes() == wb[name].tobytes(), f"{name} differs"
    ha = pd.read_csv(a / "history.csv", dtype=str).drop(columns="seconds")
    hb = pd.read_csv(b / "history.csv", dtype=str).drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb)
    ma, mb = (json.loads((p / "model.json").read_text()) for p in (a, b))
    assert [ma[k] for k in ("status", "best_epoch", "epochs_completed")] == [
        mb[k] for k in ("status", "best_epoch", "epochs_completed")
    ]


class SigintAfter(Callback):
    """A progress callback that sends this process SIGINT after its n-th batch, as Ctrl-C would."""

    def __init__(self, batches: int) -> None:
        self.batches, self.seen = batches, 0

    def on_batch_end(self, epoch: int, batch: int, n_batches: int, samples: int) -> None:
        self.seen += 1
        if self.seen == self.batches:
            os.kill(os.getpid(), signal.SIGINT)


def console_script() -> list[str]:
    """The installed `nnctl` script of this Python (else `python -m nnctl`)."""
    script = Path(sys.executable).with_name("nnctl")
    found = str(script) if script.exists() else shutil.which("nnctl")
    return [found] if found else [sys.executable, "-m", "nnctl"]


def nnctl_process(*args: Any, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """`nnctl ARGS` in a subprocess that saves its run every 50 ms (so a test can watch it progress)."""
    environment = os.environ | {"COLUMNS": "100", "NNCTL_SAVE_EVERY": "0.05"} | (env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "nnctl", *map(str, args)],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def epochs_done(run: Path) -> int:
    """Epochs a run in progress has saved (0 before its first save)."""
    try:
        return int(json.loads((run / "model.json").read_text())["epochs_completed"])
    except (OSError, ValueError, KeyError):
        return 0


def array_bytes(run: Path) -> dict[str, bytes]:
    """A run's model.npz as raw bytes per array (for ==, bit for bit)."""
    return {name: array.tobytes() for name, array in model_arrays(run).items()}
