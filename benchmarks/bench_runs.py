"""How long `nnctl runs` takes on many runs: train N tiny runs (a sweep-like tree), then time the command.

The runs are real: each is `nnctl.experiment.train` on a 40-row CSV for a few epochs, with the learning
rate, hidden width and seed varied (half of them under `sweep/trials/NNNN`, as a sweep lays them out).
`nnctl runs DIR` and `nnctl runs DIR --json` then run `--repeats` times in fresh processes; the table shows
the median and fastest wall time and the median CPU time (user + system: what a busy machine does not
inflate), and the same for `nnctl --version` (the start-up floor).

    python benchmarks/bench_runs.py                 # 200 runs, 11 repeats
    python benchmarks/bench_runs.py --quick         # 20 runs, 3 repeats
    python benchmarks/bench_runs.py --runs 500 --keep /tmp/runs
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from console import nnctl_command

ROOT = Path(__file__).resolve().parent.parent
LEARNING_RATES, WIDTHS = [0.001, 0.003, 0.01, 0.03, 0.1], [2, 4, 8, 16]


def make_runs(folder: Path, count: int) -> list[Path]:
    """`count` tiny classification runs under `folder`: half as top-level runs, half as sweep trials."""
    from nnctl.config import load_config
    from nnctl.experiment import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    label = np.where(X[:, 0] - X[:, 1] > 0, "yes", "no")
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": label}).to_csv(folder / "train.csv", index=False)
    config = {
        "data": {"train": "train.csv", "validation_split": 0.25, "target": "label"},
        "layers": [
            {"input": {}},
            {"fully_connected": {"units": 4}},
            "tanh",
            {"fully_connected": {"units": 2}},
            "softmax",
        ],
        "objective": "cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "training": {"epochs": 5, "batch_size": 8},
    }
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    paths = []
    for i in range(count):
        lr, units, seed = LEARNING_RATES[i % 5], WIDTHS[(i // 5) % 4], i // 20
        overrides = [f"optimizer.learning_rate={lr}", f"layers.1.fully_connected.units={units}", f"seed={seed}"]
        out = folder / "runs" / (f"sweep/trials/{i + 1:04d}" if i % 2 else f"tiny-{i + 1}")
        train(load_config(folder / "tiny.yaml", overrides), out=out, command=["bench_runs.py"])
        paths.append(out)
    return paths


def timings(command: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system of the child process) of `repeats` fresh runs of `command`."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="20 runs, 3 repeats (a smoke run)")
    parser.add_argument("--keep", type=Path, help="make the runs in this directory and keep them")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeats = 20, 3
    folder = args.keep or Path(tempfile.mkdtemp(prefix="nnctl-bench-runs-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    make_runs(folder, args.runs)
    print(f"made {args.runs} runs in {time.perf_counter() - started:.1f} s under {folder / 'runs'}\n")
    nnctl, *_ = nnctl_command()  # the console script (its start-up is what is measured)
    runs = str(folder / "runs")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| command | median wall s | fastest wall s | median CPU s |\n|---|---:|---:|---:|")
    for command in ([nnctl, "--version"], [nnctl, "runs", runs], [nnctl, "runs", runs, "--json"]):
        walls, cpus = timings(command, args.repeats)
        shown = " ".join(["nnctl", *command[1:]]).replace(runs, f"<{args.runs} runs>")
        print(f"| `{shown}` | {statistics.median(walls):.3f} | {min(walls):.3f} | {statistics.median(cpus):.3f} |")
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
