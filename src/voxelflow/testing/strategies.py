"""Hypothesis strategies for the kernel contract tests (imported by tests only: needs hypothesis).

Each strategy draws one complete call of a kernel as a small frozen "case" that can make
fresh output arrays, so one drawn case runs through every backend from the same state. The
draws lean on what breaks kernels: sizes of 0, 1 and just around vector and block widths,
every dtype, every Bits Stored, both byte orders, byte patterns at the sign and mask edges,
sources that start at odd addresses, 1-bit frames starting mid-byte, one-entry and
65536-entry palettes, and indices on both sides of the mapped range.
"""

from __future__ import annotations

from dataclasses import dataclass

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np

from ..kernels.reference.downsample import DOWNSAMPLE_DTYPES, downsampled_shape
from ..kernels.reference.palette import INDEX_DTYPES, LUT_DTYPES
from ..kernels.reference.unpack import WORD_DTYPES

__all__ = [
    "BitsCase",
    "DownsampleCase",
    "PaletteCase",
    "WordsCase",
    "downsample_cases",
    "edge_sizes",
    "palette_cases",
    "pixel_bytes",
    "unpack_bits_cases",
    "unpack_words_cases",
]

# Outputs start as this byte, so an element a backend forgets to write differs from the oracle.
SENTINEL = 0xA5

# Sizes where loops change gear: empty, one, around 8/16/32/64-element vectors and blocks.
_EDGE_SIZES = (
    0,
    1,
    2,
    3,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    129,
    255,
    257,
    1023,
    1025,
)

# Bytes at the edges of masks and signs: all clear, all set, sign bit alone, all but sign bit.
_EDGE_BYTES = (0x00, 0xFF, 0x80, 0x7F, 0x01, 0xFE, 0x55, 0xAA)


def edge_sizes(max_size: int) -> st.SearchStrategy[int]:
    """Array sizes 0..`max_size`, biased to the sizes where vector loops have remainders."""
    return st.one_of(
        st.sampled_from([s for s in _EDGE_SIZES if s <= max_size]), st.integers(0, max_size)
    )


def pixel_bytes(size: int) -> st.SearchStrategy[np.ndarray]:
    """`size` bytes: a background edge pattern (0xFF, 0x80, ...) with drawn bytes scattered in,
    or entirely random bytes from a drawn seed (cheap for large sizes)."""
    patterned = hnp.arrays(
        np.uint8, size, elements=st.integers(0, 255), fill=st.sampled_from(_EDGE_BYTES)
    )
    seeded = st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    )
    return st.one_of(patterned, seeded)


def _at_offset(data: np.ndarray, offset: int) -> np.ndarray:
    """`data` copied into a fresh buffer starting `offset` bytes past an aligned address."""
    buf = np.empty(data.size + offset, np.uint8)
    buf[offset:] = data
    return buf[offset:]


def _sentinel_array(shape: int | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    out = np.empty(shape, dtype)
    out.view(np.uint8).reshape(-1)[:] = SENTINEL
    return out


@dataclass(frozen=True)
class WordsCase:
    """One ``unpack_words(src, out, bits_stored, byteswap)`` call.

    ``in_place``: the call unpacks `src` inside `out`'s own bytes (``src = out.view(uint8)``).
    """

    src: np.ndarray
    dtype: np.dtype
    size: int
    bits_stored: int
    byteswap: bool
    in_place: bool

    def new_out(self) -> np.ndarray:
        """A fresh output array (sentinel bytes, or the source bytes when in place)."""
        out = _sentinel_array(self.size, self.dtype)
        if self.in_place:
            out.view(np.uint8)[:] = self.src[: out.nbytes]
        return out

    def call_args(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """The kernel's arguments, writing into `out` (from :meth:`new_out`)."""
        src = out.view(np.uint8) if self.in_place else self.src
        return src, out, self.bits_stored, self.byteswap


def _edge_words(dtype: np.dtype, bits: int) -> list[int]:
    """Words (as unsigned ints of the dtype's width) at the edges of `bits` stored bits."""
    width = 8 * dtype.itemsize
    full = (1 << width) - 1
    values = {0, 1, full, 1 << (width - 1), (1 << (width - 1)) - 1}
    values |= {(1 << bits) - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1, full ^ ((1 << bits) - 1)}
    values |= {full ^ (1 << (bits - 1)), (1 << bits) & full}
    return sorted(values)


@st.composite
def unpack_words_cases(draw: st.DrawFn, max_size: int = 1100) -> WordsCase:
    """Calls of ``unpack_words`` across every output dtype, Bits Stored and byte order."""
    dtype = draw(st.sampled_from(WORD_DTYPES))
    width = 8 * dtype.itemsize
    size = draw(edge_sizes(max_size))
    bits = draw(st.one_of(st.integers(1, width), st.sampled_from([1, width - 1, width])))
    byteswap = draw(st.booleans())
    nbytes = size * dtype.itemsize
    if draw(st.booleans()):
        data = draw(pixel_bytes(nbytes))
    else:
        # Whole words at the mask and sign edges, in the byte order the call declares.
        words = draw(
            hnp.arrays(
                f"u{dtype.itemsize}", size, elements=st.sampled_from(_edge_words(dtype, bits))
            )
        )
        data = words.astype(f"{'>' if byteswap else '<'}u{dtype.itemsize}").view(np.uint8)
    in_place = draw(st.booleans())
    if not in_place:
        # Trailing bytes the kernel must ignore, and a start at an odd address.
        data = np.concatenate([data, draw(pixel_bytes(draw(st.integers(0, dtype.itemsize))))])
        data = _at_offset(data, draw(st.integers(0, 7)))
    return WordsCase(data, dtype, size, bits, byteswap, in_place)


@dataclass(frozen=True)
class BitsCase:
    """One ``unpack_bits(src, out, bit_offset)`` call."""

    src: np.ndarray
    size: int
    bit_offset: int

    def new_out(self) -> np.ndarray:
        """A fresh output array of sentinel bytes."""
        return _sentinel_array(self.size, np.dtype(np.uint8))

    def call_args(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The kernel's arguments, writing into `out`."""
        return self.src, out, self.bit_offset


@st.composite
def unpack_bits_cases(draw: st.DrawFn, max_size: int = 2100) -> BitsCase:
    """Calls of ``unpack_bits``: frames of 1-bit pixels starting at any bit of any byte."""
    size = draw(edge_sizes(max_size))
    offset = draw(st.one_of(st.integers(0, 7), st.integers(8, 8 * 40)))
    nbytes = (offset + size + 7) // 8 + draw(st.integers(0, 2))
    data = draw(pixel_bytes(nbytes))
    return BitsCase(_at_offset(data, draw(st.integers(0, 3))), size, offset)


@dataclass(frozen=True)
class PaletteCase:
    """One ``palette_lookup(indices, lut, first_mapped, out)`` call."""

    indices: np.ndarray
    lut: np.ndarray
    first_mapped: int

    def new_out(self) -> np.ndarray:
        """A fresh output array of sentinel bytes."""
        return _sentinel_array((self.indices.size, 3), self.lut.dtype)

    def call_args(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """The kernel's arguments, writing into `out`."""
        return self.indices, self.lut, self.first_mapped, out


_ENTRIES = (1, 2, 3, 255, 256, 257, 4095, 4096, 65535, 65536)
_FIRST_MAPPED = (
    0,
    1,
    -1,
    255,
    256,
    4096,
    -32768,
    32767,
    65535,
    65536,
    -(2**31),
    2**31 - 1,
    2**40,
    -(2**40),
)


@st.composite
def palette_cases(draw: st.DrawFn, max_size: int = 1100) -> PaletteCase:
    """Calls of ``palette_lookup``: tables of 1 to 65536 entries, first mapped values below,
    at and above zero, and indices below, inside and above the mapped range."""
    lut_dtype = draw(st.sampled_from(LUT_DTYPES))
    entries = draw(st.one_of(st.sampled_from(_ENTRIES), st.integers(1, 300)))
    seed = draw(st.integers(0, 2**32 - 1))
    lut = np.random.default_rng(seed).integers(
        0, np.iinfo(lut_dtype).max, (entries, 3), dtype=lut_dtype, endpoint=True
    )
    index_dtype = draw(st.sampled_from(INDEX_DTYPES))
    info = np.iinfo(index_dtype)
    first = draw(st.one_of(st.sampled_from(_FIRST_MAPPED), st.integers(-70_000, 70_000)))
    # Values around both ends of the mapped range first_mapped .. first_mapped + entries - 1,
    # clipped to what the index dtype can hold, plus anything the dtype can hold.
    near = [
        v
        for v in (
            first - 2,
            first - 1,
            first,
            first + 1,
            first + entries - 2,
            first + entries - 1,
            first + entries,
            first + entries + 1,
        )
        if info.min <= v <= info.max
    ]
    elements = st.integers(int(info.min), int(info.max))
    if near:
        elements = st.one_of(st.sampled_from(near), elements)
    extremes = st.sampled_from([int(info.min), int(info.max), 0, *near])
    indices = draw(hnp.arrays(index_dtype, edge_sizes(max_size), elements=elements, fill=extremes))
    return PaletteCase(indices, lut, first)


@dataclass(frozen=True)
class DownsampleCase:
    """One ``downsample_mean2(src, out, step)`` call."""

    src: np.ndarray
    step: tuple[int, int, int]

    def new_out(self) -> np.ndarray:
        """A fresh output array of sentinel bytes."""
        return _sentinel_array(downsampled_shape(self.src.shape, self.step), self.src.dtype)

    def call_args(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        """The kernel's arguments, writing into `out`."""
        return self.src, out, self.step


# Lengths of z and y (where odd ends replicate their edge) and of x (where vector loops also
# leave remainders).
_AXIS_SIZES = (0, 1, 2, 3, 4, 5, 7, 8)
_ROW_SIZES = (0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129)


def _float_specials(dtype: np.dtype) -> list[float]:
    info = np.finfo(dtype)
    return [
        0.0,
        -0.0,
        1.0,
        -1.5,
        float("nan"),
        float("inf"),
        float("-inf"),
        float(info.max),
        float(-info.max),
        float(info.tiny),
        float(info.tiny) / 4,  # subnormal
        float(info.eps),
    ]


@st.composite
def downsample_cases(draw: st.DrawFn, max_size: int = 4000) -> DownsampleCase:
    """Calls of ``downsample_mean2``: every dtype, odd and even lengths on each axis, integers at
    their extremes (sums that would overflow the dtype), floats with NaN, infinities, the
    largest finite values (sums that overflow to infinity), subnormals and signed zeros."""
    dtype = draw(st.sampled_from(DOWNSAMPLE_DTYPES))
    nz = draw(st.one_of(st.sampled_from(_AXIS_SIZES), st.integers(0, 12)))
    ny = draw(st.one_of(st.sampled_from(_AXIS_SIZES), st.integers(0, 12)))
    nx = draw(st.one_of(st.sampled_from(_ROW_SIZES), st.integers(0, 200)))
    while nz * ny * nx > max_size:
        nz, ny = max(1, nz // 2), max(1, ny // 2)
        nx = min(nx, max_size)
    shape = (nz, ny, nx)
    step = tuple(draw(st.sampled_from((1, 2))) for _ in range(3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        specials = _float_specials(dtype)
        values = rng.normal(0, 1e3, shape).astype(dtype)
        mask = rng.random(shape) < draw(st.sampled_from((0.0, 0.05, 0.5)))
        values[mask] = rng.choice(np.array(specials, dtype), int(mask.sum()))
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        # blocks of extremes: sums far outside the dtype, and halves (ties) at both ends
        mask = rng.random(shape) < draw(st.sampled_from((0.0, 0.3, 0.9)))
        values[mask] = rng.choice(
            np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2], dtype), int(mask.sum())
        )
    return DownsampleCase(values, step)  # type: ignore[arg-type]
