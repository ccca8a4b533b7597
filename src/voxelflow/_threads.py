"""The thread count every native kernel uses (Cython prange and Numba parallel)."""

from __future__ import annotations

import os

# OpenMP threads that spin while idle steal the cores from the other runtime: with the Cython
# (libgomp) and Numba pools both alive on 2 cores, 2-thread kernels measured no faster than 1
# thread under the default policy, and 1.9-2x faster with PASSIVE. It must be set before the
# OpenMP runtime loads, which is why it lives here (imported first by voxelflow); a value the
# user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_num_threads = max(
    1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
)


#: Below this many bytes touched, native kernels run on one thread. A memory-bound loop
#: moves ~10 GB/s on one core, so 4 MiB takes well under a millisecond; waking a second
#: thread costs microseconds on an idle machine but up to a scheduler slice (milliseconds)
#: when the other cores are busy (Dask workers decoding other files, other processes),
#: measured as a 50x slowdown per 256x256 slice with a 256 KiB threshold.
PARALLEL_MIN_BYTES = 4 * 1024 * 1024


def parallel_threads(nbytes: int) -> int:
    """Threads a native kernel should use for a call touching `nbytes` bytes."""
    return 1 if nbytes < PARALLEL_MIN_BYTES else _num_threads


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
