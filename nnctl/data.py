"""Tabular data with pandas: feature matrices, target encoding (docs/reference.md#config) and the validation split.

Every problem is a DataError naming the file, the column and the first offending row
(rows are counted from 1 after the header; in a CSV the file line is row + 1, in Parquet the row group
is named instead: see nnctl.formats). Files are read whole or chunk by chunk by nnctl.loading.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nnctl.errors import DataError
from nnctl.formats import CSV_OPTIONS, RowText, check_file, columns, csv_errors, csv_header, csv_row, repeated_name
from nnctl.objectives import objective_class
from nnctl.schema import shorten, shorten_list
from nnctl.task import Task

if TYPE_CHECKING:
    from nnctl.tabular import Preprocessing, TargetScale


@dataclass
class Encoding:
    """How raw columns become arrays: saved with a model so eval and predict apply it again."""

    features: list[str]
    targets: list[str]
    objective: str
    classes: list[Any] = field(default_factory=list)  # cross_entropy, or one-column log_loss
    # nnctl.tabular: categorical encoders and fills (None: every feature numeric, as it is), target scaling
    preprocessing: Preprocessing | None = None
    target_scale: TargetScale | None = None
    class_weights: list[float] | None = None  # per class, in class order (data.class_weight), for the record

    @property
    def task(self) -> Task:
        return Task(self.objective, self.n_outputs)

    @property
    def n_features(self) -> int:
        """The network's input width: the features after encoding."""
        return len(self.features) if self.preprocessing is None else self.preprocessing.width

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if objective_class(self.objective).targets == "classes" else len(self.targets)


class Dataset:
    """Arrays ready for a network: X (N, D), Y (N, K) in the model's encoding.

    X may be a view: `rows` (N,) picks this set's rows out of a larger stored `matrix` (M, D), perhaps
    memory-mapped from the cache, so a validation split copies nothing big. The trainer gathers from
    `matrix` through `rows`; `X` itself builds the (N, D) array, for small sets and tests.
    """

    def __init__(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        source: str,
        rows: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        side: pd.DataFrame | None = None,
        at: RowText = csv_row,
    ) -> None:
        self.matrix, self.Y, self.source, self.rows = X, Y, source, rows
        self.weights = weights  # (N,) each row's loss weight (data.class_weight), or None
        # As read, before encoding (nnctl.loading.read_files): the columns kept as parsed (targets, categorical
        # features), and how messages name a row of the file
        self.side, self.at = side, at

    @property
    def X(self) -> np.ndarray:  # noqa: N802  (the SPEC's symbol)
        return self.matrix if self.rows is None else self.matrix[self.rows]

    def __len__(self) -> int:
        return len(self.Y)

    def subset(self, index: np.ndarray, source: str) -> Dataset:
        """Rows `index` of this set, as a view of the same stored matrix (Y, small, is copied)."""
        rows = index if self.rows is None else self.rows[index]
        return Dataset(self.matrix, self.Y[index], source, rows, None if self.weights is None else self.weights[index])


def read_csv(path: str | Path, what: str = "data") -> pd.DataFrame:
    """Read a CSV; a missing, empty or header-only file is a DataError naming it."""
    path = Path(path)
    check_file(path, what)
    # A pipe can be read only once: it is read whole, and parsed (and its header looked at) from memory.
    source: Path | io.BytesIO = path if path.is_file() else io.BytesIO(path.read_bytes())
    # pandas' C engine; on a large local file it parses in parallel threads over a memory map (pandas ≥ 3.1)
    # Only empty cells are missing: "None", "NA" or "null" can be real class labels.
    with csv_errors(path, what), warnings.catch_warnings():  # mixed types are reported as the data error they are
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        frame = pd.read_csv(source, **CSV_OPTIONS)
    if len(frame) == 0:
        raise DataError(f"{what}: {path} has a header but no rows")
    if any(isinstance(c, str) and "." in c and c.rsplit(".", 1)[0] in frame.columns for c in frame.columns):
        # pandas renames a repeated `a` to `a.1`; the header line itself tells that from a real `a.1`
        if isinstance(source, io.BytesIO):
            source.seek(0)
            names = csv_header(io.TextIOWrapper(source, "utf-8-sig", newline=""), path, what)
        else:
            names = columns(path, what)  # raises for a repeated name
        repeated = repeated_name(names)
        if repeated is not None:
            raise DataError(f"{what}: {path} has a repeated column name: {repeated!r}; expected unique names")
    return frame


# How CSV files spell a missing value; in a feature column these are missing, in a label column real labels.
NA_SPELLINGS = {"nan", "-nan", "na", "n/a", "null", "none", "#n/a", "<na>"}


def spelled_missing(values: pd.Series) -> pd.Series:
    """Cells that spell a missing value (`NA`, `null`, …, any case and spacing): missing in a feature column."""
    return values.astype(str).str.strip().str.lower().isin(NA_SPELLINGS) & values.notna()


def _shown(value: Any) -> str:
    """A cell as the message shows it: `1e+39`, `'abc'`, not `np.float64(1e+39)`; never more than a line."""
    return shorten(value.item() if isinstance(value, np.generic) else value)


def _require_columns(frame: pd.DataFrame, columns: list[str], path: str, key: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns[:20])) + (" ..." if len(frame.columns) > 20 else "")
        other = next((s for s in (";", "\t", "|") if len(frame.columns) == 1 and s in str(frame.columns[0])), None)
        hint = f" (it looks separated by {other!r}; expected commas)" if other else ""
        raise DataError(f"{key}: column(s) {', '.join(map(repr, missing))} not found in {path}; it has: {have}{hint}")


# What a message adds, by the key being read, when a cell is text or missing where a number was expected.
TEXT_HINTS = {
    "data.features": "; if the column holds categories, declare it in data.categorical",
    "data.target": "; a regression objective needs numbers: for class labels use cross_entropy (classes) "
    "or log_loss (two classes)",
}
MISSING_HINTS = {"data.features": "; set data.missing (mean, median, most_frequent or constant) to fill them in"}


def feature_matrix(
    frame: pd.DataFrame,
    features: list[str],
    path: str,
    dtype: Any = np.float64,
    key: str = "data.features",
    out: np.ndarray | None = None,
    at: RowText = csv_row,
    missing_ok: bool = False,
) -> np.ndarray:
    """The feature columns as a C-ordered (N, D) array in `dtype`, written into `out` when given (a chunk's rows
    of the final matrix). Column by column (`numeric_column`); a missing or non-numeric value names column and row.
    With `missing_ok`, missing values (blank, or an NA spelling) become NaN (data.missing fills them later)."""
    _require_columns(frame, features, path, key)
    X = np.empty((len(frame), len(features)), dtype=dtype) if out is None else out
    for j, column in enumerate(features):
        numeric_column(frame[column], column, path, X[:, j], at, finite=True, missing_ok=missing_ok, key=key)
    return X


def not_finite(value: Any, where: str, dtype: np.dtype, key: str = "") -> DataError:
    """The error for a cell that is missing, infinite or too large for `dtype` (`where` names file, column, row)."""
    hint = ""
    if pd.isna(value):
        expected, what, hint = "a number", "a missing value", MISSING_HINTS.get(key, "")
    elif np.isfinite(float(value)):
        expected, what = f"a number within {dtype.name} range (±{np.finfo(dtype).max:.3g})", _shown(value)
    else:
        expected, what = "a finite number", _shown(value)
    return DataError(f"{where}: expected {expected}, got {what}{hint}")


def numeric_column(
    values: pd.Series,
    column: str,
    path: str,
    out: np.ndarray,
    at: RowText = csv_row,
    finite: bool = False,
    missing_ok: bool = False,
    key: str = "data.features",
) -> None:
    """One column's values as numbers in `out`'s dtype: the per-column conversion step. A value that is not a
    number names its row; a blank (NaN), or one too large for the dtype (inf), is reported here when `finite`,
    else by the caller. With `missing_ok`, an NA spelling is missing (NaN) and `finite` lets NaN pass."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() & values.notna()
        if missing_ok and bad.any():
            bad &= ~spelled_missing(values)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            found = values.iloc[row]
            missing = isinstance(found, str) and found.strip().lower() in NA_SPELLINGS
            hint = MISSING_HINTS.get(key, "") if missing else TEXT_HINTS.get(key, "")
            raise DataError(
                f"{path}: column {column!r}, {at(row)}: "
                f"expected a number, got {'a missing value ' if missing else ''}{_shown(found)}{hint}"
            )
        values = numeric
    with np.errstate(over="ignore", invalid="ignore"):  # a value too large for float32 becomes inf
        out[...] = values.to_numpy(dtype=out.dtype, na_value=np.nan)
    if finite:
        ok = ~np.isinf(out) if missing_ok else np.isfinite(out)
        if not ok.all():
            row = int(np.argmin(ok))
            raise not_finite(values.iloc[row], f"{path}: column {column!r}, {at(row)}", out.dtype, key)


def resolve_features(names: list[str], path: str, targets: list[str], features: list[str] | None) -> list[str]:
    """The feature columns of a file with columns `names`: the given ones, or every column but the targets."""
    header = pd.DataFrame(columns=names)
    _require_columns(header, targets, path, "data.target")
    if features is None:
        features = [c for c in names if c not in targets]
        if not features:
            raise DataError(f"data.features: {path} has no columns besides the target(s) {targets}")
    _require_columns(header, features, path, "data.features")
    return list(features)


def infer_encoding(
    frame: pd.DataFrame,
    path: str,
    targets: list[str],
    features: list[str] | None,
    objective: str,
    at: RowText = csv_row,
) -> Encoding:
    """Decide feature columns and classes from the training file (the target rules of docs/reference.md#config);
    the targets' values are checked when `encode_targets` encodes them."""
    if features is None:
        features = resolve_features([str(c) for c in frame.columns], path, targets, features)
    _require_columns(frame, targets, path, "data.target")
    encoding = Encoding(features=list(features), targets=list(targets), objective=objective)
    task = encoding.task
    if task.targets == "classes" or (task.targets == "binary" and not task.multilabel):
        encoding.classes = _classes(_labels(frame, targets[0], path, at), path, objective, task.targets == "binary")
    return encoding


def _classes(column: pd.Series, path: str, objective: str, binary: bool) -> list[Any]:
    """The sorted classes of a label column: two for a binary objective (0/1 whenever the labels are), at least two
    otherwise."""
    classes = _sorted_classes(column.unique())
    if binary and set(classes) <= {0, 1} and all(not isinstance(c, str) for c in classes):
        classes = [0, 1]
    if binary and len(classes) != 2:
        raise DataError(
            f"data.target: {objective} needs two classes in column {column.name!r} of {path}, "
            f"found {shorten_list(classes, 'classes')}; for more classes use cross_entropy and softmax"
        )
    if len(classes) < 2:
        raise DataError(f"{path}: column {column.name!r} has only one class ({classes[0]!r}); need at least 2")
    return classes


def _labels(frame: pd.DataFrame, column: str, path: str, at: RowText = csv_row) -> pd.Series:
    values = frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"{path}: column {column!r}, {at(row)}: missing class label")
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        values = values.astype(str).str.strip()  # "a" and "a " are one class
    return values


def _sorted_classes(values: Any) -> list[Any]:
    """Classes in sorted order as plain JSON-able Python values (ints stay ints, else strings)."""
    items = [v.item() if hasattr(v, "item") else v for v in values]
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        return sorted(int(v) for v in items)
    if all(isinstance(v, float) and float(v).is_integer() for v in items):
        return sorted(int(v) for v in items)
    return sorted(str(v) for v in items)


def _check_binary(values: pd.Series, column: str, path: str, at: RowText = csv_row) -> None:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = ~numeric.isin([0, 1]).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{path}: column {column!r}, {at(row)}: log_loss over several columns "
            f"expects 0 or 1, got {_shown(values.iloc[row])}"
        )


def encode_targets(
    frame: pd.DataFrame,
    encoding: Encoding,
    path: str,
    dtype: Any = np.float64,
    key: str = "data.target",
    at: RowText = csv_row,
) -> np.ndarray:
    """Y (N, K): one-hot classes, 0/1 for binary log_loss, numeric columns for squared_error."""
    _require_columns(frame, encoding.targets, path, key)
    if encoding.classes:
        column = encoding.targets[0]
        labels = _labels(frame, column, path, at)
        classes = encoding.classes
        as_text = isinstance(classes[0], str)
        values = labels.astype(str) if as_text else pd.to_numeric(labels, errors="coerce")
        index = pd.Index(classes).get_indexer(values)
        unknown = index < 0
        if unknown.any():
            row = int(np.argmax(unknown))
            raise DataError(
                f"{path}: column {column!r}, {at(row)}: label {_shown(labels.iloc[row])} "
                f"is not one of the model's {shorten_list(classes, 'classes')}"
            )
        if encoding.task.targets == "binary":
            return index.astype(dtype).reshape(-1, 1)
        Y = np.zeros((len(frame), len(classes)), dtype=dtype)
        Y[np.arange(len(frame)), index] = 1
        return Y
    if encoding.task.multilabel:
        for column in encoding.targets:
            _check_binary(frame[column], column, path, at)
    return feature_matrix(frame, encoding.targets, path, dtype, key, at=at)


def load_dataset(
    path: str | Path, encoding: Encoding, dtype: Any = np.float64, frame: pd.DataFrame | None = None
) -> Dataset:
    """Read a CSV (or use an already-read frame) and encode it as the model expects."""
    frame = read_csv(path) if frame is None else frame
    source = str(path)
    X = feature_matrix(frame, encoding.features, source, dtype)
    Y = encode_targets(frame, encoding, source, dtype)
    return Dataset(X, Y, source)


def split(
    dataset: Dataset, fraction: float, rng: np.random.Generator, labels: np.ndarray | None = None
) -> tuple[Dataset, Dataset]:
    """Hold out `fraction` of the rows, per class when `labels` (N,) are given (at least one row each side)."""
    n = len(dataset)
    order = rng.permutation(n)
    if labels is not None:
        held = []
        for label in np.unique(labels):
            members = order[labels[order] == label]
            take = int(round(fraction * len(members)))
            held.append(members[: min(max(take, 1 if len(members) > 1 else 0), len(members) - 1)])
        held_out = np.sort(np.concatenate(held))
    else:
        take = min(max(int(round(fraction * n)), 1), n - 1)
        held_out = np.sort(order[:take])
    if len(held_out) == 0 or len(held_out) == n:
        raise DataError(f"data.validation_split: {dataset.source} has {n} rows, too few to split off {fraction}")
    keep = np.setdiff1d(np.arange(n), held_out, assume_unique=True)
    return dataset.subset(keep, dataset.source), dataset.subset(held_out, f"{dataset.source} (validation split)")
