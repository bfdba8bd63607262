"""Shared pytest configuration (helpers live in tests/helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

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


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One data cache for the session, outside the repository: never the working directory's .nnctl-cache/
    (session-wide, so that module-scoped fixtures which train use it too)."""
    previous = os.environ.get("NNCTL_CACHE_DIR")
    os.environ["NNCTL_CACHE_DIR"] = str(tmp_path_factory.mktemp("nnctl-cache"))
    yield
    if previous is None:
        os.environ.pop("NNCTL_CACHE_DIR", None)
    else:
        os.environ["NNCTL_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _test_data_cache(
    _data_cache: None, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """And each test its own, so that no test finds what another one cached."""
    monkeypatch.setenv("NNCTL_CACHE_DIR", str(tmp_path_factory.mktemp("nnctl-cache")))
