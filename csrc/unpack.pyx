# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native pixel unpacking: raw DICOM pixel bytes to typed words, and 1-bit pixels to bytes.

The Python-level functions validate through voxelflow.kernels.reference.unpack (the one place
every backend checks its arguments), then run a typed loop without the GIL, split into one
contiguous block per thread for large arrays.
"""

import sys

from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from fused cimport uword_t

from voxelflow.kernels.reference.unpack import check_unpack_bits, check_unpack_words

# Block starts are rounded to this many elements, so threads never share a cache line.
cdef Py_ssize_t BLOCK_ALIGN = 64


cdef inline uword_t bswap(uword_t w) noexcept nogil:
    # Written as shifts: GCC and Clang turn these into one bswap/rol (pshufb when vectorised).
    if uword_t is uint16_t:
        return <uint16_t>((w >> 8) | (w << 8))
    elif uword_t is uint32_t:
        return (((w >> 24) & 0xFF) | ((w >> 8) & 0xFF00)
                | ((w << 8) & 0xFF0000) | ((w << 24) & 0xFF000000u))
    elif uword_t is uint64_t:
        w = ((w >> 32) & 0xFFFFFFFFu) | (w << 32)
        w = ((w >> 16) & 0x0000FFFF0000FFFFu) | ((w & 0x0000FFFF0000FFFFu) << 16)
        return ((w >> 8) & 0x00FF00FF00FF00FFu) | ((w & 0x00FF00FF00FF00FFu) << 8)
    else:
        return w


cdef void words_in_place(uword_t* words, Py_ssize_t start, Py_ssize_t stop, uword_t mask,
                         uword_t sign, bint swap) noexcept nogil:
    cdef Py_ssize_t i
    cdef uword_t w
    if swap:
        for i in range(start, stop):
            w = bswap(words[i]) & mask
            words[i] = (w ^ sign) - sign
    else:
        for i in range(start, stop):
            w = words[i] & mask
            words[i] = (w ^ sign) - sign


cdef void words_range(const uint8_t* src, uword_t* out, Py_ssize_t start, Py_ssize_t stop,
                      uword_t mask, uword_t sign, bint swap, bint copy) noexcept nogil:
    """Words start..stop of unpack_words: ((w & mask) ^ sign) - sign, after a byteswap."""
    cdef Py_ssize_t i
    cdef uword_t w
    if stop <= start:
        return
    if <const void*>out == <const void*>src:
        # In place: one pointer, so the compiler needs no aliasing checks to vectorise.
        if not copy:
            words_in_place(out, start, stop, mask, sign, swap)
    elif copy:
        memcpy(out + start, src + start * sizeof(uword_t), (stop - start) * sizeof(uword_t))
    elif swap:
        for i in range(start, stop):
            # memcpy of one word is how C spells an unaligned load; it compiles to a mov.
            memcpy(&w, src + i * sizeof(uword_t), sizeof(uword_t))
            w = bswap(w) & mask
            out[i] = (w ^ sign) - sign
    else:
        for i in range(start, stop):
            memcpy(&w, src + i * sizeof(uword_t), sizeof(uword_t))
            w = w & mask
            out[i] = (w ^ sign) - sign


cdef void words_blocks(const uint8_t* src, uword_t* out, Py_ssize_t n, uword_t mask,
                       uword_t sign, bint swap, bint copy, int threads) noexcept nogil:
    cdef Py_ssize_t b, per
    if threads <= 1:
        words_range(src, out, 0, n, mask, sign, swap, copy)
        return
    per = (n + threads - 1) // threads
    per = (per + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads, num_threads=threads, schedule="static"):
        words_range(src, out, b * per, min(n, (b + 1) * per), mask, sign, swap, copy)


def unpack_words(src, out, bits_stored, byteswap):
    """Decode native pixel words; see voxelflow.kernels.reference.unpack.unpack_words."""
    plan = check_unpack_words(src, out, bits_stored, byteswap)
    cdef Py_ssize_t n = plan.words.shape[0]
    if n == 0:
        return
    cdef const uint8_t[::1] s = plan.src
    cdef uint8_t[::1] w8
    cdef uint16_t[::1] w16
    cdef uint32_t[::1] w32
    cdef uint64_t[::1] w64
    cdef uint64_t mask = plan.mask
    cdef uint64_t sign = plan.sign
    cdef bint swap = plan.swap
    cdef bint copy = plan.is_copy
    cdef int threads = plan.threads
    cdef int itemsize = plan.words.itemsize
    if itemsize == 1:
        w8 = plan.words
        with nogil:
            words_blocks(&s[0], &w8[0], n, <uint8_t>mask, <uint8_t>sign, swap, copy, threads)
    elif itemsize == 2:
        w16 = plan.words
        with nogil:
            words_blocks(&s[0], &w16[0], n, <uint16_t>mask, <uint16_t>sign, swap, copy, threads)
    elif itemsize == 4:
        w32 = plan.words
        with nogil:
            words_blocks(&s[0], &w32[0], n, <uint32_t>mask, <uint32_t>sign, swap, copy, threads)
    else:
        w64 = plan.words
        with nogil:
            words_blocks(&s[0], &w64[0], n, mask, sign, swap, copy, threads)


# Whole bytes become eight pixels with 64-bit arithmetic: broadcast the byte to all eight
# bytes of a word, keep bit k in byte k, and carry it into bit 7 with + 0x7F (no byte carries
# into the next: 0x7F + 2**k <= 0xFF), then down to bit 0. The word is stored with memcpy, so
# byte k lands at out[k] only on little-endian hosts; elsewhere each pixel is shifted out.
cdef bint LITTLE_ENDIAN = sys.byteorder == "little"


cdef void bits_range(const uint8_t* src, uint8_t* out, Py_ssize_t bit0,
                     Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Pixels start..stop of unpack_bits: pixel i is bit (bit0 + i) % 8 of byte (bit0 + i) // 8."""
    cdef Py_ssize_t i = start, q, nbytes, first
    cdef uint64_t v
    # Pixels before the first byte boundary, then whole bytes eight pixels at a time.
    while i < stop and (bit0 + i) & 7:
        out[i] = (src[(bit0 + i) >> 3] >> ((bit0 + i) & 7)) & 1
        i += 1
    nbytes = (stop - i) >> 3 if LITTLE_ENDIAN else 0
    first = (bit0 + i) >> 3
    for q in range(nbytes):
        v = src[first + q] * 0x0101010101010101u
        v = (((v & 0x8040201008040201u) + 0x7F7F7F7F7F7F7F7Fu) >> 7) & 0x0101010101010101u
        memcpy(out + i + 8 * q, &v, 8)
    i += 8 * nbytes
    while i < stop:
        out[i] = (src[(bit0 + i) >> 3] >> ((bit0 + i) & 7)) & 1
        i += 1


def unpack_bits(src, out, bit_offset):
    """Expand 1-bit pixels; see voxelflow.kernels.reference.unpack.unpack_bits."""
    plan = check_unpack_bits(src, out, bit_offset)
    cdef Py_ssize_t n = plan.out.shape[0]
    if n == 0:
        return
    cdef const uint8_t[::1] s = plan.src
    cdef uint8_t[::1] o = plan.out
    cdef Py_ssize_t bit0 = plan.bit_offset
    cdef int threads = plan.threads
    cdef Py_ssize_t b, per
    with nogil:
        if threads <= 1:
            bits_range(&s[0], &o[0], bit0, 0, n)
        else:
            per = (n + threads - 1) // threads
            per = (per + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
            for b in prange(threads, num_threads=threads, schedule="static"):
                bits_range(&s[0], &o[0], bit0, b * per, min(n, (b + 1) * per))
