"""Real tabular data (docs/reference.md#tabular-data): categorical columns, missing values, target scaling, class
weights — each fitted on the training rows only (after the validation split) and saved in model.json as JSON.

The network's input is laid out as the numeric feature columns (in the features' order, missing values filled
with their training statistic), then one block of one-hot columns per categorical column: its categories in
sorted order, then the missing-value category when training rows had missing values (and `missing` is not
`error`). A category never seen in training encodes as a row of zeros; `encode` returns a warning naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nnctl.data import NA_SPELLINGS, feature_matrix
from nnctl.errors import ConfigError, DataError
from nnctl.formats import RowText, csv_row
from nnctl.schema import shorten, shorten_list

MISSING = "(missing)"  # how names and warnings show the missing-value category
# Column names that say "identifier" (nnctl init leaves them out; training warns when `features` is omitted).
ID_NAMES = re.compile(r"^(id|index|idx|row|rowid|row_id|key|uuid|guid)$|(_id|Id|ID)$", re.IGNORECASE)
ID_MIN_ROWS = 20  # fewer rows than this are too few to call distinct integers an identifier
# Per categorical column, `category_keys` of it: worked out once, for fitting and encoding the training set alike.
Keys = dict[str, tuple[pd.Series, np.ndarray]]


# ----------------------------------------------------------------------------- categorical columns


def category_keys(values: pd.Series, column: str, source: str, at: RowText = csv_row) -> tuple[pd.Series, np.ndarray]:
    """A categorical column's values as text keys (whole numbers as `3`, never `3.0`) and its missing mask (N,):
    empty cells and the NA spellings (NA, null, …) are missing. A number that is not whole names its row."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(object)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(numbers)
        fraction = ~missing & (numbers != np.round(numbers))
        if fraction.any():
            row = int(np.argmax(fraction))
            raise DataError(
                f"{source}: column {column!r}, {at(row)}: a categorical column holds text or whole numbers, "
                f"got {numbers[row]:g}; leave it out of data.categorical to use it as a number"
            )
        keys = pd.Series(np.where(missing, 0, numbers).astype(np.int64), index=values.index).astype(str)
        return keys, missing
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    missing = (values.isna() | text.str.lower().isin(NA_SPELLINGS | {""})).to_numpy()
    return text, missing


@dataclass
class Categorical:
    """One categorical column's encoder: its categories (sorted; whole numbers stay numbers) and whether missing
    values have a category (column) of their own, last."""

    column: str
    categories: list[Any]
    missing: bool = False

    @property
    def width(self) -> int:
        return len(self.categories) + self.missing

    @property
    def names(self) -> list[str]:
        """The encoded columns' names: `island=Biscoe`, …, `sex=(missing)`."""
        return [f"{self.column}={c}" for c in self.categories] + ([f"{self.column}={MISSING}"] if self.missing else [])

    @classmethod
    def fit(cls, keys: pd.Series, missing: np.ndarray, integers: bool, column: str, allow_missing: bool) -> Categorical:
        """The categories of the training rows' keys (missing excluded)."""
        present = pd.unique(keys[~missing])
        categories: list[Any] = sorted(int(k) for k in present) if integers else sorted(str(k) for k in present)
        return cls(column, categories, bool(allow_missing and missing.any()))

    def indices(
        self,
        values: pd.Series,
        source: str,
        at: RowText,
        allow_missing: bool,
        keyed: tuple[pd.Series, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, str | None]:
        """Each row's column within this block (N,), −1 for a value not seen in training, and the warning naming
        those values (None when every value is known). `keyed`: `category_keys` of `values`, when known."""
        keys, missing = keyed if keyed is not None else category_keys(values, self.column, source, at)
        if missing.any() and not allow_missing:
            row = int(np.argmax(missing))
            raise DataError(
                f"{source}: column {self.column!r}, {at(row)}: expected a category, got a missing value; set "
                "data.missing (e.g. most_frequent) to make missing values a category of their own"
            )
        index = pd.Index([str(c) for c in self.categories]).get_indexer(keys)
        index[missing] = len(self.categories) if self.missing else -1
        unseen = index < 0
        if not unseen.any():
            return index, None
        found = sorted({MISSING if m else k for k, m in zip(keys[unseen], missing[unseen], strict=True)})
        shown = ", ".join(v if v == MISSING else shorten(v, 40) for v in found[:8]) + (", …" if len(found) > 8 else "")
        rows = int(unseen.sum())
        warning = (
            f"{source}: column {self.column!r}: {shown} {'was' if len(found) == 1 else f'({len(found)} values) were'} "
            f"not seen in training ({rows:,} row{'s' if rows > 1 else ''}); encoded as all zeros"
        )
        return index, warning

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "categories": self.categories, "missing": self.missing}


# ----------------------------------------------------------------------------- the feature encoder


@dataclass
class Preprocessing:
    """How raw feature columns become the network's input (N, width): saved in model.json, applied by train, eval,
    predict and export alike."""

    numeric: list[str]
    categorical: list[Categorical] = field(default_factory=list)
    missing: str = "error"  # data.missing
    fills: list[float] = field(default_factory=list)  # per numeric column, when missing is not "error"

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(c.width for c in self.categorical)

    @property
    def names(self) -> list[str]:
        """The encoded columns' names, in the network's input order."""
        return self.numeric + [name for c in self.categorical for name in c.names]

    @property
    def allow_missing(self) -> bool:
        return self.missing != "error"

    def encode(
        self, X: np.ndarray, side: pd.DataFrame, source: str, at: RowText = csv_row, keys: Keys | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """The input matrix (N, width) from the numeric columns X (N, len(numeric)), NaN where missing, and the
        categorical columns in `side` (their `keys`, when known); plus one warning per column with values not seen
        in training. X itself is returned (never copied) when there is nothing to do."""
        warnings: list[str] = []
        if not self.categorical and (not self.allow_missing or not has_nan(X)):
            return X, warnings
        out = np.zeros((len(X), self.width), dtype=X.dtype)
        out[:, : len(self.numeric)] = X
        for j, fill in enumerate(self.fills):
            column = out[:, j]
            column[np.isnan(column)] = fill
        start, rows = len(self.numeric), np.arange(len(X))
        for encoder in self.categorical:
            keyed = None if keys is None else keys[encoder.column]
            index, warning = encoder.indices(side[encoder.column], source, at, self.allow_missing, keyed)
            known = index >= 0
            out[rows[known], start + index[known]] = 1
            start += encoder.width
            if warning is not None:
                warnings.append(warning)
        return out, warnings

    def encode_frame(
        self, frame: pd.DataFrame, source: str, dtype: Any, key: str = "the model's features", at: RowText = csv_row
    ) -> tuple[np.ndarray, list[str]]:
        """`encode` for a DataFrame holding the raw feature columns (eval, predict)."""
        X = feature_matrix(frame, self.numeric, source, dtype, key, at=at, missing_ok=self.allow_missing)
        missing_columns = [c.column for c in self.categorical if c.column not in frame.columns]
        if missing_columns:
            feature_matrix(frame, missing_columns, source, dtype, key, at=at)  # names the missing columns
        return self.encode(X, frame, source, at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": [c.to_dict() for c in self.categorical],
            "missing": self.missing,
            "fills": self.fills,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Preprocessing:
        categorical = [
            Categorical(c["column"], list(c["categories"]), bool(c["missing"])) for c in value.get("categorical", [])
        ]
        fills = [float(f) for f in value.get("fills", [])]
        return cls(list(value["numeric"]), categorical, str(value.get("missing", "error")), fills)


def has_nan(X: np.ndarray, block: int = 1 << 16) -> bool:
    """Whether X (perhaps memory-mapped) holds a NaN, a block of rows at a time (no full-size temporary)."""
    return any(np.isnan(X[i : i + block]).any() for i in range(0, len(X), block))


def fit_preprocessing(
    X: np.ndarray,
    side: pd.DataFrame,
    rows: np.ndarray | None,
    numeric: list[str],
    categorical: list[str],
    data: Any,
    source: str,
    keys: Keys | None = None,
) -> Preprocessing:
    """Fit the fills and categories on the training rows `rows` of X (numeric columns) and `side` (None: all);
    `keys`: the categorical columns' `category_keys`, when known."""
    fills = []
    if data.missing != "error":  # one column at a time: X may be a large memory map
        fills = [_fill(X[:, j] if rows is None else X[rows, j], data, name, source) for j, name in enumerate(numeric)]
    encoders = []
    for name in categorical:
        column = side[name]
        text, missing = keys[name] if keys is not None else category_keys(column, name, source)
        integers = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        chosen = slice(None) if rows is None else rows
        encoders.append(Categorical.fit(text.iloc[chosen], missing[chosen], integers, name, data.missing != "error"))
    return Preprocessing(list(numeric), encoders, data.missing, fills)


def _fill(values: np.ndarray, data: Any, column: str, source: str) -> float:
    """The value missing entries of a numeric column get: data.missing's statistic of its training values."""
    how = data.missing
    if how == "constant":
        return float(data.fill_value)
    present = values[~np.isnan(values)].astype(np.float64)
    if present.size == 0:
        raise DataError(
            f"{source}: column {column!r} has no values in the training rows to take its {how} from; "
            "use missing: constant with a fill_value, or leave the column out"
        )
    if how == "mean":
        return float(present.mean())
    if how == "median":
        return float(np.median(present))
    distinct, counts = np.unique(present, return_counts=True)
    return float(distinct[np.argmax(counts)])  # most_frequent: the smallest of the most frequent, as scikit-learn


# ----------------------------------------------------------------------------- targets


@dataclass
class TargetScale:
    """scale_target: regression targets standardised with the training rows' mean and standard deviation
    (σ of 0 → 1); the network learns (y − μ) / σ and its outputs are mapped back with ŷ σ + μ."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, Y: np.ndarray, rows: np.ndarray | None) -> TargetScale:
        values = (Y if rows is None else Y[rows]).astype(np.float64)
        std = values.std(axis=0)
        std[std == 0] = 1.0
        return cls([float(m) for m in values.mean(axis=0)], [float(s) for s in std])

    def scale(self, Y: np.ndarray) -> np.ndarray:
        """(Y − μ) / σ, in Y's dtype."""
        return (Y - np.asarray(self.mean, Y.dtype)) / np.asarray(self.std, Y.dtype)

    def unscale(self, yhat: np.ndarray) -> np.ndarray:
        """ŷ σ + μ: outputs in the targets' own units, in ŷ's dtype."""
        return yhat * np.asarray(self.std, yhat.dtype) + np.asarray(self.mean, yhat.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}


def class_weights(
    setting: str | dict[Any, float], classes: Sequence[Any], labels: np.ndarray, source: str
) -> np.ndarray:
    """One weight per class (K,): `balanced` gives n / (K · count_k) over the training rows' class indices
    `labels` (N,); a mapping gives its label's weight (1 for classes it leaves out)."""
    k = len(classes)
    if setting == "balanced":
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        return len(labels) / (k * np.maximum(counts, 1.0))
    assert isinstance(setting, dict)
    weights = np.ones(k)
    by_text = {str(c): i for i, c in enumerate(classes)}
    for label, weight in setting.items():
        if str(label) not in by_text:
            raise ConfigError(
                f"{source}: data.class_weight: label {shorten(label)} is not one of the data's "
                f"{shorten_list(classes, 'classes')}"
            )
        weights[by_text[str(label)]] = weight
    return weights


# ----------------------------------------------------------------------------- identifiers


def identifier_warnings(X: np.ndarray, numeric: list[str], categorical: list[str], source: str) -> list[str]:
    """When `features` is omitted: a warning for each column that looks like an identifier (its name, or a
    different whole number in every row), saying how to leave it out."""
    found: dict[str, str] = {}
    for j, name in enumerate(numeric):
        if ID_NAMES.search(name):
            found[name] = "its name says it is an identifier"
        elif len(X) > ID_MIN_ROWS and distinct_integers(X[:, j]):
            found[name] = "a different whole number in every row"
    found.update({name: "its name says it is an identifier" for name in categorical if ID_NAMES.search(name)})
    return [
        f"{source}: column {name!r} looks like an identifier ({why}) and is used as a feature; to leave it out, "
        "list the columns to use in data.features"
        for name, why in found.items()
    ]


def distinct_integers(column: np.ndarray) -> bool:
    head = np.asarray(column[:1000], dtype=np.float64)
    if not (np.isfinite(head).all() and (head == np.round(head)).all() and len(np.unique(head)) == len(head)):
        return False  # the first rows already say no: the whole column is not read
    values = np.asarray(column, dtype=np.float64)
    return bool(
        np.isfinite(values).all() and (values == np.round(values)).all() and len(np.unique(values)) == len(values)
    )


# ----------------------------------------------------------------------------- description


def describe_features(encoding: Any) -> dict[str, Any]:
    """What `nnctl summary` shows of an Encoding: each feature after encoding (kind, how many input columns, its
    fill or categories), the targets and classes, target scaling and class weights."""
    pre: Preprocessing = encoding.preprocessing or Preprocessing(list(encoding.features))
    fills = dict(zip(pre.numeric, pre.fills, strict=False))
    features: list[dict[str, Any]] = [
        {"name": name, "kind": "numeric", "columns": 1} | ({"fill": fills[name]} if name in fills else {})
        for name in pre.numeric
    ]
    for c in pre.categorical:
        features.append(
            {"name": c.column, "kind": "categorical", "columns": c.width, "categories": c.categories}
            | ({"missing_category": True} if c.missing else {})
        )
    scale = encoding.target_scale
    return {
        "features": features,
        "n_features": pre.width,
        "missing": pre.missing,
        "targets": list(encoding.targets),
        "classes": list(encoding.classes),
        "target_scale": None if scale is None else scale.to_dict(),
        "class_weights": encoding.class_weights,
    }
