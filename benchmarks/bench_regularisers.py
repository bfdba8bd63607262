"""What dropout, gradient clipping and a learning-rate schedule cost: samples/s of the same network with and
without each, trained by nnctl's own Trainer on the digits data.

Every variant is the network `64-H-H-10` (ReLU, softmax, cross-entropy, Adam) on data/digits_train.csv; the
variants add one thing to it:

    base       nothing
    dropout    dropout {rate: 0.3} after each hidden ReLU (masks drawn every batch, training mode)
    clip       optimizer.clip_norm: 1e9 (the global gradient norm is computed every step; it never binds)
    schedule   optimizer.schedule: {name: cosine, t_max: EPOCHS}

Each measurement is a fresh subprocess that builds the run as `nnctl train` does (`nnctl.experiment.set_up`),
warms up on one epoch of a throwaway copy, then times `Trainer.fit` alone. Variants are interleaved within
each repeat, so a slow spell of the machine hits them alike; the table shows the median samples/s of the
repeats and each variant's ratio to `base` (the issue's goal for dropout: ≥ 0.85).

    python benchmarks/bench_regularisers.py                  # 7 repeats, float32 and float64, batch 32 and 128
    python benchmarks/bench_regularisers.py --quick          # 1 repeat, float32, batch 32
    python benchmarks/bench_regularisers.py --hidden 512 --batch-sizes 256 --dtypes float32
"""

from __future__ import annotations

import argparse
import io
import json
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


def measure(raw: dict[str, Any]) -> float:
    """samples/s of `Trainer.fit` for one config, with the CLI's progress callback (in this process)."""
    from rich.console import Console

    from nnctl.config import validate_config
    from nnctl.experiment import Checkpointer, set_up
    from nnctl.render import TrainingDisplay
    from nnctl.train import Trainer

    def trainer_for(epochs: int) -> tuple[Trainer, Any]:
        cfg = validate_config(raw | {"training": raw["training"] | {"epochs": epochs}}, "bench")
        setup = set_up(cfg)
        display = TrainingDisplay(Console(file=io.StringIO(), force_terminal=False, width=120), quiet=False)
        callback = Checkpointer(display, lambda state: None)
        return Trainer(setup.network, setup.optimizer, cfg.training, setup.shuffle_rng, callback), setup.train

    warm, data = trainer_for(1)
    warm.fit(data)
    trainer, data = trainer_for(raw["training"]["epochs"])
    started = time.perf_counter()
    trainer.fit(data)
    return len(data) * raw["training"]["epochs"] / (time.perf_counter() - started)


def run_child(raw: dict[str, Any]) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(raw)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if args.child:
        print(measure(json.loads(args.child)))
        return
    if args.quick:
        args.repeats, args.epochs, args.dtypes, args.batch_sizes = 1, 5, ["float32"], [32]
    results: list[dict[str, Any]] = []
    width = args.hidden
    print(f"64-{width}-{width}-10 on digits (1,437 rows), Adam, {args.epochs} epochs, median of {args.repeats}")
    print(f"{'dtype':8} {'batch':>5} {'variant':9} {'samples/s':>11} {'× base':>7}")
    for dtype in args.dtypes:
        for batch in args.batch_sizes:
            speeds: dict[str, list[float]] = {v: [] for v in args.variants}
            for _ in range(args.repeats):
                for variant in args.variants:
                    speeds[variant].append(run_child(config(variant, dtype, batch, args.hidden, args.epochs)))
            base = statistics.median(speeds["base"]) if "base" in speeds else float("nan")
            for variant, values in speeds.items():
                median = statistics.median(values)
                print(f"{dtype:8} {batch:>5} {variant:9} {median:>11,.0f} {median / base:>7.3f}")
                results.append({"dtype": dtype, "batch_size": batch, "variant": variant, "samples_per_s": values})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
