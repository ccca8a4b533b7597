"""Palette Color lookup: the oracle and the shared argument checks.

PALETTE COLOR images store indices into Red/Green/Blue Palette Color Lookup Tables
(PS3.3 C.7.6.3.1.5 and C.7.6.3.1.6): the first table entry maps the "first mapped" index
value; values below it take the first entry and values above the last mapped value take the
last entry. The three tables are given here as one ``(entries, 3)`` array with columns R, G, B.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ...errors import ParameterError
from ..._threads import parallel_threads
from .unpack import check_array, check_disjoint, check_integer

__all__ = [
    "INDEX_DTYPES",
    "LUT_DTYPES",
    "PaletteArgs",
    "check_palette_lookup",
    "palette_lookup",
]

#: dtypes accepted for the indices (signed ones for data whose Pixel Representation is 1).
INDEX_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "int32"))
#: dtypes accepted for the table and the output (Palette Color LUT Data is 8 or 16 bits).
LUT_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16"))

# Every index fits in int32, so a first mapped value beyond +-2**33 maps every index to the
# same end of the table as the clamped value does; clamping keeps native arithmetic in int64.
_FIRST_MAPPED_LIMIT = 1 << 33


class PaletteArgs(NamedTuple):
    """The arguments of ``palette_lookup`` after :func:`check_palette_lookup`."""

    indices: np.ndarray
    lut: np.ndarray
    first_mapped: int
    out: np.ndarray
    threads: int


def check_palette_lookup(indices: Any, lut: Any, first_mapped: Any, out: Any) -> PaletteArgs:
    """Validate the arguments of ``palette_lookup``.

    Raises
    ------
    ParameterError
        If `indices` is not a 1-D C-contiguous array of an :data:`INDEX_DTYPES` dtype, `lut`
        not a C-contiguous ``(entries, 3)`` uint8/uint16 array with at least one entry,
        `first_mapped` not an integer, or `out` not a writeable C-contiguous
        ``(indices.size, 3)`` array of the table's dtype that overlaps neither input.
    """
    kernel = "palette_lookup"
    indices = check_array(indices, "indices", kernel, ndim=1, dtypes=INDEX_DTYPES)
    lut = check_array(lut, "lut", kernel, ndim=2, dtypes=LUT_DTYPES)
    if lut.shape[0] < 1 or lut.shape[1] != 3:
        raise ParameterError(f"{kernel}: lut must have shape (entries >= 1, 3), got {lut.shape}")
    first = check_integer(first_mapped, "first_mapped", kernel)
    out = check_array(out, "out", kernel, ndim=2, dtypes=(lut.dtype,), writeable=True)
    if out.shape != (indices.size, 3):
        raise ParameterError(
            f"{kernel}: out must have shape {(indices.size, 3)} (one RGB row per index), "
            f"got {out.shape}"
        )
    check_disjoint(out, {"indices": indices, "lut": lut}, kernel)
    return PaletteArgs(
        indices=indices,
        lut=lut,
        first_mapped=max(-_FIRST_MAPPED_LIMIT, min(first, _FIRST_MAPPED_LIMIT)),
        out=out,
        threads=parallel_threads(indices.nbytes + out.nbytes),
    )


def palette_lookup(
    indices: np.ndarray, lut: np.ndarray, first_mapped: int, out: np.ndarray
) -> None:
    """Map indices to RGB: ``out[i] = lut[clip(indices[i] - first_mapped, 0, entries - 1)]``.

    Parameters
    ----------
    indices : ndarray, 1-D, C-contiguous, uint8/uint16/int16/int32
        Stored pixel values.
    lut : ndarray, (entries, 3), C-contiguous, uint8/uint16
        The Red, Green and Blue Palette Color Lookup Table Data as columns.
    first_mapped : int
        The pixel value mapped to ``lut[0]`` (third value of the LUT Descriptor).
    out : ndarray, (indices.size, 3), C-contiguous, same dtype as `lut`
        Receives one RGB row per index.

    Raises
    ------
    ParameterError
        See :func:`check_palette_lookup`.
    """
    args = check_palette_lookup(indices, lut, first_mapped, out)
    # Python-int arithmetic in int64: indices are at most 32 bits, first_mapped is clamped.
    rows = args.indices.astype(np.int64) - args.first_mapped
    out[...] = args.lut[np.clip(rows, 0, args.lut.shape[0] - 1)]
