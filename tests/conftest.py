"""Shared pytest configuration (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """With -v, report the largest finite-difference relative error any test saw (silent otherwise)."""
    from helpers import LARGEST, ONNX_LARGEST

    if config.get_verbosity() < 0:
        return
    for tol, (error, where) in sorted(LARGEST.items()):
        terminalreporter.write_line(f"largest finite-difference relative error {error:.3g} (tol {tol:g}): {where}")
    if ONNX_LARGEST:
        error, where = max(ONNX_LARGEST)
        terminalreporter.write_line(f"largest onnxruntime-vs-nnctl difference {error:.3g} (tol 1e-05): {where}")


@pytest.fixture(autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own data cache outside its working directory (never the repository's .nnctl-cache/)."""
    monkeypatch.setenv("NNCTL_CACHE_DIR", str(tmp_path_factory.mktemp("nnctl-cache")))
