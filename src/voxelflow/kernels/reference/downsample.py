"""2x box-mean decimation (the multiscale pyramid's filter): the oracle and the argument checks.

``downsample_mean2`` halves the axes of a 3-D array whose step is 2 (a step of 1 keeps the
axis): each output voxel is the mean of the 2 x 2 x 2 block (2 x 2, 2, ... where steps are 1)
it covers. For 2x decimation the box filter zeroes the Nyquist frequency of the finer grid, so
what would alias is suppressed. Along a halved axis of odd length the last block holds one
voxel, counted twice (edge replication): its mean is that voxel's.

The arithmetic is pinned down so every backend gives the same bits:

- integers: the exact sum, divided by the block size and rounded to nearest, ties to even
  (``numpy.rint``); the result keeps the dtype (a mean never leaves the input's range);
- floats: the values are summed in float64 in C order of their offsets in the block
  ((0, 0, 0), (0, 0, 1), (0, 1, 0), ... as written, no reassociation), the sum is multiplied
  by ``1 / count`` (a power of two) and rounded once to the input's dtype; NaN and infinity
  propagate (which NaN, sign and payload, is left open, as IEEE 754 leaves it).

:func:`box_mean` is the same filter for any dtype and any leading axes (the pyramid uses it
for the dtypes the native backends do not take, such as int64).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ...errors import ParameterError
from ..._threads import parallel_threads
from .unpack import check_array, check_disjoint, check_integer

__all__ = [
    "DOWNSAMPLE_DTYPES",
    "DownsamplePlan",
    "box_mean",
    "check_downsample_mean2",
    "downsample_mean2",
    "downsampled_shape",
]

#: dtypes ``downsample_mean2`` takes (bool data can pass as its uint8 view: 0/1 stays 0/1).
DOWNSAMPLE_DTYPES = tuple(
    np.dtype(t)
    for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)


class DownsamplePlan(NamedTuple):
    """The arguments of ``downsample_mean2`` after :func:`check_downsample_mean2`."""

    src: np.ndarray
    out: np.ndarray
    step: tuple[int, int, int]
    threads: int


def downsampled_shape(shape: Sequence[int], step: Sequence[int]) -> tuple[int, ...]:
    """The shape after decimating the last three axes of `shape` by `step`: ``ceil(n / s)``."""
    lead = len(shape) - 3
    return tuple(shape[:lead]) + tuple(-(-int(n) // int(s)) for n, s in zip(shape[lead:], step))


def _parse_step(step: Any, kernel: str) -> tuple[int, int, int]:
    try:
        values = tuple(step)
    except TypeError:
        raise ParameterError(f"{kernel}: step must be 3 integers in {{1, 2}}, got {step!r}") from None
    if len(values) != 3:
        raise ParameterError(f"{kernel}: step must be 3 integers in {{1, 2}}, got {step!r}")
    parsed = tuple(check_integer(s, "step", kernel) for s in values)
    if any(s not in (1, 2) for s in parsed):
        raise ParameterError(f"{kernel}: step must be 3 integers in {{1, 2}}, got {step!r}")
    return parsed  # type: ignore[return-value]


def check_downsample_mean2(src: Any, out: Any, step: Any) -> DownsamplePlan:
    """Validate the arguments of ``downsample_mean2``.

    Raises
    ------
    ParameterError
        If `src` is not a 3-D aligned C-contiguous array of a :data:`DOWNSAMPLE_DTYPES` dtype,
        `step` not three integers each 1 or 2, or `out` not a writeable aligned C-contiguous
        array of `src`'s dtype and shape ``ceil(src.shape / step)`` that is disjoint from
        `src`.
    """
    kernel = "downsample_mean2"
    src = check_array(src, "src", kernel, ndim=3, dtypes=DOWNSAMPLE_DTYPES)
    steps = _parse_step(step, kernel)
    out = check_array(out, "out", kernel, ndim=3, dtypes=(src.dtype,), writeable=True)
    expected = downsampled_shape(src.shape, steps)
    if out.shape != expected:
        raise ParameterError(
            f"{kernel}: out must have shape {expected} (src {src.shape} / step {steps}, "
            f"rounded up), got {out.shape}"
        )
    check_disjoint(out, {"src": src}, kernel)
    return DownsamplePlan(
        src=src, out=out, step=steps, threads=parallel_threads(src.nbytes + out.nbytes)
    )


def box_mean(block: Any, step: Sequence[int]) -> np.ndarray:
    """Decimate the last three axes of `block` by `step` (1 or 2 each) with a box mean.

    Any dtype and any leading axes; the arithmetic of the module docstring (integers: exact
    sums for up to 32-bit data, rounded to nearest even; 64-bit integers go through float64).

    Returns
    -------
    numpy.ndarray
        A new array of `block`'s dtype and shape ``ceil(shape / step)`` on the last 3 axes.
    """
    block = np.asarray(block)
    lead = block.ndim - 3
    pad = [(0, 0)] * lead + [(0, n % 2 if s == 2 else 0) for n, s in zip(block.shape[lead:], step)]
    if any(after for _, after in pad):
        block = np.pad(block, pad, mode="edge")
    integer = block.dtype.kind in "biu"
    # sums of up to 8 values below 2**16 are exact in float32 (24-bit mantissa), below 2**32
    # in float64 (53 bits); floats always sum in float64
    accumulate = np.float32 if integer and block.dtype.itemsize <= 2 else np.float64
    total: np.ndarray | None = None
    # inf - inf is NaN and float64 sums of huge values overflow to inf: both are the results
    # the rule asks for, not mistakes worth a warning
    with np.errstate(invalid="ignore", over="ignore"):
        for offsets in itertools.product(*(range(s) for s in step)):
            view = block[(Ellipsis, *(slice(o, None, s) for o, s in zip(offsets, step)))]
            if total is None:
                total = view.astype(accumulate)
            else:
                total += view
        assert total is not None
        count = math.prod(step)
        if count > 1:
            total *= 1.0 / count  # a power of two: exact
        if integer:
            np.rint(total, out=total)
        return total.astype(block.dtype, copy=False)


def downsample_mean2(src: np.ndarray, out: np.ndarray, step: Sequence[int]) -> None:
    """Write the 2x box mean of `src` into `out` (see the module docstring).

    Parameters
    ----------
    src : ndarray, 3-D (z, y, x), C-contiguous, uint8/int8/uint16/int16/uint32/int32/float32/float64
        The finer grid.
    out : ndarray, C-contiguous, same dtype, shape ``ceil(src.shape / step)``
        Receives the coarser grid.
    step : 3 ints, each 1 or 2
        Decimation along (z, y, x).

    Raises
    ------
    ParameterError
        See :func:`check_downsample_mean2`.
    """
    plan = check_downsample_mean2(src, out, step)
    if plan.out.size:
        plan.out[...] = box_mean(plan.src, plan.step)
