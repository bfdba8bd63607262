"""The Ray sweep backend (`--backend ray`): each trial a Ray task, for sweeps that outgrow one machine.

The data go into Ray's object store once (`ray.put`) and every task reads them from there. A task
trains into a temporary directory on whichever node runs it and returns the run directory's files;
the driver writes them into the sweep directory, so the nodes need no shared filesystem. A small
actor (`Board`) carries progress to the driver and the driver's stop request to the tasks: on
Ctrl-C, running trials stop after their batch and send back their checkpoint (`interrupted`), and
trials that had not started are cancelled (`pending`). Ray is the optional extra `nnctl[ray]`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from nnctl.config import absolute_data_paths, relative_data_paths
from nnctl.errors import NnctlError
from nnctl.experiment import LoadedData
from nnctl.files import atomic_write
from nnctl.run import CONFIG_YAML
from nnctl.rundir import LOCK
from nnctl.sweep import TrialOutcome, TrialTask, run_trial
from nnctl.threads import available_cores, blas_threads
from nnctl.yamlfile import dump_yaml, parse_yaml

POLL_SECONDS = 0.2  # the driver's wait for results and progress
STOP_POLL_SECONDS = 0.5  # how often a running task asks the board whether to stop


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NnctlError('--backend ray needs Ray, which is not installed: pip install "nnctl[ray]"') from None
    return ray


class Board:
    """A Ray actor: progress messages from tasks to the driver, and the driver's stop request to the tasks."""

    def __init__(self) -> None:
        self.stopped = False
        self.messages: list[tuple[str, int, dict[str, Any]]] = []

    def stop(self) -> None:
        self.stopped = True

    def is_stopped(self) -> bool:
        return self.stopped

    def post(self, message: tuple[str, int, dict[str, Any]]) -> None:
        self.messages.append(message)

    def drain(self) -> list[tuple[str, int, dict[str, Any]]]:
        messages, self.messages = self.messages, []
        return messages


def ray_trial(task: TrialTask, data: LoadedData, files: dict[str, bytes], board: Any, threads: int) -> Any:
    """A Ray task: run one trial in a temporary directory (holding `files`, the run so far, to resume it);
    returns (TrialOutcome, the run directory's files)."""
    import ray

    last, stopped = [-float("inf")], [False]

    def should_stop() -> bool:
        if not stopped[0] and time.monotonic() - last[0] >= STOP_POLL_SECONDS:
            last[0] = time.monotonic()
            try:
                stopped[0] = bool(ray.get(board.is_stopped.remote()))
            except Exception:  # noqa: BLE001 (the board is gone with its driver: stop and save)
                stopped[0] = True
        return stopped[0]

    def send(kind: str, number: int, payload: dict[str, Any]) -> None:
        board.post.remote((kind, number, payload))

    with tempfile.TemporaryDirectory(prefix="nnctl-trial-") as tmp:
        run = Path(tmp) / task.trial.name
        for name, content in files.items():
            atomic_write(run / name, content)
        with blas_threads(threads):
            outcome = run_trial(dataclasses.replace(task, run=run), lambda config: data, send, should_stop)
        return outcome, _pack(run)


def _pack(run: Path) -> dict[str, bytes]:
    """Every file of a run directory (but its lock), by path relative to it; its config.yaml names the data by
    absolute path (it names them relative to `run`), so the files can be unpacked anywhere."""
    if not run.is_dir():
        return {}
    files = {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK}
    if CONFIG_YAML in files:
        files[CONFIG_YAML] = _rebased(files[CONFIG_YAML], run.resolve(), None)
    return files


class RayBackend:
    """Trials as Ray tasks of `cpus_per_trial` CPUs on the cluster at `address` (or RAY_ADDRESS, or a local Ray
    started here and stopped after)."""

    name = "ray"

    def __init__(self, address: str | None, cpus_per_trial: float, threads: int | None) -> None:
        self.ray = import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus = cpus_per_trial
        self.threads = threads or max(1, int(cpus_per_trial))
        self.slots = 1
        self.stopping = False
        self._owned = False

    def __enter__(self) -> RayBackend:
        ray = self.ray
        if not ray.is_initialized() and self.address is not None:
            _check_reachable(self.address)
        if not ray.is_initialized():
            quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
            try:
                if self.address is not None:
                    ray.init(address=self.address, **quiet)
                else:
                    ray.init(address="local", num_cpus=available_cores(), include_dashboard=False, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local Ray instance"
                raise NnctlError(f"--backend ray: cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
            self._owned = True
        cpus = float(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, int(cpus // self.cpus))
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._owned:
            self.ray.shutdown()

    def request_stop(self) -> None:
        self.stopping = True

    def run(self, tasks: list[TrialTask], runner: Any) -> None:
        ray = self.ray
        board = ray.remote(num_cpus=0)(Board).remote()
        remote = ray.remote(ray_trial).options(num_cpus=self.cpus, max_retries=0)
        data_refs: dict[str, Any] = {}
        pending: dict[Any, TrialTask] = {}
        plan = runner.plan
        for task in tasks:
            key = plan.data_keys[task.trial.point]
            if key not in data_refs:  # sent to the object store once, whatever the number of trials
                # as the sweep's validation read them (read again if a local run of this plan freed them)
                loaded = plan.data.loaded.get(key) or plan.data.load(plan.trial_config(task.trial), key)
                data_refs[key] = ray.put(loaded)
            files = _pack(task.run) if task.resume else {}  # the run so far, to resume it
            pending[remote.remote(task, data_refs[key], files, board, self.threads)] = task
        self._wait(pending, board, runner)

    def _wait(self, pending: dict[Any, TrialTask], board: Any, runner: Any) -> None:
        """Pass progress on and write each trial as it returns; on a stop request, stop the running tasks and
        cancel the others."""
        ray, started, stop_sent = self.ray, set(), False
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for kind, number, payload in ray.get(board.drain.remote()):
                started.add(number)
                runner.send(kind, number, payload)
            if self.stopping and not stop_sent:
                stop_sent = True
                ray.get(board.stop.remote())
                for ref, task in pending.items():
                    if task.trial.number not in started and ref not in ready:
                        ray.cancel(ref)
            for ref in ready:
                task = pending.pop(ref)
                runner.done(self._result(ref, task, runner))

    def _result(self, ref: Any, task: TrialTask, runner: Any) -> TrialOutcome:
        """A finished task's outcome, its files written into the sweep directory (no shared filesystem needed)."""
        exceptions = self.ray.exceptions
        number = task.trial.number
        try:
            outcome, files = self.ray.get(ref)
        except exceptions.TaskCancelledError:
            return TrialOutcome(number, "pending")
        except exceptions.OutOfMemoryError:
            return TrialOutcome(number, "failed", "the Ray task running this trial was killed: out of memory")
        except exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"the Ray task running this trial failed: {type(exc).__name__}: {first}"
            return TrialOutcome(number, "failed", reason)
        _unpack(task.run, files)
        return outcome


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address that nothing answers is an error now (ray.init would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise NnctlError(f"--backend ray: nothing answers at {address} ({reason}); is the cluster up?") from None


def _unpack(run: Path, files: dict[str, bytes]) -> None:
    """Write a task's run directory; its config.yaml names the data relative to where the run now is."""
    for name, content in files.items():
        if name == CONFIG_YAML:
            content = _rebased(content, run.resolve(), run.resolve())
        atomic_write(run / name, content)


def _rebased(content: bytes, home: Path, to: Path | None) -> bytes:
    """A run's config.yaml with its data paths (relative to `home`, or absolute) relative to `to` (absolute with
    None)."""
    document = parse_yaml(content.decode())
    absolute_data_paths(document, home, CONFIG_YAML)
    if to is not None:
        relative_data_paths(document, to)
    return dump_yaml(document).encode()
