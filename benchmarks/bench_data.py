"""Data at scale: load a generated CSV (1,000,000 rows × 50 numeric columns) and train one epoch on it.

nnctl's loading path (nnctl.data.read_csv + infer_encoding + load_dataset, as
nnctl.experiment.set_up calls them) is timed against a bare pandas.read_csv of the same
file with every available engine (the fastest is the yardstick), and the peak memory of each
(ru_maxrss of a fresh subprocess) is compared with the size of the float64 feature matrix.
Then one epoch of training through nnctl.experiment.set_up + Trainer.fit, in its own subprocess.

    python benchmarks/bench_data.py             # 1,000,000 rows, 3 repeats
    python benchmarks/bench_data.py --quick     # 100,000 rows, 1 repeat
    python benchmarks/bench_data.py --keep DIR  # generate into DIR and keep the file

The CSV is generated into a temporary directory (never the repository) and removed afterwards.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TARGET = "label"
CLASSES = 4


def generate(path: Path, rows: int = 1_000_000, columns: int = 50, seed: int = 0) -> Path:
    """Write `columns` numeric features (6 decimals) and an integer class label, in chunks."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((columns, CLASSES))
    names = ",".join([f"x{i}" for i in range(columns)] + [TARGET])
    row_format = ",".join(["%.6f"] * columns) + ",%d"
    with open(path, "w", encoding="utf-8") as file:
        file.write(names + "\n")
        for start in range(0, rows, 100_000):
            X = rng.standard_normal((min(100_000, rows - start), columns)) * 3 + 1
            labels = np.argmax(X @ weights, axis=1)
            table = np.column_stack([X, labels])
            text = "\n".join(row_format % tuple(row) for row in table.tolist())
            file.write(text + "\n")
    return path


def engines() -> list[str]:
    """pandas.read_csv engines that can run here ("python" is never the fastest; not measured)."""
    found = ["c"]
    if importlib.util.find_spec("pyarrow") is not None:
        found.append("pyarrow")
    return found


def load_nnctl(path: Path) -> np.ndarray:
    """nnctl's loading path for a training CSV, as nnctl.experiment.set_up runs it."""
    from nnctl.data import infer_encoding, load_dataset, read_csv

    frame = read_csv(path, "data.train")
    encoding = infer_encoding(frame, str(path), [TARGET], None, "cross_entropy")
    dataset = load_dataset(path, encoding, np.float64, frame)
    return dataset.X


def train_nnctl(path: Path, run_dir: Path) -> dict[str, float]:
    """set_up() (loading, z-score statistics) then one epoch of Trainer.fit, as `nnctl train` does."""
    from nnctl.config import validate_config
    from nnctl.experiment import set_up
    from nnctl.train import Trainer

    raw = {
        "seed": 0,
        "dtype": "float64",
        "data": {"train": str(path), "target": TARGET},
        "layers": [
            "input",
            {"fully_connected": {"units": 32}},
            "relu",
            {"fully_connected": {"units": CLASSES}},
            "softmax",
        ],
        "objective": "cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "training": {"epochs": 1, "batch_size": 128},
        "output": str(run_dir),
    }
    config = validate_config(raw, "bench_data")
    started = time.perf_counter()
    setup = set_up(config)
    loaded = time.perf_counter()
    trainer = Trainer(setup.network, setup.optimizer, config.training, setup.shuffle_rng)
    state = trainer.fit(setup.train)
    done = time.perf_counter()
    return {
        "prepare_seconds": loaded - started,
        "train_seconds": done - loaded,
        "train_loss": state.history[-1]["train_loss"],
    }


def maxrss_bytes() -> int:
    """Peak resident memory of this process: VmHWM where Linux has it (it starts afresh at exec, unlike
    ru_maxrss, which a child inherits from the parent that forked it), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class AnonymousPeak:
    """Samples RssAnon (heap memory, without the file pages a memory-mapped read counts in RSS) every 2 ms."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self._sample()

    def __enter__(self) -> AnonymousPeak:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def worker(task: str, path: Path) -> dict[str, Any]:
    if task == "generate":
        rows, columns = (int(v) for v in os.environ["NNCTL_BENCH_SHAPE"].split("x"))
        generate(path, rows, columns)
        return {"task": task}
    import pandas as pd

    import nnctl.data  # noqa: F401  (import cost outside the measurement, as for pandas)

    baseline = maxrss_bytes()
    with AnonymousPeak() as anonymous:
        started = time.perf_counter()
        if task.startswith("pandas-"):
            frame = pd.read_csv(path, engine=task.removeprefix("pandas-"))
            shape = frame.shape
            result: dict[str, Any] = {}
        elif task in ("nnctl-load", "nnctl-load-serial"):
            threads = 1 if task == "nnctl-load-serial" else None  # None: pandas' default (parallel on large files)
            with pd.option_context("mode.max_threads", threads):
                X = load_nnctl(path)
            shape = X.shape
            result = {}
        elif task == "nnctl-train":
            with tempfile.TemporaryDirectory() as tmp:
                result = train_nnctl(path, Path(tmp))
            shape = None
        else:
            raise SystemExit(f"unknown task {task!r}")
        seconds = time.perf_counter() - started
    return {
        "task": task,
        "seconds": seconds,
        "maxrss": maxrss_bytes(),
        "anon_peak": anonymous.peak,
        "baseline_rss": baseline,
        "shape": shape,
        **result,
    }


def measure(task: str, path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", task, str(path)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 1 repeat")
    parser.add_argument("--rows", type=int, default=None, help="rows to generate (default 1,000,000)")
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=None, help="measurements per task (default 3; --quick: 1)")
    parser.add_argument("--keep", type=Path, default=None, help="generate into this directory and keep the CSV")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="nnctl-bench-data-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = folder / f"bench_{rows}x{args.columns}.csv"
        if not path.exists():
            started = time.perf_counter()
            measure(
                "generate", path, {**os.environ, "NNCTL_BENCH_SHAPE": f"{rows}x{args.columns}"}
            )  # keeps this process small
            print(
                f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        matrix = rows * args.columns * 8  # the float64 feature matrix
        tasks = [f"pandas-{e}" for e in engines()] + ["nnctl-load", "nnctl-load-serial", "nnctl-train"]
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tasks}
        for rep in range(repeats):
            for task in tasks:
                out = measure(task, path)
                runs[task].append(out)
                print(
                    f"  {task:<14} run {rep + 1}: {out['seconds']:.2f} s, peak RSS {out['maxrss'] / 1e6:,.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
        missing = "" if "pandas-pyarrow" in runs else " (pyarrow is not installed: the C engine is the fastest here)"
        fastest = min(
            (t for t in tasks if t.startswith("pandas-")),
            key=lambda t: statistics.median(r["seconds"] for r in runs[t]),
        )
        base = statistics.median(r["seconds"] for r in runs[fastest])
        print()
        print(
            f"{rows:,} rows × {args.columns} columns, {path.stat().st_size / 1e6:,.0f} MB of CSV; "
            f"float64 feature matrix {matrix / 1e6:,.0f} MB; yardstick: {fastest}{missing}"
        )
        print()
        print(
            "| task | seconds (median) | ÷ fastest bare read | peak RSS | ÷ feature matrix "
            "| peak anonymous memory | ÷ feature matrix | RSS before reading |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for task in tasks:
            seconds = statistics.median(r["seconds"] for r in runs[task])
            peak = max(r["maxrss"] for r in runs[task])
            anon = max(r["anon_peak"] for r in runs[task])
            baseline = statistics.median(r["baseline_rss"] for r in runs[task])
            print(
                f"| {task} | {seconds:.2f} | {seconds / base:.2f}× | {peak / 1e6:,.0f} MB | {peak / matrix:.2f}× "
                f"| {anon / 1e6:,.0f} MB | {anon / matrix:.2f}× | {baseline / 1e6:,.0f} MB |"
            )
        print()
        print(
            "peak RSS (VmHWM, like ru_maxrss) also counts the CSV's own pages while a reader memory-maps the file "
            "(pandas ≥ 3.1 parses a large local file in parallel threads over a memory map); "
            "peak anonymous memory is RssAnon sampled every 2 ms: the arrays alone. "
            "nnctl-load-serial: the same with pandas' option mode.max_threads=1 (one thread, no memory map)."
        )
        train = runs["nnctl-train"]
        print()
        print(
            "nnctl-train: set_up (load + z-score statistics) "
            f"{statistics.median(r['prepare_seconds'] for r in train):.2f} s, "
            f"one epoch {statistics.median(r['train_seconds'] for r in train):.2f} s "
            f"({rows / statistics.median(r['train_seconds'] for r in train):,.0f} samples/s, batch 128, 50-32-4)."
        )
        load = statistics.median(r["seconds"] for r in runs["nnctl-load"]) / base
        peak = max(r["maxrss"] for r in runs["nnctl-load"]) / matrix
        print(
            f"targets: loading ≤ 1.5× the bare read: {load:.2f}× {'✓' if load <= 1.5 else '✗'}; "
            f"loading peak memory ≤ 3× the feature matrix: {peak:.2f}× {'✓' if peak <= 3 else '✗'}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
