# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native resampling: a volume sampled under an affine, and one axis resampled through a tap table.

The rules are the oracle's, in voxelflow.kernels.reference.resample, to the bit. The Python-level
functions validate through the reference module, then run typed loops without the GIL. Output
rows (one per (k, j)) are split into contiguous blocks that threads take on demand
(reference.resample.row_blocks); each row is computed into a float64 row buffer (one per block,
allocated by the caller so the loop cannot fail) and then stored with the dtype's rounding.
Along a row the position is the row's base plus i times the matrix column of i: one
multiply-add per axis and voxel, and no drift (i * step is one rounding, so every backend lands
on the same float64 position). Linear rows split into the interior span, where every neighbour
is inside the input and the loop needs no clamp, and the general sample at the two ends.
"""

import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport int64_t

from fused cimport store_t, voxel_t
from interp cimport (
    INT32_LIMIT,
    clamp_index,
    floor_fast,
    frac,
    linear_interior,
    sample_cubic,
    sample_linear,
    sample_nearest,
    store_row,
)

from voxelflow.kernels.reference.resample import check_sample_affine, check_sample_axis, row_blocks

# Lanczos-3: see the reference docstring; the same constants, the same operations.
cdef enum:
    LANCZOS = 6
cdef double HALF_SQRT3 = 0.8660254037844386
cdef double PI_3 = 1.0471975511965976
cdef double LANCZOS_P[6]
cdef double LANCZOS_Q[6]
cdef double SIN_C[8]
cdef double COS_C[9]
LANCZOS_P[:] = [-0.5, -0.5, 1.0, -0.5, -0.5, 1.0]
LANCZOS_Q[:] = [-HALF_SQRT3, HALF_SQRT3, 0.0, -HALF_SQRT3, HALF_SQRT3, 0.0]
SIN_C[:] = [-0.16666666666666666, 0.008333333333333333, -0.0001984126984126984,
            2.7557319223985893e-06, -2.505210838544172e-08, 1.6059043836821613e-10,
            -7.647163731819816e-13, 2.8114572543455206e-15]
COS_C[:] = [-0.5, 0.041666666666666664, -0.001388888888888889, 2.48015873015873e-05,
            -2.755731922398589e-07, 2.08767569878681e-09, -1.1470745597729725e-11,
            4.779477332387385e-14, -1.5619206968586225e-16]


cdef inline void lanczos_weights(double t, double* w) noexcept nogil:
    cdef double a, a2, sp, cp, sv, cv, x, total
    cdef int d
    if t * t == 0.0:
        for d in range(6):
            w[d] = 0.0
        w[2] = 1.0
        return
    a = PI_3 * t
    a2 = a * a
    sp = SIN_C[7]
    for d in range(6, -1, -1):
        sp = SIN_C[d] + a2 * sp
    sv = a + a * (a2 * sp)
    cp = COS_C[8]
    for d in range(7, -1, -1):
        cp = COS_C[d] + a2 * cp
    cv = 1.0 + a2 * cp
    for d in range(6):
        x = t - <double>(d - 2)
        w[d] = (sv * LANCZOS_P[d] - cv * LANCZOS_Q[d]) / (x * x)
    total = w[0]
    for d in range(1, 6):
        total = total + w[d]
    for d in range(6):
        w[d] = w[d] / total


cdef void row_nearest(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                      const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                      double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double hz = nz - 0.5, hy = ny - 0.5, hx = nx - 0.5
    cdef double pz, py, px, di
    cdef Py_ssize_t i
    for i in range(ni):
        di = <double>i
        pz = bz + m[2] * di
        py = by + m[6] * di
        px = bx + m[10] * di
        if not (pz >= -0.5 and pz <= hz and py >= -0.5 and py <= hy and px >= -0.5
                and px <= hx):
            buf[i] = cval
            continue
        buf[i] = sample_nearest(src, nz, ny, nx, pz, py, px)


cdef inline bint in_interior(double p, double upper) noexcept nogil:
    return p >= 0.0 and p < upper


cdef void interior_span(double base, double step, Py_ssize_t n, Py_ssize_t ni, Py_ssize_t* lo,
                        Py_ssize_t* hi) noexcept nogil:
    """Narrow [lo, hi) to the i whose position base + step * i lies in [0, n - 1).

    There both linear neighbours f and f + 1 are in the input, so no clamp is needed. The
    position is monotonic in i (each operation of it rounds monotonically), so the set is one
    interval: estimate its ends analytically, then settle them with the exact position.
    """
    cdef double upper = <double>(n - 1)
    cdef double e0, e1, t
    cdef Py_ssize_t a = lo[0], b = hi[0]
    if a >= b:
        return
    if step == 0.0:
        if not in_interior(base, upper):
            hi[0] = a
        return
    e0 = (0.0 - base) / step
    e1 = (upper - base) / step
    if e0 > e1:
        t = e0
        e0 = e1
        e1 = t
    # clip in double first: the estimates may be far beyond any Py_ssize_t
    if e0 > <double>a:
        a = b if e0 >= <double>b else <Py_ssize_t>e0
    if e1 + 1.0 < <double>b:
        b = a if e1 + 1.0 <= <double>a else <Py_ssize_t>(e1 + 1.0)
    while a < b and not in_interior(base + step * <double>a, upper):
        a += 1
    while b > a and not in_interior(base + step * <double>(b - 1), upper):
        b -= 1
    if a < b:
        while a > lo[0] and in_interior(base + step * <double>(a - 1), upper):
            a -= 1
        while b < hi[0] and in_interior(base + step * <double>b, upper):
            b += 1
    lo[0] = a
    hi[0] = b if a < b else a


cdef inline double linear_at(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                             double pz, double py, double px, double cval) noexcept nogil:
    """The general linear sample: the inside test, then neighbours clamped to the input."""
    if not (pz >= -0.5 and pz <= nz - 0.5 and py >= -0.5 and py <= ny - 0.5 and px >= -0.5
            and px <= nx - 0.5):
        return cval
    return sample_linear(src, nz, ny, nx, pz, py, px)


cdef void row_linear(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                     const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                     double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double sz = m[2], sy = m[6], sx = m[10]
    cdef double di
    cdef Py_ssize_t i, lo = 0, hi = ni
    interior_span(bz, sz, nz, ni, &lo, &hi)
    interior_span(by, sy, ny, ni, &lo, &hi)
    interior_span(bx, sx, nx, ni, &lo, &hi)
    for i in range(lo):
        di = <double>i
        buf[i] = linear_at(src, nz, ny, nx, bz + sz * di, by + sy * di, bx + sx * di, cval)
    # The interior: positions in [0, n - 1), so truncation is floor and no index needs a clamp
    # (interp.pxd's staged loop; the arithmetic is linear_at's, operation for operation).
    if lo < hi:
        linear_interior(src, ny, nx, nz * ny * nx < INT32_LIMIT, bz, by, bx, sz, sy, sx, lo, hi,
                        buf + lo)
    else:
        hi = lo
    for i in range(hi, ni):
        di = <double>i
        buf[i] = linear_at(src, nz, ny, nx, bz + sz * di, by + sy * di, bx + sx * di, cval)


cdef void row_cubic(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                    const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                    double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double hz = nz - 0.5, hy = ny - 0.5, hx = nx - 0.5
    cdef double pz, py, px, di
    cdef Py_ssize_t i
    for i in range(ni):
        di = <double>i
        pz = bz + m[2] * di
        py = by + m[6] * di
        px = bx + m[10] * di
        if not (pz >= -0.5 and pz <= hz and py >= -0.5 and py <= hy and px >= -0.5
                and px <= hx):
            buf[i] = cval
            continue
        buf[i] = sample_cubic(src, nz, ny, nx, pz, py, px)


cdef void row_lanczos(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                      const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                      double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double hz = nz - 0.5, hy = ny - 0.5, hx = nx - 0.5
    cdef double pz, py, px, fz, fy, fx, di, vz, vy, vx
    cdef double wz[6]
    cdef double wy[6]
    cdef double wx[6]
    cdef Py_ssize_t iz[6]
    cdef Py_ssize_t iy[6]
    cdef Py_ssize_t ix[6]
    cdef Py_ssize_t i, a, b, c, z0, y0, x0
    cdef const voxel_t* row
    for i in range(ni):
        di = <double>i
        pz = bz + m[2] * di
        py = by + m[6] * di
        px = bx + m[10] * di
        if not (pz >= -0.5 and pz <= hz and py >= -0.5 and py <= hy and px >= -0.5
                and px <= hx):
            buf[i] = cval
            continue
        fz = floor_fast(pz)
        fy = floor_fast(py)
        fx = floor_fast(px)
        lanczos_weights(frac(pz, fz), wz)
        lanczos_weights(frac(py, fy), wy)
        lanczos_weights(frac(px, fx), wx)
        z0 = <Py_ssize_t>fz
        y0 = <Py_ssize_t>fy
        x0 = <Py_ssize_t>fx
        for a in range(6):
            iz[a] = clamp_index(z0 + a - 2, nz - 1)
            iy[a] = clamp_index(y0 + a - 2, ny - 1)
            ix[a] = clamp_index(x0 + a - 2, nx - 1)
        vz = 0.0
        for c in range(6):
            vy = 0.0
            for b in range(6):
                row = src + (iz[c] * ny + iy[b]) * nx
                vx = wx[0] * <double>row[ix[0]]
                for a in range(1, 6):
                    vx = vx + wx[a] * <double>row[ix[a]]
                vy = wy[b] * vx if b == 0 else vy + wy[b] * vx
            vz = wz[c] * vy if c == 0 else vz + wz[c] * vy
        buf[i] = vz


cdef void affine_rows(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                      store_t* out, Py_ssize_t nj, Py_ssize_t ni, const double* m, int order,
                      double cval, double lo, double hi, double* buf, Py_ssize_t start,
                      Py_ssize_t stop) noexcept nogil:
    """Output rows start..stop (row r is (r // nj, r % nj))."""
    cdef Py_ssize_t r, k, j
    for r in range(start, stop):
        k = r // nj
        j = r - k * nj
        if order == 0:
            row_nearest(src, nz, ny, nx, m, k, j, ni, cval, buf)
        elif order == 1:
            row_linear(src, nz, ny, nx, m, k, j, ni, cval, buf)
        elif order == LANCZOS:
            row_lanczos(src, nz, ny, nx, m, k, j, ni, cval, buf)
        else:
            row_cubic(src, nz, ny, nx, m, k, j, ni, cval, buf)
        store_row(buf, out + r * ni, ni, lo, hi)


def _affine_typed(const voxel_t[:, :, ::1] src, store_t[:, :, ::1] out,
                  const double[:, ::1] matrix, int order, double cval, double lo, double hi,
                  double[:, ::1] buf, int threads):
    cdef Py_ssize_t nz = src.shape[0], ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t nj = out.shape[1], ni = out.shape[2]
    cdef Py_ssize_t rows = out.shape[0] * nj
    cdef Py_ssize_t blocks = buf.shape[0]
    cdef Py_ssize_t per, b
    with nogil:
        if threads <= 1:
            affine_rows(&src[0, 0, 0], nz, ny, nx, &out[0, 0, 0], nj, ni, &matrix[0, 0], order,
                        cval, lo, hi, &buf[0, 0], 0, rows)
        else:
            per = (rows + blocks - 1) // blocks
            for b in prange(blocks, num_threads=threads, schedule="dynamic", chunksize=1):
                affine_rows(&src[0, 0, 0], nz, ny, nx, &out[0, 0, 0], nj, ni, &matrix[0, 0],
                            order, cval, lo, hi, &buf[b, 0], min(rows, b * per),
                            min(rows, (b + 1) * per))


def _store_bounds(dtype):
    if dtype.kind == "f":
        return 0.0, 0.0
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def sample_affine(src, matrix, out, order, cval):
    """Sample src under an affine; see voxelflow.kernels.reference.resample.sample_affine."""
    plan = check_sample_affine(src, matrix, out, order, cval)
    if plan.out.size == 0:
        return
    rows = plan.out.shape[0] * plan.out.shape[1]
    threads = max(1, min(plan.threads, rows))
    buf = np.empty((row_blocks(rows, threads), plan.out.shape[2]), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    _affine_typed(plan.src, plan.out, plan.matrix, plan.order, plan.cval, lo, hi, buf, threads)


cdef void axis_rows(const voxel_t* src, Py_ssize_t ny, Py_ssize_t nx, store_t* out,
                    Py_ssize_t nj, Py_ssize_t ni, int axis, const int64_t* index,
                    const double* weight, Py_ssize_t taps, double lo, double hi, double* buf,
                    Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Output rows start..stop of sample_axis (row r is (k, j) = (r // nj, r % nj))."""
    cdef Py_ssize_t r, k, j, o, t, x
    cdef const voxel_t* row
    cdef const int64_t* idx
    cdef const double* w
    cdef double acc
    for r in range(start, stop):
        k = r // nj
        j = r - k * nj
        if axis == 2:
            # along the row: output column o gathers its taps from one input row
            row = src + (k * ny + j) * nx
            for o in range(ni):
                idx = index + o * taps
                w = weight + o * taps
                acc = w[0] * <double>row[idx[0]]
                for t in range(1, taps):
                    acc = acc + w[t] * <double>row[idx[t]]
                buf[o] = acc
        else:
            # across rows: the output row is a weighted sum of `taps` whole input rows
            o = k if axis == 0 else j
            idx = index + o * taps
            w = weight + o * taps
            row = src + ((idx[0] * ny + j) if axis == 0 else (k * ny + idx[0])) * nx
            for x in range(nx):
                buf[x] = w[0] * <double>row[x]
            for t in range(1, taps):
                row = src + ((idx[t] * ny + j) if axis == 0 else (k * ny + idx[t])) * nx
                for x in range(nx):
                    buf[x] = buf[x] + w[t] * <double>row[x]
        store_row(buf, out + r * ni, ni, lo, hi)


def _axis_typed(const voxel_t[:, :, ::1] src, store_t[:, :, ::1] out, int axis,
                const int64_t[:, ::1] index, const double[:, ::1] weight, double lo,
                double hi, double[:, ::1] buf, int threads):
    cdef Py_ssize_t ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t nj = out.shape[1], ni = out.shape[2]
    cdef Py_ssize_t rows = out.shape[0] * nj
    cdef Py_ssize_t taps = index.shape[1]
    cdef Py_ssize_t blocks = buf.shape[0]
    cdef Py_ssize_t per, b
    with nogil:
        if threads <= 1:
            axis_rows(&src[0, 0, 0], ny, nx, &out[0, 0, 0], nj, ni, axis, &index[0, 0],
                      &weight[0, 0], taps, lo, hi, &buf[0, 0], 0, rows)
        else:
            per = (rows + blocks - 1) // blocks
            for b in prange(blocks, num_threads=threads, schedule="dynamic", chunksize=1):
                axis_rows(&src[0, 0, 0], ny, nx, &out[0, 0, 0], nj, ni, axis, &index[0, 0],
                          &weight[0, 0], taps, lo, hi, &buf[b, 0], min(rows, b * per),
                          min(rows, (b + 1) * per))


def sample_axis(src, out, axis, index, weight):
    """Resample one axis; see voxelflow.kernels.reference.resample.sample_axis."""
    plan = check_sample_axis(src, out, axis, index, weight)
    if plan.out.size == 0:
        return
    rows = plan.out.shape[0] * plan.out.shape[1]
    threads = max(1, min(plan.threads, rows))
    buf = np.empty((row_blocks(rows, threads), plan.out.shape[2]), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    _axis_typed(plan.src, plan.out, plan.axis, plan.index, plan.weight, lo, hi, buf, threads)
