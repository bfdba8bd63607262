"""The data cache: a binary copy of every data file nnctl has parsed, memory-mapped by later runs.

An entry is a directory in the cache (`.nnctl-cache/` under the working directory, or $NNCTL_CACHE_DIR),
named by its key: the sha256 of the file's sha256, the feature and target columns, the dtype and LAYOUT.

    features.npy  the (N, D) feature matrix, C order, in the dtype (memory-mapped, read-only)
    targets.npz   the target columns as parsed: numbers as they are, text as codes + labels
    entry.json    the key's parts, the source file, the shape, and the length and crc32 of both files

Entries are built in a temporary directory and renamed into place, so a crash leaves none or a whole
one. Opening checks the key, the lengths and the checksums; an entry that fails is deleted and rebuilt,
never trusted. A file's sha256 is remembered per (device, inode, size, mtime_ns, ctime_ns), as git's
index does, so a large unchanged file is not hashed on every run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.files import atomic_write, file_sha256, npz_bytes

__all__ = ["Entry", "EntryWriter", "cache_dir", "clear", "entries", "entry_key", "file_sha256", "lookup", "open_entry"]

CACHE_ENV = "NNCTL_CACHE_DIR"
DEFAULT_DIR = ".nnctl-cache"
LAYOUT = 1  # bump when what an entry holds changes: older entries then miss and are rebuilt
MEMO = "sha256"  # the folder of remembered file hashes (nnctl.files.file_sha256's memo)
HEADER_BYTES = 128  # features.npy's header, fixed in size so it can be written after the rows
BLOCK = 8 * 2**20  # bytes per checksum step
_KEY = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> Path:
    """Where the cache lives: $NNCTL_CACHE_DIR, else .nnctl-cache/ under the working directory."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_DIR)


def entry_key(sha256: str, features: list[str] | None, targets: list[str], dtype: Any, missing_ok: bool = False) -> str:
    """The key of a file's entry: its content hash, the columns taken from it (features None: all but the
    targets; `targets` also holds the categorical columns, kept as parsed), the dtype, the layout, and whether
    missing feature values were kept as NaN (data.missing other than `error`) rather than refused."""
    parts = {"sha256": sha256, "features": features, "targets": targets, "dtype": np.dtype(dtype).name}
    if missing_ok:  # only then, so entries made before data.missing existed keep their keys
        parts["missing_ok"] = True
    return hashlib.sha256(json.dumps({**parts, "layout": LAYOUT}, sort_keys=True).encode()).hexdigest()


@dataclass
class Entry:
    """An opened, verified entry: X memory-mapped read-only, the target columns in memory."""

    path: Path
    meta: dict[str, Any]
    X: np.ndarray
    targets: dict[str, np.ndarray]


def open_entry(path: Path, key: str | None = None) -> Entry | None:
    """The entry in folder `path` if it is whole and matches `key` (its folder name by default), else None.
    Another process (a sweep worker) reopens a loaded file's copy this way."""
    try:
        meta = json.loads((path / "entry.json").read_text(encoding="utf-8"))
        if meta.get("key") != (key or path.name) or meta.get("layout") != LAYOUT:
            return None
        targets_bytes = (path / "targets.npz").read_bytes()
        if len(targets_bytes) != meta["targets_bytes"] or zlib.crc32(targets_bytes) != meta["targets_crc32"]:
            return None
        shape, dtype = (meta["rows"], meta["columns"]), np.dtype(meta["dtype"])
        if not isinstance(meta.get("features"), list) or len(meta["features"]) != shape[1]:
            return None
        if (path / "features.npy").stat().st_size != HEADER_BYTES + shape[0] * shape[1] * dtype.itemsize:
            return None
        X = np.load(path / "features.npy", mmap_mode="r", allow_pickle=False)
        if X.shape != shape or X.dtype != dtype or not X.flags.c_contiguous or _crc32(X) != meta["features_crc32"]:
            return None
        with np.load(io.BytesIO(targets_bytes), allow_pickle=False) as npz:
            targets = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zlib.error):  # missing, truncated, garbage
        return None
    return Entry(path, meta, X, targets)


def lookup(root: Path, key: str) -> Entry | None:
    """The verified entry for `key`; a damaged or stale one is removed (to be rebuilt) and None returned."""
    path = root / key
    if not path.exists():
        return None
    entry = open_entry(path, key)
    if entry is None:
        shutil.rmtree(path, ignore_errors=True)
    return entry


def _crc32(X: np.ndarray) -> int:
    flat = X.reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, len(flat), BLOCK):
        crc = zlib.crc32(flat[start : start + BLOCK].data, crc)
    return crc


def _npy_header(dtype: np.dtype, shape: tuple[int, int]) -> bytes:
    """A version 1.0 .npy header padded to HEADER_BYTES, so it can be rewritten in place once N is known."""
    text = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {shape}, }}"
    text = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def prepare(root: Path) -> None:
    """Create the cache folder, marked so that backup tools and git leave it alone."""
    root.mkdir(parents=True, exist_ok=True)
    tag = root / "CACHEDIR.TAG"
    if not tag.exists():
        tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n# nnctl's data cache: `nnctl cache clear`\n")
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


class EntryWriter:
    """Builds an entry: feature rows appended block by block (written as they come, with their crc32),
    then the targets and entry.json; `finish` renames the folder into place. Use as a context manager:
    an exception removes the unfinished folder."""

    def __init__(self, root: Path, key: str, meta: dict[str, Any], columns: int, dtype: Any) -> None:
        prepare(root)
        self.root, self.key, self.meta = root, key, meta
        self.dtype, self.columns, self.rows, self.crc = np.dtype(dtype), columns, 0, 0
        self.tmp = root / f".tmp-{key[:16]}-{uuid.uuid4().hex[:12]}"
        self.tmp.mkdir()
        self.file = open(self.tmp / "features.npy", "w+b")  # noqa: SIM115  (closed in finish or __exit__)
        self.file.write(_npy_header(self.dtype, (0, columns)))
        self._buffer = np.empty((0, columns), dtype=self.dtype)
        self._map: np.memmap | None = None

    def block(self, rows: int) -> np.ndarray:
        """A (rows, D) buffer for the next rows; `commit` writes it."""
        if len(self._buffer) < rows:
            self._buffer = np.empty((rows, self.columns), dtype=self.dtype)
        return self._buffer[:rows]

    def commit(self, rows: int) -> None:
        data = self._buffer[:rows].reshape(-1).view(np.uint8).data  # the rows' bytes, C order
        self.file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.rows += rows

    def matrix(self, rows: int) -> np.ndarray:
        """Instead of blocks: the whole (rows, D) matrix as a writable map of the entry's file (Parquet is written
        column by column). Its pages are the file's: they count once, as the mapped copy training reads."""
        self.file.truncate(HEADER_BYTES + rows * self.columns * self.dtype.itemsize)
        self.file.flush()
        self._map = np.memmap(self.file, self.dtype, "r+", HEADER_BYTES, (rows, self.columns))
        self.rows = rows
        return self._map

    def finish(self, targets: dict[str, np.ndarray]) -> Path:
        """Write the header, the targets and entry.json, flush them to disk and rename the folder into place."""
        if self._map is not None:
            self._map.flush()
            self.crc = _crc32(self._map)
            self._map = None
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, (self.rows, self.columns)))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        packed = npz_bytes(targets)
        atomic_write(self.tmp / "targets.npz", packed)
        meta = {
            **self.meta,
            "key": self.key,
            "layout": LAYOUT,
            "rows": self.rows,
            "columns": self.columns,
            "dtype": self.dtype.name,
            "features_crc32": self.crc,
            "targets_bytes": len(packed),
            "targets_crc32": zlib.crc32(packed),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write(self.tmp / "entry.json", json.dumps(meta, indent=1).encode())
        final = self.root / self.key
        try:
            os.rename(self.tmp, final)
        except OSError:  # another process finished the same entry first: keep theirs if it is whole
            if open_entry(final) is None:
                shutil.rmtree(final, ignore_errors=True)
                os.rename(self.tmp, final)
        _fsync_dir(self.root)
        return final

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.file.closed:
            self.file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- managing the cache


@dataclass(frozen=True)
class Listing:
    """One folder of the cache as `nnctl cache ls` shows it."""

    key: str
    bytes: int
    source: str | None  # the file it was made from (None: unfinished or damaged)
    rows: int | None
    columns: int | None
    dtype: str | None
    created: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _ours(root: Path) -> Iterator[Path]:
    """The folders and files nnctl made in the cache (nothing else is listed or removed)."""
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if (path.is_dir() and (_KEY.fullmatch(path.name) or path.name.startswith(".tmp-"))) or path.name == MEMO:
            yield path


def entries(root: Path) -> list[Listing]:
    """Every entry in the cache, newest first; unfinished or damaged folders have no source."""
    found = []
    for path in _ours(root):
        if path.name == MEMO:
            continue
        try:
            meta = json.loads((path / "entry.json").read_text(encoding="utf-8"))
            shape = (int(meta["rows"]), int(meta["columns"]))
            found.append(Listing(path.name, _size(path), str(meta["source"]), *shape, meta["dtype"], meta["created"]))
        except (OSError, ValueError, KeyError, TypeError):
            found.append(Listing(path.name, _size(path), None, None, None, None, None))
    return sorted(found, key=lambda e: e.created or "", reverse=True)


def clear(root: Path) -> tuple[int, int]:
    """Remove every entry and remembered hash; returns (entries removed, bytes freed)."""
    count = freed = 0
    for path in _ours(root):
        freed += _size(path)
        count += path.name != MEMO
        shutil.rmtree(path, ignore_errors=True)
    for name in ("CACHEDIR.TAG", ".gitignore"):
        (root / name).unlink(missing_ok=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return count, freed
