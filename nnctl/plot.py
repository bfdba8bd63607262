"""Learning curves of a run as a PNG (matplotlib, from the optional `plot` extra)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from nnctl.errors import NnctlError, RunError
from nnctl.files import write_output
from nnctl.run import HISTORY_CSV

SPARKS = "▁▂▃▄▅▆▇█"


def read_history(run: Path) -> pd.DataFrame:
    path = Path(run) / HISTORY_CSV
    if not path.exists():
        raise RunError(f"{path}: not found; is {run} a run directory?")
    try:
        history = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise RunError(f"{path}: unreadable: {str(exc)[:200]}") from None
    if "epoch" not in history.columns or "train_loss" not in history.columns:
        raise RunError(f"{path}: expected columns epoch and train_loss")
    numeric = [c for c in history.columns if c != "epoch" and not pd.api.types.is_numeric_dtype(history[c])]
    if numeric or not pd.api.types.is_numeric_dtype(history["epoch"]):
        raise RunError(f"{path}: column {(numeric or ['epoch'])[0]!r} is not numeric; the file is damaged")
    return history


def sparkline(values: list[float], width: int = 40) -> str:
    """A one-line terminal chart of a series (resampled to at most `width` characters)."""
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(int((v - lo) / span * (len(SPARKS) - 1) + 0.5), len(SPARKS) - 1)] for v in values)


def _best_epoch(run: Path) -> int | None:
    """The best epoch model.json records, if any (a marker on the plot, never required)."""
    try:
        return int(json.loads((run / "model.json").read_text(encoding="utf-8")).get("best_epoch") or 0) or None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def plot_history(run: Path, out: Path | None = None) -> Path:
    """Loss (train, validation) and the metric against epoch; returns the PNG's path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnctlError('nnctl plot needs matplotlib: pip install "nnctl[plot]" (or pip install matplotlib)') from None
    run = Path(run)
    history = read_history(run)
    out = Path(out) if out is not None else run / "learning_curves.png"
    metric = next((c[len("train_") :] for c in history.columns if c.startswith("train_") and c != "train_loss"), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(11 if metric else 6, 4), squeeze=False)
    loss_ax = axes[0][0]
    loss_ax.plot(history["epoch"], history["train_loss"], label="train")
    if history["validation_loss"].notna().any():
        loss_ax.plot(history["epoch"], history["validation_loss"], label="validation")
    losses = history[["train_loss", "validation_loss"]].to_numpy(dtype=float)
    log_scale = bool((losses[~np.isnan(losses)] > 0).all())  # late progress stays visible
    loss_ax.set(xlabel="epoch", ylabel="loss (log scale)" if log_scale else "loss", title="loss")
    if log_scale:
        loss_ax.set_yscale("log")
    best = _best_epoch(run)
    for ax in axes[0]:
        if best:
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best})")
    loss_ax.legend()
    if metric:
        ax = axes[0][1]
        ax.plot(history["epoch"], history[f"train_{metric}"], label="train")
        if history[f"validation_{metric}"].notna().any():
            ax.plot(history["epoch"], history[f"validation_{metric}"], label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
    fig.suptitle(f"learning curves: {run.name}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_output(out, buffer.getvalue(), "plot")
    return out
