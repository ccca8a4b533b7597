# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native 2x box-mean decimation (the pyramid's filter); the rules are the oracle's, in
voxelflow.kernels.reference.downsample.

The Python-level function validates through the reference module, then runs a typed loop
without the GIL. Output rows (one per (z, y) of the coarser grid) are split into one contiguous
block per thread; each output row sums its 1, 2 or 4 source rows into a row accumulator, one
source row at a time in the oracle's order (so float sums round identically), then divides.
"""

import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t

from fused cimport voxel_t

from voxelflow.kernels.reference.downsample import check_downsample_mean2

# Exact sums: 8 values of up to 16 bits fit int32, of up to 32 bits int64; floats sum in double.
ctypedef fused acc_t:
    int32_t
    int64_t
    double


cdef inline void add_row(const voxel_t* row, acc_t* acc, Py_ssize_t nx, int sx,
                         bint first) noexcept nogil:
    """acc[i] (+)= the row's values under output column i, left to right (the oracle's order)."""
    cdef Py_ssize_t i, half = nx // 2
    if sx == 1:
        if first:
            for i in range(nx):
                acc[i] = <acc_t>row[i]
        else:
            for i in range(nx):
                acc[i] = acc[i] + <acc_t>row[i]
        return
    if first:
        for i in range(half):
            acc[i] = <acc_t>row[2 * i] + <acc_t>row[2 * i + 1]
    else:
        for i in range(half):
            acc[i] = (acc[i] + <acc_t>row[2 * i]) + <acc_t>row[2 * i + 1]
    if nx & 1:
        # the odd last column is a block of its own, counted twice (edge replication)
        if first:
            acc[half] = <acc_t>row[nx - 1] + <acc_t>row[nx - 1]
        else:
            acc[half] = (acc[half] + <acc_t>row[nx - 1]) + <acc_t>row[nx - 1]


cdef inline void finish_row(const acc_t* acc, voxel_t* out, Py_ssize_t n, int count,
                            int shift) noexcept nogil:
    """out[i] = acc[i] / count: rounded to nearest even for integers, once for floats."""
    cdef Py_ssize_t i
    cdef acc_t bias = count // 2 - 1
    cdef double scale = 1.0 / count
    if count == 1:
        for i in range(n):
            out[i] = <voxel_t>acc[i]
    elif acc_t is double:
        for i in range(n):
            out[i] = <voxel_t>(acc[i] * scale)
    else:
        for i in range(n):
            # acc = q * count + r: adding count / 2 - 1, plus 1 where q is odd, carries into q
            # exactly when r > count / 2, or r == count / 2 and q is odd (ties to even)
            out[i] = <voxel_t>((acc[i] + bias + ((acc[i] >> shift) & 1)) >> shift)


cdef void rows_range(const voxel_t* src, voxel_t* out, acc_t* acc, Py_ssize_t nz,
                     Py_ssize_t ny, Py_ssize_t nx, int sz, int sy, int sx, Py_ssize_t start,
                     Py_ssize_t stop) noexcept nogil:
    """Output rows start..stop of the coarser grid (row r is (r // ny_out, r % ny_out))."""
    cdef Py_ssize_t ny_out = (ny + sy - 1) // sy
    cdef Py_ssize_t nx_out = (nx + sx - 1) // sx
    cdef Py_ssize_t r, oz, oy, z, y
    cdef int dz, dy, count = sz * sy * sx
    cdef int shift = (sz - 1) + (sy - 1) + (sx - 1)
    cdef bint first
    for r in range(start, stop):
        oz = r // ny_out
        oy = r - oz * ny_out
        first = True
        for dz in range(sz):
            z = min(sz * oz + dz, nz - 1)
            for dy in range(sy):
                y = min(sy * oy + dy, ny - 1)
                add_row(src + (z * ny + y) * nx, acc, nx, sx, first)
                first = False
        finish_row(acc, out + r * nx_out, nx_out, count, shift)


cdef void downsample_typed(const voxel_t[:, :, ::1] src, voxel_t[:, :, ::1] out,
                           acc_t[:, ::1] acc, int sz, int sy, int sx, int threads) noexcept:
    cdef Py_ssize_t nz = src.shape[0], ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t rows = out.shape[0] * out.shape[1]
    cdef Py_ssize_t per, b
    with nogil:
        if threads <= 1:
            rows_range(&src[0, 0, 0], &out[0, 0, 0], &acc[0, 0], nz, ny, nx, sz, sy, sx,
                       0, rows)
        else:
            per = (rows + threads - 1) // threads
            for b in prange(threads, num_threads=threads, schedule="static"):
                rows_range(&src[0, 0, 0], &out[0, 0, 0], &acc[b, 0], nz, ny, nx, sz, sy, sx,
                           min(rows, b * per), min(rows, (b + 1) * per))


def downsample_mean2(src, out, step):
    """2x box mean; see voxelflow.kernels.reference.downsample.downsample_mean2."""
    plan = check_downsample_mean2(src, out, step)
    if plan.out.size == 0:
        return
    cdef int sz = plan.step[0], sy = plan.step[1], sx = plan.step[2]
    cdef int threads = max(1, min(plan.threads, plan.out.shape[0] * plan.out.shape[1]))
    cdef str kind = plan.src.dtype.str[1:]
    # one row accumulator per thread, allocated here so the native loop cannot fail
    width = plan.out.shape[2]
    if kind in ("f4", "f8"):
        dacc = np.empty((threads, width), np.float64)
        if kind == "f4":
            downsample_typed[float, double](plan.src, plan.out, dacc, sz, sy, sx, threads)
        else:
            downsample_typed[double, double](plan.src, plan.out, dacc, sz, sy, sx, threads)
    elif kind in ("u4", "i4"):
        lacc = np.empty((threads, width), np.int64)
        if kind == "u4":
            downsample_typed[uint32_t, int64_t](plan.src, plan.out, lacc, sz, sy, sx, threads)
        else:
            downsample_typed[int32_t, int64_t](plan.src, plan.out, lacc, sz, sy, sx, threads)
    else:
        iacc = np.empty((threads, width), np.int32)
        if kind == "u1":
            downsample_typed[uint8_t, int32_t](plan.src, plan.out, iacc, sz, sy, sx, threads)
        elif kind == "i1":
            downsample_typed[int8_t, int32_t](plan.src, plan.out, iacc, sz, sy, sx, threads)
        elif kind == "u2":
            downsample_typed[uint16_t, int32_t](plan.src, plan.out, iacc, sz, sy, sx, threads)
        else:
            downsample_typed[int16_t, int32_t](plan.src, plan.out, iacc, sz, sy, sx, threads)
