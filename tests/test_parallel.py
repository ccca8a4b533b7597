"""The out-of-core resampling path equals the in-memory one, on odd chunkings (where boundary
bugs live), reading zarr-backed volumes from a VolumeStore."""

from __future__ import annotations

import numpy as np
import pytest

import voxelflow
from voxelflow.store import VolumeStore
from voxelflow.volume import Volume


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    r = np.eye(4)
    r[1:3, 1:3] = [[c, -s], [s, c]]
    return r


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    rng = np.random.default_rng(3)
    data = rng.normal(100.0, 40.0, size=(23, 37, 29)).astype(np.float32)
    affine = np.diag([2.5, 0.8, 0.7, 1.0])
    affine[:3, 3] = (-30.0, 12.0, 7.5)
    store = VolumeStore(tmp_path_factory.mktemp("store"))
    store.write("v", Volume(data, affine, {"modality": "CT"}), chunks=(5, 11, 8))
    return store.open("v"), Volume(data, affine, {"modality": "CT"})


CASES = {
    "linear-iso": {"spacing": 0.7, "interp": "linear"},
    "nearest": {"spacing": (1.1, 0.5, 0.9), "interp": "nearest"},
    "downsample-anti-aliased": {"spacing": (5.0, 2.1, 1.9), "interp": "linear"},
    "cubic": {"spacing": (1.3, 0.6, 0.55), "interp": "cubic"},
    "lanczos": {"spacing": (1.3, 0.6, 0.55), "interp": "lanczos"},
    "lanczos-down": {"spacing": (3.1, 1.7, 1.5), "interp": "lanczos"},
}


@pytest.mark.parametrize("chunks", [(7, 13, 11), (3, 64, 5), (100, 100, 100)], ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_chunked_equals_in_memory(stored, case, chunks):
    lazy_in, memory_in = stored
    lazy = voxelflow.resample(lazy_in, chunks=chunks, **CASES[case])
    assert hasattr(lazy.array, "dask")  # nothing computed yet
    eager = voxelflow.resample(memory_in, **CASES[case])
    np.testing.assert_array_equal(lazy.affine, eager.affine)
    got = lazy.to_numpy()
    assert got.shape == eager.shape and got.dtype == eager.dtype
    tolerance = 1e-4 if case == "cubic" else 1e-5  # cubic: the IIR prefilter's halo is finite
    np.testing.assert_allclose(got, eager.array, rtol=tolerance, atol=tolerance * 100)


@pytest.mark.parametrize("spacing", [(5.0, 1.6, 2.1), (2.0, 0.5, 3.5)], ids=str)
@pytest.mark.parametrize("chunks", [(3, 5, 4), (100, 100, 100)], ids=str)
def test_majority_chunked_equals_in_memory(stored, tmp_path, spacing, chunks):
    _, memory_in = stored
    labels = (np.rint(memory_in.array / 40.0)).astype(np.int16)  # a handful of labels
    store = VolumeStore(tmp_path / "labels")
    store.write("l", Volume(labels, memory_in.affine, {}), chunks=(5, 11, 8))
    lazy = voxelflow.resample(store.open("l"), spacing=spacing, interp="majority", chunks=chunks)
    eager = voxelflow.resample(Volume(labels, memory_in.affine, {}), spacing=spacing,
                               interp="majority")
    np.testing.assert_array_equal(lazy.to_numpy(), eager.array)


def test_oblique_chunked_equals_in_memory(stored):
    lazy_in, memory_in = stored
    target = memory_in.affine @ _rotation(0.35)
    lazy = voxelflow.resample(
        lazy_in, affine=target, shape=(20, 30, 25), chunks=(6, 7, 9), cval=-7.0
    )
    eager = voxelflow.resample(memory_in, affine=target, shape=(20, 30, 25), cval=-7.0)
    np.testing.assert_allclose(lazy.to_numpy(), eager.array, rtol=1e-5, atol=1e-3)
    assert (eager.array == -7.0).any()  # part of the grid lies outside the input


def test_chunked_result_writes_to_a_store(stored, tmp_path):
    lazy_in, memory_in = stored
    out = voxelflow.resample(lazy_in, spacing=(5.0, 1.6, 1.4), chunks=(4, 9, 10))
    store = VolumeStore(tmp_path / "out")
    store.write("down", out)
    back = store.open("down")
    eager = voxelflow.resample(memory_in, spacing=(5.0, 1.6, 1.4))
    np.testing.assert_allclose(back.to_numpy(), eager.array, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(back.affine, out.affine)


# Two processes: one writes the 2 GiB input store, a fresh one resamples it, so the peak RSS
# measured is the resampling's alone (as for a user whose volume is already stored), not the
# making of the test input.
_WRITE_INPUT = """
import sys
import numpy as np, dask.array as da
from voxelflow.store import VolumeStore
from voxelflow.volume import Volume

n = int(sys.argv[2])
x = da.arange(n, chunks=128, dtype=np.float32)
data = (da.sin(x[:, None, None] * 0.05) * 500 + da.cos(x[None, :, None] * 0.09) * 300
        + x[None, None, :]).astype(np.int16).rechunk((64, 256, 256))
VolumeStore(sys.argv[1]).write("big", Volume(data, np.eye(4), {}), pyramid=False)
"""

_DOWNSAMPLE = """
import resource, sys
import dask
import voxelflow
from voxelflow.store import VolumeStore

store = VolumeStore(sys.argv[1])
down = voxelflow.resample(store.open("big"), spacing=2.0)  # anti-aliased 2x downsampling
with dask.config.set(num_workers=2):
    store.write("down", down, pyramid=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_out_of_core_2gib_volume_peak_rss_under_1gib(tmp_path):
    """The issue's bound: a 1024^3 int16 zarr volume (2 GiB) downsampled 2x with
    anti-aliasing into a zarr store with peak RSS <= 1 GiB."""
    import subprocess
    import sys

    store = str(tmp_path / "store")
    run = {"capture_output": True, "text": True, "timeout": 900}
    subprocess.run([sys.executable, "-c", _WRITE_INPUT, store, "1024"], check=True, **run)
    result = subprocess.run([sys.executable, "-c", _DOWNSAMPLE, store], check=True, **run)
    peak_mib = int(result.stdout.split()[-1])
    assert peak_mib <= 1024
    assert VolumeStore(store).open("down").shape == (512, 512, 512)
