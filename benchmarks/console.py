"""The `nnctl` command the benchmarks run: the console script of the Python running them.

A `nnctl` found on PATH may belong to another Python (a pyenv shim, another venv) and measure, or fail on, an
install other than this one. Falls back to `python -m nnctl` when the script is not installed.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path


def nnctl_command() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "nnctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nnctl"]
