"""The contract of the RLE Lossless (DICOM PS3.5 Annex G) decode kernel: status codes, arguments.

Every backend of ``rle_decode`` returns one code per frame: ``0`` when the frame decoded
cleanly, a positive code for a warning (the pixels are complete and correct, but the encoded
bytes break a rule of Annex G that a tolerant reader can ignore), a negative code for an error
(the pixels are incomplete: everything decoded before the error is kept and every other byte of
the frame is zero).

A frame is checked in this order, and the first error found is the frame's status:

1. the frame holds the 64-byte RLE header;
2. the segment count is 1..15, and equals samples per pixel x bytes per sample;
3. the first segment offset is 64;
4. the offsets strictly increase, and the last one lies inside the frame;
5. each segment, in header order, decodes to exactly rows x columns bytes: a run must not need
   bytes past the segment's end, and the segment must not end before its output is complete.

Without an error the status is the largest warning code found, so the codes of the warnings are
ordered by how much they say about the data: excess decoded data outranks padding oddities.

The values are part of the kernel contract (the Cython and Numba backends hard-code them);
never renumber a code. :func:`check_rle_arguments` is the argument check every backend runs
before it touches memory.
"""

from __future__ import annotations

import enum
import itertools
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["RleStatus", "check_rle_arguments", "describe", "is_error", "is_warning"]


class RleStatus(enum.IntEnum):
    """The status of one decoded RLE frame: 0 OK, > 0 warning, < 0 error."""

    OK = 0

    # Warnings (the frame's pixels are complete); a larger code wins when several apply.
    #: Header entries after the last used segment offset are not zero (Annex G.5: "shall be
    #: set to zero").
    UNUSED_OFFSET_NONZERO = 1
    #: A segment has an odd length (Annex G.5: segments are padded to an even length).
    ODD_SEGMENT_LENGTH = 2
    #: One byte is left after a segment's output is complete and it is not the zero pad byte
    #: of Annex G.5 (nor the -128 no-op).
    NONZERO_PADDING = 3
    #: A segment decodes to more than rows x columns bytes: a run crossing the end of the
    #: output was clipped, or further runs follow a complete output; the excess is ignored.
    SEGMENT_LONG = 4

    # Errors (the frame's pixels are incomplete; bytes not decoded are zero).
    #: The frame is shorter than the 64-byte RLE header (Annex G.5).
    HEADER_TRUNCATED = -1
    #: The header's segment count is 0 or more than 15 (Annex G.5 allows 1..15).
    BAD_SEGMENT_COUNT = -2
    #: The segment count is not samples per pixel x bytes per sample (Annex G.2).
    SEGMENT_COUNT_MISMATCH = -3
    #: The first segment offset is not 64, the length of the header (Annex G.5).
    BAD_FIRST_OFFSET = -4
    #: The segment offsets do not strictly increase.
    OFFSETS_NOT_INCREASING = -5
    #: A segment offset points at or past the end of the frame.
    OFFSET_BEYOND_FRAME = -6
    #: A segment ends before it has decoded rows x columns bytes.
    SEGMENT_SHORT = -7
    #: A literal run needs bytes past the end of its segment, or a replicate run lacks the
    #: byte it repeats (Annex G.3.2), before the segment's output is complete.
    RUN_PAST_INPUT_END = -8


_MESSAGES = {
    RleStatus.OK: "RLE frame decoded",
    RleStatus.UNUSED_OFFSET_NONZERO: (
        "RLE header has non-zero offsets after its last segment (Annex G.5: shall be zero); ignored"
    ),
    RleStatus.ODD_SEGMENT_LENGTH: (
        "an RLE segment has an odd length (Annex G.5 pads segments to an even length)"
    ),
    RleStatus.NONZERO_PADDING: (
        "an RLE segment ends with a pad byte that is not zero (Annex G.5); ignored"
    ),
    RleStatus.SEGMENT_LONG: (
        "an RLE segment decodes to more than rows x columns bytes; the excess was ignored"
    ),
    RleStatus.HEADER_TRUNCATED: "RLE frame is shorter than its 64-byte header",
    RleStatus.BAD_SEGMENT_COUNT: "RLE header's segment count is 0 or more than 15",
    RleStatus.SEGMENT_COUNT_MISMATCH: (
        "RLE header's segment count is not samples per pixel x bytes per sample"
    ),
    RleStatus.BAD_FIRST_OFFSET: "RLE header's first segment offset is not 64",
    RleStatus.OFFSETS_NOT_INCREASING: "RLE header's segment offsets do not strictly increase",
    RleStatus.OFFSET_BEYOND_FRAME: "an RLE segment offset points at or past the end of the frame",
    RleStatus.SEGMENT_SHORT: "an RLE segment decodes to fewer than rows x columns bytes",
    RleStatus.RUN_PAST_INPUT_END: "an RLE run needs bytes past the end of its segment",
}


def describe(code: int) -> str:
    """A one-line, human-readable message for an ``rle_decode`` status code.

    Parameters
    ----------
    code : int
        A status returned by ``rle_decode`` for one frame.

    Returns
    -------
    str
        The message; an unknown code gets a message that names it rather than an exception.
    """
    try:
        status = RleStatus(int(code))
    except ValueError:
        return f"unknown RLE decode status {int(code)}"
    return f"{_MESSAGES[status]} ({status.name})"


def is_error(code: int) -> bool:
    """Whether `code` is an error: the frame's pixels are incomplete (negative codes)."""
    return int(code) < 0


def is_warning(code: int) -> bool:
    """Whether `code` is a warning: the pixels are complete, the encoding bends Annex G."""
    return int(code) > 0


def check_rle_arguments(
    src: Any,
    offsets: Any,
    out: Any,
    rows: int,
    columns: int,
    samples: int,
    bytes_per_sample: int,
) -> None:
    """Check that ``rle_decode``'s arguments agree, so no kernel reads or writes out of bounds.

    Only the caller's side is checked here (dtypes, shapes, frame bounds inside `src`); the
    encoded bytes themselves are the kernels' business and never make this raise.

    Raises
    ------
    ParameterError
        Naming the argument that is wrong.
    """
    for name, array, dtype, ndim in (
        ("src", src, np.uint8, 1),
        ("offsets", offsets, np.int64, 1),
        ("out", out, np.uint8, 2),
    ):
        if not isinstance(array, np.ndarray):
            raise ParameterError(f"rle_decode: {name} must be a numpy array, got {type(array)}")
        if array.dtype != dtype or array.ndim != ndim or not array.flags.c_contiguous:
            raise ParameterError(
                f"rle_decode: {name} must be a {ndim}-D C-contiguous {np.dtype(dtype)} array, "
                f"got {array.ndim}-D {array.dtype}"
                + ("" if array.flags.c_contiguous else " (not C-contiguous)")
            )
    if not out.flags.writeable:
        raise ParameterError("rle_decode: out is read-only")
    if bytes_per_sample not in (1, 2, 4):
        raise ParameterError(
            f"rle_decode: bytes_per_sample must be 1, 2 or 4, got {bytes_per_sample}"
        )
    if rows < 0 or columns < 0 or samples < 1:
        raise ParameterError(
            f"rle_decode: bad frame size rows={rows}, columns={columns}, samples={samples}"
        )
    frame_bytes = rows * columns * samples * bytes_per_sample
    if out.shape[1] != frame_bytes:
        raise ParameterError(
            f"rle_decode: out has {out.shape[1]} bytes per frame; rows x columns x samples x "
            f"bytes_per_sample is {frame_bytes}"
        )
    if offsets.shape[0] != out.shape[0] + 1:
        raise ParameterError(
            f"rle_decode: offsets needs nframes + 1 = {out.shape[0] + 1} entries, "
            f"got {offsets.shape[0]}"
        )
    # Python ints are quicker than NumPy reductions for the few frames of a typical call.
    bounds = offsets.tolist() if offsets.shape[0] <= 64 else None
    if bounds is not None:
        ordered = all(a <= b for a, b in itertools.pairwise(bounds))
        first, last = bounds[0], bounds[-1]
    else:
        ordered = bool((offsets[1:] >= offsets[:-1]).all())
        first, last = int(offsets[0]), int(offsets[-1])
    if first < 0 or last > src.shape[0] or not ordered:
        raise ParameterError(
            f"rle_decode: offsets must be non-decreasing within src's {src.shape[0]} bytes"
        )
