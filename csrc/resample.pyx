# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native resampling: a volume sampled under an affine, and one axis resampled through a tap table.

The rules are the oracle's, in voxelflow.kernels.reference.resample, to the bit. The Python-level
functions validate through the reference module, then run typed loops without the GIL. Output
rows (one per (k, j)) are split into one contiguous block per thread; each row is computed into
a float64 row buffer (one per thread, allocated by the caller so the loop cannot fail) and then
stored with the dtype's rounding. Along a row the position is the row's base plus i times the
matrix column of i: one multiply-add per axis and voxel, and no drift (i * step is one rounding,
so every backend lands on the same float64 position).
"""

import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t

from fused cimport voxel_t

from voxelflow.kernels.reference.resample import check_sample_affine, check_sample_axis

# The output dtypes: the same set as voxel_t, as a second fused type so src and out vary apart.
ctypedef fused store_t:
    uint8_t
    int8_t
    uint16_t
    int16_t
    uint32_t
    int32_t
    float
    double

# (v + 1.5 * 2**52) - 1.5 * 2**52 rounds v to the nearest integer, ties to even, for |v| < 2**51
# in the default rounding mode: numpy.rint's result, vectorisable on SSE2 (nearbyint is a call).
cdef double ROUND_MAGIC = 6755399441055744.0


cdef inline double floor_fast(double p) noexcept nogil:
    """floor(p) for |p| < 2**62, exactly; a truncating convert and a compare (libm's floor is a
    call on baseline x86-64, which has no SSE4.1 round instruction)."""
    cdef double f = <double><Py_ssize_t>p
    return f - 1.0 if p < f else f


cdef inline Py_ssize_t clamp_index(Py_ssize_t v, Py_ssize_t hi) noexcept nogil:
    if v < 0:
        return 0
    return hi if v > hi else v


cdef inline Py_ssize_t fold_mirror(Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """m reflected about the edge centres (d c b | a b c d | c b a)."""
    cdef Py_ssize_t period
    if n == 1:
        return 0
    period = 2 * n - 2
    if m < 0:
        m = -m
    m = m % period
    return period - m if m >= n else m


cdef inline void bspline_weights(double t, double* w) noexcept nogil:
    cdef double t2 = t * t
    cdef double t3 = t2 * t
    cdef double u = 1.0 - t
    cdef double u2 = u * u
    cdef double u3 = u2 * u
    w[0] = u3 / 6.0
    w[1] = (2.0 / 3.0 - t2) + 0.5 * t3
    w[2] = (2.0 / 3.0 - u2) + 0.5 * u3
    w[3] = t3 / 6.0


cdef inline void store_row(const double* buf, store_t* out, Py_ssize_t n, double lo,
                           double hi) noexcept nogil:
    """The store rule: floats rounded once; integers rint, saturated, NaN -> 0."""
    cdef Py_ssize_t i
    cdef double v
    if store_t is float or store_t is double:
        for i in range(n):
            out[i] = <store_t>buf[i]
    else:
        for i in range(n):
            v = buf[i]
            if v != v:
                v = 0.0
            elif v < lo:
                v = lo
            elif v > hi:
                v = hi
            out[i] = <store_t>((v + ROUND_MAGIC) - ROUND_MAGIC)


cdef void row_nearest(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                      const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                      double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double hz = nz - 0.5, hy = ny - 0.5, hx = nx - 0.5
    cdef double pz, py, px, di
    cdef Py_ssize_t i, z, y, x
    for i in range(ni):
        di = <double>i
        pz = bz + m[2] * di
        py = by + m[6] * di
        px = bx + m[10] * di
        if not (pz >= -0.5 and pz <= hz and py >= -0.5 and py <= hy and px >= -0.5
                and px <= hx):
            buf[i] = cval
            continue
        z = clamp_index(<Py_ssize_t>floor_fast(pz + 0.5), nz - 1)
        y = clamp_index(<Py_ssize_t>floor_fast(py + 0.5), ny - 1)
        x = clamp_index(<Py_ssize_t>floor_fast(px + 0.5), nx - 1)
        buf[i] = <double>src[(z * ny + y) * nx + x]


cdef void row_linear(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                     const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                     double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double hz = nz - 0.5, hy = ny - 0.5, hx = nx - 0.5
    cdef double pz, py, px, fz, fy, fx, tz, ty, tx, di, c0, c1, c00, c01, c10, c11
    cdef Py_ssize_t i, z0, z1, y0, y1, x0, x1
    cdef const voxel_t* r00
    cdef const voxel_t* r01
    cdef const voxel_t* r10
    cdef const voxel_t* r11
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
        tz = pz - fz
        ty = py - fy
        tx = px - fx
        z0 = <Py_ssize_t>fz
        y0 = <Py_ssize_t>fy
        x0 = <Py_ssize_t>fx
        z1 = clamp_index(z0 + 1, nz - 1)
        y1 = clamp_index(y0 + 1, ny - 1)
        x1 = clamp_index(x0 + 1, nx - 1)
        z0 = clamp_index(z0, nz - 1)
        y0 = clamp_index(y0, ny - 1)
        x0 = clamp_index(x0, nx - 1)
        r00 = src + (z0 * ny + y0) * nx
        r01 = src + (z0 * ny + y1) * nx
        r10 = src + (z1 * ny + y0) * nx
        r11 = src + (z1 * ny + y1) * nx
        c00 = (1.0 - tx) * <double>r00[x0] + tx * <double>r00[x1]
        c01 = (1.0 - tx) * <double>r01[x0] + tx * <double>r01[x1]
        c10 = (1.0 - tx) * <double>r10[x0] + tx * <double>r10[x1]
        c11 = (1.0 - tx) * <double>r11[x0] + tx * <double>r11[x1]
        c0 = (1.0 - ty) * c00 + ty * c01
        c1 = (1.0 - ty) * c10 + ty * c11
        buf[i] = (1.0 - tz) * c0 + tz * c1


cdef void row_cubic(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                    const double* m, Py_ssize_t k, Py_ssize_t j, Py_ssize_t ni, double cval,
                    double* buf) noexcept nogil:
    cdef double bz = (m[0] * k + m[1] * j) + m[3]
    cdef double by = (m[4] * k + m[5] * j) + m[7]
    cdef double bx = (m[8] * k + m[9] * j) + m[11]
    cdef double hz = nz - 0.5, hy = ny - 0.5, hx = nx - 0.5
    cdef double pz, py, px, fz, fy, fx, di, vz, vy, vx
    cdef double wz[4]
    cdef double wy[4]
    cdef double wx[4]
    cdef Py_ssize_t iz[4]
    cdef Py_ssize_t iy[4]
    cdef Py_ssize_t ix[4]
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
        bspline_weights(pz - fz, wz)
        bspline_weights(py - fy, wy)
        bspline_weights(px - fx, wx)
        z0 = <Py_ssize_t>fz
        y0 = <Py_ssize_t>fy
        x0 = <Py_ssize_t>fx
        for a in range(4):
            iz[a] = fold_mirror(z0 + a - 1, nz)
            iy[a] = fold_mirror(y0 + a - 1, ny)
            ix[a] = fold_mirror(x0 + a - 1, nx)
        vz = 0.0
        for c in range(4):
            vy = 0.0
            for b in range(4):
                row = src + (iz[c] * ny + iy[b]) * nx
                vx = wx[0] * <double>row[ix[0]]
                vx = vx + wx[1] * <double>row[ix[1]]
                vx = vx + wx[2] * <double>row[ix[2]]
                vx = vx + wx[3] * <double>row[ix[3]]
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
        else:
            row_cubic(src, nz, ny, nx, m, k, j, ni, cval, buf)
        store_row(buf, out + r * ni, ni, lo, hi)


def _affine_typed(const voxel_t[:, :, ::1] src, store_t[:, :, ::1] out,
                  const double[:, ::1] matrix, int order, double cval, double lo, double hi,
                  double[:, ::1] buf, int threads):
    cdef Py_ssize_t nz = src.shape[0], ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t nj = out.shape[1], ni = out.shape[2]
    cdef Py_ssize_t rows = out.shape[0] * nj
    cdef Py_ssize_t per, b
    with nogil:
        if threads <= 1:
            affine_rows(&src[0, 0, 0], nz, ny, nx, &out[0, 0, 0], nj, ni, &matrix[0, 0], order,
                        cval, lo, hi, &buf[0, 0], 0, rows)
        else:
            per = (rows + threads - 1) // threads
            for b in prange(threads, num_threads=threads, schedule="static"):
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
    buf = np.empty((threads, plan.out.shape[2]), np.float64)
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
    cdef Py_ssize_t per, b
    with nogil:
        if threads <= 1:
            axis_rows(&src[0, 0, 0], ny, nx, &out[0, 0, 0], nj, ni, axis, &index[0, 0],
                      &weight[0, 0], taps, lo, hi, &buf[0, 0], 0, rows)
        else:
            per = (rows + threads - 1) // threads
            for b in prange(threads, num_threads=threads, schedule="static"):
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
    buf = np.empty((threads, plan.out.shape[2]), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    _axis_typed(plan.src, plan.out, plan.axis, plan.index, plan.weight, lo, hi, buf, threads)
