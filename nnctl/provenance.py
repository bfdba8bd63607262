"""Where a model came from (docs/reference.md#provenance): versions, time, command and the data's sha256.

`model.json` keeps this under `provenance`; `nnctl diff` and `nnctl eval` compare data by its hash.
The data files are hashed once per run, by `nnctl.files.file_sha256` (one streaming pass; remembered in the data cache),
for the checkpoint and this record alike.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nnctl import __version__, formats
from nnctl.files import file_sha256


def data_file(path: str | Path, sha256: str | None, rows: int) -> dict[str, Any]:
    """One data file's record: path, sha256 (hashed where the data were read), the rows nnctl read from it, its
    columns (the header alone is read again), its size."""
    path = Path(path)
    return {
        "path": str(path),
        "sha256": sha256,
        "rows": int(rows),
        "columns": len(formats.columns(path, "data")),
        "bytes": path.stat().st_size,
    }


def now() -> str:
    """The current time as ISO 8601 in UTC, to the second: `2024-05-01T12:00:00Z`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(command: Sequence[str], data: dict[str, Any]) -> dict[str, Any]:
    """The `provenance` of a new run: versions, platform, creation time, command and data files."""
    import numpy

    return {
        "nnctl_version": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "created": now(),
        "command": [str(a) for a in command],
        "data": data,
    }


def resumed(original: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """A resumed run keeps its original creation and command, and lists each resume (time, command, versions)."""
    if not original:
        return current
    entry = {key: current[key] for key in ("created", "command", "nnctl_version", "python", "numpy", "platform")}
    return original | {"data": current["data"], "resumed": [*original.get("resumed", []), entry]}


def default_command() -> list[str]:
    """The process's argument list (`sys.argv`), with the program as its file name (`nnctl`, not its path)."""
    if not sys.argv:
        return []
    return [os.path.basename(sys.argv[0]), *sys.argv[1:]]


def training_file(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The training file's record in a model.json, if it has provenance."""
    provenance = meta.get("provenance")
    data = provenance.get("data") if isinstance(provenance, dict) else None
    train = data.get("train") if isinstance(data, dict) else None
    return train if isinstance(train, dict) and isinstance(train.get("sha256"), str) else None


def is_training_file(meta: dict[str, Any], path: str | Path) -> bool:
    """Whether `path` holds exactly the bytes the run trained on (size first, then the sha256)."""
    train = training_file(meta)
    if train is None:
        return False
    try:
        size = Path(path).stat().st_size
        if isinstance(train.get("bytes"), int) and size != train["bytes"]:
            return False
        return file_sha256(Path(path)) == train["sha256"]
    except OSError:
        return False
