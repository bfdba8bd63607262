"""Data files into training arrays: parsed chunk by chunk straight into the final feature matrix, through the cache.

The feature matrix is (N, D) in the config's dtype and C order from the start: each chunk's columns are
converted into their rows of it (nnctl.data.feature_matrix), so no float64 copy of a float32 run and no
second full-size copy to reorder it ever exists. With the cache on (nnctl.cache), the rows go straight
to the cache entry on disk and training memory-maps it; with `data.cache: false`, into memory.
Target columns are small: they are gathered whole and encoded as before (nnctl.data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from nnctl import formats
from nnctl.cache import MEMO, Entry, EntryWriter, cache_dir, entry_key, file_sha256, lookup
from nnctl.config import Config
from nnctl.data import (
    Dataset,
    Encoding,
    encode_targets,
    feature_matrix,
    infer_encoding,
    numeric_column,
    read_csv,
    resolve_features,
    split,
)
from nnctl.errors import DataError
from nnctl.formats import RowText
from nnctl.tabular import TargetScale, category_keys, class_weights, fit_preprocessing, identifier_warnings


@dataclass
class LoadedFile:
    """A data file's features (N, D) and raw target columns; `entry` is its cache folder, if any."""

    path: Path
    X: np.ndarray  # memory-mapped read-only when it came from (or went into) the cache
    targets: pd.DataFrame
    features: list[str]
    at: RowText  # how messages name a row of this file
    entry: Path | None = None

    def dataset(self, encoding: Encoding) -> Dataset:
        """The file encoded as the model expects."""
        Y = encode_targets(self.targets, encoding, str(self.path), self.X.dtype, at=self.at)
        return Dataset(self.X, Y, str(self.path), side=self.targets, at=self.at)


def read_table(path: str | Path, what: str = "data") -> pd.DataFrame:
    """A whole data file (.csv, .csv.gz or .parquet) as a DataFrame, for eval and predict."""
    path = Path(path)
    if formats.file_format(path) == "parquet":
        frame = formats.read_whole(path, what)
        if len(frame) == 0:
            raise DataError(f"{what}: {path} has no rows")
        return frame
    return read_csv(path, what)


def load_file(
    path: str | Path,
    targets: list[str],
    features: list[str] | None,
    dtype: Any,
    what: str = "data",
    cache: Path | None = None,
    chunk_rows: int | None = None,
    missing_ok: bool = False,
) -> LoadedFile:
    """Features and target columns of a file: memory-mapped from the cache folder `cache` when it holds this
    file's bytes, else parsed in chunks (into a new cache entry, or into memory when `cache` is None).
    `targets` are the columns kept as parsed (targets, and categorical features); `features` become the numeric
    matrix, with NaN for missing values when `missing_ok`."""
    path = Path(path)
    formats.check_file(path, what)
    if not path.is_file():  # a pipe: it can be read only once, so whole, and never cached
        return _load_stream(path, targets, features, dtype, what, missing_ok)
    # The columns as resolved (not as asked for): a config naming them and one leaving them to the file share
    # one cache entry (a resumed run's config.yaml names them).
    stamp = _stamp(path)  # before the file is opened: a Parquet file stays open from its footer to its last row
    file = formats.open_file(path, what)  # the header, or the Parquet footer: read once
    features = resolve_features(file.names, str(path), targets, features)
    if cache is None:
        sink = MemorySink(file.count_rows(), len(features), dtype)
        parsed = _parse(file, features, targets, sink, chunk_rows, missing_ok)
        return LoadedFile(path, sink.finish(), decode_targets(parsed), features, file.at)
    try:
        sha = file_sha256(path, cache / MEMO)
    except OSError as exc:
        raise DataError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    key = entry_key(sha, features, targets, dtype, missing_ok)
    try:
        entry = lookup(cache, key) or _build(file, targets, features, dtype, cache, key, chunk_rows, stamp, missing_ok)
    except OSError as exc:
        raise _unusable(cache, exc, what) from None
    return LoadedFile(path, entry.X, decode_targets(entry.targets), entry.meta["features"], file.at, entry.path)


def _build(
    file: formats.DataFile,
    targets: list[str],
    features: list[str],
    dtype: Any,
    cache: Path,
    key: str,
    chunk_rows: int | None,
    stamp: tuple[int, ...],
    missing_ok: bool = False,
) -> Entry:
    """Parse the file into a new cache entry (`features` resolved) and open it."""
    path, what = file.path, file.what
    meta = {"source": str(path.resolve()), "size": path.stat().st_size, "features": features, "targets": targets}
    with EntryWriter(cache, key, meta, len(features), dtype) as writer:
        packed = _parse(file, features, targets, writer, chunk_rows, missing_ok)
        if _stamp(path) != stamp:  # the bytes parsed may not be the bytes hashed: file nothing under that key
            raise DataError(f"{what}: {path} changed while it was being read; run again once it is written")
        entry = lookup(cache, writer.finish(packed).name)
    if entry is None:
        raise DataError(f"{what}: the cache entry made from {path} in {cache} did not read back; is the disk full?")
    return entry


def _load_stream(
    path: Path, targets: list[str], features: list[str] | None, dtype: Any, what: str, missing_ok: bool
) -> LoadedFile:
    frame = read_table(path, what)
    features = resolve_features([str(c) for c in frame.columns], str(path), targets, features)
    X = feature_matrix(frame, features, str(path), dtype, missing_ok=missing_ok)
    return LoadedFile(path, X, decode_targets(pack_targets(frame[targets])), features, formats.csv_row)


def _stamp(path: Path) -> tuple[int, ...]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _unusable(cache: Path, exc: OSError, what: str) -> DataError:
    where = exc.filename or cache
    return DataError(
        f"{what}: cannot use the data cache folder {cache} ({where}: {exc.strerror or exc}); "
        "set data.cache: false, or NNCTL_CACHE_DIR to a writable folder"
    )


class Sink(Protocol):
    """Where parsed feature rows go: a (rows, D) block to fill, then `commit` it."""

    def block(self, rows: int) -> np.ndarray: ...

    def commit(self, rows: int) -> None: ...

    def matrix(self, rows: int) -> np.ndarray:
        """Instead of blocks: the whole (rows, D) matrix, to fill column by column."""
        ...


class MemorySink:
    """The feature matrix in memory, allocated once for an upper bound of the rows and trimmed at the end."""

    def __init__(self, rows: int, columns: int, dtype: Any) -> None:
        self.X = np.empty((max(rows, 1), columns), dtype=dtype)
        self.rows = 0

    def block(self, rows: int) -> np.ndarray:
        if self.rows + rows > len(self.X):  # the estimate was short (lines ended by a lone \r): grow
            self.X.resize((max(self.rows + rows, len(self.X) * 3 // 2), self.X.shape[1]), refcheck=False)
        return self.X[self.rows : self.rows + rows]

    def commit(self, rows: int) -> None:
        self.rows += rows

    def matrix(self, rows: int) -> np.ndarray:
        if len(self.X) != rows:
            self.X = np.empty((rows, self.X.shape[1]), dtype=self.X.dtype)
        self.rows = rows
        return self.X

    def finish(self) -> np.ndarray:
        if self.rows < len(self.X):
            self.X.resize((self.rows, self.X.shape[1]), refcheck=False)  # shrinks in place
        return self.X


def _parse(
    file: formats.DataFile,
    features: list[str],
    targets: list[str],
    sink: Sink,
    chunk_rows: int | None,
    missing_ok: bool = False,
) -> dict[str, np.ndarray]:
    """The file's features into the sink; returns its target columns packed (`pack_targets`)."""
    if file.parquet is not None:
        return _parse_parquet(file, features, targets, sink, missing_ok)
    path, what = file.path, file.what
    parts: list[pd.DataFrame] = []
    source = str(path)
    for chunk in formats.csv_chunks(path, features + targets, what, chunk_rows):
        rows = len(chunk.frame)
        if rows == 0:  # a header-only file
            continue
        feature_matrix(chunk.frame, features, source, out=sink.block(rows), at=chunk.local(), missing_ok=missing_ok)
        sink.commit(rows)
        parts.append(chunk.frame[targets].copy())
    if sum(len(p) for p in parts) == 0:
        raise DataError(f"{what}: {path} has a header but no rows")
    frame = pd.concat(parts, ignore_index=True)
    for name in targets:
        kinds = {p[name].dtype.kind if isinstance(p[name].dtype, np.dtype) else "T" for p in parts}
        if len(kinds) > 1 and not kinds <= set("iuf"):
            # Chunks disagree (numbers in one, text in another): read it as text, as a whole-file read would.
            frame[name] = _text_column(path, name, what)
    return pack_targets(frame)


def _parse_parquet(
    file: formats.DataFile, features: list[str], targets: list[str], sink: Sink, missing_ok: bool = False
) -> dict[str, np.ndarray]:
    """Parquet, one column of one row group at a time, into the whole matrix (its row count is in the footer)."""
    X, at, source = sink.matrix(file.count_rows()), file.at, str(file.path)
    if len(X) == 0:
        raise DataError(f"{file.what}: {file.path} has no rows")
    parts = []
    for group in file.row_groups():
        rows, local = slice(group.start, group.start + group.rows), _offset(at, group.start)
        for j, name in enumerate(features):
            numeric_column(group.read([name])[name], name, source, X[rows, j], local, True, missing_ok)
        parts.append(group.read(targets))
    return pack_targets(pd.concat(parts, ignore_index=True))


def _offset(at: RowText, start: int) -> RowText:
    return lambda i: at(start + i)


def _text_column(path: Path, name: str, what: str) -> pd.Series:
    with formats.csv_errors(path, what):
        column = pd.read_csv(path, usecols=[name], dtype=str, **formats.CSV_OPTIONS)[name]
    return column


def pack_targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Target columns as arrays the cache can hold without pickling: numbers as they are, text as codes
    into its distinct values (−1: missing). `decode_targets` gives back the columns as parsed."""
    packed: dict[str, np.ndarray] = {}
    for j, name in enumerate(frame.columns):
        values = frame[name]
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
            packed[f"values_{j}"] = values.to_numpy()
        else:
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            packed[f"codes_{j}"] = codes.astype(np.int64)
            packed[f"labels_{j}"] = np.array([str(u) for u in uniques], dtype=str)
        packed[f"name_{j}"] = np.array([str(name)])
    return packed


def decode_targets(packed: dict[str, np.ndarray]) -> pd.DataFrame:
    """The target columns `pack_targets` packed."""
    columns: dict[str, Any] = {}
    for j in range(sum(key.startswith("name_") for key in packed)):
        name = str(packed[f"name_{j}"][0])
        if f"values_{j}" in packed:
            columns[name] = packed[f"values_{j}"]
            continue
        codes, labels = packed[f"codes_{j}"], packed[f"labels_{j}"].astype(object)
        values = np.full(len(codes), np.nan, dtype=object)
        present = codes >= 0
        values[present] = labels[codes[present]]
        columns[name] = pd.Series(values, dtype=str) if present.all() else pd.Series(values)
    return pd.DataFrame(columns)


def load_data(
    config: Config, split_rng: np.random.Generator, warnings: list[str] | None = None
) -> tuple[Encoding, Dataset, Dataset | None]:
    """The encoding decided from the training file, the training set, and the validation set or split; warnings
    (identifier-like columns, categories not seen in training) are appended to `warnings`."""
    return split_off(config, *read_files(config, warnings), split_rng, warnings)


def read_files(config: Config, warnings: list[str] | None = None) -> tuple[Encoding, Dataset, Dataset | None]:
    """The encoding decided from the training file (features, classes), the training set, and data.validation's
    set, as read: numeric columns with NaN where missing, categorical columns kept as parsed (`Dataset.side`).
    No split, and nothing fitted yet: a sweep reads the files once and splits and fits per trial."""
    data = config.data
    numeric = None if data.features is None else [f for f in data.features if f not in data.categorical]
    train_file = _load(config, "train", data.targets + list(data.categorical), numeric)
    features = list(data.features) if data.features is not None else train_file.features + list(data.categorical)
    kind, source = config.objective.kind, str(data.train)
    encoding = infer_encoding(train_file.targets, source, data.targets, features, kind, train_file.at)
    if data.features is None and warnings is not None:
        warnings += identifier_warnings(train_file.X, train_file.features, list(data.categorical), source)
    train = train_file.dataset(encoding)
    if data.validation is None:
        return encoding, train, None
    return encoding, train, _read_like_train(config, encoding, "validation")


def read_test(config: Config, encoding: Encoding) -> Dataset | None:
    """data.test as read (like `read_files`' validation set), or None without one."""
    return None if config.data.test is None else _read_like_train(config, encoding, "test")


def _read_like_train(config: Config, encoding: Encoding, key: str) -> Dataset:
    categorical = config.data.categorical
    side = encoding.targets + [f for f in encoding.features if f in categorical]
    numeric = [f for f in encoding.features if f not in categorical]
    return _load(config, key, side, numeric).dataset(encoding)


def _load(config: Config, key: str, side: list[str], numeric: list[str] | None) -> LoadedFile:
    """The file of data.`key` (train, validation, test) as the config says to read it: dtype, cache, data.missing."""
    data = config.data
    cache = cache_dir() if data.cache else None
    what, missing_ok = f"{config.source}: data.{key}", data.missing != "error"
    return load_file(getattr(data, key), side, numeric, np.dtype(config.dtype), what, cache, missing_ok=missing_ok)


def split_off(
    config: Config,
    encoding: Encoding,
    train: Dataset,
    validation: Dataset | None,
    split_rng: np.random.Generator,
    warnings: list[str] | None = None,
) -> tuple[Encoding, Dataset, Dataset | None]:
    """Hold out data.validation_split of the training rows (unless a validation file is given), then fit the
    categories, fills, target scaling and class weights on the training rows only (nnctl.tabular) and encode
    every set with them. Returns a new Encoding: `encoding`, shared by a sweep's trials, is left as it is."""
    data, notes = config.data, warnings if warnings is not None else []
    encoding = dataclasses.replace(encoding)
    if data.features is None:  # the resolved config names the columns it trained on
        data.features = list(encoding.features)
    rows = held = None
    if validation is None and data.validation_split:
        # Stratified by class; several independent 0/1 columns have no single class to stratify by.
        task = encoding.task
        labels = task.labels(train.Y) if task.classification and not task.multilabel else None
        kept, held_out = split(train, data.validation_split, split_rng, labels)
        rows, held = kept.rows, held_out.rows
    whole = _fit_and_encode(config, encoding, train, rows, notes, held is not None)
    if rows is not None and held is not None:
        return encoding, whole.subset(rows, whole.source), whole.subset(held, f"{whole.source} (validation split)")
    if validation is not None:
        encoded, found = encode_raw(encoding, validation)
        notes += found
        return encoding, whole, encoded
    return encoding, whole, None


def _fit_and_encode(
    config: Config, encoding: Encoding, raw: Dataset, rows: np.ndarray | None, notes: list[str], split_off: bool
) -> Dataset:
    """Fit the preprocessing, target scale and class weights on the training rows `rows` (None: all) of the
    training set as read, and encode the whole set with them."""
    data, source = config.data, raw.source
    categorical = [f for f in encoding.features if f in data.categorical]
    numeric = [f for f in encoding.features if f not in data.categorical]
    side = _side(raw)
    keys = {name: category_keys(side[name], name, source, raw.at) for name in categorical}  # for fit and encode
    encoding.preprocessing = fit_preprocessing(raw.matrix, side, rows, numeric, categorical, data, source, keys)
    if data.scale_target:
        encoding.target_scale = TargetScale.fit(raw.Y, rows)
    where = f"{source} (validation split rows)" if split_off else source  # only held-out rows can be unseen
    X, found = encoding.preprocessing.encode(raw.matrix, side, where, raw.at, keys)
    notes += found
    weights = None
    if data.class_weight is not None:
        labels = encoding.task.labels(raw.Y)
        per_class = class_weights(data.class_weight, encoding.classes, labels if rows is None else labels[rows], source)
        weights = per_class.astype(raw.Y.dtype)[labels]
        encoding.class_weights = [float(w) for w in per_class]
    return Dataset(X, raw.Y, source, None, weights)


def encode_raw(encoding: Encoding, raw: Dataset) -> tuple[Dataset, list[str]]:
    """A set as read (validation, test) encoded with the fitted preprocessing, and the warnings about it."""
    assert encoding.preprocessing is not None
    X, found = encoding.preprocessing.encode(raw.matrix, _side(raw), raw.source, raw.at)
    return Dataset(X, raw.Y, raw.source), found


def _side(raw: Dataset) -> pd.DataFrame:
    """The columns kept as parsed (categorical features), or none: a frame of the set's length."""
    return raw.side if raw.side is not None else pd.DataFrame(index=range(len(raw)))
