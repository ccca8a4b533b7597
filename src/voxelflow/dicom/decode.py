"""``voxelflow.decode``: DICOM Pixel Data to stored values, with pydicom's array conventions.

Uncompressed data and RLE Lossless go through voxelflow's own kernels (Cython by default);
the JPEG family goes through pydicom's pixel backends and their plugins. Everything about the
input is checked before the output is allocated (see :mod:`.pixel_info`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.uid import RLELossless

from .. import kernels
from ..errors import DecodeError, DecodeWarning, ParameterError
from ..kernels import rle_status
from .codecs import check_codestream, decode_with_plugin, start_markers
from .encapsulation import frame_fragments, parse_items
from .palette import palette_lut
from .pixel_info import PixelInfo, limits, pixel_info
from .source import PixelSource, open_source

__all__ = ["decode"]


def decode(
    src: Any,
    *,
    frames: int | Sequence[int] | None = None,
    out: np.ndarray | None = None,
    apply_palette: bool = False,
    backend: str | None = None,
) -> np.ndarray:
    """Decode the pixel data of a DICOM file or dataset to its stored values.

    Parameters
    ----------
    src : str, os.PathLike or pydicom.Dataset
        The DICOM file, or a dataset that holds its pixel data.
    frames : int or sequence of int, optional
        Frames to decode (0-based). An int returns that frame without a frame axis.
        Default: all frames.
    out : numpy.ndarray, optional
        A preallocated, writable, C-contiguous array of the exact result shape and dtype
        (e.g. one slice of a volume); returned filled.
    apply_palette : bool
        For PALETTE COLOR images, return RGB through the palette (PS3.3 C.7.6.3.1.5)
        instead of the stored indices.
    backend : str, optional
        Kernel backend ("cython", "numba", "reference"); default from ``VOXELFLOW_BACKEND``.

    Returns
    -------
    numpy.ndarray
        Shape ``(frames, rows, columns, samples)`` with the frame axis dropped for a single
        frame and the sample axis dropped for one sample, as ``pydicom.pixels.pixel_array``.
        dtype from Bits Allocated and Pixel Representation (1-bit data as uint8, float pixel
        data as float32/float64). Bits above High Bit are masked and signed values
        sign-extended. YBR_FULL and YBR_FULL_422 come out as RGB; MONOCHROME1 is not inverted.

    Raises
    ------
    DecodeError
        Naming the file, frame and inconsistency, before any large allocation.
    MissingPluginError
        When the transfer syntax needs a codec plugin that is not installed.
    ParameterError
        For a bad `frames` or `out`.
    """
    with open_source(src) as source:
        info = pixel_info(source.ds, source.name, source.transfer_syntax)
        indices, squeeze = _frame_indices(frames, info.number_of_frames)
        lut = palette_lut(source.ds, info) if apply_palette and info.photometric == "PALETTE COLOR" else None

        stored_shape = info.output_shape(len(indices), squeeze)
        final_shape = (*stored_shape, 3) if lut is not None else stored_shape
        final_dtype = lut.lut.dtype if lut is not None else info.dtype
        nbytes = int(np.prod(final_shape, dtype=object)) * final_dtype.itemsize
        if nbytes > limits.max_output_bytes:
            raise DecodeError(
                f"decoded size {nbytes} bytes exceeds the limit of {limits.max_output_bytes} "
                "(voxelflow.dicom.limits.max_output_bytes): (0028,0010) Rows "
                f"{info.rows} x (0028,0011) Columns {info.columns} x {info.samples} sample(s) x "
                f"{len(indices)} frame(s) x {final_dtype.itemsize} byte(s)",
                source=source.name,
            )
        # everything the input can be checked for is checked before the output exists
        if info.is_native:
            _check_native_undefined(source)
            _check_native_length(source, info)
            prepared = None
        else:
            _check_encapsulated(source)
            prepared = _prepare_encapsulated(source, info, indices)

        if lut is None:
            result = _output(out, final_shape, final_dtype)
            _decode_stored(source, info, indices, result.reshape(len(indices), -1), backend, prepared)
            return result
        stored = np.empty(stored_shape, info.dtype)
        _decode_stored(source, info, indices, stored.reshape(len(indices), -1), backend, prepared)
        result = _output(out, final_shape, final_dtype)
        lut.apply(stored, result, source.name, backend)
        return result


def _frame_indices(frames: int | Sequence[int] | None, nframes: int) -> tuple[list[int], bool]:
    if frames is None:
        return list(range(nframes)), nframes == 1
    if isinstance(frames, (int, np.integer)) and not isinstance(frames, bool):
        indices, squeeze = [int(frames)], True
    else:
        try:
            indices = [int(f) for f in frames]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ParameterError(f"frames must be an int or a sequence of ints, got {frames!r}") from None
        squeeze = False
        if not indices:
            raise ParameterError("frames is empty")
    bad = [f for f in indices if not 0 <= f < nframes]
    if bad:
        raise ParameterError(f"frames {bad} out of range: the dataset has {nframes} frame(s)")
    return indices, squeeze


def _output(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise ParameterError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ParameterError(f"out has shape {out.shape} and dtype {out.dtype}; decoding needs {shape} {dtype}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ParameterError("out must be C-contiguous and writable")
    return out


def _check_native_length(source: PixelSource, info: PixelInfo) -> None:
    needed_bits = info.native_frame_bits * info.number_of_frames
    needed = (needed_bits + 7) // 8
    if info.is_ybr422_native and source.length >= needed * 3 // 2:
        # malformed-inputs.md: full-size 3-sample data labelled YBR_FULL_422 would decode
        # to plausible-looking garbage; the label, not the data, is wrong
        raise DecodeError(
            f"{info.keyword} holds {source.length} bytes, the size of unsubsampled data; "
            f"YBR_FULL_422 needs {needed} (is the Photometric Interpretation YBR_FULL?)",
            source=source.name,
        )
    if source.length < needed:
        raise DecodeError(
            f"{info.keyword} holds {source.length} bytes; Rows {info.rows} x Columns "
            f"{info.columns} x Samples {info.samples} x Frames {info.number_of_frames} x "
            f"{info.bits_allocated} bits needs {needed}",
            source=source.name,
        )
    # one pad byte makes an odd length even (PS3.5 7.1.1); anything more is not pixel data
    if source.length > needed + (needed % 2):
        warnings.warn(
            f"{source.name}: {info.keyword} has {source.length - needed} bytes beyond the "
            f"{needed} the frames need; ignoring them",
            DecodeWarning,
            stacklevel=4,
        )


def _check_native_undefined(source: PixelSource) -> None:
    if source.undefined_length:
        # PS3.5 A.4: only encapsulated syntaxes may leave Pixel Data's length undefined; here
        # the value is items (or garbage), and returning its bytes would show item headers as
        # pixels
        raise DecodeError(
            f"(7FE0,0010) Pixel Data has an undefined length under the uncompressed transfer "
            f"syntax {source.transfer_syntax.name}; only encapsulated (compressed) Pixel Data may",
            source=source.name,
        )


def _check_encapsulated(source: PixelSource) -> None:
    if not source.undefined_length:
        raise DecodeError(
            f"transfer syntax {source.transfer_syntax.name} needs encapsulated Pixel Data "
            "(undefined length), found a defined length",
            source=source.name,
        )


_Prepared = tuple[bytes | memoryview, list[list[tuple[int, int]]]]


def _prepare_encapsulated(source: PixelSource, info: PixelInfo, indices: list[int]) -> _Prepared:
    """Frame the encapsulated value and check each requested frame against the header.

    Runs before the output is allocated: an RLE fragment that cannot expand to its frame, or
    a JPEG codestream whose size, samples or precision disagree with the data set (or that
    lacks its end marker), is refused without allocating the frame the header announces.

    Returns
    -------
    (buffer, fragments of every frame as (start, length))
    """
    buf = source.read()
    enc = parse_items(buf, source.name, delimited=source.from_file)
    extended = _extended_offsets(source.ds, source.name)
    groups = frame_fragments(
        enc,
        info.number_of_frames,
        buf,
        source.name,
        extended=extended,
        one_fragment_per_frame=info.transfer_syntax == RLELossless,
        start_markers=start_markers(info.transfer_syntax),
    )
    for f in indices:
        if info.transfer_syntax == RLELossless:
            _, length = groups[f][0]
            # Annex G replicate runs turn 2 bytes into at most 128: a frame that cannot reach
            # its decoded size is refused before anything is allocated or decoded
            if length * 64 + 64 < info.frame_nbytes:
                raise DecodeError(
                    f"RLE frame of {length} bytes cannot decode to the {info.frame_nbytes} bytes "
                    "Rows x Columns x Samples x Bits Allocated needs",
                    source=source.name,
                    frame=f,
                )
        else:
            check_codestream(info, groups[f], buf, source.name, f)
    return buf, groups


def _decode_stored(
    source: PixelSource,
    info: PixelInfo,
    indices: list[int],
    out: np.ndarray,
    backend: str | None,
    prepared: _Prepared | None,
) -> None:
    """Decode the frames `indices` into `out`, shaped (len(indices), values per frame);
    `prepared` is what :func:`_prepare_encapsulated` found (None for native data)."""
    if prepared is None:
        _decode_native(source, info, indices, out, backend)
        return
    buf, groups = prepared
    if info.transfer_syntax == RLELossless:
        _decode_rle(source, info, indices, [groups[i] for i in indices], buf, out, backend)
    else:
        decode_with_plugin(source, info, indices, [groups[i] for i in indices], buf, out)


def _extended_offsets(ds: Any, name: str) -> tuple[bytes, bytes | None] | None:
    """The raw values of (7FE0,0001) and (7FE0,0002), or None without (7FE0,0001)."""
    try:
        # a pydicom Dataset or the fast header reader's values: both answer `in` and `get`
        table = ds.get("ExtendedOffsetTable") if "ExtendedOffsetTable" in ds else None
        if not table:
            return None  # absent, or present without a value (Type 1C): no table
        lengths = ds.get("ExtendedOffsetTableLengths")
        return bytes(table), None if lengths is None else bytes(lengths)
    except Exception as exc:  # pydicom converts lazily and raises anything on a damaged element
        raise DecodeError(f"(7FE0,0001) Extended Offset Table is unreadable: {exc}", source=name) from exc


def _runs(indices: list[int]) -> list[tuple[int, int, int]]:
    """Consecutive frame runs as (position in output, first frame, count): one read each."""
    runs: list[tuple[int, int, int]] = []
    for pos, f in enumerate(indices):
        if runs and runs[-1][1] + runs[-1][2] == f and runs[-1][0] + runs[-1][2] == pos:
            p, first, n = runs[-1]
            runs[-1] = (p, first, n + 1)
        else:
            runs.append((pos, f, 1))
    return runs


def _needs_fix(info: PixelInfo, byteswap: bool) -> bool:
    return byteswap or (info.bits_stored < info.bits_allocated and info.keyword == "PixelData")


def _decode_native(
    source: PixelSource, info: PixelInfo, indices: list[int], out: np.ndarray, backend: str | None
) -> None:
    if info.bits_allocated == 1:
        unpack_bits = kernels.get("unpack_bits", backend)
        ppf = info.pixels_per_frame
        for pos, f in enumerate(indices):
            first_bit = f * ppf
            start = first_bit // 8
            raw = np.frombuffer(source.read(start, (first_bit % 8 + ppf + 7) // 8), np.uint8)
            unpack_bits(raw, out[pos], first_bit % 8)
        return

    big = not info.transfer_syntax.is_little_endian
    itemsize = info.dtype.itemsize
    # PS3.5 8.1.1 / 8.2: 8-bit data in an OW element of a big endian file is byte-swapped
    # in pairs; pydicom undoes that, and so do we.
    swap_pairs = big and itemsize == 1 and source.vr == "OW"
    byteswap = big and itemsize > 1
    simple = info.planar_configuration == 0 and not info.is_ybr422_native and not swap_pairs
    unpack_words = kernels.get("unpack_words", backend)
    frame_bytes = info.native_frame_bits // 8

    if simple:
        for pos, first, n in _runs(indices):
            block = out[pos : pos + n].reshape(-1)
            raw = block.view(np.uint8)
            # read straight into the output; fixing bits in place is one more pass in cache
            source.read_into(raw, first * frame_bytes)
            if _needs_fix(info, byteswap):
                unpack_words(raw, block, info.bits_stored, byteswap)
        _to_rgb(info, out)
        return

    whole = None
    if swap_pairs:
        whole = np.frombuffer(source.read(), np.uint8)
        whole = np.pad(whole, (0, whole.size % 2)).view(">u2").byteswap().view(np.uint8)
    for pos, f in enumerate(indices):
        if whole is not None:
            raw = whole[f * frame_bytes : (f + 1) * frame_bytes]
        else:
            raw = np.frombuffer(source.read(f * frame_bytes, frame_bytes), np.uint8)
        if info.is_ybr422_native:
            from pydicom.pixels.utils import expand_ybr422

            raw = np.frombuffer(expand_ybr422(raw.tobytes(), 8), np.uint8)
        values = np.empty(raw.size // itemsize, info.dtype)
        unpack_words(np.ascontiguousarray(raw), values, info.bits_stored, byteswap)
        if info.planar_configuration == 1:
            values = values.reshape(info.samples, -1).T
        out[pos] = values.reshape(-1)
    _to_rgb(info, out)


def _to_rgb(info: PixelInfo, out: np.ndarray) -> None:
    """YBR_FULL(_422) to RGB, as pydicom's default ``as_rgb`` does (PS3.3 C.7.6.3.1.2)."""
    if info.photometric not in ("YBR_FULL", "YBR_FULL_422") or not (info.is_native or info.transfer_syntax == RLELossless):
        return
    from pydicom.pixels.processing import convert_color_space

    frames = out.reshape(out.shape[0], info.rows, info.columns, 3)
    for f in range(frames.shape[0]):
        frames[f] = convert_color_space(frames[f], "YBR_FULL", "RGB")


def _decode_rle(
    source: PixelSource,
    info: PixelInfo,
    indices: list[int],
    groups: list[list[tuple[int, int]]],
    buf: bytes | memoryview,
    out: np.ndarray,
    backend: str | None,
) -> None:
    if info.bits_allocated not in (8, 16, 32) or info.keyword != "PixelData":
        raise DecodeError(f"RLE Lossless needs Bits Allocated 8, 16 or 32, got {info.bits_allocated}", source=source.name)
    data = np.frombuffer(buf, np.uint8)
    offsets = np.zeros(len(groups) + 1, np.int64)
    for i, group in enumerate(groups):
        _, length = group[0]  # sizes were checked by _prepare_encapsulated
        offsets[i + 1] = offsets[i] + length
    src = np.empty(int(offsets[-1]), np.uint8)
    for i, group in enumerate(groups):
        start, length = group[0]
        src[offsets[i] : offsets[i + 1]] = data[start : start + length]

    raw = out.view(np.uint8)
    status = kernels.get("rle_decode", backend)(
        src, offsets, raw, info.rows, info.columns, info.samples, info.bits_allocated // 8
    )
    for i, code in enumerate(status):
        if rle_status.is_error(int(code)):
            raise DecodeError(rle_status.describe(int(code)), source=source.name, frame=indices[i])
        if code:
            warnings.warn(
                f"{source.name}, frame {indices[i]}: {rle_status.describe(int(code))}",
                DecodeWarning,
                stacklevel=4,
            )
    if info.bits_stored < info.bits_allocated:
        flat = out.reshape(-1)
        kernels.get("unpack_words", backend)(flat.view(np.uint8), flat, info.bits_stored, False)
    _to_rgb(info, out)
