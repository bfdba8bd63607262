"""`nnctl init`: a commented starter config for a user's own CSV, which trains as it is.

The target decides the task: text labels or a few distinct integers are classes (two → logistic +
log_loss, more → softmax + cross_entropy), other numbers are regression (linear + squared_error).
The other columns are features, except identifiers (a name such as `id`, or a distinct integer in
every row), which are left out with a comment saying why. The network and optimiser are sized from
the number of rows; a validation split and early stopping are always on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from nnctl.data import read_csv, spelled_missing
from nnctl.errors import DataError
from nnctl.tabular import ID_MIN_ROWS, ID_NAMES, distinct_integers

MAX_CLASSES_AS_INTEGERS = 20  # integer targets with at most this many distinct values are read as classes


@dataclass
class Plan:
    """What the starter config will say, and why (the comments)."""

    objective: str
    output: str
    outputs: int
    classes: list[Any]
    features: list[str]
    left_out: dict[str, str] = field(default_factory=dict)  # column → reason
    categorical: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def plan(frame: pd.DataFrame, target: str, source: str) -> Plan:
    """Decide objective, output layer and features from the data."""
    if target not in frame.columns:
        have = ", ".join(map(str, frame.columns[:20]))
        raise DataError(f"--target: column {target!r} not found in {source}; it has: {have}")
    labels = frame[target].dropna()
    if labels.empty:
        raise DataError(f"{source}: column {target!r} has no values")
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    integers = numeric and bool((labels == labels.round()).all())
    distinct = labels.nunique()
    if numeric and not (integers and distinct <= MAX_CLASSES_AS_INTEGERS):
        result = Plan("squared_error", "linear", 1, [], [])
    elif distinct == 2:
        result = Plan("log_loss", "logistic", 1, sorted(labels.unique().tolist(), key=str), [])
    elif distinct > 2:
        result = Plan("cross_entropy", "softmax", int(distinct), sorted(labels.unique().tolist(), key=str), [])
    else:
        raise DataError(f"{source}: column {target!r} holds one value only; nothing to learn")
    for column in frame.columns:
        if column != target:
            _place(frame[column], str(column), result)
    if not result.features:
        raise DataError(f"{source}: no usable feature columns besides {target!r}")
    return result


def _place(values: pd.Series, name: str, result: Plan) -> None:
    """A feature, an identifier left out, or a text column (categorical, or left out with a reason)."""
    spelled = spelled_missing(values)
    if spelled.any():  # `NA`, `null`, … are missing values in a feature column, as training reads them
        values = values.where(~spelled)
        coerced = pd.to_numeric(values, errors="coerce")
        if (coerced.notna() | values.isna()).all() and coerced.notna().any():
            values = coerced
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if ID_NAMES.search(name):
        result.left_out[name] = "its name says it is an identifier"
        return
    if numeric and len(values) > ID_MIN_ROWS and distinct_integers(values.to_numpy()):  # as training warns
        result.left_out[name] = "a different whole number in every row: an identifier, not a measurement"
        return
    if not numeric:
        result.categorical.append(name)
    if values.isna().any():
        result.missing.append(name)
    result.features.append(name)


def sizes(rows: int) -> dict[str, Any]:
    """Network and training settings for a data set of `rows` rows."""
    if rows < 2_000:
        return {"hidden": [16], "learning_rate": 0.01, "batch_size": 16, "epochs": 300, "patience": 30}
    if rows < 50_000:
        return {"hidden": [64], "learning_rate": 0.003, "batch_size": 64, "epochs": 200, "patience": 20}
    return {"hidden": [128, 64], "learning_rate": 0.001, "batch_size": 256, "epochs": 50, "patience": 5}


def _scalar(value: Any) -> str:
    """A YAML scalar for `value`, quoted where YAML needs it."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def starter_config(data: Path, target: str, config_path: Path) -> str:
    """The text of a commented config for `data` (a CSV), its paths relative to `config_path`'s folder."""
    frame = read_csv(data, "DATA")
    decided = plan(frame, target, str(data))
    size = sizes(len(frame))
    relative = os.path.relpath(data.resolve(), config_path.resolve().parent)
    lines = [
        f"# A starter config for {data.name}, written by `nnctl init` ({len(frame):,} rows).",
        "# Train it with: nnctl train " + _scalar(str(config_path)),
        f"name: {_scalar(config_path.stem)}",
        "seed: 0",
        "data:",
        f"  train: {_scalar(relative)}   # relative to this file",
        "  validation_split: 0.2          # held out to watch for overfitting (early stopping below)",
        f"  target: {_scalar(target)}",
        *_task_comment(decided),
        "  features:",
        *[f"    - {_scalar(name)}" for name in decided.features],
        *[f"  # left out: {name}: {why}" for name, why in decided.left_out.items()],
        *_tabular_lines(decided),
        "layers:",
        "  - input: {normalize: zscore}   # standardise every feature with the training rows' mean and std",
        *[line for units in size["hidden"] for line in (f"  - fully_connected: {{units: {units}}}", "  - relu")],
        f"  - fully_connected: {{units: {decided.outputs}}}   # one output per {_per(decided)}",
        f"  - {decided.output}",
        f"objective: {decided.objective}",
        "optimizer:",
        "  name: adam",
        f"  learning_rate: {size['learning_rate']}",
        "training:",
        f"  epochs: {size['epochs']}",
        f"  batch_size: {size['batch_size']}",
        f"  early_stopping: {{patience: {size['patience']}}}   # keeps the best epoch's weights",
    ]
    return "\n".join(lines) + "\n"


def _task_comment(decided: Plan) -> list[str]:
    if decided.objective == "squared_error":
        return ["  # numbers: regression (linear output, squared error)"]
    shown = ", ".join(map(str, decided.classes[:10])) + (", …" if len(decided.classes) > 10 else "")
    if decided.objective == "log_loss":
        return [f"  # two classes ({shown}): logistic output, log loss"]
    return [f"  # {len(decided.classes)} classes ({shown}): softmax output, cross entropy"]


def _per(decided: Plan) -> str:
    return "target" if decided.objective in ("squared_error", "log_loss") else "class"


def _tabular_lines(decided: Plan) -> list[str]:
    lines = []
    if decided.objective == "squared_error":
        lines += ["  scale_target: true   # learn a standardised target; predictions and losses stay in its units"]
    if decided.categorical:
        lines += [
            "  categorical:   # text columns, one-hot encoded",
            *[f"    - {_scalar(c)}" for c in decided.categorical],
        ]
    if decided.missing:
        gaps = ", ".join(decided.missing[:5]) + (", …" if len(decided.missing) > 5 else "")
        lines += [
            f"  missing: median   # gaps in {gaps}: a number gets the training rows' median, text a category of its own"
        ]
    return lines


def write_starter(data: Path, target: str, out: Path | None = None, force: bool = False) -> Path:
    """Write the starter config (default: DATA's stem + .yaml next to the working directory); never over a file."""
    from nnctl.errors import ConfigError
    from nnctl.files import write_output

    path = out if out is not None else Path(f"{data.stem}.yaml")
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists; pass --force to replace it or -o to choose another file")
    write_output(path, starter_config(data, target, path).encode(), "config")
    return path
