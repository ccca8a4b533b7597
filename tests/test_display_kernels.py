"""The kernel-backend contract for lut_apply and window_apply (the display windowing kernels).

Every native backend must equal the NumPy reference bit for bit on any valid call, raise the
same ParameterError on any bad call, and give the same result on one thread as on two
(the shape of tests/kernels/test_contract.py). The strategies live here, next to the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from voxelflow import kernels
from voxelflow._threads import PARALLEL_MIN_BYTES
from voxelflow.errors import ParameterError
from voxelflow.kernels.reference.window import (
    FUNCTION_CODES,
    LUT_SRC_DTYPES,
    OUT_DTYPES,
    WINDOW_SRC_DTYPES,
    check_lut_apply,
    check_window_apply,
)
from voxelflow.testing.contract import KernelBackendContract
from voxelflow.testing.strategies import edge_sizes

KERNEL_NAMES = ("lut_apply", "window_apply")
_HEALTH = [HealthCheck.differing_executors, HealthCheck.too_slow, HealthCheck.data_too_large]
BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=_HEALTH)
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=_HEALTH)
SENTINEL = 0xA5


def _sentinel(size: int, dtype: np.dtype, offset: int = 0) -> np.ndarray:
    """A fresh output of sentinel bytes starting `offset` elements past an aligned address."""
    buf = np.empty(size + offset, dtype)
    buf.view(np.uint8)[:] = SENTINEL
    return buf[offset:]


# -- strategies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LutCase:
    """One ``lut_apply(src, lut, first, out)`` call; ``out_offset`` shifts out's address."""

    src: np.ndarray
    lut: np.ndarray
    first: int
    out_offset: int

    def new_out(self) -> np.ndarray:
        return _sentinel(self.src.size, self.lut.dtype, self.out_offset)

    def call_args(self, out: np.ndarray) -> tuple[Any, ...]:
        return self.src, self.lut, self.first, out


def _table(dtype: np.dtype, entries: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return rng.random(entries).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, entries, dtype=dtype, endpoint=True)


@st.composite
def lut_cases(draw: st.DrawFn, max_size: int = 1100) -> LutCase:
    """Tables of 1 to 65536 entries, first values below, at and above the dtype's range (full
    coverage skips the clamping), stored values on both sides of the table's ends."""
    src_dtype = draw(st.sampled_from(LUT_SRC_DTYPES))
    lut_dtype = draw(st.sampled_from(OUT_DTYPES))
    info = np.iinfo(src_dtype)
    full = draw(st.booleans()) and src_dtype.itemsize <= 2
    if full:
        entries = int(info.max) - int(info.min) + 1 + draw(st.integers(0, 3))
        first = int(info.min) - draw(st.integers(0, entries - (int(info.max) - int(info.min) + 1)))
    else:
        entries = draw(
            st.one_of(st.sampled_from([1, 2, 3, 255, 256, 257, 4096]), st.integers(1, 400))
        )
        first = draw(
            st.one_of(
                st.sampled_from([0, -1, 1, int(info.min), int(info.max), -(2**40), 2**40]),
                st.integers(int(info.min) - 500, int(info.max) + 500),
            )
        )
    lut = _table(lut_dtype, entries, draw(st.integers(0, 2**32 - 1)))
    last = first + entries - 1
    near = [
        v
        for v in (first - 1, first, first + 1, last - 1, last, last + 1)
        if info.min <= v <= info.max
    ]
    elements = st.integers(int(info.min), int(info.max))
    if near:
        elements = st.one_of(st.sampled_from(near), elements)
    src = draw(
        hnp.arrays(
            src_dtype,
            edge_sizes(max_size),
            elements=elements,
            fill=st.sampled_from([int(info.min), int(info.max), 0, *near]),
        )
    )
    return LutCase(src, lut, first, draw(st.integers(0, 7)))


@dataclass(frozen=True)
class WindowCase:
    """One ``window_apply(src, out, slope, intercept, function, center, width, ymax, inverse)``."""

    src: np.ndarray
    out_dtype: np.dtype
    slope: float
    intercept: float
    function: int
    center: float
    width: float
    ymax: float
    inverse: bool
    out_offset: int

    def new_out(self) -> np.ndarray:
        return _sentinel(self.src.size, self.out_dtype, self.out_offset)

    def call_args(self, out: np.ndarray) -> tuple[Any, ...]:
        return (
            self.src,
            out,
            self.slope,
            self.intercept,
            self.function,
            self.center,
            self.width,
            self.ymax,
            self.inverse,
        )


@st.composite
def window_cases(draw: st.DrawFn, max_size: int = 1100) -> WindowCase:
    """Float and 32-bit inputs with NaN, infinities and values on and next to the window
    edges (where rounding ties live), every function, widths from 1 up, any output depth."""
    function = draw(st.sampled_from(sorted(FUNCTION_CODES.values())))
    min_width = 1.0 if function == 0 else 1e-3
    width = draw(
        st.one_of(
            st.sampled_from([min_width, 1.0, 2.0, 3.0, 4.0, 255.0, 256.0, 400.0, 4096.0]),
            st.floats(min_width, 1e5, allow_nan=False),
        )
    )
    center = draw(
        st.one_of(
            st.sampled_from([0.0, 0.5, 40.0, -600.0, 2047.5]), st.floats(-1e4, 1e4, allow_nan=False)
        )
    )
    slope = draw(st.sampled_from([1.0, 0.5, 2.0, -1.0, 0.0, 1e-3, 3.7]))
    intercept = draw(st.sampled_from([0.0, -1024.0, 0.25, 1000.0]))
    out_dtype = draw(st.sampled_from(OUT_DTYPES))
    if out_dtype.kind == "f":
        ymax: float = draw(st.sampled_from([1.0, 255.0, 0.5]))
    else:
        bits = draw(st.integers(1, 8 * out_dtype.itemsize))
        ymax = (1 << bits) - 1
    src_dtype = draw(st.sampled_from(WINDOW_SRC_DTYPES))
    # Modality values at and around the edges and the center, mapped back to stored values.
    edges = [
        center,
        center - 0.5,
        center - width / 2,
        center + width / 2,
        center - 0.5 - (width - 1) / 2,
        center - 0.5 + (width - 1) / 2,
    ]
    specials = []
    for x in edges:
        for d in (-1.0, -0.5, 0.0, 0.5, 1.0):
            specials.append((x + d - intercept) / slope if slope else x)
    if src_dtype.kind == "f":
        info = np.finfo(src_dtype)
        specials = [float(src_dtype.type(v)) for v in specials if abs(v) < info.max]
        specials += [math.nan, math.inf, -math.inf, 0.0, -0.0]
        elements = st.one_of(
            st.sampled_from(specials), st.floats(-1e6, 1e6, width=8 * src_dtype.itemsize)
        )
    else:
        iinfo = np.iinfo(src_dtype)
        specials = [round(v) for v in specials if iinfo.min <= round(v) <= iinfo.max]
        specials += [int(iinfo.min), int(iinfo.max), 0]
        elements = st.one_of(st.sampled_from(specials), st.integers(int(iinfo.min), int(iinfo.max)))
    src = draw(hnp.arrays(src_dtype, edge_sizes(max_size), elements=elements))
    return WindowCase(
        src,
        out_dtype,
        slope,
        intercept,
        function,
        center,
        width,
        ymax,
        draw(st.booleans()),
        draw(st.integers(0, 3)),
    )


# -- bad calls ------------------------------------------------------------------------------

_i16 = np.zeros(16, np.int16)
_u8 = np.zeros(16, np.uint8)
_f32 = np.zeros(16, np.float32)
_lut = np.zeros(8, np.uint8)


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


def _win(**kw: Any) -> tuple[Any, ...]:
    args = {
        "src": _f32,
        "out": _u8.copy(),
        "slope": 1.0,
        "intercept": 0.0,
        "function": 0,
        "center": 40.0,
        "width": 400.0,
        "ymax": 255,
        "inverse": False,
    }
    args.update(kw)
    return tuple(args.values())


_shared = np.zeros(64, np.uint8)

BAD_CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("lut_apply", "src", (np.zeros(16, np.float32), _lut, 0, _u8.copy())),
    ("lut_apply", "src", (np.zeros(16, np.int64), _lut, 0, _u8.copy())),
    ("lut_apply", "src", (np.zeros(32, np.int16)[::2], _lut, 0, _u8.copy())),
    ("lut_apply", "src", (np.zeros((4, 4), np.int16), _lut, 0, _u8.copy())),
    ("lut_apply", "src", (np.zeros(16, ">i2"), _lut, 0, _u8.copy())),
    (
        "lut_apply",
        "src",
        (np.frombuffer(bytearray(33), np.uint8)[1:].view(np.int16), _lut, 0, _u8.copy()),
    ),
    ("lut_apply", "src", ([0] * 16, _lut, 0, _u8.copy())),
    ("lut_apply", "lut", (_i16, np.zeros(0, np.uint8), 0, _u8.copy())),
    ("lut_apply", "lut", (_i16, np.zeros(8, np.int16), 0, _u8.copy())),
    ("lut_apply", "lut", (_i16, np.zeros((2, 4), np.uint8), 0, _u8.copy())),
    ("lut_apply", "first", (_i16, _lut, 1.0, _u8.copy())),
    ("lut_apply", "first", (_i16, _lut, None, _u8.copy())),
    ("lut_apply", "first", (_i16, _lut, True, _u8.copy())),
    ("lut_apply", "out", (_i16, _lut, 0, np.zeros(16, np.uint16))),
    ("lut_apply", "out", (_i16, _lut, 0, np.zeros(15, np.uint8))),
    ("lut_apply", "out", (_i16, _lut, 0, _read_only(_u8))),
    ("lut_apply", "out", (_i16, _lut, 0, np.zeros(32, np.uint8)[::2])),
    ("lut_apply", "out", (_shared[:16], _lut, 0, _shared[8:24])),
    ("lut_apply", "out", (_i16, _shared[:8], 0, _shared[4:20])),
    ("window_apply", "src", _win(src=np.zeros(16, np.int16))),
    ("window_apply", "src", _win(src=np.zeros(16, np.float16))),
    ("window_apply", "src", _win(src=np.zeros(32, np.float32)[::2])),
    ("window_apply", "src", _win(src=np.zeros(16, ">f4"))),
    ("window_apply", "out", _win(out=np.zeros(16, np.int16))),
    ("window_apply", "out", _win(out=np.zeros(16, np.float64))),
    ("window_apply", "out", _win(out=np.zeros(8, np.uint8))),
    ("window_apply", "out", _win(out=_read_only(_u8))),
    ("window_apply", "out", _win(src=_shared[:16].view(np.float32), out=_shared[8:24])),
    ("window_apply", "slope", _win(slope=math.nan)),
    ("window_apply", "slope", _win(slope="1")),
    ("window_apply", "intercept", _win(intercept=math.inf)),
    ("window_apply", "function", _win(function=3)),
    ("window_apply", "function", _win(function="LINEAR")),
    ("window_apply", "center", _win(center=math.nan)),
    ("window_apply", "center", _win(center=None)),
    ("window_apply", "width", _win(width=0.5)),
    ("window_apply", "width", _win(function=1, width=0.0)),
    ("window_apply", "width", _win(function=2, width=-1.0)),
    ("window_apply", "width", _win(width=math.inf)),
    ("window_apply", "ymax", _win(ymax=256)),
    ("window_apply", "ymax", _win(ymax=0)),
    ("window_apply", "ymax", _win(ymax=255.5)),
    ("window_apply", "ymax", _win(out=np.zeros(16, np.float32), ymax=-1.0)),
    ("window_apply", "ymax", _win(out=np.zeros(16, np.uint16), ymax=65536)),
    ("window_apply", "inverse", _win(inverse=1)),
    ("window_apply", "inverse", _win(inverse="no")),
]


def _bad_call_id(case: tuple[str, str, tuple[Any, ...]]) -> str:
    return f"{case[0]}-{case[1]}"




def reference(name: str) -> Callable[..., None]:
    return kernels.get(name, "reference")


class WindowBackendContract(KernelBackendContract):
    """What every backend, the reference included, must do. Subclasses set ``backend``."""

    kernel_names = KERNEL_NAMES

    @pytest.mark.parametrize("case", BAD_CALLS, ids=[_bad_call_id(c) for c in BAD_CALLS])
    def test_rejects_bad_call(self, case: tuple[str, str, tuple[Any, ...]]) -> None:
        name, parameter, args = case
        with pytest.raises(ParameterError, match=rf"\b{parameter}\b"):
            self.kernel(name)(*args)

    def test_empty_calls_return_quietly(self) -> None:
        self.kernel("lut_apply")(np.zeros(0, np.int16), _lut, 0, np.zeros(0, np.uint8))
        self.kernel("window_apply")(*_win(src=np.zeros(0, np.float32), out=np.zeros(0, np.uint8)))

    def test_known_values(self) -> None:
        # Below the first mapped value: first entry; above the last: last entry.
        lut = np.array([10, 20, 30], np.uint8)
        out = np.empty(6, np.uint8)
        self.kernel("lut_apply")(np.array([-5, 99, 100, 101, 102, 300], np.int16), lut, 100, out)
        assert out.tolist() == [10, 10, 10, 20, 30, 30]
        # LINEAR c=40 w=3 (PS3.3 C.11.2.1.2.1): edges 38.5 / 40.5; 39.5 -> 127.5 rounds up,
        # and so does its inverse (rounded once, after the inversion).
        x = np.array([38.0, 38.5, 39.0, 39.5, 40.0, 40.5, 41.0, np.nan, np.inf, -np.inf])
        out = np.empty(x.size, np.uint8)
        self.kernel("window_apply")(x, out, 1.0, 0.0, 0, 40.0, 3.0, 255, False)
        assert out.tolist() == [0, 0, 64, 128, 191, 255, 255, 0, 255, 0]
        self.kernel("window_apply")(x, out, 1.0, 0.0, 0, 40.0, 3.0, 255, True)
        assert out.tolist() == [255, 255, 191, 128, 64, 0, 0, 255, 0, 255]
        # LINEAR_EXACT c=40 w=4: edges 38 / 42, 40 is 127.5 -> 128; float output unrounded.
        x = np.array([38.0, 39.0, 40.0, 42.0, 42.5], np.float32)
        f = np.empty(x.size, np.float32)
        self.kernel("window_apply")(x, f, 1.0, 0.0, 1, 40.0, 4.0, 1.0, False)
        assert f.tolist() == [0.0, 0.25, 0.5, 1.0, 1.0]
        # SIGMOID at the center is half way; NaN is below the window.
        self.kernel("window_apply")(
            np.array([40.0, np.nan], np.float32), f[:2], 1.0, 0.0, 2, 40.0, 10.0, 1.0, False
        )
        assert f[:2].tolist() == [0.5, 0.0]


class NativeWindowContract(WindowBackendContract):
    """A native backend: equal to the reference, bit for bit, on any valid call."""

    def check(self, name: str, case: LutCase | WindowCase) -> None:
        expected = case.new_out()
        reference(name)(*case.call_args(expected))
        got = case.new_out()
        self.kernel(name)(*case.call_args(got))
        assert got.tobytes() == expected.tobytes()

    @BOUNDED
    @given(case=lut_cases())
    def test_lut_apply_equals_reference(self, case: LutCase) -> None:
        self.check("lut_apply", case)

    @BOUNDED
    @given(case=window_cases())
    def test_window_apply_equals_reference(self, case: WindowCase) -> None:
        self.check("window_apply", case)

    @pytest.mark.slow
    @LONG
    @given(case=lut_cases(max_size=40_000))
    def test_lut_apply_equals_reference_long(self, case: LutCase) -> None:
        self.check("lut_apply", case)

    @pytest.mark.slow
    @LONG
    @given(case=window_cases(max_size=40_000))
    def test_window_apply_equals_reference_long(self, case: WindowCase) -> None:
        self.check("window_apply", case)

    # -- the parallel path: inputs above PARALLEL_MIN_BYTES, sizes off every block boundary --

    @pytest.mark.parametrize(
        ("src_dtype", "full"),
        # no full-range table exists for 32-bit values: int32 runs clamped only
        [(np.dtype(np.int16), False), (np.dtype(np.int16), True), (np.dtype(np.uint8), False),
         (np.dtype(np.uint8), True), (np.dtype(np.int32), False)],
        ids=["int16-clamped", "int16-full", "uint8-clamped", "uint8-full", "int32-clamped"],
    )
    @pytest.mark.parametrize("lut_dtype", OUT_DTYPES, ids=str)
    def test_lut_apply_threads(
        self, src_dtype: np.dtype, lut_dtype: np.dtype, full: bool, threads: Callable[[int], None]
    ) -> None:
        n = PARALLEL_MIN_BYTES // (src_dtype.itemsize + lut_dtype.itemsize) + 4099
        rng = np.random.default_rng(n)
        info = np.iinfo(src_dtype)
        src = rng.integers(info.min, info.max, n, dtype=src_dtype, endpoint=True)
        span = int(info.max) - int(info.min) + 1
        first = int(info.min) if full else int(info.min) + 10
        entries = span if full else min(1000, span - 20)
        lut = _table(lut_dtype, entries, 3)
        assert check_lut_apply(src, lut, first, np.empty(n, lut_dtype)).clamp is not full
        expected = np.empty(n, lut_dtype)
        reference("lut_apply")(src, lut, first, expected)
        for count in (1, 2):
            threads(count)
            for offset in (0, 1):
                out = _sentinel(n, lut_dtype, offset)
                self.kernel("lut_apply")(src, lut, first, out)
                assert out.tobytes() == expected.tobytes()

    @pytest.mark.parametrize("src_dtype", WINDOW_SRC_DTYPES, ids=str)
    @pytest.mark.parametrize("function", [0, 1, 2])
    def test_window_apply_threads(
        self, src_dtype: np.dtype, function: int, threads: Callable[[int], None]
    ) -> None:
        n = PARALLEL_MIN_BYTES // (src_dtype.itemsize + 1) + 4099
        rng = np.random.default_rng(n + function)
        src = (
            rng.normal(40, 300, n) if src_dtype.kind == "f" else rng.integers(0, 3000, n)
        ).astype(src_dtype)
        args = (1.0, -1024.0 * (src_dtype.kind != "f"), function, 40.0, 400.0, 255, function == 1)
        assert (
            check_window_apply(src, np.empty(n, np.uint8), *args).threads > 1
            or kernels.get_num_threads() == 1
        )
        expected = np.empty(n, np.uint8)
        reference("window_apply")(src, expected, *args)
        for count in (1, 2):
            threads(count)
            out = np.full(n, 7, np.uint8)
            self.kernel("window_apply")(src, out, *args)
            np.testing.assert_array_equal(out, expected)


class TestReference(WindowBackendContract):
    """The oracle, checked against a literal scalar statement of PS3.3 C.11.2.1."""

    backend = "reference"

    @BOUNDED
    @given(case=window_cases(max_size=200))
    def test_window_apply_equals_scalar_formula(self, case: WindowCase) -> None:
        out = case.new_out()
        reference("window_apply")(*case.call_args(out))
        ymax = float(case.ymax)
        expected = []
        for v in case.src.tolist():
            x = float(v) * case.slope + case.intercept
            c, w = case.center, case.width
            if case.function == 2:
                try:
                    e = math.exp(-4.0 * (x - c) / w)
                except OverflowError:
                    e = math.inf
                y = ymax / (1.0 + e)
            else:
                c0, w0 = (c - 0.5, w - 1.0) if case.function == 0 else (c, w)
                if not x > c0 - w0 / 2.0:  # at or below the lower edge, or NaN
                    y = 0.0
                elif x > c0 + w0 / 2.0:
                    y = ymax
                else:
                    y = ((x - c0) / w0 + 0.5) * ymax
            y = min(max(y, 0.0), ymax) if not math.isnan(y) else 0.0
            if case.inverse:
                y = ymax - y
            expected.append(y if case.out_dtype.kind == "f" else math.floor(y + 0.5))
        np.testing.assert_array_equal(out, np.array(expected).astype(case.out_dtype))


class TestCython(NativeWindowContract):
    backend = "cython"


class TestNumba(NativeWindowContract):
    backend = "numba"


def test_every_registered_backend_is_tested() -> None:
    tested = {cls.backend for cls in (TestReference, TestCython, TestNumba)}
    for name in KERNEL_NAMES:
        assert set(kernels.KERNELS[name]) == tested
