"""Rich output for `nnctl sweep`: a live view of running trials on a terminal, one plain line per finished
trial elsewhere, and the ranked results at the end."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nnctl.cells import fmt, plain, plural
from nnctl.runs import flatten, short_names
from nnctl.sweep import SweepPlan
from nnctl.sweepconfig import Trial, normalized, yaml_text
from nnctl.sweeprun import Backend, SweepCallback, SweepResult

TOP = 20  # ranked points shown; trials.csv has them all


def _duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def param_names(plan: SweepPlan) -> dict[str, str]:
    """Each swept key by the name `nnctl runs` heads it with (runs.short_names, against the trials' config keys):
    `learning_rate`, `units`; `layers.1.fully_connected.units` and `layers.3.fully_connected.units` when two
    layers are swept; `optimizer.name`, as `name` is the config's own."""
    keys = {key: normalized(key) for key in plan.sweep.parameters}
    config = {key: value for key, value in plan.config.to_dict().items() if key != "sweep"}  # a trial's config.yaml
    short = short_names(list(dict.fromkeys(keys.values())), flatten(config))
    return {key: short[dotted] for key, dotted in keys.items()}


def _params(trial: Trial, names: dict[str, str]) -> list[str]:
    """The trial's `key=value` settings, its seed last (a value may hold spaces: `[16, 8]`)."""
    return [*(f"{names[key]}={yaml_text(value)}" for key, value in trial.params.items()), f"seed={trial.seed}"]


def _value(value: Any) -> str:
    """A swept value in the ranked table: a float to 4 significant digits, else as `--set` takes it (`true`)."""
    return fmt(value) if value is None or isinstance(value, float) else yaml_text(value)


class SweepView(SweepCallback):
    """The sweep's progress: live on a terminal (running trials with epoch and loss, done of total, elapsed,
    ETA, best so far), else one line per finished trial; nothing with `quiet`."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.live: Live | None = None
        self.running: dict[int, dict[str, Any]] = {}
        self.ended: set[int] = set()  # trials whose outcome has arrived: never shown as running again
        self.done, self.total = 0, 0
        self.best: tuple[float, int] | None = None
        self.started = time.monotonic()
        self.stopping = False

    def on_sweep_begin(self, plan: SweepPlan, path: Path, todo: list[Trial], backend: Backend) -> None:
        self.plan, self.total, self.started = plan, len(todo), time.monotonic()
        self.names = param_names(plan)
        self.trials = {trial.number: trial for trial in plan.trials}
        if self.quiet:
            return
        seeds = len(plan.sweep.seeds or [])
        shape = f"{len(plan.trials) // max(seeds, 1)} points × {seeds} seeds" if seeds > 1 else "1 seed each"
        left = "" if len(todo) == len(plan.trials) else f", {len(todo)} left to train"
        threads = f"{backend.threads} BLAS thread{'s' if backend.threads != 1 else ''}"
        what = f"{backend.slots} workers × {threads}" if backend.name == "local" else f"Ray, {threads} per trial"
        self.console.print(plain(f"sweep {path}: {len(plan.trials)} trials ({shape}{left}), {what}"), soft_wrap=True)
        if self.console.is_terminal and todo:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def on_trial_progress(self, trial: Trial, kind: str, payload: dict[str, Any]) -> None:
        if trial.number in self.ended:  # a late progress message (another pipe than the outcome's)
            return
        entry = self.running.setdefault(trial.number, {"epochs": None, "epoch": 0})
        entry.update(payload)
        self._refresh()

    def on_trial_end(self, trial: Trial, row: dict[str, Any]) -> None:
        self.running.pop(trial.number, None)
        self.ended.add(trial.number)
        if row["status"] == "pending":
            self._refresh()
            return
        self.done += 1
        value = row.get(self.plan.metric)
        if row["status"] == "finished" and isinstance(value, float):
            key = -value if self.plan.maximize else value
            if self.best is None or key < self.best[0]:
                self.best = (key, trial.number)
        if not self.quiet:  # above the live view if there is one (its console); wrapped at spaces, never in a number
            self.console.print(plain(self._line(trial, row)))
        self._refresh()

    def on_stop(self) -> None:
        self.stopping = True
        if not self.quiet:
            self.console.print(plain("stopping: running trials finish their batch and save a checkpoint"))
        self._refresh()

    def __enter__(self) -> SweepView:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _line(self, trial: Trial, row: dict[str, Any]) -> str:
        """`trial 3/12 finished  lr=0.01 units=16 seed=0  epochs 45  validation_loss 0.0812  2.1 s`."""
        parts = [
            f"trial {trial.number}/{len(self.plan.trials)} {row['status']}",
            " ".join(_params(trial, self.names)),
        ]
        if row.get("epochs"):
            parts.append(f"{row['epochs']} epoch{'s' if row['epochs'] != 1 else ''}")
        if row.get(self.plan.metric) is not None:
            parts.append(f"{self.plan.metric.replace('validation_', 'val_')} {fmt(row[self.plan.metric])}")
        if row.get("seconds"):
            parts.append(f"{row['seconds']:.1f} s")
        if row.get("error"):
            parts.append(str(row["error"]).splitlines()[0])
        return "  ".join(part for part in parts if part.strip())

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _render(self) -> Any:
        table = Table(title="running", title_justify="left", box=None, pad_edge=False)
        table.add_column("trial", justify="right", no_wrap=True)
        table.add_column("params")  # one key=value a line: wraps between them, never inside one
        for column in ("epoch", "loss", "val_loss"):
            table.add_column(column, justify="right", no_wrap=True)
        for number, entry in sorted(self.running.items()):
            trial = self.trials[number]
            params = "\n".join(_params(trial, self.names))
            epoch = f"{entry.get('epoch', 0)}/{entry.get('epochs') or '?'}"
            loss, val = fmt(entry.get("train_loss")), fmt(entry.get("validation_loss"))
            table.add_row(str(number), plain(params), epoch, loss, val)
        elapsed = time.monotonic() - self.started
        eta = _duration(elapsed / self.done * (self.total - self.done)) if self.done else "?"
        best = ""
        if self.best is not None:
            value = -self.best[0] if self.plan.maximize else self.best[0]
            best = f" • best {self.plan.metric} {fmt(value)} (trial {self.best[1]})"
        status = "stopping… " if self.stopping else ""
        footer = Text(f"{status}{self.done}/{self.total} trials • elapsed {_duration(elapsed)} • eta {eta}{best}")
        return Group(table, footer) if self.running else footer


def _mean_std(mean: float, std: float) -> str:
    """`0.9826 ± 0.0070`: the standard deviation to two significant digits, the mean to the same decimals."""
    decimals = 4 if std <= 0 or not math.isfinite(std) else max(0, 1 - math.floor(math.log10(std)))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def results_table(result: SweepResult) -> Table:
    """The ranked points: parameters, the metric (mean ± std over seeds when there are several), trials."""
    plan, metric = result.plan, result.plan.metric
    several = len(plan.sweep.seeds or []) > 1
    goal = "highest" if plan.maximize else "lowest"
    table = Table(title=plain(f"{metric}, {goal} first"), title_justify="left")
    table.add_column("#", justify="right")
    for name in param_names(plan).values():
        table.add_column(plain(name), justify="right", overflow="fold")
    short = metric.replace("validation_", "val_")  # the title names it in full; a header wraps at its space
    table.add_column(f"{short} (mean ± std)" if several else short, justify="right")
    table.add_column("trials" if several else "trial", justify="right")
    for rank, point in enumerate(result.ranked[:TOP], 1):
        value = fmt(point.mean) if point.std is None else _mean_std(point.mean, point.std)
        if several and len(point.values) < len(plan.sweep.seeds or []):
            value += f" ({plural(len(point.values), 'seed')})"
        trials = ",".join(map(str, point.trials))
        table.add_row(str(rank), *(plain(_value(v)) for v in point.params.values()), value, trials)
    return table


def results_summary(result: SweepResult) -> list[str]:
    """Lines under the table: what did not finish, and where the best run is."""
    lines = []
    if len(result.ranked) > TOP:
        lines.append(f"… {len(result.ranked) - TOP} more points in {result.path / 'trials.csv'}")
    counts = Counter(row["status"] for row in result.rows.values())  # in the order first seen
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    best = result.best()
    if best is not None:
        metric = result.plan.metric
        lines.append(f"best: trial {best['trial']} ({metric} {fmt(best[metric])}), run {result.path / best['run']}")
    else:
        lines.append("no trial finished")
    return lines
