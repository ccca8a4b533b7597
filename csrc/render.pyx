# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native rendering: thick oblique slabs (MPR, MIP), axis projections, sampling at points.

The rules are the oracle's, in voxelflow.kernels.reference.render, to the bit. The Python-level
functions validate through the reference module, then run typed loops without the GIL.

sample_slab works in tiles of BAND output rows by STRIP columns, in blocks of consecutive
tiles that the threads take on demand (reference.resample.row_blocks: a thread that loses its
core to another process then holds up no other); for each row of a tile and each sample s,
the row's values go into a float64 buffer and are reduced into an accumulator row (both per
block, allocated by the caller so the loop cannot fail). The samples of a tile's rows read a
region of the input small enough to stay in cache from one row to the next (the 20 sample
rows of a whole 512-pixel oblique row do not). Each pixel's value is independent of the order
pixels are visited in, so tiling and threads never change a bit. Positions along a row are
monotone in i (i * step is one rounding, then one addition: both monotone), so the pixels
inside the volume form one span of i, and so do the pixels whose 8 linear neighbours are all
in bounds; both spans are found exactly (an estimate checked against the position rule
itself, a bisection where the check fails), the interior span runs without clamps or tests
(in C, vectorised around the loads: vf_linear_*), and only the few pixels near the volume's
faces take the clamped path.

project_axis streams: along axes 0 and 1 each pass folds four contiguous input row slices into
an accumulator tile that stays in cache; along axis 2 each output value reduces one input row
(sums four rows at a time, as four independent chains of additions in index order).
"""

import numpy as np

from cython.parallel cimport prange

from fused cimport store_t, voxel_t
from interp cimport (
    INT32_LIMIT,
    floor_fast,
    linear_interior,
    rint_fast,
    sample_cubic,
    sample_linear,
    sample_nearest,
    store_row,
)

from voxelflow.kernels.reference.render import (
    check_project_axis,
    check_sample_points,
    check_sample_slab,
)
from voxelflow.kernels.reference.resample import row_blocks

# One sample row folded into the slab accumulators (the reference's reduction step), in C for
# the multi-target build of interp.pxd's linear loop (whose header defines VF_CLONES).
cdef extern from *:
    """
    /* Written as selections so that it compiles to blends: random data would mispredict a
       branch on every other pixel. */
    VF_CLONES static void vf_reduce(int mode, const double *buf, double *acc, double *cnt,
                                    Py_ssize_t start, Py_ssize_t stop) {
        Py_ssize_t i;
        if (mode == 0) {
            for (i = start; i < stop; i++) {
                const double v = buf[i], a = acc[i];
                acc[i] = ((v > a) | (v != v)) ? v : a;
                cnt[i] += 1.0;
            }
        } else if (mode == 1) {
            for (i = start; i < stop; i++) {
                const double v = buf[i], a = acc[i];
                acc[i] = ((v < a) | (v != v)) ? v : a;
                cnt[i] += 1.0;
            }
        } else {
            for (i = start; i < stop; i++) {
                acc[i] = acc[i] + buf[i];
                cnt[i] += 1.0;
            }
        }
    }
    """
    void vf_reduce(int, const double*, double*, double*, Py_ssize_t, Py_ssize_t) noexcept nogil

# The reference module's mode codes (MODES).
cdef enum:
    MODE_MAX = 0
    MODE_MIN = 1
    MODE_SUM = 2
    MODE_MEAN = 3

cdef double INF = float("inf")

# sample_slab works in tiles of BAND rows by STRIP columns, dealt to threads in turn: tiles
# differ in how much of them lies inside the volume, so contiguous halves would leave one
# thread idle.
cdef Py_ssize_t BAND = 16
cdef Py_ssize_t STRIP = 128
# sample_points stores through a per-thread buffer of this many points.
cdef Py_ssize_t POINT_CHUNK = 1024
# project_axis reduces tiles of this many output elements (accumulators of 64-512 KiB, in L2:
# long contiguous runs of input per step, which the hardware prefetcher streams at full speed).
cdef Py_ssize_t TILE = 16384


cdef inline bint is_inside(Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx, double pz, double py,
                           double px) noexcept nogil:
    return (pz >= -0.5 and pz <= nz - 0.5 and py >= -0.5 and py <= ny - 0.5 and px >= -0.5
            and px <= nx - 0.5)


# ---------------------------------------------------------------------------------------------
# Spans of a row where a bound holds

cdef inline bint holds(double p, double c, int op) noexcept nogil:
    if op == 0:
        return p >= c
    if op == 1:
        return p > c
    if op == 2:
        return p <= c
    return p < c


cdef Py_ssize_t first_holding(double b, double st, double c, int op, Py_ssize_t lo,
                              Py_ssize_t hi) noexcept nogil:
    """The first i in [lo, hi] where holds(b + st * i, c, op) (hi: nowhere), for a bound that,
    once it holds along the row, holds to the row's end (b finite, st != 0 its way)."""
    cdef double t = (c - b) / st
    cdef Py_ssize_t e, mid, k
    if not t > <double>lo:  # NaN included
        e = lo
    elif t >= <double>hi:
        e = hi
    else:
        e = <Py_ssize_t>t
    # The estimate is exact but for the roundings of b + st * i: check it and its successor
    # against the rule itself, and bisect only if both fail.
    for k in range(2):
        if e + k <= hi and (e + k == hi or holds(b + st * <double>(e + k), c, op)) and (
                e + k == lo or not holds(b + st * <double>(e + k - 1), c, op)):
            return e + k
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if holds(b + st * <double>mid, c, op):
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef inline void axis_span(double b, double st, double lo, double hi, bint open_hi,
                           Py_ssize_t* start, Py_ssize_t* stop) noexcept nogil:
    """Narrow [start, stop) to the i where lo <= b + st * i <= hi (< hi if open_hi)."""
    cdef Py_ssize_t a, c
    if start[0] >= stop[0]:
        return
    if not (b - b == 0.0):  # b infinite or NaN: every position is +-inf or NaN, outside
        stop[0] = start[0]
        return
    if st == 0.0:
        if b >= lo and (b < hi if open_hi else b <= hi):
            return
        stop[0] = start[0]
        return
    if st > 0.0:
        a = first_holding(b, st, lo, 0, start[0], stop[0])
        c = first_holding(b, st, hi, 0 if open_hi else 1, a, stop[0])
    else:
        a = first_holding(b, st, hi, 3 if open_hi else 2, start[0], stop[0])
        c = first_holding(b, st, lo, 3, a, stop[0])
    start[0] = a
    stop[0] = c


# ---------------------------------------------------------------------------------------------
# sample_slab

cdef void bilinear_interior(const voxel_t* src, Py_ssize_t ny, Py_ssize_t nx, Py_ssize_t z0,
                            double by, double bx, double sy, double sx, Py_ssize_t start,
                            Py_ssize_t stop, double* buf) noexcept nogil:
    """linear_interior on a row whose z is the integer z0 (tz = 0; integer voxels only). The
    reference's (1 - 0) * c0 + 0 * c1 is c0 exactly when c1 is finite and c0 is not -0.0,
    which holds for every interpolation of integers: the z1 taps are skipped, not changed."""
    cdef Py_ssize_t i, y0, x0
    cdef double di, py, px, ty, tx, c00, c01
    cdef const voxel_t* r
    cdef const voxel_t* slice_ = src + z0 * ny * nx
    for i in range(start, stop):
        di = <double>i
        py = by + sy * di
        px = bx + sx * di
        y0 = <Py_ssize_t>py
        x0 = <Py_ssize_t>px
        ty = (py - <double>y0) + 0.0
        tx = (px - <double>x0) + 0.0
        r = slice_ + y0 * nx + x0
        c00 = (1.0 - tx) * <double>r[0] + tx * <double>r[1]
        c01 = (1.0 - tx) * <double>r[nx] + tx * <double>r[nx + 1]
        buf[i - start] = (1.0 - ty) * c00 + ty * c01


cdef void slab_sample_row(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                          const double* m, int order, Py_ssize_t s, Py_ssize_t j,
                          Py_ssize_t i0, Py_ssize_t i1, double* buf,
                          Py_ssize_t* span) noexcept nogil:
    """Sample s of output row j, columns i0..i1, into buf[i - i0] over the span of those
    columns that is inside, returned in span[0:2]."""
    cdef double bz = (m[0] * s + m[1] * j) + m[3]
    cdef double by = (m[4] * s + m[5] * j) + m[7]
    cdef double bx = (m[8] * s + m[9] * j) + m[11]
    cdef double sz = m[2], sy = m[6], sx = m[10]
    cdef Py_ssize_t start = i0, stop = i1, cstart, cstop, i
    cdef double di
    axis_span(bz, sz, -0.5, nz - 0.5, False, &start, &stop)
    axis_span(by, sy, -0.5, ny - 0.5, False, &start, &stop)
    axis_span(bx, sx, -0.5, nx - 0.5, False, &start, &stop)
    span[0] = start
    span[1] = stop
    if start >= stop:
        return
    if order == 1:
        cstart = start
        cstop = stop
        axis_span(bz, sz, 0.0, <double>(nz - 1), True, &cstart, &cstop)
        axis_span(by, sy, 0.0, <double>(ny - 1), True, &cstart, &cstop)
        axis_span(bx, sx, 0.0, <double>(nx - 1), True, &cstart, &cstop)
        if cstart >= cstop:
            cstart = stop
            cstop = stop
        for i in range(start, cstart):
            di = <double>i
            buf[i - i0] = sample_linear(src, nz, ny, nx, bz + sz * di, by + sy * di,
                                        bx + sx * di)
        if (not (voxel_t is float or voxel_t is double)) and cstart < cstop and sz == 0.0 and (
                bz == floor_fast(bz)):
            bilinear_interior(src, ny, nx, <Py_ssize_t>bz, by, bx, sy, sx, cstart, cstop,
                              buf + (cstart - i0))
        else:
            linear_interior(src, ny, nx, nz * ny * nx < INT32_LIMIT, bz, by, bx, sz, sy, sx,
                            cstart, cstop, buf + (cstart - i0))
        for i in range(cstop, stop):
            di = <double>i
            buf[i - i0] = sample_linear(src, nz, ny, nx, bz + sz * di, by + sy * di,
                                        bx + sx * di)
    elif order == 0:
        for i in range(start, stop):
            di = <double>i
            buf[i - i0] = sample_nearest(src, nz, ny, nx, bz + sz * di, by + sy * di,
                                         bx + sx * di)
    else:
        for i in range(start, stop):
            di = <double>i
            buf[i - i0] = sample_cubic(src, nz, ny, nx, bz + sz * di, by + sy * di,
                                       bx + sx * di)


cdef void slab_tiles(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                     store_t* out, Py_ssize_t nj, Py_ssize_t ni, const double* m, int order,
                     double cval, Py_ssize_t samples, int mode, double lo, double hi,
                     double* work, Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    """Tiles first .. last - 1 of the output (BAND rows by STRIP columns, row-major):
    the samples of a tile's rows read a region of the input that stays in cache from one row
    to the next (a whole 512-pixel row of a 20-sample oblique slab does not)."""
    cdef double* buf = work
    cdef double* acc = work + STRIP
    cdef double* cnt = work + 2 * STRIP
    cdef Py_ssize_t strips = (ni + STRIP - 1) // STRIP
    cdef Py_ssize_t tile, band, i0, w, j, s, i
    cdef Py_ssize_t span[2]
    cdef double init = -INF if mode == MODE_MAX else (INF if mode == MODE_MIN else -0.0)
    for tile in range(first, last):
        band = tile // strips
        i0 = (tile - band * strips) * STRIP
        w = min(STRIP, ni - i0)
        for j in range(band * BAND, min(nj, (band + 1) * BAND)):
            for i in range(w):
                acc[i] = init
                cnt[i] = 0.0
            for s in range(samples):
                slab_sample_row(src, nz, ny, nx, m, order, s, j, i0, i0 + w, buf, span)
                vf_reduce(mode, buf, acc, cnt, span[0] - i0, span[1] - i0)
            for i in range(w):
                if cnt[i] == 0.0:
                    buf[i] = cval
                elif mode == MODE_MEAN:
                    buf[i] = acc[i] / cnt[i]
                else:
                    buf[i] = acc[i]
            store_row(buf, out + j * ni + i0, w, lo, hi)


def _slab_typed(const voxel_t[:, :, ::1] src, store_t[:, ::1] out, const double[:, ::1] matrix,
                int order, double cval, Py_ssize_t samples, int mode, double lo, double hi,
                double[:, ::1] work, int threads):
    cdef Py_ssize_t nz = src.shape[0], ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t nj = out.shape[0], ni = out.shape[1]
    cdef Py_ssize_t tiles = ((nj + BAND - 1) // BAND) * ((ni + STRIP - 1) // STRIP)
    cdef Py_ssize_t blocks = work.shape[0]
    cdef Py_ssize_t per = (tiles + blocks - 1) // blocks
    cdef Py_ssize_t b
    with nogil:
        if threads <= 1:
            slab_tiles(&src[0, 0, 0], nz, ny, nx, &out[0, 0], nj, ni, &matrix[0, 0], order,
                       cval, samples, mode, lo, hi, &work[0, 0], 0, tiles)
        else:
            for b in prange(blocks, num_threads=threads, schedule="dynamic", chunksize=1):
                slab_tiles(&src[0, 0, 0], nz, ny, nx, &out[0, 0], nj, ni, &matrix[0, 0], order,
                           cval, samples, mode, lo, hi, &work[b, 0], min(tiles, b * per),
                           min(tiles, (b + 1) * per))


def _store_bounds(dtype):
    if dtype.kind == "f":
        return 0.0, 0.0
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def sample_slab(src, matrix, out, order, cval, samples, mode):
    """Render a slab; see voxelflow.kernels.reference.render.sample_slab."""
    plan = check_sample_slab(src, matrix, out, order, cval, samples, mode)
    if plan.out.size == 0:
        return
    nj, ni = plan.out.shape
    tiles = ((nj + BAND - 1) // BAND) * ((ni + STRIP - 1) // STRIP)
    threads = max(1, min(plan.threads, tiles))
    work = np.empty((row_blocks(tiles, threads), 3 * STRIP), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    _slab_typed(plan.src, plan.out, plan.matrix, plan.order, plan.cval, plan.samples, plan.mode,
                lo, hi, work, threads)


# ---------------------------------------------------------------------------------------------
# project_axis

cdef inline void store_acc(const voxel_t* acc, store_t* out, Py_ssize_t n, double lo,
                           double hi) noexcept nogil:
    """The store rule for values held in src's dtype (max, min)."""
    cdef Py_ssize_t i
    cdef double v
    if store_t is float or store_t is double:
        for i in range(n):
            out[i] = <store_t><double>acc[i]
    else:
        for i in range(n):
            v = <double>acc[i]
            if v != v:
                v = 0.0
            elif v < lo:
                v = lo
            elif v > hi:
                v = hi
            out[i] = <store_t>rint_fast(v)


cdef inline voxel_t max_step(voxel_t acc, voxel_t v) noexcept nogil:
    """acc = v if (v > acc or v is NaN) else acc: NaN propagates (numpy.max)."""
    if voxel_t is float or voxel_t is double:
        return v if (v > acc or v != v) else acc
    return v if v > acc else acc


cdef inline voxel_t min_step(voxel_t acc, voxel_t v) noexcept nogil:
    if voxel_t is float or voxel_t is double:
        return v if (v < acc or v != v) else acc
    return v if v < acc else acc


cdef void reduce_into(int mode, voxel_t* vacc, double* dacc, const voxel_t* rows,
                      Py_ssize_t stride, Py_ssize_t nrows, Py_ssize_t n) noexcept nogil:
    """Fold `nrows` (1..4) rows rows[r * stride + e] into the accumulators, in row order per
    element: one pass over the accumulator for up to four input rows."""
    cdef Py_ssize_t e
    cdef const voxel_t* r0 = rows
    cdef const voxel_t* r1 = rows + stride
    cdef const voxel_t* r2 = rows + 2 * stride
    cdef const voxel_t* r3 = rows + 3 * stride
    if mode == MODE_MAX:
        if nrows == 4:
            for e in range(n):
                vacc[e] = max_step(max_step(max_step(max_step(vacc[e], r0[e]), r1[e]), r2[e]),
                                   r3[e])
        else:
            for e in range(n):
                vacc[e] = max_step(vacc[e], r0[e])
    elif mode == MODE_MIN:
        if nrows == 4:
            for e in range(n):
                vacc[e] = min_step(min_step(min_step(min_step(vacc[e], r0[e]), r1[e]), r2[e]),
                                   r3[e])
        else:
            for e in range(n):
                vacc[e] = min_step(vacc[e], r0[e])
    else:
        if nrows == 4:
            for e in range(n):
                dacc[e] = (((dacc[e] + <double>r0[e]) + <double>r1[e]) + <double>r2[e]) + (
                    <double>r3[e])
        else:
            for e in range(n):
                dacc[e] = dacc[e] + <double>r0[e]


cdef void project_strided(const voxel_t* src, Py_ssize_t nk, Py_ssize_t ne, store_t* out,
                          int mode, double lo, double hi, voxel_t* vacc, double* dacc,
                          Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t e0,
                          Py_ssize_t e1) noexcept nogil:
    """out[a, e] = reduce_k src[(a * nk + k) * ne + e] for a in a0..a1, e in e0..e1 (axis 0:
    one a; axis 1: a = z), in tiles of TILE elements of e: each step of k streams one
    contiguous run of the input into an accumulator that stays in cache."""
    cdef Py_ssize_t a, t0, n, k, e
    cdef const voxel_t* base
    for a in range(a0, a1):
        t0 = e0
        while t0 < e1:
            n = min(TILE, e1 - t0)
            base = src + a * nk * ne + t0
            if mode == MODE_MAX or mode == MODE_MIN:
                for e in range(n):
                    vacc[e] = base[e]
                k = 1
            else:
                for e in range(n):
                    dacc[e] = -0.0
                k = 0
            while k + 4 <= nk:
                reduce_into(mode, vacc, dacc, base + k * ne, ne, 4, n)
                k += 4
            while k < nk:
                reduce_into(mode, vacc, dacc, base + k * ne, ne, 1, n)
                k += 1
            if mode == MODE_MAX or mode == MODE_MIN:
                store_acc(vacc, out + a * ne + t0, n, lo, hi)
            else:
                if mode == MODE_MEAN:
                    for e in range(n):
                        dacc[e] = dacc[e] / <double>nk
                store_row(dacc, out + a * ne + t0, n, lo, hi)
            t0 += n


cdef void project_rows(const voxel_t* src, Py_ssize_t nk, store_t* out, int mode, double lo,
                       double hi, double* buf, Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    """out[r] = reduce_k src[r * nk + k] for rows first..last (axis 2), through buf."""
    cdef Py_ssize_t r, r0, n, k
    cdef voxel_t vmax, v
    cdef double acc, acc1, acc2, acc3
    cdef const voxel_t* row
    r0 = first
    while r0 < last:
        n = min(TILE, last - r0)
        r = 0
        if mode == MODE_SUM or mode == MODE_MEAN:
            # four rows at a time: four independent chains of additions, each in index order
            while r + 4 <= n:
                row = src + (r0 + r) * nk
                acc = -0.0
                acc1 = -0.0
                acc2 = -0.0
                acc3 = -0.0
                for k in range(nk):
                    acc = acc + <double>row[k]
                    acc1 = acc1 + <double>row[nk + k]
                    acc2 = acc2 + <double>row[2 * nk + k]
                    acc3 = acc3 + <double>row[3 * nk + k]
                if mode == MODE_MEAN:
                    acc = acc / <double>nk
                    acc1 = acc1 / <double>nk
                    acc2 = acc2 / <double>nk
                    acc3 = acc3 / <double>nk
                buf[r] = acc
                buf[r + 1] = acc1
                buf[r + 2] = acc2
                buf[r + 3] = acc3
                r += 4
        while r < n:
            row = src + (r0 + r) * nk
            if mode == MODE_MAX or mode == MODE_MIN:
                vmax = row[0]
                if mode == MODE_MAX:
                    for k in range(1, nk):
                        v = row[k]
                        if voxel_t is float or voxel_t is double:
                            if v > vmax or v != v:
                                vmax = v
                        else:
                            vmax = v if v > vmax else vmax
                else:
                    for k in range(1, nk):
                        v = row[k]
                        if voxel_t is float or voxel_t is double:
                            if v < vmax or v != v:
                                vmax = v
                        else:
                            vmax = v if v < vmax else vmax
                buf[r] = <double>vmax
            else:
                acc = -0.0
                for k in range(nk):
                    acc = acc + <double>row[k]
                buf[r] = acc / <double>nk if mode == MODE_MEAN else acc
            r += 1
        store_row(buf, out + r0, n, lo, hi)
        r0 += n


def _project_typed(const voxel_t[:, :, ::1] src, store_t[:, ::1] out, int axis, int mode,
                   double lo, double hi, voxel_t[:, ::1] vwork, double[:, ::1] dwork,
                   int threads):
    cdef Py_ssize_t nz = src.shape[0], ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t na, nk, ne, per, b
    cdef bint split_a
    if axis == 2:
        na, nk, ne = nz * ny, nx, 1
    elif axis == 1:
        na, nk, ne = nz, ny, nx
    else:
        na, nk, ne = 1, nz, ny * nx
    # Threads take blocks of a (output rows) when there are enough, else blocks of e.
    split_a = na >= threads
    per = (na + threads - 1) // threads if split_a else (ne + threads - 1) // threads
    with nogil:
        if axis == 2:
            if threads <= 1:
                project_rows(&src[0, 0, 0], nk, &out[0, 0], mode, lo, hi, &dwork[0, 0], 0, na)
            else:
                for b in prange(threads, num_threads=threads, schedule="static"):
                    project_rows(&src[0, 0, 0], nk, &out[0, 0], mode, lo, hi, &dwork[b, 0],
                                 min(na, b * per), min(na, (b + 1) * per))
        elif threads <= 1:
            project_strided(&src[0, 0, 0], nk, ne, &out[0, 0], mode, lo, hi, &vwork[0, 0],
                            &dwork[0, 0], 0, na, 0, ne)
        elif split_a:
            for b in prange(threads, num_threads=threads, schedule="static"):
                project_strided(&src[0, 0, 0], nk, ne, &out[0, 0], mode, lo, hi, &vwork[b, 0],
                                &dwork[b, 0], min(na, b * per), min(na, (b + 1) * per), 0, ne)
        else:
            for b in prange(threads, num_threads=threads, schedule="static"):
                project_strided(&src[0, 0, 0], nk, ne, &out[0, 0], mode, lo, hi, &vwork[b, 0],
                                &dwork[b, 0], 0, na, min(ne, b * per), min(ne, (b + 1) * per))


def project_axis(src, axis, mode, out):
    """Project along an axis; see voxelflow.kernels.reference.render.project_axis."""
    plan = check_project_axis(src, axis, mode, out)
    if plan.out.size == 0:
        return
    threads = max(1, min(plan.threads, plan.out.size))
    vwork = np.empty((threads, TILE), plan.src.dtype)
    dwork = np.empty((threads, TILE), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    _project_typed(plan.src, plan.out, plan.axis, plan.mode, lo, hi, vwork, dwork, threads)


# ---------------------------------------------------------------------------------------------
# sample_points

cdef void points_block(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny, Py_ssize_t nx,
                       const double* coords, store_t* out, int order, double cval, double lo,
                       double hi, double* buf, Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    cdef Py_ssize_t p0 = first, n, q
    cdef const double* c
    while p0 < last:
        n = min(POINT_CHUNK, last - p0)
        for q in range(n):
            c = coords + 3 * (p0 + q)
            if not is_inside(nz, ny, nx, c[0], c[1], c[2]):
                buf[q] = cval
            elif order == 1:
                buf[q] = sample_linear(src, nz, ny, nx, c[0], c[1], c[2])
            elif order == 0:
                buf[q] = sample_nearest(src, nz, ny, nx, c[0], c[1], c[2])
            else:
                buf[q] = sample_cubic(src, nz, ny, nx, c[0], c[1], c[2])
        store_row(buf, out + p0, n, lo, hi)
        p0 += n


def _points_typed(const voxel_t[:, :, ::1] src, store_t[::1] out, const double[:, ::1] coords,
                  int order, double cval, double lo, double hi, double[:, ::1] work,
                  int threads):
    cdef Py_ssize_t nz = src.shape[0], ny = src.shape[1], nx = src.shape[2]
    cdef Py_ssize_t n = out.shape[0]
    cdef Py_ssize_t per = (n + threads - 1) // threads
    cdef Py_ssize_t b
    with nogil:
        if threads <= 1:
            points_block(&src[0, 0, 0], nz, ny, nx, &coords[0, 0], &out[0], order, cval, lo, hi,
                         &work[0, 0], 0, n)
        else:
            for b in prange(threads, num_threads=threads, schedule="static"):
                points_block(&src[0, 0, 0], nz, ny, nx, &coords[0, 0], &out[0], order, cval,
                             lo, hi, &work[b, 0], min(n, b * per), min(n, (b + 1) * per))


def sample_points(src, coords, out, order, cval):
    """Sample at points; see voxelflow.kernels.reference.render.sample_points."""
    plan = check_sample_points(src, coords, out, order, cval)
    if plan.out.size == 0:
        return
    threads = max(1, min(plan.threads, (plan.out.size + POINT_CHUNK - 1) // POINT_CHUNK))
    work = np.empty((threads, POINT_CHUNK), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    _points_typed(plan.src, plan.out, plan.coords, plan.order, plan.cval, lo, hi, work, threads)
