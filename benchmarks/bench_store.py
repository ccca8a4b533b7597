"""The volume store: writing and reading an int16 CT phantom, against plain zarr and np.copyto.

Groups (all on the same torso phantom, 300 x 512 x 512 at full scale, 64 x 512 x 512 quick):

- write: ``VolumeStore.write`` of level 0 alone and with its pyramid, against the peer: plain
  zarr v3 writing the same array with the same chunks (64 x 256 x 256), codec (blosc LZ4 +
  bit-shuffle) and ``write_empty_chunks`` into a fresh folder. The ratio is the price of
  voxelflow's staging, rename, locks and metadata (and, for the pyramid row, of the levels).
- read: ``VolumeStore.open(key).to_numpy()`` against ``zarr.open_array(...)[...]`` on the same
  stored array: the price of the missing-chunk and replaced-volume checks.

``nbytes`` counts the voxels' bytes read plus written (uncompressed), as for the memcpy row.
Each round writes into a fresh key (``benchmark.pedantic`` with a setup), so no round pays for
removing the previous one.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from voxelflow.store import VolumeStore
from voxelflow.store.volume_store import COMPRESSORS, DEFAULT_CHUNKS
from voxelflow.testing import phantom_volume
from voxelflow.volume import Volume

SHAPES = {"smoke": (16, 64, 64), "quick": (64, 512, 512), "full": (300, 512, 512)}
ROUNDS = {"smoke": 1, "quick": 3, "full": 5}


@pytest.fixture(scope="module")
def ct(bench_scale: str) -> Volume:
    shape = SHAPES[bench_scale]
    affine = np.diag([2.5, 0.7, 0.7, 1.0])
    return Volume(phantom_volume(shape, spacing=(2.5, 0.7, 0.7)), affine, {"modality": "CT"})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench_store")


def _chunks(ct: Volume) -> tuple[int, ...]:
    return tuple(min(c, n) for c, n in zip(DEFAULT_CHUNKS, ct.shape))


def _describe(benchmark: Any, group: str, role: str, ct: Volume, **info: Any) -> None:
    benchmark.group = group
    benchmark.extra_info.update(
        role=role, nbytes=2 * ct.array.nbytes, nvoxels=ct.array.size, **info
    )


def _write_group(ct: Volume) -> str:
    z, y, x = ct.shape
    return f"store write {z}x{y}x{x} int16 CT, blosc-lz4, {DEFAULT_CHUNKS} chunks"


def _read_group(ct: Volume) -> str:
    z, y, x = ct.shape
    return f"store read {z}x{y}x{x} int16 CT, blosc-lz4"


def _fresh_keys() -> Any:
    counter = itertools.count()
    return lambda: ((f"round{next(counter)}",), {})


@pytest.mark.parametrize("pyramid", [False, True], ids=["level0", "pyramid"])
def bench_store_write_voxelflow(
    benchmark: Any, ct: Volume, workdir: Path, bench_scale: str, pyramid: bool
) -> None:
    store = VolumeStore(workdir / f"voxelflow-{pyramid}")
    kernel = "store_write+pyramid" if pyramid else "store_write"
    _describe(benchmark, _write_group(ct), "voxelflow", ct, kernel=kernel)

    def write(key: str) -> None:
        store.write(key, ct, pyramid=pyramid)

    benchmark.pedantic(write, setup=_fresh_keys(), rounds=ROUNDS[bench_scale], iterations=1)
    key = store.keys()[-1]
    np.testing.assert_array_equal(store.open(key).to_numpy(), ct.array)
    shutil.rmtree(store.path)


def bench_store_write_zarr(benchmark: Any, ct: Volume, workdir: Path, bench_scale: str) -> None:
    root = workdir / "zarr-write"
    _describe(benchmark, _write_group(ct), "peer", ct, peer="zarr")

    def write(key: str) -> None:
        array = zarr.create_array(
            zarr.storage.LocalStore(root / key),
            shape=ct.shape,
            dtype=ct.dtype,
            chunks=_chunks(ct),
            compressors=[COMPRESSORS["blosc"]()],
            fill_value=0,
            config={"write_empty_chunks": True},
        )
        array[...] = ct.array

    benchmark.pedantic(write, setup=_fresh_keys(), rounds=ROUNDS[bench_scale], iterations=1)
    shutil.rmtree(root)


def bench_store_write_memcpy(benchmark: Any, ct: Volume) -> None:
    src = ct.array.copy()
    dst = np.empty_like(src)
    _describe(benchmark, _write_group(ct), "memcpy", ct)
    benchmark(np.copyto, dst, src)


@pytest.fixture(scope="module")
def stored(ct: Volume, workdir: Path) -> VolumeStore:
    store = VolumeStore(workdir / "read")
    store.write("ct", ct, pyramid=False)
    return store


def bench_store_read_voxelflow(benchmark: Any, ct: Volume, stored: VolumeStore) -> None:
    _describe(benchmark, _read_group(ct), "voxelflow", ct, kernel="store_read")
    np.testing.assert_array_equal(benchmark(lambda: stored.open("ct").to_numpy()), ct.array)


def bench_store_read_zarr(benchmark: Any, ct: Volume, stored: VolumeStore) -> None:
    _describe(benchmark, _read_group(ct), "peer", ct, peer="zarr")
    path = stored.path / "ct" / "0"
    np.testing.assert_array_equal(benchmark(lambda: zarr.open_array(path, mode="r")[...]), ct.array)


def bench_store_read_memcpy(benchmark: Any, ct: Volume) -> None:
    src = ct.array.copy()
    dst = np.empty_like(src)
    _describe(benchmark, _read_group(ct), "memcpy", ct)
    benchmark(np.copyto, dst, src)
