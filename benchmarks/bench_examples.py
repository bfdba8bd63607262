"""The README's Examples figures: every example config trained per seed through the CLI, and scored on its test file.

For each example, `nnctl train CONFIG --set seed=S --out TMP -q` then `nnctl eval TMP TEST --json`, where TEST is
`data/NAME_test.csv` for a config that trains on `data/NAME_train.csv`, and `data/xor.csv` itself for xor (all four
rows of the truth table: accuracy 1 means every row right). Seeds: iris, breast_cancer and digits 0-9, diabetes and
penguins 0-4, xor 0-49, digits_dropout 0-4, with and without its dropout layers and its schedule (`--set
layers.N.dropout.rate=0 ... --set optimizer.schedule=null`).

It prints:

- seed 0 of each example: the test result, the epochs run (and why training stopped: `epochs`, `early_stopping`),
  "train time" (the sum of history.csv's `seconds` column), "wall" (the whole `nnctl train` command, start-up
  included), and the train time again with `--threads 1` (one BLAS thread; the default is one per core);
- each example's test metric over its seeds (median, range, every seed);
- digits_dropout with and without dropout and schedule: test accuracy, correct rows, test loss;
- penguins against the scikit-learn pipeline of `benchmarks/bench_penguins.py` (reused from there).

Each run gets its own temporary run directory and data cache (NNCTL_CACHE_DIR), both deleted at the end. Timings
are single runs; the test metrics are exact (the same seed gives the same weights on the same machine).

    python benchmarks/bench_examples.py                    # everything, about 3 minutes on 2 cores
    python benchmarks/bench_examples.py --examples iris xor
    python benchmarks/bench_examples.py --quick            # seed 0 of each example only
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from console import nnctl_command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

SEEDS = {
    "iris": range(10),
    "breast_cancer": range(10),
    "diabetes": range(5),
    "digits": range(10),
    "penguins": range(5),
    "xor": range(50),
    "digits_dropout": range(5),
}
NO_REGULARISATION = [  # digits_dropout without its dropout layers (a rate of 0 is no dropout) and its schedule
    "layers.1.dropout.rate=0",
    "layers.4.dropout.rate=0",
    "layers.7.dropout.rate=0",
    "optimizer.schedule=null",
]


def nnctl() -> list[str]:
    return nnctl_command()


def test_file(config: Path) -> Path:
    """data/NAME_test.csv next to the config's data/NAME_train.csv; a config without one is scored on its training
    file (xor: the whole truth table)."""
    train = (config.parent / yaml.safe_load(config.read_text())["data"]["train"]).resolve()
    test = train.with_name(train.name.replace("_train.csv", "_test.csv"))
    return test if test != train and test.exists() else train


def run_one(
    name: str, seed: int, work: Path, extra: list[str] | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Train one seed of one example and score it: test metrics, epochs, stop reason, train time, wall time."""
    config = ROOT / "configs" / f"{name}.yaml"
    tag = f"{name}-{seed}-{len(extra or [])}-{threads}"
    out = work / "runs" / tag
    command = [*nnctl(), "train", str(config), "--set", f"seed={seed}", "--out", str(out), "-q"]
    for setting in extra or []:
        command += ["--set", setting]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = {**os.environ, "NNCTL_CACHE_DIR": str(work / "cache")}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=work)
    wall = time.perf_counter() - started
    evaluated = subprocess.run(
        [*nnctl(), "eval", str(out), str(test_file(config)), "--json"],
        check=True,
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
    )
    metrics = json.loads(evaluated.stdout)
    model = json.loads((out / "model.json").read_text())
    with open(out / "history.csv", newline="") as file:
        seconds = sum(float(row["seconds"]) for row in csv.DictReader(file))
    shutil.rmtree(out)
    return {
        "example": name,
        "seed": seed,
        "metrics": metrics,
        "epochs": model["epochs_completed"],
        "status": model["status"],
        "train_seconds": seconds,
        "wall_seconds": wall,
    }


def result_text(run: dict[str, Any]) -> str:
    m = run["metrics"]
    if run["example"] == "xor":
        right = round(m["accuracy"] * m["n_samples"])
        return f"{right} of {m['n_samples']} rows right"
    if "accuracy" in m:
        return f"accuracy {m['accuracy']:.3f}"
    return f"R² {m['r2']:.3f}, RMSE {m['rmse']:.1f}"


def score(run: dict[str, Any]) -> float:
    m = run["metrics"]
    return float(m["accuracy"] if "accuracy" in m else m["r2"])


def spread(values: list[float], digits: int = 3) -> str:
    return (
        f"median {statistics.median(values):.{digits}f}, range {min(values):.{digits}f}–{max(values):.{digits}f} "
        f"({', '.join(f'{v:.{digits}f}' for v in values)})"
    )


def seeds_text(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"seeds {seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else f"seeds {seeds}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", nargs="+", default=list(SEEDS), choices=list(SEEDS))
    parser.add_argument("--quick", action="store_true", help="seed 0 of each example only")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args()
    seeds = {name: ([0] if args.quick else list(SEEDS[name])) for name in args.examples}
    load = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {}
    one_thread: dict[str, dict[str, Any]] = {}
    without: list[dict[str, Any]] = []
    sklearn: list[float] = []
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-examples-") as tmp:
        work = Path(tmp)
        for name in args.examples:
            runs[name] = [run_one(name, seed, work) for seed in seeds[name]]
            one_thread[name] = run_one(name, 0, work, threads=1)
            print(f"  {name}: {len(runs[name])} seed(s) done", file=sys.stderr, flush=True)
        if "digits_dropout" in args.examples:
            without = [run_one("digits_dropout", seed, work, NO_REGULARISATION) for seed in seeds["digits_dropout"]]
    if "penguins" in args.examples:
        from bench_penguins import sklearn_accuracy

        sklearn = [sklearn_accuracy(seed) for seed in seeds["penguins"]]

    print("Seed 0 of each example (one BLAS thread per core unless stated):\n")
    print("| config | test file | test result | epochs | train time | wall | train time, `--threads 1` |")
    print("|---|---|---|---|---:|---:|---:|")
    for name, results in runs.items():
        first = results[0]
        stop = " (early stop)" if first["status"] == "early_stopping" else ""
        print(
            f"| `configs/{name}.yaml` | `{test_file(ROOT / 'configs' / f'{name}.yaml').relative_to(ROOT)}` "
            f"| {result_text(first)} | {first['epochs']}{stop} | {first['train_seconds']:.2f} s "
            f"| {first['wall_seconds']:.2f} s | {one_thread[name]['train_seconds']:.2f} s |"
        )

    print("\nTest metric over seeds (accuracy; diabetes: R²; xor: seeds with all 4 rows right):\n")
    for name, results in runs.items():
        chosen = [r["seed"] for r in results]
        if name == "xor":
            right = sum(r["metrics"]["accuracy"] == 1.0 for r in results)
            print(f"  xor, {seeds_text(chosen)}: all 4 rows right for {right} of {len(results)} seeds")
        else:
            print(f"  {name}, {seeds_text(chosen)}: {spread([score(r) for r in results])}")

    if without:
        print("\ndigits_dropout on its test file, with and without dropout and schedule:\n")
        print(
            "| | test accuracy, median (range) | correct, per seed | test loss, median (range) | epochs "
            "| train time, median |"
        )
        print("|---|---|---|---|---:|---:|")
        for label, results in (("with dropout and schedule", runs["digits_dropout"]), ("without", without)):
            accuracy = [r["metrics"]["accuracy"] for r in results]
            loss = [r["metrics"]["loss"] for r in results]
            correct = [round(r["metrics"]["accuracy"] * r["metrics"]["n_samples"]) for r in results]
            train = statistics.median(r["train_seconds"] for r in results)
            print(
                f"| {label} | {statistics.median(accuracy):.3f} ({min(accuracy):.3f}–{max(accuracy):.3f}) "
                f"| {', '.join(map(str, correct))} of {results[0]['metrics']['n_samples']} "
                f"| {statistics.median(loss):.3f} ({min(loss):.3f}–{max(loss):.3f}) "
                f"| {results[0]['epochs']} | {train:.2f} s |"
            )

    if sklearn:
        ours = [r["metrics"]["accuracy"] for r in runs["penguins"]]
        print(f"\npenguins test accuracy, {seeds_text(seeds['penguins'])} (benchmarks/bench_penguins.py's pipeline):\n")
        print("| | test accuracy, median | per seed |\n|---|---:|---|")
        for label, values in (
            ("nnctl, `configs/penguins.yaml`", ours),
            ("scikit-learn pipeline + `MLPClassifier`", sklearn),
        ):
            print(f"| {label} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")

    after = os.getloadavg()
    print(
        f"\nload average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}"
    )
    if args.json:
        everything = {"runs": runs, "threads_1": one_thread, "without": without, "sklearn_penguins": sklearn}
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
