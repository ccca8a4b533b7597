"""Multiscale pyramids: which axes halve at each level, the 2x box-mean decimation, level grids.

Level 0 is the volume. Each further level halves some spatial axes of the one before, until the
largest axis is at most :data:`PYRAMID_TARGET` voxels (thumbnails and coarse rendering).

Which axes halve. The "fine" axes, whose spacing is within a factor sqrt(2) of the finest
spacing (among axes longer than one voxel), as long as they are longer than the target. An
isotropic volume halves every axis; a CT of 0.7 x 0.7 mm pixels and 2.5 mm slices halves y and
x first (1.4, then 2.8 mm) and z only once the in-plane spacing has caught up, so coarse levels
approach isotropic voxels instead of squashing the already coarse axis. Rows and columns (y, x)
halve together when both are fine, so images keep their aspect ratio (300 x 200 pixels become
150 x 100, 75 x 50, 38 x 25). When no fine axis is longer than the target, the axes that are
halve instead: a 300 x 512 x 512 CT ends 38 x 64 x 64 (axial thumbnails of 64 x 64), not
38 x 8 x 8. A leading time axis never changes.

The filter. A level voxel is the mean of the 2 x 2 x 2 block (2 x 2 when z is kept, ...) it
covers: a box filter, which for 2x decimation suppresses what would alias (it zeroes the
Nyquist frequency of the finer grid). Integer data keeps its dtype, the mean rounded to
nearest, ties to even (``numpy.rint``); floats keep theirs. Each level is computed from the one
before it (so integer levels round once per level).

Odd lengths. A level has ``ceil(n / 2)`` voxels along a halved axis; the last block of an odd
axis has one voxel, taken as its own mean (edge replication). The level grid is exact: level
voxel ``m`` along a halved axis is centred at finer index ``2m + 1/2``, the mean of the two
centres it came from; so its affine is the finer affine composed with ``index -> 2 index + 1/2``
on those axes (:func:`level_affine`). For the one-voxel edge block that centre is half a finer
voxel beyond the voxel it holds: the value is the edge voxel's, the position is the grid's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import kernels
from ..errors import ParameterError
from ..kernels.reference.downsample import DOWNSAMPLE_DTYPES, box_mean, downsampled_shape
from ..progress import Progress
from .chunkwise import Region, chunk_regions, for_each_region

__all__ = [
    "PYRAMID_TARGET",
    "PyramidLevel",
    "build_level",
    "downsample_mean",
    "level_affine",
    "plan_pyramid",
    "write_pyramid",
]

#: The pyramid stops once the largest axis of a level is at most this many voxels.
PYRAMID_TARGET = 64

# Axes whose spacing is at most this factor above the finest one are halved.
_ANISOTROPY = math.sqrt(2.0)


@dataclass(frozen=True)
class PyramidLevel:
    """One level of a pyramid.

    Attributes
    ----------
    path : str
        The level's array name in the volume group ("0", "1", ...).
    shape : tuple of int
        Its shape, with the volume's leading axes (time) unchanged.
    factors : (int, int, int)
        Voxel size along (z, y, x) in level-0 voxels (cumulative, powers of 2).
    step : (int, int, int)
        Decimation from the previous level along (z, y, x): 1 or 2 (all 1 at level 0).
    """

    path: str
    shape: tuple[int, ...]
    factors: tuple[int, int, int]
    step: tuple[int, int, int]


def plan_pyramid(
    shape: Sequence[int], spacing: Sequence[float], *, target: int = PYRAMID_TARGET
) -> list[PyramidLevel]:
    """The levels of a volume's pyramid, level 0 first.

    Parameters
    ----------
    shape : sequence of int
        The volume's shape, ``(..., z, y, x)``.
    spacing : 3 floats
        Level-0 voxel spacing in mm along (z, y, x).
    target : int
        Stop once the largest spatial axis is at most this long (``target >= max(shape)``
        gives level 0 alone).
    """
    lead, spatial = tuple(shape[:-3]), [int(n) for n in shape[-3:]]
    space = [float(s) for s in spacing]
    factors = [1, 1, 1]
    levels = [PyramidLevel("0", tuple(shape), (1, 1, 1), (1, 1, 1))]
    while max(spatial) > target:
        candidates = [
            a for a in range(3) if spatial[a] >= 2
        ]  # never empty: max(spatial) > target >= 1
        finest = min(space[a] for a in candidates)
        fine = [a for a in candidates if space[a] <= finest * _ANISOTROPY * (1 + 1e-9)]
        halve = [a for a in fine if spatial[a] > target]
        if (1 in halve) != (2 in halve):
            # rows and columns halve together where both are fine: images keep their aspect
            halve = sorted(set(halve) | ({1, 2} & set(fine)))
        if not halve:
            # the fine axes are short already: shrink the long (coarse) ones rather than make
            # the thumbnails ever smaller while the long axis waits
            halve = [a for a in range(3) if spatial[a] > target]
        step = [2 if a in halve else 1 for a in range(3)]
        spatial = [-(-n // s) for n, s in zip(spatial, step)]
        space = [d * s for d, s in zip(space, step)]
        factors = [f * s for f, s in zip(factors, step)]
        levels.append(
            PyramidLevel(str(len(levels)), lead + tuple(spatial), tuple(factors), tuple(step))
        )  # type: ignore[arg-type]
    return levels


def level_affine(affine: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """The (k, j, i) -> LPS affine of a level whose voxels are `factors` level-0 voxels wide.

    Level voxel ``m`` covers level-0 indices ``f m ... f m + f - 1`` and is centred at their
    mean, ``f m + (f - 1) / 2``.
    """
    f = np.asarray(factors, dtype=np.float64)
    to_level0 = np.eye(4)
    to_level0[:3, :3] = np.diag(f)
    to_level0[:3, 3] = (f - 1) / 2
    return np.asarray(affine, dtype=np.float64) @ to_level0


def downsample_mean(block: Any, step: Sequence[int], *, backend: str | None = None) -> np.ndarray:
    """Decimate the last three axes of `block` by `step` (1 or 2 each) with a box mean.

    The arithmetic is the ``downsample_mean2`` kernel's (see
    :mod:`voxelflow.kernels.reference.downsample`); the native kernel runs for its dtypes
    (8- to 32-bit integers, bool, float32, float64, native byte order), the NumPy oracle for
    the rest (64-bit integers, float16, ...).

    Parameters
    ----------
    block : array-like, (..., z, y, x)
        A region of the finer level; where a halved axis has odd length its last voxel forms a
        block of its own (edge replication).
    step : 3 ints in {1, 2}
    backend : str, optional
        Kernel backend ("cython", "numba", "reference"); default from ``VOXELFLOW_BACKEND``.

    Returns
    -------
    numpy.ndarray
        Same dtype as `block`; integers (and bool) rounded to nearest, ties to even.
    """
    block = np.asarray(block)
    if block.ndim < 3:
        raise ParameterError(f"downsample_mean: block must have 3 or more axes, got shape {block.shape}")
    # bool means are 0/1 means too: the uint8 kernel gives the same bits
    values = block.view(np.uint8) if block.dtype == np.bool_ else block
    if values.dtype not in DOWNSAMPLE_DTYPES:
        return box_mean(block, step)
    values = np.ascontiguousarray(values)
    out = np.empty(downsampled_shape(values.shape, step), values.dtype)
    kernel = kernels.get("downsample_mean2", backend)
    for index in np.ndindex(values.shape[:-3]):
        kernel(values[index], out[index], tuple(step))
    return out.view(block.dtype)


def build_level(source: Any, target: Any, step: Sequence[int], *, threads: int) -> None:
    """Fill the zarr array `target` with `source` decimated by `step`, one target chunk at a time.

    `source` is the finer level (numpy or zarr, any array supporting slicing); each task reads
    only the source region under one target chunk, so memory stays a few chunks per thread.
    """
    lead = len(target.shape) - 3
    full = (1,) * lead + tuple(step)

    def fill(region: Region) -> None:
        finer = tuple(
            slice(r.start * s, min(r.stop * s, n)) for r, s, n in zip(region, full, source.shape)
        )
        target[region] = downsample_mean(source[finer], step)

    for_each_region(fill, chunk_regions(target.shape, target.chunks), threads=threads)


def write_pyramid(
    source: Any,
    targets: Sequence[Any],
    levels: Sequence[PyramidLevel],
    *,
    threads: int,
    backend: str | None = None,
    progress: Progress | None = None,
) -> None:
    """Write `source` into ``targets[0]`` and its pyramid into the others, in one pass over it.

    `source` is read once, one row of level-0 chunks at a time (all of y and x, a chunk's depth
    of z) by slicing it along z, so a lazy source (a stack of DICOM files decoded on demand, a
    zarr array) is never held whole. Each row is handed to `threads` threads that compress and
    write its chunks while the calling thread reads the next row; the calling thread also
    decimates the row it has just read into the next level's row buffer while it is in memory,
    and every level does the same with its own rows once a chunk row of it is complete. So
    memory holds two level-0 chunk rows (the one being read and the one being written), one
    chunk row per further level, and the chunks zarr is encoding.

    Parameters
    ----------
    source : array-like, (..., z, y, x)
        Anything sliceable to numpy (numpy, zarr, memmap, a lazy stack); its dtype is cast to
        the targets'.
    targets : zarr arrays
        One per level, shaped and chunked as `levels` (leading axes chunked by 1).
    levels : list of PyramidLevel
        From :func:`plan_pyramid`.
    threads : int
        Threads that compress and write chunks.
    backend : str, optional
        Backend of the ``downsample_mean2`` kernel.
    progress : callable, optional
        ``progress(done, total)`` in level-0 slices (z times the leading axes) read and
        handed to the writers; last once every chunk is written.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    dtype = np.dtype(targets[0].dtype)
    lead_shape = tuple(levels[0].shape[:-3])
    rows = [
        _LevelRows(targets[n], levels[n], levels[n + 1].step if n + 1 < len(levels) else None)
        for n in range(len(levels))
    ]
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="voxelflow-store")
    # the futures of the writes each level-0 row started, oldest first: bounded, so at most
    # one row is being written while the next is read
    pending: deque[list[Future[None]]] = deque()

    def write(n: int, lead: tuple[int, ...], z0: int, block: np.ndarray, started: list[Future[None]]) -> None:
        target = targets[n]
        cy, cx = target.chunks[-2:]
        for y0 in range(0, block.shape[-2], cy):
            for x0 in range(0, block.shape[-1], cx):
                region = (*lead, slice(z0, z0 + block.shape[0]), slice(y0, y0 + cy), slice(x0, x0 + cx))
                started.append(pool.submit(_store_region, target, region, block[:, y0 : y0 + cy, x0 : x0 + cx]))
        following = n + 1
        if following < len(rows):
            rows[following].add(block, z0, levels[following].step, backend,
                                lambda z, b: write(following, lead, z, b, started))

    total = int(np.prod(lead_shape, dtype=np.int64)) * rows[0].depth
    done = 0
    if progress is not None:
        progress(0, total)
    try:
        for lead in np.ndindex(lead_shape):
            level0 = rows[0]
            for z0 in range(0, level0.depth, level0.height):
                region = (*lead, slice(z0, min(z0 + level0.height, level0.depth)))
                block = np.ascontiguousarray(np.asarray(source[region], dtype=dtype))
                started: list[Future[None]] = []
                write(0, lead, z0, block, started)
                pending.append(started)
                while len(pending) > 1:
                    for future in pending.popleft():
                        future.result()
                done += block.shape[0]
                if progress is not None and done < total:
                    progress(done, total)
        while pending:
            for future in pending.popleft():
                future.result()
        if progress is not None:
            progress(total, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _store_region(target: Any, region: Region, values: np.ndarray) -> None:
    # zarr copies a strided chunk into C order on its one event-loop thread before encoding
    # (its bytes codec); copied here, the copies of concurrent chunks run in parallel
    target[region] = np.ascontiguousarray(values)


class _LevelRows:
    """One level's rows along z while a pass fills them; each full chunk row goes out at once.

    A row holds a chunk's depth of z, or two when the next level halves z and the chunk depth
    is odd (a mean of the next level must not straddle two rows).
    """

    def __init__(self, target: Any, level: PyramidLevel, next_step: tuple[int, int, int] | None) -> None:
        self.depth = level.shape[-3]
        chunk = target.chunks[-3]
        self.height = 2 * chunk if next_step is not None and next_step[0] == 2 and chunk % 2 else chunk
        self.plane = tuple(level.shape[-2:])
        self.dtype = np.dtype(target.dtype)
        self.buffer: np.ndarray | None = None
        self.start = 0  # z of the buffer's first row
        self.filled = 0  # rows of the buffer written so far

    def add(
        self,
        finer: np.ndarray,
        finer_z0: int,
        step: tuple[int, int, int],
        backend: str | None,
        emit: Callable[[int, np.ndarray], None],
    ) -> None:
        """Decimate rows ``finer_z0 ...`` of the finer level into this level's rows, calling
        ``emit(z0, rows)`` for each chunk row completed (the last one may be shorter)."""
        z0 = finer_z0 // step[0]
        count = -(-finer.shape[0] // step[0])
        if self.buffer is None:
            self._begin(z0)
        assert self.buffer is not None and z0 == self.start + self.filled, "rows arrive in order"
        if self.filled + count <= len(self.buffer):
            # the rows fit the buffer (always, for chunk depths of one size across levels):
            # decimate straight into it
            _downsample_into(finer, self.buffer[self.filled : self.filled + count], step, backend)
            self.filled += count
            self._emit_if_full(emit)
            return
        down = downsample_mean(finer, step, backend=backend)
        done = 0
        while done < count:
            if self.buffer is None:
                self._begin(z0 + done)
            assert self.buffer is not None
            take = min(count - done, len(self.buffer) - self.filled)
            self.buffer[self.filled : self.filled + take] = down[done : done + take]
            self.filled += take
            done += take
            self._emit_if_full(emit)

    def _begin(self, z0: int) -> None:
        self.start, self.filled = z0, 0
        self.buffer = np.empty((min(self.height, self.depth - z0), *self.plane), self.dtype)

    def _emit_if_full(self, emit: Callable[[int, np.ndarray], None]) -> None:
        if self.buffer is not None and self.filled == len(self.buffer):
            buffer, self.buffer = self.buffer, None
            emit(self.start, buffer)


def _downsample_into(finer: np.ndarray, out: np.ndarray, step: tuple[int, int, int], backend: str | None) -> None:
    values = finer.view(np.uint8) if finer.dtype == np.bool_ else finer
    if values.dtype in DOWNSAMPLE_DTYPES:
        kernels.get("downsample_mean2", backend)(values, out.view(values.dtype), step)
    else:
        out[...] = box_mean(finer, step)
