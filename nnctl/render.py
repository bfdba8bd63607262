"""Rich rendering for the CLI: the live training display, and tables for each command's results."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from nnctl.cells import MAX_CLASSES_SHOWN, plain
from nnctl.cells import fmt as _fmt
from nnctl.plot import sparkline
from nnctl.train import Callback, TrainingState


def fit_fields(fields: list[tuple[int, str]], width: int) -> Text:
    """The status fields that fit in `width` columns, in their order: the least useful (highest rank number)
    are dropped first, so a number is never cut to `0…`; a field wider than the terminal wraps."""
    kept = list(fields)
    while len(kept) > 1 and len("  ".join(text for _, text in kept)) > width:
        kept.remove(max(kept, key=lambda field: field[0]))
    return Text("  ".join(text for _, text in kept), overflow="fold")


class _StatusProgress(Progress):
    """A progress bar with a status line under it (losses, metrics, samples/s), fitted to the terminal."""

    fields: list[tuple[int, str]] = []

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        if self.fields:
            yield fit_fields(self.fields, self.console.width)


class TrainingDisplay(Callback):
    """The trainer's callback: a live epoch bar on a terminal; elsewhere one plain line per `log_every`-th epoch
    (by default about 100 lines a run), the last epoch, and the best one if it was not shown."""

    def __init__(self, console: Console, quiet: bool = False, log_every: int | None = None) -> None:
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.log_every = log_every
        self.progress: _StatusProgress | None = None
        self.started = time.perf_counter()
        self.samples = 0
        self.best_line = ""  # the best epoch's line, shown at the end if it was not
        self.last_rate: float | None = None
        self.show_rate = False  # once a schedule has changed the learning rate, every line shows it

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_train_begin(self, state: TrainingState, epochs: int, n_batches: int) -> None:
        self.epochs, self.n_batches = epochs, n_batches
        self.every = self.log_every or max(1, math.ceil(epochs / 100))
        self.started = time.perf_counter()
        self.samples = 0
        if not self.live:
            return
        self.progress = _StatusProgress(
            TextColumn("[bold]epoch"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            expand=True,
        )
        self.task = self.progress.add_task("train", total=epochs, completed=state.epoch)
        self.progress.start()

    def on_batch_end(self, epoch: int, batch: int, n_batches: int, samples: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=epoch - 1 + batch / n_batches)

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        self.samples += state.seen
        fields = self._fields(record, self.samples / elapsed if elapsed > 0 else 0.0)
        fields[-1:-1] = self._optimizer_fields(record)  # before samples/s
        epoch, done = record["epoch"], state.stop_reason is not None
        if self.progress is not None:
            self.progress.fields = fields
            # Stopped early: the bar ends full at the epoch reached, not at 181/200 with an eta.
            total = epoch if done else self.epochs
            self.progress.update(self.task, completed=epoch, total=total)
            return
        line = f"epoch {epoch}/{self.epochs}  " + "  ".join(text for _, text in fields)
        shown = epoch % self.every == 0 or epoch == 1
        if state.best_epoch == epoch:
            self.best_line = "" if shown else line + "  (best)"
        if done and self.best_line and state.best_epoch != epoch:
            self._write(self.best_line)
        if shown or done:
            self._write(line)

    def on_warning(self, message: str) -> None:
        """Warnings about the data go to stderr, as plain lines (not with --quiet)."""
        if not self.quiet:
            sys.stderr.write(f"warning: {message}\n")
            sys.stderr.flush()

    def _write(self, line: str) -> None:
        # Plain text, written as is: rich's rendering of this line cost as much as a small model's epoch.
        self.console.file.write(line + "\n")
        self.console.file.flush()

    @staticmethod
    def _fields(record: dict[str, Any], rate: float) -> list[tuple[int, str]]:
        """(rank, text) of each status field; rank 1 is kept longest (validation loss), 5 dropped first."""
        metric = next(k for k in record if k.startswith("train_") and k != "train_loss")[len("train_") :]
        fields = [(2, f"loss {_fmt(record['train_loss'])}")]
        if record["validation_loss"] is not None:
            fields.append((1, f"val_loss {_fmt(record['validation_loss'])}"))
        fields.append((4, f"{metric} {_fmt(record['train_' + metric])}"))
        if record["validation_" + metric] is not None:
            fields.append((3, f"val_{metric} {_fmt(record['validation_' + metric])}"))
        fields.append((5, f"{rate:,.0f} samples/s"))
        return fields

    def _optimizer_fields(self, record: dict[str, Any]) -> list[tuple[int, str]]:
        """`lr` once a schedule has changed it; `grad_norm` (before clipping) when clipping measures it."""
        lr = record["learning_rate"]
        self.show_rate = self.show_rate or (self.last_rate is not None and lr != self.last_rate)
        self.last_rate = lr
        fields = [(4, f"lr {_fmt(lr)}")] if self.show_rate else []
        if record.get("grad_norm") is not None:
            fields.append((4, f"grad_norm {_fmt(record['grad_norm'])}"))
        return fields


STOP_REASONS = {
    "epochs": "all epochs ran",
    "early_stopping": "early stopping",
    "tolerance": "train loss changed less than tolerance",
}


def _log(values: list[Any]) -> list[float]:
    """log10 of a loss series, so late progress stays visible next to the first epochs."""
    return [math.log10(v) if v is not None and v > 0 else float("nan") for v in values]


def training_summary(result: Any, width: int = 80) -> Table:
    """Why training stopped, the best epoch, the saved model's numbers, the time and loss sparklines, fitted
    to `width` columns (the CLI says where the run was saved, once, on the line after it)."""
    history = result.history
    table = Table(show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    if not history:
        return table
    table.add_row("epochs", f"{result.epoch} ({STOP_REASONS.get(result.status, result.status)})")
    if result.best_epoch:
        best = history[result.best_epoch - 1]
        watched = "validation_loss" if best["validation_loss"] is not None else "train_loss"
        restored = ", weights restored" if result.restored_best else ""
        table.add_row("best epoch", f"{result.best_epoch} ({watched} {_fmt(best[watched])}{restored})")
    # The saved model's own numbers: the restored best epoch after early stopping, else the last. The train
    # columns are means over the epoch's batches while the weights changed (as Keras reports them).
    kept = history[result.best_epoch - 1] if result.restored_best else history[-1]
    for key, value in kept.items():
        if key not in ("epoch", "learning_rate", "grad_norm", "seconds") and value is not None:
            label = f"{key} (epoch mean)" if key.startswith("train_") else key
            table.add_row(label, _fmt(value))
    test = getattr(result, "test", None)
    if test:
        metric = test.get("metric")
        table.add_row(f"test {metric}", _fmt(test.get(metric)))
        table.add_row("test loss", f"{_fmt(test.get('loss'))} ({test.get('n_samples')} rows, test_metrics.json)")
    table.add_row("training time", f"{sum(r['seconds'] for r in history):.2f} s")
    longest = max(len(str(label)) for label in table.columns[0].cells)
    spark = max(10, min(40, width - max(longest, len("validation loss (log)")) - 7))
    table.add_row("train loss (log)", sparkline(_log([r["train_loss"] for r in history]), spark))
    if any(r["validation_loss"] is not None for r in history):
        table.add_row("validation loss (log)", sparkline(_log([r["validation_loss"] for r in history]), spark))
    return table


def evaluation_tables(result: dict[str, Any], title: str, per_class: bool = False) -> list[Any]:
    """The metrics table, then per-class (or per-target) details and the confusion matrix (or its largest
    cells, for many classes)."""
    # min_width: rich wraps a title to its table's width, which would break the paths in it.
    main = Table(title=plain(title), show_header=False, title_justify="left", min_width=len(title))
    main.add_column("metric", style="bold")
    main.add_column("value", justify="right")
    main.add_row(*_loss_row(result))
    for key in ("n_samples", "accuracy", "macro_f1", "roc_auc", "mse", "rmse", "mae", "r2"):
        if key in result:
            main.add_row(key, _fmt(result[key]))
    if "mape" in result:
        main.add_row("mape", "–" if result["mape"] is None else f"{result['mape']:.4g} %")
    tables: list[Any] = [main]
    if "per_class" in result:
        tables += _class_tables(result, per_class)
    if "per_target" in result and len(result["per_target"]) > 1:
        per = Table(title="per target", title_justify="left")
        for col in ("target", "mse", "rmse", "mae", "r2", "mape"):
            per.add_column(col, justify="left" if col == "target" else "right")
        for name, row in result["per_target"].items():
            per.add_row(plain(name), *(_fmt(row[k]) for k in ("mse", "rmse", "mae", "r2", "mape")))
        tables.append(per)
    return tables


def _loss_row(result: dict[str, Any]) -> tuple[str, str]:
    """`loss (cross_entropy)`; a loss over several targets says it is their sum per row, averaged over rows."""
    several = "per_target" in result or isinstance(result.get("confusion_matrix"), dict)  # regression, multi-label
    targets = len(result.get("per_target") or result.get("per_class") or {}) if several else 0
    summed = f", summed over {targets} targets" if targets > 1 else ""
    return f"loss ({result.get('objective', 'objective')}{summed})", _fmt(result["loss"])


def _class_tables(result: dict[str, Any], per_class: bool) -> list[Any]:
    classes, rows = result["classes"], result["per_class"]
    tables: list[Any] = []
    if per_class or len(rows) <= MAX_CLASSES_SHOWN:
        per = Table(title="per class", title_justify="left")
        for col in ("class", "precision", "recall", "f1", "support"):
            per.add_column(col, justify="left" if col == "class" else "right")
        for name, row in rows.items():
            per.add_row(plain(name), *(_fmt(row[k]) for k in ("precision", "recall", "f1", "support")))
        tables.append(per)
    else:
        tables.append(Text(f"per class: {len(rows):,} classes (--per-class shows the table)", style="dim"))
    matrix = result["confusion_matrix"]
    if isinstance(matrix, list) and len(classes) <= MAX_CLASSES_SHOWN // 2:
        cm_title = "confusion matrix (rows: true, columns: predicted)"
        cm = Table(title=cm_title, title_justify="left", min_width=len(cm_title))
        cm.add_column("")
        for c in classes:
            cm.add_column(plain(c), justify="right")
        for c, row in zip(classes, matrix, strict=True):
            cm.add_row(plain(c), *map(str, row))
        tables.append(cm)
    elif isinstance(matrix, list):
        tables.append(_top_confusions(classes, np.asarray(matrix)))
    return tables


def _top_confusions(classes: list[Any], matrix: np.ndarray, count: int = 10) -> Table:
    """The largest off-diagonal cells of a confusion matrix: which classes are mistaken for which."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:count]
    table = Table(title=f"most frequent confusions (of {len(classes):,} classes)", title_justify="left")
    for col in ("true", "predicted", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for true, predicted in zip(*np.unravel_index(flat, off.shape), strict=True):
        if off[true, predicted]:
            table.add_row(plain(classes[true]), plain(classes[predicted]), f"{off[true, predicted]:,}")
    return table


def gradcheck_table(checks: list[Any], step: float) -> Table:
    """One row per checked array; numbers are never cut (they do not wrap), names wrap whole if they must."""
    title = f"gradient check: central differences, h = {step:g}, float64"
    caption = "ε = 0 (exact derivatives); δ = ∂J/∂(module input)"
    table = Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    longest = max((len(word) for c in checks for word in c.module.split()), default=6)
    table.add_column("module", min_width=min(longest, 24), overflow="fold")
    table.add_column("array", overflow="fold")
    shape = max((len("×".join(map(str, c.shape))) for c in checks), default=5)
    for col, width in (("shape", shape), ("abs err", 8), ("rel err", 8), ("ok", 2)):
        table.add_column(col, justify="right" if col.endswith("err") else "left", no_wrap=True, min_width=width)
    for c in checks:
        result = Text("✓", style="green") if c.passed else Text("✗", style="bold red")
        array = "δ" if c.parameter.startswith("δ") else c.parameter.split(" ")[0]  # "gradient() (N, K, K)" → gradient()
        errors = (f"{c.max_abs_error:.2e}", f"{c.max_rel_error:.2e}")
        table.add_row(plain(c.module), plain(array), "×".join(map(str, c.shape)), *errors, result)
    return table


def summary_parts(document: dict[str, Any]) -> list[Any]:
    """`nnctl summary` on a terminal, from a `Setup.summary()`: the features, the layers, the backprop chain, the
    optimiser, the data."""
    n_features, validation = document["n_features"], document["validation_rows"]
    watched = "validation loss" if validation else "training loss"
    return [
        features_table(document),
        summary_table(document),
        chain_table(document["jacobian_chain"], n_features),
        Text(optimizer_text(document["optimizer"], document["learning_rates"], watched)),
        Text(f"data: {document['train_rows']} training rows, {validation} validation rows, {n_features} features"),
    ]


def summary_table(document: dict[str, Any]) -> Table:
    """The layers of `Setup.summary()`: options, output shape and parameters of each, and their total."""
    table = Table(title="layers", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("module", no_wrap=True)  # names and numbers whole; the options wrap, a long one folds
    table.add_column("options", overflow="fold")
    table.add_column("output", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_row("", "(data)", "", f"(N, {document['n_features']})", "")
    for row in document["layers"]:
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items())
        table.add_row(
            str(row["index"]), row["module"], options, f"(N, {row['output_shape'][1]})", f"{row['parameters']:,}"
        )
    table.add_row("", "[bold]total", "", "", f"[bold]{document['total_parameters']:,}")
    return table


def features_table(described: dict[str, Any]) -> Table:
    """The features as the network sees them: each numeric column (and its fill), each categorical column's
    one-hot columns; the caption names the target and classes."""
    table = Table(title=f"features → {described['n_features']} input columns", title_justify="left")
    table.add_column("feature", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("width", justify="right", no_wrap=True)  # its input columns
    table.add_column("encoding", overflow="fold")
    for f in described["features"]:
        if f["kind"] == "numeric":
            detail = f"missing → {f['fill']:.6g} ({described['missing']})" if "fill" in f else ""
        else:
            shown = ", ".join(map(str, f["categories"][:8])) + (", …" if len(f["categories"]) > 8 else "")
            detail = f"one-hot: {shown}" + (", (missing)" if f.get("missing_category") else "")
        table.add_row(plain(f["name"]), f["kind"], str(f["columns"]), plain(detail))
    target = ", ".join(described["targets"])
    classes = described["classes"]
    caption = f"target: {target}" + (
        f"; {len(classes)} classes: {', '.join(map(str, classes[:10]))}" if classes else ""
    )
    if len(classes) > 10:
        caption += ", …"
    if described.get("class_weights"):
        caption += "; class weights: " + ", ".join(f"{w:.3g}" for w in described["class_weights"][:10])
    if described.get("target_scale"):
        caption += "; targets standardised while training (scale_target)"
    table.caption, table.caption_justify = Text(caption), "left"
    return table


STRUCTURES = {  # a Jacobian factor's structure, as chain_table names it
    "row": "row vector",
    "diagonal": "diagonal (element-wise)",
    "full": "full (VJP)",  # a vector-Jacobian product: the matrix is never built
    "Wᵀ": "Wᵀ (matmul)",
}


def chain_table(chain: list[dict[str, Any]], n_features: int) -> Table:
    """Backprop's product for one row, objective first, as the course checks it: shapes must chain."""
    product = " · ".join(f"∂{f['of']}/∂{f['by']} ∈ R^{{{f['shape'][0]}×{f['shape'][1]}}}" for f in chain)
    title = f"backprop chain (one row): {product} → ∂J/∂x ∈ R^{{1×{n_features}}}"
    table = Table(title=title, title_justify="left")
    for col in ("factor", "shape", "module"):
        table.add_column(col, no_wrap=True)
    table.add_column("structure", overflow="fold")  # never cut: at worst a word folds
    for f in chain:
        rows, cols = f["shape"]
        table.add_row(
            f"∂{f['of']}/∂{f['by']}",
            f"R^{{{rows}×{cols}}}",
            f["module"],
            STRUCTURES.get(f["structure"], f["structure"]),
        )
    return table


def optimizer_text(options: dict[str, Any], rates: list[float] | None, watched: str) -> str:
    """`nnctl summary`'s optimiser line, and its schedule's: the rate of the first and last epochs and a
    sparkline of every epoch's, or for plateau what it watches."""
    shown = {k: v for k, v in options.items() if k not in ("name", "schedule") and v not in (None, 0.0)}
    text = f"optimizer: {options['name']} ({', '.join(f'{k}={_fmt(v)}' for k, v in shown.items())})"
    schedule = options.get("schedule")
    if not schedule:
        return text + "; constant learning rate"
    settings = ", ".join(f"{k}={_fmt(v)}" for k, v in schedule.items() if k != "name")
    text += f"\nschedule: {schedule['name']} ({settings}), stepped at the end of every epoch"
    if rates:
        text += f": {_fmt(rates[0])} in epoch 1 → {_fmt(rates[-1])} in epoch {len(rates)}  {sparkline(rates)}"
    else:
        text += f", on the {watched}"
    return text
