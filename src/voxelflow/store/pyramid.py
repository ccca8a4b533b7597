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

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunkwise import Region, chunk_regions, for_each_region

__all__ = [
    "PYRAMID_TARGET",
    "PyramidLevel",
    "build_level",
    "downsample_mean",
    "level_affine",
    "plan_pyramid",
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


def downsample_mean(block: Any, step: Sequence[int]) -> np.ndarray:
    """Decimate the last three axes of `block` by `step` (1 or 2 each) with a box mean.

    Parameters
    ----------
    block : array-like, (..., z, y, x)
        A region of the finer level; where a halved axis has odd length its last voxel forms a
        block of its own (edge replication).
    step : 3 ints in {1, 2}

    Returns
    -------
    numpy.ndarray
        Same dtype as `block`; integers (and bool) rounded to nearest, ties to even.
    """
    block = np.asarray(block)
    lead = block.ndim - 3
    pad = [(0, 0)] * lead + [(0, n % 2 if s == 2 else 0) for n, s in zip(block.shape[lead:], step)]
    if any(after for _, after in pad):
        block = np.pad(block, pad, mode="edge")
    integer = block.dtype.kind in "biu"
    # sums of up to 8 values below 2**16 are exact in float32 (24-bit mantissa): half the
    # memory traffic of float64 for the common 8/16-bit data
    accumulate = np.float32 if integer and block.dtype.itemsize <= 2 else np.float64
    total: np.ndarray | None = None
    for offsets in itertools.product(*(range(s) for s in step)):
        view = block[(Ellipsis, *(slice(o, None, s) for o, s in zip(offsets, step)))]
        if total is None:
            total = view.astype(accumulate)
        else:
            total += view
    assert total is not None
    count = math.prod(step)
    if count > 1:
        total *= 1.0 / count  # a power of two: exact
    if integer:
        np.rint(total, out=total)
    return total.astype(block.dtype, copy=False)


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
