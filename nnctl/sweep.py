"""Hyperparameter sweeps (docs/reference.md#sweeps): the plan, one trial, and the ranked results.

The plan is every trial's config, built and validated before anything trains. A trial is one
`experiment.train` run, exactly `nnctl train CONFIG --set KEY=VALUE... --set seed=S`: its config is
the sweep's config as written with the trial's keys set the way `--set` sets them. The backends
(`sweeppool`: processes on this machine; `sweepray`: Ray tasks) run `run_trial` wherever they run.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nnctl.config import (
    Config,
    absolute_data_paths,
    apply_overrides,
    load_config,
    read_config,
    registered,
    resolve_config,
    set_key,
    validate_config,
)
from nnctl.errors import ConfigError, DivergenceError, NnctlError
from nnctl.experiment import LoadedData, build_for_data, read_data
from nnctl.network import Network
from nnctl.runs import FINISHED
from nnctl.schema import describe, dotted, resolve, suggest
from nnctl.seeds import streams
from nnctl.sweepconfig import Distribution, SweepConfig, Trial, normalized, trials
from nnctl.task import Task
from nnctl.train import Callback, Trainer, TrainingState

DONE = ("finished", "diverged", "failed")  # a trial that ended so: --resume never runs it again
STATUSES = (*DONE, "interrupted", "pending")  # a trial's status (TrialOutcome, trials.csv)
MAX_PROBLEMS_SHOWN = 3


@dataclass
class SweepPlan:
    """What a sweep will train: the resolved config, the config as written, and every trial in order."""

    path: Path  # the config file, for messages
    config: Config  # resolved; its sweep section too (metric, goal, seeds filled in)
    source: dict[str, Any]  # as written, --set applied, data paths absolute, no sweep section
    trials: list[Trial]
    data: DataCache = field(default_factory=lambda: DataCache())  # read while validating (the Ray backend's)
    data_keys: dict[int, str] = field(default_factory=dict)  # each point's data_key
    costs: dict[int, float] = field(default_factory=dict)  # each point's estimated work (`work`)

    @property
    def sweep(self) -> SweepConfig:
        assert self.config.sweep is not None  # a plan is only made from a config with a sweep section
        return self.config.sweep

    @property
    def metric(self) -> str:
        return str(self.sweep.metric)

    @property
    def maximize(self) -> bool:
        return self.sweep.goal == "maximize"

    @property
    def metric_columns(self) -> list[str]:
        """The history.csv columns trials.csv reports at each trial's best epoch."""
        return metric_columns(self.config)

    def label(self, trial: Trial) -> str:
        return f"{self.path}: sweep trial {trial.number} ({trial.label()}, seed {trial.seed})"

    def trial_config(self, trial: Trial) -> Config:
        return trial_config(self.source, trial, self.label(trial))


def metric_columns(config: Config) -> list[str]:
    """The history.csv columns a sweep can rank by (and trials.csv reports): losses and the task's metric."""
    metric = Task(config.objective.kind).metric_name
    return ["train_loss", "validation_loss", f"train_{metric}", f"validation_{metric}"]


def trial_config(source: dict[str, Any], trial: Trial, label: str) -> Config:
    """The sweep's config as written with the trial's keys set exactly as `--set` sets them."""
    raw = copy.deepcopy(source)
    apply_overrides(raw, trial.overrides(), label)
    config = validate_config(raw, label)
    config._source = label
    return config


def data_key(config: Config) -> str:
    """What the loaded data depend on: trials with the same key share one `LoadedData` (the split is per trial)."""
    data = config.data.model_dump(mode="json", exclude={"validation_split"})
    return json.dumps({"data": data, "dtype": config.dtype, "objective": config.objective.kind}, sort_keys=True)


class DataCache:
    """Loaded data by data_key, each read once: shared by every trial a worker runs (and the sweep's validation)."""

    def __init__(self) -> None:
        self.loaded: dict[str, LoadedData] = {}

    def load(self, config: Config, key: str | None = None) -> LoadedData:
        """The config's data (`key`: its data_key, when known)."""
        key = data_key(config) if key is None else key
        if key not in self.loaded:
            self.loaded[key] = read_data(config)
        return self.loaded[key]

    def clear(self) -> None:
        self.loaded.clear()


# ----------------------------------------------------------------------------- the plan, validated


def plan_sweep(path: Path, overrides: list[str]) -> SweepPlan:
    """Read a config with a sweep section and validate the whole sweep: its keys, every point's config and
    network against the data (read once). Nothing is written; any problem is a ConfigError naming the trial."""
    raw, touched = read_config(path, overrides)
    config = resolve_config(raw, path, touched)
    if config.sweep is None:
        raise ConfigError(f"{path}: has no sweep: section; add one to sweep (docs/reference.md#sweeps)")
    return make_plan(path, config, raw)


def make_plan(path: Path, config: Config, raw: dict[str, Any]) -> SweepPlan:
    """The plan of a resolved `config` and the `raw` config it came from (as written in the file at `path`, --set
    applied: its data paths relative to that file's folder)."""
    source = {key: value for key, value in raw.items() if key != "sweep"}
    source["name"] = config.name
    source["data"] = dict(source["data"])
    absolute_data_paths(source, path.resolve().parent, path)
    resolve_sweep(config, path)
    plan = SweepPlan(path, config, source, trials(config.sweep, config.seed))  # type: ignore[arg-type]
    check_keys(plan)
    check_trials(plan)
    return plan


def resolve_sweep(config: Config, path: Path) -> None:
    """Fill in the sweep's defaults: the metric (validation_loss, or train_loss without validation data), its
    goal (maximize accuracy, minimize the rest) and the seeds ([seed]); a metric must be a history.csv column."""
    sweep, data = config.sweep, config.data
    assert sweep is not None
    validated = data.validation is not None or bool(data.validation_split)
    columns = metric_columns(config)
    chosen = sweep.metric or ("validation_loss" if validated else "train_loss")
    if chosen not in columns:
        spelled = "validation_" + chosen.removeprefix("val_")  # the display's abbreviation
        hint = f" (did you mean {spelled!r}?)" if spelled in columns else suggest(chosen, columns)
        raise ConfigError(
            f"{path}: sweep.metric: {chosen!r} is not a column of history.csv{hint}; "
            f"expected one of {', '.join(columns)}"
        )
    if chosen.startswith("validation_") and not validated:
        raise ConfigError(
            f"{path}: sweep.metric: {chosen} needs validation data; set data.validation or data.validation_split, "
            f"or use train_{chosen.removeprefix('validation_')}"
        )
    sweep.metric = chosen
    sweep.goal = sweep.goal or ("maximize" if chosen.endswith("accuracy") else "minimize")
    sweep.seeds = sweep.seeds or [config.seed]


def check_keys(plan: SweepPlan) -> None:
    """Every parameter key names a config key (`sweep.parameters.KEY: unknown key (did you mean …?)`)."""
    schema = registered(Config)
    for key, values in plan.sweep.parameters.items():
        value = values.bounds[0] if isinstance(values, Distribution) else values[0]
        raw = copy.deepcopy(plan.source)
        set_key(raw, key, value, f"{plan.path}: sweep.parameters.{key}")  # as a trial's --set sets it
        try:
            schema.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                at = normalized(dotted(resolve(schema, tuple(err["loc"]))[0]))
                if err["type"] == "extra_forbidden" and f"{normalized(key)}.".startswith(f"{at}."):
                    problem = describe(err, schema, raw)
                    problem = problem.removeprefix(f"{key}: ").removeprefix(f"{normalized(key)}: ")
                    raise ConfigError(f"{plan.path}: sweep.parameters.{key}: {problem}") from None


def check_trials(plan: SweepPlan) -> None:
    """Build every point's config and network against the data (read once per data_key, into `plan.data`);
    errors name the trial. Each point's data_key (`plan.data_keys`) and work (`plan.costs`) are recorded."""
    problems: list[str] = []
    firsts = {trial.point: trial for trial in reversed(plan.trials)}  # a point's first trial (seeds don't matter)
    for trial in sorted(firsts.values(), key=lambda t: t.number):
        try:
            config = plan.trial_config(trial)
            plan.data_keys[trial.point] = key = data_key(config)
            loaded = plan.data.load(config, key)
            network = build_for_data(config, loaded.encoding, streams(config.seed)["init"])
            plan.costs[trial.point] = work(config, network, len(loaded.train))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        shown = "\n".join(problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        raise ConfigError(shown + (f"\n(and {more} more trial(s) with problems)" if more > 0 else ""))


def work(config: Config, network: Network, rows: int) -> float:
    """A trial's work, roughly (it only orders trials): epochs × rows × (weights + activations per row)."""
    weights = sum(param.size for _, param, _ in network.parameters())
    widths = sum(getattr(layer.options, "units", 0) or 0 for layer in config.layers)
    return float(config.training.epochs) * rows * (weights + widths)


def dispatch_order(plan: SweepPlan, trials: list[Trial]) -> list[Trial]:
    """The order trials start in: the most work first, so the last to run are short and end together (trial
    order among equals). They are still numbered, recorded and ranked in trial order."""
    return sorted(trials, key=lambda trial: -plan.costs.get(trial.point, 0.0))


# ----------------------------------------------------------------------------- one trial, in a worker


@dataclass(frozen=True)
class TrialTask:
    """What a worker needs to run one trial (small and picklable)."""

    trial: Trial
    source: dict[str, Any]
    label: str
    run: Path  # the trial's run directory
    resume: bool  # continue the run directory's checkpoint
    command: tuple[str, ...] = ()  # the sweep's command line: the run's provenance, its lock's holder


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended (one of STATUSES): finished, interrupted, diverged, failed (with `error`), or pending
    (never started)."""

    number: int
    status: str
    error: str = ""


Send = Callable[[str, int, dict[str, Any]], None]  # (kind, trial number, payload): "begin" or "epoch"


class TrialCallback(Callback):
    """A trial's progress for the sweep's display (epoch ends, at most one per `every` seconds) and its stop
    switch: `stop` makes the trainer stop after its current batch and save the checkpoint."""

    def __init__(self, number: int, send: Send, every: float = 0.25) -> None:
        self.number, self.send, self.every = number, send, every
        self.trainer: Trainer | None = None
        self.stopping = False
        self._last = -math.inf

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer
        if self.stopping:  # asked before the trainer existed
            trainer.request_stop()

    def stop(self) -> None:
        self.stopping = True
        if self.trainer is not None:
            self.trainer.request_stop()

    def on_train_begin(self, state: TrainingState, epochs: int, n_batches: int) -> None:
        self.send("begin", self.number, {"epoch": state.epoch, "epochs": epochs})

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.send("epoch", self.number, {k: v for k, v in record.items() if k != "seconds"})


def run_trial(
    task: TrialTask, load: Callable[[Config], LoadedData], send: Send, should_stop: Callable[[], bool]
) -> TrialOutcome:
    """Train one trial into `task.run` (or resume it); every error becomes the trial's outcome, never raised.
    `should_stop` is polled (by a thread) while it trains: once true, the trial stops and saves its checkpoint."""
    number = task.trial.number
    if should_stop():
        return TrialOutcome(number, "pending")
    callback = TrialCallback(number, send)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(should_stop, callback, done), daemon=True)
    watcher.start()
    try:
        return _train(task, load, callback)
    finally:
        done.set()


def _watch(should_stop: Callable[[], bool], callback: TrialCallback, done: threading.Event) -> None:
    while not done.wait(0.1):
        if should_stop():
            callback.stop()
            return


def _train(task: TrialTask, load: Callable[[Config], LoadedData], callback: TrialCallback) -> TrialOutcome:
    from nnctl.experiment import train

    number = task.trial.number
    try:
        config = trial_config(task.source, task.trial, task.label)
        result = train(
            config,
            out=task.run,
            force=not task.resume,
            resume=task.run if task.resume else None,
            callback=callback,
            command=list(task.command),
            data=load(config),
        )
    except DivergenceError as exc:
        return TrialOutcome(number, "diverged", str(exc))
    except NnctlError as exc:
        return TrialOutcome(number, "failed", str(exc))
    except Exception as exc:  # an nnctl bug, or a resource running out: this trial fails, the others go on
        return TrialOutcome(number, "failed", f"internal error: {type(exc).__name__}: {exc}")
    return TrialOutcome(number, "finished" if result.status in FINISHED else "interrupted")


# ----------------------------------------------------------------------------- results


@dataclass
class PointResult:
    """One point's finished trials: the metric over its seeds."""

    point: int
    params: dict[str, Any]
    trials: list[int]
    values: list[float]
    best_trial: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """The sample standard deviation over seeds (None for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def ranking(plan: SweepPlan, rows: dict[int, dict[str, Any]]) -> list[PointResult]:
    """Points with at least one finished trial, best first by the mean of the metric over their seeds."""
    sign = -1.0 if plan.maximize else 1.0
    points: dict[int, PointResult] = {}
    for trial in plan.trials:
        row = rows.get(trial.number, {})
        value = row.get(plan.metric)
        if row.get("status") != "finished" or not isinstance(value, float | int) or not math.isfinite(value):
            continue
        point = points.setdefault(trial.point, PointResult(trial.point, trial.params, [], [], trial.number))
        best_so_far = rows[point.best_trial].get(plan.metric) if point.values else None
        if best_so_far is None or sign * value < sign * best_so_far:
            point.best_trial = trial.number
        point.trials.append(trial.number)
        point.values.append(float(value))
    return sorted(points.values(), key=lambda p: (sign * p.mean, p.point))


def resume_plan(directory: Path, config: Path | None, overrides: list[str]) -> SweepPlan:
    """The plan of the sweep in `directory` (from its sweep.yaml); a CONFIG given with --resume must be that
    sweep's config (with the same --set)."""
    from nnctl.experiment import config_differences
    from nnctl.sweepdir import SWEEP_YAML, load_source

    file = directory / SWEEP_YAML
    if not file.is_file():
        raise ConfigError(f"{directory}: not a sweep directory ({SWEEP_YAML} is missing)")
    if overrides and config is None:
        raise ConfigError(f"--set with --resume {directory}: a sweep resumes with its own config; leave --set out")
    saved = load_config(file)
    plan = make_plan(file, saved, load_source(directory))
    if config is not None:
        given = load_config(config, overrides)
        if given.sweep is not None:
            resolve_sweep(given, config)
        differing = config_differences(given, saved, ignored=("name", "output"))  # not epochs: trials ran with them
        if differing:
            raise ConfigError(
                f"cannot resume {directory} with {config}: the configs differ in {', '.join(sorted(differing))}; "
                f"leave CONFIG out to use the sweep's own ({file})"
            )
    return plan
