"""Start-up time: how long `nnctl --help`, `--version` and `summary` take, and what they import.

Each command runs `--repeats` times in a fresh process; the table shows the median and the
fastest wall time. `--imports` adds the heaviest imports of `nnctl --help` (python -X importtime).

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeats 21 --imports
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from console import nnctl_command

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"--help": 0.25, "summary": 0.6}  # seconds, the core issue's goals on the project's 2-core machine


def commands() -> list[list[str]]:
    nnctl, *_ = nnctl_command()  # the console script (its start-up is what is measured)
    return [[nnctl, "--help"], [nnctl, "--version"], [nnctl, "summary", str(ROOT / "configs" / "iris.yaml")]]


def wall_times(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def heaviest_imports(count: int = 10) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest top-level imports of `nnctl --help`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nnctl", "--help"], capture_output=True, text=True, check=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--imports", action="store_true", help="also list the heaviest imports of --help")
    args = parser.parse_args()
    print("| command | median s | fastest s | target s |\n|---|---:|---:|---:|")
    for command in commands():
        times = wall_times(command, args.repeats)
        shown = " ".join([Path(command[0]).name, *[Path(c).name if "/" in c else c for c in command[1:]]])
        target = next((f"{t:.2f}" for key, t in TARGETS.items() if key in command), "")
        print(f"| `{shown}` | {statistics.median(times):.3f} | {min(times):.3f} | {target} |")
    if args.imports:
        print("\nheaviest imports of `nnctl --help` (cumulative ms):")
        for micros, name in heaviest_imports():
            print(f"  {micros / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
