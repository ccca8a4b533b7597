"""RLE Lossless (DICOM PS3.5 Annex G) decoding: the Numba backend of ``rle_decode``.

The same two-tier algorithm as the Cython backend (csrc/rle.pyx, whose docstring gives the
reasons): frames in parallel; a fast tier that decodes each segment of a clean frame into a
plane, copying every run as one 128-byte block, then interleaves the planes; an exact tier that
decodes run by run into the strided output and defines the status and output of any frame the
fast tier declines. The encoded bytes are untrusted and Numba's bounds checks are off, so every
index is checked by hand; problems become the frame's status (see
:mod:`voxelflow.kernels.rle_status`).
"""

from __future__ import annotations

import numba
import numpy as np

from ..rle_status import RleStatus, check_rle_arguments
from .config import JIT, PARALLEL_JIT, apply_num_threads

__all__ = ["rle_decode"]

# Numba folds module-level ints into the machine code; the IntEnum is the source of truth.
OK = int(RleStatus.OK)
UNUSED_OFFSET_NONZERO = int(RleStatus.UNUSED_OFFSET_NONZERO)
ODD_SEGMENT_LENGTH = int(RleStatus.ODD_SEGMENT_LENGTH)
NONZERO_PADDING = int(RleStatus.NONZERO_PADDING)
SEGMENT_LONG = int(RleStatus.SEGMENT_LONG)
HEADER_TRUNCATED = int(RleStatus.HEADER_TRUNCATED)
BAD_SEGMENT_COUNT = int(RleStatus.BAD_SEGMENT_COUNT)
SEGMENT_COUNT_MISMATCH = int(RleStatus.SEGMENT_COUNT_MISMATCH)
BAD_FIRST_OFFSET = int(RleStatus.BAD_FIRST_OFFSET)
OFFSETS_NOT_INCREASING = int(RleStatus.OFFSETS_NOT_INCREASING)
OFFSET_BEYOND_FRAME = int(RleStatus.OFFSET_BEYOND_FRAME)
SEGMENT_SHORT = int(RleStatus.SEGMENT_SHORT)
RUN_PAST_INPUT_END = int(RleStatus.RUN_PAST_INPUT_END)

HEADER_BYTES = 64  # G.5: the segment count and 15 offsets, little-endian uint32 each
MAX_SEGMENTS = 15
NO_OP = 0x80  # G.3.2: the header byte -128 is a no-op
BLOCK = 128  # G.3.2: the longest run; the fast tier copies every run as one such block
# Row v holds BLOCK bytes of value v: a replicate run is then a copy, like a literal run.
REPEATS = np.repeat(np.arange(256, dtype=np.uint8), BLOCK).reshape(256, BLOCK)


def rle_decode(
    src: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
    rows: int,
    columns: int,
    samples: int,
    bytes_per_sample: int,
) -> np.ndarray:
    """Numba backend of :func:`voxelflow.kernels.reference.rle.rle_decode` (same contract)."""
    apply_num_threads()
    check_rle_arguments(src, offsets, out, rows, columns, samples, bytes_per_sample)
    status = np.empty(out.shape[0], dtype=np.int32)
    # A few chunks of frames per thread: each allocates its planes once and balances load.
    chunks = min(out.shape[0], 4 * numba.get_num_threads())
    _decode_frames(src, offsets, out, rows * columns, samples, bytes_per_sample, chunks, status)
    return status


@numba.njit(**PARALLEL_JIT)
def _decode_frames(src, offsets, out, npixels, samples, bps, chunks, status):  # pragma: no cover
    nframes = out.shape[0]
    for chunk in numba.prange(chunks):
        # the fast tier's planes, one per segment (none for 8-bit grayscale, decoded in place)
        planes = samples * bps if samples * bps > 1 else 0
        scratch = np.empty(planes * (npixels + BLOCK), dtype=np.uint8)
        for f in range(chunk * nframes // chunks, (chunk + 1) * nframes // chunks):
            status[f] = _decode_frame(
                src[offsets[f] : offsets[f + 1]], out[f], npixels, samples, bps, scratch
            )


@numba.njit(**JIT)
def _u32le(frame, i):  # pragma: no cover
    # G.5 header words are little-endian whatever the host
    return (
        np.int64(frame[i])
        | (np.int64(frame[i + 1]) << 8)
        | (np.int64(frame[i + 2]) << 16)
        | (np.int64(frame[i + 3]) << 24)
    )


@numba.njit(**JIT)
def _decode_frame(frame, dst, npixels, samples, bps, scratch):  # pragma: no cover
    """Decode one frame into `dst` (npixels x samples x bps bytes); return its status.

    `scratch` holds a plane of npixels + BLOCK bytes per segment for the fast tier.
    """
    length = frame.shape[0]
    stride = samples * bps
    if length < HEADER_BYTES:
        dst[:] = 0
        return HEADER_TRUNCATED
    nsegments = _u32le(frame, 0)
    if nsegments == 0 or nsegments > MAX_SEGMENTS:
        dst[:] = 0
        return BAD_SEGMENT_COUNT
    if nsegments != stride:
        dst[:] = 0
        return SEGMENT_COUNT_MISMATCH
    starts = np.empty(MAX_SEGMENTS + 1, dtype=np.int64)
    for i in range(nsegments):
        starts[i] = _u32le(frame, 4 + 4 * i)
    starts[nsegments] = length
    if starts[0] != HEADER_BYTES:
        dst[:] = 0
        return BAD_FIRST_OFFSET
    for i in range(1, nsegments):
        if starts[i] <= starts[i - 1]:
            dst[:] = 0
            return OFFSETS_NOT_INCREASING
    if starts[nsegments - 1] >= length:
        dst[:] = 0
        return OFFSET_BEYOND_FRAME
    # From here on every segment [starts[i], starts[i + 1]) lies inside the frame.

    warning = OK
    for i in range(nsegments + 1, MAX_SEGMENTS + 1):
        if _u32le(frame, 4 * i) != 0:
            warning = UNUSED_OFFSET_NONZERO
    for i in range(nsegments):
        if (starts[i + 1] - starts[i]) & 1:
            warning = ODD_SEGMENT_LENGTH

    if _decode_clean(frame, starts, nsegments, dst, npixels, samples, bps, scratch):
        return warning

    for segment in range(nsegments):
        # G.2: sample by sample, most significant byte first; each sample is stored
        # little-endian, so segment byte k lands at byte bps - 1 - k of the sample.
        lane = (segment // bps) * bps + (bps - 1 - segment % bps)
        seg = frame[starts[segment] : starts[segment + 1]]
        if stride == 1:
            code, written = _decode_segment(seg, dst)
        else:
            code, written = _decode_segment(seg, dst[lane::stride])
        if code < 0:
            # Keep what was decoded; zero the rest of this lane and every lane not yet decoded.
            dst[lane::stride][written:] = 0
            for later in range(segment + 1, nsegments):
                lane = (later // bps) * bps + (bps - 1 - later % bps)
                dst[lane::stride] = 0
            return code
        warning = max(warning, code)
    return warning


@numba.njit(**JIT)
def _decode_segment(seg, lane):  # pragma: no cover
    """Decode one PackBits segment (G.3.2) into `lane`, one output byte per element.

    `lane` is the segment's byte lane of the frame (a strided view, or the frame itself when
    the stride is 1). Returns (status, bytes decoded). Runs are written whole or not at all,
    except that a run crossing the end of the output is clipped there.
    """
    length = seg.shape[0]
    size = lane.shape[0]
    pos = 0
    w = 0
    warning = OK
    while w < size:
        if pos >= length:
            return SEGMENT_SHORT, w
        n = seg[pos]
        pos += 1
        if n < 128:  # literal run of n + 1 bytes
            count = np.int64(n) + 1
            if count > length - pos:
                return RUN_PAST_INPUT_END, w
            take = count
            if take > size - w:
                take = size - w
                warning = SEGMENT_LONG
            lane[w : w + take] = seg[pos : pos + take]
            pos += count
            w += take
        elif n > NO_OP:  # replicate run: the next byte 257 - n times
            if pos >= length:
                return RUN_PAST_INPUT_END, w
            take = 257 - np.int64(n)
            if take > size - w:
                take = size - w
                warning = SEGMENT_LONG
            lane[w : w + take] = seg[pos]
            pos += 1
            w += take
    return _trailing_status(seg, pos, warning), w


@numba.njit(**JIT)
def _trailing_status(seg, pos, warning):  # pragma: no cover
    """The segment's warning once its output is complete, given the bytes left after `pos`.

    G.5 allows exactly one zero pad byte; no-op bytes (-128) decode to nothing and are skipped.
    """
    length = seg.shape[0]
    while pos < length and seg[pos] == NO_OP:
        pos += 1
    if length - pos >= 2:
        return SEGMENT_LONG
    if length - pos == 1 and seg[pos] != 0 and warning < NONZERO_PADDING:
        return NONZERO_PADDING
    return warning


@numba.njit(**JIT)
def _decode_clean(
    frame, starts, nsegments, dst, npixels, samples, bps, scratch
):  # pragma: no cover
    """The fast tier: decode a clean frame; False (output undefined) for anything unusual.

    `scratch` holds one plane of npixels + BLOCK bytes per segment.
    """
    stride = samples * bps
    if stride == 1:
        return _decode_plane(frame[starts[0] : starts[1]], dst, npixels)
    pitch = npixels + BLOCK
    for segment in range(nsegments):
        lane = (segment // bps) * bps + (bps - 1 - segment % bps)  # as in _decode_frame
        plane = scratch[lane * pitch : (lane + 1) * pitch]
        if not _decode_plane(frame[starts[segment] : starts[segment + 1]], plane, npixels):
            return False
    # Constant strides let LLVM unroll and vectorise the interleaving.
    if stride == 2:
        _interleave(scratch, pitch, dst, npixels, 2)  # 16-bit grayscale
    elif stride == 3:
        _interleave(scratch, pitch, dst, npixels, 3)  # 8-bit colour
    elif stride == 4:
        _interleave(scratch, pitch, dst, npixels, 4)
    elif stride == 6:
        _interleave(scratch, pitch, dst, npixels, 6)  # 16-bit colour
    else:
        _interleave(scratch, pitch, dst, npixels, stride)
    return True


@numba.njit(**JIT)
def _interleave(planes, pitch, dst, size, stride):  # pragma: no cover
    """Byte k of pixel i is byte i of plane k (planes `pitch` bytes apart)."""
    pitch = np.uint64(pitch)
    step = np.uint64(stride)
    for i in range(np.uint64(size)):
        for k in range(step):
            dst[i * step + k] = planes[k * pitch + i]


@numba.njit(**JIT)
def _decode_plane(seg, plane, size):  # pragma: no cover
    """Decode a clean segment into the first `size` bytes of `plane`; False if not clean.

    While a whole block fits in the input and in `plane`, each run is copied as one BLOCK-byte
    block (its tail is overwritten by the next runs or lies in the slack past `size`); the rest
    of the segment, and a run that would cross `size`, go to the exact loop. Clean means what the exact tier reports as OK: every run
    whole and inside the output, and nothing but G.5 padding after it. Indices are uint64:
    Numba skips its negative-index fix-up for unsigned indices, which doubles the speed here.
    """
    one = np.uint64(1)
    block = np.uint64(BLOCK)
    length = np.uint64(seg.shape[0])
    room = np.uint64(plane.shape[0])
    size = np.uint64(size)
    pos = np.uint64(0)
    w = np.uint64(0)
    while pos + block + one <= length and w + block <= room and w < size:
        n = seg[pos]
        if n < 128:
            count = np.uint64(n) + one
            if count > size - w:
                break
            start = pos + one
            for k in range(BLOCK):
                plane[w + np.uint64(k)] = seg[start + np.uint64(k)]
            pos += count + one
        elif n > NO_OP:
            count = np.uint64(257) - np.uint64(n)
            if count > size - w:
                break
            row = REPEATS[seg[pos + one]]
            for k in range(BLOCK):
                plane[w + np.uint64(k)] = row[k]
            pos += np.uint64(2)
        else:
            pos += one
            continue
        w += count
    while w < size:
        if pos >= length:
            return False
        n = seg[pos]
        pos += one
        if n < 128:
            count = np.uint64(n) + one
            if count > length - pos or count > size - w:
                return False
            for k in range(count):
                plane[w + k] = seg[pos + k]
            pos += count
            w += count
        elif n > NO_OP:
            count = np.uint64(257) - np.uint64(n)
            if pos >= length or count > size - w:
                return False
            value = seg[pos]
            for k in range(count):
                plane[w + k] = value
            pos += one
            w += count
    return _trailing_status(seg, np.int64(pos), OK) == OK
