"""The kernel-backend contract for downsample_mean2 (the pyramid's 2x box mean).

Every native backend must equal the NumPy reference bit for bit on any valid call (integer
rounding, float summation order, NaN and infinities included), raise the same ParameterError
on any bad call, and give the same result on one thread as on two. The reference itself is
checked against a per-voxel statement of the rule with exact fractions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from voxelflow import kernels
from voxelflow.errors import ParameterError
from voxelflow.kernels.reference.downsample import (
    DOWNSAMPLE_DTYPES,
    check_downsample_mean2,
    downsampled_shape,
)
from voxelflow._threads import PARALLEL_MIN_BYTES
from voxelflow.testing import strategies as vst
from voxelflow.testing.contract import KernelBackendContract

KERNEL = "downsample_mean2"

_HEALTH = [HealthCheck.differing_executors, HealthCheck.too_slow, HealthCheck.data_too_large]
BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=_HEALTH)
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=_HEALTH)




def _read_only(arr: np.ndarray) -> np.ndarray:
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


_src = np.zeros((4, 6, 8), np.int16)
_out = np.zeros((2, 3, 4), np.int16)
_shared = np.zeros(4 * 6 * 8 + 2 * 3 * 4, np.int16)

# (parameter named in the message, arguments)
BAD_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("src", (_src.tolist(), _out, (2, 2, 2))),
    ("src", (_src.reshape(4, 48), _out, (2, 2, 2))),
    ("src", (_src.astype(np.int64), _out.astype(np.int64), (2, 2, 2))),
    ("src", (_src.astype(np.float16), _out.astype(np.float16), (2, 2, 2))),
    ("src", (_src.astype(">i2"), _out, (2, 2, 2))),
    ("src", (np.zeros((4, 6, 16), np.int16)[:, :, ::2], _out, (2, 2, 2))),
    ("src", (np.frombuffer(bytearray(_src.nbytes + 1), np.uint8)[1:].view(np.int16).reshape(_src.shape), _out, (2, 2, 2))),
    ("step", (_src, _out, (2, 2))),
    ("step", (_src, _out, (2, 2, 3))),
    ("step", (_src, _out, (2, 2, 0))),
    ("step", (_src, _out, (2.0, 2, 2))),
    ("step", (_src, _out, (True, 2, 2))),
    ("step", (_src, _out, 2)),
    ("out", (_src, np.zeros((2, 3, 5), np.int16), (2, 2, 2))),
    ("out", (_src, np.zeros((4, 6, 8), np.int16), (2, 2, 2))),
    ("out", (_src, _out.astype(np.uint16), (2, 2, 2))),
    ("out", (_src, _read_only(_out), (2, 2, 2))),
    ("out", (_src, np.zeros((2, 3, 8), np.int16)[:, :, ::2], (2, 2, 2))),
    ("out", (_src, _out.reshape(24), (2, 2, 2))),
    ("out", (_shared[: _src.size].reshape(_src.shape), _shared[8 : 8 + _out.size].reshape(_out.shape), (2, 2, 2))),
]


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal bytes, except that a NaN may be any NaN: IEEE 754 leaves the sign and payload of
    the NaN an operation returns open (inf - inf, or which of two NaN operands propagates, differ
    between a vectorised and a scalar add)."""
    if got.dtype.kind == "f":
        nan = np.isnan(expected)
        np.testing.assert_array_equal(np.isnan(got), nan)
        got, expected = got[~nan], expected[~nan]
    # bytes, not values: signed zeros must agree too
    assert got.tobytes() == expected.tobytes()


def oracle(src: np.ndarray, step: tuple[int, int, int]) -> np.ndarray:
    """The rule voxel by voxel: exact means rounded half to even, floats summed in order."""
    out = np.empty(downsampled_shape(src.shape, step), src.dtype)
    count = step[0] * step[1] * step[2]
    for index in itertools.product(*(range(n) for n in out.shape)):
        values = []
        for offsets in itertools.product(*(range(s) for s in step)):
            # an odd axis's last block repeats its edge voxel
            at = tuple(min(i * s + o, n - 1) for i, s, o, n in zip(index, step, offsets, src.shape))
            values.append(src[at])
        if src.dtype.kind == "f":
            total = np.float64(values[0])
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, huge + huge
                for v in values[1:]:
                    total = total + np.float64(v)
            out[index] = total * (1.0 / count) if count > 1 else total
        else:
            mean = Fraction(sum(int(v) for v in values), count)
            out[index] = round(mean)  # Python rounds half to even
    return out


class BackendContract(KernelBackendContract):
    """What every backend, the reference included, must do. Subclasses set ``backend``."""

    kernel_names = (KERNEL,)

    @pytest.mark.parametrize("case", BAD_CALLS, ids=[f"{c[0]}-{n}" for n, c in enumerate(BAD_CALLS)])
    def test_rejects_bad_call(self, case: tuple[str, tuple[Any, ...]]) -> None:
        parameter, args = case
        with pytest.raises(ParameterError, match=rf"\b{parameter}\b"):
            self.kernel(KERNEL)(*args)

    def test_empty_calls_return_quietly(self) -> None:
        for shape in [(0, 4, 4), (3, 0, 5), (2, 2, 0)]:
            src = np.zeros(shape, np.uint16)
            self.kernel(KERNEL)(src, np.zeros(downsampled_shape(shape, (2, 2, 2)), np.uint16), (2, 2, 2))

    def test_known_values(self) -> None:
        # means of 0.5 and 1.5 round to the even neighbour; negative ties too (-0.5 -> 0, -1.5 -> -2)
        block = np.array([0, 1] * 4, np.int16).reshape(2, 2, 2)
        for values, expected in [(block, 0), (block + 1, 2), (-block, 0), (-block - 1, -2)]:
            out = np.empty((1, 1, 1), np.int16)
            self.kernel(KERNEL)(np.ascontiguousarray(values), out, (2, 2, 2))
            assert out.item() == expected
        # sums beyond the dtype: the mean of uint8 255s is 255, of int32 extremes exact
        out8 = np.empty((1, 1, 1), np.uint8)
        self.kernel(KERNEL)(np.full((2, 2, 2), 255, np.uint8), out8, (2, 2, 2))
        assert out8.item() == 255
        big = np.array([2**31 - 1, 2**31 - 1], np.int32).reshape(1, 1, 2)
        out32 = np.empty((1, 1, 1), np.int32)
        self.kernel(KERNEL)(big, out32, (1, 1, 2))
        assert out32.item() == 2**31 - 1
        # an odd x axis: the last column is its own mean; z kept (step 1)
        src = np.arange(12, dtype=np.float32).reshape(1, 2, 6)[:, :, :5].copy()
        out = np.empty((1, 1, 3), np.float32)
        self.kernel(KERNEL)(src, out, (1, 2, 2))
        np.testing.assert_array_equal(out, [[[3.5, 5.5, 7.0]]])  # (4 + 4 + 10 + 10) / 4 last
        # floats: NaN and infinities propagate; largest finite values overflow to infinity
        # in float32 only through the final rounding, never in the float64 sum
        huge = np.full((1, 1, 2), np.finfo(np.float32).max, np.float32)
        outf = np.empty((1, 1, 1), np.float32)
        self.kernel(KERNEL)(huge, outf, (1, 1, 2))
        assert outf.item() == np.finfo(np.float32).max
        nan = np.array([[[np.nan, 1.0, np.inf, -np.inf]]], np.float64)
        outn = np.empty((1, 1, 2), np.float64)
        self.kernel(KERNEL)(nan, outn, (1, 1, 2))
        assert np.isnan(outn[0, 0, 0]) and np.isnan(outn[0, 0, 1])


class NativeContract(BackendContract):
    """A native backend: equal to the reference, bit for bit, on any valid call."""

    def check(self, case: vst.DownsampleCase) -> None:
        expected = case.new_out()
        kernels.get(KERNEL, "reference")(*case.call_args(expected))
        got = case.new_out()
        self.kernel(KERNEL)(*case.call_args(got))
        assert_same_bits(got, expected)

    @BOUNDED
    @given(case=vst.downsample_cases())
    def test_equals_reference(self, case: vst.DownsampleCase) -> None:
        self.check(case)

    @pytest.mark.slow
    @LONG
    @given(case=vst.downsample_cases(max_size=60_000))
    def test_equals_reference_long(self, case: vst.DownsampleCase) -> None:
        self.check(case)

    @pytest.mark.parametrize("dtype", DOWNSAMPLE_DTYPES, ids=str)
    @pytest.mark.parametrize("step", [(2, 2, 2), (1, 2, 2), (2, 1, 1)], ids=str)
    def test_threads(self, dtype: np.dtype, step: tuple[int, int, int], threads: Callable[[int], None]) -> None:
        # above PARALLEL_MIN_BYTES, with a row count that does not split evenly
        nz, ny = 7, 33
        nx = PARALLEL_MIN_BYTES // (nz * ny * dtype.itemsize) + 3
        rng = np.random.default_rng(nx)
        if dtype.kind == "f":
            src = rng.normal(0, 100, (nz, ny, nx)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            src = rng.integers(info.min, info.max, (nz, ny, nx), dtype=dtype, endpoint=True)
        expected = np.empty(downsampled_shape(src.shape, step), dtype)
        kernels.get(KERNEL, "reference")(src, expected, step)
        for count in (1, 2):
            threads(count)
            assert check_downsample_mean2(src, expected, step).threads == count
            out = np.zeros_like(expected)
            self.kernel(KERNEL)(src, out, step)
            assert_same_bits(out, expected)


class TestReference(BackendContract):
    """The oracle, checked against the rule stated voxel by voxel with exact fractions."""

    backend = "reference"

    @BOUNDED
    @given(case=vst.downsample_cases(max_size=300))
    def test_equals_the_rule(self, case: vst.DownsampleCase) -> None:
        out = case.new_out()
        self.kernel(KERNEL)(*case.call_args(out))
        assert_same_bits(out, oracle(case.src, case.step))


class TestCython(NativeContract):
    backend = "cython"


class TestNumba(NativeContract):
    backend = "numba"


def test_every_registered_backend_is_tested() -> None:
    tested = {cls.backend for cls in (TestReference, TestCython, TestNumba)}
    assert set(kernels.KERNELS[KERNEL]) == tested
