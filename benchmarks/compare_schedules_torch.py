"""nnctl's learning-rate schedules against PyTorch's schedulers, epoch by epoch (needs `pip install -e ".[bench]"`).

For each setting, both step once per epoch for EPOCHS epochs from the same η₀ (plateau on the same
sequence of losses: noisy, with stretches that stop improving); the table shows how many of the
rates are bit-identical and the largest relative difference.

    python benchmarks/compare_schedules_torch.py
"""

from __future__ import annotations

import math
import sys

import numpy as np

from nnctl.schedules import SCHEDULES

EPOCHS = 300
ETA = 0.1

SETTINGS: list[tuple[str, dict, str, dict]] = [  # nnctl name, its options, torch class, torch options
    ("step", {"step_size": 7, "gamma": 0.5}, "StepLR", {"step_size": 7, "gamma": 0.5}),
    ("step", {"step_size": 1, "gamma": 0.97}, "StepLR", {"step_size": 1, "gamma": 0.97}),
    ("exponential", {"gamma": 0.95}, "ExponentialLR", {"gamma": 0.95}),
    ("exponential", {"gamma": 1.01}, "ExponentialLR", {"gamma": 1.01}),
    ("cosine", {"t_max": 50, "min_lr": 0.0}, "CosineAnnealingLR", {"T_max": 50, "eta_min": 0.0}),
    ("cosine", {"t_max": 30, "min_lr": 0.001}, "CosineAnnealingLR", {"T_max": 30, "eta_min": 0.001}),
    ("cosine", {"t_max": 1, "min_lr": 0.0}, "CosineAnnealingLR", {"T_max": 1, "eta_min": 0.0}),
    (
        "plateau",
        {"factor": 0.5, "patience": 3, "min_lr": 1e-4, "threshold": 1e-4, "cooldown": 0},
        "ReduceLROnPlateau",
        {"factor": 0.5, "patience": 3, "min_lr": 1e-4},
    ),
    (
        "plateau",
        {"factor": 0.1, "patience": 0, "min_lr": 0.0, "threshold": 0.01, "cooldown": 2},
        "ReduceLROnPlateau",
        {"factor": 0.1, "patience": 0, "threshold": 0.01, "cooldown": 2},
    ),
]


def losses(seed: int = 0) -> list[float]:
    """A loss curve that falls, flattens and wobbles, so plateau has something to react to."""
    rng = np.random.default_rng(seed)
    e = np.arange(EPOCHS)
    return list(1 / (1 + 0.05 * e) + 0.02 * rng.standard_normal(EPOCHS))


def torch_rates(cls_name: str, options: dict, watched: list[float]) -> list[float]:
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=ETA)
    scheduler = getattr(torch.optim.lr_scheduler, cls_name)(optimizer, **options)
    used = []
    for epoch in range(EPOCHS):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(watched[epoch]) if cls_name == "ReduceLROnPlateau" else scheduler.step()
    return used


def nnctl_rates(name: str, options: dict, watched: list[float]) -> list[float]:
    schedule = SCHEDULES[name](ETA, **options)
    used = []
    for epoch in range(EPOCHS):
        used.append(schedule.learning_rate)
        schedule.step(watched[epoch])
    return used


def main() -> int:
    try:
        import torch
    except ImportError:
        print('PyTorch is not installed: pip install -e ".[bench]"')
        return 2
    watched = losses()
    print(f"PyTorch {torch.__version__}, {EPOCHS} epochs from η₀ = {ETA}")
    print(f"{'schedule':42} {'identical':>10} {'max rel diff':>13}")
    worst = 0.0
    for name, options, cls_name, torch_options in SETTINGS:
        ours, theirs = nnctl_rates(name, options, watched), torch_rates(cls_name, torch_options, watched)
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        diff = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(ours, theirs, strict=True))
        worst = max(worst, diff)
        label = f"{name} {options}"[:42]
        print(f"{label:42} {same:>6}/{EPOCHS} {diff:>13.2e}")
    print("all bit-identical" if worst == 0.0 else f"largest relative difference {worst:.2e}")
    return 0 if math.isfinite(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
