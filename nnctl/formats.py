"""Data file formats: `.csv`, `.csv.gz` (any `.gz`: gzip-compressed CSV) and `.parquet`, read whole or in chunks.

A chunk is a DataFrame of consecutive rows plus where they sit in the file, so every message can name the
row as the user would find it: `row 7 (line 8)` in a CSV, `row 7 (row group 0)` in Parquet (row groups
are numbered from 0, as pyarrow numbers them). Parquet needs pyarrow, the optional extra `nnctl[parquet]`.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import itertools
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from nnctl.errors import DataError

CHUNK_CELLS = 4_000_000  # cells per chunk: about 32 MB of float64 values, whatever the width
BLOCK = 8 * 2**20  # bytes per read when counting lines
PARQUET_EXTRA = 'pip install "nnctl[parquet]"'

# How a CSV is read, whole or in chunks. Only empty cells are missing: "None", "NA" or "null" can be real labels.
CSV_OPTIONS: dict[str, Any] = {"skipinitialspace": True, "keep_default_na": False, "na_values": [""]}

RowText = Callable[[int], str]  # a 0-based row (after the header) as a message names it


def csv_row(row: int) -> str:
    """A CSV row, counted from 1 after the header, and its line in the file."""
    return f"row {row + 1} (line {row + 2})"


def file_format(path: str | Path) -> str:
    """ "parquet", "csv.gz" or "csv" (any other name is read as CSV), from the file name."""
    name = str(path).lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    return "csv.gz" if name.endswith(".gz") else "csv"


@dataclass
class Chunk:
    """Consecutive rows of a file: `frame` holds rows `start` … `start + len(frame) − 1`."""

    frame: pd.DataFrame
    start: int
    at: RowText  # names a row of the whole file (not of the chunk)

    def local(self) -> RowText:
        """Names the chunk's own row i (0-based) as a row of the file."""
        return lambda i: self.at(self.start + i)


def check_file(path: Path, what: str) -> None:
    """A missing file, a directory or an unusable name is a DataError naming it."""
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, or holding a NUL byte
        raise DataError(f"{what}: cannot open {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not exists:
        raise DataError(f"{what}: file not found: {path}")
    if is_dir:
        raise DataError(f"{what}: {path} is a directory, expected a data file (.csv, .csv.gz or .parquet)")
    if path.is_char_device() or path.is_block_device():  # /dev/zero would be read forever
        raise DataError(f"{what}: {path} is a device, expected a data file (.csv, .csv.gz or .parquet)")


@dataclass
class DataFile:
    """A data file as its header (CSV) or footer (Parquet) describes it, read once and shared by every step
    that reads the file: its column names and, for Parquet, the open file and each row group's first row
    (the row count last)."""

    path: Path
    what: str
    names: list[str]
    parquet: Any = None  # pyarrow.parquet.ParquetFile; None for a CSV
    starts: list[int] | None = None

    @property
    def at(self) -> RowText:
        """How messages name a row of this file: its CSV line, or its Parquet row group."""
        if self.starts is None:
            return csv_row
        bounds = self.starts
        return lambda row: f"row {row + 1} (row group {bisect.bisect_right(bounds, row) - 1})"

    def count_rows(self) -> int:
        """The rows of the file, or for a CSV an upper bound: its newlines + 1 (a .gz file is decompressed to
        count)."""
        if self.starts is not None:
            return self.starts[-1]
        count = 1
        path, gzipped = self.path, file_format(self.path) == "csv.gz"
        with csv_errors(path, self.what), gzip.open(path, "rb") if gzipped else open(path, "rb") as file:
            while block := file.read(BLOCK):
                count += block.count(b"\n")
        return count

    def row_groups(self) -> Iterator[RowGroup]:
        """A Parquet file's row groups in order. Columns are decoded one at a time from there, so memory holds
        one column of one row group, however large the groups are."""
        assert self.parquet is not None and self.starts is not None
        for g, (start, end) in enumerate(itertools.pairwise(self.starts)):
            yield RowGroup(self.parquet, g, start, end - start, self.path, self.what)


def open_file(path: Path, what: str) -> DataFile:
    """A data file's header (or Parquet footer): its column names; a repeated name is a DataError."""
    check_file(path, what)
    if file_format(path) == "parquet":
        parquet = _parquet_file(path, what)
        metadata = parquet.metadata
        starts = [0]
        for g in range(metadata.num_row_groups):
            starts.append(starts[-1] + metadata.row_group(g).num_rows)
        found = DataFile(path, what, list(parquet.schema_arrow.names), parquet, starts)
    else:
        with csv_errors(path, what), _open_csv(path) as file:
            found = DataFile(path, what, csv_header(file, path, what))
    repeated = repeated_name(found.names)
    if repeated is not None:
        raise DataError(f"{what}: {path} has a repeated column name: {repeated!r}; expected unique names")
    return found


def columns(path: Path, what: str) -> list[str]:
    """The file's column names, in order; a repeated name is a DataError."""
    return open_file(path, what).names


def _open_csv(path: Path) -> IO[str]:
    """The file as text (gunzipped for .csv.gz); the caller's `with` closes it."""
    if file_format(path) == "csv.gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # noqa: SIM115
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115


def csv_header(file: IO[str], path: Path, what: str) -> list[str]:
    """The header line's names as written (pandas would rename a repeated `a` to `a.1`, an empty one to
    `Unnamed: i`: the same names here, so they match the parsed columns)."""
    try:
        raw = next(csv.reader(file, skipinitialspace=True))
    except StopIteration:
        raise DataError(f"{what}: {path} is empty; expected a header line and at least one row") from None
    return [name if name else f"Unnamed: {i}" for i, name in enumerate(raw)]


def repeated_name(names: list[str]) -> str | None:
    """The first name that appears twice, if any."""
    seen: set[str] = set()
    return next((name for name in names if name in seen or seen.add(name)), None)  # type: ignore[func-returns-value]


def csv_chunks(path: Path, names: list[str], what: str, chunk_rows: int | None = None) -> Iterator[Chunk]:
    """The columns `names` of every row of a CSV (or .gz), chunk by chunk (`chunk_rows` rows each; by default
    about CHUNK_CELLS cells)."""
    rows = chunk_rows or max(1024, CHUNK_CELLS // max(1, len(names)))
    start = 0
    # Every column is parsed (pandas' usecols would let a row with too many fields pass unnoticed).
    with csv_errors(path, what), pd.read_csv(path, chunksize=rows, **CSV_OPTIONS) as reader:
        for frame in reader:
            yield Chunk(frame[names].reset_index(drop=True), start, csv_row)
            start += len(frame)


def read_whole(path: Path, what: str) -> pd.DataFrame:
    """A Parquet file as one DataFrame (CSV files go through nnctl.data.read_csv)."""
    check_file(path, what)
    parquet = _parquet_file(path, what)
    with parquet_errors(path, what):
        table = _plain(parquet.read(use_threads=True))
        return table.to_pandas()


# ----------------------------------------------------------------------------- CSV


@contextmanager
def csv_errors(path: Path, what: str) -> Iterator[None]:
    """pandas' and gzip's exceptions while reading a CSV, as DataErrors naming the file (and line)."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataError(f"{what}: {path} is empty; expected a header line and at least one row") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            expected, line, saw = found.groups()
            raise DataError(
                f"{what}: {path}, line {line}: expected {expected} fields like the header, got {saw}"
            ) from None
        raise DataError(f"{what}: {path} is not a valid CSV: {str(exc).strip()}") from None
    except UnicodeDecodeError:
        raise DataError(f"{what}: {path} is not UTF-8 text") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{what}: {path} is not a complete gzip file: {exc}") from None
    except OSError as exc:
        raise DataError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- Parquet


def pyarrow_parquet() -> Any:
    """pyarrow.parquet, or a DataError saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading Parquet files needs pyarrow: {PARQUET_EXTRA}") from None
    return pq


@contextmanager
def parquet_errors(path: Path, what: str) -> Iterator[None]:
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{what}: {path} is not a readable Parquet file: {exc}") from None


def _parquet_file(path: Path, what: str) -> Any:
    pq = pyarrow_parquet()
    with parquet_errors(path, what):
        # Read column chunks as they are decoded (no pre-buffering of a whole row group's bytes).
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=2**20)


def _plain(table: Any) -> Any:
    """Dictionary-encoded columns (pandas categoricals) as plain values, like a CSV's."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table


@dataclass
class RowGroup:
    """One row group of a Parquet file: rows `start` … `start + rows − 1`, read a few columns at a time."""

    file: Any  # pyarrow.parquet.ParquetFile
    index: int
    start: int
    rows: int
    path: Path
    what: str

    def read(self, names: list[str]) -> pd.DataFrame:
        with parquet_errors(self.path, self.what):
            return _plain(self.file.read_row_group(self.index, columns=names, use_threads=False)).to_pandas()
