"""Chunk-by-chunk work on zarr arrays: the regions of a chunk grid, and copying any array-like
(numpy, zarr, dask, memmap, h5py ...) into a zarr array without holding a second whole copy.

Every write here covers whole chunks (or the clipped chunks at the array's far edges), so zarr
never reads a chunk back to merge a partial write, and concurrent tasks never share a chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["chunk_regions", "copy_into", "for_each_region", "is_dask"]

Region = tuple[slice, ...]


def chunk_regions(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[Region]:
    """The regions of the chunk grid of an array, in C order of the chunk index."""
    ranges = [range(0, n, c) for n, c in zip(shape, chunks)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(s, min(s + c, n)) for s, c, n in zip(starts, chunks, shape))


def for_each_region(
    work: Callable[[Region], None], regions: Iterable[Region], *, threads: int
) -> None:
    """Run ``work(region)`` for every region on up to `threads` threads; re-raise the first error.

    On an error the regions not yet started are cancelled, so a failing write stops quickly.
    """
    if threads <= 1:
        for region in regions:
            work(region)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="voxelflow-store")
    try:
        futures = [pool.submit(work, region) for region in regions]
        for future in futures:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def copy_into(source: Any, target: Any, *, threads: int) -> None:
    """Copy `source` into the zarr array `target` (same shape), chunk by chunk.

    dask arrays are stored block by block with ``dask.array.store``, rechunked where their
    blocks do not align with the target's chunk grid (two blocks writing parts of one chunk
    would race). Everything else (numpy, zarr, memmaps, h5py datasets) is read, cast and
    written one target chunk at a time on `threads` threads: for numpy, faster than handing
    zarr the whole array and with a third of the memory (measured: 0.25 s and 60 MiB against
    0.6 s and 135 MiB for a 150 MiB CT on 2 threads, because zarr encodes up to 10 chunks at a
    time, each a copy).
    """
    dtype = np.dtype(target.dtype)
    if is_dask(source):
        import dask.array as da

        if source.dtype != dtype:
            source = source.astype(dtype)
        aligned = _aligned_chunks(source.chunks, target.chunks)
        if aligned != source.chunks:
            source = source.rechunk(aligned)
        da.store(source, target, lock=False, compute=True)
        return

    def copy_region(region: Region) -> None:
        target[region] = np.asarray(source[region], dtype=dtype)

    for_each_region(copy_region, chunk_regions(target.shape, target.chunks), threads=threads)


def is_dask(array: Any) -> bool:
    """Whether `array` is a dask array (duck-typed: dask need not be imported)."""
    return hasattr(array, "dask") and hasattr(array, "chunks") and hasattr(array, "compute")


def _aligned_chunks(
    dask_chunks: tuple[tuple[int, ...], ...], zarr_chunks: Sequence[int]
) -> tuple[tuple[int, ...], ...]:
    """Dask chunks whose block boundaries all fall on zarr chunk boundaries.

    Axes already aligned keep their blocks (a 512-row block over 256-row chunks writes two
    whole chunks); the others take the zarr chunk size, so a rechunk moves as little as it can.
    """
    out = []
    for blocks, chunk in zip(dask_chunks, zarr_chunks):
        if any(b % chunk for b in blocks[:-1]):
            n = sum(blocks)
            blocks = (chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ())
        out.append(tuple(blocks))
    return tuple(out)
