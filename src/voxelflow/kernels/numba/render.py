"""Numba rendering: thick oblique slabs (MPR, MIP), axis projections, sampling at points.

The rules are the oracle's (:mod:`voxelflow.kernels.reference.render`), to the bit; the loops
are the Cython backend's (csrc/render.pyx, whose docstring explains them): slabs in bands of
rows, each sample of a row computed into a float64 buffer over the exact span of columns
inside the volume (clamp-free over the span whose linear neighbours are all in bounds, in the
staged blocks of the C loop), then reduced into an accumulator row; inside samples are counted
per span (a difference array), not per pixel. Projections
along axes 0 and 1 fold one input row slice per pass into an accumulator tile of up to
STRIDED_TILE elements (under Numba measured faster than the Cython backend's four rows per
pass over smaller tiles).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..reference.render import (
    MODE_MAX,
    MODE_MEAN,
    MODE_MIN,
    MODE_SUM,
    check_project_axis,
    check_sample_points,
    check_sample_slab,
)
from ..reference.resample import row_blocks
from .config import JIT, PARALLEL_JIT, apply_num_threads
from .resample import (
    _blocks_on_demand,
    _linear_interior,
    _linear_interior_pairs,
    _linear_scratch,
    _sample_cubic,
    _sample_linear,
    _sample_nearest,
    _store_bounds,
    _voxel_pairs,
    store_row,
)

__all__ = ["project_axis", "sample_points", "sample_slab"]

# The Cython backend's tiling (see csrc/render.pyx), but whole rows of up to 512 columns: the
# span search per row and sample costs more under Numba, measured 16% of the slab at 128.
BAND = 16
STRIP = 512
POINT_CHUNK = 1024
TILE = 16384
# project_axis along axes 0 and 1: accumulator tiles (in L2) of up to this many elements.
STRIDED_TILE = 262144


# ---------------------------------------------------------------------------------------------
# One sample at an inside position


@njit(**JIT)
def _is_inside(shape, pz, py, px):  # type: ignore[no-untyped-def]
    return (
        pz >= -0.5
        and pz <= shape[0] - 0.5
        and py >= -0.5
        and py <= shape[1] - 0.5
        and px >= -0.5
        and px <= shape[2] - 0.5
    )


# ---------------------------------------------------------------------------------------------
# Spans of a row where a bound holds


@njit(**JIT)
def _holds(p, c, op):  # type: ignore[no-untyped-def]
    if op == 0:
        return p >= c
    if op == 1:
        return p > c
    if op == 2:
        return p <= c
    return p < c


@njit(**JIT)
def _first_holding(b, st, c, op, lo, hi):  # type: ignore[no-untyped-def]
    """The first i in [lo, hi] where _holds(b + st * i, c, op) (see csrc/render.pyx)."""
    t = (c - b) / st
    if not t > float(lo):
        e = lo
    elif t >= float(hi):
        e = hi
    else:
        e = int(t)
    for k in range(2):
        q = e + k
        if (
            q <= hi
            and (q == hi or _holds(b + st * float(q), c, op))
            and (q == lo or not _holds(b + st * float(q - 1), c, op))
        ):
            return q
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if _holds(b + st * float(mid), c, op):
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(**JIT)
def _axis_span(b, st, lo, hi, open_hi, start, stop):  # type: ignore[no-untyped-def]
    """[start, stop) narrowed to the i where lo <= b + st * i <= hi (< hi if open_hi)."""
    if start >= stop:
        return start, stop
    if not np.isfinite(b):  # every position +-inf or NaN: outside
        return start, start
    if st == 0.0:
        if b >= lo and (b < hi if open_hi else b <= hi):
            return start, stop
        return start, start
    if st > 0.0:
        a = _first_holding(b, st, lo, 0, start, stop)
        c = _first_holding(b, st, hi, 0 if open_hi else 1, a, stop)
    else:
        a = _first_holding(b, st, hi, 3 if open_hi else 2, start, stop)
        c = _first_holding(b, st, lo, 3, a, stop)
    return a, c


# ---------------------------------------------------------------------------------------------
# sample_slab


@njit(**JIT)
def _bilinear_interior(src, z0, by, bx, sy, sx, start, stop, buf, off):  # type: ignore[no-untyped-def]
    """_linear_interior on a row at the integer z0, integer voxels only (csrc/render.pyx)."""
    plane = src[z0]
    for i in range(start, stop):
        di = float(i)
        py = by + sy * di
        px = bx + sx * di
        y0, x0 = int(py), int(px)
        ty = (py - float(y0)) + 0.0
        tx = (px - float(x0)) + 0.0
        c00 = (1.0 - tx) * float(plane[y0, x0]) + tx * float(plane[y0, x0 + 1])
        c01 = (1.0 - tx) * float(plane[y0 + 1, x0]) + tx * float(plane[y0 + 1, x0 + 1])
        buf[i - off] = (1.0 - ty) * c00 + ty * c01


# inlined in numba's IR: as a call, its many array arguments measured 4-8% of the slab
@njit(inline="always", **JIT)
def _slab_sample_row(src, flat, m, order, integer, s, j, i0, i1, buf, acc, mode, w, idx, scratch):  # type: ignore[no-untyped-def]
    """Sample s of output row j, columns i0..i1, reduced into acc[i - i0] (through
    buf[i - i0]) over its inside span, which it returns."""
    nz, ny, nx = src.shape
    bz = (m[0, 0] * s + m[0, 1] * j) + m[0, 3]
    by = (m[1, 0] * s + m[1, 1] * j) + m[1, 3]
    bx = (m[2, 0] * s + m[2, 1] * j) + m[2, 3]
    sz, sy, sx = m[0, 2], m[1, 2], m[2, 2]
    start, stop = _axis_span(bz, sz, -0.5, nz - 0.5, False, i0, i1)
    start, stop = _axis_span(by, sy, -0.5, ny - 0.5, False, start, stop)
    start, stop = _axis_span(bx, sx, -0.5, nx - 0.5, False, start, stop)
    if start >= stop:
        return start, start
    if order == 1:
        cstart, cstop = _axis_span(bz, sz, 0.0, float(nz - 1), True, start, stop)
        cstart, cstop = _axis_span(by, sy, 0.0, float(ny - 1), True, cstart, cstop)
        cstart, cstop = _axis_span(bx, sx, 0.0, float(nx - 1), True, cstart, cstop)
        if cstart >= cstop:
            cstart, cstop = stop, stop
        for i in range(start, cstart):
            di = float(i)
            buf[i - i0] = _sample_linear(src, bz + sz * di, by + sy * di, bx + sx * di)
        for i in range(cstop, stop):
            di = float(i)
            buf[i - i0] = _sample_linear(src, bz + sz * di, by + sy * di, bx + sx * di)
        t, offs, v, pairs, bits, signed, pw = scratch
        if integer and cstart < cstop and sz == 0.0 and bz == np.floor(bz):
            _bilinear_interior(src, int(bz), by, bx, sy, sx, cstart, cstop, buf, i0)
        elif bits:
            _linear_interior_pairs(
                pairs,
                bits,
                signed,
                ny,
                nx,
                bz,
                by,
                bx,
                sz,
                sy,
                sx,
                cstart,
                cstop,
                buf,
                i0,
                t,
                offs,
                pw,
            )
        else:
            _linear_interior(
                flat, ny, nx, bz, by, bx, sz, sy, sx, cstart, cstop, buf, i0, t, offs, v
            )
    elif order == 0:
        for i in range(start, stop):
            di = float(i)
            buf[i - i0] = _sample_nearest(src, bz + sz * di, by + sy * di, bx + sx * di)
    else:
        for i in range(start, stop):
            di = float(i)
            buf[i - i0] = _sample_cubic(src, bz + sz * di, by + sy * di, bx + sx * di, w, idx)
    _reduce_span(mode, buf, acc, start - i0, stop - i0)
    return start, stop


@njit(**JIT)
def _reduce_span(mode, buf, acc, start, stop):  # type: ignore[no-untyped-def]
    # selections, not branches: they vectorise, and random data mispredicts branches; over
    # slices, measured 5% faster for the whole slab than indexing from `start`
    b = buf[start:stop]
    c = acc[start:stop]
    if mode == MODE_MAX:
        for i in range(b.shape[0]):
            v, a = b[i], c[i]
            c[i] = v if (v > a) | np.isnan(v) else a
    elif mode == MODE_MIN:
        for i in range(b.shape[0]):
            v, a = b[i], c[i]
            c[i] = v if (v < a) | np.isnan(v) else a
    else:
        for i in range(b.shape[0]):
            c[i] = c[i] + b[i]


@njit(**JIT)
def _slab_tiles(
    src, pairs, bits, signed, m, out, order, integer, cval, samples, mode, lo, hi, work, first, last
):  # type: ignore[no-untyped-def]
    """Tiles first .. last - 1 of the output (BAND rows by STRIP columns, row-major)."""
    nj, ni = out.shape
    buf, acc, cnt = work[0], work[1], work[2]
    w = np.empty((3, 4))
    idx = np.empty((3, 4), np.int64)
    flat = src.reshape(src.size)
    scratch = _linear_scratch(src, pairs, bits, signed)
    strips = (ni + STRIP - 1) // STRIP
    if mode == MODE_MAX:
        init = -np.inf
    elif mode == MODE_MIN:
        init = np.inf
    else:
        init = -0.0
    for tile in range(first, last):
        band = tile // strips
        i0 = (tile - band * strips) * STRIP
        width = min(STRIP, ni - i0)
        for j in range(band * BAND, min(nj, (band + 1) * BAND)):
            for i in range(width):
                acc[i] = init
            # inside samples per pixel, as a difference array: each sample row adds one
            # over one span of columns
            for i in range(width + 1):
                cnt[i] = 0.0
            for s in range(samples):
                start, stop = _slab_sample_row(
                    src,
                    flat,
                    m,
                    order,
                    integer,
                    s,
                    j,
                    i0,
                    i0 + width,
                    buf,
                    acc,
                    mode,
                    w,
                    idx,
                    scratch,
                )
                if start < stop:
                    cnt[start - i0] += 1.0
                    cnt[stop - i0] -= 1.0
            count = 0.0
            for i in range(width):
                count += cnt[i]
                if count == 0.0:
                    buf[i] = cval
                elif mode == MODE_MEAN:
                    buf[i] = acc[i] / count
                else:
                    buf[i] = acc[i]
            store_row(buf[:width], out[j, i0 : i0 + width], lo, hi)


@njit(**PARALLEL_JIT)
def _slab_parallel(
    src, pairs, bits, signed, m, out, order, integer, cval, samples, mode, lo, hi, works, tiles
):  # type: ignore[no-untyped-def]
    blocks = works.shape[0]
    per = (tiles + blocks - 1) // blocks
    for b in prange(blocks):
        _slab_tiles(
            src,
            pairs,
            bits,
            signed,
            m,
            out,
            order,
            integer,
            cval,
            samples,
            mode,
            lo,
            hi,
            works[b],
            min(tiles, b * per),
            min(tiles, (b + 1) * per),
        )


def sample_slab(
    src: np.ndarray,
    matrix: np.ndarray,
    out: np.ndarray,
    order: int,
    cval: float,
    samples: int,
    mode: str,
) -> None:
    """Render a slab; see :func:`voxelflow.kernels.reference.render.sample_slab`."""
    plan = check_sample_slab(src, matrix, out, order, cval, samples, mode)
    if plan.out.size == 0:
        return
    nj, ni = plan.out.shape
    tiles = ((nj + BAND - 1) // BAND) * ((ni + STRIP - 1) // STRIP)
    threads = max(1, min(plan.threads, tiles))
    works = np.empty((row_blocks(tiles, threads), 3, STRIP + 1), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    integer = plan.src.dtype.kind != "f"
    pairs, bits = _voxel_pairs(plan.src)
    args = (
        plan.src,
        pairs,
        bits,
        plan.src.dtype.kind == "i",
        plan.matrix,
        plan.out,
        plan.order,
        integer,
        plan.cval,
        plan.samples,
        plan.mode,
        lo,
        hi,
    )
    if threads <= 1:
        _slab_tiles(*args, works[0], 0, tiles)
        return
    apply_num_threads()
    with _blocks_on_demand():
        _slab_parallel(*args, works, tiles)


# ---------------------------------------------------------------------------------------------
# project_axis


@njit(**JIT)
def _max_step(acc, v):  # type: ignore[no-untyped-def]
    # isnan is False for integers: one rule for every dtype (NaN propagates, as numpy.max)
    return v if (v > acc or np.isnan(v)) else acc


@njit(**JIT)
def _min_step(acc, v):  # type: ignore[no-untyped-def]
    return v if (v < acc or np.isnan(v)) else acc


@njit(**JIT)
def _project_strided(src, nk, ne, out, mode, lo, hi, vacc, dacc, a0, a1, e0, e1):  # type: ignore[no-untyped-def]
    """out[a, e] = reduce_k src[a, k, e] for a in a0..a1, e in e0..e1 (src as (na, nk, ne)),
    in tiles of up to STRIDED_TILE elements, one whole input row slice per pass (measured
    faster under Numba than the Cython backend's four rows per pass over smaller tiles)."""
    for a in range(a0, a1):
        t0 = e0
        while t0 < e1:
            n = min(vacc.shape[0], e1 - t0)
            va = vacc[:n]
            da = dacc[:n]
            if mode == MODE_MAX or mode == MODE_MIN:
                first = src[a, 0, t0 : t0 + n]
                for e in range(n):
                    va[e] = first[e]
                for k in range(1, nk):
                    r = src[a, k, t0 : t0 + n]
                    if mode == MODE_MAX:
                        for e in range(n):
                            va[e] = _max_step(va[e], r[e])
                    else:
                        for e in range(n):
                            va[e] = _min_step(va[e], r[e])
                for e in range(n):
                    da[e] = float(va[e])
            else:
                for e in range(n):
                    da[e] = -0.0
                for k in range(nk):
                    r = src[a, k, t0 : t0 + n]
                    for e in range(n):
                        da[e] = da[e] + float(r[e])
                if mode == MODE_MEAN:
                    for e in range(n):
                        da[e] = da[e] / float(nk)
            store_row(da, out[a, t0 : t0 + n], lo, hi)
            t0 += n


@njit(**JIT)
def _project_rows(src, out, mode, lo, hi, buf, first, last):  # type: ignore[no-untyped-def]
    """out[r] = reduce_k src[r, k] for rows first..last (axis 2; src as (rows, nk))."""
    nk = src.shape[1]
    r0 = first
    while r0 < last:
        n = min(TILE, last - r0)
        r = 0
        if mode == MODE_SUM or mode == MODE_MEAN:
            while r + 4 <= n:
                q = r0 + r
                acc = acc1 = acc2 = acc3 = -0.0
                for k in range(nk):
                    acc = acc + float(src[q, k])
                    acc1 = acc1 + float(src[q + 1, k])
                    acc2 = acc2 + float(src[q + 2, k])
                    acc3 = acc3 + float(src[q + 3, k])
                if mode == MODE_MEAN:
                    acc, acc1, acc2, acc3 = acc / nk, acc1 / nk, acc2 / nk, acc3 / nk
                buf[r], buf[r + 1], buf[r + 2], buf[r + 3] = acc, acc1, acc2, acc3
                r += 4
        while r < n:
            row = src[r0 + r]
            if mode == MODE_MAX:
                v = row[0]
                for k in range(1, nk):
                    v = _max_step(v, row[k])
                buf[r] = float(v)
            elif mode == MODE_MIN:
                v = row[0]
                for k in range(1, nk):
                    v = _min_step(v, row[k])
                buf[r] = float(v)
            else:
                acc = -0.0
                for k in range(nk):
                    acc = acc + float(row[k])
                buf[r] = acc / nk if mode == MODE_MEAN else acc
            r += 1
        store_row(buf[:n], out[r0 : r0 + n], lo, hi)
        r0 += n


@njit(**PARALLEL_JIT)
def _project_parallel(src, out, mode, lo, hi, vwork, dwork, threads, split_a):  # type: ignore[no-untyped-def]
    na, nk, ne = src.shape
    per = (na + threads - 1) // threads if split_a else (ne + threads - 1) // threads
    for b in prange(threads):
        if ne == 1:
            _project_rows(
                src[:, :, 0],
                out[:, 0],
                mode,
                lo,
                hi,
                dwork[b],
                min(na, b * per),
                min(na, (b + 1) * per),
            )
        elif split_a:
            _project_strided(
                src,
                nk,
                ne,
                out,
                mode,
                lo,
                hi,
                vwork[b],
                dwork[b],
                min(na, b * per),
                min(na, (b + 1) * per),
                0,
                ne,
            )
        else:
            _project_strided(
                src,
                nk,
                ne,
                out,
                mode,
                lo,
                hi,
                vwork[b],
                dwork[b],
                0,
                na,
                min(ne, b * per),
                min(ne, (b + 1) * per),
            )


def project_axis(src: np.ndarray, axis: int, mode: str, out: np.ndarray) -> None:
    """Project along an axis; see :func:`voxelflow.kernels.reference.render.project_axis`."""
    plan = check_project_axis(src, axis, mode, out)
    if plan.out.size == 0:
        return
    nz, ny, nx = plan.src.shape
    shape = {0: (1, nz, ny * nx), 1: (nz, ny, nx), 2: (nz * ny, nx, 1)}[plan.axis]
    src3 = plan.src.reshape(shape)
    out2 = plan.out.reshape(shape[0], shape[2])
    threads = max(1, min(plan.threads, plan.out.size))
    tile = TILE if plan.axis == 2 else STRIDED_TILE
    vwork = np.empty((threads, tile), plan.src.dtype)
    dwork = np.empty((threads, tile), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    if threads <= 1:
        if plan.axis == 2:
            _project_rows(src3[:, :, 0], out2[:, 0], plan.mode, lo, hi, dwork[0], 0, shape[0])
        else:
            _project_strided(
                src3,
                shape[1],
                shape[2],
                out2,
                plan.mode,
                lo,
                hi,
                vwork[0],
                dwork[0],
                0,
                shape[0],
                0,
                shape[2],
            )
        return
    apply_num_threads()
    _project_parallel(src3, out2, plan.mode, lo, hi, vwork, dwork, threads, shape[0] >= threads)


# ---------------------------------------------------------------------------------------------
# sample_points


@njit(**JIT)
def _points_block(src, coords, out, order, cval, lo, hi, buf, first, last):  # type: ignore[no-untyped-def]
    w = np.empty((3, 4))
    idx = np.empty((3, 4), np.int64)
    shape = src.shape
    p0 = first
    while p0 < last:
        n = min(POINT_CHUNK, last - p0)
        for q in range(n):
            pz, py, px = coords[p0 + q, 0], coords[p0 + q, 1], coords[p0 + q, 2]
            if not _is_inside(shape, pz, py, px):
                buf[q] = cval
            elif order == 1:
                buf[q] = _sample_linear(src, pz, py, px)
            elif order == 0:
                buf[q] = _sample_nearest(src, pz, py, px)
            else:
                buf[q] = _sample_cubic(src, pz, py, px, w, idx)
        store_row(buf[:n], out[p0 : p0 + n], lo, hi)
        p0 += n


@njit(**PARALLEL_JIT)
def _points_parallel(src, coords, out, order, cval, lo, hi, works, threads):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    per = (n + threads - 1) // threads
    for b in prange(threads):
        _points_block(
            src,
            coords,
            out,
            order,
            cval,
            lo,
            hi,
            works[b],
            min(n, b * per),
            min(n, (b + 1) * per),
        )


def sample_points(
    src: np.ndarray, coords: np.ndarray, out: np.ndarray, order: int, cval: float
) -> None:
    """Sample at points; see :func:`voxelflow.kernels.reference.render.sample_points`."""
    plan = check_sample_points(src, coords, out, order, cval)
    if plan.out.size == 0:
        return
    threads = max(1, min(plan.threads, (plan.out.size + POINT_CHUNK - 1) // POINT_CHUNK))
    works = np.empty((threads, POINT_CHUNK), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    args = (plan.src, plan.coords, plan.out, plan.order, plan.cval, lo, hi)
    if threads <= 1:
        _points_block(*args, works[0], 0, plan.out.shape[0])
        return
    apply_num_threads()
    _points_parallel(*args, works, threads)
