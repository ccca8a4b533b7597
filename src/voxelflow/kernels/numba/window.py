"""Numba display windowing: stored values through a fused display table, or window arithmetic.

Arguments are validated (and the window edges derived) by
:mod:`voxelflow.kernels.reference.window`, shared by every backend; the jitted loops repeat
the reference's IEEE operations in the same order. Large arrays are split into one contiguous
block per thread.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from numba import njit, prange

from ..reference.window import check_lut_apply, check_window_apply
from .config import JIT, PARALLEL_JIT, apply_num_threads

__all__ = ["lut_apply", "window_apply"]

# Block starts are rounded to this many elements, so threads never share a cache line.
BLOCK_ALIGN = 64
LITTLE_ENDIAN = sys.byteorder == "little"
SIGMOID = 2
# IEEE division (x / 0 -> inf or NaN, as in C and NumPy) instead of Python's ZeroDivisionError:
# LINEAR with width 1 divides by zero where the result is never selected. It also lets LLVM
# vectorise the division.
_WINDOW_JIT = {**JIT, "error_model": "numpy"}
_WINDOW_PARALLEL_JIT = {**PARALLEL_JIT, "error_model": "numpy"}


@njit(**JIT)
def _row(value, first, last, clamp):  # type: ignore[no-untyped-def]
    """Table row of a stored value, as uint64: Numba then needs no negative-index branch
    (measured 1.6x)."""
    row = np.int64(value) - first
    if clamp:
        if row < 0:
            row = 0
        elif row > last:
            row = last
    return np.uint64(row)


@njit(**JIT)
def _lut_range(src, lut, out, first, clamp, packed, start, stop):  # type: ignore[no-untyped-def]
    """Values start..stop: out[i] = lut[clip(src[i] - first, 0, entries - 1)].

    ``clamp`` False: the table covers every value of the stored dtype. ``packed``: 8-bit out
    whose block starts are 8-byte aligned, on a little-endian host; eight display values are
    then gathered into one 64-bit store (byte stores were the bottleneck: measured 1.6x).
    """
    last = lut.shape[0] - 1
    # Slices indexed from 0 spare Numba its negative-index branch on every access.
    s = src[start:stop]
    o = out[start:stop]
    n8 = s.shape[0] // 8 * 8 if packed else 0
    if packed:
        words = o[:n8].view(np.uint64)
        for j in range(n8 // 8):
            w = np.uint64(0)
            for k in range(8):
                value = np.uint64(lut[_row(s[8 * j + k], first, last, clamp)])
                w |= value << np.uint64(8 * k)
            words[j] = w
    for i in range(n8, s.shape[0]):
        o[i] = lut[_row(s[i], first, last, clamp)]


@njit(**PARALLEL_JIT)
def _lut_parallel(src, lut, out, first, clamp, packed, threads):  # type: ignore[no-untyped-def]
    n = src.shape[0]
    per = ((n + threads - 1) // threads + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads):
        _lut_range(src, lut, out, first, clamp, packed, b * per, min(n, (b + 1) * per))


def lut_apply(src: np.ndarray, lut: np.ndarray, first: int, out: np.ndarray) -> None:
    """Stored values through a display table; see :func:`..reference.window.lut_apply`."""
    args = check_lut_apply(src, lut, first, out)
    n = args.src.shape[0]
    if n == 0:
        return
    first64 = np.int64(args.first)
    packed = LITTLE_ENDIAN and args.out.dtype == np.uint8 and args.out.ctypes.data % 8 == 0
    if args.threads <= 1:
        _lut_range(args.src, args.lut, args.out, first64, args.clamp, packed, 0, n)
        return
    apply_num_threads()
    _lut_parallel(args.src, args.lut, args.out, first64, args.clamp, packed, args.threads)


@njit(**_WINDOW_JIT)
def _window_range(  # type: ignore[no-untyped-def]
    src, out, start, stop, slope, intercept, function, c0, w0, lo, hi, ymax, inverse, quantise
):
    """Values start..stop: the reference's window_values then finish_values."""
    s = src[start:stop]
    o = out[start:stop]
    for i in range(s.shape[0]):
        x = np.float64(s[i]) * slope + intercept
        if function == SIGMOID:
            y = ymax / (1.0 + math.exp(-4.0 * (x - c0) / w0))
        else:
            y = ((x - c0) / w0 + 0.5) * ymax
            # NaN fails both tests: below the window.
            y = ymax if x > hi else (y if x > lo else 0.0)
        # Selections, not branches (they vectorise), and not max/min, whose NaN handling
        # is not the reference's: NaN fails y > 0 and becomes 0.
        y = y if y > 0.0 else 0.0  # noqa: FURB136
        y = y if y < ymax else ymax  # noqa: FURB136
        if inverse:
            y = ymax - y
        if quantise:
            # y + 0.5 >= 0.5, so truncation is floor: round half up, once.
            o[i] = np.uint32(y + 0.5)
        else:
            o[i] = y


@njit(**_WINDOW_PARALLEL_JIT)
def _window_parallel(  # type: ignore[no-untyped-def]
    src, out, slope, intercept, function, c0, w0, lo, hi, ymax, inverse, quantise, threads
):
    n = src.shape[0]
    per = ((n + threads - 1) // threads + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads):
        _window_range(
            src,
            out,
            b * per,
            min(n, (b + 1) * per),
            slope,
            intercept,
            function,
            c0,
            w0,
            lo,
            hi,
            ymax,
            inverse,
            quantise,
        )


def window_apply(
    src: np.ndarray,
    out: np.ndarray,
    slope: float,
    intercept: float,
    function: int,
    center: float,
    width: float,
    ymax: float,
    inverse: bool,
) -> None:
    """Rescale, window, invert and scale; see :func:`..reference.window.window_apply`."""
    a = check_window_apply(src, out, slope, intercept, function, center, width, ymax, inverse)
    n = a.src.shape[0]
    if n == 0:
        return
    params = (
        a.slope,
        a.intercept,
        a.function,
        a.c0,
        a.w0,
        a.lo,
        a.hi,
        a.ymax,
        a.inverse,
        a.quantise,
    )
    if a.threads <= 1:
        _window_range(a.src, a.out, 0, n, *params)
        return
    apply_num_threads()
    _window_parallel(a.src, a.out, *params, a.threads)
