"""A minimal DICOM header walker: the Image Pixel attributes and where Pixel Data starts.

Decoding a series file by file spends most of its time parsing headers; pydicom builds an
element object for every attribute. This walker only steps over elements (sequences
included) and keeps group 0028 and the offset tables, which is all decoding needs. It covers
the common case — a Part 10 file in Explicit or Implicit VR Little Endian or Explicit VR Big
Endian — and returns None for anything else (or anything odd), so the caller falls back to
pydicom, whose errors and tolerance then apply.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

__all__ = ["HeaderValues", "read_header"]

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_KEPT_GROUPS = (0x0028,)
_KEPT_TAGS = {0x7FE00001, 0x7FE00002}  # Extended Offset Table and its lengths
# RLE datasets are Explicit VR Little Endian around their encapsulated pixel data
_WALKABLE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless}
_MAX_DEPTH = 16


class HeaderValues(dict):
    """Values by keyword, answering ``get`` and ``in`` as a pydicom Dataset does."""

    file_meta: dict[str, Any]


class _Unwalkable(Exception):
    """The fast path does not handle this file; the caller uses pydicom."""


def _value(vr: bytes, raw: bytes, little: bool) -> Any:
    end = "<" if little else ">"
    if vr in (b"US", b"SS"):
        n = len(raw) // 2
        values = struct.unpack(f"{end}{n}{'H' if vr == b'US' else 'h'}", raw[: 2 * n])
        return values[0] if n == 1 else list(values)
    if vr in (b"UL", b"SL"):
        n = len(raw) // 4
        values = struct.unpack(f"{end}{n}{'I' if vr == b'UL' else 'i'}", raw[: 4 * n])
        return values[0] if n == 1 else list(values)
    if vr in (b"IS", b"DS", b"CS", b"LO", b"SH", b"UI", b"LT", b"ST"):
        text = raw.decode("ascii", "replace").strip(" \x00")
        parts = text.split("\\")
        # numbers stay text, as pydicom's raw values do: int() of a malformed IS fails at use
        return parts[0] if len(parts) == 1 else parts
    return raw


class _Walker:
    def __init__(self, data: bytes, little: bool, implicit: bool):
        self.data = data
        self.little = little
        self.implicit = implicit
        self.end = "<" if little else ">"

    def element(self, pos: int) -> tuple[int, bytes, int, int]:
        """(tag, VR, value length, value offset) of the element at `pos`."""
        data = self.data
        if pos + 8 > len(data):
            raise _Unwalkable
        group, elem = struct.unpack_from(f"{self.end}HH", data, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:  # item / delimiters: always 4-byte length, no VR
            (length,) = struct.unpack_from(f"{self.end}I", data, pos + 4)
            return tag, b"", length, pos + 8
        if self.implicit:
            (length,) = struct.unpack_from(f"{self.end}I", data, pos + 4)
            try:
                vr = dictionary_VR(tag).encode()
            except KeyError:
                vr = b"UN"
            return tag, vr[:2], length, pos + 8
        vr = data[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            raise _Unwalkable  # not explicit VR after all (pydicom copes with such files)
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise _Unwalkable
            (length,) = struct.unpack_from(f"{self.end}I", data, pos + 8)
            return tag, vr, length, pos + 12
        (length,) = struct.unpack_from(f"{self.end}H", data, pos + 6)
        return tag, vr, length, pos + 8

    def skip_undefined(self, pos: int, depth: int) -> int:
        """Position after an undefined-length sequence or item starting at `pos` (its value)."""
        if depth > _MAX_DEPTH:
            raise _Unwalkable
        while True:
            tag, vr, length, value = self.element(pos)
            if tag in (0xFFFEE0DD, 0xFFFEE00D):  # sequence / item delimitation
                return value
            if length == _UNDEFINED:
                pos = self.skip_undefined(value, depth + 1)
            else:
                pos = value + length
            if pos > len(self.data):
                raise _Unwalkable


def read_header(f: Any, size: int) -> tuple[HeaderValues, UID, int, int, str] | None:
    """Walk the header of the open file `f` (of `size` bytes).

    Returns
    -------
    (values, transfer syntax, offset of the Pixel Data element, its tag, its VR) or None
        None when this file needs pydicom (not Part 10, another transfer syntax, no pixel
        data, anything unexpected). Group 0028 values come back by keyword.
    """
    try:
        return _read(f, size)
    except (_Unwalkable, struct.error, UnicodeDecodeError, ValueError):
        return None


def _read(f: Any, size: int) -> tuple[HeaderValues, UID, int, int, str] | None:
    f.seek(0)
    # headers of real files fit in a few KiB; read in growing steps up to the pixel data
    data = f.read(min(size, 16384))
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    meta = _Walker(data, True, False)
    pos = 132
    tsyntax = None
    while True:
        tag, vr, length, value = meta.element(pos)
        if tag >> 16 != 0x0002:
            break
        if length == _UNDEFINED or value + length > len(data):
            return None
        if tag == 0x00020010:
            tsyntax = UID(data[value : value + length].decode("ascii").strip(" \x00"))
        pos = value + length
    if tsyntax not in _WALKABLE:
        return None
    walker = _Walker(data, tsyntax != ExplicitVRBigEndian, tsyntax == ImplicitVRLittleEndian)
    values = HeaderValues()
    while True:
        if pos + 12 > len(walker.data):
            if len(walker.data) >= size:
                return None  # no Pixel Data element
            walker.data = data = data + f.read(max(16384, len(data)))
            continue
        tag, vr, length, value = walker.element(pos)
        if tag in _PIXEL_TAGS:
            return values, tsyntax, pos, tag, vr.decode("ascii", "replace")
        if length == _UNDEFINED:
            while True:
                try:
                    pos = walker.skip_undefined(value, 0)
                    break
                except _Unwalkable:
                    if len(data) >= size:
                        raise
                    walker.data = data = data + f.read(max(16384, len(data)))
            continue
        end = value + length
        group = tag >> 16
        if group in _KEPT_GROUPS or tag in _KEPT_TAGS:
            if end > size:
                return None
            while end > len(data):
                walker.data = data = data + f.read(max(16384, end - len(data)))
            keyword = keyword_for_tag(tag)
            if keyword:
                values[keyword] = _value(vr, data[value:end], walker.little)
        pos = end
