"""Dask integration: output-driven, out-of-core resampling of chunked (zarr or dask) volumes.

Each output chunk is one task. It maps its corners through the output-to-input matrix, reads
only the input box they span plus the halo its interpolation needs (the interpolation's
support (3 voxels for Lanczos-3; for the majority vote, the footprint's half-width) and, with
anti-aliasing, the Gaussian's 4-sigma radius; the cubic B-spline prefilter,
an IIR filter, gets a halo after which its influence is below 1e-9), and samples that box
with the in-memory kernels. Memory per task is bounded by one output chunk and its input box,
whatever the volume's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .kernels.reference.resample import LANCZOS
from .resampling import MAJORITY, anti_alias_sigma, sample_grid

__all__ = ["DEFAULT_CHUNKS", "resample_chunked"]

#: Output chunk shape (z, y, x) when the caller gives none: 8 MiB of int16 per task.
DEFAULT_CHUNKS = (64, 256, 256)

# the B-spline prefilter's pole is 0.268: 16 voxels on, an input's influence is < 1e-9
_PREFILTER_HALO = 16


def _halo(order: int, sigma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    if order == MAJORITY:
        # the footprint reaches half an output step (in input voxels) past the centre
        return np.ceil(np.abs(np.diag(matrix[:, :3])) / 2.0).astype(int) + 1
    support = {0: 1, 1: 1, 3: 2 + _PREFILTER_HALO, LANCZOS: 3}[order]
    return support + np.array([int(4.0 * s + 0.5) + 1 if s > 0 else 0 for s in sigma])


def resample_chunked(
    array: Any,
    matrix: np.ndarray,
    out_shape: Sequence[int],
    *,
    order: int,
    anti_alias: bool,
    cval: float,
    dtype: Any,
    chunks: Sequence[int] | None = None,
    backend: str | None = None,
) -> Any:
    """A lazy dask array: `array` (3-D, zarr/dask/numpy) sampled on a new grid, chunk by chunk.

    Parameters are those of :func:`voxelflow.resampling.sample_grid`; `chunks` is the output
    chunk shape (default :data:`DEFAULT_CHUNKS`, capped by the output shape).
    """
    import dask.array as da

    m = np.asarray(matrix, dtype=np.float64)[:3].copy()
    out_shape = tuple(int(n) for n in out_shape)
    in_shape = np.array(array.shape[-3:])
    dtype = np.dtype(dtype)
    chunk_shape = tuple(min(c, n) for c, n in zip(chunks or DEFAULT_CHUNKS, out_shape))
    sigma = anti_alias_sigma(m) if anti_alias and order > 0 else np.zeros(3)
    halo = _halo(order, sigma, m)

    def block(_: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        (k0, k1), (j0, j1), (i0, i1) = block_info[0]["array-location"]
        start = np.array([k0, j0, i0], dtype=np.float64)
        shape = (k1 - k0, j1 - j0, i1 - i0)
        corners = np.array(
            [[k, j, i, 1.0] for k in (k0, k1 - 1) for j in (j0, j1 - 1) for i in (i0, i1 - 1)]
        )
        points = corners @ m.T
        lo = np.maximum(np.floor(points.min(axis=0)).astype(int) - halo, 0)
        hi = np.minimum(np.ceil(points.max(axis=0)).astype(int) + halo + 1, in_shape)
        if np.any(hi <= lo):
            return np.full(shape, cval, dtype)  # the chunk lies outside the input
        box = np.asarray(array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
        local = m.copy()
        local[:, 3] = m[:, :3] @ start + m[:, 3] - lo
        # points beyond the box but inside the volume never occur (the box spans them); the
        # box's own edge is the volume's edge wherever `lo`/`hi` were clipped
        # same linear part, so sample_grid derives the same anti-aliasing sigma as for the
        # whole volume
        return sample_grid(box, local, shape, order=order, anti_alias=anti_alias, cval=cval,
                           dtype=dtype, backend=backend)

    template = da.empty(out_shape, chunks=chunk_shape, dtype=dtype)
    return da.map_blocks(block, template, dtype=dtype, meta=np.empty((0, 0, 0), dtype))
