"""The kernel-backend contract for sample_affine and sample_axis, and the oracle against scipy.

Every native backend must equal the NumPy reference bit for bit on any valid call (positions,
weights and summation order are pinned down in voxelflow.kernels.reference.resample), raise the
same ParameterError on any bad call, and give the same result on one thread as on two. The
reference is checked against scipy.ndimage (map_coordinates, spline_filter), the test oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi  # the oracle; a test dependency (pyproject [test])
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxelflow import kernels
from voxelflow._threads import PARALLEL_MIN_BYTES
from voxelflow.errors import ParameterError
from voxelflow.kernels.reference.resample import (
    LANCZOS,
    ORDERS,
    SAMPLE_DTYPES,
    axis_taps,
    bspline_prefilter,
    check_sample_affine,
    lanczos_weights,
)
from voxelflow.testing.contract import KernelBackendContract

_HEALTH = [HealthCheck.differing_executors, HealthCheck.too_slow, HealthCheck.data_too_large]
BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=_HEALTH)
LONG = settings(max_examples=1500, deadline=None, suppress_health_check=_HEALTH)


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    before = kernels.get_num_threads()
    yield kernels.set_num_threads
    kernels.set_num_threads(before)


def _random_src(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return (rng.normal(0.0, 100.0, shape)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@st.composite
def affine_cases(draw: Any, max_side: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    """(src, matrix, out, order, cval): random grids, affines that reach past the edges."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from(SAMPLE_DTYPES))
    src_shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    out_shape = tuple(draw(st.integers(0 if i == 0 else 1, max_side)) for i in range(3))
    out_dtype = draw(st.sampled_from(SAMPLE_DTYPES))
    order = draw(st.sampled_from(ORDERS))
    kind = draw(st.sampled_from(["random", "scale", "simple"]))
    if kind == "random":
        matrix = rng.normal(0.0, 0.8, (3, 4))
        matrix[:, 3] = rng.uniform(-2.0, max_side, 3)
    elif kind == "scale":
        matrix = np.zeros((3, 4))
        matrix[[0, 1, 2], [0, 1, 2]] = rng.uniform(0.2, 3.0, 3)
        matrix[:, 3] = rng.uniform(-1.0, 1.0, 3)
    else:  # quarter-voxel steps: exact ties of nearest rounding and of the inside test
        matrix = rng.integers(-4, 5, (3, 4)) / 4.0
    src = _random_src(rng, src_shape, dtype)
    if order == 3:
        src = bspline_prefilter(src).astype(draw(st.sampled_from([np.float32, np.float64])))
    cval = draw(st.sampled_from([0.0, -3.5, 1e6]))
    return src, np.ascontiguousarray(matrix), np.zeros(out_shape, out_dtype), order, cval


@st.composite
def axis_cases(draw: Any, max_side: int = 9) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from(SAMPLE_DTYPES))
    src = _random_src(rng, tuple(draw(st.integers(1, max_side)) for _ in range(3)), dtype)
    axis = draw(st.integers(0, 2))
    n_out = draw(st.integers(1, max_side))
    taps = draw(st.sampled_from([1, 2, 4, 7]))
    index = rng.integers(0, src.shape[axis], (n_out, taps)).astype(np.int64)
    weight = rng.normal(0.0, 1.0, (n_out, taps))
    shape = list(src.shape)
    shape[axis] = n_out
    out_dtype = draw(st.sampled_from(SAMPLE_DTYPES))
    return src, np.zeros(shape, out_dtype), axis, index, weight


_src = np.zeros((4, 5, 6), np.int16)
_m = np.zeros((3, 4))
_out = np.zeros((2, 3, 4), np.int16)
_idx = np.zeros((3, 2), np.int64)
_w = np.zeros((3, 2))

BAD_CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("sample_affine", "src", (_src.tolist(), _m, _out, 1, 0.0)),
    ("sample_affine", "src", (_src.astype(np.int64), _m, _out, 1, 0.0)),
    ("sample_affine", "src", (_src[:, :, ::2], _m, _out, 1, 0.0)),
    ("sample_affine", "src", (np.zeros((0, 5, 6), np.int16), _m, _out, 1, 0.0)),
    ("sample_affine", "matrix", (_src, np.zeros((4, 4)), _out, 1, 0.0)),
    ("sample_affine", "matrix", (_src, np.zeros((3, 4), np.float32), _out, 1, 0.0)),
    ("sample_affine", "matrix", (_src, np.full((3, 4), np.nan), _out, 1, 0.0)),
    ("sample_affine", "out", (_src, _m, np.zeros((2, 3, 4), np.int64), 1, 0.0)),
    ("sample_affine", "out", (_src, _m, np.zeros((2, 3)), 1, 0.0)),
    ("sample_affine", "out", (_src, _m, _src, 1, 0.0)),
    ("sample_affine", "order", (_src, _m, _out, 2, 0.0)),
    ("sample_affine", "order", (_src, _m, _out, 1.0, 0.0)),
    ("sample_affine", "cval", (_src, _m, _out, 1, "0")),
    ("sample_axis", "src", (_src.astype(np.float16), _out, 0, _idx, _w)),
    ("sample_axis", "axis", (_src, np.zeros((3, 5, 6), np.int16), 3, _idx, _w)),
    ("sample_axis", "index", (_src, np.zeros((3, 5, 6), np.int16), 0, _idx + 4, _w)),
    ("sample_axis", "index", (_src, np.zeros((3, 5, 6), np.int16), 0, _idx - 1, _w)),
    ("sample_axis", "index", (_src, np.zeros((3, 5, 6), np.int16), 0, _idx.astype(np.int32), _w)),
    ("sample_axis", "weight", (_src, np.zeros((3, 5, 6), np.int16), 0, _idx, _w[:, :1].copy())),
    ("sample_axis", "weight", (_src, np.zeros((3, 5, 6), np.int16), 0, _idx, _w + np.inf)),
    ("sample_axis", "out", (_src, np.zeros((3, 5, 7), np.int16), 0, _idx, _w)),
    ("sample_axis", "out", (_src, np.zeros((3, 5, 6), np.float16), 0, _idx, _w)),
]


class BackendContract(KernelBackendContract):
    kernel_names = ("sample_affine", "sample_axis")

    @pytest.mark.parametrize("case", BAD_CALLS, ids=[f"{c[0]}-{c[1]}" for c in BAD_CALLS])
    def test_rejects_bad_call(self, case: tuple[str, str, tuple[Any, ...]]) -> None:
        name, parameter, args = case
        with pytest.raises(ParameterError, match=rf"\b{parameter}\b"):
            self.kernel(name)(*args)

    def test_known_values(self) -> None:
        src = np.arange(8, dtype=np.int16).reshape(2, 2, 2) * 10
        out = np.zeros((1, 1, 3), np.float64)
        # centre of the cube, a corner, and a point beyond the half-voxel border
        matrix = np.array([[0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.5]])
        self.kernel("sample_affine")(src, matrix, out, 1, -1.0)
        assert out.ravel().tolist() == [35.0, 40.0, -1.0]
        out_i = np.zeros((1, 1, 3), np.int16)
        self.kernel("sample_affine")(src, matrix, out_i, 0, -1.0)
        assert out_i.ravel().tolist() == [70, 70, -1]  # halves round up: (1, 1, 1)
        # integer output saturates and rounds half to even
        out_u8 = np.zeros((1, 1, 2), np.uint8)
        idx = np.array([[0, 1], [0, 1]], np.int64)
        w = np.array([[-3.0, 0.0], [12.25, 0.0]])
        self.kernel("sample_axis")(np.full((1, 1, 2), 100, np.uint8), out_u8, 2, idx, w)
        assert out_u8.ravel().tolist() == [0, 255]

    def test_lanczos_at_voxel_centres_returns_the_samples(self) -> None:
        src = np.random.default_rng(2).normal(size=(8, 9, 10))
        out = np.zeros((4, 5, 6))
        # an oblique grid whose every position is a voxel centre, taps reaching past the edges
        matrix = np.array([[0, 1.0, 0, 2.0], [0, 0, 1.0, 0.0], [1.0, 0, 0, 6.0]])
        self.kernel("sample_affine")(src, matrix, out, LANCZOS, 0.0)
        expected = src[2:7, 0:6, 6:10].transpose(2, 0, 1)
        assert out.tobytes() == np.ascontiguousarray(expected).tobytes()
        # a fraction whose square underflows counts as a centre (no 0 / 0 in the weights)
        matrix[:, 3] += 1e-200
        self.kernel("sample_affine")(src, matrix, out, LANCZOS, 0.0)
        assert out.tobytes() == np.ascontiguousarray(expected).tobytes()


class NativeContract(BackendContract):
    def check_affine(self, case: Any) -> None:
        src, matrix, out, order, cval = case
        expected = out.copy()
        kernels.get("sample_affine", "reference")(src, matrix, expected, order, cval)
        self.kernel("sample_affine")(src, matrix, out, order, cval)
        assert out.tobytes() == expected.tobytes()

    @BOUNDED
    @given(case=affine_cases())
    def test_sample_affine_equals_reference(self, case: Any) -> None:
        self.check_affine(case)

    @BOUNDED
    @given(case=axis_cases())
    def test_sample_axis_equals_reference(self, case: Any) -> None:
        src, out, axis, index, weight = case
        expected = out.copy()
        kernels.get("sample_axis", "reference")(src, expected, axis, index, weight)
        self.kernel("sample_axis")(src, out, axis, index, weight)
        assert out.tobytes() == expected.tobytes()

    @pytest.mark.slow
    @LONG
    @given(case=affine_cases(max_side=24))
    def test_sample_affine_equals_reference_long(self, case: Any) -> None:
        self.check_affine(case)

    @pytest.mark.parametrize("order", ORDERS)
    def test_threads(self, order: int, threads: Callable[[int], None]) -> None:
        # large enough for two threads, a row count that does not split evenly
        rng = np.random.default_rng(order)
        src = rng.normal(size=(9, 40, 41)).astype(np.float32)
        theta = 0.3
        matrix = np.array(
            [[1.1, 0.0, 0.0, -0.2],
             [0.0, np.cos(theta), -np.sin(theta), 8.0],
             [0.0, np.sin(theta), np.cos(theta), -5.0]]
        )
        shape = (11, 61, PARALLEL_MIN_BYTES // (61 * 11 * 8) + 3)
        expected = np.zeros(shape, np.float32)
        threads(1)
        assert check_sample_affine(src, matrix, expected, order, 0.0).threads == 1
        self.kernel("sample_affine")(src, matrix, expected, order, 0.0)
        threads(2)
        assert check_sample_affine(src, matrix, expected, order, 0.0).threads == 2
        out = np.zeros(shape, np.float32)
        self.kernel("sample_affine")(src, matrix, out, order, 0.0)
        assert out.tobytes() == expected.tobytes()
        index, weight = axis_taps(np.linspace(-0.5, 8.5, 1300), 9, order)
        axis_expected = np.zeros((1300, 40, 41), np.float32)
        threads(1)
        self.kernel("sample_axis")(src, axis_expected, 0, index, weight)
        threads(2)
        axis_out = np.zeros((1300, 40, 41), np.float32)
        self.kernel("sample_axis")(src, axis_out, 0, index, weight)
        np.testing.assert_array_equal(axis_out, axis_expected)


    @pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32])
    def test_integer_interior_equals_reference(self, dtype: type) -> None:
        # integer linear rows load a voxel and its x neighbour as one word in the interior
        # loop: extreme values (sign bits), an oblique grid reaching past every edge, rows
        # whose interior is empty or partial
        rng = np.random.default_rng(11)
        info = np.iinfo(dtype)
        src = rng.choice(np.array([info.min, info.max, 0, 1, info.max - 1], dtype), (7, 13, 17))
        theta = 0.4
        matrix = np.array(
            [[0.7, 0.1, 0.05, -1.0],
             [0.0, np.cos(theta), -np.sin(theta), 4.0],
             [0.2, np.sin(theta), np.cos(theta), -3.0]]
        )
        for out_dtype in (np.float64, dtype):
            expected = np.zeros((11, 19, 23), out_dtype)
            kernels.get("sample_affine", "reference")(src, matrix, expected, 1, -5.0)
            out = np.zeros_like(expected)
            self.kernel("sample_affine")(src, matrix, out, 1, -5.0)
            assert out.tobytes() == expected.tobytes()


    def test_volume_past_32_bit_offsets(self) -> None:
        # 2**31 voxels and more take the 64-bit index loop; np.zeros maps its pages lazily, so
        # only the sampled corner is ever touched (~20 MiB)
        src = np.zeros((2049, 1024, 1024), np.uint8)
        src[2030:2045, 500:540, 500:540] = np.random.default_rng(0).integers(0, 255, (15, 40, 40))
        matrix = np.array([[0.0, 0.31, 0.05, 2031.3], [0.2, 0.9, 0.3, 505.7], [0.0, -0.2, 0.95, 510.2]])
        expected = np.empty((3, 24, 24), np.float32)
        kernels.get("sample_affine", "reference")(src, matrix, expected, 1, 0.0)
        out = np.empty_like(expected)
        self.kernel("sample_affine")(src, matrix, out, 1, 0.0)
        assert expected.any() and out.tobytes() == expected.tobytes()


class TestReference(BackendContract):
    backend = "reference"

    def test_lanczos_weights_are_the_normalised_windowed_sinc(self) -> None:
        t = np.linspace(0.0, 1.0, 2001)[:-1]
        w = np.stack(lanczos_weights(t))
        d = np.arange(-2, 4)[:, None]
        kernel = np.sinc(t - d) * np.sinc((t - d) / 3.0)
        np.testing.assert_allclose(w, kernel / kernel.sum(axis=0), rtol=0, atol=1e-15)
        np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=0, atol=1e-15)
        assert w[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]

    def test_lanczos_reproduces_constants_and_nearly_ramps(self) -> None:
        rng = np.random.default_rng(3)
        # positions within [3.2, 9.8]: every tap inside the 14-voxel cube, no edge clamping
        matrix = rng.uniform(-0.1, 0.1, (3, 4)) + np.hstack([np.eye(3), np.zeros((3, 1))])
        matrix[:, 3] = 4.0 + rng.uniform(0.0, 1.0, 3)
        out = np.zeros((5, 5, 5))
        self.kernel("sample_affine")(np.full((14, 14, 14), 7.25), matrix, out, LANCZOS, 0.0)
        np.testing.assert_allclose(out, 7.25, rtol=0, atol=1e-12)
        # a ramp of slope 1 along x: the windowed sinc is not exact on ramps; its error
        # sum_d w_d d - t peaks at 0.020 voxels (t near 0.2 and 0.8), 0 at t = 0 and 1/2
        ramp = np.broadcast_to(np.arange(14.0), (14, 14, 14)).copy()
        self.kernel("sample_affine")(ramp, matrix, out, LANCZOS, 0.0)
        k, j, i = np.meshgrid(*(np.arange(5.0),) * 3, indexing="ij")
        px = ((matrix[2, 0] * k + matrix[2, 1] * j) + matrix[2, 3]) + matrix[2, 2] * i
        assert np.abs(out - px).max() <= 0.0201
        half = np.array([[0, 0, 0, 5.5], [0, 0, 0, 5.5], [0, 0, 1.0, 4.5]])
        self.kernel("sample_affine")(ramp, half, out, LANCZOS, 0.0)
        np.testing.assert_allclose(out[0, 0], np.arange(4.5, 9.5), rtol=0, atol=1e-12)

    @pytest.mark.parametrize("order,mode", [(0, "nearest"), (1, "nearest"), (3, "mirror")])
    @pytest.mark.parametrize("seed", range(4))
    def test_equals_map_coordinates(self, order: int, mode: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        src = rng.normal(size=(7, 9, 11))
        matrix = rng.normal(0.0, 0.5, (3, 4)) + np.hstack([np.eye(3), np.zeros((3, 1))])
        matrix[:, 3] = rng.uniform(-1.0, 2.0, 3)
        out = np.zeros((8, 10, 12))
        coeffs = bspline_prefilter(src) if order == 3 else src
        self.kernel("sample_affine")(coeffs, matrix, out, order, -7.0)
        k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in out.shape), indexing="ij")
        p = np.stack([((matrix[a, 0] * k + matrix[a, 1] * j) + matrix[a, 3]) + matrix[a, 2] * i
                      for a in range(3)])
        expected = ndi.map_coordinates(src, p, order=order, mode=mode)
        inside = np.all([(p[a] >= -0.5) & (p[a] <= src.shape[a] - 0.5) for a in range(3)], axis=0)
        expected[~inside] = -7.0
        if order == 0:
            # scipy rounds exact halves its own way; a random affine never hits them
            np.testing.assert_array_equal(out, expected)
        else:
            np.testing.assert_allclose(out, expected, rtol=1e-5 if order == 1 else 1e-4, atol=1e-9)

    @pytest.mark.parametrize("shape", [(1,), (2,), (3,), (5,), (64,), (6, 7, 8)])
    def test_prefilter_equals_scipy(self, shape: tuple[int, ...]) -> None:
        x = np.random.default_rng(len(shape)).normal(size=shape)
        np.testing.assert_allclose(
            bspline_prefilter(x), ndi.spline_filter(x, 3, mode="mirror"), rtol=0, atol=1e-12
        )


class TestCython(NativeContract):
    backend = "cython"


class TestNumba(NativeContract):
    backend = "numba"
