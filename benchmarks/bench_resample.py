"""Resampling: voxelflow.resample against SimpleITK's ResampleImageFilter and scipy.ndimage.zoom.

The headline group is a CT volume (300 x 512 x 512 int16 at full scale) at (1.25, 0.7, 0.7) mm
resampled to 0.7 mm isotropic, linear, int16 out: voxelflow takes the separable path (only z
changes), SimpleITK resamples onto the same grid with sitkLinear, scipy.ndimage.zoom(order=1)
produces the same number of voxels (its grid aligns the first and last centres, a slightly
different z step: the same work). The oblique group resamples the same volume onto a grid
rotated 20 degrees about z and 10 about x (voxelflow's general kernel). Every peer runs on the
same number of threads as voxelflow (SimpleITK's global default; scipy is single-threaded).
``nbytes`` counts input + output bytes; the memcpy row copies the output-sized array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _bench import describe, timed

import voxelflow
from voxelflow.resampling import output_grid
from voxelflow.volume import Volume

BACKENDS = ("cython", "numba")
THREADS = 2
SHAPES = {"smoke": (6, 32, 32), "quick": (60, 512, 512), "full": (300, 512, 512)}
SPACING = (1.25, 0.7, 0.7)
TARGET = 0.7


@pytest.fixture(scope="module")
def ct(bench_scale: str) -> Volume:
    shape = SHAPES[bench_scale]
    rng = np.random.default_rng(7)
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (0.4 * shape[1]) ** 2
    data = np.where(body, 1064, 24).astype(np.int16) + rng.integers(0, 40, shape, dtype=np.int16)
    data[:, :: max(1, shape[1] // 16)] += 600  # edges to interpolate
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 0.0, SPACING[0])
    affine[:3, 1] = (0.0, SPACING[1], 0.0)
    affine[:3, 2] = (SPACING[2], 0.0, 0.0)
    affine[:3, 3] = (-179.0, -179.0, -300.0)
    return Volume(data, affine, {"modality": "CT"})


@pytest.fixture(scope="module")
def oblique_grid(ct: Volume) -> tuple[np.ndarray, tuple[int, int, int]]:
    def rot(theta: float, a: int, b: int) -> np.ndarray:
        r = np.eye(4)
        c, s = np.cos(theta), np.sin(theta)
        r[[a, a, b, b], [a, b, a, b]] = c, -s, s, c
        return r

    affine, shape = output_grid(ct, spacing=TARGET)
    centre = ct.affine @ np.append((np.array(ct.shape) - 1) / 2, 1.0)
    world = rot(np.radians(20), 0, 1) @ rot(np.radians(10), 1, 2)
    # rotate the isotropic grid about the volume's centre
    grid = world @ affine
    grid[:3, 3] += centre[:3] - (world @ centre)[:3]
    return grid, shape


def _sitk_resample(ct: Volume, grid: np.ndarray, shape: tuple[int, int, int]) -> Callable[[], Any]:
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    image = ct.to_sitk()
    spacing = np.linalg.norm(grid[:3, :3], axis=0)
    f = sitk.ResampleImageFilter()
    f.SetSize([int(shape[2]), int(shape[1]), int(shape[0])])
    f.SetOutputSpacing([float(spacing[2]), float(spacing[1]), float(spacing[0])])
    f.SetOutputOrigin([float(v) for v in grid[:3, 3]])
    direction = grid[:3, [2, 1, 0]] / spacing[[2, 1, 0]]
    f.SetOutputDirection([float(v) for v in direction.reshape(-1)])
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(0)
    return lambda: f.Execute(image)


def _iso_group(ct: Volume) -> str:
    return f"resample int16 {ct.shape} {SPACING} mm -> {TARGET} mm isotropic, linear"


def _oblique_group(ct: Volume) -> str:
    return f"resample int16 {ct.shape} -> {TARGET} mm oblique grid (20/10 deg), linear"


def bench_iso_memcpy(benchmark: Any, ct: Volume, bench_scale: str) -> None:
    _, shape = output_grid(ct, spacing=TARGET)
    src = np.ones(shape, np.int16)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    describe(benchmark, _iso_group(ct), "memcpy", 2 * src.nbytes, src.size)
    timed(benchmark, lambda: np.copyto(dst, src), bench_scale)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_iso_voxelflow(benchmark: Any, ct: Volume, backend: str, bench_scale: str, two_threads: None) -> None:
    out = voxelflow.resample(ct, spacing=TARGET, backend=backend)  # compile / warm up
    describe(benchmark, _iso_group(ct), "voxelflow", ct.array.nbytes + out.array.nbytes,
              out.array.size, kernel="sample_axis", backend=backend, threads=THREADS)
    timed(benchmark, lambda: voxelflow.resample(ct, spacing=TARGET, backend=backend), bench_scale)


def bench_iso_simpleitk(benchmark: Any, ct: Volume, bench_scale: str) -> None:
    grid, shape = output_grid(ct, spacing=TARGET)
    run = _sitk_resample(ct, grid, shape)
    expected = voxelflow.resample(ct, spacing=TARGET).array
    got = __import__("SimpleITK").GetArrayFromImage(run())
    # the same grid and interpolation: equal but for int16 rounding (ITK truncates differently)
    assert np.abs(got.astype(np.int32) - expected).max() <= 1
    describe(benchmark, _iso_group(ct), "peer", ct.array.nbytes + expected.nbytes, expected.size,
              peer="SimpleITK ResampleImageFilter sitkLinear", threads=THREADS)
    timed(benchmark, run, bench_scale)


def bench_iso_scipy_zoom(benchmark: Any, ct: Volume, bench_scale: str) -> None:
    import scipy.ndimage as ndi
    _, shape = output_grid(ct, spacing=TARGET)
    zoom = [n_out / n_in for n_out, n_in in zip(shape, ct.shape)]
    out = ndi.zoom(ct.array, zoom, order=1)
    assert out.shape == tuple(shape)
    describe(benchmark, _iso_group(ct), "peer", ct.array.nbytes + out.nbytes, out.size,
              peer="scipy.ndimage.zoom order=1 (1 thread)", threads=1)
    timed(benchmark, lambda: ndi.zoom(ct.array, zoom, order=1), bench_scale)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_oblique_voxelflow(benchmark: Any, ct: Volume, oblique_grid: Any, backend: str,
                            bench_scale: str, two_threads: None) -> None:
    grid, shape = oblique_grid
    out = voxelflow.resample(ct, affine=grid, shape=shape, backend=backend)
    describe(benchmark, _oblique_group(ct), "voxelflow", ct.array.nbytes + out.array.nbytes,
              out.array.size, kernel="sample_affine", backend=backend, threads=THREADS)
    timed(benchmark, lambda: voxelflow.resample(ct, affine=grid, shape=shape, backend=backend), bench_scale)


def bench_oblique_simpleitk(benchmark: Any, ct: Volume, oblique_grid: Any, bench_scale: str) -> None:
    grid, shape = oblique_grid
    run = _sitk_resample(ct, grid, shape)
    expected = voxelflow.resample(ct, affine=grid, shape=shape).array
    got = __import__("SimpleITK").GetArrayFromImage(run())
    # equal but for int16 rounding, and the half-voxel border where the inside tests round apart
    assert np.mean(np.abs(got.astype(np.int32) - expected) <= 1) > 0.999
    describe(benchmark, _oblique_group(ct), "peer", ct.array.nbytes + expected.nbytes, expected.size,
              peer="SimpleITK ResampleImageFilter sitkLinear", threads=THREADS)
    timed(benchmark, run, bench_scale)
