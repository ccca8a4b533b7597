"""RLE Lossless (DICOM PS3.5 Annex G): the reference decoder and a simple encoder.

``rle_decode`` is the oracle the Cython and Numba backends are tested against: it decodes one run
at a time in plain Python and states every rule of the kernel contract in the open (the status
codes and their precedence are documented in :mod:`voxelflow.kernels.rle_status`).

Annex G in brief: a frame is a 64-byte header (16 little-endian uint32: the segment count, then
15 segment offsets from the start of the frame, unused ones zero) followed by the segments. Each
segment is one byte of one sample of every pixel, rows x columns bytes once decoded, PackBits
compressed: a header byte n in 0..127 copies the next n + 1 bytes (literal run), n in -127..-1
repeats the next byte 1 - n times (replicate run), -128 does nothing. Segments come sample by
sample, and within a sample most significant byte first (G.2).
"""

from __future__ import annotations

import itertools

import numpy as np

from ...errors import ParameterError
from ..rle_status import RleStatus, check_rle_arguments

__all__ = ["rle_decode", "rle_encode_frame"]

HEADER_BYTES = 64
MAX_SEGMENTS = 15


def rle_decode(
    src: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
    rows: int,
    columns: int,
    samples: int,
    bytes_per_sample: int,
) -> np.ndarray:
    """Decode RLE Lossless frames into pixel-interleaved little-endian samples.

    Parameters
    ----------
    src : numpy.ndarray
        1-D C-contiguous uint8: the encoded frames, concatenated.
    offsets : numpy.ndarray
        1-D int64 of ``nframes + 1`` entries: frame ``f`` is ``src[offsets[f]:offsets[f + 1]]``.
    out : numpy.ndarray
        2-D C-contiguous uint8 of shape ``(nframes, rows * columns * samples * bytes_per_sample)``,
        written in full: each frame as ``(rows, columns, samples)`` samples of
        `bytes_per_sample` little-endian bytes.
    rows, columns, samples : int
        The frame's size in pixels and samples per pixel.
    bytes_per_sample : int
        1, 2 or 4 (Bits Allocated 8, 16 or 32).

    Returns
    -------
    numpy.ndarray
        int32 of ``nframes`` statuses, see :class:`~voxelflow.kernels.rle_status.RleStatus`.
        On an error the frame keeps what was decoded before it and every other byte is zero.

    Raises
    ------
    ParameterError
        If the arguments disagree with each other (sizes, offsets outside `src`): a caller bug,
        never a property of the encoded bytes.
    """
    check_rle_arguments(src, offsets, out, rows, columns, samples, bytes_per_sample)
    nframes = out.shape[0]
    status = np.zeros(nframes, dtype=np.int32)
    data = bytes(src)
    for f in range(nframes):
        frame = data[int(offsets[f]) : int(offsets[f + 1])]
        lanes = out[f].reshape(rows * columns, samples * bytes_per_sample)
        status[f] = _decode_frame(frame, lanes, rows * columns, samples, bytes_per_sample)
    return status


def _decode_frame(
    frame: bytes, lanes: np.ndarray, npixels: int, samples: int, bytes_per_sample: int
) -> int:
    """Decode one frame into `lanes` (npixels, samples * bytes_per_sample); return its status."""
    lanes[...] = 0
    if len(frame) < HEADER_BYTES:
        return RleStatus.HEADER_TRUNCATED
    header = np.frombuffer(frame[:HEADER_BYTES], dtype="<u4").astype(np.int64)
    nsegments = int(header[0])
    if nsegments == 0 or nsegments > MAX_SEGMENTS:
        return RleStatus.BAD_SEGMENT_COUNT
    if nsegments != samples * bytes_per_sample:
        return RleStatus.SEGMENT_COUNT_MISMATCH
    starts = [int(x) for x in header[1 : 1 + nsegments]]
    if starts[0] != HEADER_BYTES:
        return RleStatus.BAD_FIRST_OFFSET
    if any(b <= a for a, b in itertools.pairwise(starts)):
        return RleStatus.OFFSETS_NOT_INCREASING
    if starts[-1] >= len(frame):
        return RleStatus.OFFSET_BEYOND_FRAME

    warning = 0
    if any(header[1 + nsegments :]):
        warning = RleStatus.UNUSED_OFFSET_NONZERO
    ends = starts[1:] + [len(frame)]
    for segment, (start, end) in enumerate(zip(starts, ends)):
        if (end - start) % 2:
            warning = max(warning, RleStatus.ODD_SEGMENT_LENGTH)
        decoded, code = _decode_segment(frame[start:end], npixels)
        # Segment order (G.2): sample by sample, most significant byte first; the output holds
        # each sample little-endian, so the segment's byte goes to the mirrored position.
        sample, byte = divmod(segment, bytes_per_sample)
        lane = sample * bytes_per_sample + (bytes_per_sample - 1 - byte)
        lanes[: len(decoded), lane] = np.frombuffer(decoded, dtype=np.uint8)
        if code < 0:
            return code
        warning = max(warning, code)
    return warning


def _decode_segment(segment: bytes, size: int) -> tuple[bytes, int]:
    """Decode one PackBits segment (G.3.2) up to `size` bytes: (decoded bytes, status).

    Runs are written whole or not at all, except that a run crossing `size` is clipped there.
    On an error the bytes decoded so far are returned with the error code.
    """
    out = bytearray()
    pos = 0
    warning = 0
    while len(out) < size:
        if pos >= len(segment):
            return bytes(out), RleStatus.SEGMENT_SHORT
        n = segment[pos]
        pos += 1
        if n < 128:  # literal run of n + 1 bytes
            count = n + 1
            if pos + count > len(segment):
                return bytes(out), RleStatus.RUN_PAST_INPUT_END
            run = segment[pos : pos + count]
            pos += count
        elif n > 128:  # replicate run: the next byte 257 - n times (n is -(count - 1) as int8)
            if pos >= len(segment):
                return bytes(out), RleStatus.RUN_PAST_INPUT_END
            run = segment[pos : pos + 1] * (257 - n)
            pos += 1
        else:  # -128: no operation (G.3.2)
            continue
        if len(out) + len(run) > size:
            warning = RleStatus.SEGMENT_LONG
            run = run[: size - len(out)]
        out += run
    # The output is complete; what follows should be nothing, or the zero pad byte that makes
    # the segment's length even (G.5). No-op bytes decode to nothing and are skipped.
    rest = segment[pos:].lstrip(b"\x80")
    if len(rest) >= 2:
        warning = RleStatus.SEGMENT_LONG
    elif len(rest) == 1 and rest[0] != 0:
        warning = max(warning, RleStatus.NONZERO_PADDING)
    return bytes(out), warning


def rle_encode_frame(arr: np.ndarray) -> bytes:
    """Encode one frame as RLE Lossless (PS3.5 Annex G): the 64-byte header, then segments.

    Each segment is PackBits compressed (replicate runs for 3 or more equal bytes, literal runs
    otherwise) and padded with a zero byte to an even length (G.5).

    Parameters
    ----------
    arr : numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, samples)`` of an 8, 16 or 32-bit integer dtype
        (signed values are encoded as their two's complement bit pattern).

    Returns
    -------
    bytes
        The encoded frame, as one item of encapsulated Pixel Data carries it.

    Raises
    ------
    ParameterError
        If `arr` has another dimension count or dtype, or needs more than 15 segments.
    """
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ParameterError(
            f"rle_encode_frame: arr must be (rows, columns[, samples]), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "ui" or arr.dtype.itemsize not in (1, 2, 4):
        raise ParameterError(
            f"rle_encode_frame: arr must hold 8, 16 or 32-bit integers, got {arr.dtype}"
        )
    bps = arr.dtype.itemsize
    rows, columns = arr.shape[:2]
    samples = arr.shape[2] if arr.ndim == 3 else 1
    if samples * bps > MAX_SEGMENTS:
        raise ParameterError(
            f"rle_encode_frame: {samples} samples x {bps} bytes needs {samples * bps} segments; "
            f"Annex G allows at most {MAX_SEGMENTS}"
        )
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    lanes = little.view(np.uint8).reshape(rows * columns, samples, bps)
    segments = []
    for sample in range(samples):
        for byte in reversed(range(bps)):  # most significant byte first (G.2)
            segments.append(_encode_segment(np.ascontiguousarray(lanes[:, sample, byte])))
    header = np.zeros(16, dtype="<u4")
    header[0] = len(segments)
    header[1 : 1 + len(segments)] = HEADER_BYTES + np.cumsum([0] + [len(s) for s in segments[:-1]])
    return header.tobytes() + b"".join(segments)


def _encode_segment(plane: np.ndarray) -> bytes:
    """PackBits-compress one byte plane (G.3.1) and pad it to an even length (G.5)."""
    out = bytearray()
    n = plane.size
    if n == 0:
        return bytes(out)
    starts = np.concatenate(([0], np.flatnonzero(plane[1:] != plane[:-1]) + 1))
    lengths = np.diff(np.append(starts, n))
    literal_from = 0
    for start, length in zip(starts[lengths >= 3].tolist(), lengths[lengths >= 3].tolist()):
        _encode_literal(out, plane[literal_from:start])
        value = int(plane[start])
        left = length
        while left >= 2:
            count = min(left, 128)
            out += bytes((257 - count, value))  # -(count - 1) as a two's complement byte
            left -= count
        literal_from = start + length - left  # a single leftover byte joins the next literal
    _encode_literal(out, plane[literal_from:])
    if len(out) % 2:
        out.append(0)
    return bytes(out)


def _encode_literal(out: bytearray, values: np.ndarray) -> None:
    """Append `values` as literal runs of at most 128 bytes (G.3.1)."""
    for i in range(0, values.size, 128):
        chunk = values[i : i + 128]
        out.append(chunk.size - 1)
        out += chunk.tobytes()
