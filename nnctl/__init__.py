"""nnctl: train small NumPy neural networks from YAML configs."""

__version__ = "0.1.0"

from nnctl.config import load_config  # noqa: E402
from nnctl.network import Network, build_network  # noqa: E402
from nnctl.run import load_run  # noqa: E402

__all__ = ["Network", "__version__", "build_network", "load_config", "load_run"]
