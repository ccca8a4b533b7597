# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native Palette Color lookup (PS3.3 C.7.6.3.1.5): indices to RGB through an (entries, 3) table.

The Python-level function validates through voxelflow.kernels.reference.palette, then runs a
typed loop without the GIL, one contiguous block per thread for large arrays.
"""

from cython.parallel cimport prange
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t

from fused cimport index_t, lut_t

from voxelflow.kernels.reference.palette import check_palette_lookup

# Block starts are rounded to this many pixels, so threads never share a cache line of out.
cdef Py_ssize_t BLOCK_ALIGN = 64


cdef void lookup_range(const index_t* indices, const lut_t* lut, lut_t* out, int64_t first,
                       int64_t last, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Pixels start..stop: out[i] = lut[clip(indices[i] - first, 0, last)] (rows of 3)."""
    cdef Py_ssize_t i
    cdef int64_t row
    for i in range(start, stop):
        row = <int64_t>indices[i] - first
        # Below the first mapped value: first entry; above the last: last entry.
        if row < 0:
            row = 0
        elif row > last:
            row = last
        out[3 * i] = lut[3 * row]
        out[3 * i + 1] = lut[3 * row + 1]
        out[3 * i + 2] = lut[3 * row + 2]


cdef void lookup_blocks(const index_t* indices, const lut_t* lut, lut_t* out, int64_t first,
                        int64_t last, Py_ssize_t n, int threads) noexcept nogil:
    cdef Py_ssize_t b, per
    if threads <= 1:
        lookup_range(indices, lut, out, first, last, 0, n)
        return
    per = (n + threads - 1) // threads
    per = (per + BLOCK_ALIGN - 1) // BLOCK_ALIGN * BLOCK_ALIGN
    for b in prange(threads, num_threads=threads, schedule="static"):
        lookup_range(indices, lut, out, first, last, b * per, min(n, (b + 1) * per))


cdef void lookup_typed(const index_t[::1] indices, const lut_t[:, ::1] lut, lut_t[:, ::1] out,
                       int64_t first, int threads) noexcept:
    cdef Py_ssize_t n = indices.shape[0]
    cdef int64_t last = lut.shape[0] - 1
    with nogil:
        lookup_blocks(&indices[0], &lut[0, 0], &out[0, 0], first, last, n, threads)


def palette_lookup(indices, lut, first_mapped, out):
    """Map palette indices to RGB; see voxelflow.kernels.reference.palette.palette_lookup."""
    args = check_palette_lookup(indices, lut, first_mapped, out)
    if args.indices.shape[0] == 0:
        return
    cdef int64_t first = args.first_mapped
    cdef int threads = args.threads
    # Explicit dispatch: one specialisation per (index dtype, table dtype) pair.
    cdef str kind = args.indices.dtype.str[1:] + args.lut.dtype.str[1:]
    if kind == "u1u1":
        lookup_typed[uint8_t, uint8_t](args.indices, args.lut, args.out, first, threads)
    elif kind == "u2u1":
        lookup_typed[uint16_t, uint8_t](args.indices, args.lut, args.out, first, threads)
    elif kind == "i2u1":
        lookup_typed[int16_t, uint8_t](args.indices, args.lut, args.out, first, threads)
    elif kind == "i4u1":
        lookup_typed[int32_t, uint8_t](args.indices, args.lut, args.out, first, threads)
    elif kind == "u1u2":
        lookup_typed[uint8_t, uint16_t](args.indices, args.lut, args.out, first, threads)
    elif kind == "u2u2":
        lookup_typed[uint16_t, uint16_t](args.indices, args.lut, args.out, first, threads)
    elif kind == "i2u2":
        lookup_typed[int16_t, uint16_t](args.indices, args.lut, args.out, first, threads)
    else:
        lookup_typed[int32_t, uint16_t](args.indices, args.lut, args.out, first, threads)
