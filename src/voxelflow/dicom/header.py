"""A minimal DICOM header walker: chosen elements and where Pixel Data starts.

Decoding or scanning a series file by file spends most of its time parsing headers; pydicom
builds an element object for every attribute. This walker only steps over elements (sequences
included) and keeps the raw bytes of the elements it is asked for, stopping at the Pixel Data
element. It covers the common case — a Part 10 file whose data set is Explicit or Implicit VR
Little Endian or Explicit VR Big Endian (every encapsulated transfer syntax is Explicit VR
Little Endian around its pixel data) — and declines anything else (or anything odd), so the
caller falls back to pydicom, whose errors and tolerance then apply.

Two outcomes are told apart: :func:`walk_header` returns None when the file needs pydicom
(not Part 10, deflated or private transfer syntax, a VR encoding that contradicts the transfer
syntax), and raises :class:`HeaderError` when the bytes are certainly broken (the file ends
inside an element, a length runs past the end of the file, a sequence holds something other
than items or lacks its delimiter, sequences nest deeper than 128 levels, an explicit VR is two
letters that name no VR): there pydicom would read a silently truncated data set, try to
allocate the declared length, or recurse until the interpreter gives up.

:func:`read_header` is the decoder's view: group 0028 by keyword and the Pixel Data offset.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

__all__ = [
    "HeaderError", "HeaderValues", "HeaderWalk", "read_header", "walk_header", "walk_items"
]

_LONG_VRS = frozenset(
    {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
     b"PN", b"SH", b"SL", b"SS", b"ST", b"SV", b"TM", b"UI", b"UL", b"US", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_FIRST_PIXEL_TAG = 0x7FE00008
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# Sequences nested deeper than this are refused: real structured reports stay far below it,
# and pydicom would recurse until RecursionError (or, in a thread, overflow the C stack).
# The walker's depth counter counts a sequence and its item as two steps.
MAX_NESTING = 128
_MAX_DEPTH = 2 * MAX_NESTING
_CHUNK = 16384  # headers of real files fit in a few KiB
# A deflated data set is inflated only up to its Pixel Data; a header inflating past this is
# refused rather than followed (a deflate bomb would otherwise allocate without bound).
_MAX_INFLATED_HEADER = 64 << 20

# The decoder's selection: the Image Pixel module and the Extended Offset Table (+ lengths).
_DECODER_GROUPS = frozenset({0x0028})
_DECODER_TAGS = frozenset({0x7FE00001, 0x7FE00002})
# RLE datasets are Explicit VR Little Endian around their encapsulated pixel data
_DECODER_SYNTAXES = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless}
)

_LE_TAG = struct.Struct("<HH").unpack_from
_BE_TAG = struct.Struct(">HH").unpack_from
_LE_U16 = struct.Struct("<H").unpack_from
_BE_U16 = struct.Struct(">H").unpack_from
_LE_U32 = struct.Struct("<I").unpack_from
_BE_U32 = struct.Struct(">I").unpack_from

# transfer syntax UID -> (UID, implicit VR, little endian), or None: not walkable
_ENCODINGS: dict[str, tuple[UID, bool, bool] | None] = {}


class HeaderError(Exception):
    """The header bytes are certainly broken; the message says where and how."""


class _Unwalkable(Exception):
    """The fast path does not handle this file; the caller uses pydicom."""


class _Broken(Exception):
    """Certainly broken bytes inside an undefined-length value; the caller names the element."""


class _NeedMore(Exception):
    """The buffer ends before the element being walked: read more of the file."""


class HeaderValues(dict):
    """Values by keyword, answering ``get`` and ``in`` as a pydicom Dataset does."""

    file_meta: dict[str, Any]


@dataclass(slots=True)
class HeaderWalk:
    """What :func:`walk_header` found.

    Attributes
    ----------
    transfer_syntax : UID
    implicit, little : bool
        How the data set is encoded.
    meta : dict
        File meta (group 0002) element values, raw bytes, by tag.
    deflated : bool
        The data set is deflated: offsets below count in the inflated stream (the file's
        bytes up to the data set, then the inflated data set).
    elements : dict
        The kept top-level data set elements: tag -> (VR, raw value bytes). VRs come from the
        file (explicit VR) or pydicom's dictionary ("UN" for unknown tags; the first choice of
        "US or SS"-style entries). A sequence's value is its encoded items (an undefined-length
        one without its delimiter).
    undefined_length : set of int
        The kept tags whose length was undefined.
    pixel_offset : int or None
        Offset of the Pixel Data (or Float / Double Float Pixel Data) element's header; None
        when the data set ends without one.
    pixel_tag, pixel_vr, pixel_length, pixel_value_offset
        That element's tag, VR ("" when implicit), value length (``0xFFFFFFFF``: undefined)
        and value offset; zeros when there is no pixel element.
    """

    transfer_syntax: UID
    implicit: bool
    little: bool
    meta: dict[int, bytes]
    deflated: bool = False
    elements: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    undefined_length: set[int] = field(default_factory=set)
    pixel_offset: int | None = None
    pixel_tag: int = 0
    pixel_vr: str = ""
    pixel_length: int = 0
    pixel_value_offset: int = 0
    dataset_offset: int = 0


def _encoding(uid: str) -> tuple[UID, bool, bool] | None:
    """(UID, implicit VR, little endian) of the data set for a transfer syntax we can walk."""
    try:
        return _ENCODINGS[uid]
    except KeyError:
        pass
    ts = UID(uid)
    # pydicom raises ValueError for private UIDs (it cannot tell their type)
    if ts.is_private or not ts.is_transfer_syntax:
        # private or unknown syntaxes: pydicom decides how to read them
        result = None
    else:
        result = (ts, ts.is_implicit_VR, ts.is_little_endian)
    _ENCODINGS[uid] = result
    return result


class _Reader:
    """The head of a file, read in growing steps; never past `size` bytes."""

    __slots__ = ("data", "f", "size")

    def __init__(self, f: BinaryIO, size: int):
        self.f = f
        self.size = size
        f.seek(0)
        self.data = f.read(min(size, _CHUNK))

    def more(self, need: int) -> bool:
        """Read until `need` bytes are buffered (or the file ends); False when it is shorter."""
        data = self.data
        if need <= len(data):
            return True
        if len(data) >= self.size:
            return False
        # grow geometrically (few reads), but never beyond the file
        target = min(self.size, max(need, 2 * len(data)))
        chunk = self.f.read(target - len(data))
        if chunk:
            self.data = data + chunk
        return need <= len(self.data)

    def past_end(self, tag: int, length: int, value: int) -> HeaderError:
        """The error for element `tag` whose value (at `value`, `length` bytes) is too long."""
        return HeaderError(
            f"element {_tag_text(tag)} length {length} runs past the end of the file "
            f"({self.size - value} bytes left)"
        )


class _InflatingReader(_Reader):
    """A deflated data set (PS3.5 A.5) inflated as far as the walk needs, never further.

    ``data`` holds the file's bytes up to the data set, then the inflated data set, so offsets
    stay those of a file; ``size`` is unknown (huge) until the stream ends.
    """

    __slots__ = ("finished", "inflater")

    def __init__(self, f: BinaryIO, head: bytes, start: int):
        self.f = f
        self.data = head[:start]
        self.size = _MAX_INFLATED_HEADER + 1
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.finished = False
        f.seek(start)

    def more(self, need: int) -> bool:
        if need <= len(self.data):
            return True
        if need > _MAX_INFLATED_HEADER:
            raise HeaderError(
                f"the deflated data set's header runs past {_MAX_INFLATED_HEADER >> 20} MiB "
                "inflated; not read"
            )
        parts = [self.data]
        have = len(self.data)
        # at least double what is there: a few joins, not one per element
        target = min(max(need, 2 * have), _MAX_INFLATED_HEADER)
        while have < target and not self.finished:
            tail = self.inflater.unconsumed_tail
            chunk = tail if tail else self.f.read(_CHUNK)
            if not chunk:
                self.finished = True
                break
            try:
                out = self.inflater.decompress(chunk, target - have)
            except zlib.error as exc:
                raise HeaderError(f"the deflated data set does not inflate: {exc}") from None
            parts.append(out)
            have += len(out)
            if self.inflater.eof:
                self.finished = True
        self.data = b"".join(parts)
        if self.finished:
            self.size = len(self.data)
        return need <= len(self.data)

    def past_end(self, tag: int, length: int, value: int) -> HeaderError:
        if self.finished:
            return HeaderError(
                f"element {_tag_text(tag)} length {length} runs past the end of the inflated "
                f"data set ({self.size - value} bytes left)"
            )
        return HeaderError(
            f"element {_tag_text(tag)} length {length} runs past the "
            f"{_MAX_INFLATED_HEADER >> 20} MiB of a deflated data set this reader inflates"
        )


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def walk_header(
    f: BinaryIO,
    size: int,
    *,
    keep: Collection[int] = frozenset(),
    keep_groups: Collection[int] = frozenset(),
    meta_keep: Collection[int] = frozenset({0x00020002, 0x00020003, 0x00020010}),
    syntaxes: Collection[str] | None = None,
) -> HeaderWalk | None:
    """Walk the header of the open binary file `f` (`size` bytes) up to its Pixel Data.

    Parameters
    ----------
    f : binary file
        Read from offset 0; left at an unspecified position.
    size : int
        The file size in bytes (reads never go past it).
    keep, keep_groups : collections of int
        Top-level tags (``group << 16 | element``) and whole groups whose raw values to keep.
    meta_keep : collection of int
        File meta tags to keep (default: Media Storage SOP Class / Instance UID; the Transfer
        Syntax UID is always kept).
    syntaxes : collection of str, optional
        Transfer syntaxes to walk; default: every known one (a deflated data set is inflated
        as far as its Pixel Data, and at most 64 MiB).

    Returns
    -------
    HeaderWalk or None
        None when the file needs pydicom: no DICM prefix, another transfer syntax, a VR
        encoding that contradicts it.

    Raises
    ------
    HeaderError
        When the file ends inside an element, an element's length runs past the end of the
        file, an undefined-length sequence or item is broken (no delimiter, something other
        than items, nesting deeper than :data:`MAX_NESTING`), or an explicit VR is unknown
        (the message names the tag and offset).
    """
    keep = frozenset(keep)
    keep_groups = frozenset(keep_groups)
    reader = _Reader(f, size)
    data = reader.data
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    try:
        meta, pos = _walk_meta(reader, frozenset(meta_keep) | {0x00020010})
        raw_ts = meta.get(0x00020010)
        if raw_ts is None:
            return None
        uid = raw_ts.decode("ascii").strip(" \x00")
        if syntaxes is not None and uid not in syntaxes:
            return None
        encoding = _encoding(uid)
        if encoding is None:
            return None
        ts, implicit, little = encoding
        walk = HeaderWalk(ts, implicit, little, meta, deflated=ts.is_deflated,
                          dataset_offset=pos)
        if walk.deflated:
            reader = _InflatingReader(f, reader.data, pos)
        _walk_dataset(reader, pos, walk, keep, keep_groups, False)
    except (_Unwalkable, UnicodeDecodeError):
        return None
    return walk


def _walk_meta(reader: _Reader, keep: frozenset[int]) -> tuple[dict[int, bytes], int]:
    """File meta elements (always Explicit VR Little Endian) and where the data set starts."""
    meta: dict[int, bytes] = {}
    pos = 132
    while True:
        if not reader.more(pos + 8):
            if pos < reader.size:
                raise HeaderError(f"file ends inside the file meta information at offset {pos}")
            raise HeaderError(f"file ends after the file meta information ({pos} bytes): no data set")
        data = reader.data
        group, elem = _LE_TAG(data, pos)
        if group != 0x0002:
            return meta, pos
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if not reader.more(pos + 12):
                raise HeaderError(f"file ends inside the file meta information at offset {pos}")
            (length,) = _LE_U32(reader.data, pos + 8)
            value = pos + 12
        elif vr in _SHORT_VRS:
            (length,) = _LE_U16(data, pos + 6)
            value = pos + 8
        else:
            raise _Unwalkable  # garbage VR in the file meta: pydicom's verdict
        tag = group << 16 | elem
        if length == _UNDEFINED:
            raise _Unwalkable
        end = value + length
        if end > reader.size:
            raise HeaderError(
                f"file meta element {_tag_text(tag)} length {length} runs past the end of the "
                f"file ({reader.size - value} bytes left)"
            )
        if tag in keep:
            reader.more(end)
            meta[tag] = reader.data[value:end]
        pos = end


def _walk_dataset(
    reader: _Reader,
    pos: int,
    walk: HeaderWalk,
    keep: frozenset[int],
    keep_groups: frozenset[int],
    keep_all: bool,
) -> None:
    implicit, little = walk.implicit, walk.little
    tag_at = _LE_TAG if little else _BE_TAG
    u16_at = _LE_U16 if little else _BE_U16
    u32_at = _LE_U32 if little else _BE_U32
    unpack = (tag_at, u16_at, u32_at)
    elements = walk.elements
    data = reader.data
    n = len(data)
    first = True
    while True:
        if pos + 12 > n:
            reader.more(pos + 12)
            data = reader.data
            n = len(data)
            if pos + 8 > n:
                if pos >= reader.size:
                    return  # the data set ends without Pixel Data
                raise HeaderError(f"file ends inside an element header at offset {pos}")
        group, elem = tag_at(data, pos)
        tag = group << 16 | elem
        if implicit:
            if first and data[pos + 4 : pos + 6] in _SHORT_VRS | _LONG_VRS:
                raise _Unwalkable  # explicit VR under an implicit syntax: pydicom copes
            (length,) = u32_at(data, pos + 4)
            value = pos + 8
            vr = b""
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise HeaderError(f"file ends inside element {_tag_text(tag)}'s header")
                (length,) = u32_at(data, pos + 8)
                value = pos + 12
            elif vr in _SHORT_VRS:
                (length,) = u16_at(data, pos + 6)
                value = pos + 8
            elif vr.isalpha() and vr.isupper():
                # two capitals where a VR belongs, but none PS3.5 defines: pydicom would guess
                # a length encoding and read what follows wrongly
                raise HeaderError(
                    f"element {_tag_text(tag)} at offset {pos} has unknown VR {vr.decode('ascii')!r}"
                )
            else:
                raise _Unwalkable  # not explicit VR after all (pydicom copes with such files)
        first = False
        if tag >= _FIRST_PIXEL_TAG and tag in _PIXEL_TAGS:
            walk.pixel_offset = pos
            walk.pixel_tag = tag
            walk.pixel_vr = vr.decode("ascii")
            walk.pixel_length = length
            walk.pixel_value_offset = value
            return
        if group == 0xFFFE:
            raise _Unwalkable  # an item or delimiter at the top level: pydicom's verdict
        if length == _UNDEFINED:
            if not implicit and vr not in (b"SQ", b"UN", b"OB", b"OW"):
                raise HeaderError(
                    f"element {_tag_text(tag)} with VR {vr.decode('ascii')} has undefined length"
                )
            if vr == b"UN":
                raise _Unwalkable  # implicit VR LE items inside (PS3.5 6.2.2): pydicom's job
            while True:
                try:
                    end, content_end = _skip_undefined(data, value, 0, unpack, implicit)
                    break
                except _Broken as exc:
                    raise HeaderError(
                        f"undefined-length element {_tag_text(tag)} at offset {pos}: {exc}"
                    ) from None
                except _NeedMore:
                    if not reader.more(len(data) + 1):
                        raise HeaderError(
                            f"undefined-length element {_tag_text(tag)} has no Sequence "
                            "Delimitation Item before the end of the file"
                        ) from None
                    reader.more(2 * len(data))
                    data = reader.data
                    n = len(data)
            if keep_all or tag in keep or group in keep_groups:
                elements[tag] = (_vr_text(tag, vr), data[value:content_end])
                walk.undefined_length.add(tag)
            pos = end
            continue
        end = value + length
        if end > reader.size:
            raise reader.past_end(tag, length, value)
        if keep_all or tag in keep or group in keep_groups:
            if end > n:
                if not reader.more(end):
                    raise HeaderError(f"file ends inside element {_tag_text(tag)}")
                data = reader.data
                n = len(data)
            elements[tag] = (_vr_text(tag, vr), data[value:end])
        pos = end


_VR_TEXT = {vr: vr.decode("ascii") for vr in _SHORT_VRS | _LONG_VRS}


def _vr_text(tag: int, vr: bytes) -> str:
    if vr:
        return _VR_TEXT[vr]
    try:
        return dictionary_VR(tag)[:2]
    except KeyError:
        return "UN"


def _skip_undefined(
    data: bytes, pos: int, depth: int, unpack: tuple[Any, Any, Any], implicit: bool
) -> tuple[int, int]:
    """(offset after, offset of the delimiter) for an undefined-length value starting at `pos`.

    The value is a run of items (a sequence, or encapsulated fragments); an undefined-length
    item runs to its Item Delimitation Item. Raises _NeedMore at the end of `data`.
    """
    if depth > _MAX_DEPTH:
        raise _Broken(f"sequences nested too deeply (more than {MAX_NESTING} levels)")
    tag_at, _, u32_at = unpack
    n = len(data)
    while True:
        if pos + 8 > n:
            raise _NeedMore
        group, elem = tag_at(data, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:
            (length,) = u32_at(data, pos + 4)
            value = pos + 8
            if tag == _SEQUENCE_END or tag == _ITEM_END:
                return value, pos
            if tag != _ITEM:
                raise _Broken(f"{_tag_text(tag)} at offset {pos} where an item belongs")
            if length == _UNDEFINED:
                pos = _skip_item(data, value, depth + 1, unpack, implicit)
            else:
                pos = value + length
            continue
        # a sequence holds items only: this is the data set after a missing delimiter
        raise _Broken(
            f"element {_tag_text(tag)} at offset {pos} where an item or the Sequence "
            "Delimitation Item belongs (is the delimiter missing?)"
        )


def _skip_item(
    data: bytes, pos: int, depth: int, unpack: tuple[Any, Any, Any], implicit: bool
) -> int:
    """Offset after an undefined-length item whose first element is at `pos`."""
    if depth > _MAX_DEPTH:
        raise _Broken(f"sequences nested too deeply (more than {MAX_NESTING} levels)")
    tag_at, u16_at, u32_at = unpack
    n = len(data)
    while True:
        if pos + 8 > n:
            raise _NeedMore
        group, elem = tag_at(data, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:
            if tag == _ITEM_END:
                return pos + 8
            raise _Broken(
                f"{_tag_text(tag)} at offset {pos} inside an undefined-length item, where its "
                "Item Delimitation Item (FFFE,E00D) belongs"
            )
        if implicit:
            (length,) = u32_at(data, pos + 4)
            value = pos + 8
            vr = b""
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise _NeedMore
                (length,) = u32_at(data, pos + 8)
                value = pos + 12
            elif vr in _SHORT_VRS:
                (length,) = u16_at(data, pos + 6)
                value = pos + 8
            else:
                raise _Unwalkable
        if length == _UNDEFINED:
            if vr == b"UN":
                raise _Unwalkable
            pos, _ = _skip_undefined(data, value, depth + 1, unpack, implicit)
        else:
            pos = value + length
            if pos > n:
                raise _NeedMore


def walk_items(
    raw: bytes, *, implicit: bool, little: bool
) -> list[dict[int, tuple[str, bytes]]] | None:
    """The items of a sequence value kept by :func:`walk_header`, one dict per item.

    Each item maps its top-level tags to (VR, raw value bytes), as ``HeaderWalk.elements``.
    Returns None where the items need pydicom (as :func:`walk_header`).

    Raises
    ------
    HeaderError
        When an item or element runs past the end of the sequence value.
    """
    tag_at = _LE_TAG if little else _BE_TAG
    unpack = (tag_at, _LE_U16 if little else _BE_U16, _LE_U32 if little else _BE_U32)
    items = []
    pos = 0
    n = len(raw)
    try:
        while pos < n:
            if pos + 8 > n:
                raise HeaderError("a sequence value ends inside an item header")
            group, elem = tag_at(raw, pos)
            tag = group << 16 | elem
            (length,) = unpack[2](raw, pos + 4)
            if tag != _ITEM:
                return None
            if length == _UNDEFINED:
                try:
                    end = _skip_item(raw, pos + 8, 1, unpack, implicit)
                except _NeedMore:
                    raise HeaderError("a sequence item has no Item Delimitation Item") from None
                except _Broken as exc:
                    raise HeaderError(f"a sequence item is broken: {exc}") from None
                content = raw[pos + 8 : end - 8]
            else:
                end = pos + 8 + length
                if end > n:
                    raise HeaderError(f"a sequence item of length {length} runs past its sequence")
                content = raw[pos + 8 : end]
            walk = HeaderWalk(UID(""), implicit, little, {})
            _walk_dataset(_Reader(io.BytesIO(content), len(content)), 0, walk, frozenset(),
                          frozenset(), True)
            items.append(walk.elements)
            pos = end
    except _Unwalkable:
        return None
    return items


def _value(vr: str, raw: bytes, little: bool) -> Any:
    end = "<" if little else ">"
    if vr in ("US", "SS"):
        n = len(raw) // 2
        values = struct.unpack(f"{end}{n}{'H' if vr == 'US' else 'h'}", raw[: 2 * n])
        return values[0] if n == 1 else list(values)
    if vr in ("UL", "SL"):
        n = len(raw) // 4
        values = struct.unpack(f"{end}{n}{'I' if vr == 'UL' else 'i'}", raw[: 4 * n])
        return values[0] if n == 1 else list(values)
    if vr in ("IS", "DS", "CS", "LO", "SH", "UI", "LT", "ST"):
        text = raw.decode("ascii", "replace").strip(" \x00")
        parts = text.split("\\")
        # numbers stay text, as pydicom's raw values do: int() of a malformed IS fails at use
        return parts[0] if len(parts) == 1 else parts
    return raw


def read_header(f: Any, size: int) -> tuple[HeaderValues, UID, int, int, str] | None:
    """Walk the header of the open file `f` (of `size` bytes).

    Returns
    -------
    (values, transfer syntax, offset of the Pixel Data element, its tag, its VR) or None
        None when this file needs pydicom (not Part 10, another transfer syntax, no pixel
        data, anything unexpected). Group 0028 values come back by keyword.

    Raises
    ------
    HeaderError
        When the header is certainly broken (see :func:`walk_header`): falling back to
        pydicom there would read a silently truncated data set or allocate a bogus length.
    """
    try:
        walk = walk_header(
            f, size, keep=_DECODER_TAGS, keep_groups=_DECODER_GROUPS, syntaxes=_DECODER_SYNTAXES
        )
    except (struct.error, ValueError):
        return None
    if walk is None or walk.pixel_offset is None:
        return None
    values = HeaderValues()
    for tag, (vr, raw) in walk.elements.items():
        if tag in walk.undefined_length:
            continue  # sequences: the decoder needs none
        keyword = keyword_for_tag(tag)
        if keyword:
            values[keyword] = _value(vr, raw, walk.little)
    return values, walk.transfer_syntax, walk.pixel_offset, walk.pixel_tag, walk.pixel_vr
