"""Encapsulated Pixel Data (PS3.5 A.4): items, the Basic Offset Table, and frames.

pydicom has equivalent generators, but they trust the framing; here every tag, length and
offset is checked against the buffer so a hostile file yields a DecodeError naming the item,
never a wrong frame or a read past the end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = ["Encapsulated", "frame_fragments", "parse_items"]

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


_BOT = "(7FE0,0010) Basic Offset Table"
_EOT = "(7FE0,0001) Extended Offset Table"
_EOT_LENGTHS = "(7FE0,0002) Extended Offset Table Lengths"
_NFRAMES = "(0028,0008) Number of Frames"


def _ends_with_eoi(buf: bytes | memoryview, start: int, length: int) -> bool:
    # JPEG-family codestreams end with EOI (FFD9); a fragment may add one padding byte
    tail = bytes(buf[start + max(0, length - 3) : start + length])
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9")


def _table(raw: bytes, name: str, source: str) -> list[int]:
    if len(raw) % 8:
        raise DecodeError(f"{name} is {len(raw)} bytes, not a multiple of 8 (64-bit entries)", source=source)
    return list(struct.unpack(f"<{len(raw) // 8}Q", raw))


def _check_offset(enc: Encapsulated, f: int, offset: int, previous: int | None, table: str,
                  source: str) -> int:
    """The index of the fragment whose item tag lies at `offset` (frame `f`'s first)."""
    _, last_length = enc.fragments[-1]
    end = enc.item_positions[-1] + 8 + last_length  # bytes of fragment items
    if f == 0 and offset != 0:
        raise DecodeError(f"{table} gives frame 0 the offset {offset}; the first frame starts at 0",
                          source=source, frame=0)
    if previous is not None and offset <= previous:
        raise DecodeError(
            f"{table} offset {offset} is not greater than frame {f - 1}'s {previous}: the offsets "
            "must increase",
            source=source, frame=f,
        )
    if offset >= end:
        raise DecodeError(
            f"{table} offset {offset} points past the end of the fragments ({end} bytes of items)",
            source=source, frame=f,
        )
    positions = enc.item_positions
    lo, hi = 0, len(positions)
    while hi - lo > 1:  # the last item starting at or before `offset`
        mid = (lo + hi) // 2
        if positions[mid] <= offset:
            lo = mid
        else:
            hi = mid
    if positions[lo] != offset:
        raise DecodeError(
            f"{table} offset {offset} lands inside fragment {lo} (its item spans bytes "
            f"{positions[lo]}..{positions[lo] + 8 + enc.fragments[lo][1]}), not on an item tag (FFFE,E000)",
            source=source, frame=f,
        )
    return lo


def _bounds(enc: Encapsulated, offsets: list[int] | tuple[int, ...], nframes: int, table: str,
            count_name: str, source: str) -> list[int]:
    """Fragment index of each frame's first fragment, from a table of item offsets."""
    if len(offsets) != nframes:
        raise DecodeError(f"{count_name} has {len(offsets)} entries for {_NFRAMES} {nframes}", source=source)
    bounds: list[int] = []
    previous: int | None = None
    for f, offset in enumerate(offsets):
        bounds.append(_check_offset(enc, f, int(offset), previous, table, source))
        previous = int(offset)
    return bounds


def frame_fragments(
    enc: Encapsulated,
    nframes: int,
    buf: bytes | memoryview,
    source: str,
    *,
    extended: tuple[bytes, bytes | None] | None = None,
    one_fragment_per_frame: bool = False,
    start_markers: tuple[bytes, ...] | None = None,
) -> list[list[tuple[int, int]]]:
    """Group fragments into frames: the fragments of each frame as (start, length).

    PS3.5 A.4: every frame has at least one fragment and no fragment holds data of two frames.
    An offset table that is present (the Basic Offset Table, or the Extended Offset Table
    (7FE0,0001) / (7FE0,0002) of PS3.3 C.7.6.3.1.8, which allows one fragment per frame)
    must agree with the fragments exactly: a table that disagrees is an error, never a
    guess. Without a table the frames are derived only where that is exact: as many
    fragments as frames (one each), a single frame (all of them), or, for the JPEG family
    (`start_markers` given), each frame's fragments running from a start-of-image marker to
    an end-of-image marker (FFD9).

    Parameters
    ----------
    extended : (bytes, bytes or None), optional
        The raw values of (7FE0,0001) and (7FE0,0002), when (7FE0,0001) is present.
    one_fragment_per_frame : bool
        RLE Lossless (PS3.5 G.2: each frame is one fragment).
    start_markers : tuple of bytes, optional
        The bytes a codestream starts with, for syntaxes whose frames end with FFD9.

    Raises
    ------
    DecodeError
        Naming the table's tag and the frame, when fewer fragments than frames exist, a table
        disagrees with the fragments, or the frames cannot be told apart exactly.
    """
    frags = list(enc.fragments)
    if len(frags) < nframes:
        raise DecodeError(
            f"{len(frags)} fragments for {nframes} frames ({_NFRAMES}): every frame needs at "
            f"least one fragment",
            source=source, frame=len(frags),
        )

    tables: list[tuple[str, list[int]]] = []
    eot_lengths: list[int] | None = None
    if extended is not None:
        raw_offsets, raw_lengths = extended
        if raw_lengths is None:
            raise DecodeError(f"{_EOT} is present without {_EOT_LENGTHS}", source=source)
        ext_offsets = _table(raw_offsets, _EOT, source)
        eot_lengths = _table(raw_lengths, _EOT_LENGTHS, source)
        if len(ext_offsets) != len(eot_lengths):
            raise DecodeError(
                f"{_EOT} has {len(ext_offsets)} entries, {_EOT_LENGTHS} {len(eot_lengths)}",
                source=source,
            )
        bounds = _bounds(enc, ext_offsets, nframes, _EOT, _EOT, source)
        if len(frags) != nframes:
            # PS3.3 C.7.6.3.1.8: the Extended Offset Table is for one fragment per frame
            raise DecodeError(
                f"{_EOT} with {len(frags)} fragments for {nframes} frames: it allows only one "
                "fragment per frame",
                source=source,
            )
        tables.append((_EOT, bounds))
    if enc.offsets:
        tables.append((_BOT, _bounds(enc, enc.offsets, nframes, _BOT, _BOT, source)))
    if len(tables) == 2 and tables[0][1] != tables[1][1]:
        raise DecodeError(f"{_BOT} and {_EOT} disagree on where the frames start", source=source)

    if tables:
        table, bounds = tables[0]
        ends = [*bounds[1:], len(frags)]
        groups = [frags[a:b] for a, b in zip(bounds, ends)]
    elif len(frags) == nframes or nframes == 1:
        table = ""
        groups = [[f] for f in frags] if len(frags) == nframes else [frags]
    elif one_fragment_per_frame:
        raise DecodeError(
            f"{len(frags)} fragments for {nframes} RLE frames without an offset table; RLE needs "
            "one fragment per frame",
            source=source,
        )
    elif start_markers is None:
        raise DecodeError(
            f"{len(frags)} fragments for {nframes} frames and no offset table ({_BOT} empty, no "
            f"{_EOT}): the frame boundaries cannot be derived for this transfer syntax",
            source=source,
        )
    else:
        table = ""
        groups = _by_markers(frags, nframes, buf, source, start_markers)

    if one_fragment_per_frame:
        for f, group in enumerate(groups):
            if len(group) != 1:
                raise DecodeError(
                    f"{table} gives the frame {len(group)} fragments; RLE needs one fragment per frame",
                    source=source, frame=f,
                )
    if eot_lengths is not None:
        trimmed = []
        for f, ((start, length),) in enumerate(groups):
            declared = eot_lengths[f]
            # pydicom writes the padded (even) length; the unpadded one is as good
            if declared not in (length, length - 1):
                raise DecodeError(
                    f"{_EOT_LENGTHS} gives the frame {declared} bytes; its fragment holds {length}"
                    + (" (it runs past the data)" if declared > length else ""),
                    source=source, frame=f,
                )
            trimmed.append([(start, declared)])
        groups = trimmed
    return groups


def _by_markers(frags: list[tuple[int, int]], nframes: int, buf: bytes | memoryview, source: str,
                start_markers: tuple[bytes, ...]) -> list[list[tuple[int, int]]]:
    """Frames from the markers: each starts with a start-of-image marker and its last fragment
    ends with the end-of-image marker (FFD9); anything else is ambiguous and refused."""
    grouped: list[list[tuple[int, int]]] = [[]]
    for frag in frags:
        grouped[-1].append(frag)
        if _ends_with_eoi(buf, *frag):
            grouped.append([])
    if not grouped[-1]:
        grouped.pop()
    where = (f"{len(frags)} fragments for {nframes} frames and no offset table ({_BOT} empty, "
             f"no {_EOT})")
    if len(grouped) != nframes:
        raise DecodeError(
            f"{where}: the end-of-image markers (FFD9) end {len(grouped)} frames, not {_NFRAMES} "
            f"{nframes}; the frame boundaries cannot be derived",
            source=source,
        )
    for f, group in enumerate(grouped):
        start, length = group[0]
        if not any(bytes(buf[start : start + min(length, len(m))]) == m for m in start_markers):
            raise DecodeError(
                f"{where}: the fragments the end-of-image markers give this frame do not start "
                "with a start-of-image marker; the frame boundaries cannot be derived",
                source=source, frame=f,
            )
    return grouped
