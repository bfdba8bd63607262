"""Learning curves of a run as a PNG (matplotlib, from the optional `plot` extra)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnctl.errors import NnctlError, RunError
from nnctl.files import read_json, write_output
from nnctl.run import HISTORY_CSV, MODEL_JSON
from nnctl.runs import RunRecord, iter_labels, read_run

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


def _loss_label(meta: dict[str, Any]) -> str:
    """The loss axis names the objective the run minimised (model.json's, when there is one)."""
    objective = meta.get("objective")
    name = next(iter(objective)) if isinstance(objective, dict) and objective else objective
    if not isinstance(name, str):
        return "loss"
    return name if name.endswith("loss") else f"{name} loss"


@dataclass
class Curves:
    """One run as `nnctl plot` draws it: `record` holds its name, model.json (`meta`) and, for a legend, its config;
    `history` is history.csv, checked."""

    record: RunRecord
    history: pd.DataFrame

    @property
    def path(self) -> Path:
        return self.record.path


def read_curves(runs: list[Path]) -> list[Curves]:
    """The runs' files, read for the note on an unfinished run and the figure alike. One run needs only history.csv
    (its model.json, when it has one, names the loss and marks the best epoch): each is read once. Several are read
    as `nnctl runs` reads them (model.json required, once; config.yaml for the legend), named by their paths relative
    to their common parent; `runs.read_run` also reads history.csv its own lenient way, so that file is read twice."""
    if len(runs) == 1:
        run = Path(runs[0])
        meta = read_json(run / MODEL_JSON) if (run / MODEL_JSON).is_file() else {}
        return [Curves(RunRecord(run, run.name, meta, {}), read_history(run))]
    records = [read_run(Path(r), name) for r, name in zip(runs, _names(runs), strict=True)]
    return [Curves(record, read_history(record.path)) for record in records]


def plot_curves(curves: list[Curves], out: Path | None = None) -> Path:
    """One run's curves (`history_figure`; default RUN/learning_curves.png), or several runs overlaid
    (`comparison_figure`; default ./learning_curves.png), as an image; returns its path."""
    default = curves[0].path / "learning_curves.png" if len(curves) == 1 else Path("learning_curves.png")
    out = Path(out) if out is not None else default
    image = plot_format(out)  # checked before matplotlib is imported
    plt = _pyplot()
    if len(curves) == 1:
        return _save(plt, history_figure(plt, curves[0]), out, image)
    # saved with bbox_inches="tight", so the legend right of the panels stays in the picture
    return _save(plt, comparison_figure(plt, curves), out, image, bbox_inches="tight")


def history_figure(plt: Any, curves: Curves) -> Any:
    """Loss (train, validation) and the metric against epoch, the best epoch marked."""
    history, meta = curves.history, curves.record.meta
    metric = _metric(history)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(11 if metric else 6, 4), squeeze=False)
    loss_ax = axes[0][0]
    loss_ax.plot(history["epoch"], history["train_loss"], label="train")
    if history["validation_loss"].notna().any():
        loss_ax.plot(history["epoch"], history["validation_loss"], label="validation")
    losses = history[["train_loss", "validation_loss"]].to_numpy(dtype=float)
    log_scale = bool((losses[~np.isnan(losses)] > 0).all())  # late progress stays visible
    label = _loss_label(meta)
    loss_ax.set(xlabel="epoch", ylabel=f"{label} (log scale)" if log_scale else label, title="loss")
    if log_scale:
        loss_ax.set_yscale("log")
    best = curves.record.best_epoch
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
    fig.suptitle(f"learning curves: {curves.path.name}")
    return fig


def _save(plt: Any, fig: Any, out: Path, image: str, **options: Any) -> Path:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image, dpi=100, **options)
    plt.close(fig)
    write_output(out, buffer.getvalue(), "plot")
    return out


def comparison_figure(plt: Any, runs: list[Path] | list[Curves]) -> Any:
    """Several runs' loss and metric curves overlaid, one colour per run (train solid, validation dashed), each
    run's best epoch marked with a star; the legend names the runs and, when short, the config values that differ.
    `runs`: their directories, or their files as `read_curves` read them."""
    paths = [r for r in runs if not isinstance(r, Curves)]
    curves = read_curves(paths) if paths else [c for c in runs if isinstance(c, Curves)]
    records, histories = [c.record for c in curves], [c.history for c in curves]
    metrics = list(dict.fromkeys(m for h in histories if (m := _metric(h)) is not None))
    panels = ["loss", *metrics]  # one panel per metric: accuracy and RMSE never share an axis
    fig, axes = plt.subplots(1, len(panels), figsize=(1.5 + 5.5 * len(panels), 4.8), squeeze=False)
    colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20" if len(curves) <= 20 else "viridis")
    for i, (record, history, label) in enumerate(zip(records, histories, iter_labels(records), strict=True)):
        colour = colours(i % 20 if len(curves) <= 20 else i / max(len(curves) - 1, 1))
        _curves(axes[0][0], history, "train_loss", "validation_loss", colour, label, record.best_epoch)
        metric = _metric(history)
        if metric is not None:
            ax = axes[0][panels.index(metric)]
            _curves(ax, history, f"train_{metric}", f"validation_{metric}", colour, None, record.best_epoch)
    for ax, title in zip(axes[0], panels, strict=True):
        ax.set(xlabel="epoch", ylabel=title, title=title)
    losses = np.concatenate([h[["train_loss", "validation_loss"]].to_numpy(dtype=float).ravel() for h in histories])
    objectives = {_loss_label(r.meta) for r in records}
    label = objectives.pop() if len(objectives) == 1 else "loss"
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
    fig.suptitle(f"learning curves: {len(curves)} runs")
    return fig


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
