"""The JPEG family (and any other compressed syntax) through pydicom's pixel backends.

pydicom keeps one decoder per transfer syntax with an ordered list of plugins (pylibjpeg,
pyjpegls, GDCM, Pillow); we ask it whether one is installed and name the package otherwise.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.pixels import pixel_array as pydicom_pixel_array
from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from ..errors import DecodeError, MissingPluginError
from .pixel_info import PixelInfo
from .source import PixelSource

__all__ = ["check_codestream", "decode_with_plugin", "plugin_package", "start_markers"]

# ISO 10918-1 B.1.1.3 start-of-frame markers (C4 DHT, C8 JPG, CC DAC are not frames) and
# JPEG-LS SOF55 (ISO 14495-1 C.2.2); lossless processes, whose precision is the sample's
_SOF_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC),
                          *range(0xCD, 0xD0), 0xF7})
_LOSSLESS_SOF = frozenset({0xC3, 0xC7, 0xCB, 0xCF, 0xF7})
# standalone markers (no length): TEM, RSTn, SOI, EOI
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
_HEADER_BYTES = 1 << 16  # the frame header lies in a codestream's first bytes
# lossless syntaxes whose codestream precision may exceed Bits Stored (encoders often write
# Bits Allocated there): their decoded values are checked against Bits Stored
_LOSSLESS_SYNTAXES = frozenset({JPEGLossless, JPEGLosslessSV1, JPEGLSLossless})


def _sof(head: bytes) -> tuple[int, int, int, int, int] | None:
    """(marker, precision, lines, samples per line, components) of a JPEG / JPEG-LS SOF."""
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", head, pos + 2)
        if marker in _SOF_MARKERS:
            if pos + 10 > len(head):
                return None
            precision, lines, columns, components = struct.unpack_from(">BHHB", head, pos + 4)
            return marker, precision, lines, columns, components
        if marker == 0xDA:  # SOS before any SOF
            return None
        pos += 2 + length
    return None


def _siz(head: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) of a JPEG 2000 codestream's SIZ segment (ISO 15444-1 A.5.1)."""
    if head[:4] != b"\xff\x4f\xff\x51" or len(head) < 42:
        return None
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", head, 8)
    (components,) = struct.unpack_from(">H", head, 40)
    return ysiz - yo, xsiz - xo, components


def check_codestream(
    info: PixelInfo, fragments: list[tuple[int, int]], buf: bytes | memoryview, source: str,
    frame: int,
) -> None:
    """Check one compressed frame against the data set before any plugin decodes it.

    JPEG-family plugins decode what they are given: a codestream cut short decodes to a
    partly grey image without complaint, and one whose frame header announces another size
    or precision is decoded at that size. Checked here: the codestream ends with its end
    marker (EOI / EOC, FFD9), and its frame header (SOF, or JPEG 2000 SIZ) agrees with Rows,
    Columns, Samples per Pixel and Bits Allocated and, for the lossless processes, Bits Stored
    (a precision below it).

    Raises
    ------
    DecodeError
        Naming the frame and the attribute the codestream disagrees with.
    """
    ts = info.transfer_syntax
    jpeg = ts in JPEGTransferSyntaxes or ts in JPEGLSTransferSyntaxes
    if not (jpeg or ts in JPEG2000TransferSyntaxes):
        return
    start, length = fragments[-1]
    # a fragment has an even length: padding (00, or FF fill bytes as some encoders write)
    # may follow the marker
    tail = bytes(buf[start + max(0, length - 16) : start + length]).rstrip(b"\x00\xff")
    if not tail.endswith(b"\xff\xd9"):
        raise DecodeError(
            f"the {ts.name} codestream does not end with its end marker (FFD9): it is "
            "truncated or damaged",
            source=source,
            frame=frame,
        )
    first, first_length = fragments[0]
    head = bytes(buf[first : first + min(first_length, _HEADER_BYTES)])
    if jpeg:
        sof = _sof(head)
        if sof is None:
            return  # no frame header found early: the plugin judges the stream
        marker, precision, lines, columns, components = sof
    else:
        siz = _siz(head)
        if siz is None:
            return
        (lines, columns, components), marker, precision = siz, 0, 0
    checks = [
        # 0 lines defers the height to a DNL marker after the scan, which the plugins meet by
        # growing their output without bound (found by voxelflow.testing.fuzz): refused too
        (lines != info.rows, f"(0028,0010) Rows is {info.rows}", f"{lines} lines"),
        (columns != info.columns, f"(0028,0011) Columns is {info.columns}", f"{columns} columns"),
        (components != info.samples, f"(0028,0002) Samples per Pixel is {info.samples}",
         f"{components} components"),
        # a lossless stream carries `precision` bits per sample: fewer than Bits Stored means
        # the two disagree on the data (more is common: encoders write Bits Allocated)
        (marker in _LOSSLESS_SOF and precision < info.bits_stored,
         f"(0028,0101) Bits Stored is {info.bits_stored}", f"sample precision {precision}"),
        (jpeg and precision > info.bits_allocated,
         f"(0028,0100) Bits Allocated is {info.bits_allocated}", f"sample precision {precision}"),
    ]
    for bad, declared, found in checks:
        if bad:
            raise DecodeError(
                f"the codestream's frame header declares {found}; {declared}",
                source=source,
                frame=frame,
            )


def start_markers(transfer_syntax: Any) -> tuple[bytes, ...] | None:
    """What a frame's codestream starts with, for the syntaxes whose codestreams end with FFD9
    (JPEG and JPEG-LS EOI, JPEG 2000 EOC); None for any other syntax."""
    if transfer_syntax in JPEGTransferSyntaxes or transfer_syntax in JPEGLSTransferSyntaxes:
        return (b"\xff\xd8",)  # SOI
    if transfer_syntax in JPEG2000TransferSyntaxes:
        # SOC and SIZ; or a JP2 signature box, which some writers wrap the codestream in
        return (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")
    return None


def plugin_package(transfer_syntax: Any) -> str:
    """The pip package that decodes `transfer_syntax` (what to tell a user to install)."""
    if transfer_syntax in JPEGLSTransferSyntaxes:
        return "pyjpegls (or pylibjpeg-libjpeg)"
    if transfer_syntax in JPEG2000TransferSyntaxes:
        return "pylibjpeg-openjpeg"
    if transfer_syntax in JPEGTransferSyntaxes:
        return "pylibjpeg-libjpeg"
    return "a pydicom pixel data plugin (pylibjpeg, python-gdcm)"


def decode_with_plugin(
    source: PixelSource,
    info: PixelInfo,
    indices: list[int],
    groups: list[list[tuple[int, int]]],
    buf: bytes | memoryview,
    out: np.ndarray,
) -> None:
    """Decode frames `indices` of a compressed dataset into `out` (frames, values).

    `groups` holds the fragments of each of those frames as framed (and checked) by
    :func:`.encapsulation.frame_fragments`: the plugin gets each frame as a one-frame data
    set, so what it decodes is exactly what was checked (pydicom would otherwise frame the
    value again from its offset tables, trusting them).
    """
    ts = info.transfer_syntax
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise DecodeError(f"transfer syntax {ts} ({ts.name}) is not supported", source=source.name) from None
    if not decoder.is_available:
        raise MissingPluginError(
            f"decoding {ts.name} needs a plugin: pip install {plugin_package(ts)}",
            source=source.name,
        )
    ds = source.ds
    if not isinstance(ds, pydicom.Dataset):
        ds = pydicom.dcmread(source.name, stop_before_pixels=True)
    # a new data set sharing the elements (Dataset.copy shares them and their dict): only
    # what is replaced here differs, and the caller's data set is never changed. Raw elements
    # stay raw (given as a dict, with keep_deferred): update(), item assignment and get_item()
    # of an empty one would convert it, and converting a damaged element, even one the plugin
    # never reads, raises pydicom's exceptions
    tags = [tag for tag in ds.keys()  # noqa: SIM118 - a Dataset iterates its elements, not tags
            if tag not in (0x7FE00001, 0x7FE00002, 0x00280008, 0x7FE00010)]
    header = pydicom.Dataset({tag: ds.get_item(tag, keep_deferred=True) for tag in tags})
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    header.NumberOfFrames = 1
    options: dict[str, Any] = {}
    if _unmasked(info):
        # pydicom masks decoded values to Bits Stored, silently hiding values that do not fit;
        # decode all the bits the samples hold, and check them (_check_values)
        options["bits_stored"] = info.bits_allocated
    for pos, (f, group) in enumerate(zip(indices, groups)):
        frame = b"".join(bytes(buf[start : start + length]) for start, length in group)
        header.add_new(0x7FE00010, "OB", encapsulate([frame]))
        header["PixelData"].is_undefined_length = True
        try:
            arr = pydicom_pixel_array(header, **options)
        except MemoryError:
            raise
        except Exception as exc:  # plugins raise anything on corrupt streams
            raise DecodeError(f"{ts.name} decoding failed: {exc}", source=source.name, frame=f) from exc
        if arr.size != out.shape[1] or arr.dtype != out.dtype:
            raise DecodeError(
                f"the codestream decodes to {arr.shape} {arr.dtype}; the dataset declares "
                f"{info.frame_shape} {info.dtype}",
                source=source.name,
                frame=f,
            )
        _check_values(info, arr, source.name, f)
        out[pos] = arr.reshape(-1)


def _unmasked(info: PixelInfo) -> bool:
    """Lossless unsigned data with unused high bits: decoded unmasked, then checked."""
    return (info.transfer_syntax in _LOSSLESS_SYNTAXES and not info.pixel_representation
            and info.bits_stored < info.bits_allocated and info.bits_allocated in (8, 16))


def _check_values(info: PixelInfo, arr: np.ndarray, source: str, frame: int) -> None:
    """Refuse lossless frames whose values do not fit in Bits Stored (checked after decoding).

    The frame header may declare a precision above Bits Stored (common, and harmless when the
    values fit); values that do not fit mean the header misdescribes the data, and masking
    them to Bits Stored would silently change pixels.
    """
    if not _unmasked(info) or arr.dtype.kind != "u" or not arr.size:
        return
    top = int(arr.max())
    if top >> info.bits_stored:
        raise DecodeError(
            f"the codestream decodes to values up to {top}, beyond the "
            f"{(1 << info.bits_stored) - 1} that (0028,0101) Bits Stored {info.bits_stored} allows",
            source=source,
            frame=frame,
        )
