"""Ctrl-C and SIGTERM while a command trains: stop cleanly, never in the middle of a save.

Before training starts there is nothing to save, so a signal interrupts at once (`Interrupted`).
Once a trainer is attached, every SIGINT or SIGTERM only asks it to stop after the current batch;
the checkpoint that follows is written whole, however many signals arrive meanwhile. SIGTERM is
what Slurm, Docker and systemd send: it is handled like Ctrl-C (the exit code is 128 + signal).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Protocol

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A signal arrived before there was anything to save (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Stoppable(Protocol):
    def request_stop(self) -> None: ...


class SignalHandler:
    """Installs handlers for SIGINT and SIGTERM for its `with` block (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.received: int | None = None  # the last signal received
        self.target: Stoppable | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalHandler:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def attach(self, target: Stoppable) -> None:
        """From now on signals ask `target` to stop instead of interrupting (a signal already received counts)."""
        self.target = target
        if self.received is not None:
            target.request_stop()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self.target is None:
            raise Interrupted(signum)
        self.target.request_stop()

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGINT)
