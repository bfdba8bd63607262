"""Sweep wall time: the same 12 trials as `nnctl sweep --workers 1`, `--workers 2`, `--backend ray`, and as
sequential `nnctl train` commands in a shell loop.

Workload: digits (1,437 rows, a 20% validation split), 64-H-10 relu/softmax, adam, `--epochs` (default 300)
of batch 32, 3 learning rates × 4 widths (16, 32, 64, 128) = 12 trials, no early stopping, so every trial does
the same work however it is run. Every command runs in a fresh process, `--repeats` times; the table shows the
median and the fastest (on a shared machine the fastest is the least disturbed by other processes).

- `nnctl sweep --workers N` and the shell loop: the whole command's wall time, as a user sees it.
- Ray: the whole `nnctl sweep --backend ray` command (it starts a local Ray instance and stops it), and,
  in one process, the sweep alone on an already started Ray, next to the same measure of the local backend
  (`run_sweep`: the plan, the workers, every trial): "after start-up".
- Busy threads: while `--workers 2` runs, the state of every thread of the worker processes is sampled every
  10 ms from /proc (Linux): how often more than 2 are running, and how much CPU the threads other than the
  workers' main threads used (BLAS helper threads: oversubscription).

Every trial's model.npz is compared across the five ways of running it (bit for bit). `--workers 1` gives each
trial cores // 1 = 2 BLAS threads; `--workers 1 --threads 1` is measured too, to tell parallel trials from threads.

    python benchmarks/bench_sweep.py              # 3 repeats, about 5 minutes on 2 cores
    python benchmarks/bench_sweep.py --epochs 100 # shorter trials: the fixed start-up weighs more
    python benchmarks/bench_sweep.py --quick      # 1 repeat, 8 epochs
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from console import nnctl_command

ROOT = Path(__file__).resolve().parent.parent
RATES, WIDTHS = [0.003, 0.001, 0.0003], [16, 32, 64, 128]
LOCAL_RUNS = {
    "workers 1": ["--workers", "1"],  # cores // 1 = 2 BLAS threads per trial
    "workers 1, 1 BLAS thread": ["--workers", "1", "--threads", "1"],
    "workers 2": ["--workers", "2"],  # 1 BLAS thread per trial
}
TARGETS = {"workers 2 vs workers 1": 1.7, "workers 2 vs shell loop": 2.0, "ray / local after start-up": 1.3}


def write_config(directory: Path, epochs: int) -> Path:
    config = {
        "name": "bench",
        "seed": 0,
        "data": {"train": str(ROOT / "data" / "digits_train.csv"), "validation_split": 0.2, "target": "digit"},
        "layers": [
            {"input": {"normalize": "zscore"}},
            {"fully_connected": {"units": 64, "init": "he"}},
            "relu",
            {"fully_connected": {"units": 10}},
            "softmax",
        ],
        "objective": "cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "training": {"epochs": epochs, "batch_size": 32},
        "sweep": {"parameters": {"optimizer.learning_rate": RATES, "layers.1.fully_connected.units": WIDTHS}},
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def nnctl() -> list[str]:
    return nnctl_command()


def timed(command: list[str], cwd: Path, sample: bool = False) -> tuple[float, dict[str, Any]]:
    """Wall time of a command (and, with `sample`, its workers' busy threads)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    threads = sample_threads(child) if sample else {}
    _, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{err}")
    return time.perf_counter() - started, threads


def shell_loop(config: Path, cwd: Path, out: Path) -> float:
    """The 12 trials as one `nnctl train` command each, one after the other, as a shell loop runs them."""
    started = time.perf_counter()
    for n, (rate, width) in enumerate(((r, w) for r in RATES for w in WIDTHS), 1):
        command = [*nnctl(), "train", str(config), "-q", "--force", "--out", str(out / f"{n:04d}")]
        command += ["--set", f"optimizer.learning_rate={rate}", "--set", f"layers.1.fully_connected.units={width}"]
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- busy threads, from /proc


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    if int(file.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _threads(pid: int) -> dict[int, tuple[str, int]]:
    """tid → (state, CPU ticks used) of each thread of a process."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (fields[0], int(fields[11]) + int(fields[12]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def sample_threads(child: subprocess.Popen[str]) -> dict[str, Any]:
    """Sample the worker processes (children of the forkserver, a child of nnctl) every 10 ms until it exits."""
    counts: collections.Counter[int] = collections.Counter()
    ticks: dict[tuple[int, int], int] = {}
    while child.poll() is None:
        workers = [w for server in _children(child.pid) for w in _children(server)]
        busy = 0
        for pid in workers:
            for tid, (state, used) in _threads(pid).items():
                busy += state == "R"
                ticks[(pid, tid)] = max(used, ticks.get((pid, tid), 0))
        if workers:
            counts[busy] += 1
        time.sleep(0.01)
    main = sum(t for (pid, tid), t in ticks.items() if pid == tid)
    helpers = sum(t for (pid, tid), t in ticks.items() if pid != tid)
    return {"samples": dict(sorted(counts.items())), "main_ticks": main, "helper_ticks": helpers}


# ----------------------------------------------------------------------------- in one process: after start-up


def inner(kind: str, config: Path, out: Path) -> None:
    """Print {"startup", "sweep"} seconds: starting the backend, then plan + every trial."""
    from nnctl.sweep import plan_sweep
    from nnctl.sweeprun import open_backend, run_sweep

    started = time.perf_counter()
    with open_backend(kind, 2, None, None, 1.0) as backend:
        ready = time.perf_counter()
        plan = plan_sweep(config, [])
        run_sweep(plan, backend, out=out, force=True)
        done = time.perf_counter()
    print(json.dumps({"startup": ready - started, "sweep": done - ready}))


def after_startup(kind: str, config: Path, out: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--inner", kind, str(config), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report


def same_models(directories: list[Path]) -> bool:
    first = directories[0]
    for run in sorted(p for p in first.rglob("model.npz")):
        relative = run.relative_to(first)
        with np.load(run) as a:
            for other in directories[1:]:
                with np.load(other / relative) as b:
                    if any(not np.array_equal(a[k], b[k]) for k in a.files):
                        return False
    return True


def measure(work: Path, config: Path, repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = collections.defaultdict(list)
    threads: dict[str, Any] = {}
    for _ in range(repeats):
        for label, options in LOCAL_RUNS.items():
            command = [
                *nnctl(),
                "sweep",
                str(config),
                *options,
                "--force",
                "--out",
                str(work / label.replace(" ", "_")),
            ]
            seconds, sampled = timed(command, work, sample=label == "workers 2")
            times[label].append(seconds)
            threads = sampled or threads
        times["shell loop"].append(shell_loop(config, work, work / "loop"))
        command = [*nnctl(), "sweep", str(config), "--backend", "ray", "--force", "--out", str(work / "ray")]
        times["ray (whole command)"].append(timed(command, work)[0])
        for kind in ("local", "ray"):
            inside = after_startup(kind, config, work / f"inner-{kind}")
            times[f"{kind} after start-up"].append(inside["sweep"])
            times[f"{kind} start-up"].append(inside["startup"])
    runs = [work / label.replace(" ", "_") / "trials" for label in LOCAL_RUNS] + [
        work / "ray" / "trials",
        work / "loop",
    ]
    return {"times": dict(times), "threads": threads, "same_models": same_models(runs)}


def report(result: dict[str, Any], repeats: int) -> None:
    times = result["times"]
    m = {key: statistics.median(values) for key, values in times.items()}
    f = {key: min(values) for key, values in times.items()}
    print(f"| run (12 trials) | wall s, median of {repeats} | fastest |\n|---|---:|---:|")
    for key in (*LOCAL_RUNS, "shell loop", "ray (whole command)", "ray start-up"):
        print(f"| {key} | {m[key]:.2f} | {f[key]:.2f} |")
    for kind in ("local", "ray"):
        key = f"{kind} after start-up"
        print(f"| {kind} backend after start-up (in-process) | {m[key]:.2f} | {f[key]:.2f} |")
    ratios = {
        "workers 2 vs workers 1": ("workers 1", "workers 2"),
        "workers 2 vs shell loop": ("shell loop", "workers 2"),
        "ray / local after start-up": ("ray after start-up", "local after start-up"),
    }
    print("\n| measure | medians | fastest | target |\n|---|---:|---:|---:|")
    for name, (a, b) in ratios.items():
        at_most = name.startswith("ray")
        print(f"| {name} | {m[a] / m[b]:.2f}× | {f[a] / f[b]:.2f}× | {'≤' if at_most else '≥'} {TARGETS[name]}× |")
    threads = result["threads"]
    if threads:
        samples = threads["samples"]
        total = sum(samples.values())
        over = sum(n for busy, n in samples.items() if busy > 2)
        share = threads["helper_ticks"] / max(threads["main_ticks"], 1)
        print(f"\nworkers 2, busy worker threads per 10 ms sample: {samples} ({over} of {total} samples above 2);")
        print(f"CPU of threads other than the workers' main threads: {share:.1%} of the main threads'")
    print(f"\nevery trial's model.npz identical across the five runs: {result['same_models']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300, help="epochs per trial")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 8 epochs")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--inner", nargs=3, metavar=("BACKEND", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], Path(args.inner[1]), Path(args.inner[2]))
        return
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-sweep-") as tmp:
        work = Path(tmp)
        config = write_config(work, 8 if args.quick else args.epochs)
        load = os.getloadavg()
        result = measure(work, config, repeats)
        result["load"] = {"before": load, "after": os.getloadavg()}
    report(result, repeats)
    before, after = result["load"]["before"], result["load"]["after"]
    print(
        f"load average (1, 5, 15 min) before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}; "
        f"after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} (other processes compete for the 2 cores)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
