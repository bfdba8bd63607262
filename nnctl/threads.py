"""BLAS threads: how many cores this process may use, and a limit on the threads NumPy's BLAS runs.

Trials that run side by side each get `cores // workers` threads, so they never oversubscribe the
machine; `nnctl train --threads N` sets the same limit for one run, which is how a sweep's trial is
reproduced bit for bit (a matrix product may split its work differently with another thread count).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit NumPy's BLAS (OpenBLAS, MKL, BLIS) to `threads` threads inside the block; None leaves it alone."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def threads_in_use() -> int | None:
    """The BLAS thread count NumPy runs with now (None when no BLAS library is found)."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return max(counts) if counts else None
