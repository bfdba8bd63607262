"""Files nnctl writes and reads back: atomic writes, and archives of arrays checked before they are read.

Every file is written to a temporary name, flushed to disk and renamed, so a crash leaves either the
old file or the new one. An `.npz` is read member by member: names, dtypes and shapes come from each
member's header and are checked (against what the caller expects, and against a size bound) before a
byte of data is inflated, so a small hostile file cannot make nnctl allocate gigabytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.errors import NnctlError, RunError

MAX_ARRAY_BYTES = 8 * 2**30  # no single array nnctl saves comes near this
HASH_BLOCK = 8 * 2**20  # bytes per read while hashing
SETTLED_SECONDS = 2.0  # a file changed more recently than this may change again within one timestamp tick


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (or keep the old file's)
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, data: bytes, what: str = "output") -> None:
    """atomic_write for a file the user named (-o): a directory, a read-only place or a full disk is a RunError."""
    if path.is_dir():
        raise RunError(f"{path}: is a directory; give a file name for the {what}")
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise RunError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # (numpy's stub fears a key named allow_pickle)
    return buffer.getvalue()


def read_npz(
    path: Path,
    allowed: dict[str, tuple[int, ...] | None] | None = None,
    required: Collection[str] = (),
    described_by: str = "the run",
    only: Collection[str] | None = None,
) -> dict[str, np.ndarray]:
    """Arrays of an .npz, checked member by member before reading; damage becomes a RunError naming the file.

    With `allowed` (name → shape, or None for any shape), no other member may be there and shapes must
    match; every name in `required` must be there. With `only`, just those members are read.
    """
    if not path.exists():
        raise RunError(f"{path}: file not found; the run directory is incomplete")
    if not path.is_file():
        raise RunError(f"{path}: not a regular file")
    if not zipfile.is_zipfile(path):  # else np.load would take any other bytes for a pickle and say so
        raise RunError(f"{path}: truncated or corrupted: not a NumPy .npz archive")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {_member_name(info, path): _header(archive, info, path) for info in archive.infolist()}
            _check_members(headers, allowed, required, path, described_by)
            return {name: _read_member(archive, name) for name in headers if only is None or name in only}
    except NnctlError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, zlib.error) as exc:
        raise RunError(f"{path}: truncated or corrupted ({type(exc).__name__}: {str(exc)[:200]})") from None


def _member_name(info: zipfile.ZipInfo, path: Path) -> str:
    name = info.filename
    if not name.endswith(".npy") or len(name) > 256:
        raise RunError(f"{path}: unexpected member {name[:80]!r}; not an archive nnctl wrote")
    return name.removesuffix(".npy")


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one member from its .npy header; refuses objects and sizes out of bounds."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    name = info.filename.removesuffix(".npy")
    if dtype.hasobject:
        raise RunError(f"{path}: holds a pickled object array; refused ({name!r}: nnctl never unpickles model files)")
    if dtype.kind not in "fiub":
        raise RunError(f"{path}: array {name!r} has dtype {dtype}, expected numbers")
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_ARRAY_BYTES or info.file_size > size + 4096:
        raise RunError(f"{path}: array {name!r} declares {size:,} bytes in {info.file_size:,}; refused as corrupted")
    return tuple(shape), dtype


def _check_members(
    headers: dict[str, tuple[tuple[int, ...], np.dtype]],
    allowed: dict[str, tuple[int, ...] | None] | None,
    required: Collection[str],
    path: Path,
    described_by: str,
) -> None:
    missing = [name for name in required if name not in headers]
    if missing:
        raise RunError(f"{path}: array {missing[0]!r} is missing")
    if allowed is None:
        return
    unknown = sorted(name for name in headers if name not in allowed)
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise RunError(f"{path}: unexpected array(s) {shown}{' …' if len(unknown) > 5 else ''}")
    for name, (shape, _) in headers.items():
        want = allowed[name]
        if want is not None and shape != tuple(want):
            raise RunError(f"{path}: array {name!r} has shape {shape}, but {described_by} describes {tuple(want)}")


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def read_json(path: Path, max_bytes: int = 64 * 2**20) -> dict[str, Any]:
    """A JSON object from a file nnctl wrote; a missing, huge or damaged file is a RunError naming it."""
    if not path.exists():
        raise RunError(f"{path.parent}: not a complete run directory: {path.name} is missing")
    if not path.is_file():
        raise RunError(f"{path}: not a regular file")
    try:
        if path.stat().st_size > max_bytes:
            raise RunError(f"{path}: {path.stat().st_size:,} bytes; too large for the file nnctl writes there")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RunError(f"{path}: corrupted JSON: {str(exc)[:200]}") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object")
    return value


def file_sha256(path: str | Path, memo: Path | None = None) -> str:
    """The sha256 of a file's bytes, read in one streaming pass; with `memo` (a folder), remembered per
    (device, inode, size, mtime_ns, ctime_ns) and reused while none of those change."""
    path = Path(path)
    status = path.stat()
    stamp = [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]
    note = memo / f"{status.st_dev}-{status.st_ino}.json" if memo is not None else None
    if note is not None:
        try:
            saved = json.loads(note.read_text(encoding="utf-8"))
            if saved["stamp"] == stamp and isinstance(saved["sha256"], str):
                return saved["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        buffer = bytearray(HASH_BLOCK)
        view = memoryview(buffer)
        while size := file.readinto(buffer):
            digest.update(view[:size])
    sha = digest.hexdigest()
    settled = time.time_ns() - max(status.st_mtime_ns, status.st_ctime_ns) > SETTLED_SECONDS * 1e9
    if note is not None and settled and path.stat().st_ctime_ns == status.st_ctime_ns:
        with contextlib.suppress(OSError):  # a read-only cache still serves its entries; the hash is just not kept
            atomic_write(note, json.dumps({"stamp": stamp, "sha256": sha, "path": str(path.resolve())}).encode())
    return sha
