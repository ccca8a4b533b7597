"""The thread count every native kernel uses (Cython prange and Numba parallel)."""

from __future__ import annotations

import os

_num_threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def get_num_threads() -> int:
    """Threads the native kernels use."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the threads used by both native backends (Cython and Numba).

    Raises
    ------
    ParameterError
        If `n` is not a positive integer.
    """
    from .errors import ParameterError

    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ParameterError(f"set_num_threads: n must be a positive integer, got {n!r}")
    _num_threads = n
