"""Frame decoding: RLE Lossless (PS3.5 Annex G) against pylibjpeg-rle and np.copyto.

Two groups, both 16-bit CT-like frames (a body ellipse of 40..1500 with bright inserts on
-1000 air, mild noise, changing slice to slice), RLE-encoded by voxelflow's reference encoder:

- one 512 x 512 frame on one thread (target: voxelflow >= 1.5x pylibjpeg-rle);
- a 512 x 512 x 300 series (full scale), voxelflow on one and two threads, pylibjpeg-rle frame
  by frame (target on two threads: >= 2.5x).

The peer is pylibjpeg-rle's Rust ``rle.rle.decode_frame`` (the function behind
``rle.decode_pixel_data``, without its Dataset handling), charged only what it needs to
produce the same little-endian ``(rows, columns)`` array: the call and a zero-copy
``np.frombuffer``; for the series, the copy of each frame into the volume (as pydicom's
``pixel_array`` does), since the peer cannot decode in place. voxelflow decodes into a
preallocated output, like the series' volume; both outputs are faulted in before timing.
``nbytes`` counts the encoded bytes read plus the decoded bytes written; the memcpy row copies
the decoded size (read + write), so its GB/s is the bandwidth ceiling of the output side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from voxelflow import kernels
from voxelflow.kernels.reference.rle import rle_encode_frame

BACKENDS = ("cython", "numba")
THREADS = (1, 2)

# (frames, rows, columns) of the series per scale; the single-frame group uses one of them.
SHAPES = {"smoke": (3, 64, 64), "quick": (30, 512, 512), "full": (300, 512, 512)}


def ct_slices(nframes: int, rows: int, columns: int, seed: int = 0) -> np.ndarray:
    """int16 CT-like slices (HU): body ellipse and inserts on air, varying with the slice."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]
    volume = np.empty((nframes, rows, columns), np.int16)
    for z in range(nframes):
        t = z / max(nframes - 1, 1)
        a, b = 0.80 - 0.15 * t, 0.62 + 0.05 * np.sin(6 * t)
        body = (x / a) ** 2 + (y / b) ** 2 <= 1
        hu = np.where(body, 40.0 + 30 * (1 + np.sin(3 * x + 2 * t)) * (1 + np.cos(4 * y)), -1000.0)
        for cx, cy, r, value in (
            (0.0, 0.25, 0.12, 1500),
            (-0.35, -0.1, 0.15, 300),
            (0.4, 0.0, 0.1, 700),
        ):
            cy += 0.1 * np.sin(4 * t + cx)
            hu[(x - cx) ** 2 + (y - cy) ** 2 <= (r * (1 - 0.3 * t)) ** 2] = value
        hu += rng.normal(0, 3, size=hu.shape)  # mild quantum noise
        volume[z] = np.round(hu)
    return volume


class Encoded:
    """A series, its RLE frames one by one (for the peer) and concatenated (for voxelflow)."""

    def __init__(self, volume: np.ndarray):
        self.volume = volume
        self.frames = [rle_encode_frame(f) for f in volume]
        self.src = np.frombuffer(b"".join(self.frames), np.uint8)
        self.offsets = np.zeros(len(self.frames) + 1, np.int64)
        self.offsets[1:] = np.cumsum([len(f) for f in self.frames])
        self.nframes, self.rows, self.columns = volume.shape
        self.nvoxels = volume.size
        # encoded bytes read + decoded bytes written
        self.nbytes = self.src.nbytes + volume.nbytes

    def first(self) -> Encoded:
        return Encoded(self.volume[:1])


@pytest.fixture(scope="module")
def series(bench_scale: str) -> Encoded:
    return Encoded(ct_slices(*SHAPES[bench_scale]))


@pytest.fixture(scope="module")
def single(series: Encoded) -> Encoded:
    return series.first()




def _describe(
    benchmark: Any, group: str, role: str, data: Encoded, nbytes: int, **info: Any
) -> None:
    benchmark.group = group
    benchmark.extra_info.update(role=role, nbytes=nbytes, nvoxels=data.nvoxels, **info)


def _single_group(data: Encoded) -> str:
    return f"rle_decode {data.rows}x{data.columns} int16 CT frame, 1 thread"


def _series_group(data: Encoded) -> str:
    return f"rle_decode {data.nframes}x{data.rows}x{data.columns} int16 CT series"


def _voxelflow(
    benchmark: Any,
    group: str,
    data: Encoded,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    threads_set(threads)
    fn = kernels.get("rle_decode", backend)
    out = np.empty((data.nframes, 2 * data.rows * data.columns), np.uint8)
    args = (data.src, data.offsets, out, data.rows, data.columns, 1, 2)
    fn(*args)  # compile (Numba) and fault the output pages in outside the timing
    _describe(
        benchmark,
        group,
        "voxelflow",
        data,
        data.nbytes,
        kernel="rle_decode",
        backend=backend,
        threads=threads,
    )
    status = benchmark(fn, *args)
    assert not status.any()
    np.testing.assert_array_equal(out.view("<i2").reshape(data.volume.shape), data.volume)


def _memcpy(benchmark: Any, group: str, data: Encoded) -> None:
    """The bandwidth baseline: copy the decoded size into an array of the same size."""
    src = data.volume.copy()
    dst = np.empty_like(src)
    _describe(benchmark, group, "memcpy", data, 2 * src.nbytes)
    benchmark(np.copyto, dst, src)


def _peer_decode_frame() -> Callable[..., bytearray]:
    # the peer: pylibjpeg-rle, a test dependency (pyproject [test])
    from rle import rle

    return rle.decode_frame


# -- one frame, one thread ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def bench_rle_frame_voxelflow(
    benchmark: Any, single: Encoded, backend: str, threads_set: Callable[[int], None]
) -> None:
    _voxelflow(benchmark, _single_group(single), single, backend, 1, threads_set)


def bench_rle_frame_pylibjpeg_rle(benchmark: Any, single: Encoded) -> None:
    decode_frame = _peer_decode_frame()
    encoded, npixels, shape = (
        single.frames[0],
        single.rows * single.columns,
        single.volume.shape[1:],
    )

    def decode() -> np.ndarray:
        return np.frombuffer(decode_frame(encoded, npixels, 16, "<"), "<i2").reshape(shape)

    _describe(benchmark, _single_group(single), "peer", single, single.nbytes, peer="pylibjpeg-rle")
    np.testing.assert_array_equal(benchmark(decode), single.volume[0])


def bench_rle_frame_memcpy(benchmark: Any, single: Encoded) -> None:
    _memcpy(benchmark, _single_group(single), single)


# -- a series --------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_rle_series_voxelflow(
    benchmark: Any, series: Encoded, backend: str, threads: int, threads_set: Callable[[int], None]
) -> None:
    _voxelflow(benchmark, _series_group(series), series, backend, threads, threads_set)


def bench_rle_series_pylibjpeg_rle(benchmark: Any, series: Encoded) -> None:
    decode_frame = _peer_decode_frame()
    npixels = series.rows * series.columns
    volume = np.empty((series.nframes, npixels), "<i2")
    volume.fill(0)  # fault the pages in outside the timing, as for voxelflow's output

    def decode() -> np.ndarray:
        for i, encoded in enumerate(series.frames):
            volume[i] = np.frombuffer(decode_frame(encoded, npixels, 16, "<"), "<i2")
        return volume

    _describe(benchmark, _series_group(series), "peer", series, series.nbytes, peer="pylibjpeg-rle")
    benchmark(decode)
    np.testing.assert_array_equal(volume.reshape(series.volume.shape), series.volume)


def bench_rle_series_memcpy(benchmark: Any, series: Encoded) -> None:
    _memcpy(benchmark, _series_group(series), series)


# --- a series, file by file, into one preallocated volume --------------------------------

SERIES_SHAPES = {"smoke": (8, 64, 64), "quick": (60, 512, 512), "full": (300, 512, 512)}


@pytest.fixture(scope="module")
def ct_series(bench_scale, tmp_path_factory):
    """An uncompressed CT phantom series (12 bits stored, one file per slice)."""
    from voxelflow.testing import write_series

    folder = tmp_path_factory.mktemp("series")
    info = write_series(folder, shape=SERIES_SHAPES[bench_scale], spacing=(1.25, 0.7, 0.7), modality="CT")
    return info


def _series_info(benchmark, info, role, **extra):
    volume = info.volume
    benchmark.group = f"series {volume.shape[0]}x{volume.shape[1]}x{volume.shape[2]} files -> volume"
    benchmark.extra_info.update(
        role=role, nbytes=2 * volume.nbytes, nvoxels=volume.size, **extra
    )


@pytest.mark.parametrize("backend", ["cython", "numba"])
def bench_series_voxelflow(benchmark, ct_series, backend):
    import voxelflow

    paths = ct_series.paths
    volume = np.empty(ct_series.volume.shape, ct_series.volume.dtype)
    voxelflow.decode(paths[0], out=volume[0], backend=backend)  # compile/warm the backend

    def run():
        for k, path in enumerate(paths):
            voxelflow.decode(path, out=volume[k], backend=backend)

    _series_info(benchmark, ct_series, "voxelflow", kernel="decode series", backend=backend,
                 threads=voxelflow.get_num_threads())
    benchmark(run)
    np.testing.assert_array_equal(volume, ct_series.volume)


def bench_series_pydicom(benchmark, ct_series):
    import pydicom

    paths = ct_series.paths

    def run():
        return np.stack([pydicom.dcmread(p).pixel_array for p in paths])

    _series_info(benchmark, ct_series, "peer", peer="pydicom dcmread+pixel_array+np.stack")
    result = benchmark(run)
    np.testing.assert_array_equal(result, ct_series.volume)


def bench_series_memcpy(benchmark, ct_series):
    src = ct_series.volume
    dst = np.empty_like(src)
    _series_info(benchmark, ct_series, "memcpy")
    benchmark(np.copyto, dst, src)
