"""What dropout, gradient clipping and a learning-rate schedule cost: samples/s of the same network with and
without each, trained by nnctl's own Trainer on the digits data.

Every variant is the network `64-H-H-10` (ReLU, softmax, cross-entropy, Adam) on data/digits_train.csv; the
variants add one thing to it:

    base       nothing
    dropout    dropout {rate: 0.3} after each hidden ReLU (masks drawn every batch, training mode)
    clip       optimizer.clip_norm: 1e9 (the global gradient norm is computed every step; it never binds)
    schedule   optimizer.schedule: {name: cosine, t_max: EPOCHS}

Each measurement is a fresh subprocess that builds the run as `nnctl train` does (`nnctl.experiment.set_up`),
warms up on one epoch of a throwaway copy, then times `Trainer.fit` alone, by the wall clock and by the
process's CPU time. Variants are interleaved within each repeat, so a slow spell of the machine hits them
alike; the table shows the median samples/s of the repeats and each variant's ratio to `base` (the issue's
goal for dropout: ≥ 0.85). On a machine shared with other work the wall clock swings with the load, while
CPU time per sample does not: that is why BLAS runs on one thread by default (`--threads`), so CPU time is
the work done, and why both ratios are shown.

    python benchmarks/bench_regularisers.py                  # 7 repeats, float32 and float64, batch 32 and 128
    python benchmarks/bench_regularisers.py --quick          # 1 repeat, float32, batch 32
    python benchmarks/bench_regularisers.py --hidden 512 --batch-sizes 256 --dtypes float32
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("base", "dropout", "clip", "schedule")


def config(variant: str, dtype: str, batch_size: int, hidden: int, epochs: int) -> dict[str, Any]:
    layers: list[Any] = ["input"]
    for _ in range(2):
        layers += [{"fully_connected": {"units": hidden}}, "relu"]
        if variant == "dropout":
            layers.append({"dropout": {"rate": 0.3}})
    layers += [{"fully_connected": {"units": 10}}, "softmax"]
    optimizer: dict[str, Any] = {"name": "adam", "learning_rate": 0.001}
    if variant == "clip":
        optimizer["clip_norm"] = 1e9
    if variant == "schedule":
        optimizer["schedule"] = {"name": "cosine", "t_max": epochs}
    return {
        "name": f"bench-{variant}",
        "seed": 0,
        "dtype": dtype,
        "data": {"train": str(ROOT / "data" / "digits_train.csv"), "target": "digit"},
        "layers": layers,
        "objective": "cross_entropy",
        "optimizer": optimizer,
        "training": {"epochs": epochs, "batch_size": batch_size, "shuffle": True},
    }


def measure(raw: dict[str, Any]) -> tuple[float, float]:
    """(samples per wall-clock second, samples per CPU second) of `Trainer.fit` for one config, with the
    CLI's progress callback (in this process)."""
    from rich.console import Console

    from nnctl.config import validate_config
    from nnctl.experiment import set_up
    from nnctl.render import TrainingDisplay
    from nnctl.train import Trainer

    def trainer_for(epochs: int) -> tuple[Trainer, Any]:
        cfg = validate_config(raw | {"training": raw["training"] | {"epochs": epochs}}, "bench")
        setup = set_up(cfg)
        display = TrainingDisplay(Console(file=io.StringIO(), force_terminal=False, width=120), quiet=False)
        # as the CLI builds it, with a run-directory save that does nothing (saves are not timed)
        trainer = Trainer(setup.network, setup.optimizer, cfg.training, setup.shuffle_rng, display, lambda s: None)
        return trainer, setup.train

    warm, data = trainer_for(1)
    warm.fit(data)
    trainer, data = trainer_for(raw["training"]["epochs"])
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    samples = len(data) * raw["training"]["epochs"]
    return samples / wall, samples / cpu


def run_child(raw: dict[str, Any], threads: int) -> tuple[float, float]:
    env = os.environ | {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    command = [sys.executable, __file__, "--child", json.dumps(raw)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="1 repeat, float32, batch 32, 5 epochs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256, help="width H of both hidden layers")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads in each measurement (default 1)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if args.child:
        print(*measure(json.loads(args.child)))
        return
    if args.quick:
        args.repeats, args.epochs, args.dtypes, args.batch_sizes = 1, 5, ["float32"], [32]
    results: list[dict[str, Any]] = []
    width = args.hidden
    print(f"64-{width}-{width}-10 on digits (1,437 rows), Adam, {args.epochs} epochs, {args.threads} BLAS thread(s)")
    print(f"median of {args.repeats}; ratios to base: by the wall clock, and by CPU time per sample")
    print(f"{'dtype':8} {'batch':>5} {'variant':9} {'samples/s':>10} {'× base':>7} {'CPU × base':>11}")
    for dtype in args.dtypes:
        for batch in args.batch_sizes:
            runs: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
            for _ in range(args.repeats):
                for variant in args.variants:
                    runs[variant].append(
                        run_child(config(variant, dtype, batch, args.hidden, args.epochs), args.threads)
                    )
            base = [statistics.median(m[i] for m in runs.get("base", [(math.nan, math.nan)])) for i in (0, 1)]
            for variant, values in runs.items():
                wall, cpu = (statistics.median(m[i] for m in values) for i in (0, 1))
                print(f"{dtype:8} {batch:>5} {variant:9} {wall:>10,.0f} {wall / base[0]:>7.3f} {cpu / base[1]:>11.3f}")
                results.append({"dtype": dtype, "batch_size": batch, "variant": variant, "wall_cpu": values})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
