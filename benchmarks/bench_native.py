"""Native pixel unpacking and palette lookup: bandwidth against np.copyto and NumPy peers.

The headline group is the commonest CT/MR case: 16 bits allocated, 12 stored, signed, a
512 x 512 x 300 volume (full scale). Its voxelflow rows must reach 50 % of memcpy bandwidth;
the NumPy peer is pydicom's correction (shift the unused high bits out to the left, shift back
arithmetically). Every row of a group reads and writes the same bytes, and ``nbytes`` counts
them once each (read + write), so GB/s compare directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from voxelflow import kernels

BACKENDS = ("cython", "numba")
THREADS = (1, 2)

# (z, y, x) voxels per scale: "smoke" runs once as a test, "quick" and "full" are timed.
SHAPES = {"smoke": (3, 64, 64), "quick": (30, 512, 512), "full": (300, 512, 512)}


@pytest.fixture(scope="module")
def nvoxels(bench_scale: str) -> int:
    return int(np.prod(SHAPES[bench_scale]))




def _describe(
    benchmark: Any, group: str, role: str, nbytes: int, nvoxels: int, **info: Any
) -> None:
    benchmark.group = group
    benchmark.extra_info.update(role=role, nbytes=nbytes, nvoxels=nvoxels, **info)


def _memcpy(benchmark: Any, group: str, src: np.ndarray, nvoxels: int) -> None:
    """The bandwidth baseline: copy the same input bytes into an array of the same size."""
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the destination pages in outside the timing, as for every row
    _describe(benchmark, group, "memcpy", 2 * src.nbytes, nvoxels)
    benchmark(np.copyto, dst, src)


def _voxelflow(
    benchmark: Any,
    group: str,
    kernel: str,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
    nbytes: int,
    nvoxels: int,
    args: tuple[Any, ...],
) -> None:
    threads_set(threads)
    fn = kernels.get(kernel, backend)
    fn(*args)  # compile (Numba) and fault the output pages in outside the timing
    _describe(
        benchmark,
        group,
        "voxelflow",
        nbytes,
        nvoxels,
        kernel=kernel,
        backend=backend,
        threads=threads,
    )
    benchmark(fn, *args)


# -- unpack_words: 16 bits allocated, 12 stored, signed ----------------------------------------


@pytest.fixture(scope="module")
def signed12(nvoxels: int) -> np.ndarray:
    """Little-endian 16-bit words with garbage above High Bit 11 (e.g. overlay bits)."""
    return np.random.default_rng(12).integers(0, 256, 2 * nvoxels, dtype=np.uint8)


def _signed12_group(nvoxels: int) -> str:
    return f"unpack_words int16 12-bit signed, {nvoxels} voxels"


def bench_signed12_memcpy(benchmark: Any, signed12: np.ndarray, nvoxels: int) -> None:
    _memcpy(benchmark, _signed12_group(nvoxels), signed12, nvoxels)


def bench_signed12_numpy(benchmark: Any, signed12: np.ndarray, nvoxels: int) -> None:
    words = np.frombuffer(signed12, "<i2")
    out = np.empty(nvoxels, np.int16)

    def shift() -> None:
        # pydicom's correction, without its extra copy: into `out`, then in place.
        np.left_shift(words, 4, out=out)
        np.right_shift(out, 4, out=out)

    shift()
    _describe(
        benchmark,
        _signed12_group(nvoxels),
        "peer",
        2 * signed12.nbytes,
        nvoxels,
        peer="numpy (pydicom shift)",
    )
    benchmark(shift)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_signed12_voxelflow(
    benchmark: Any,
    signed12: np.ndarray,
    nvoxels: int,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    out = np.empty(nvoxels, np.int16)
    _voxelflow(
        benchmark,
        _signed12_group(nvoxels),
        "unpack_words",
        backend,
        threads,
        threads_set,
        2 * signed12.nbytes,
        nvoxels,
        (signed12, out, 12, False),
    )


# -- unpack_words: 16 of 16 bits, unsigned (a copy) and big endian (a byteswap) ------------------


def _u16_group(nvoxels: int, swap: bool) -> str:
    return f"unpack_words uint16 16-bit {'big' if swap else 'little'} endian, {nvoxels} voxels"


@pytest.mark.parametrize("swap", [False, True], ids=["little", "big"])
def bench_u16_memcpy(benchmark: Any, signed12: np.ndarray, nvoxels: int, swap: bool) -> None:
    _memcpy(benchmark, _u16_group(nvoxels, swap), signed12, nvoxels)


@pytest.mark.parametrize("swap", [False, True], ids=["little", "big"])
def bench_u16_numpy(benchmark: Any, signed12: np.ndarray, nvoxels: int, swap: bool) -> None:
    words = np.frombuffer(signed12, ">u2" if swap else "<u2")
    out = np.empty(nvoxels, np.uint16)
    np.copyto(out, words)
    _describe(
        benchmark,
        _u16_group(nvoxels, swap),
        "peer",
        2 * signed12.nbytes,
        nvoxels,
        peer="numpy (copyto with byte order)",
    )
    benchmark(np.copyto, out, words)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("swap", [False, True], ids=["little", "big"])
def bench_u16_voxelflow(
    benchmark: Any,
    signed12: np.ndarray,
    nvoxels: int,
    swap: bool,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    out = np.empty(nvoxels, np.uint16)
    _voxelflow(
        benchmark,
        _u16_group(nvoxels, swap),
        "unpack_words",
        backend,
        threads,
        threads_set,
        2 * signed12.nbytes,
        nvoxels,
        (signed12, out, 16, swap),
    )


# -- unpack_bits: 1 bit allocated (segmentation masks, overlays) ---------------------------------


@pytest.fixture(scope="module")
def packed_bits(nvoxels: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, nvoxels // 8 + 1, dtype=np.uint8)


def _bits_group(nvoxels: int) -> str:
    return f"unpack_bits 1-bit, bit offset 3, {nvoxels} voxels"


def bench_bits_memcpy(benchmark: Any, nvoxels: int) -> None:
    # A copy the size of the output: its bandwidth is the ceiling for writing the pixels.
    _memcpy(benchmark, _bits_group(nvoxels), np.ones(nvoxels, np.uint8), nvoxels)


def bench_bits_numpy(benchmark: Any, packed_bits: np.ndarray, nvoxels: int) -> None:
    def unpack() -> np.ndarray:
        return np.unpackbits(packed_bits, bitorder="little")[3 : 3 + nvoxels]

    _describe(
        benchmark,
        _bits_group(nvoxels),
        "peer",
        nvoxels + nvoxels // 8,
        nvoxels,
        peer="numpy (unpackbits)",
    )
    benchmark(unpack)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_bits_voxelflow(
    benchmark: Any,
    packed_bits: np.ndarray,
    nvoxels: int,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    out = np.empty(nvoxels, np.uint8)
    _voxelflow(
        benchmark,
        _bits_group(nvoxels),
        "unpack_bits",
        backend,
        threads,
        threads_set,
        nvoxels + nvoxels // 8,
        nvoxels,
        (packed_bits, out, 3),
    )


# -- palette_lookup: 8-bit indices, 16-bit 256-entry RGB palette ------------------------------


@pytest.fixture(scope="module")
def palette_data(nvoxels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    indices = rng.integers(0, 256, nvoxels, dtype=np.uint8)
    lut = rng.integers(0, 65536, (256, 3), dtype=np.uint16)
    return indices, lut


def _palette_group(nvoxels: int) -> str:
    return f"palette_lookup uint8 -> 3 x uint16, {nvoxels} voxels"


def _palette_nbytes(nvoxels: int) -> int:
    return nvoxels * (1 + 3 * 2)  # read one index, write one RGB row (the table stays in cache)


def bench_palette_memcpy(benchmark: Any, nvoxels: int) -> None:
    _memcpy(benchmark, _palette_group(nvoxels), np.ones(3 * nvoxels, np.uint16), nvoxels)


def bench_palette_numpy(
    benchmark: Any, palette_data: tuple[np.ndarray, np.ndarray], nvoxels: int
) -> None:
    indices, lut = palette_data
    out = np.empty((nvoxels, 3), np.uint16)
    np.take(lut, indices, 0, out)
    _describe(
        benchmark,
        _palette_group(nvoxels),
        "peer",
        _palette_nbytes(nvoxels),
        nvoxels,
        peer="numpy (take)",
    )
    # pydicom's apply_color_lut indexes the table by the pixel values; take into out is its
    # fastest form (first mapped value 0, all indices in range).
    benchmark(np.take, lut, indices, 0, out)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_palette_voxelflow(
    benchmark: Any,
    palette_data: tuple[np.ndarray, np.ndarray],
    nvoxels: int,
    backend: str,
    threads: int,
    threads_set: Callable[[int], None],
) -> None:
    indices, lut = palette_data
    out = np.empty((nvoxels, 3), np.uint16)
    _voxelflow(
        benchmark,
        _palette_group(nvoxels),
        "palette_lookup",
        backend,
        threads,
        threads_set,
        _palette_nbytes(nvoxels),
        nvoxels,
        (indices, lut, 0, out),
    )
