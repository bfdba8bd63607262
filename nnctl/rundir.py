"""Claiming a run directory for one command: an exclusive lock, numbered names, and a safe `--force`.

- A run directory holds `.nnctl.lock`, locked (flock) by the command using it; a second command on
  the same directory fails at once, naming the holder.
- `OUTPUT/NAME` that already holds a run becomes `OUTPUT/NAME-2`, `NAME-3`, … (claimed with an atomic
  mkdir, so two commands never pick the same one).
- `--force` only ever replaces a directory that is recognisably an nnctl run. The new run is built in
  a hidden sibling and swapped in (an atomic exchange where the OS has one) once its first checkpoint
  is complete, so a kill at any moment leaves the old run or the new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from nnctl.errors import RunError

LOCK = ".nnctl.lock"
RUN_MARKERS = ("model.json", "checkpoint", LOCK)
STAGING = ".nnctl-new-"


def is_run(path: Path) -> bool:
    """A directory nnctl made for a run (its lock file, a model or a checkpoint is there)."""
    return any((path / marker).exists() for marker in RUN_MARKERS)


def _is_empty(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def occupied_by_run(path: Path) -> str:
    """What `check_new` says of a directory that holds something, and how to go on."""
    what = "a run already exists here" if is_run(path) else "the directory is not empty"
    return f"{what}; pass --force to replace a run"


def check_new(base: Path, exact: bool, force: bool, occupied: Callable[[Path], str] = occupied_by_run) -> None:
    """`base` can take a new run (or sweep): it is no file, and with `exact` (`--out`) and no `force` it is empty
    (or not there); a directory holding something is described by `occupied`."""
    try:
        exists = base.exists()
    except OSError as exc:  # a name longer than the file system allows
        raise _os_error(base, exc, "create the run directory") from None
    if exists and not base.is_dir():
        raise RunError(f"{base}: is a file, not a run directory; choose another directory with --out")
    if exact and not force and exists and not _is_empty(base):
        raise RunError(f"{base}: {occupied(base)}, or choose another --out")


def _os_error(path: Path, exc: OSError, doing: str) -> RunError:
    return RunError(f"{path}: cannot {doing}: {exc.strerror or exc}")


class RunDirectory:
    """One command's hold on a run directory; `path` is where files go (a hidden sibling until `commit`)."""

    def __init__(self, final: Path, staging: Path | None, lock: IO[str]) -> None:
        self.final, self.staging, self._locks = final, staging, [lock]

    @property
    def path(self) -> Path:
        return self.staging if self.staging is not None else self.final

    @classmethod
    def existing(cls, path: Path, command: str = "") -> RunDirectory:
        """Lock a run that is already there (`--resume`)."""
        if not path.is_dir() or not is_run(path):
            raise RunError(f"{path}: cannot resume: no checkpoint in this directory (is it a run directory?)")
        return cls.locked(path, command)

    @classmethod
    def locked(cls, path: Path, command: str = "") -> RunDirectory:
        """Lock a directory that is already there, whatever it holds (the caller knows what it is)."""
        return cls(path, None, _lock(path, command))

    @classmethod
    def new(
        cls, base: Path, exact: bool, force: bool, command: str = "", occupied: Callable[[Path], str] = occupied_by_run
    ) -> RunDirectory:
        """A directory for a new run at `base` (`--out`: `exact`), numbered when `base` holds a run; `occupied`
        describes an `exact` one that holds something (`check_new`)."""
        check_new(base, exact, force, occupied)
        if force and base.is_dir() and not _is_empty(base):
            return cls._replacing(base, command)
        if exact:
            return cls(base, None, _lock(_make(base, exist_ok=True), command))
        for n in range(1, 10_000):
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            lock = _claim_unused(candidate, command)
            if lock is not None:
                return cls(candidate, None, lock)
        raise RunError(f"{base}: no free numbered run directory next to it")

    @classmethod
    def _replacing(cls, base: Path, command: str) -> RunDirectory:
        if not is_run(base):
            shown = ", ".join(sorted(p.name for p in base.iterdir())[:5])
            raise RunError(
                f"{base}: not an nnctl run directory (it holds {shown}, …); --force only replaces runs: "
                "choose another --out"
            )
        lock = _lock(base, command)  # nobody else may be using the run being replaced
        _remove_stale_staging(base)
        staging = _make(base.with_name(f".{base.name}{STAGING}{os.getpid()}"), exist_ok=True)
        directory = cls(base, staging, _lock(staging, command))
        directory._locks.append(lock)
        return directory

    def commit(self) -> None:
        """Swap the staged run in for the one it replaces (once its first checkpoint is complete)."""
        if self.staging is None:
            return
        staging, self.staging = self.staging, None
        try:
            if not _exchange(staging, self.final):
                old = staging.with_name(staging.name + "-old")
                os.rename(self.final, old)
                os.rename(staging, self.final)
                staging = old
        except OSError as exc:
            self.staging = staging
            raise _os_error(self.final, exc, "replace the old run") from None
        shutil.rmtree(staging, ignore_errors=True)  # the old run

    def release(self) -> None:
        for lock in self._locks:
            with contextlib.suppress(OSError):
                lock.close()
        self._locks = []


def _make(path: Path, exist_ok: bool) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        raise RunError(f"{path}: already exists") from None
    except OSError as exc:
        raise _os_error(path, exc, "create the run directory") from None
    return path


def _claim_unused(path: Path, command: str) -> IO[str] | None:
    """The lock of `path` if it is (or can be made) an unused directory: whoever locks it first owns it, and
    it must hold nothing but the lock then. None when it is taken (or another command just took it)."""
    if path.exists() and not _is_empty(path) and set(os.listdir(path)) != {LOCK}:
        return None
    _make(path, exist_ok=True)
    try:
        lock = _lock(path, command)
    except RunError:
        return None  # another command holds it
    if set(os.listdir(path)) != {LOCK}:  # used and released between our look and our lock
        lock.close()
        return None
    return lock


def _lock(path: Path, command: str) -> IO[str]:
    """Hold `path/.nnctl.lock` exclusively until released (or the process ends); a holder is named."""
    try:
        handle = open(path / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the whole command)
    except OSError as exc:
        raise _os_error(path, exc, "write in the run directory") from None
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): run without the lock
        return handle
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise _os_error(path, exc, "lock the run directory") from None
        handle.seek(0)
        holder = handle.read(300).strip() or "another process"
        handle.close()
        raise RunError(f"{path}: in use by {holder}; wait for it to finish or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"nnctl (pid {os.getpid()}{': ' + command if command else ''})\n")
    handle.flush()
    return handle


def _remove_stale_staging(base: Path) -> None:
    """Hidden staging directories left by a killed `--force` run (their lock is free) are removed."""
    for stale in base.parent.glob(f".{base.name}{STAGING}*"):
        try:
            handle = _lock(stale, "")
        except RunError:
            continue  # still in use
        handle.close()
        shutil.rmtree(stale, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the OS cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code))
