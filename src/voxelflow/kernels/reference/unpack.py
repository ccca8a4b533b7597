"""Unpacking raw DICOM pixel bytes into typed arrays: the oracle and the shared argument checks.

``unpack_words`` turns native (uncompressed) pixel bytes into words of 8, 16 or 32 bits, keeps
only the ``bits_stored`` low bits of each and sign-extends them for signed data: PS3.5 8.1.1
says the bits above the High Bit are not pixel data (they may hold overlays or garbage), so
they are dropped, exactly as pydicom's left-shift/right-shift correction does. Float words
(Float Pixel Data, Double Float Pixel Data) are copied bit for bit. ``unpack_bits`` expands
BitsAllocated 1 data (PS3.5 8.1.1: the first pixel is the least significant bit of the
first byte) into one byte per pixel; frames after the first need not start on a byte boundary.

The ``check_*`` functions are the one place where every backend validates its arguments;
each native backend calls them before entering its typed loop, so the three backends raise
the same :class:`~voxelflow.errors.ParameterError` for the same bad call.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..._threads import parallel_threads
from ...errors import ParameterError

__all__ = [
    "WORD_DTYPES",
    "BitsPlan",
    "WordsPlan",
    "check_unpack_bits",
    "check_unpack_words",
    "unpack_bits",
    "unpack_words",
]

#: dtypes ``unpack_words`` writes.
WORD_DTYPES = tuple(
    np.dtype(t)
    for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)


class WordsPlan(NamedTuple):
    """What a backend needs to run ``unpack_words``, after :func:`check_unpack_words`.

    ``words`` is `out` seen as unsigned words of its itemsize (``in_place``: `src` is its
    bytes, from the same address; any other overlap is refused); each word becomes
    ``((w & mask) ^ sign) - sign`` (modulo 2**bits of the word), with ``sign`` the sign bit
    for signed data with fewer bits stored than allocated and 0 otherwise: this both drops
    the bits above High Bit and sign-extends. Floats have an all-ones mask and no sign.
    """

    src: np.ndarray
    words: np.ndarray
    mask: int
    sign: int
    swap: bool
    threads: int
    in_place: bool

    @property
    def is_copy(self) -> bool:
        """Whether the result is the source bytes unchanged (a memcpy)."""
        return (
            not self.swap and self.sign == 0 and self.mask == (1 << (8 * self.words.itemsize)) - 1
        )


class BitsPlan(NamedTuple):
    """What a backend needs to run ``unpack_bits``, after :func:`check_unpack_bits`."""

    src: np.ndarray
    out: np.ndarray
    bit_offset: int
    threads: int


def check_integer(value: Any, name: str, kernel: str) -> int:
    """`value` as an int; booleans and non-integers raise ParameterError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{kernel}: {name} must be an integer, got {value!r}")
    return int(value)


def check_array(
    arr: Any,
    name: str,
    kernel: str,
    *,
    ndim: int,
    dtypes: tuple[np.dtype, ...],
    writeable: bool = False,
) -> np.ndarray:
    """`arr` if it is an aligned C-contiguous ndarray of `ndim` dimensions and one of `dtypes`.

    Native loops index raw pointers, so anything else (a strided view, bytes, a list) is
    refused with a ParameterError naming the parameter rather than misread.
    """
    if not isinstance(arr, np.ndarray):
        hint = ""
        if isinstance(arr, (bytes, bytearray, memoryview)):
            hint = " (wrap bytes with np.frombuffer(data, np.uint8))"
        raise ParameterError(
            f"{kernel}: {name} must be a numpy array, got {type(arr).__name__}{hint}"
        )
    if arr.ndim != ndim:
        raise ParameterError(f"{kernel}: {name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise ParameterError(f"{kernel}: {name} has dtype {arr.dtype}; expected one of {allowed}")
    if not arr.flags.c_contiguous:
        raise ParameterError(
            f"{kernel}: {name} must be C-contiguous (copy it with np.ascontiguousarray)"
        )
    if not arr.flags.aligned:
        # Typed native loads of a misaligned word are undefined in C (and fault when vectorised).
        raise ParameterError(f"{kernel}: {name} is not aligned to its itemsize (copy it first)")
    if writeable and not arr.flags.writeable:
        raise ParameterError(f"{kernel}: {name} is read-only")
    return arr


def _address(arr: np.ndarray) -> int:
    return int(arr.__array_interface__["data"][0])


def check_disjoint(out: np.ndarray, inputs: dict[str, np.ndarray], kernel: str) -> None:
    """Refuse an `out` that overlaps an input: parallel blocks would read what others wrote."""
    for name, arr in inputs.items():
        if np.may_share_memory(out, arr):
            raise ParameterError(f"{kernel}: out overlaps {name}; pass a separate output array")


_UINT8 = (np.dtype(np.uint8),)


def check_unpack_words(src: Any, out: Any, bits_stored: Any, byteswap: Any) -> WordsPlan:
    """Validate the arguments of ``unpack_words`` and derive the per-word mask and sign bit.

    Raises
    ------
    ParameterError
        If `src` is not a 1-D C-contiguous uint8 array, `out` not a 1-D aligned C-contiguous
        writeable array of a :data:`WORD_DTYPES` dtype that is disjoint from `src` (or has
        `src` as its own bytes, for unpacking in place), `src` holds fewer
        than ``out.nbytes`` bytes, or `bits_stored` is not in 1..8*itemsize (integer `out`).
    """
    kernel = "unpack_words"
    src = check_array(src, "src", kernel, ndim=1, dtypes=_UINT8)
    out = check_array(out, "out", kernel, ndim=1, dtypes=WORD_DTYPES, writeable=True)
    # In place (src is out's own bytes) is allowed: word i is read, then written, at one address.
    in_place = np.may_share_memory(src, out) and _address(src) == _address(out)
    if not in_place:
        check_disjoint(out, {"src": src}, kernel)
    if src.size < out.nbytes:
        raise ParameterError(
            f"{kernel}: src holds {src.size} bytes, out needs {out.nbytes} "
            f"({out.size} x {out.itemsize}-byte words)"
        )
    width = 8 * out.itemsize
    if out.dtype.kind == "f":
        # Float and Double Float Pixel Data have no Bits Stored or High Bit: all bits are data.
        bits = width
        check_integer(bits_stored, "bits_stored", kernel)
    else:
        bits = check_integer(bits_stored, "bits_stored", kernel)
        if not 1 <= bits <= width:
            raise ParameterError(
                f"{kernel}: bits_stored must be in 1..{width} for {out.dtype} output, got {bits}"
            )
    if not isinstance(byteswap, (bool, np.bool_, int, np.integer)):
        raise ParameterError(f"{kernel}: byteswap must be a bool, got {byteswap!r}")
    signed = out.dtype.kind == "i" and bits < width
    return WordsPlan(
        src=src,
        words=out.view(f"u{out.itemsize}"),
        mask=(1 << bits) - 1,
        sign=1 << (bits - 1) if signed else 0,
        swap=bool(byteswap) and out.itemsize > 1,
        threads=parallel_threads(2 * out.nbytes),
        in_place=in_place,
    )


def check_unpack_bits(src: Any, out: Any, bit_offset: Any) -> BitsPlan:
    """Validate the arguments of ``unpack_bits``.

    Raises
    ------
    ParameterError
        If `src` or `out` is not a 1-D C-contiguous uint8 array (`out` writeable and disjoint
        from `src`), `bit_offset` is negative, or `src` ends before bit ``bit_offset + out.size``.
    """
    kernel = "unpack_bits"
    src = check_array(src, "src", kernel, ndim=1, dtypes=_UINT8)
    out = check_array(out, "out", kernel, ndim=1, dtypes=_UINT8, writeable=True)
    check_disjoint(out, {"src": src}, kernel)
    offset = check_integer(bit_offset, "bit_offset", kernel)
    if offset < 0:
        raise ParameterError(f"{kernel}: bit_offset must be >= 0, got {offset}")
    if 8 * src.size < offset + out.size:
        raise ParameterError(
            f"{kernel}: src holds {8 * src.size} bits, out needs bits "
            f"{offset}..{offset + out.size} (bit_offset {offset} + {out.size} pixels)"
        )
    return BitsPlan(
        src=src, out=out, bit_offset=offset, threads=parallel_threads(out.size + out.size // 8)
    )


def unpack_words(src: np.ndarray, out: np.ndarray, bits_stored: int, byteswap: bool) -> None:
    """Decode native pixel words from `src` into `out` (see the module docstring).

    Parameters
    ----------
    src : ndarray of uint8, 1-D, C-contiguous
        The raw pixel bytes; at least ``out.nbytes`` of them (extra bytes are ignored).
    out : ndarray, 1-D, C-contiguous, uint8/int8/uint16/int16/uint32/int32/float32/float64
        Receives one word per element; integers keep the low `bits_stored` bits,
        sign-extended for signed dtypes, floats are copied bit for bit.
    bits_stored : int
        DICOM Bits Stored, 1..8*itemsize for integer `out` (ignored for floats).
    byteswap : bool
        True when `src` is big-endian (Explicit VR Big Endian).

    Raises
    ------
    ParameterError
        See :func:`check_unpack_words`.
    """
    plan = check_unpack_words(src, out, bits_stored, byteswap)
    n, k = out.size, out.itemsize
    order = ">" if plan.swap else "<"
    raw = np.frombuffer(plan.src[: n * k].tobytes(), dtype=f"{order}u{k}")
    if out.dtype.kind == "f":
        plan.words[...] = raw
        return
    # In int64 every intermediate is exact (words are at most 32 bits here): no wrap-around.
    values = raw.astype(np.int64) & plan.mask
    if plan.sign:
        values = np.where(values & plan.sign, values - 2 * plan.sign, values)
    out[...] = values.astype(out.dtype)


def unpack_bits(src: np.ndarray, out: np.ndarray, bit_offset: int) -> None:
    """Expand 1-bit pixels (least significant bit first) from `src` into `out`, one byte each.

    Parameters
    ----------
    src : ndarray of uint8, 1-D, C-contiguous
        The packed bits; pixel ``i`` is bit ``(bit_offset + i) % 8`` of byte
        ``(bit_offset + i) // 8``.
    out : ndarray of uint8, 1-D, C-contiguous
        Receives 0 or 1 per pixel.
    bit_offset : int
        Bit of `src` where the first pixel lies (>= 0); frames of 1-bit data need not start
        on a byte boundary.

    Raises
    ------
    ParameterError
        See :func:`check_unpack_bits`.
    """
    plan = check_unpack_bits(src, out, bit_offset)
    bits = np.unpackbits(plan.src, bitorder="little")
    out[...] = bits[plan.bit_offset : plan.bit_offset + out.size]
