"""Encapsulated Pixel Data (PS3.5 A.4): items, the Basic Offset Table, and frames.

pydicom has equivalent generators, but they trust the framing; here every tag, length and
offset is checked against the buffer so a hostile file yields a DecodeError naming the item,
never a wrong frame or a read past the end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = ["Encapsulated", "parse_items", "frame_fragments"]

_ITEM = 0xE000FFFE  # (FFFE,E000) read as one little-endian uint32: group first
_SEQ_DELIMITER = 0xE0DDFFFE
_UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class Encapsulated:
    """Basic Offset Table entries and fragments as (start, length) into the buffer."""

    offsets: tuple[int, ...]
    fragments: tuple[tuple[int, int], ...]
    # byte position (relative to the first fragment item) of each fragment item's tag
    item_positions: tuple[int, ...]


def _tag(value: int) -> str:
    return f"({value & 0xFFFF:04X},{value >> 16:04X})"


def parse_items(buf: bytes | memoryview, source: str, *, delimited: bool = False) -> Encapsulated:
    """Split encapsulated Pixel Data into the Basic Offset Table and fragments.

    `buf` is the value of (7FE0,0010) starting at the Basic Offset Table item. Read from a
    file (`delimited`), it must end with the Sequence Delimitation Item: a file cut inside
    its pixel data is an error, not fewer frames. A value pydicom already read ends at the
    last fragment.

    Raises
    ------
    DecodeError
        On a wrong item tag, a Basic Offset Table length that is not a multiple of 4, an
        undefined or out-of-range item length, or no fragment at all.
    """
    size = len(buf)
    if size < 8:
        raise DecodeError(f"encapsulated Pixel Data is {size} bytes, too short for the Basic Offset Table item", source=source)
    tag, length = struct.unpack_from("<II", buf, 0)
    if tag != _ITEM:
        raise DecodeError(
            f"encapsulated Pixel Data starts with tag {_tag(tag)}, expected the Basic Offset "
            "Table item (FFFE,E000)",
            source=source,
        )
    if length == _UNDEFINED or length % 4:
        raise DecodeError(f"Basic Offset Table length {length} is not a multiple of 4", source=source)
    if 8 + length > size:
        raise DecodeError(f"Basic Offset Table length {length} runs past the {size}-byte Pixel Data", source=source)
    offsets = struct.unpack_from(f"<{length // 4}I", buf, 8)

    fragments: list[tuple[int, int]] = []
    positions: list[int] = []
    first_item = pos = 8 + length
    delimiter_found = False
    while pos + 8 <= size:
        tag, length = struct.unpack_from("<II", buf, pos)
        if tag == _SEQ_DELIMITER:
            delimiter_found = True
            break
        if tag != _ITEM:
            raise DecodeError(
                f"fragment {len(fragments)} at byte {pos} has tag {_tag(tag)}, expected item (FFFE,E000)",
                source=source,
            )
        if length == _UNDEFINED:
            raise DecodeError(f"fragment {len(fragments)} has undefined length", source=source)
        if pos + 8 + length > size:
            raise DecodeError(
                f"fragment {len(fragments)} length {length} runs past the end of the Pixel Data "
                f"({size - pos - 8} bytes left)",
                source=source,
            )
        positions.append(pos - first_item)
        fragments.append((pos + 8, length))
        pos += 8 + length
    else:
        if pos != size:
            raise DecodeError(f"{size - pos} stray bytes after the last fragment item", source=source)
    if delimited and not delimiter_found:
        raise DecodeError(
            "encapsulated Pixel Data ends without its Sequence Delimitation Item (FFFE,E0DD): "
            "the file is truncated",
            source=source,
        )
    if not fragments:
        raise DecodeError("encapsulated Pixel Data holds no fragment", source=source)
    return Encapsulated(tuple(offsets), tuple(fragments), tuple(positions))


def _ends_with_eoi(buf: bytes | memoryview, start: int, length: int) -> bool:
    # JPEG-family codestreams end with EOI (FFD9); a fragment may add one padding byte
    tail = bytes(buf[start + max(0, length - 3) : start + length])
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9")


def frame_fragments(
    enc: Encapsulated,
    nframes: int,
    buf: bytes | memoryview,
    source: str,
    *,
    extended: tuple[list[int], list[int]] | None = None,
    one_fragment_per_frame: bool = False,
) -> list[list[tuple[int, int]]]:
    """Group fragments into frames: the fragments of each frame as (start, length).

    Uses, in this order, one fragment per frame, the Extended Offset Table, the Basic Offset
    Table, and (JPEG family only) the EOI marker ending each frame's last fragment.

    Raises
    ------
    DecodeError
        When fewer fragments than frames exist, or a table disagrees with the fragments.
    """
    frags = list(enc.fragments)
    if len(frags) < nframes:
        raise DecodeError(f"{len(frags)} fragments for {nframes} frames (Number of Frames)", source=source)
    if len(frags) == nframes:
        return [[f] for f in frags]
    if one_fragment_per_frame:
        # PS3.5 G.1: each RLE frame is exactly one fragment
        raise DecodeError(f"{len(frags)} fragments for {nframes} RLE frames; RLE needs one fragment per frame", source=source)
    if nframes == 1:
        return [frags]

    if extended is not None:
        ext_offsets, ext_lengths = extended
        if len(ext_offsets) != nframes or len(ext_lengths) != nframes:
            raise DecodeError(
                f"Extended Offset Table has {len(ext_offsets)} offsets and {len(ext_lengths)} "
                f"lengths for {nframes} frames",
                source=source,
            )
        starts = ext_offsets
    elif enc.offsets:
        if len(enc.offsets) != nframes:
            raise DecodeError(
                f"Basic Offset Table has {len(enc.offsets)} entries for {nframes} frames", source=source
            )
        starts = list(enc.offsets)
    else:
        starts = []

    if starts:
        index = {p: i for i, p in enumerate(enc.item_positions)}
        if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
            raise DecodeError("frame offsets do not start at 0 and increase strictly", source=source)
        bounds = []
        for f, start in enumerate(starts):
            if start not in index:
                raise DecodeError(f"frame {f} offset {start} does not point at a fragment item", source=source)
            bounds.append(index[start])
        bounds.append(len(frags))
        return [frags[a:b] for a, b in zip(bounds, bounds[1:])]

    grouped: list[list[tuple[int, int]]] = [[]]
    for frag in frags:
        grouped[-1].append(frag)
        if _ends_with_eoi(buf, *frag):
            grouped.append([])
    if not grouped[-1]:
        grouped.pop()
    if len(grouped) != nframes:
        raise DecodeError(
            f"found {len(grouped)} frames (by JPEG end-of-image markers) in {len(frags)} fragments, "
            f"expected {nframes}",
            source=source,
        )
    return grouped
