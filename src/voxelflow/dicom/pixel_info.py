"""The Image Pixel module of one dataset, parsed and checked before any pixel is touched.

Every size is computed with Python integers (no overflow) and compared with the data actually
present and with :data:`limits` *before* an output array is allocated, so a 46341 x 46341 image
announced in a 9 KB file is refused instead of allocating 4 GiB (malformed-inputs.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID

from ..errors import DecodeError, DecodeWarning

__all__ = ["DecodeLimits", "PixelInfo", "limits", "pixel_info"]

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# PS3.3 C.7.6.3.1.2; anything else has no defined sample layout
PHOTOMETRIC_SAMPLES = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
    "YBR_PARTIAL_420": 3,
    "XYB": 3,
}


@dataclass
class DecodeLimits:
    """Upper bounds that protect against hostile headers; change them on :data:`limits`.

    Attributes
    ----------
    max_output_bytes : int
        Largest decoded output (all requested frames) ``decode`` will allocate.
    max_frames : int
        Largest Number of Frames accepted.
    """

    max_output_bytes: int = 2**32 - 1
    max_frames: int = 2**20


limits = DecodeLimits()


@dataclass(frozen=True, kw_only=True)
class PixelInfo:
    """What decoding needs to know about one dataset's pixel data, validated."""

    source: str
    transfer_syntax: UID
    keyword: str
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    planar_configuration: int
    photometric: str
    number_of_frames: int

    @property
    def dtype(self) -> np.dtype:
        """The stored-value dtype, as pydicom returns it (1-bit data as uint8)."""
        if self.keyword == "FloatPixelData":
            return np.dtype(np.float32)
        if self.keyword == "DoubleFloatPixelData":
            return np.dtype(np.float64)
        nbytes = max(1, self.bits_allocated // 8)
        return np.dtype(f"{'i' if self.pixel_representation else 'u'}{nbytes}")

    @property
    def is_native(self) -> bool:
        return not self.transfer_syntax.is_encapsulated

    @property
    def is_ybr422_native(self) -> bool:
        """Uncompressed YBR_FULL_422 holds two luminance samples per chroma pair (PS3.3 C.7.6.3.1.2)."""
        return self.is_native and self.photometric == "YBR_FULL_422"

    @property
    def pixels_per_frame(self) -> int:
        return self.rows * self.columns

    @property
    def frame_shape(self) -> tuple[int, ...]:
        shape = (self.rows, self.columns)
        return (*shape, self.samples) if self.samples > 1 else shape

    @property
    def frame_nbytes(self) -> int:
        """Bytes of one decoded frame in the output array."""
        return self.pixels_per_frame * self.samples * self.dtype.itemsize

    @property
    def native_frame_bits(self) -> int:
        """Bits one frame occupies in uncompressed Pixel Data."""
        if self.is_ybr422_native:
            return self.pixels_per_frame * 2 * self.bits_allocated
        return self.pixels_per_frame * self.samples * self.bits_allocated

    def output_shape(self, nframes: int, squeeze: bool) -> tuple[int, ...]:
        return self.frame_shape if squeeze else (nframes, *self.frame_shape)


def _tagged(keyword: str) -> str:
    """'(0028,0010) Rows': how error messages name an attribute."""
    tag = tag_for_keyword(keyword)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}" if tag is not None else keyword


def _int_attr(ds: Any, keyword: str, source: str, *, default: int | None = None) -> int:
    try:
        value = ds.get(keyword)
    except Exception as exc:  # noqa: BLE001 - pydicom converts raw values lazily, raising
        # ValueError for a malformed IS/US, NotImplementedError for an unknown VR and its own
        # BytesLengthException for a value that does not fit its VR (the last two found by
        # voxelflow.testing.fuzz)
        raise DecodeError(f"{_tagged(keyword)} cannot be read: {exc}", source=source) from None
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        if default is not None:
            return default
        raise DecodeError(f"{_tagged(keyword)} is missing", source=source)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DecodeError(f"{_tagged(keyword)} is not an integer: {value!r}", source=source) from None


def pixel_info(ds: Any, source: str, transfer_syntax: UID) -> PixelInfo:
    """Parse and check the Image Pixel module of `ds` (no pixel data is read).

    Raises
    ------
    DecodeError
        Naming the attribute whose value is missing, invalid or inconsistent.
    """
    keyword = next((k for k in PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise DecodeError("the dataset has no Pixel Data, Float Pixel Data or Double Float Pixel Data", source=source)

    rows = _int_attr(ds, "Rows", source)
    columns = _int_attr(ds, "Columns", source)
    for name, value in (("Rows", rows), ("Columns", columns)):
        if not 1 <= value <= 65535:
            raise DecodeError(f"(0028,{'0010' if name == 'Rows' else '0011'}) {name} is {value}, must be 1..65535", source=source)

    samples = _int_attr(ds, "SamplesPerPixel", source, default=1)
    if samples not in (1, 3):
        raise DecodeError(f"(0028,0002) Samples per Pixel is {samples}, must be 1 or 3", source=source)

    try:
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    except Exception as exc:  # noqa: BLE001 - as in _int_attr
        raise DecodeError(f"(0028,0004) Photometric Interpretation cannot be read: {exc}", source=source) from None
    if not photometric:
        raise DecodeError("(0028,0004) Photometric Interpretation is missing", source=source)
    if photometric not in PHOTOMETRIC_SAMPLES:
        raise DecodeError(f"(0028,0004) Photometric Interpretation {photometric!r} is unknown", source=source)
    if PHOTOMETRIC_SAMPLES[photometric] != samples:
        raise DecodeError(
            f"(0028,0004) Photometric Interpretation {photometric} needs "
            f"{PHOTOMETRIC_SAMPLES[photometric]} samples per pixel, (0028,0002) says {samples}",
            source=source,
        )

    if keyword == "FloatPixelData":
        bits_allocated, bits_stored, representation = 32, 32, 0
    elif keyword == "DoubleFloatPixelData":
        bits_allocated, bits_stored, representation = 64, 64, 0
    else:
        bits_allocated = _int_attr(ds, "BitsAllocated", source)
        if bits_allocated not in (1, 8, 16, 32):
            raise DecodeError(f"(0028,0100) Bits Allocated is {bits_allocated}, must be 1, 8, 16 or 32", source=source)
        bits_stored = _int_attr(ds, "BitsStored", source, default=bits_allocated)
        if not 1 <= bits_stored <= bits_allocated:
            raise DecodeError(
                f"(0028,0101) Bits Stored is {bits_stored}, must be 1..{bits_allocated} (Bits Allocated)",
                source=source,
            )
        high_bit = _int_attr(ds, "HighBit", source, default=bits_stored - 1)
        if high_bit != bits_stored - 1:
            warnings.warn(
                f"{source}: (0028,0102) High Bit is {high_bit}, expected {bits_stored - 1}; "
                "decoding the low Bits Stored bits",
                DecodeWarning,
                stacklevel=3,
            )
        representation = _int_attr(ds, "PixelRepresentation", source, default=0)
        if representation not in (0, 1):
            raise DecodeError(f"(0028,0103) Pixel Representation is {representation}, must be 0 or 1", source=source)

    planar = _int_attr(ds, "PlanarConfiguration", source, default=0) if samples == 3 else 0
    if planar not in (0, 1):
        raise DecodeError(f"(0028,0006) Planar Configuration is {planar}, must be 0 or 1", source=source)

    nframes = _int_attr(ds, "NumberOfFrames", source, default=1)
    if not 1 <= nframes <= limits.max_frames:
        raise DecodeError(
            f"(0028,0008) Number of Frames is {nframes}, must be 1..{limits.max_frames}", source=source
        )

    if photometric == "YBR_FULL_422" and not transfer_syntax.is_encapsulated and bits_allocated != 8:
        raise DecodeError("uncompressed YBR_FULL_422 needs (0028,0100) Bits Allocated 8", source=source)
    if bits_allocated == 1 and samples != 1:
        raise DecodeError("1-bit pixel data must have 1 sample per pixel", source=source)

    return PixelInfo(
        source=source,
        transfer_syntax=transfer_syntax,
        keyword=keyword,
        rows=rows,
        columns=columns,
        samples=samples,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=representation,
        planar_configuration=planar,
        photometric=photometric,
        number_of_frames=nframes,
    )
