"""Rendering: voxelflow.mpr / project / rotating_projection against the scipy approach.

The volume is a CT (300 x 512 x 512 int16 at (1.25, 0.7, 0.7) mm at full scale), in memory,
2 threads for voxelflow (scipy is single-threaded: it has no threads to give). Every scipy peer
samples exactly the positions voxelflow samples, with ``map_coordinates(order=1)`` on
precomputed coordinates (computing them is not timed), and reduces with numpy:

- oblique plane: one 512 x 512 plane tilted 25 deg about x and 15 deg about z, linear;
- oblique slab MIP: the same plane, 20 mm thick at 1 mm (20 samples), one ``map_coordinates``
  per sample + ``np.maximum``;
- axis-aligned projection: the full-volume MIP along z; the peer is ``numpy.max(axis=0)``,
  plus a memcpy row of the input's size for bandwidth;
- rotating projection: 36 MIP views of 512 x 512 about the patient's long axis, spanning the
  volume's height and axial width, rays sampled at one sample per voxel crossed; the peer
  rotates the volume with ``scipy.ndimage.rotate(order=1, reshape=False)`` in the axial plane
  and takes the max along y, per view (300 x 512 views, 512 samples a ray: fewer samples than
  voxelflow takes, 79 M against 190 M a view);
- cold zarr: a 1024^3 int16 volume stored with 64^3 chunks (full scale; smaller otherwise),
  opened afresh each round: an oblique 512 x 512 plane read from the touched chunks, against
  loading the whole volume and reslicing it in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _bench import describe, timed

import voxelflow
from voxelflow import Plane, Slab
from voxelflow.store import VolumeStore
from voxelflow.volume import Volume

BACKENDS = ("cython", "numba")
THREADS = 2
SHAPES = {"smoke": (12, 48, 48), "quick": (100, 512, 512), "full": (300, 512, 512)}
IMAGE = {"smoke": 32, "quick": 512, "full": 512}
COLD = {"smoke": 96, "quick": 384, "full": 1024}
VIEWS = {"smoke": 4, "quick": 12, "full": 36}
SPACING = (1.25, 0.7, 0.7)


@pytest.fixture(scope="module")
def ct(bench_scale: str) -> Volume:
    shape = SHAPES[bench_scale]
    rng = np.random.default_rng(3)
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (0.4 * shape[1]) ** 2
    data = np.where(body, 1064, 24).astype(np.int16) + rng.integers(0, 40, shape, dtype=np.int16)
    data[:, :: max(1, shape[1] // 16)] += 600
    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = (*SPACING, 1.0)
    affine[:3, 3] = (-179.0, -179.0, -300.0)
    return Volume(data, affine, {"modality": "CT", "rescale": {"slope": 1.0, "intercept": -1024.0}})


def _centre(volume: Volume) -> np.ndarray:
    return (volume.affine @ np.append((np.array(volume.shape) - 1) / 2.0, 1.0))[:3]


@pytest.fixture(scope="module")
def plane(ct: Volume, bench_scale: str) -> Plane:
    n = IMAGE[bench_scale]
    axial = Plane.axial(_centre(ct), spacing=min(ct.spacing), size=(n, n))
    return axial.rotated((1, 0, 0), 25).rotated((0, 0, 1), 15)


def _coords(volume: Volume, plane: Plane, offset: float = 0.0) -> np.ndarray:
    inv = np.linalg.inv(volume.affine)
    positions = plane.positions() + offset * plane.normal
    return np.ascontiguousarray(np.moveaxis(positions @ inv[:3, :3].T + inv[:3, 3], -1, 0))


# -- oblique plane ---------------------------------------------------------------------------


def _plane_group(ct: Volume, plane: Plane) -> str:
    return f"render int16 {ct.shape}: oblique {plane.size} plane, linear"


@pytest.mark.parametrize("backend", BACKENDS)
def bench_plane_voxelflow(benchmark: Any, ct: Volume, plane: Plane, backend: str, bench_scale: str, two_threads: None) -> None:
    image = voxelflow.mpr(ct, plane, backend=backend)
    describe(benchmark, _plane_group(ct, plane), "voxelflow", image.nbytes, image.size, kernel="sample_slab", backend=backend, threads=THREADS)
    timed(benchmark, lambda: voxelflow.mpr(ct, plane, backend=backend), bench_scale, rounds=20)


def bench_plane_scipy(benchmark: Any, ct: Volume, plane: Plane, bench_scale: str) -> None:
    import scipy.ndimage as ndi

    coords = _coords(ct, plane)
    expected = ndi.map_coordinates(ct.array, coords, output=np.float32, order=1, mode="nearest")
    got = voxelflow.mpr(ct, plane) + 1024.0
    inside = ~np.isnan(got)
    np.testing.assert_allclose(got[inside], expected[inside], rtol=1e-5, atol=1e-2)
    describe(benchmark, _plane_group(ct, plane), "peer", expected.nbytes, expected.size, peer="scipy map_coordinates order=1 (1 thread)", threads=1)
    timed(benchmark, lambda: ndi.map_coordinates(ct.array, coords, output=np.float32, order=1, mode="nearest"), bench_scale)


# -- oblique slab MIP ------------------------------------------------------------------------


def _slab_group(ct: Volume, plane: Plane) -> str:
    return f"render int16 {ct.shape}: oblique {plane.size} slab MIP 20 mm at 1 mm, linear"


SLAB = Slab(20.0, "mip", spacing=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_slab_voxelflow(benchmark: Any, ct: Volume, plane: Plane, backend: str, bench_scale: str, two_threads: None) -> None:
    image = voxelflow.mpr(ct, plane, slab=SLAB, backend=backend)
    describe(benchmark, _slab_group(ct, plane), "voxelflow", image.nbytes, image.size, kernel="sample_slab", backend=backend, threads=THREADS)
    timed(benchmark, lambda: voxelflow.mpr(ct, plane, slab=SLAB, backend=backend), bench_scale)


def bench_slab_scipy(benchmark: Any, ct: Volume, plane: Plane, bench_scale: str) -> None:
    import scipy.ndimage as ndi

    offsets = Slab.offsets(20, 1.0)
    coords = [_coords(ct, plane, o) for o in offsets]
    # NOTE: samples outside the volume take the edge value here (map_coordinates has no
    # "skip"); inside the volume the two agree.

    def scipy_slab() -> np.ndarray:
        acc = ndi.map_coordinates(ct.array, coords[0], output=np.float32, order=1, mode="nearest")
        for c in coords[1:]:
            np.maximum(acc, ndi.map_coordinates(ct.array, c, output=np.float32, order=1, mode="nearest"), out=acc)
        return acc

    expected = scipy_slab()
    got = voxelflow.mpr(ct, plane, slab=SLAB) + 1024.0
    n = np.array(ct.shape) - 0.5
    inside = np.all([np.all((c >= -0.5) & (c <= n[:, None, None]), axis=0) for c in coords], axis=0)
    np.testing.assert_allclose(got[inside], expected[inside], rtol=1e-5, atol=1e-2)
    describe(benchmark, _slab_group(ct, plane), "peer", expected.nbytes, expected.size, peer="scipy map_coordinates x20 + np.maximum (1 thread)", threads=1)
    timed(benchmark, scipy_slab, bench_scale)


# -- axis-aligned projection -----------------------------------------------------------------


def _project_group(ct: Volume) -> str:
    return f"project int16 {ct.shape}: MIP along z (axial view)"


def bench_project_memcpy(benchmark: Any, ct: Volume, bench_scale: str) -> None:
    dst = np.empty_like(ct.array)
    np.copyto(dst, ct.array)
    describe(benchmark, _project_group(ct), "memcpy", 2 * ct.array.nbytes, ct.array.size)
    timed(benchmark, lambda: np.copyto(dst, ct.array), bench_scale)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_project_voxelflow(benchmark: Any, ct: Volume, backend: str, bench_scale: str, two_threads: None) -> None:
    image = voxelflow.project(ct, direction=(0, 0, -1), backend=backend)
    np.testing.assert_array_equal(np.sort(image.ravel()), np.sort(ct.array.max(axis=0).ravel() - 1024.0))
    describe(benchmark, _project_group(ct), "voxelflow", ct.array.nbytes + image.nbytes, image.size, kernel="project_axis", backend=backend, threads=THREADS)
    timed(benchmark, lambda: voxelflow.project(ct, direction=(0, 0, -1), backend=backend), bench_scale)


def bench_project_numpy(benchmark: Any, ct: Volume, bench_scale: str) -> None:
    out = ct.array.max(axis=0)
    describe(benchmark, _project_group(ct), "peer", ct.array.nbytes + out.nbytes, out.size, peer="numpy.max(axis=0)", threads=1)
    timed(benchmark, lambda: ct.array.max(axis=0), bench_scale)


# -- rotating projection ---------------------------------------------------------------------


def _spin_group(ct: Volume, views: int) -> str:
    return f"rotating MIP int16 {ct.shape}: {views} views about the long axis, linear"


@pytest.mark.parametrize("backend", BACKENDS)
def bench_spin_voxelflow(benchmark: Any, ct: Volume, backend: str, bench_scale: str, two_threads: None) -> None:
    views = VIEWS[bench_scale]
    size = IMAGE[bench_scale]

    def spin() -> np.ndarray:
        return voxelflow.rotating_projection(ct, views, size=(size, size), spacing=_spin_spacing(ct, size), backend=backend)

    stack = spin()
    describe(benchmark, _spin_group(ct, views), "voxelflow", stack.nbytes, stack.size, kernel="sample_slab", backend=backend, threads=THREADS)
    timed(benchmark, spin, bench_scale, rounds=1)


def _spin_spacing(ct: Volume, size: int) -> float:
    """Pixel spacing at which `size` pixels span the volume's height and its axial width (the
    field of view of the peer, whose ``reshape=False`` rotation keeps the axial square)."""
    return max(ct.shape[0] * ct.spacing[0], ct.shape[2] * ct.spacing[2]) / size


def bench_spin_scipy(benchmark: Any, ct: Volume, bench_scale: str) -> None:
    import scipy.ndimage as ndi

    views = VIEWS[bench_scale]

    def scipy_spin() -> np.ndarray:
        frames = []
        for k in range(views):
            turned = ndi.rotate(ct.array, 360.0 * k / views, axes=(1, 2), reshape=False, order=1, mode="constant", cval=-1024)
            frames.append(turned.max(axis=1))
        return np.stack(frames)

    describe(benchmark, _spin_group(ct, views), "peer", 0, 0, peer="scipy.ndimage.rotate order=1 + max, per view (1 thread)", threads=1)
    timed(benchmark, scipy_spin, bench_scale, rounds=1)


# -- cold zarr store -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cold_store(tmp_path_factory: Any, bench_scale: str) -> tuple[VolumeStore, Plane]:
    import dask.array as da

    n = COLD[bench_scale]
    chunk = min(64, n)

    def block(block_info: Any = None) -> np.ndarray:
        (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
        return ((z * 7 + y * 3 + x) % 1500 + ((x - n / 2) ** 2 + (y - n / 2) ** 2 < (n / 3) ** 2) * 500).astype(np.int16)

    array = da.map_blocks(block, chunks=((chunk,) * (n // chunk),) * 3, dtype=np.int16)
    affine = np.zeros((4, 4))
    affine[2, 0] = affine[1, 1] = affine[0, 2] = affine[3, 3] = 0.5
    affine[3, 3] = 1.0
    store = VolumeStore(tmp_path_factory.mktemp("cold"))
    store.write("big", Volume(array, affine, {"modality": "CT"}), chunks=(chunk, chunk, chunk), pyramid=False)
    size = IMAGE[bench_scale]
    centre = (affine @ np.append((np.array((n, n, n)) - 1) / 2.0, 1.0))[:3]
    plane = Plane.axial(centre, spacing=0.5, size=(size, size)).rotated((1, 0, 0), 30).rotated((0, 0, 1), 20)
    return store, plane


def _cold_group(bench_scale: str) -> str:
    n = COLD[bench_scale]
    return f"cold zarr {n}^3 int16 (64^3 chunks): oblique {IMAGE[bench_scale]}^2 plane"


@pytest.mark.parametrize("backend", BACKENDS)
def bench_cold_voxelflow(benchmark: Any, cold_store: Any, backend: str, bench_scale: str, two_threads: None) -> None:
    store, plane = cold_store
    image = voxelflow.mpr(store.open("big"), plane, backend=backend)
    describe(benchmark, _cold_group(bench_scale), "voxelflow", image.nbytes, image.size, kernel="sample_slab", backend=backend, threads=THREADS)
    timed(benchmark, lambda: voxelflow.mpr(store.open("big"), plane, backend=backend), bench_scale, rounds=5)


def bench_cold_load_everything(benchmark: Any, cold_store: Any, bench_scale: str, two_threads: None) -> None:
    store, plane = cold_store

    def load_then_reslice() -> np.ndarray:
        volume = store.open("big")
        return voxelflow.mpr(volume.with_array(volume.to_numpy()), plane)

    np.testing.assert_array_equal(load_then_reslice(), voxelflow.mpr(store.open("big"), plane))
    describe(benchmark, _cold_group(bench_scale), "peer", 0, 0, peer="load the whole volume, then reslice", threads=THREADS)
    timed(benchmark, load_then_reslice, bench_scale, rounds=1)
