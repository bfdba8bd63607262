"""What pyarrow costs an install: its installed size next to NumPy's and pandas', and its import times.

- Installed size: the sum of the sizes of the files each distribution's RECORD lists (importlib.metadata), as
  installed in this environment (bytecode caches written later included where RECORD lists them).
- Import times: each statement timed inside a fresh interpreter (`time.perf_counter` around the import, so the
  interpreter's own start-up is left out), `--repeats` times; median and fastest. `import pandas` is timed twice:
  as installed, and with pyarrow hidden from it (`sys.modules["pyarrow"] = None`, so `import pyarrow` fails as if it
  were not installed), which shows what an installed pyarrow adds to every `import pandas`.

Read times of the same rows as CSV and as Parquet are in `benchmarks/bench_data.py`'s table (its bare reads).

    python benchmarks/bench_pyarrow.py
    python benchmarks/bench_pyarrow.py --repeats 21
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys

DISTRIBUTIONS = ["numpy", "pandas", "pyarrow"]
HIDE_PYARROW = "import sys; sys.modules['pyarrow'] = None; "
IMPORTS = {
    "import numpy": ("", "import numpy"),
    "import pandas (pyarrow installed)": ("", "import pandas"),
    "import pandas (pyarrow hidden)": (HIDE_PYARROW, "import pandas"),
    "import pyarrow.parquet, after pandas": ("import pandas; ", "import pyarrow.parquet"),
}


def installed_bytes(name: str) -> int:
    total = 0
    for file in importlib.metadata.distribution(name).files or []:
        path = file.locate()
        if path.is_file():
            total += path.stat().st_size
    return total


def import_seconds(setup: str, statement: str) -> tuple[float, bool]:
    """Seconds `statement` takes in a fresh interpreter after `setup`, and whether pyarrow ended up imported."""
    code = (
        f"{setup}import time, sys, json; started = time.perf_counter(); {statement}; "
        "print(json.dumps([time.perf_counter() - started, sys.modules.get('pyarrow') is not None]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, pyarrow = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, pyarrow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    print(
        f"Python {sys.version.split()[0]}; " + ", ".join(f"{n} {importlib.metadata.version(n)}" for n in DISTRIBUTIONS)
    )
    print("\n| distribution | installed size |\n|---|---:|")
    for name in DISTRIBUTIONS:
        print(f"| {name} | {installed_bytes(name) / 1e6:,.0f} MB |")
    print(f"\n| statement, fresh interpreter | median s (of {args.repeats}) | fastest s | pyarrow imported |")
    print("|---|---:|---:|---|")
    times: dict[str, list[float]] = {label: [] for label in IMPORTS}
    loaded: dict[str, bool] = {}
    for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits every statement alike
        for label, (setup, statement) in IMPORTS.items():
            seconds, loaded[label] = import_seconds(setup, statement)
            times[label].append(seconds)
    for label, values in times.items():
        print(
            f"| `{label}` | {statistics.median(values):.3f} | {min(values):.3f} | {'yes' if loaded[label] else 'no'} |"
        )


if __name__ == "__main__":
    main()
