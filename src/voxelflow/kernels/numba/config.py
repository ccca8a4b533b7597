"""One place for the @njit flags every Numba kernel uses.

``cache=True`` keeps the compiled machine code on disk, so only the first call in a fresh
environment pays the compile time; ``nogil=True`` lets Dask threads run kernels concurrently.
"""

from __future__ import annotations

import numba

from ..._threads import get_num_threads

JIT = {"nogil": True, "cache": True, "boundscheck": False}
PARALLEL_JIT = {**JIT, "parallel": True}


def apply_num_threads() -> None:
    """Make Numba's parallel loops in this thread use voxelflow's thread count."""
    numba.set_num_threads(min(get_num_threads(), numba.config.NUMBA_NUM_THREADS))
