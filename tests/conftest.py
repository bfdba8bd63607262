"""Shared pytest configuration (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """With -v, report the largest finite-difference relative error any test saw (silent otherwise)."""
    from helpers import LARGEST

    if config.get_verbosity() < 0:
        return
    for tol, (error, where) in sorted(LARGEST.items()):
        terminalreporter.write_line(f"largest finite-difference relative error {error:.3g} (tol {tol:g}): {where}")
