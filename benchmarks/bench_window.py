"""Display windowing: voxelflow.window against the NumPy float formula and np.copyto.

The headline group is a CT volume (512 x 512 x 300 int16 at full scale) to 8-bit display
values with a LINEAR soft-tissue window and a rescale: voxelflow fuses the chain into one
table and applies it in one pass (``lut_apply``). The peer is the same formula in NumPy float64
(as pydicom's ``apply_windowing`` computes it), written in place to spare it temporaries.
The float32 group runs the fused arithmetic kernel (``window_apply``). ``nbytes`` counts the
bytes each call reads and writes (input + output), so GB/s compare with the memcpy row, a
``np.copyto`` of the input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import voxelflow
from voxelflow.display import DisplayPipeline, Rescale, Window

BACKENDS = ("cython", "numba")
THREADS = (1, 2)

# (z, y, x) voxels per scale: "smoke" runs once as a test, "quick" and "full" are timed.
SHAPES = {"smoke": (3, 64, 64), "quick": (30, 512, 512), "full": (300, 512, 512)}

# Soft tissue, C40/W400 HU, on unsigned-style CT storage (intercept -1024).
PIPELINE = DisplayPipeline(
    modality=Rescale(slope=1.0, intercept=-1024.0), voi=Window(center=40.0, width=400.0), bits=8
)


@pytest.fixture(scope="module")
def shape(bench_scale: str) -> tuple[int, int, int]:
    return SHAPES[bench_scale]


@pytest.fixture(scope="module")
def ct_int16(shape: tuple[int, int, int]) -> np.ndarray:
    """Stored CT values 0..4095 (HU + 1024): air, soft tissue and bone, some noise."""
    rng = np.random.default_rng(40)
    hu = rng.choice([-1000.0, -80.0, 40.0, 60.0, 700.0], size=shape, p=[0.3, 0.1, 0.3, 0.2, 0.1])
    hu += rng.normal(0.0, 20.0, shape)
    return np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.int16)


@pytest.fixture(scope="module")
def ct_float32(ct_int16: np.ndarray) -> np.ndarray:
    return ct_int16.astype(np.float32) + np.float32(0.25)


@pytest.fixture(scope="module")
def expected(ct_int16: np.ndarray, ct_float32: np.ndarray) -> dict[str, np.ndarray]:
    """The reference backend's display values, computed once per module."""
    return {
        "int16": voxelflow.window(ct_int16, PIPELINE, backend="reference"),
        "float32": voxelflow.window(ct_float32, PIPELINE, backend="reference"),
    }




def _describe(
    benchmark: Any, group: str, role: str, nbytes: int, nvoxels: int, **info: Any
) -> None:
    benchmark.group = group
    benchmark.extra_info.update(role=role, nbytes=nbytes, nvoxels=nvoxels, **info)


def _memcpy(benchmark: Any, group: str, src: np.ndarray) -> None:
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the destination pages in outside the timing
    _describe(benchmark, group, "memcpy", 2 * src.nbytes, src.size)
    benchmark(np.copyto, dst, src)


def numpy_window(
    src: np.ndarray, out: np.ndarray, slope: float, intercept: float, center: float, width: float
) -> None:
    """PS3.3 C.11.2.1.2.1 LINEAR in NumPy float64, in place, rounded half up into `out`."""
    x = src.astype(np.float64)
    x *= slope
    x += intercept
    x -= center - 0.5
    x /= width - 1.0
    x += 0.5
    x *= 255.0
    # The formula is monotone: clipping is the standard's "<= lower edge: 0, > upper: 255".
    np.clip(x, 0.0, 255.0, out=x)
    x += 0.5
    np.floor(x, out=x)
    np.copyto(out, x, casting="unsafe")


def _peer(benchmark: Any, group: str, src: np.ndarray, expected: np.ndarray) -> None:
    out = np.empty(src.shape, np.uint8)
    args = (src, out, 1.0, -1024.0, 40.0, 400.0)
    numpy_window(*args)
    # The same values, but for rounding ties its different operation order may tip by one.
    assert np.abs(out.astype(np.int16) - expected).max() <= 1
    _describe(
        benchmark,
        group,
        "peer",
        src.nbytes + out.nbytes,
        src.size,
        peer="numpy float64 (pydicom's formula)",
    )
    benchmark(numpy_window, *args)


def _voxelflow(
    benchmark: Any,
    group: str,
    src: np.ndarray,
    expected: np.ndarray,
    kernel: str,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    threads_set(threads)
    out = np.empty(src.shape, np.uint8)
    # Compile (Numba), build and cache the display table, fault out's pages: outside the timing.
    voxelflow.window(src, PIPELINE, out=out, backend=backend)
    assert np.array_equal(out, expected)
    _describe(
        benchmark,
        group,
        "voxelflow",
        src.nbytes + out.nbytes,
        src.size,
        kernel=kernel,
        backend=backend,
        threads=threads,
    )
    benchmark(voxelflow.window, src, PIPELINE, out=out, backend=backend)


def _int16_group(n: int) -> str:
    return f"window int16 -> uint8 LINEAR C40/W400, {n} voxels"


def bench_int16_memcpy(benchmark: Any, ct_int16: np.ndarray) -> None:
    _memcpy(benchmark, _int16_group(ct_int16.size), ct_int16)


def bench_int16_numpy(
    benchmark: Any, ct_int16: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    _peer(benchmark, _int16_group(ct_int16.size), ct_int16, expected["int16"])


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_int16_voxelflow(
    benchmark: Any,
    ct_int16: np.ndarray,
    expected: dict[str, np.ndarray],
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    _voxelflow(
        benchmark,
        _int16_group(ct_int16.size),
        ct_int16,
        expected["int16"],
        "lut_apply",
        backend,
        threads,
        threads_set,
    )


def _float32_group(n: int) -> str:
    return f"window float32 -> uint8 LINEAR C40/W400, {n} voxels"


def bench_float32_memcpy(benchmark: Any, ct_float32: np.ndarray) -> None:
    _memcpy(benchmark, _float32_group(ct_float32.size), ct_float32)


def bench_float32_numpy(
    benchmark: Any, ct_float32: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    _peer(benchmark, _float32_group(ct_float32.size), ct_float32, expected["float32"])


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_float32_voxelflow(
    benchmark: Any,
    ct_float32: np.ndarray,
    expected: dict[str, np.ndarray],
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    _voxelflow(
        benchmark,
        _float32_group(ct_float32.size),
        ct_float32,
        expected["float32"],
        "window_apply",
        backend,
        threads,
        threads_set,
    )
