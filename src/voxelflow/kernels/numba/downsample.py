"""Numba 2x box-mean decimation; the rules are the oracle's
(:mod:`voxelflow.kernels.reference.downsample`), the loop the Cython backend's: output rows in
one contiguous block per thread, each summing its source rows into a row accumulator one row
at a time in the oracle's order, then dividing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ..reference.downsample import check_downsample_mean2
from .config import JIT, PARALLEL_JIT, apply_num_threads

__all__ = ["downsample_mean2"]


@njit(**JIT)
def _add_row(row, acc, sx, first):  # type: ignore[no-untyped-def]
    nx = row.shape[0]
    half = nx // 2
    if sx == 1:
        if first:
            for i in range(nx):
                acc[i] = row[i]
        else:
            for i in range(nx):
                acc[i] = acc[i] + row[i]
        return
    # storing a value into acc converts it exactly (to float64, int32 or int64) before adding
    if first:
        for i in range(half):
            acc[i] = row[2 * i]
            acc[i] = acc[i] + row[2 * i + 1]
    else:
        for i in range(half):
            acc[i] = (acc[i] + row[2 * i]) + row[2 * i + 1]
    if nx & 1:
        # the odd last column is a block of its own, counted twice (edge replication)
        if first:
            acc[half] = row[nx - 1]
            acc[half] = acc[half] + row[nx - 1]
        else:
            acc[half] = (acc[half] + row[nx - 1]) + row[nx - 1]


def finish_row(acc, out, count, shift):  # pragma: no cover - replaced inside jitted code
    """out[i] = acc[i] / count, rounded as the oracle does (jitted code only)."""
    raise NotImplementedError("finish_row is only callable from Numba-compiled code")


@overload(finish_row, jit_options=JIT)
def _finish_row_overload(acc, out, count, shift):  # type: ignore[no-untyped-def]
    if isinstance(acc.dtype, types.Float):

        def finish_float(acc, out, count, shift):  # type: ignore[no-untyped-def]
            if count == 1:
                for i in range(out.shape[0]):
                    out[i] = acc[i]
            else:
                scale = 1.0 / count
                for i in range(out.shape[0]):
                    out[i] = acc[i] * scale

        return finish_float

    def finish_integer(acc, out, count, shift):  # type: ignore[no-untyped-def]
        if count == 1:
            for i in range(out.shape[0]):
                out[i] = acc[i]
            return
        bias = count // 2 - 1
        for i in range(out.shape[0]):
            # acc = q * count + r: adding count / 2 - 1, plus 1 where q is odd, carries into q
            # exactly when r > count / 2, or r == count / 2 and q is odd (ties to even)
            s = acc[i]
            out[i] = (s + bias + ((s >> shift) & 1)) >> shift

    return finish_integer


@njit(**JIT)
def _rows_range(src, out, acc, sz, sy, sx, start, stop):  # type: ignore[no-untyped-def]
    nz, ny = src.shape[0], src.shape[1]
    ny_out = out.shape[1]
    count = sz * sy * sx
    shift = (sz - 1) + (sy - 1) + (sx - 1)
    for r in range(start, stop):
        oz = r // ny_out
        oy = r - oz * ny_out
        first = True
        for dz in range(sz):
            z = min(sz * oz + dz, nz - 1)
            for dy in range(sy):
                y = min(sy * oy + dy, ny - 1)
                _add_row(src[z, y], acc, sx, first)
                first = False
        finish_row(acc, out[oz, oy], count, shift)


@njit(**PARALLEL_JIT)
def _rows_parallel(src, out, acc, sz, sy, sx, threads):  # type: ignore[no-untyped-def]
    rows = out.shape[0] * out.shape[1]
    per = (rows + threads - 1) // threads
    for b in prange(threads):
        _rows_range(src, out, acc[b], sz, sy, sx, min(rows, b * per), min(rows, (b + 1) * per))


def downsample_mean2(src: np.ndarray, out: np.ndarray, step: Sequence[int]) -> None:
    """2x box mean; see :func:`voxelflow.kernels.reference.downsample.downsample_mean2`."""
    plan = check_downsample_mean2(src, out, step)
    if plan.out.size == 0:
        return
    sz, sy, sx = plan.step
    rows = plan.out.shape[0] * plan.out.shape[1]
    threads = max(1, min(plan.threads, rows))
    is_float = plan.src.dtype.kind == "f"
    # exact sums: 8 values of up to 16 bits fit int32, of up to 32 bits int64; floats in double
    acc_dtype = np.float64 if is_float else (np.int64 if plan.src.dtype.itemsize == 4 else np.int32)
    acc = np.empty((threads, plan.out.shape[2]), acc_dtype)
    if threads <= 1:
        _rows_range(plan.src, plan.out, acc[0], sz, sy, sx, 0, rows)
        return
    apply_num_threads()
    _rows_parallel(plan.src, plan.out, acc, sz, sy, sx, threads)
