"""The sweep directory: `sweep.yaml`, `trials.csv` and one run directory per trial under `trials/`.

It is claimed like a run directory (nnctl.rundir: a lock, numbered `NAME-sweep-2`, a safe `--force`).
`sweep.yaml` is the resolved config; the config as written (`.source.yaml`, hidden) is what trial
configs are made from on `--resume`. `trials.csv` is rewritten (atomically) as each trial ends, so
it is current even if the sweep itself is killed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nnctl.config import Config, relative_data_paths
from nnctl.errors import RunError
from nnctl.files import atomic_write
from nnctl.run import HISTORY_CSV, MODEL_JSON
from nnctl.rundir import RunDirectory
from nnctl.runs import FINISHED, RunRecord, read_history, read_meta
from nnctl.sweep import STATUSES, SweepPlan
from nnctl.sweepconfig import Trial, yaml_text
from nnctl.yamlfile import dump_yaml, parse_yaml, read_yaml

SWEEP_YAML, SOURCE_YAML, TRIALS_CSV, TRIALS = "sweep.yaml", ".source.yaml", "trials.csv", "trials"


def default_directory(config: Config) -> Path:
    return Path(config.output) / f"{config.name}-sweep"


class SweepDirectory:
    """One command's hold on a sweep directory (locked for as long as the sweep runs)."""

    def __init__(self, handle: RunDirectory) -> None:
        self.handle = handle

    @property
    def path(self) -> Path:
        return self.handle.path

    @property
    def final(self) -> Path:
        return self.handle.final

    @classmethod
    def create(cls, plan: SweepPlan, out: Path | None, force: bool, command: str) -> SweepDirectory:
        """A new sweep directory (`--out`, or OUTPUT/NAME-sweep numbered), holding sweep.yaml and a trials.csv
        of pending trials once this returns (with --force, in place of the old sweep from then on)."""
        base = out if out is not None else default_directory(plan.config)
        directory = cls(RunDirectory.new(base, out is not None, force, command, _occupied))
        try:
            directory.write_config(plan)
            directory.write_trials(plan, {})
            directory.handle.commit()
        except BaseException:
            directory.release()
            raise
        return directory

    @classmethod
    def existing(cls, path: Path, command: str) -> SweepDirectory:
        """Lock a sweep directory to finish it (`--resume`)."""
        if not (path / SWEEP_YAML).is_file():
            raise RunError(f"{path}: not a sweep directory ({SWEEP_YAML} is missing)")
        return cls(RunDirectory.locked(path, command))

    def release(self) -> None:
        self.handle.release()

    def trial_path(self, trial: Trial) -> Path:
        return self.final / TRIALS / trial.name

    def write_config(self, plan: SweepPlan) -> None:
        """sweep.yaml (resolved) and .source.yaml (as written), data paths relative to the sweep directory."""
        resolved = plan.config.to_dict()
        source = {**plan.source, "data": dict(plan.source["data"]), "sweep": resolved["sweep"]}
        for document, name in ((resolved, SWEEP_YAML), (source, SOURCE_YAML)):
            relative_data_paths(document, self.final.resolve())
            self._write(name, dump_yaml(document))

    def write_trials(self, plan: SweepPlan, rows: dict[int, dict[str, Any]]) -> None:
        """trials.csv: one row per trial in trial order (trials without a row yet are pending)."""
        columns = trial_columns(plan)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for trial in plan.trials:
            row = rows.get(trial.number) or pending_row(trial)
            writer.writerow([_cell(row.get(column), column in plan.sweep.parameters) for column in columns])
        self._write(TRIALS_CSV, buffer.getvalue())

    def read_trials(self, plan: SweepPlan) -> dict[int, dict[str, Any]]:
        """The rows of trials.csv, typed again; they must be the plan's trials (same numbers, seeds, values)."""
        path = self.final / TRIALS_CSV
        try:
            with open(path, encoding="utf-8", newline="") as file:
                found = list(csv.DictReader(file))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise RunError(f"{path}: cannot read: {exc}") from None
        rows = {}
        for i, cells in enumerate(found):
            row = _typed(cells, plan)
            trial = plan.trials[i] if i < len(plan.trials) else None
            if (
                trial is None
                or (row["trial"], row["seed"]) != (trial.number, trial.seed)
                or any(row.get(key) != value for key, value in trial.params.items())
            ):
                raise RunError(f"{path}: row {i + 1} is not trial {i + 1} of {self.final / SWEEP_YAML}; damaged?")
            rows[trial.number] = row
        return rows

    def _write(self, name: str, text: str) -> None:
        try:
            atomic_write(self.path / name, text.encode())
        except OSError as exc:
            raise RunError(f"{self.final}: cannot write {name}: {exc.strerror or exc}") from None


def _occupied(path: Path) -> str:
    """What a sweep's `--out` holds, and how to go on (rundir.check_new)."""
    what = "a sweep already exists here" if (path / SWEEP_YAML).exists() else "the directory is not empty"
    return f"{what}; pass --force to replace it, --resume {path} to finish it"


def load_source(path: Path) -> dict[str, Any]:
    """The config as written, from a sweep directory (sweep.yaml when .source.yaml is gone): its data paths are
    relative to the directory."""
    return read_yaml(path / SOURCE_YAML if (path / SOURCE_YAML).is_file() else path / SWEEP_YAML)


# ----------------------------------------------------------------------------- rows


def trial_columns(plan: SweepPlan) -> list[str]:
    return [
        "trial",
        "status",
        "seed",
        *plan.sweep.parameters,
        "epochs",
        "best_epoch",
        *plan.metric_columns,
        "seconds",
        "run",
        "error",
    ]


def pending_row(trial: Trial) -> dict[str, Any]:
    row: dict[str, Any] = {"trial": trial.number, "status": "pending", "seed": trial.seed, **trial.params}
    return row | {"run": f"{TRIALS}/{trial.name}", "error": ""}


def run_record(run: Path) -> RunRecord | None:
    """A trial's run directory read as `nnctl runs` reads a run (model.json and history.csv only, each once);
    None without a readable model.json."""
    if not (run / MODEL_JSON).is_file():
        return None
    try:
        return RunRecord(run, run.name, read_meta(run), {}, read_history(run))
    except RunError:
        return None


def run_row(plan: SweepPlan, trial: Trial, record: RunRecord | None, status: str, error: str = "") -> dict[str, Any]:
    """A trial's row from its run directory (`run_record`): epochs, best epoch, the history row of the best epoch,
    seconds."""
    row = pending_row(trial) | {"status": status, "error": error}
    if record is None or not (record.path / HISTORY_CSV).is_file():
        return row
    best = record.best if record.best_epoch is not None else {}  # none (diverged at once), not the last epoch's
    row |= {"epochs": record.epochs, "best_epoch": record.best_epoch}
    return row | {column: best.get(column) for column in plan.metric_columns} | {"seconds": record.seconds}


def run_status(record: RunRecord | None) -> str | None:
    """How a trial's run directory (`run_record`) stands: finished, interrupted (or killed: resumable), diverged, or
    None (no checkpoint)."""
    if record is None or not (record.path / "checkpoint").is_dir():
        return None
    status = record.meta.get("status")
    if status in FINISHED:
        return "finished"
    return "diverged" if status == "diverged" else "interrupted"


def _number(text: Any) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _cell(value: Any, parameter: bool) -> str:
    """A trials.csv cell: numbers exactly (shortest repr), parameters as `--set` would write them."""
    if value is None or value == "":
        return ""
    if parameter:
        return yaml_text(value)
    return repr(value) if isinstance(value, float) else str(value)


def _typed(cells: dict[str, str], plan: SweepPlan) -> dict[str, Any]:
    """A trials.csv row read back: numbers as numbers, parameters as their YAML values."""
    row: dict[str, Any] = {}
    for column, text in cells.items():
        if column in plan.sweep.parameters:
            row[column] = parse_yaml(text) if text != "" else None
        elif column in ("trial", "seed", "epochs", "best_epoch"):
            row[column] = int(text) if text.strip().lstrip("-").isdigit() else None
        elif column in (*plan.metric_columns, "seconds"):
            row[column] = _number(text)
        else:
            row[column] = text
    if row.get("status") not in STATUSES:
        row["status"] = "pending"
    return row
