"""nnctl: train small NumPy neural networks from YAML configs.

The public API (`load_config`, `build_network`, `Network`, `load_run`) is imported on first use,
so `nnctl --help` and `nnctl --version` start without loading numpy, pandas or pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Network", "__version__", "build_network", "load_config", "load_run"]

_API = {
    "load_config": "nnctl.config",
    "build_network": "nnctl.network",
    "Network": "nnctl.network",
    "load_run": "nnctl.run",
}

if TYPE_CHECKING:
    from nnctl.config import load_config
    from nnctl.network import Network, build_network
    from nnctl.run import load_run


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'nnctl' has no attribute {name!r}")
