"""Runs compared (docs/reference.md#nnctl-runs): every run under a directory as one table, and two runs diffed.

A run is a directory holding `model.json`. Only `model.json`, `config.yaml` and `history.csv` are read
(never the weights or the data), with the standard library only, so listing hundreds of runs stays fast.
Config keys are compared flattened to the dotted paths `--set` takes (`layers.1.fully_connected.units`).
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnctl.errors import NnctlError, RunError

MODEL_JSON, CONFIG_YAML, HISTORY_CSV = "model.json", "config.yaml", "history.csv"  # nnctl.run writes them
TEST_METRICS_JSON = "test_metrics.json"  # data.test's scores, written once training ends
SKIP_DIRS = {"checkpoint", "__pycache__"}  # never hold runs; hidden directories are skipped too
FINISHED = frozenset({"epochs", "early_stopping", "tolerance"})  # model.json `status` of a run that ended normally
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10× faster on many configs
DATA_FILES = ("train", "validation", "test")  # config.yaml's `data` keys that name files


@dataclass
class RunRecord:
    """What `nnctl runs` and `nnctl diff` know about one run, read from its small files."""

    path: Path
    name: str  # as listed: the path relative to the listing's directory
    meta: dict[str, Any]
    config: dict[str, Any]  # flattened: dotted key → value
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None  # test_metrics.json, when the run scored data.test

    @property
    def status(self) -> str:
        """finished, interrupted, diverged, or training (in progress, or killed before its end: resumable)."""
        raw = str(self.meta.get("status") or "training")
        return "finished" if raw in FINISHED else raw

    @property
    def epochs(self) -> int:
        """Epochs completed: model.json's count, else history.csv's rows."""
        epochs = self.meta.get("epochs_completed")
        return epochs if isinstance(epochs, int) else len(self.history)

    @property
    def best_epoch(self) -> int | None:
        best = self.meta.get("best_epoch")
        return best if isinstance(best, int) and best > 0 else None

    @property
    def best(self) -> dict[str, Any]:
        """history.csv's row at the best epoch (the last row when no best epoch is recorded)."""
        rows = [r for r in self.history if r.get("epoch") == self.best_epoch] or self.history[-1:]
        return rows[0] if rows else {}

    @property
    def metrics(self) -> dict[str, Any]:
        """Epochs, best epoch, the losses and metrics at the best epoch, training seconds."""
        out: dict[str, Any] = {
            "status": self.status,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
        }
        metric = "rmse" if self.meta.get("task") == "regression" else "accuracy"  # as nnctl.task names it
        columns = ["train_loss", "validation_loss", f"train_{metric}", f"validation_{metric}"]
        out.update(dict.fromkeys(columns))  # empty when no epoch finished
        out.update({k: v for k, v in self.best.items() if k not in ("epoch", "learning_rate", "grad_norm", "seconds")})
        out["seconds"] = round(self.seconds, 3) if self.seconds is not None else None
        if self.test is not None:  # the headline test figure, next to the validation one
            out[f"test_{metric}"] = self.test.get(metric)
        return out

    @property
    def seconds(self) -> float | None:
        """Training time: the sum of history.csv's `seconds` (None without a history)."""
        return sum(r.get("seconds") or 0.0 for r in self.history) if self.history else None

    @property
    def created(self) -> str | None:
        provenance = self.meta.get("provenance")
        return provenance.get("created") if isinstance(provenance, dict) else None

    def data_hash(self, which: str) -> str | None:
        provenance = self.meta.get("provenance")
        data = provenance.get("data") if isinstance(provenance, dict) else None
        entry = data.get(which) if isinstance(data, dict) else None
        return entry.get("sha256") if isinstance(entry, dict) else None

    @property
    def has_provenance(self) -> bool:
        return self.data_hash("train") is not None


# ----------------------------------------------------------------------------- reading


def find_runs(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) that holds a model.json, in natural order."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        if MODEL_JSON in files:
            found.append(Path(folder))
    return sorted(found, key=natural_key)


def natural_key(path: Path) -> list[Any]:
    """`run-2` before `run-10`: digit runs compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", path.as_posix()) if p]


def read_run(path: Path, name: str | None = None) -> RunRecord:
    """One run's model.json, config.yaml (flattened), history.csv and test_metrics.json; a broken model.json is a
    RunError."""
    path = Path(path)
    meta = read_meta(path)
    return RunRecord(path, name or path.name, meta, flatten(_read_config(path)), read_history(path), _read_test(path))


def read_meta(path: Path) -> dict[str, Any]:
    """A run's model.json; a missing or broken one is a RunError."""
    if not (path / MODEL_JSON).is_file():
        raise RunError(f"{path}: not a run directory ({MODEL_JSON} not found)")
    try:
        meta = json.loads((path / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path / MODEL_JSON}: unreadable: {exc}") from None
    if not isinstance(meta, dict):
        raise RunError(f"{path / MODEL_JSON}: expected a JSON object")
    return meta


def _read_test(path: Path) -> dict[str, Any] | None:
    try:
        test = json.loads((path / TEST_METRICS_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return test if isinstance(test, dict) else None


def _read_config(path: Path) -> Any:
    """config.yaml, its data files as absolute paths (it stores them relative to the run directory)."""
    try:
        config = yaml.load((path / CONFIG_YAML).read_text(encoding="utf-8"), Loader=LOADER)  # noqa: S506 (safe)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # the model and history still say a lot
    data = config.get("data") if isinstance(config, dict) else None
    for key in DATA_FILES:
        if isinstance(data, dict) and isinstance(data.get(key), str):
            data[key] = os.path.normpath(os.path.join(os.path.abspath(path), data[key]))
    return config


def read_history(path: Path) -> list[dict[str, Any]]:
    """A run's history.csv, one dict per epoch (numbers as numbers, NaN and empty cells as None); [] if unreadable."""
    try:
        with open(path / HISTORY_CSV, newline="", encoding="utf-8") as f:
            return [{k: _number(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _number(text: str | None) -> Any:
    """A history.csv cell: int, float, or None for an empty cell."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return text
        return value if math.isfinite(value) else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as {dotted key: leaf}, list items by index (`layers.1.fully_connected.units`);
    a list of plain values (`data.features`) is one leaf."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = enumerate(value)
    else:
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


# ----------------------------------------------------------------------------- comparing


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose value is not the same in every config (missing from one counts as differing). A key that
    is a section elsewhere (`training.early_stopping`: null here, {patience: …} there) yields to the section's keys,
    unless it is a name somewhere (`layers.2: relu` there, `layers.2.leaky_relu.alpha` here)."""
    keys: dict[str, None] = {}
    for config in configs:
        keys.update(dict.fromkeys(config))
    missing = object()
    differing = [k for k in keys if len({json.dumps(c.get(k, missing), default=str) for c in configs}) > 1]
    # a bare name stays though (`layers.2: relu` against `layers.2.leaky_relu.alpha`): the layer itself changed
    named = {k for k in differing if any(isinstance(c.get(k), str) for c in configs)}
    return [k for k in differing if k in named or not any(other.startswith(k + ".") for other in differing)]


def short_names(keys: list[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """Each dotted key's shortest ending that names it alone: `optimizer.learning_rate` → `learning_rate`. An ending
    shared with another of `keys`, equal to a key in `taken` (`name` for `optimizer.name`), or starting with a list
    index (`2` for `layers.2`) is not short enough."""
    parts = {key: key.split(".") for key in keys}
    taken = set(taken) - set(keys)
    out = {}
    for key, p in parts.items():
        out[key] = key
        for n in range(1, len(p)):
            tail = p[-n:]
            if tail[0].isdigit() or ".".join(tail) in taken:
                continue
            if not any(q[-n:] == tail for other, q in parts.items() if other != key):
                out[key] = ".".join(tail)
                break
    return out


def list_runs(root: Path) -> tuple[list[RunRecord], list[str]]:
    """Every readable run under `root` and one warning per run that could not be read."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: directory not found (nnctl runs DIR lists the runs under DIR)")
    records, warnings = [], []
    for path in find_runs(root):
        relative = path.relative_to(root).as_posix()
        try:
            records.append(read_run(path, path.name if relative == "." else relative))
        except RunError as exc:
            warnings.append(f"skipped {path}: {exc}")
    return records, warnings


def all_keys(records: list[RunRecord]) -> set[str]:
    return {key for r in records for key in r.config}


def within_experiments(keys: list[str], records: list[RunRecord]) -> list[str]:
    """`keys` with those that differ between runs of one config `name` (a learning rate tried on iris) before
    those that only tell experiments apart (iris's data from digits'): the former are what a comparison is for."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(json.dumps(r.config.get("name"), default=str), []).append(r.config)
    varied = {k for group in groups.values() if len(group) > 1 for k in differing_keys(group)}
    return [k for k in keys if k in varied] + [k for k in keys if k not in varied]


def table_rows(records: list[RunRecord]) -> tuple[list[dict[str, Any]], list[str]]:
    """One `nnctl runs` row per run (its params: only the config keys that differ) and those keys, the ones that
    differ within an experiment first."""
    keys = within_experiments(differing_keys([r.config for r in records]), records) if len(records) > 1 else []
    rows = []
    for r in records:
        row = {"run": r.name, "path": str(r.path)} | r.metrics | {"created": r.created}
        row["params"] = {k: r.config.get(k) for k in keys}
        rows.append(row)
    return rows, keys


def sort_rows(rows: list[dict[str, Any]], key: str, short: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Rows ordered by a column or a config key (dotted, or its `short` name); `-KEY` descending; empty values last."""
    descending, key = key.startswith("-"), key.lstrip("-")
    key = "validation_" + key[len("val_") :] if key.startswith("val_") else {"best": "best_epoch"}.get(key, key)
    columns = list(dict.fromkeys(k for row in rows for k in row if k != "params"))
    params = list(dict.fromkeys(k for row in rows for k in row["params"]))
    short = short if short is not None else short_names(params, columns)
    full = {short[k]: k for k in params if k in short} | {k: k for k in params}
    if key not in columns and key not in full:
        choices = columns + sorted(set(full))
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)  # (nnctl.schema's, without pydantic)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise NnctlError(f"--sort: unknown column {key!r}{hint}; expected one of: {', '.join(choices)}")

    def value(row: dict[str, Any]) -> Any:
        return row.get(key) if key in columns else row["params"].get(full[key])

    present = [row for row in rows if value(row) is not None]
    absent = [row for row in rows if value(row) is None]
    return sorted(present, key=lambda row: _orderable(value(row)), reverse=descending) + absent


def _orderable(value: Any) -> tuple[int, Any]:
    """Numbers before text, each in its own order (a column may mix them)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, json.dumps(value, default=str) if not isinstance(value, str) else value)


def diff_runs(a: Path, b: Path) -> dict[str, Any]:
    """`nnctl diff`: config keys that differ, both runs' best-epoch metrics, and whether their data were the same."""
    ra, rb = read_run(a, str(a)), read_run(b, str(b))
    config = [{"key": k, "a": ra.config.get(k), "b": rb.config.get(k)} for k in differing_keys([ra.config, rb.config])]
    ma, mb = ra.metrics, rb.metrics
    metrics = {k: {"a": ma.get(k), "b": mb.get(k)} for k in dict.fromkeys([*ma, *mb])}
    data = {
        which: {"a": ra.data_hash(which), "b": rb.data_hash(which)}
        for which in ("train", "validation")
        if ra.data_hash(which) or rb.data_hash(which)
    }
    same = all(d["a"] == d["b"] for d in data.values()) if ra.has_provenance and rb.has_provenance else None
    return {"a": str(a), "b": str(b), "config": config, "metrics": metrics, "same_data": same, "data": data}


def iter_labels(records: list[RunRecord], limit: int = 40) -> Iterator[str]:
    """A legend label per run: its name, with the differing config values when they fit in `limit` characters."""
    keys = differing_keys([r.config for r in records]) if len(records) > 1 else []
    short = short_names(keys, all_keys(records))
    for r in records:
        values = ", ".join(f"{short[k]}={r.config.get(k)}" for k in keys)
        yield f"{r.name} ({values})" if values and len(values) <= limit else r.name
