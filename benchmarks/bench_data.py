"""Data at scale: nnctl's loading of large CSV and Parquet files, first run and cached, against the bare readers.

For each size (default 1,000,000 and 5,000,000 rows × 50 numeric columns and a 4-class label), each
format (CSV, Parquet) and each dtype (float32, float64), every measurement runs in a fresh subprocess:

- `bare`: pandas.read_csv (CSV) or pyarrow.parquet.read_table (Parquet) of the whole file: the yardstick.
  It does not depend on the dtype, so it is measured once per file (`--repeats` times, interleaved with the
  file's sha256, the first thing a first run does) and the same median is shown in both dtypes' rows.
- `first`: `nnctl train`'s path with an empty data cache: nnctl.experiment.load_data (hash, chunked
  parse into the cache entry, memory-map it), the input layer's statistics, one epoch (50-32-4, batch 128).
- `cached`: the same again: the entry is found and memory-mapped (the file's hash is remembered).
- `memory`: the same with `data.cache: false`: parsed into memory, nothing written.
- `epochs`: one epoch from the memory-mapped entry, then one from the same rows copied into memory,
  alternately, 3 times in one process; the table gives the median samples/s and the median ratio.

Peak RSS is VmHWM of the subprocess (like ru_maxrss), divided by the feature matrix in the run's dtype.
The SPEC's targets: first run ≤ 2.5× the matrix; cached ≤ 1.3× + 150 MB; a cached load ≥ 10× faster than
parsing; an epoch from the memory-mapped cache ≥ 0.9× the samples/s from memory.

    python benchmarks/bench_data.py                        # 1M and 5M rows, CSV and Parquet, both dtypes
    python benchmarks/bench_data.py --rows 2000000 --dtypes float32 --formats csv   # SPEC §11's case
    python benchmarks/bench_data.py --quick                # 100,000 rows
    python benchmarks/bench_data.py --keep DIR             # generate into DIR and keep the files

Files are generated into a temporary directory (never the repository) and removed afterwards.
"""

from __future__ import annotations

import argparse
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


def to_parquet(csv: Path, path: Path, row_group: int = 500_000) -> Path:
    """The same rows as Parquet (float64 features, int64 label), written in row groups of `row_group` rows."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for frame in pd.read_csv(csv, chunksize=row_group):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


def load_nnctl(path: Path, dtype: str = "float64") -> np.ndarray:
    """nnctl's loading of a training file without the cache (as `data.cache: false` does)."""
    from nnctl.loading import load_file

    return np.asarray(load_file(path, [TARGET], None, np.dtype(dtype), "data.train", None).X)


def config_for(path: Path, dtype: str, cache: bool) -> Any:
    from nnctl.config import validate_config

    raw = {
        "seed": 0,
        "dtype": dtype,
        "data": {"train": str(path), "target": TARGET, "cache": cache},
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
    }
    return validate_config(raw, "bench_data")


def train_nnctl(path: Path, dtype: str, cache: bool) -> dict[str, float]:
    """`nnctl train`'s steps, timed: load_data, the input statistics, one epoch of Trainer.fit."""
    from nnctl.experiment import build_for_data, load_data
    from nnctl.optimizers import OPTIMIZERS
    from nnctl.seeds import streams
    from nnctl.train import Trainer

    config = config_for(path, dtype, cache)
    rngs = streams(config.seed)
    started = time.perf_counter()
    encoding, train, _ = load_data(config, rngs["split"])
    loaded = time.perf_counter()
    network = build_for_data(config, encoding, rngs["init"])
    network.input.fit(train.matrix, train.rows)
    fitted = time.perf_counter()
    optimizer = OPTIMIZERS[config.optimizer.name].build(config.optimizer)
    state = Trainer(network, optimizer, config.training, rngs["shuffle"]).fit(train)
    done = time.perf_counter()
    return {
        "load_seconds": loaded - started,
        "fit_seconds": fitted - loaded,
        "epoch_seconds": done - fitted,
        "samples_per_second": len(train) / (done - fitted),
        "memory_mapped": bool(isinstance(train.matrix, np.memmap)),
        "train_loss": state.history[-1]["train_loss"],
    }


def compare_epochs(path: Path, dtype: str, rounds: int = 3) -> dict[str, float]:
    """One epoch from the memory-mapped cache entry and one from the same rows in memory, alternately, `rounds`
    times in this one process (so both meet the same machine load); samples/s of each, and their ratio."""
    from nnctl.data import Dataset
    from nnctl.experiment import build_for_data, load_data
    from nnctl.optimizers import OPTIMIZERS
    from nnctl.seeds import streams
    from nnctl.train import Trainer

    config = config_for(path, dtype, cache=True)
    encoding, mapped, _ = load_data(config, streams(0)["split"])
    assert isinstance(mapped.matrix, np.memmap)
    sources = {"cache": mapped, "memory": Dataset(np.array(mapped.matrix), mapped.Y, "memory")}
    speeds: dict[str, list[float]] = {"cache": [], "memory": []}
    for _ in range(rounds):
        for name, data in sources.items():
            rngs = streams(config.seed)
            network = build_for_data(config, encoding, rngs["init"])
            network.input.fit(data.matrix)
            optimizer = OPTIMIZERS[config.optimizer.name].build(config.optimizer)
            started = time.perf_counter()
            Trainer(network, optimizer, config.training, rngs["shuffle"]).fit(data)
            speeds[name].append(len(data) / (time.perf_counter() - started))
    ratios = [c / m for c, m in zip(speeds["cache"], speeds["memory"], strict=True)]
    return {
        "epoch_cache": statistics.median(speeds["cache"]),
        "epoch_memory": statistics.median(speeds["memory"]),
        "epoch_ratio": statistics.median(ratios),
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


def worker(task: str, path: Path, dtype: str) -> dict[str, Any]:
    import pandas as pd

    import nnctl.experiment  # noqa: F401  (import cost outside the measurement, as for pandas)

    result: dict[str, Any] = {"task": task, "baseline_rss": maxrss_bytes()}
    cpu = time.process_time()
    started = time.perf_counter()
    if task == "bare" and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.read_table(path)
    elif task == "bare":
        pd.read_csv(path)
    elif task == "sha256":
        from nnctl.cache import file_sha256

        file_sha256(path)
    elif task == "epochs":
        result.update(compare_epochs(path, dtype))
    elif task in ("first", "cached", "memory"):
        result.update(train_nnctl(path, dtype, cache=task != "memory"))
    else:
        raise SystemExit(f"unknown task {task!r}")
    result.update(seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu, maxrss=maxrss_bytes())
    return result


def measure(task: str, path: Path, dtype: str, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "NNCTL_CACHE_DIR": str(cache)}
    command = [sys.executable, __file__, "--worker", task, str(path), dtype]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{done.stderr}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {path.name} {dtype} {task}: {out['seconds']:.2f} s, peak RSS {out['maxrss'] / 1e6:,.0f} MB", file=sys.stderr
    )
    return out


def bench_file(path: Path, cache: Path, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """What does not depend on the dtype: the bare read of the file, and its sha256."""
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "sha256": []}
    for _ in range(repeats):
        runs["bare"].append(measure("bare", path, "float64", cache))
        runs["sha256"].append(measure("sha256", path, "float64", cache))
    size = path.stat().st_size
    seconds = statistics.median(r["seconds"] for r in runs["sha256"])
    print(
        f"  {path.name}: sha256 of {size / 1e6:,.0f} MB in {seconds:.2f} s ({size / seconds / 1e9:.1f} GB/s)",
        file=sys.stderr,
    )
    return runs


def bench_one(
    path: Path,
    rows: int,
    columns: int,
    dtype: str,
    cache: Path,
    repeats: int,
    file_runs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """Every task on one file and dtype: first run (empty cache), cached runs, in-memory runs; the bare read and the
    sha256 come from `file_runs` (bench_file), measured once for both dtypes."""
    shutil.rmtree(cache, ignore_errors=True)
    runs: dict[str, list[dict[str, Any]]] = {**file_runs, "first": [], "cached": [], "memory": []}
    runs["first"].append(measure("first", path, dtype, cache))
    for _ in range(repeats):
        runs["cached"].append(measure("cached", path, dtype, cache))
        runs["memory"].append(measure("memory", path, dtype, cache))
    epochs = measure("epochs", path, dtype, cache)
    shutil.rmtree(cache, ignore_errors=True)
    assert not runs["first"][0]["memory_mapped"] or all(r["memory_mapped"] for r in runs["cached"])

    def median(task: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[task])

    matrix = rows * columns * np.dtype(dtype).itemsize
    return {
        "rows": rows,
        "format": "Parquet" if path.suffix == ".parquet" else "CSV",
        "dtype": dtype,
        "file_mb": path.stat().st_size / 1e6,
        "matrix_mb": matrix / 1e6,
        "bare": median("bare", "seconds"),
        "sha256_seconds": median("sha256", "seconds"),
        "first_load": runs["first"][0]["load_seconds"],
        "cached_load": median("cached", "load_seconds"),
        "memory_load": median("memory", "load_seconds"),
        "first_peak": runs["first"][0]["maxrss"] / matrix,
        "cached_peak_mb": max(r["maxrss"] for r in runs["cached"]) / 1e6,
        "cached_limit_mb": (1.3 * matrix + 150e6) / 1e6,
        "memory_peak": max(r["maxrss"] for r in runs["memory"]) / matrix,
        "bare_peak": max(r["maxrss"] for r in runs["bare"]) / matrix,
        "baseline_mb": median("cached", "baseline_rss") / 1e6,
        "cached_sps": median("cached", "samples_per_second"),  # separate processes: noisier
        "memory_sps": median("memory", "samples_per_second"),
        "epoch_cache": epochs["epoch_cache"],  # one process, alternating: the table's figures
        "epoch_memory": epochs["epoch_memory"],
        "epoch_ratio": epochs["epoch_ratio"],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| rows | format | dtype | matrix | bare read | first-run load (÷ bare) | cached load (first ÷ cached) "
        "| first-run peak RSS ÷ matrix | cached peak RSS (limit) | no-cache peak ÷ matrix "
        "| epoch samples/s: cache / memory (ratio) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        first_ok = "✓" if r["first_peak"] <= 2.5 else "✗"
        cached_ok = "✓" if r["cached_peak_mb"] <= r["cached_limit_mb"] else "✗"
        speed = r["first_load"] / r["cached_load"]
        ratio = r["epoch_ratio"]
        lines.append(
            f"| {r['rows']:,} | {r['format']} | {r['dtype']} | {r['matrix_mb']:,.0f} MB | {r['bare']:.2f} s "
            f"| {r['first_load']:.2f} s ({r['first_load'] / r['bare']:.2f}×) "
            f"| {r['cached_load']:.3f} s ({speed:.0f}× {'✓' if speed >= 10 else '✗'}) "
            f"| {r['first_peak']:.2f}× {first_ok} "
            f"| {r['cached_peak_mb']:,.0f} MB ({r['cached_limit_mb']:,.0f}) {cached_ok} "
            f"| {r['memory_peak']:.2f}× | {r['epoch_cache']:,.0f} / {r['epoch_memory']:,.0f} "
            f"({ratio:.2f}× {'✓' if ratio >= 0.9 else '✗'}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "PATH", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 1 repeat")
    parser.add_argument("--rows", type=int, nargs="+", default=None, help="sizes (default 1,000,000 5,000,000)")
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"], choices=["csv", "parquet"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=None, help="bare/cached/memory runs each (default 2)")
    parser.add_argument("--keep", type=Path, default=None, help="generate into this directory and keep the files")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]), args.worker[2])))
        return
    sizes = args.rows or ([100_000] if args.quick else [1_000_000, 5_000_000])
    repeats = args.repeats or (1 if args.quick else 2)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="nnctl-bench-data-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for rows in sizes:
            csv = folder / f"bench_{rows}x{args.columns}.csv"
            if not csv.exists():
                generate(csv, rows, args.columns)
            files = {"csv": csv}
            if "parquet" in args.formats:
                files["parquet"] = csv.with_suffix(".parquet")
                if not files["parquet"].exists():
                    to_parquet(csv, files["parquet"])
            for fmt in args.formats:
                file_runs = bench_file(files[fmt], folder / "cache", repeats)
                for dtype in args.dtypes:
                    results.append(
                        bench_one(files[fmt], rows, args.columns, dtype, folder / "cache", repeats, file_runs)
                    )
                    print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            if args.keep is None:
                for path in files.values():
                    path.unlink()
        print(table(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
