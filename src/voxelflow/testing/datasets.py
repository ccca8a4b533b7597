"""Encode NumPy arrays as DICOM SOP instances, in any pixel layout and transfer syntax.

:func:`dataset_from_array` is the generic encoder the decode tests use to produce every
combination of Bits Allocated, Bits Stored, signedness, samples, planar configuration,
photometric interpretation, byte order and compression; :func:`set_pixel_data` is the part of
it that fills the Image Pixel module of an existing dataset (``voxelflow.testing.series`` uses it
for CT and MR series). Compressed syntaxes are encoded with pydicom's encoders where pydicom
has one, with Pillow for JPEG Baseline, and with the small lossless JPEG (Process 14, first-order
prediction) encoder below; HTJ2K has no encoder and raises
:class:`~voxelflow.errors.MissingPluginError`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from ..dicom.pixel_info import PHOTOMETRIC_SAMPLES
from ..errors import MissingPluginError, ParameterError

__all__ = [
    "TRANSFER_SYNTAXES",
    "available_transfer_syntaxes",
    "check_transfer_syntax",
    "dataset_from_array",
    "deterministic_uid",
    "resolve_transfer_syntax",
    "save_dataset",
    "set_pixel_data",
]

#: Short names accepted wherever a transfer syntax is asked for (a UID string works too).
TRANSFER_SYNTAXES: Mapping[str, UID] = {
    "explicit_le": ExplicitVRLittleEndian,
    "implicit_le": ImplicitVRLittleEndian,
    "explicit_be": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg_baseline": JPEGBaseline8Bit,
    "jpeg_lossless": JPEGLosslessSV1,
    "jpeg_ls": JPEGLSLossless,
    "jpeg_ls_near": JPEGLSNearLossless,
    "jpeg2000_lossless": JPEG2000Lossless,
    "jpeg2000": JPEG2000,
    "htj2k_lossless": HTJ2KLossless,
    "htj2k": HTJ2K,
}

_NATIVE = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
     DeflatedExplicitVRLittleEndian}
)
#: Lossy syntaxes: the decoded pixels approximate, not equal, the encoded ones.
LOSSY_TRANSFER_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGLSNearLossless, JPEG2000, HTJ2K})
# Syntaxes encoded through pydicom's own encoder registry, with the pip package its plugin needs.
_PYDICOM_ENCODED = {
    RLELossless: "pydicom",
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg-openjpeg",
    JPEG2000: "pylibjpeg-openjpeg",
}
#: JPEG-LS NEAR parameter: the largest error of a decoded ``jpeg_ls_near`` sample.
JPEG_LS_NEAR_ERROR = 2
JPEG_BASELINE_QUALITY = 95
# Encoder options for the lossy syntaxes: near-lossless so tests can bound the error.
_LOSSY_OPTIONS: dict[UID, dict[str, Any]] = {
    JPEGLSNearLossless: {"jls_error": JPEG_LS_NEAR_ERROR},
    JPEG2000: {"j2k_psnr": [70.0]},
}

# the photometric interpretations this writer encodes, with their samples per pixel
_SAMPLES = {
    name: PHOTOMETRIC_SAMPLES[name]
    for name in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422")
}
_UID_NAMESPACE = uuid.UUID("6c0b0a52-8d55-4f0e-9a3c-5f0d1f7e2a11")

_MULTIFRAME_SC = {
    1: UID("1.2.840.10008.5.1.4.1.1.7.1"),  # Multi-frame Single Bit SC
    8: UID("1.2.840.10008.5.1.4.1.1.7.2"),  # Multi-frame Grayscale Byte SC
    16: UID("1.2.840.10008.5.1.4.1.1.7.3"),  # Multi-frame Grayscale Word SC
}
_MULTIFRAME_TRUE_COLOR_SC = UID("1.2.840.10008.5.1.4.1.1.7.4")
_SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
_PARAMETRIC_MAP = UID("1.2.840.10008.5.1.4.1.1.30")


def deterministic_uid(*parts: object) -> UID:
    """Return a UID derived only from `parts` (a ``2.25`` name-based UUID UID).

    The same parts always give the same UID, so generated files are reproducible.
    """
    name = "/".join(str(p) for p in parts)
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}")


def resolve_transfer_syntax(transfer_syntax: str) -> UID:
    """Return the transfer syntax UID for a short name (see ``TRANSFER_SYNTAXES``) or a UID.

    Raises
    ------
    ParameterError
        If `transfer_syntax` is neither a known name nor a transfer syntax UID.
    """
    if transfer_syntax in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[transfer_syntax]
    text = str(transfer_syntax)
    if re.fullmatch(r"[0-9]+(\.[0-9]+)+", text) and UID(text).is_transfer_syntax:
        return UID(text)
    raise ParameterError(
        f"transfer_syntax={transfer_syntax!r} is neither a transfer syntax UID nor one of "
        f"{sorted(TRANSFER_SYNTAXES)}"
    )


def _encoder_problem(uid: UID) -> str | None:
    """Return why `uid` cannot be encoded here (naming the package to install), or None."""
    if uid in _NATIVE or uid in (JPEGBaseline8Bit, JPEGLosslessSV1):
        return None
    if uid in _PYDICOM_ENCODED:
        from pydicom.pixels import get_encoder

        if get_encoder(uid).is_available:
            return None
        return (
            f"encoding {uid.name} needs the {_PYDICOM_ENCODED[uid]!r} package: "
            f"pip install {_PYDICOM_ENCODED[uid]}"
        )
    if uid in (HTJ2KLossless, HTJ2K):
        return (
            f"no HTJ2K encoder is supported here ({uid.name}): pylibjpeg-openjpeg decodes HTJ2K "
            "but cannot encode it; use available_transfer_syntaxes() for what can be written"
        )
    return f"voxelflow.testing has no encoder for {uid.name} ({uid})"


def available_transfer_syntaxes() -> dict[str, UID]:
    """Return the transfer syntaxes that can be written here, by short name.

    Native syntaxes, RLE, JPEG Baseline (Pillow) and JPEG Lossless are always available;
    JPEG-LS needs ``pyjpegls`` and JPEG 2000 ``pylibjpeg-openjpeg``.
    """
    return {name: uid for name, uid in TRANSFER_SYNTAXES.items() if _encoder_problem(uid) is None}


def check_transfer_syntax(transfer_syntax: str) -> UID:
    """Return the UID for `transfer_syntax` after checking that it can be encoded here.

    Raises
    ------
    ParameterError
        If `transfer_syntax` is not a known name or transfer syntax UID.
    MissingPluginError
        If its encoder is not installed; the message names the pip package.
    """
    uid = resolve_transfer_syntax(transfer_syntax)
    problem = _encoder_problem(uid)
    if problem is not None:
        raise MissingPluginError(problem)
    return uid


# -- pixel layout ---------------------------------------------------------------------------


def _frames_view(arr: np.ndarray, samples: int, number_of_frames: int | None) -> np.ndarray:
    """Return `arr` as (frames, rows, columns, samples), validating its shape."""
    base = 2 if samples == 1 else 3
    if arr.ndim not in (base, base + 1) or (samples == 3 and arr.shape[-1] != 3):
        layout = "[frames,] rows, columns" + (", 3" if samples == 3 else "")
        raise ParameterError(f"arr has shape {arr.shape}; expected ({layout}) for this photometric")
    frames = arr[np.newaxis] if arr.ndim == base else arr
    if samples == 1:
        frames = frames[..., np.newaxis]
    if number_of_frames is not None and number_of_frames != frames.shape[0]:
        raise ParameterError(
            f"number_of_frames={number_of_frames} but arr holds {frames.shape[0]} frame(s)"
        )
    if 0 in frames.shape:
        raise ParameterError(f"arr has an empty axis: shape {arr.shape}")
    return frames


def _default_bits_allocated(arr: np.ndarray, float_pixel_data: bool) -> int:
    if arr.dtype == np.bool_:
        return 1
    if float_pixel_data:
        return 64 if arr.dtype == np.float64 else 32
    return arr.dtype.itemsize * 8


def _stored_pattern(values: np.ndarray, bits_allocated: int, bits_stored: int,
                    fill_unused_bits: str, rng: np.random.Generator) -> np.ndarray:
    """Return the unsigned bit patterns to store: `bits_stored` value bits plus the high bits."""
    udtype = np.dtype(f"u{bits_allocated // 8}")
    full = np.uint64((1 << bits_allocated) - 1)
    mask = np.uint64((1 << bits_stored) - 1)
    pattern = values.astype(np.int64).astype(np.uint64) & mask
    if bits_stored < bits_allocated:
        high = full & ~mask
        if fill_unused_bits == "sign":
            negative = (pattern >> np.uint64(bits_stored - 1)) & np.uint64(1)
            pattern |= negative * high
        elif fill_unused_bits == "random":
            noise = rng.integers(0, 1 << bits_allocated, size=pattern.shape, dtype=np.uint64)
            pattern |= noise & high
    return pattern.astype(udtype)


def _native_bytes(frames: np.ndarray, *, photometric: str, bits_allocated: int, bits_stored: int,
                  float_kind: str | None, planar_configuration: int, big_endian: bool,
                  fill_unused_bits: str, rng: np.random.Generator) -> bytes:
    """Return the uncompressed Pixel Data value for `frames` (frames, rows, columns, samples)."""
    order = ">" if big_endian else "<"
    if bits_allocated == 1:
        # PS3.5 8.1.1: 1-bit pixels are packed contiguously across frames, LSB first.
        data = np.packbits(frames.reshape(-1).astype(np.uint8), bitorder="little").tobytes()
    elif float_kind is not None:
        data = frames.astype(f"{order}f{bits_allocated // 8}").tobytes()
    else:
        stored = _stored_pattern(frames, bits_allocated, bits_stored, fill_unused_bits, rng)
        if photometric == "YBR_FULL_422":
            # PS3.3 C.7.6.3.1.2: each horizontal pair is stored as Y1 Y2 Cb Cr.
            f, r, c, _ = stored.shape
            pairs = stored.reshape(f, r, c // 2, 2, 3)
            stored = np.concatenate(
                [pairs[..., 0, 0:1], pairs[..., 1, 0:1], pairs[..., 0, 1:3]], axis=-1
            )
        elif planar_configuration == 1:
            stored = stored.transpose(0, 3, 1, 2)
        data = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder(order)).tobytes()
    # PS3.5 7.1: every value has even length; pad with a single NUL byte.
    return data + b"\x00" * (len(data) % 2)


# -- JPEG encoders not provided by pydicom ---------------------------------------------------


def _jpeg_baseline_frame(frame: np.ndarray) -> bytes:
    """Encode one 8-bit frame (rows, columns, samples) with Pillow, 4:2:2 for colour."""
    from PIL import Image

    image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
    out = BytesIO()
    image.save(out, format="JPEG", quality=JPEG_BASELINE_QUALITY, subsampling=1)
    return out.getvalue()


def _jpeg_marker(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _jpeg_lossless_frame(frame: np.ndarray, precision: int) -> bytes:
    """Encode one frame (rows, columns, samples) as lossless JPEG, ITU T.81 Process 14.

    Selection value 1 (predict from the left neighbour), point transform 0, one Huffman table
    holding the 17 difference categories as fixed 5-bit codes: compression is poor but the
    stream is simple, exact and decodable by any Process 14 decoder.
    """
    rows, cols, samples = frame.shape
    values = frame.astype(np.int64) & ((1 << precision) - 1)
    # H.1.2.1: predictor 1 inside the image; the first row predicts from the left, the first
    # column from above, and the first sample from 2**(P - 1).
    pred = np.empty_like(values)
    pred[:, 1:] = values[:, :-1]
    pred[1:, 0] = values[:-1, 0]
    pred[0, 0] = 1 << (precision - 1)
    # H.1.2.1: differences are taken modulo 2**16 and read as two's complement, and
    # -32768 is coded as +32768 (category 16, no extra bits).
    diff = (values - pred + 32768) % 65536 - 32768
    diff[diff == -32768] = 32768
    diff = diff.reshape(-1)
    magnitude = np.abs(diff)
    ssss = np.zeros(diff.shape, dtype=np.int64)
    nonzero = magnitude > 0
    ssss[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    extra = np.where(diff < 0, diff - 1, diff) & ((1 << ssss) - 1)
    extra[ssss == 16] = 0
    extra_len = np.where(ssss == 16, 0, ssss)
    code_len = 5
    word = (ssss << extra_len) | extra
    length = code_len + extra_len
    ends = np.cumsum(length)
    total = int(ends[-1])
    owner = np.repeat(np.arange(diff.size), length)
    shift = (ends[owner] - 1 - np.arange(total))
    bits = ((word[owner] >> shift) & 1).astype(np.uint8)
    # F.1.2.3: pad the last byte with 1-bits; B.1.1.5: stuff a zero byte after each 0xFF.
    bits = np.concatenate([bits, np.ones((-total) % 8, dtype=np.uint8)])
    entropy = np.packbits(bits)
    stuffed = np.insert(entropy, np.flatnonzero(entropy == 0xFF) + 1, 0).tobytes()

    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([samples])
    sof += b"".join(bytes([c + 1, 0x11, 0]) for c in range(samples))
    counts = [0] * 16
    counts[code_len - 1] = 17
    dht = bytes([0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([samples]) + b"".join(bytes([c + 1, 0x00]) for c in range(samples))
    sos += bytes([1, 0, 0])  # Ss = predictor 1, Se = 0, Ah/Al = 0
    return (
        b"\xff\xd8" + _jpeg_marker(0xC3, sof) + _jpeg_marker(0xC4, dht)
        + _jpeg_marker(0xDA, sos) + stuffed + b"\xff\xd9"
    )


def _encapsulated_frames(frames: np.ndarray, uid: UID, *, photometric: str, bits_allocated: int,
                         bits_stored: int, pixel_representation: int) -> list[bytes]:
    """Return one compressed codestream per frame of `frames` (frames, rows, columns, samples)."""
    n, rows, cols, samples = frames.shape
    if uid == JPEGBaseline8Bit:
        return [_jpeg_baseline_frame(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    if uid == JPEGLosslessSV1:
        precision = max(bits_stored, 2)
        return [_jpeg_lossless_frame(f, precision) for f in frames]
    from pydicom.pixels import get_encoder

    encoder = get_encoder(uid)
    dtype = np.dtype(f"{'ui'[pixel_representation]}{bits_allocated // 8}")
    options: dict[str, Any] = dict(
        rows=rows, columns=cols, number_of_frames=1, samples_per_pixel=samples,
        bits_allocated=bits_allocated, bits_stored=bits_stored,
        pixel_representation=pixel_representation, photometric_interpretation=photometric,
        planar_configuration=0, **_LOSSY_OPTIONS.get(uid, {}),
    )
    if uid in (JPEG2000, JPEG2000Lossless):
        # Without MCT the photometric interpretation stays what the caller asked for.
        options["use_mct"] = False
        if min(rows, cols) < 32:
            # pydicom's openjpeg plugin always uses 6 wavelet resolutions: 2**5 pixels minimum.
            raise ParameterError(
                f"{uid.name} frames need at least 32 rows and 32 columns here; got {rows} x {cols}"
            )
    out = []
    for f in frames:
        frame = np.ascontiguousarray(f[..., 0] if samples == 1 else f, dtype=dtype)
        try:
            out.append(encoder.encode(frame, **options))
        except (ValueError, RuntimeError) as exc:
            raise ParameterError(f"{uid.name} cannot encode this pixel data: {exc}") from exc
    return out


# -- the Image Pixel module --------------------------------------------------------------------


def set_pixel_data(
    ds: Dataset,
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int | None = None,
    bits_stored: int | None = None,
    pixel_representation: int | None = None,
    planar_configuration: int = 0,
    transfer_syntax: str = "explicit_le",
    number_of_frames: int | None = None,
    float_pixel_data: bool = False,
    ybr_422: bool = False,
    fill_unused_bits: str = "zero",
    seed: int = 0,
) -> Dataset:
    """Fill the Image Pixel module and pixel data of `ds` with `arr`, encoded as asked.

    Parameters are those of :func:`dataset_from_array` (which calls this); `ds` gains
    ``file_meta`` with the transfer syntax if it has none. Returns `ds`.
    """
    if ybr_422:
        if photometric not in ("YBR_FULL", "YBR_FULL_422"):
            raise ParameterError("ybr_422=True needs photometric 'YBR_FULL' or 'YBR_FULL_422'")
        photometric = "YBR_FULL_422"
    if photometric not in _SAMPLES:
        raise ParameterError(f"photometric={photometric!r}; expected one of {sorted(_SAMPLES)}")
    if fill_unused_bits not in ("zero", "sign", "random"):
        raise ParameterError(
            f"fill_unused_bits={fill_unused_bits!r}; expected 'zero', 'sign' or 'random'"
        )
    if planar_configuration not in (0, 1):
        raise ParameterError(f"planar_configuration={planar_configuration!r}; expected 0 or 1")
    uid = check_transfer_syntax(transfer_syntax)
    arr = np.asarray(arr)
    samples = _SAMPLES[photometric]
    frames = _frames_view(arr, samples, number_of_frames)
    n, rows, cols, _ = frames.shape
    if rows > 65535 or cols > 65535:
        raise ParameterError(f"arr has {rows} rows and {cols} columns; DICOM allows 65535 at most")

    float_kind: str | None = None
    if float_pixel_data or arr.dtype.kind == "f":
        if not float_pixel_data:
            raise ParameterError(
                f"arr has dtype {arr.dtype}; pass float_pixel_data=True for Float Pixel Data "
                "or give integers"
            )
        if samples != 1 or uid not in _NATIVE:
            raise ParameterError(
                "float_pixel_data needs one sample per pixel and a native transfer syntax"
            )
        float_kind = "FloatPixelData"
    ba = bits_allocated
    if ba is None:
        ba = _default_bits_allocated(arr, float_kind is not None)
    if float_kind is not None:
        if ba not in (32, 64):
            raise ParameterError(f"bits_allocated={ba}; Float Pixel Data needs 32 or 64")
        float_kind = "FloatPixelData" if ba == 32 else "DoubleFloatPixelData"
    elif ba not in (1, 8, 16, 32):
        raise ParameterError(f"bits_allocated={ba}; expected 1, 8, 16 or 32 for integer pixels")
    if float_kind is None and arr.dtype.kind not in "biu":
        raise ParameterError(f"arr has dtype {arr.dtype}; expected bool or integers")

    signed = arr.dtype.kind == "i"
    pr = pixel_representation if pixel_representation is not None else int(signed)
    if pr not in (0, 1):
        raise ParameterError(f"pixel_representation={pr!r}; expected 0 or 1")
    bs = bits_stored if bits_stored is not None else ba
    if float_kind is None:
        if not 1 <= bs <= ba:
            raise ParameterError(f"bits_stored={bs} must lie in 1..bits_allocated ({ba})")
        low, high = (-(1 << (bs - 1)), (1 << (bs - 1)) - 1) if pr else (0, (1 << bs) - 1)
        lo, hi = int(frames.min()), int(frames.max())
        if lo < low or hi > high:
            kind = "signed" if pr else "unsigned"
            raise ParameterError(
                f"arr holds values {lo}..{hi}, outside the {kind} {bs}-bit range {low}..{high}"
            )
        if ba == 1 and samples != 1:
            raise ParameterError("bits_allocated=1 needs one sample per pixel")
    if photometric == "PALETTE COLOR" and (pr or ba not in (8, 16)):
        raise ParameterError("PALETTE COLOR needs unsigned 8- or 16-bit stored values")
    if photometric == "YBR_FULL_422":
        if uid not in _NATIVE or cols % 2 or ba not in (8, 16):
            raise ParameterError(
                "native YBR_FULL_422 needs a native transfer syntax, an even number of columns "
                "and 8- or 16-bit samples"
            )
        if not np.array_equal(frames[:, :, 0::2, 1:], frames[:, :, 1::2, 1:]):
            raise ParameterError(
                "YBR_FULL_422 shares Cb and Cr between horizontal pixel pairs; arr has pairs "
                "whose chroma differ"
            )
    if uid not in _NATIVE:
        if fill_unused_bits != "zero":
            raise ParameterError(
                f"fill_unused_bits={fill_unused_bits!r} applies to native transfer syntaxes only"
            )
        if planar_configuration != 0:
            raise ParameterError(
                f"planar_configuration=1 applies to native transfer syntaxes; {uid.name} "
                "codestreams carry their own sample layout"
            )
        if ba not in (8, 16) or (uid == JPEGBaseline8Bit and (ba, bs, pr) != (8, 8, 0)):
            raise ParameterError(
                f"{uid.name} cannot hold bits_allocated={ba}, bits_stored={bs}, "
                f"pixel_representation={pr}"
                + (" (JPEG Baseline is unsigned 8-bit only)" if uid == JPEGBaseline8Bit else "")
            )

    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    ds.SamplesPerPixel = samples
    encoded_photometric = photometric
    if uid == JPEGBaseline8Bit and samples == 3:
        # Pillow converts colour to YCbCr with 4:2:2 subsampling inside the codestream.
        encoded_photometric = "YBR_FULL_422"
    ds.PhotometricInterpretation = encoded_photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ba
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
                    "NumberOfFrames", "PixelData", "FloatPixelData", "DoubleFloatPixelData",
                    "LossyImageCompression"):
        if keyword in ds:
            delattr(ds, keyword)
    if float_kind is None:
        ds.BitsStored = bs
        ds.HighBit = bs - 1
        ds.PixelRepresentation = pr
    if samples == 3:
        ds.PlanarConfiguration = planar_configuration if uid in _NATIVE else 0
    if number_of_frames is not None or arr.ndim == (3 if samples == 1 else 4):
        ds.NumberOfFrames = n

    if uid in _NATIVE:
        data = _native_bytes(
            frames, photometric=photometric, bits_allocated=ba, bits_stored=bs,
            float_kind=float_kind, planar_configuration=planar_configuration,
            big_endian=not uid.is_little_endian, fill_unused_bits=fill_unused_bits,
            rng=np.random.default_rng(seed),
        )
        if float_kind == "FloatPixelData":
            ds.add_new(0x7FE00008, "OF", data)
        elif float_kind == "DoubleFloatPixelData":
            ds.add_new(0x7FE00009, "OD", data)
        else:
            # Explicit VR: OB for 1- and 8-bit (never byte-swapped), OW otherwise (PS3.5 A.2).
            ds.add_new(0x7FE00010, "OB" if ba <= 8 else "OW", data)
    else:
        codestreams = _encapsulated_frames(
            frames, uid, photometric=photometric, bits_allocated=ba, bits_stored=bs,
            pixel_representation=pr,
        )
        ds.add_new(0x7FE00010, "OB", encapsulate(codestreams, has_bot=True))
        ds["PixelData"].is_undefined_length = True
        if uid in LOSSY_TRANSFER_SYNTAXES:
            ds.LossyImageCompression = "01"
    return ds


def _palette_words(values: np.ndarray, big_endian: bool) -> bytes:
    return values.astype(">u2" if big_endian else "<u2").tobytes()


def _segmented_lut(lut: np.ndarray) -> np.ndarray:
    """Return the segmented form of `lut` (PS3.3 C.7.9.2): discrete and linear segments.

    Runs with a constant integer step become linear segments, whose expansion is exact;
    everything else goes into discrete segments.
    """
    values = [int(v) for v in lut]
    words: list[int] = [0, 1, values[0]]
    i = 1
    pending: list[int] = []
    while i < len(values):
        step = values[i] - values[i - 1]
        j = i
        while j + 1 < len(values) and values[j + 1] - values[j] == step and j + 1 - i < 65534:
            j += 1
        run = j - i + 1
        if run >= 4:
            if pending:
                words += [0, len(pending), *pending]
                pending = []
            words += [1, run, values[j]]
            i = j + 1
        else:
            pending.append(values[i])
            if len(pending) == 65535:
                words += [0, len(pending), *pending]
                pending = []
            i += 1
    if pending:
        words += [0, len(pending), *pending]
    return np.asarray(words, dtype=np.uint16)


def _set_palette(ds: Dataset, palette: Mapping[str, Any], big_endian: bool) -> None:
    try:
        luts = [np.asarray(palette[c]) for c in ("red", "green", "blue")]
    except KeyError as exc:
        raise ParameterError(f"palette lacks the {exc.args[0]!r} LUT") from exc
    first_mapped = int(palette.get("first_mapped", 0))
    n = luts[0].size
    if any(lut.ndim != 1 or lut.size != n for lut in luts) or not 1 <= n <= 65536:
        raise ParameterError("palette red/green/blue LUTs must be 1-D, of one length 1..65536")
    bits = int(palette.get("bits", 8 if all(lut.dtype == np.uint8 for lut in luts) else 16))
    if bits not in (8, 16) or any(int(v.min()) < 0 or int(v.max()) >= 1 << bits for v in luts):
        raise ParameterError(f"palette entries must fit {bits} bits and bits must be 8 or 16")
    if not 0 <= first_mapped <= 65535:
        raise ParameterError(f"palette first_mapped={first_mapped} does not fit 16 bits")
    segmented = bool(palette.get("segmented", False))
    if segmented and bits != 16:
        raise ParameterError("segmented palettes are written with 16-bit entries only")
    descriptor = [n % 65536, first_mapped, bits]
    for colour, lut in zip(("Red", "Green", "Blue"), luts):
        # Descriptor VR follows Pixel Representation (PS3.3 C.7.6.3.1.5); palettes are unsigned.
        ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US",
                   descriptor)
        if segmented:
            ds.add_new(f"Segmented{colour}PaletteColorLookupTableData", "OW",
                       _palette_words(_segmented_lut(lut), big_endian))
        else:
            # PS3.3 C.7.6.3.1.6: each entry occupies one 16-bit word, also for 8-bit entries.
            ds.add_new(f"{colour}PaletteColorLookupTableData", "OW",
                       _palette_words(lut, big_endian))


def dataset_from_array(
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int | None = None,
    bits_stored: int | None = None,
    pixel_representation: int | None = None,
    planar_configuration: int = 0,
    transfer_syntax: str = "explicit_le",
    number_of_frames: int | None = None,
    float_pixel_data: bool = False,
    palette: Mapping[str, Any] | None = None,
    ybr_422: bool = False,
    fill_unused_bits: str = "zero",
    sop_class_uid: str | None = None,
    seed: int = 0,
) -> Dataset:
    """Return a minimal valid SOP instance whose pixel data decodes to `arr`.

    Parameters
    ----------
    arr : numpy.ndarray
        The intended decoded values: ``(rows, columns)`` or ``(frames, rows, columns)`` for one
        sample per pixel, ``(rows, columns, 3)`` or ``(frames, rows, columns, 3)`` for three
        (RGB / YBR). Bool for 1-bit, integers, or floats with `float_pixel_data`.
    photometric : str
        ``"MONOCHROME1"``, ``"MONOCHROME2"``, ``"PALETTE COLOR"``, ``"RGB"``, ``"YBR_FULL"`` or
        ``"YBR_FULL_422"`` (native 4:2:2 storage; each horizontal pair must share Cb/Cr).
        With ``jpeg_baseline``, three-sample data is written as ``YBR_FULL_422``.
    bits_allocated, bits_stored : int, optional
        Default: the dtype's size (1 for bool) and all of it. Integers allow 1/8/16/32.
    pixel_representation : {0, 1}, optional
        Default: 1 for a signed dtype, else 0.
    planar_configuration : {0, 1}
        Sample interleaving of native colour data (0: RGBRGB..., 1: RR..GG..BB..).
    transfer_syntax : str
        A name from ``TRANSFER_SYNTAXES`` or a transfer syntax UID.
    number_of_frames : int, optional
        Checked against `arr`; when given, Number of Frames is written even for one frame.
    float_pixel_data : bool
        Write Float Pixel Data (float32) or Double Float Pixel Data (``bits_allocated=64`` or
        a float64 `arr`).
    palette : mapping, optional
        For ``PALETTE COLOR``: ``red``, ``green``, ``blue`` (1-D LUTs of equal length, uint8 for
        8-bit entries, otherwise 16-bit), ``first_mapped`` (default 0), optionally ``bits``
        (8 or 16) and ``segmented=True`` (Segmented Palette Color LUT Data, 16-bit only).
    ybr_422 : bool
        Same as ``photometric="YBR_FULL_422"``.
    fill_unused_bits : {"zero", "sign", "random"}
        What the bits above Bits Stored hold in native data: zeros, copies of the top stored
        bit, or random garbage (seeded by `seed`); decoders must ignore them.
    sop_class_uid : str, optional
        Default: Parametric Map for float data, a Multi-frame Secondary Capture class for
        multi-frame data where one fits, else Secondary Capture.
    seed : int
        Seeds the UIDs and the random high bits; the same inputs give the same bytes.

    Returns
    -------
    pydicom.dataset.Dataset
        With ``file_meta`` set; write it with :func:`save_dataset`.

    Raises
    ------
    ParameterError
        If the values do not fit the requested layout, or the layout does not fit the syntax.
    MissingPluginError
        If the transfer syntax has no encoder installed (see :func:`available_transfer_syntaxes`).
    """
    arr = np.asarray(arr)
    if photometric == "PALETTE COLOR" and palette is None:
        raise ParameterError("photometric='PALETTE COLOR' needs palette=")
    if palette is not None and photometric != "PALETTE COLOR":
        raise ParameterError("palette= needs photometric='PALETTE COLOR'")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    set_pixel_data(
        ds, arr, photometric=photometric, bits_allocated=bits_allocated,
        bits_stored=bits_stored, pixel_representation=pixel_representation,
        planar_configuration=planar_configuration, transfer_syntax=transfer_syntax,
        number_of_frames=number_of_frames, float_pixel_data=float_pixel_data,
        ybr_422=ybr_422, fill_unused_bits=fill_unused_bits, seed=seed,
    )
    if palette is not None:
        _set_palette(ds, palette, big_endian=not ds.file_meta.TransferSyntaxUID.is_little_endian)

    frames = int(ds.get("NumberOfFrames", 1))
    if sop_class_uid is None:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            sop_class_uid = _PARAMETRIC_MAP
        elif "NumberOfFrames" in ds and ds.SamplesPerPixel == 3 and ds.BitsAllocated == 8:
            sop_class_uid = _MULTIFRAME_TRUE_COLOR_SC
        elif (
            "NumberOfFrames" in ds and ds.SamplesPerPixel == 1
            and ds.BitsAllocated in _MULTIFRAME_SC
        ):
            sop_class_uid = _MULTIFRAME_SC[ds.BitsAllocated]
        else:
            sop_class_uid = _SECONDARY_CAPTURE
    key = ("dataset_from_array", seed, arr.shape, str(arr.dtype), ds.PhotometricInterpretation,
           ds.BitsAllocated, ds.file_meta.TransferSyntaxUID)
    sop_uid = deterministic_uid(*key, "sop")
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = UID(sop_class_uid)
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = deterministic_uid("dataset_from_array", seed, "study")
    ds.SeriesInstanceUID = deterministic_uid(*key, "series")
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.PatientName = "VOXELFLOW^PHANTOM"
    ds.PatientID = f"VF{seed:06d}"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if frames > 1 and "FrameIncrementPointer" not in ds and sop_class_uid != _PARAMETRIC_MAP:
        ds.add_new(0x00280009, "AT", [0x00181063])  # Frame Time
        ds.FrameTime = 1.0
    return ds


def save_dataset(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write `ds` to `path` in its file meta transfer syntax, atomically; return the path.

    The file appears complete or not at all: it is written under a temporary name in the same
    folder and renamed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
