"""A plan's slices as pixels: decoded into a caller's array, or lazily as an array-like.

:func:`decode_slices` decodes slice references (a file, a frame of it, a MOSAIC tile of that
frame) into consecutive planes of an array. :class:`SliceStack` is the same slices as a
read-only array of the volume's shape that decodes only what is indexed, so a store can write a
series one slab of slices at a time while the next slab is decoded, without ever holding the
whole volume (see :func:`voxelflow.store.pyramid.write_pyramid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError
from .stack import SliceRef

__all__ = ["SliceStack", "decode_slices"]


def decode_slices(
    refs: Sequence[SliceRef],
    out: np.ndarray,
    *,
    backend: str | None = None,
    first: np.ndarray | None = None,
) -> None:
    """Decode ``refs[k]`` into ``out[k]`` for every k.

    Parameters
    ----------
    refs : sequence of SliceRef
        Single-sample images: a file, a frame of a multi-frame file, or a tile of a MOSAIC
        frame (the tiles of one frame consecutive, so the frame is decoded once).
    out : ndarray, (len(refs), rows, columns)
        C-contiguous and of the slices' stored dtype.
    backend : str, optional
        Kernel backend of the decoders.
    first : ndarray, optional
        The frame of ``refs[0]`` (the whole MOSAIC frame for a tile), decoded already by the
        caller: used instead of decoding it again.

    Raises
    ------
    SeriesError
        When a slice's shape or dtype differs from `out`'s planes, or a tile lies outside its
        decoded frame.
    DecodeError
        When a file cannot be decoded (naming it).
    """
    from .decode import decode
    from .series import SeriesError

    mosaic_source: tuple[str, int | None] | None = None
    mosaic: np.ndarray | None = None
    if first is not None and refs:
        mosaic_source, mosaic = (refs[0].path, refs[0].frame), first
    for k, s in enumerate(refs):
        if s.tile is None:
            if k == 0 and first is not None:
                if first.shape != out.shape[1:] or first.dtype != out.dtype:
                    raise SeriesError(
                        f"{s.path}: a {first.shape} {first.dtype} slice in a volume of "
                        f"{out.shape[1:]} {out.dtype} slices"
                    )
                out[0] = first
                continue
            try:
                decode(s.path, frames=s.frame, out=out[k], backend=backend)
            except ParameterError as exc:  # the slice's shape or dtype is not the volume's
                raise SeriesError(f"{s.path}: {exc}") from exc
            continue
        # MOSAIC tiles: decode each mosaic frame once (its tiles are consecutive), copy the tiles
        if (s.path, s.frame) != mosaic_source or mosaic is None:
            mosaic_source, mosaic = (s.path, s.frame), decode(s.path, frames=s.frame, backend=backend)
        r0, c0, rows, cols = s.tile
        if mosaic.ndim != 2 or r0 + rows > mosaic.shape[0] or c0 + cols > mosaic.shape[1]:
            raise SeriesError(f"{s.path}: MOSAIC tile {s.tile} lies outside the decoded image {mosaic.shape}")
        if mosaic.dtype != out.dtype or (rows, cols) != out.shape[1:]:
            raise SeriesError(
                f"{s.path}: MOSAIC tile of {rows} x {cols} {mosaic.dtype} does not fit a volume "
                f"of {out.shape[1]} x {out.shape[2]} {out.dtype} slices"
            )
        out[k] = mosaic[r0 : r0 + rows, c0 : c0 + cols]


class SliceStack:
    """Slices of one volume as a read-only array-like that decodes what is indexed.

    Indexing takes ints and slices (any step) and ``...`` on every axis, as numpy basic
    indexing does, and returns a new numpy array; only the slices the leading axes (z, or t
    and z) select are decoded, each once. ``numpy.asarray(stack)`` decodes everything.

    Parameters
    ----------
    refs : sequence of SliceRef
        The slices in volume order (C order of the leading axes: t-major for 4-D).
    shape : tuple of int
        ``(..., z, rows, columns)``; the leading axes' product is ``len(refs)``.
    dtype : numpy dtype
        The slices' stored dtype.
    backend : str, optional
        Kernel backend of the decoders.
    """

    def __init__(
        self,
        refs: Sequence[SliceRef],
        shape: tuple[int, ...],
        dtype: Any,
        *,
        backend: str | None = None,
    ) -> None:
        self.refs = tuple(refs)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.backend = backend
        if len(self.shape) < 3 or int(np.prod(self.shape[:-2])) != len(self.refs):
            raise ParameterError(
                f"SliceStack: shape {self.shape} does not hold {len(self.refs)} slices"
            )

    def __repr__(self) -> str:
        return f"SliceStack(shape={self.shape}, dtype={self.dtype}, slices={len(self.refs)})"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        lead, plane = self._split_key(key)
        numbers = np.arange(len(self.refs)).reshape(self.shape[:-2])[lead]
        out = np.empty((numbers.size, *self.shape[-2:]), self.dtype)
        decode_slices([self.refs[int(n)] for n in numbers.reshape(-1)], out, backend=self.backend)
        result = out.reshape(*numbers.shape, *self.shape[-2:])
        if plane == (slice(None), slice(None)):
            return result
        return np.ascontiguousarray(result[(Ellipsis, *plane)])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self[...]
        return array if dtype is None else array.astype(dtype, copy=False)

    def _split_key(self, key: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The key as (leading-axes part, (rows, columns) part), each full length."""
        items = key if isinstance(key, tuple) else (key,)
        if any(not isinstance(k, (int, np.integer, slice)) and k is not Ellipsis for k in items):
            raise ParameterError(
                f"SliceStack supports ints, slices and ... as indices, got {key!r}"
            )
        if sum(k is Ellipsis for k in items) > 1:
            raise ParameterError(f"SliceStack: an index can have a single ..., got {key!r}")
        if Ellipsis in items:
            at = next(i for i, k in enumerate(items) if k is Ellipsis)
            fill = self.ndim - (len(items) - 1)
            items = items[:at] + (slice(None),) * fill + items[at + 1 :]
        if len(items) > self.ndim:
            raise ParameterError(f"SliceStack: too many indices for shape {self.shape}: {key!r}")
        items = items + (slice(None),) * (self.ndim - len(items))
        return items[:-2], items[-2:]

