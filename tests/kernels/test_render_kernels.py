"""The kernel-backend contract for sample_slab, project_axis and sample_points, and the oracle
against brute force (sample_affine per sample + numpy reductions), numpy and scipy.

Every native backend must equal the NumPy reference bit for bit on any valid call (positions,
reduction order and store rule are pinned down in voxelflow.kernels.reference.render), raise the
same ParameterError on any bad call, and give the same result on one thread as on two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi  # the oracle; a test dependency (pyproject [test])
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxelflow import kernels
from voxelflow._threads import PARALLEL_MIN_BYTES
from voxelflow.errors import ParameterError
from voxelflow.kernels.reference.render import (
    MAX_SAMPLES,
    MODES,
    check_project_axis,
    check_sample_points,
    check_sample_slab,
)
from voxelflow.kernels.reference.resample import SAMPLE_DTYPES, bspline_prefilter
from voxelflow.testing.contract import KernelBackendContract

_HEALTH = [HealthCheck.differing_executors, HealthCheck.too_slow, HealthCheck.data_too_large]
BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=_HEALTH)
LONG = settings(max_examples=1000, deadline=None, suppress_health_check=_HEALTH)
MODE_NAMES = tuple(MODES)


def _random_src(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return rng.normal(0.0, 100.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _matrix(rng: np.random.Generator, kind: str, side: int) -> np.ndarray:
    if kind == "random":
        matrix = rng.normal(0.0, 0.8, (3, 4))
        matrix[:, 3] = rng.uniform(-2.0, side, 3)
    elif kind == "rotation":  # an oblique slab through the middle, steps of about a voxel
        matrix = np.zeros((3, 4))
        matrix[:, :3] = _rotation(rng) * rng.uniform(0.3, 1.5)
        matrix[:, 3] = rng.uniform(-1.0, side, 3) - matrix[:, :3].sum(axis=1) * side / 3
    elif kind == "axial":  # z constant along rows and samples: the bilinear fast path
        matrix = np.zeros((3, 4))
        matrix[0, 1] = rng.choice([0.0, 1.0, 0.5])
        matrix[0, 3] = float(rng.integers(-1, side))
        matrix[1:, [0, 2]] = _rotation(rng)[:2, :2]
        matrix[1:, 3] = rng.uniform(-1.0, side, 2)
    elif kind == "far":  # mostly or entirely outside
        matrix = rng.normal(0.0, 1.0, (3, 4))
        matrix[:, 3] = rng.choice([-1.0, 1.0], 3) * rng.uniform(side, 1e6, 3)
    else:  # quarter-voxel steps: exact ties of nearest rounding and of the inside test
        matrix = rng.integers(-4, 5, (3, 4)) / 4.0
    return np.ascontiguousarray(matrix)


_KINDS = ["random", "rotation", "axial", "far", "simple"]


@st.composite
def slab_cases(draw: Any, max_side: int = 9) -> tuple[Any, ...]:
    """(src, matrix, out, order, cval, samples, mode)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(SAMPLE_DTYPES))
    src_shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    out_shape = (draw(st.integers(0, max_side)), draw(st.integers(1, 2 * max_side)))
    order = draw(st.sampled_from([0, 1, 3]))
    src = _random_src(rng, src_shape, dtype)
    if order == 3:
        src = bspline_prefilter(src).astype(draw(st.sampled_from([np.float32, np.float64])))
    matrix = _matrix(rng, draw(st.sampled_from(_KINDS)), max_side)
    out = np.zeros(out_shape, draw(st.sampled_from(SAMPLE_DTYPES)))
    cval = draw(st.sampled_from([0.0, -3.5, 1e6]))
    samples = draw(st.integers(1, 25))
    return src, matrix, out, order, cval, samples, draw(st.sampled_from(MODE_NAMES))


@st.composite
def project_cases(draw: Any, max_side: int = 9) -> tuple[Any, ...]:
    """(src, axis, mode, out)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    src = _random_src(
        rng,
        tuple(draw(st.integers(1, max_side)) for _ in range(3)),
        draw(st.sampled_from(SAMPLE_DTYPES)),
    )
    axis = draw(st.integers(0, 2))
    shape = tuple(n for a, n in enumerate(src.shape) if a != axis)
    out = np.zeros(shape, draw(st.sampled_from(SAMPLE_DTYPES)))
    return src, axis, draw(st.sampled_from(MODE_NAMES)), out


@st.composite
def points_cases(draw: Any, max_side: int = 9) -> tuple[Any, ...]:
    """(src, coords, out, order, cval): points inside, on the faces and far outside."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(SAMPLE_DTYPES))
    src = _random_src(rng, tuple(draw(st.integers(1, max_side)) for _ in range(3)), dtype)
    order = draw(st.sampled_from([0, 1, 3]))
    if order == 3:
        src = bspline_prefilter(src).astype(np.float64)
    lead = tuple(draw(st.integers(0, 6)) for _ in range(draw(st.integers(0, 2))))
    coords = rng.uniform(-1.5, max_side + 0.5, lead + (3,))
    if coords.size:
        flat = coords.reshape(-1)
        pick = rng.random(flat.size)
        flat[pick < 0.1] = np.round(flat[pick < 0.1] * 2) / 2  # halves: ties and the faces
        flat[(pick > 0.9) & (pick < 0.95)] = rng.choice([np.nan, np.inf, -1e300])
    out = np.zeros(lead, draw(st.sampled_from(SAMPLE_DTYPES)))
    return src, coords, out, order, draw(st.sampled_from([0.0, -3.5]))


_src = np.zeros((4, 5, 6), np.int16)
_m = np.zeros((3, 4))
_out = np.zeros((3, 4), np.float32)
_pts = np.zeros((7, 3))

BAD_CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("sample_slab", "src", (_src.tolist(), _m, _out, 1, 0.0, 2, "max")),
    ("sample_slab", "src", (_src.astype(np.int64), _m, _out, 1, 0.0, 2, "max")),
    ("sample_slab", "src", (_src[:, :, ::2], _m, _out, 1, 0.0, 2, "max")),
    ("sample_slab", "src", (np.zeros((0, 5, 6), np.int16), _m, _out, 1, 0.0, 2, "max")),
    ("sample_slab", "matrix", (_src, np.zeros((4, 4)), _out, 1, 0.0, 2, "max")),
    ("sample_slab", "matrix", (_src, np.full((3, 4), np.inf), _out, 1, 0.0, 2, "max")),
    ("sample_slab", "out", (_src, _m, np.zeros((1, 3, 4), np.float32), 1, 0.0, 2, "max")),
    ("sample_slab", "out", (_src, _m, np.zeros((3, 4), np.float16), 1, 0.0, 2, "max")),
    ("sample_slab", "out", (_src, _m, _src[0], 1, 0.0, 2, "max")),
    ("sample_slab", "out", (_src, _m, np.zeros((3, 8), np.float32)[:, ::2], 1, 0.0, 2, "max")),
    ("sample_slab", "order", (_src, _m, _out, 2, 0.0, 2, "max")),
    ("sample_slab", "cval", (_src, _m, _out, 1, np.nan, 2, "max")),
    ("sample_slab", "cval", (_src, _m, _out, 1, None, 2, "max")),
    ("sample_slab", "samples", (_src, _m, _out, 1, 0.0, 0, "max")),
    ("sample_slab", "samples", (_src, _m, _out, 1, 0.0, MAX_SAMPLES + 1, "max")),
    ("sample_slab", "samples", (_src, _m, _out, 1, 0.0, 2.0, "max")),
    ("sample_slab", "mode", (_src, _m, _out, 1, 0.0, 2, "average")),
    ("sample_slab", "mode", (_src, _m, _out, 1, 0.0, 2, 0)),
    ("project_axis", "src", (_src.astype(np.float16), 0, "max", np.zeros((5, 6)))),
    ("project_axis", "src", (np.zeros((0, 5, 6)), 0, "max", np.zeros((5, 6)))),
    ("project_axis", "axis", (_src, 3, "max", np.zeros((5, 6)))),
    ("project_axis", "axis", (_src, -1, "max", np.zeros((5, 6)))),
    ("project_axis", "mode", (_src, 0, "median", np.zeros((5, 6)))),
    ("project_axis", "out", (_src, 0, "max", np.zeros((4, 6)))),
    ("project_axis", "out", (_src, 0, "max", np.zeros((5, 6), np.int64))),
    ("project_axis", "out", (_src, 1, "max", _src[:, 0])),
    ("sample_points", "src", (_src[None], _pts, np.zeros(7), 1, 0.0)),
    ("sample_points", "coords", (_src, np.zeros((7, 2)), np.zeros(7), 1, 0.0)),
    ("sample_points", "coords", (_src, _pts.astype(np.float32), np.zeros(7), 1, 0.0)),
    ("sample_points", "coords", (_src, np.zeros((7, 6))[:, ::2], np.zeros(7), 1, 0.0)),
    ("sample_points", "out", (_src, _pts, np.zeros(6), 1, 0.0)),
    ("sample_points", "out", (_src, _pts, _pts[:, 0], 1, 0.0)),
    ("sample_points", "order", (_src, _pts, np.zeros(7), 4, 0.0)),
    ("sample_points", "cval", (_src, _pts, np.zeros(7), 1, np.inf)),
]


def _positions(matrix: np.ndarray, shape: tuple[int, int, int]) -> list[np.ndarray]:
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return [
        ((matrix[a, 0] * k + matrix[a, 1] * j) + matrix[a, 3]) + matrix[a, 2] * i for a in range(3)
    ]


def _inside(p: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.all([(p[a] >= -0.5) & (p[a] <= shape[a] - 0.5) for a in range(3)], axis=0)


class BackendContract(KernelBackendContract):
    kernel_names = ("sample_slab", "project_axis", "sample_points")

    @pytest.mark.parametrize("case", BAD_CALLS, ids=[f"{c[0]}-{c[1]}" for c in BAD_CALLS])
    def test_rejects_bad_call(self, case: tuple[str, str, tuple[Any, ...]]) -> None:
        name, parameter, args = case
        with pytest.raises(ParameterError, match=rf"\b{parameter}\b"):
            self.kernel(name)(*args)

    def test_empty_output(self) -> None:
        self.kernel("sample_slab")(_src, _m, np.zeros((0, 4), np.float32), 1, 0.0, 3, "max")
        self.kernel("sample_points")(_src, np.zeros((0, 3)), np.zeros(0), 1, 0.0)
        self.kernel("project_axis")(np.zeros((3, 0, 4)), 0, "sum", np.zeros((0, 4)))

    def test_known_values(self) -> None:
        src = np.arange(8, dtype=np.int16).reshape(2, 2, 2) * 10  # [[[0 10][20 30]][[40 50]..]]
        # one pixel, the ray along z through (y, x) = (0.5, 0.5) at z = -1, -0.5, ..., 2.5
        matrix = np.array([[0.5, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.5]])
        out = np.zeros((1, 1))
        # inside: z = -0.5, 0, 0.5, 1, 1.5 -> 15 (edge value held), 15, 35, 55, 55 (held)
        expected = {"max": 55.0, "min": 15.0, "sum": 175.0, "mean": 35.0}
        for mode, value in expected.items():
            self.kernel("sample_slab")(src, matrix, out, 1, -1.0, 8, mode)
            assert out[0, 0] == value, mode
        # no sample inside: cval
        self.kernel("sample_slab")(src, matrix, out, 1, -1.0, 1, "max")
        assert out[0, 0] == -1.0
        # integer output rounds half to even and saturates
        out_u8 = np.zeros((1, 1), np.uint8)
        self.kernel("sample_slab")(src * 10, matrix, out_u8, 1, 0.0, 8, "max")
        assert out_u8[0, 0] == 255
        proj = np.zeros((2, 2), np.int16)
        self.kernel("project_axis")(src, 0, "mean", proj)
        assert proj.tolist() == [[20, 30], [40, 50]]
        pts = np.array([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [-0.6, 0.0, 0.0], [np.nan, 0, 0]])
        values = np.zeros(4)
        self.kernel("sample_points")(src, pts, values, 1, -2.0)
        assert values.tolist() == [35.0, 70.0, -2.0, -2.0]

    def test_positions_overflowing_are_outside(self) -> None:
        # m * s overflows to inf for the last samples (and inf - inf to NaN): outside, skipped
        src = np.ones((2, 2, 2), np.float32)
        out = np.zeros((1, 2))
        matrix = np.array([[1e306, 0, 0, 0.0], [0, 0, 0, 0.0], [0, 0, -1e306, 1e308]])
        self.kernel("sample_slab")(src, matrix, out, 1, 5.0, 1000, "sum")
        assert out.tolist() == [[5.0, 5.0]]
        matrix[2] = 0.0
        self.kernel("sample_slab")(src, matrix, out, 1, 5.0, 1000, "sum")
        assert out.tolist() == [[1.0, 1.0]]


class TestReference(BackendContract):
    backend = "reference"

    @pytest.mark.parametrize("order", [0, 1, 3])
    @pytest.mark.parametrize("seed", range(3))
    def test_slab_equals_brute_force(self, order: int, seed: int) -> None:
        # sample_affine over (samples, H, W), then numpy reductions over the inside samples
        rng = np.random.default_rng(seed)
        src = rng.normal(0.0, 10.0, (7, 8, 9))
        if order == 3:
            src = bspline_prefilter(src)
        matrix = _matrix(rng, "rotation", 8)
        samples, shape = 11, (10, 12)
        values = np.zeros((samples,) + shape)
        kernels.get("sample_affine", "reference")(src, matrix, values, order, 0.0)
        inside = _inside(_positions(matrix, values.shape), src.shape)
        count = inside.sum(axis=0)
        assert 0 < count.min() or count.max() > 0
        expected = {
            "max": np.max(np.where(inside, values, -np.inf), axis=0),
            "min": np.min(np.where(inside, values, np.inf), axis=0),
            "sum": np.sum(np.where(inside, values, 0.0), axis=0),
        }
        expected["mean"] = expected["sum"] / np.maximum(count, 1)
        for mode, want in expected.items():
            out = np.zeros(shape)
            self.kernel("sample_slab")(src, matrix, out, order, -9.0, samples, mode)
            want = np.where(count > 0, want, -9.0)
            np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12, err_msg=mode)

    @pytest.mark.parametrize("mode", MODE_NAMES)
    @pytest.mark.parametrize("axis", [0, 1, 2])
    def test_project_equals_numpy(self, axis: int, mode: str) -> None:
        rng = np.random.default_rng(axis)
        for src in (
            rng.integers(-500, 500, (5, 6, 7)).astype(np.int16),
            rng.normal(size=(5, 6, 7)),
        ):
            out = np.zeros(tuple(n for a, n in enumerate(src.shape) if a != axis))
            self.kernel("project_axis")(src, axis, mode, out)
            want = getattr(np, mode)(src.astype(np.float64), axis=axis)
            np.testing.assert_allclose(out, want, rtol=1e-14)

    @pytest.mark.parametrize("seed", range(4))
    def test_points_equal_map_coordinates(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        src = rng.normal(size=(6, 7, 8))
        coords = rng.uniform(-0.5, 7.5, (30, 40, 3))
        out = np.zeros((30, 40))
        self.kernel("sample_points")(src, coords, out, 1, -7.0)
        p = np.moveaxis(coords, -1, 0)
        inside = _inside(list(p), src.shape)
        want = ndi.map_coordinates(src, p, order=1, mode="nearest")
        assert inside.mean() > 0.5
        np.testing.assert_allclose(out[inside], want[inside], rtol=0, atol=1e-12)
        assert np.all(out[~inside] == -7.0)


class NativeContract(BackendContract):
    def check_slab(self, case: Any) -> None:
        src, matrix, out, order, cval, samples, mode = case
        expected = out.copy()
        kernels.get("sample_slab", "reference")(src, matrix, expected, order, cval, samples, mode)
        self.kernel("sample_slab")(src, matrix, out, order, cval, samples, mode)
        assert out.tobytes() == expected.tobytes()

    @BOUNDED
    @given(case=slab_cases())
    def test_slab_equals_reference(self, case: Any) -> None:
        self.check_slab(case)

    @BOUNDED
    @given(case=project_cases())
    def test_project_equals_reference(self, case: Any) -> None:
        src, axis, mode, out = case
        expected = out.copy()
        kernels.get("project_axis", "reference")(src, axis, mode, expected)
        self.kernel("project_axis")(src, axis, mode, out)
        assert out.tobytes() == expected.tobytes()

    @BOUNDED
    @given(case=points_cases())
    def test_points_equal_reference(self, case: Any) -> None:
        src, coords, out, order, cval = case
        expected = out.copy()
        kernels.get("sample_points", "reference")(src, coords, expected, order, cval)
        self.kernel("sample_points")(src, coords, out, order, cval)
        assert out.tobytes() == expected.tobytes()

    @pytest.mark.slow
    @LONG
    @given(case=slab_cases(max_side=40))
    def test_slab_equals_reference_long(self, case: Any) -> None:
        self.check_slab(case)

    def test_volume_past_32_bit_offsets(self) -> None:
        # 2**31 voxels and more take the 64-bit index loop; np.zeros maps its pages lazily, so
        # only the sampled corner is ever touched (~20 MiB)
        src = np.zeros((2049, 1024, 1024), np.uint8)
        src[2030:2045, 500:540, 500:540] = np.random.default_rng(0).integers(0, 255, (15, 40, 40))
        matrix = np.array([[0.3, 0.0, 0.05, 2031.3], [0.1, 0.9, 0.3, 505.7], [0.0, -0.2, 0.95, 510.2]])
        expected = np.empty((24, 24), np.float32)
        kernels.get("sample_slab", "reference")(src, matrix, expected, 1, -1.0, 5, "max")
        out = np.empty_like(expected)
        self.kernel("sample_slab")(src, matrix, out, 1, -1.0, 5, "max")
        assert expected.max() > 0 and out.tobytes() == expected.tobytes()

    @pytest.mark.parametrize("order", [0, 1, 3])
    def test_samples_one_is_sample_affine(self, order: int) -> None:
        rng = np.random.default_rng(order)
        for dtype in (np.int16, np.float32):
            src = _random_src(rng, (9, 10, 11), np.dtype(dtype))
            if order == 3:
                src = bspline_prefilter(src)
            for kind in _KINDS:
                matrix = _matrix(rng, kind, 10)
                affine = np.zeros((1, 13, 14), np.float32)
                kernels.get("sample_affine", "reference")(src, matrix, affine, order, 2.5)
                for mode in MODE_NAMES:
                    out = np.zeros((13, 14), np.float32)
                    self.kernel("sample_slab")(src, matrix, out, order, 2.5, 1, mode)
                    assert out.tobytes() == affine[0].tobytes(), (kind, mode)

    @pytest.mark.parametrize("order", [0, 1, 3])
    def test_threads(self, order: int, threads: Callable[[int], None]) -> None:
        # large enough for two threads, sizes that split unevenly into tiles and blocks
        rng = np.random.default_rng(order)
        src = rng.integers(-1000, 3000, (23, 40, 41)).astype(np.int16)
        if order == 3:
            src = bspline_prefilter(src).astype(np.float32)
        matrix = _matrix(rng, "rotation", 40)
        shape = (61, 300)
        unit = {0: 8, 1: 32, 3: 64}[order]  # check_sample_slab's work per sample
        samples = PARALLEL_MIN_BYTES // (shape[0] * shape[1] * unit) + 1
        results = []
        for n in (1, 2):
            threads(n)
            assert (
                check_sample_slab(src, matrix, np.zeros(shape), order, 0.0, samples, "max").threads
                == n
            )
            out = np.zeros(shape, np.float32)
            self.kernel("sample_slab")(src, matrix, out, order, 0.0, samples, "mean")
            results.append(out)
        assert results[0].tobytes() == results[1].tobytes()
        big = rng.integers(-1000, 3000, (9, 333, 701)).astype(np.int16)
        coords = rng.uniform(-1.0, 40.0, (PARALLEL_MIN_BYTES // unit + 7, 3))
        for axis in (0, 1, 2):
            outs = []
            for n in (1, 2):
                threads(n)
                out = np.zeros(tuple(s for a, s in enumerate(big.shape) if a != axis))
                assert check_project_axis(big, axis, "sum", out).threads == n
                self.kernel("project_axis")(big, axis, "sum", out)
                outs.append(out)
            assert outs[0].tobytes() == outs[1].tobytes()
        outs = []
        for n in (1, 2):
            threads(n)
            out = np.zeros(coords.shape[0], np.float32)
            assert check_sample_points(src, coords, out, order, 0.0).threads == n
            self.kernel("sample_points")(src, coords, out, order, 0.0)
            outs.append(out)
        assert outs[0].tobytes() == outs[1].tobytes()


class TestCython(NativeContract):
    backend = "cython"


class TestNumba(NativeContract):
    backend = "numba"
