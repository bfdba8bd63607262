"""Learning curves of a run as a PNG (matplotlib, from the optional `plot` extra)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnctl.errors import NnctlError, RunError
from nnctl.files import write_output
from nnctl.run import HISTORY_CSV
from nnctl.runs import iter_labels, read_run

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


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnctlError('nnctl plot needs matplotlib: pip install "nnctl[plot]" (or pip install matplotlib)') from None
    return plt


FORMATS = ("png", "pdf", "svg")


def plot_format(out: Path) -> str:
    """The image format `out`'s extension asks for; anything else is an error before any plotting."""
    if out.is_dir():
        raise RunError(f"{out}: is a directory; give a file name for the plot")
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        shown = f"'.{suffix}'" if suffix else "no extension"
        raise NnctlError(f"{out}: {shown} is not a plot format nnctl writes; use .png, .pdf or .svg")
    return suffix


def _loss_label(run: Path) -> str:
    """The loss axis names the objective the run minimised (from model.json, when there is one)."""
    try:
        objective = json.loads((run / "model.json").read_text(encoding="utf-8")).get("objective")
    except (OSError, ValueError, AttributeError):
        return "loss"
    name = next(iter(objective)) if isinstance(objective, dict) and objective else objective
    if not isinstance(name, str):
        return "loss"
    return name if name.endswith("loss") else f"{name} loss"


def plot_history(run: Path, out: Path | None = None) -> Path:
    """Loss (train, validation) and the metric against epoch; returns the image's path."""
    run = Path(run)
    out = Path(out) if out is not None else run / "learning_curves.png"
    plot_format(out)
    plt = _pyplot()
    history = read_history(run)
    metric = next((c[len("train_") :] for c in history.columns if c.startswith("train_") and c != "train_loss"), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(11 if metric else 6, 4), squeeze=False)
    loss_ax = axes[0][0]
    loss_ax.plot(history["epoch"], history["train_loss"], label="train")
    if history["validation_loss"].notna().any():
        loss_ax.plot(history["epoch"], history["validation_loss"], label="validation")
    losses = history[["train_loss", "validation_loss"]].to_numpy(dtype=float)
    log_scale = bool((losses[~np.isnan(losses)] > 0).all())  # late progress stays visible
    label = _loss_label(run)
    loss_ax.set(xlabel="epoch", ylabel=f"{label} (log scale)" if log_scale else label, title="loss")
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
    return _save(plt, fig, out)


def _save(plt: Any, fig: Any, out: Path, **options: Any) -> Path:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=plot_format(out), dpi=100, **options)
    plt.close(fig)
    write_output(out, buffer.getvalue(), "plot")
    return out


def plot_comparison(runs: list[Path], out: Path | None = None) -> Path:
    """Several runs overlaid (`comparison_figure`) as an image: `out`, default ./learning_curves.png."""
    plot_format(Path(out) if out is not None else Path("learning_curves.png"))
    plt = _pyplot()
    fig = comparison_figure(plt, runs)
    return _save(plt, fig, Path(out) if out is not None else Path("learning_curves.png"), bbox_inches="tight")


def comparison_figure(plt: Any, runs: list[Path]) -> Any:
    """Several runs' loss and metric curves overlaid, one colour per run (train solid, validation dashed), each
    run's best epoch marked with a star; the legend names the runs and, when short, the config values that differ."""
    records = [read_run(Path(r), name) for r, name in zip(runs, _names(runs), strict=True)]
    histories = [read_history(r.path) for r in records]
    metrics = list(dict.fromkeys(m for h in histories if (m := _metric(h)) is not None))
    panels = ["loss", *metrics]  # one panel per metric: accuracy and RMSE never share an axis
    fig, axes = plt.subplots(1, len(panels), figsize=(1.5 + 5.5 * len(panels), 4.8), squeeze=False)
    colours = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20" if len(runs) <= 20 else "viridis")
    for i, (record, history, label) in enumerate(zip(records, histories, iter_labels(records), strict=True)):
        colour = colours(i % 20 if len(runs) <= 20 else i / max(len(runs) - 1, 1))
        _curves(axes[0][0], history, "train_loss", "validation_loss", colour, label, record.best_epoch)
        metric = _metric(history)
        if metric is not None:
            ax = axes[0][panels.index(metric)]
            _curves(ax, history, f"train_{metric}", f"validation_{metric}", colour, None, record.best_epoch)
    for ax, title in zip(axes[0], panels, strict=True):
        ax.set(xlabel="epoch", ylabel=title, title=title)
    losses = np.concatenate([h[["train_loss", "validation_loss"]].to_numpy(dtype=float).ravel() for h in histories])
    label = _loss_label(Path(runs[0])) if len({_loss_label(Path(r)) for r in runs}) == 1 else "loss"
    axes[0][0].set(ylabel=label)
    if (losses[~np.isnan(losses)] > 0).all():
        axes[0][0].set_yscale("log")
        axes[0][0].set(ylabel=f"{label} (log scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    style = [plt.Line2D([], [], color="black"), plt.Line2D([], [], color="black", linestyle="--")]
    style.append(plt.Line2D([], [], color="black", marker="*", linestyle="", markersize=10))
    fig.legend(
        handles + style, labels + ["train", "validation", "best epoch"], loc="center left", bbox_to_anchor=(1, 0.5)
    )
    fig.suptitle(f"learning curves: {len(runs)} runs")
    return fig  # saved with bbox_inches="tight", so the legend right of the panels stays in the picture


def _names(runs: list[Path]) -> list[str]:
    """Each run's path relative to the runs' common parent (`iris`, `iris-2`; `trials/0001` in a sweep)."""
    resolved = [Path(r).resolve() for r in runs]
    common = Path(os.path.commonpath([r.parent for r in resolved]))
    return [r.relative_to(common).as_posix() for r in resolved]


def _metric(history: pd.DataFrame) -> str | None:
    return next((c[len("train_") :] for c in history.columns if c.startswith("train_") and c != "train_loss"), None)


def _curves(
    ax: Any, history: pd.DataFrame, train: str, val: str, colour: Any, label: str | None, best: int | None
) -> None:
    """One run on one panel: train solid, validation dashed, a star on the validation curve at the best epoch."""
    epochs = history["epoch"]
    if train in history.columns:
        ax.plot(epochs, history[train], color=colour, linewidth=1.3, label=label)
    has_validation = val in history.columns and history[val].notna().any()
    if has_validation:
        ax.plot(epochs, history[val], color=colour, linewidth=1.3, linestyle="--")
    marked = val if has_validation else train
    if best and marked in history.columns and best in set(epochs):
        y = history.loc[epochs == best, marked].iloc[0]
        ax.plot([best], [y], marker="*", markersize=12, color=colour, markeredgecolor="black", linestyle="")
