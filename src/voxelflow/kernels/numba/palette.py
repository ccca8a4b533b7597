"""Numba Palette Color lookup (PS3.3 C.7.6.3.1.5): indices to RGB through an (entries, 3) table.

Arguments are validated by :mod:`voxelflow.kernels.reference.palette` (shared by every
backend); large arrays are split into one contiguous block per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..reference.palette import check_palette_lookup
from .config import JIT, PARALLEL_JIT, apply_num_threads

__all__ = ["palette_lookup"]

# Block starts are rounded to this many pixels, so threads never share a cache line of out.
BLOCK_ALIGN = 64


@njit(**JIT)
def _lookup_range(indices, lut, out, first, start, stop):  # type: ignore[no-untyped-def]
    """Pixels start..stop: out[i] = lut[clip(indices[i] - first, 0, entries - 1)]."""
    last = lut.shape[0] - 1
    # Slices indexed from 0 spare Numba its negative-index branch on every access.
    block = indices[start:stop]
    rgb = out[start:stop]
    for i in range(block.shape[0]):
        row = np.int64(block[i]) - first
        # Below the first mapped value: first entry; above the last: last entry.
        if row < 0:
            row = 0
        elif row > last:
            row = last
        rgb[i, 0] = lut[row, 0]
        rgb[i, 1] = lut[row, 1]
        rgb[i, 2] = lut[row, 2]


@njit(**PARALLEL_JIT)
def _lookup_parallel(indices, lut, out, first, threads):  # type: ignore[no-untyped-def]
    n = indices.shape[0]
    per = ((n + threads - 1) // threads + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads):
        _lookup_range(indices, lut, out, first, b * per, min(n, (b + 1) * per))


def palette_lookup(
    indices: np.ndarray, lut: np.ndarray, first_mapped: int, out: np.ndarray
) -> None:
    """Map palette indices to RGB; see :func:`..reference.palette.palette_lookup`."""
    args = check_palette_lookup(indices, lut, first_mapped, out)
    n = args.indices.shape[0]
    if n == 0:
        return
    first = np.int64(args.first_mapped)
    if args.threads <= 1:
        _lookup_range(args.indices, args.lut, args.out, first, 0, n)
        return
    apply_num_threads()
    _lookup_parallel(args.indices, args.lut, args.out, first, args.threads)
