"""The local sweep backend: a small process pool that survives its workers dying.

Each worker is a process with its own pipe: the parent hands it one trial at a time, so it always
knows which trial a worker holds. A worker that dies (SIGKILL, out of memory) fails only that trial,
with the reason, and a new worker takes its place; `concurrent.futures.ProcessPoolExecutor` would
instead break the whole pool. Workers ignore SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole
process group): the parent decides, and stops them through a shared event, after which each running
trial finishes its batch and saves its checkpoint. A worker whose parent dies stops the same way.
Each worker limits BLAS to `threads` threads and loads the data once, for every trial it runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnctl.sweep import TrialTask
# nnctl.sweep (numpy, pandas, …) is imported where it is used: `start_server` must be quick to reach.

POLL_SECONDS = 0.2  # how often the parent looks at stop requests while waiting for workers
SHUTDOWN_SECONDS = 10.0


def _context() -> Any:
    """forkserver where there is one (a clean process forked from a server that has imported nnctl once:
    new workers start in milliseconds); spawn elsewhere. Never fork: the parent may hold threads and locks."""
    if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["nnctl.sweep", "nnctl.threads", "nnctl.sweeppool"])
        return context
    return multiprocessing.get_context("spawn")


def start_server() -> None:
    """Start the fork server now, so that it imports nnctl while the sweep is being validated."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def worker_main(conn: Connection, stop: Any, threads: int) -> None:
    """A worker: run the trials the parent sends, one at a time, until it sends None or goes away."""
    from nnctl.sweep import DataCache, run_trial
    from nnctl.threads import blas_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent, gone = os.getppid(), [False]

    def should_stop() -> bool:  # a dead parent's workers stop and save their trials too
        if stop.is_set() or gone[0] or os.getppid() != parent:
            return True
        try:  # the parent writes nothing to a busy worker: something readable is its end closing
            return bool(conn.poll())
        except OSError:
            return True

    def send(kind: str, number: int, payload: dict[str, Any]) -> None:
        try:
            conn.send((kind, number, payload))
        except OSError:  # the parent is gone: progress goes nowhere, and the trial stops (should_stop)
            gone[0] = True

    cache = DataCache()
    with blas_threads(threads):
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            outcome = run_trial(task, cache.load, send, should_stop)
            try:
                conn.send(("done", task.trial.number, outcome))
            except (BrokenPipeError, OSError):
                return


class _Worker:
    def __init__(self, context: Any, stop: Any, threads: int) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=worker_main, args=(child, stop, threads), daemon=True)
        self.process.start()
        child.close()
        self.task: TrialTask | None = None

    def died(self) -> str:
        """Why the process ended, for the trial it held."""
        self.process.join(1.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"the worker process running this trial was killed by {name}{hint}"
        return f"the worker process running this trial exited with code {code}"


class LocalBackend:
    """`--workers N` processes on this machine, each trial with `threads` BLAS threads."""

    name = "local"

    def __init__(self, workers: int, threads: int) -> None:
        self.slots, self.threads = workers, threads
        self.stopping = False
        self._stop: Any = None

    def request_stop(self) -> None:
        self.stopping = True
        if self._stop is not None:
            self._stop.set()

    def run(self, tasks: list[TrialTask], runner: Any) -> None:
        runner.plan.data.clear()  # the data the sweep's validation read: each worker reads its own
        context = _context()
        self._stop = context.Event()
        if self.stopping:
            self._stop.set()
        queue, workers = deque(tasks), list[_Worker]()
        try:
            while queue or any(w.task is not None for w in workers):
                workers = [w for w in workers if self._alive(w, runner)]
                if not self.stopping:
                    self._dispatch(queue, workers, context)
                elif not any(w.task is not None for w in workers):
                    break
                self._collect(workers, runner)
        finally:
            self._shutdown(workers)

    def _dispatch(self, queue: deque[TrialTask], workers: list[_Worker], context: Any) -> None:
        """Hand the next trials to idle workers, starting workers up to `slots`."""
        while queue:
            idle = next((w for w in workers if w.task is None and w.process.is_alive()), None)
            if idle is None and len(workers) < self.slots:
                idle = _Worker(context, self._stop, self.threads)
                workers.append(idle)
            if idle is None:
                return
            task = queue.popleft()
            try:
                idle.conn.send(task)
            except OSError:  # it died just now: the trial waits for the next worker
                queue.appendleft(task)
                idle.process.kill()
                return
            idle.task = task

    def _collect(self, workers: list[_Worker], runner: Any) -> None:
        """Wait a little for messages from workers (or their death) and pass them on."""
        ready = set(wait([w.conn for w in workers] + [w.process.sentinel for w in workers], POLL_SECONDS))
        for worker in workers:
            if worker.conn in ready or worker.process.sentinel in ready:
                self._drain(worker, runner)

    def _drain(self, worker: _Worker, runner: Any) -> None:
        """Pass on every message a worker has sent so far."""
        while worker.conn.poll():
            try:
                kind, number, payload = worker.conn.recv()
            except (EOFError, OSError):
                return
            if kind == "done":
                worker.task = None
                runner.done(payload)
            else:
                runner.send(kind, number, payload)

    def _alive(self, worker: _Worker, runner: Any) -> bool:
        """False for a worker whose process has ended; the trial it held fails with the reason."""
        if worker.process.is_alive():
            return True
        self._drain(worker, runner)  # whatever it sent before it ended
        if worker.task is not None:
            from nnctl.sweep import TrialOutcome

            runner.done(TrialOutcome(worker.task.trial.number, "failed", worker.died()))
        worker.conn.close()
        return False

    def _shutdown(self, workers: list[_Worker]) -> None:
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in workers:
            worker.process.join(SHUTDOWN_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
