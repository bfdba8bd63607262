"""nnctl's error hierarchy: every mistake in a user's config, data or run directory is one of these.

The CLI prints the message on stderr and exits with ``exit_code``; nothing else reaches the user.
"""

from __future__ import annotations


class NnctlError(Exception):
    """Base class: a message meant for the user, and the exit code it maps to."""

    exit_code = 2


class ConfigError(NnctlError):
    """The YAML config (or a --set override) is not valid."""


class DataError(NnctlError):
    """A CSV file is missing, empty or holds values nnctl cannot use."""


class RunError(NnctlError):
    """A run directory is missing, incomplete, corrupted or would be overwritten."""


class DivergenceError(NnctlError):
    """Training produced a NaN or infinite loss."""

    exit_code = 1

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch, self.batch = epoch, batch
