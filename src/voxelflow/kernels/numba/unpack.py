"""Numba pixel unpacking: raw DICOM pixel bytes to typed words, and 1-bit pixels to bytes.

Arguments are validated by :mod:`voxelflow.kernels.reference.unpack` (shared by every
backend); the jitted loops see only checked arrays. Large arrays are split into one
contiguous block per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ..reference.unpack import check_unpack_bits, check_unpack_words
from .config import JIT, PARALLEL_JIT, apply_num_threads

__all__ = ["unpack_bits", "unpack_words"]

# Block starts are rounded to this many elements, so threads never share a cache line.
BLOCK_ALIGN = 64

# uint64 operands keep 64-bit arithmetic unsigned (Numba types uint64 op int64 as float64).
_SHIFT8, _SHIFT16, _SHIFT32 = np.uint64(8), np.uint64(16), np.uint64(32)
_BYTES = np.uint64(0x00FF00FF00FF00FF)
_PAIRS = np.uint64(0x0000FFFF0000FFFF)
_LOW32 = np.uint64(0xFFFFFFFF)


def bswap(word):  # pragma: no cover - replaced by the overload inside jitted code
    """`word` with its bytes reversed (jitted code only)."""
    raise NotImplementedError("bswap is only callable from Numba-compiled code")


@overload(bswap, jit_options=JIT)
def _bswap_overload(word):  # type: ignore[no-untyped-def]
    # Shifts and masks: LLVM recognises them as a bswap (pshufb when vectorised).
    if word == types.uint8:
        return lambda word: word
    if word == types.uint16:
        return lambda word: np.uint16(((word >> 8) | (word << 8)) & 0xFFFF)
    if word == types.uint32:
        return lambda word: np.uint32(
            ((word >> 24) & 0xFF)
            | ((word >> 8) & 0xFF00)
            | ((word << 8) & 0xFF0000)
            | ((word & 0xFF) << 24)
        )
    if word == types.uint64:

        def impl(word):  # type: ignore[no-untyped-def]
            word = ((word >> _SHIFT32) & _LOW32) | (word << _SHIFT32)
            word = ((word >> _SHIFT16) & _PAIRS) | ((word & _PAIRS) << _SHIFT16)
            return ((word >> _SHIFT8) & _BYTES) | ((word & _BYTES) << _SHIFT8)

        return impl
    return None


# The loops below index slices from 0: Numba then knows no index is negative and drops its
# wrap-around branch, which would otherwise stop LLVM from vectorising (8x slower).


@njit(**JIT)
def _words_in_place(words, start, stop, mask, sign, swap):  # type: ignore[no-untyped-def]
    # One array, so LLVM vectorises without runtime aliasing checks.
    block = words[start:stop]
    if swap:
        for i in range(block.shape[0]):
            w = bswap(block[i]) & mask
            block[i] = (w ^ sign) - sign
    else:
        for i in range(block.shape[0]):
            w = block[i] & mask
            block[i] = (w ^ sign) - sign


@njit(**JIT)
def _words_range(src, out, start, stop, mask, sign, swap, copy):  # type: ignore[no-untyped-def]
    """Words start..stop: ((w & mask) ^ sign) - sign after an optional byteswap, in uint64
    arithmetic; the store keeps the low bits, which is the wrap-around the formula needs."""
    s = src[start:stop]
    o = out[start:stop]
    if copy:
        # A plain loop: LLVM turns it into memcpy, where o[:] = s goes through a generic copy.
        for i in range(o.shape[0]):
            o[i] = s[i]
    elif swap:
        for i in range(o.shape[0]):
            w = bswap(s[i]) & mask
            o[i] = (w ^ sign) - sign
    else:
        for i in range(o.shape[0]):
            w = s[i] & mask
            o[i] = (w ^ sign) - sign


@njit(**JIT)
def _words_block(src, out, start, stop, mask, sign, swap, copy, in_place):  # type: ignore[no-untyped-def]
    if in_place:
        if not copy:
            _words_in_place(out, start, stop, mask, sign, swap)
    else:
        _words_range(src, out, start, stop, mask, sign, swap, copy)


@njit(**PARALLEL_JIT)
def _words_parallel(src, out, mask, sign, swap, copy, in_place, threads):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    per = ((n + threads - 1) // threads + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads):
        _words_block(src, out, b * per, min(n, (b + 1) * per), mask, sign, swap, copy, in_place)


def unpack_words(src: np.ndarray, out: np.ndarray, bits_stored: int, byteswap: bool) -> None:
    """Decode native pixel words; see :func:`voxelflow.kernels.reference.unpack.unpack_words`."""
    plan = check_unpack_words(src, out, bits_stored, byteswap)
    words = plan.words
    n = words.shape[0]
    if n == 0:
        return
    # The source bytes seen as words (possibly unaligned: Numba then emits unaligned loads).
    src_words = words if plan.in_place else plan.src[: words.nbytes].view(words.dtype)
    mask, sign = np.uint64(plan.mask), np.uint64(plan.sign)
    if plan.threads <= 1:
        _words_block(src_words, words, 0, n, mask, sign, plan.swap, plan.is_copy, plan.in_place)
        return
    apply_num_threads()
    _words_parallel(
        src_words, words, mask, sign, plan.swap, plan.is_copy, plan.in_place, plan.threads
    )


@njit(**JIT)
def _bits_range(src, out, bit0, start, stop):  # type: ignore[no-untyped-def]
    """Pixels start..stop: pixel i is bit (bit0 + i) % 8 of byte (bit0 + i) // 8."""
    i = start
    # Pixels before the first byte boundary, then whole bytes eight pixels at a time.
    while i < stop and (bit0 + i) & 7:
        out[i] = (src[(bit0 + i) >> 3] >> ((bit0 + i) & 7)) & 1
        i += 1
    nbytes = (stop - i) >> 3
    first = (bit0 + i) >> 3
    packed = src[first : first + nbytes]
    pixels = out[i : i + 8 * nbytes]
    for q in range(nbytes):
        b = packed[q]
        for k in range(8):
            pixels[8 * q + k] = (b >> k) & 1
    i += 8 * nbytes
    while i < stop:
        out[i] = (src[(bit0 + i) >> 3] >> ((bit0 + i) & 7)) & 1
        i += 1


@njit(**PARALLEL_JIT)
def _bits_parallel(src, out, bit0, threads):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    per = ((n + threads - 1) // threads + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads):
        _bits_range(src, out, bit0, b * per, min(n, (b + 1) * per))


def unpack_bits(src: np.ndarray, out: np.ndarray, bit_offset: int) -> None:
    """Expand 1-bit pixels; see :func:`voxelflow.kernels.reference.unpack.unpack_bits`."""
    plan = check_unpack_bits(src, out, bit_offset)
    n = plan.out.shape[0]
    if n == 0:
        return
    if plan.threads <= 1:
        _bits_range(plan.src, plan.out, plan.bit_offset, 0, n)
        return
    apply_num_threads()
    _bits_parallel(plan.src, plan.out, plan.bit_offset, plan.threads)
