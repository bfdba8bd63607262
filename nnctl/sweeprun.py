"""Running a sweep: claim its directory, decide what is left to train, drive a backend, record every trial.

The backend (`sweeppool.LocalBackend`, `sweepray.RayBackend`) runs trials and reports to the
`SweepRunner`; the runner writes each trial's row to trials.csv as it ends and tells the CLI's
`SweepCallback`. A stop request (Ctrl-C, SIGTERM) stops every running trial after its batch, with
its checkpoint saved; `--resume` then trains what is left and ends as an uninterrupted sweep would.
"""

from __future__ import annotations

import shlex
import signal as signals
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nnctl import provenance
from nnctl.interrupt import SignalHandler
from nnctl.sweep import DONE, PointResult, SweepPlan, TrialOutcome, TrialTask, dispatch_order, ranking
from nnctl.sweepconfig import Trial
from nnctl.sweepdir import SweepDirectory, pending_row, run_record, run_row, run_status


class Backend(Protocol):
    """Runs trials; reports each trial's progress and outcome to the runner (`send`, `done`)."""

    name: str
    slots: int  # trials that run at once
    threads: int  # BLAS threads per trial

    def run(self, tasks: list[TrialTask], runner: SweepRunner) -> None:
        """Run the tasks (in order, `slots` at a time) until all are done or, after `request_stop`, the running ones."""

    def request_stop(self) -> None:
        """Stop every running trial after its current batch; start no other."""


class SweepCallback:
    """What the CLI renders; every hook is a no-op here."""

    def on_sweep_begin(self, plan: SweepPlan, path: Path, todo: list[Trial], backend: Backend) -> None:
        """Before the first trial starts (`todo`: the trials this command will train)."""

    def on_trial_progress(self, trial: Trial, kind: str, payload: dict[str, Any]) -> None:
        """A running trial began ("begin": epoch, epochs) or ended an epoch ("epoch": its history row)."""

    def on_trial_end(self, trial: Trial, row: dict[str, Any]) -> None:
        """A trial ended (its trials.csv row)."""

    def on_stop(self) -> None:
        """A stop was requested: running trials are saving their checkpoints."""


@dataclass
class SweepResult:
    """How a sweep stands when the command ends."""

    plan: SweepPlan
    path: Path
    rows: dict[int, dict[str, Any]]
    ranked: list[PointResult]
    signal: int | None = None  # the signal that stopped it
    backend: str = "local"

    @property
    def interrupted(self) -> bool:
        return any(row["status"] not in DONE for row in self.rows.values())  # interrupted or pending

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + (self.signal or signals.SIGINT)
        return 0 if any(row["status"] == "finished" for row in self.rows.values()) else 1

    def best(self) -> dict[str, Any] | None:
        """The best point's best trial: {"trial", "run", "params", "seed", <metric>} (and the mean and standard
        deviation over seeds when there are several)."""
        if not self.ranked:
            return None
        point, metric = self.ranked[0], self.plan.metric
        row = self.rows[point.best_trial]
        best = {"trial": point.best_trial, "run": row["run"], "params": point.params, "seed": row["seed"]}
        best[metric] = row[metric]
        if len(self.plan.sweep.seeds or []) > 1:
            best[f"{metric}_mean"], best[f"{metric}_std"] = point.mean, point.std
        return best

    def to_json(self) -> dict[str, Any]:
        """`nnctl sweep --json`: the sweep directory, every trials.csv row in trial order, and the best trial."""
        rows = [self.rows[trial.number] for trial in self.plan.trials]
        ranked = [
            {"params": p.params, "trials": p.trials, "mean": p.mean, "std": p.std, "best_trial": p.best_trial}
            for p in self.ranked
        ]
        return {
            "sweep": str(self.path),
            "metric": self.plan.metric,
            "goal": self.plan.sweep.goal,
            "trials": rows,
            "best": self.best(),
            "ranking": ranked,
        }


class SweepRunner:
    """Drives one backend over a sweep directory; the target of Ctrl-C (`request_stop`)."""

    def __init__(
        self,
        plan: SweepPlan,
        directory: SweepDirectory,
        backend: Backend,
        callback: SweepCallback,
        command: tuple[str, ...] = (),
    ) -> None:
        self.plan, self.directory, self.backend, self.callback = plan, directory, backend, callback
        self.command = command
        self.rows: dict[int, dict[str, Any]] = {}
        self.trials = {trial.number: trial for trial in plan.trials}
        self.stop_requested = False

    def request_stop(self) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self.backend.request_stop()
            self.callback.on_stop()

    def run(self, resuming: bool) -> list[Trial]:
        """Train what is left; returns the trials this command trained (or tried to)."""
        todo = self._triage() if resuming else [(trial, False) for trial in self.plan.trials]
        self.directory.write_trials(self.plan, self.rows)
        trials = [trial for trial, _ in todo]
        self.callback.on_sweep_begin(self.plan, self.directory.final, trials, self.backend)
        plan, directory, resumed = self.plan, self.directory, dict(todo)
        tasks = [
            TrialTask(trial, plan.source, plan.label(trial), directory.trial_path(trial), resumed[trial], self.command)
            for trial in dispatch_order(plan, trials)
        ]
        if tasks and not self.stop_requested:
            self.backend.run(tasks, self)
        self.directory.write_trials(self.plan, self.rows)
        return trials

    def _triage(self) -> list[tuple[Trial, bool]]:
        """On --resume: keep finished, diverged and failed trials; resume those with a checkpoint; start the rest."""
        recorded = self.directory.read_trials(self.plan)
        todo = []
        for trial in self.plan.trials:
            row = recorded.get(trial.number)
            if row is not None and row["status"] in DONE:
                self.rows[trial.number] = row
                continue
            record = run_record(self.directory.trial_path(trial))
            status = run_status(record)
            if status in DONE:  # finished or diverged after trials.csv was last written
                error = "training diverged (see the trial's history.csv)" if status == "diverged" else ""
                self.rows[trial.number] = run_row(self.plan, trial, record, str(status), error)
            elif status == "interrupted":
                self.rows[trial.number] = run_row(self.plan, trial, record, "interrupted")
                todo.append((trial, True))
            else:
                todo.append((trial, False))
        return todo

    def send(self, kind: str, number: int, payload: dict[str, Any]) -> None:
        """Progress of a running trial (from a backend)."""
        self.callback.on_trial_progress(self.trials[number], kind, payload)

    def done(self, outcome: TrialOutcome) -> None:
        """A trial ended (from a backend): its row from its run directory, trials.csv rewritten."""
        trial = self.trials[outcome.number]
        if outcome.status == "pending":
            row = self.rows.get(trial.number) or pending_row(trial)
        else:
            record = run_record(self.directory.trial_path(trial))
            row = run_row(self.plan, trial, record, outcome.status, outcome.error)
        self.rows[trial.number] = row
        self.directory.write_trials(self.plan, self.rows)
        self.callback.on_trial_end(trial, row)


def run_sweep(
    plan: SweepPlan,
    backend: Backend,
    *,
    out: Path | None = None,
    force: bool = False,
    resume: Path | None = None,
    callback: SweepCallback | None = None,
    handle_signals: bool = False,
    command: Sequence[str] | None = None,
) -> SweepResult:
    """Train a sweep into its directory (or finish the one at `resume`). With `handle_signals`, SIGINT and
    SIGTERM stop it gracefully: running trials save their checkpoints, the rest stay pending. `command`, the
    argument list (default: `sys.argv`), names the sweep in its locks and its trials' provenance."""
    argv = tuple(command) if command is not None else tuple(provenance.default_command())
    handler = SignalHandler() if handle_signals else None
    with handler if handler is not None else nullcontext():
        if resume is not None:
            directory = SweepDirectory.existing(resume, shlex.join(argv)[:200])
        else:
            directory = SweepDirectory.create(plan, out, force, shlex.join(argv)[:200])
        try:
            runner = SweepRunner(plan, directory, backend, callback or SweepCallback(), argv)
            if handler is not None:
                handler.attach(runner)
            runner.run(resuming=resume is not None)
        finally:
            directory.release()
    rows = {trial.number: runner.rows.get(trial.number) or pending_row(trial) for trial in plan.trials}
    received = handler.received if handler is not None else None
    return SweepResult(plan, directory.final, rows, ranking(plan, rows), received, backend.name)


@contextmanager
def open_backend(
    name: str, workers: int | None, threads: int | None, address: str | None, cpus_per_trial: float
) -> Iterator[Backend]:
    """The local backend (`workers` processes, default one per core, each with cores // workers BLAS threads),
    or Ray (connected, or a local instance started, for the block)."""
    if name == "ray":
        from nnctl.sweepray import RayBackend

        with RayBackend(address, cpus_per_trial, threads) as backend:
            yield backend
        return
    from nnctl.sweeppool import LocalBackend
    from nnctl.threads import available_cores

    cores = available_cores()
    workers = workers or cores
    yield LocalBackend(workers, threads or max(1, cores // workers))
