"""PALETTE COLOR lookup tables (PS3.3 C.7.6.3.1.5, C.7.9): parse, expand, apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import kernels
from ..errors import DecodeError
from .pixel_info import PixelInfo

__all__ = ["PaletteLUT", "palette_lut"]

_CHANNELS = ("Red", "Green", "Blue")
_MAX_ENTRIES = 65536


@dataclass(frozen=True)
class PaletteLUT:
    """An RGB table of shape (entries, 3) and the stored value mapped to its first row."""

    lut: np.ndarray
    first_mapped: int

    def apply(self, indices: np.ndarray, out: np.ndarray, source: str, backend: str | None) -> None:
        """Write ``lut[indices - first_mapped]`` into `out` (shape indices.shape + (3,)).

        Raises
        ------
        DecodeError
            If a stored value lies outside the table (the file and table disagree).
        """
        flat = np.ascontiguousarray(indices).reshape(-1)
        if flat.size:
            lo, hi = int(flat.min()), int(flat.max())
            last = self.first_mapped + len(self.lut) - 1
            if lo < self.first_mapped or hi > last:
                raise DecodeError(
                    f"palette index {lo if lo < self.first_mapped else hi} is outside the "
                    f"palette's {len(self.lut)} entries ({self.first_mapped}..{last})",
                    source=source,
                )
        kernels.get("palette_lookup", backend)(flat, self.lut, self.first_mapped, out.reshape(-1, 3))


def _descriptor(ds: Any, channel: str, info: PixelInfo) -> tuple[int, int, int]:
    keyword = f"{channel}PaletteColorLookupTableDescriptor"
    value = ds.get(keyword)
    if value is None:
        raise DecodeError(f"PALETTE COLOR image without ({keyword})", source=info.source)
    try:
        entries, first, bits = (int(v) for v in value)
    except (TypeError, ValueError):
        raise DecodeError(f"({keyword}) must hold 3 integers, got {value!r}", source=info.source) from None
    entries = entries or _MAX_ENTRIES  # PS3.3 C.7.6.3.1.5: 0 means 2^16
    if info.pixel_representation and first > 32767:
        first -= 65536  # US-encoded descriptor of signed stored values
    if bits not in (8, 16):
        raise DecodeError(f"({keyword}) declares {bits} bits per entry, must be 8 or 16", source=info.source)
    return entries, first, bits


def palette_lut(ds: Any, info: PixelInfo) -> PaletteLUT:
    """Build the RGB palette of a PALETTE COLOR dataset (plain or segmented LUT data).

    Raises
    ------
    DecodeError
        On missing or inconsistent descriptors, or LUT data whose length disagrees with
        its descriptor.
    """
    descs = [_descriptor(ds, c, info) for c in _CHANNELS]
    if len({d[:2] for d in descs}) != 1:
        raise DecodeError(f"palette descriptors disagree: {descs}", source=info.source)
    entries, first, bits = descs[0]
    little = info.transfer_syntax.is_little_endian
    tables = []
    for channel, (_, _, ch_bits) in zip(_CHANNELS, descs):
        plain = ds.get(f"{channel}PaletteColorLookupTableData")
        segmented = ds.get(f"Segmented{channel}PaletteColorLookupTableData")
        if plain is not None:
            data = bytes(plain)
            if len(data) in (entries, entries + 1) and ch_bits == 8:
                table = np.frombuffer(data, np.uint8, entries)
            elif len(data) == 2 * entries:
                table = np.frombuffer(data, "<u2" if little else ">u2").astype(np.uint16)
            else:
                raise DecodeError(
                    f"({channel}PaletteColorLookupTableData) holds {len(data)} bytes for "
                    f"{entries} entries of {ch_bits} bits",
                    source=info.source,
                )
        elif segmented is not None:
            words = np.frombuffer(
                bytes(segmented), np.uint8 if ch_bits == 8 else ("<u2" if little else ">u2")
            )
            table = np.asarray(
                _expand_segmented(words.astype(np.int64), info.source, wide=ch_bits == 16), f"u{ch_bits // 8}"
            )
            if table.size != entries:
                raise DecodeError(
                    f"(Segmented{channel}PaletteColorLookupTableData) expands to {table.size} "
                    f"entries, the descriptor says {entries}",
                    source=info.source,
                )
        else:
            raise DecodeError(f"PALETTE COLOR image without {channel} palette data", source=info.source)
        tables.append(table)
    dtypes = {t.dtype.itemsize for t in tables}
    dtype = np.uint16 if 2 in dtypes else np.uint8
    return PaletteLUT(np.ascontiguousarray(np.stack([t.astype(dtype) for t in tables], axis=1)), first)


def _expand_segmented(
    words: np.ndarray,
    source: str,
    *,
    start: int = 0,
    max_segments: int | None = None,
    last: int | None = None,
    wide: bool = True,
) -> list[int]:
    """Expand Segmented Palette Color LUT Data (PS3.3 C.7.9.2), refusing hostile tables.

    Discrete (opcode 0), linear (1) and indirect (2) segments. The output is capped at 2^16
    entries and indirect segments may not nest, so a crafted table can neither loop nor
    explode. `max_segments`/`last` are set when expanding an indirect segment's target.
    """
    lut: list[int] = []
    pos, segments, n = start, 0, len(words)
    nested = max_segments is not None
    # a trailing pad word may follow the last segment
    while pos + 1 < n and (max_segments is None or segments < max_segments):
        opcode, length = int(words[pos]), int(words[pos + 1])
        pos += 2
        if opcode == 0:
            if pos + length > n:
                raise DecodeError("segmented palette: discrete segment runs past the data", source=source)
            lut.extend(int(v) for v in words[pos : pos + length])
            pos += length
        elif opcode == 1:
            y0 = lut[-1] if lut else last
            if y0 is None or pos >= n:
                raise DecodeError("segmented palette: linear segment without a start or end value", source=source)
            y1 = int(words[pos])
            pos += 1
            if length:
                step = (y1 - y0) / length
                lut.extend(int(v) for v in np.around(np.linspace(y0 + step, y1, length)))
        elif opcode == 2:
            width = 2 if wide else 4
            if nested or not lut or pos + width > n:
                raise DecodeError("segmented palette: misplaced, nested or truncated indirect segment", source=source)
            parts = [int(w) for w in words[pos : pos + width]]
            offset = parts[0] | parts[1] << 16 if wide else parts[0] | parts[1] << 8 | parts[2] << 16 | parts[3] << 24
            pos += width
            if offset >= n:
                raise DecodeError(f"segmented palette: indirect offset {offset} past the data", source=source)
            lut.extend(
                _expand_segmented(words, source, start=offset, max_segments=length, last=lut[-1], wide=wide)
            )
        else:
            raise DecodeError(f"segmented palette: unknown segment opcode {opcode}", source=source)
        segments += 1
        if len(lut) > _MAX_ENTRIES:
            raise DecodeError("segmented palette expands past 65536 entries", source=source)
    if max_segments is not None and segments < max_segments:
        raise DecodeError("segmented palette: indirect segment runs past the data", source=source)
    return lut
