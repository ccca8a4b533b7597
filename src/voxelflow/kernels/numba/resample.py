"""Numba resampling: a volume sampled under an affine, and one axis resampled through a tap table.

The rules are the oracle's (:mod:`voxelflow.kernels.reference.resample`), to the bit; the loops
are the Cython backend's: output rows in contiguous blocks that threads take on demand, each
row computed into a float64 row buffer and then stored with the dtype's rounding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ..reference.resample import (
    _COS,
    _PI_3,
    _SIN,
    LANCZOS,
    LANCZOS_P,
    LANCZOS_Q,
    check_sample_affine,
    check_sample_axis,
    row_blocks,
)
from .config import JIT, PARALLEL_JIT, apply_num_threads

__all__ = ["sample_affine", "sample_axis"]

# (v + 1.5 * 2**52) - 1.5 * 2**52: numpy.rint for |v| < 2**51 (the Cython backend's rounding).
ROUND_MAGIC = 6755399441055744.0
# Samples per block of the staged linear loop (_linear_interior).
BLOCK = 32


def store_row(buf, out, lo, hi):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The store rule (jitted code only)."""
    raise NotImplementedError("store_row is only callable from Numba-compiled code")


@overload(store_row, jit_options=JIT)
def _store_row_overload(buf, out, lo, hi):  # type: ignore[no-untyped-def]
    if isinstance(out.dtype, types.Float):

        def store_float(buf, out, lo, hi):  # type: ignore[no-untyped-def]
            for i in range(out.shape[0]):
                out[i] = buf[i]

        return store_float

    def store_integer(buf, out, lo, hi):  # type: ignore[no-untyped-def]
        # selects rather than branches, so LLVM vectorises the loop
        for i in range(out.shape[0]):
            v = buf[i]
            v = min(max(0.0 if np.isnan(v) else v, lo), hi)
            out[i] = (v + ROUND_MAGIC) - ROUND_MAGIC

    return store_integer


@njit(**JIT)
def _clamp(v, hi):  # type: ignore[no-untyped-def]
    if v < 0:
        return 0
    return min(v, hi)


@njit(**JIT)
def _fold_mirror(m, n):  # type: ignore[no-untyped-def]
    if n == 1:
        return 0
    period = 2 * n - 2
    if m < 0:
        m = -m
    m = m % period
    return period - m if m >= n else m


@njit(**JIT)
def _bspline_weights(t, w):  # type: ignore[no-untyped-def]
    t2 = t * t
    t3 = t2 * t
    u = 1.0 - t
    u2 = u * u
    u3 = u2 * u
    w[0] = u3 / 6.0
    w[1] = (2.0 / 3.0 - t2) + 0.5 * t3
    w[2] = (2.0 / 3.0 - u2) + 0.5 * u3
    w[3] = t3 / 6.0


_SIN_C = np.array(_SIN)
_COS_C = np.array(_COS)
_P = np.array(LANCZOS_P)
_Q = np.array(LANCZOS_Q)


@njit(**JIT)
def _lanczos_weights(t, w):  # type: ignore[no-untyped-def]
    if t * t == 0.0:
        for d in range(6):
            w[d] = 0.0
        w[2] = 1.0
        return
    a = _PI_3 * t
    a2 = a * a
    sp = _SIN_C[7]
    for d in range(6, -1, -1):
        sp = _SIN_C[d] + a2 * sp
    sv = a + a * (a2 * sp)
    cp = _COS_C[8]
    for d in range(7, -1, -1):
        cp = _COS_C[d] + a2 * cp
    cv = 1.0 + a2 * cp
    for d in range(6):
        x = t - float(d - 2)
        w[d] = (sv * _P[d] - cv * _Q[d]) / (x * x)
    total = w[0]
    for d in range(1, 6):
        total = total + w[d]
    for d in range(6):
        w[d] = w[d] / total


@njit(**JIT)
def _in_interior(p, upper):  # type: ignore[no-untyped-def]
    return p >= 0.0 and p < upper


@njit(**JIT)
def _interior_span(base, step, n, lo, hi):  # type: ignore[no-untyped-def]
    """[lo, hi) narrowed to the i whose position lies in [0, n - 1) (Cython's interior_span)."""
    upper = float(n - 1)
    a, b = lo, hi
    if a >= b:
        return a, b
    if step == 0.0:
        return (a, b) if _in_interior(base, upper) else (a, a)
    e0 = (0.0 - base) / step
    e1 = (upper - base) / step
    if e0 > e1:
        e0, e1 = e1, e0
    if e0 > a:
        a = b if e0 >= b else int(e0)
    if e1 + 1.0 < b:
        b = a if e1 + 1.0 <= a else int(e1 + 1.0)
    while a < b and not _in_interior(base + step * float(a), upper):
        a += 1
    while b > a and not _in_interior(base + step * float(b - 1), upper):
        b -= 1
    if a < b:
        while a > lo and _in_interior(base + step * float(a - 1), upper):
            a -= 1
        while b < hi and _in_interior(base + step * float(b), upper):
            b += 1
        return a, b
    return a, a


@njit(**JIT)
def _linear_at(src, pz, py, px, cval):  # type: ignore[no-untyped-def]
    nz, ny, nx = src.shape
    if not (
        pz >= -0.5 and pz <= nz - 0.5 and py >= -0.5 and py <= ny - 0.5 and px >= -0.5
        and px <= nx - 0.5
    ):
        return cval
    fz, fy, fx = np.floor(pz), np.floor(py), np.floor(px)
    tz, ty, tx = pz - fz, py - fy, px - fx
    z0, y0, x0 = int(fz), int(fy), int(fx)
    z1, y1, x1 = _clamp(z0 + 1, nz - 1), _clamp(y0 + 1, ny - 1), _clamp(x0 + 1, nx - 1)
    z0, y0, x0 = _clamp(z0, nz - 1), _clamp(y0, ny - 1), _clamp(x0, nx - 1)
    c00 = (1.0 - tx) * float(src[z0, y0, x0]) + tx * float(src[z0, y0, x1])
    c01 = (1.0 - tx) * float(src[z0, y1, x0]) + tx * float(src[z0, y1, x1])
    c10 = (1.0 - tx) * float(src[z1, y0, x0]) + tx * float(src[z1, y0, x1])
    c11 = (1.0 - tx) * float(src[z1, y1, x0]) + tx * float(src[z1, y1, x1])
    c0 = (1.0 - ty) * c00 + ty * c01
    c1 = (1.0 - ty) * c10 + ty * c11
    return (1.0 - tz) * c0 + tz * c1


@njit(inline="always", **JIT)
def _positions(bz, by, bx, sz, sy, sx, i0, n, plane, nx, t, idx):  # type: ignore[no-untyped-def]
    """The staged loop's first stage for samples i0 .. i0 + n - 1 (positions in [0, n - 1) on
    every axis): fractions into `t`, flat offsets into `idx`."""
    d0 = float(i0)
    for k in range(n):
        di = d0 + float(k)
        pz = bz + sz * di
        py = by + sy * di
        px = bx + sx * di
        z0, y0, x0 = int(pz), int(py), int(px)
        # truncation is floor here; + 0.0 turns the -0.0 of p = -0.0 into the reference's +0.0
        t[0, k] = (pz - float(z0)) + 0.0
        t[1, k] = (py - float(y0)) + 0.0
        t[2, k] = (px - float(x0)) + 0.0
        idx[k] = z0 * plane + y0 * nx + x0


@njit(**JIT)
def _linear_interior(flat, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf, off, t, idx, v):  # type: ignore[no-untyped-def]
    """Linear samples start..stop into buf[i - off] where 0 <= p < n - 1 on every axis.

    In blocks, in three stages as csrc/render.pyx's C loop: positions, fractions and
    offsets (vectorised), the 8 neighbours' loads (scalar, into `v` in the voxel dtype), the
    lerps (vectorised); `flat` is the volume raveled, `t`, `idx`, `v` per-thread scratch.
    """
    plane = ny * nx
    # unsigned offsets: numba then indexes without its negative-index (wraparound) fix-up
    uplane, unx, one = np.uint64(plane), np.uint64(nx), np.uint64(1)
    block = idx.shape[0]
    for i0 in range(start, stop, block):
        n = min(block, stop - i0)
        _positions(bz, by, bx, sz, sy, sx, i0, n, plane, nx, t, idx)
        for k in range(n):
            q = np.uint64(idx[k])
            v[0, k] = flat[q]
            v[1, k] = flat[q + one]
            v[2, k] = flat[q + unx]
            v[3, k] = flat[q + unx + one]
            q = q + uplane
            v[4, k] = flat[q]
            v[5, k] = flat[q + one]
            v[6, k] = flat[q + unx]
            v[7, k] = flat[q + unx + one]
        for k in range(n):
            tz, ty, tx = t[0, k], t[1, k], t[2, k]
            c00 = (1.0 - tx) * float(v[0, k]) + tx * float(v[1, k])
            c01 = (1.0 - tx) * float(v[2, k]) + tx * float(v[3, k])
            c10 = (1.0 - tx) * float(v[4, k]) + tx * float(v[5, k])
            c11 = (1.0 - tx) * float(v[6, k]) + tx * float(v[7, k])
            c0 = (1.0 - ty) * c00 + ty * c01
            c1 = (1.0 - ty) * c10 + ty * c11
            buf[i0 + k - off] = (1.0 - tz) * c0 + tz * c1


@njit(**JIT)
def _lerp_pair(word, tx, bits, mask, half, signed):  # type: ignore[no-untyped-def]
    """(1 - tx) * a + tx * b for the voxels a, b packed in `word` (a in the low bits)."""
    x = np.int64(word)
    lo = x & mask
    hi = (x >> bits) & mask
    if signed:
        lo -= (lo & half) << 1
        hi -= (hi & half) << 1
    return (1.0 - tx) * float(lo) + tx * float(hi)


@njit(**JIT)
def _linear_interior_pairs(
    pairs, bits, signed, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf, off, t, idx, w
):  # type: ignore[no-untyped-def]
    """_linear_interior for 8- and 16-bit voxels: ``pairs[q]`` is voxels q and q + 1 as one
    word (little-endian), so each row's two x neighbours take one load (as csrc/render.pyx)."""
    plane = ny * nx
    uplane, unx = np.uint64(plane), np.uint64(nx)
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    block = idx.shape[0]
    for i0 in range(start, stop, block):
        n = min(block, stop - i0)
        _positions(bz, by, bx, sz, sy, sx, i0, n, plane, nx, t, idx)
        for k in range(n):
            q = np.uint64(idx[k])
            w[0, k] = pairs[q]
            w[1, k] = pairs[q + unx]
            q = q + uplane
            w[2, k] = pairs[q]
            w[3, k] = pairs[q + unx]
        for k in range(n):
            tz, ty, tx = t[0, k], t[1, k], t[2, k]
            c00 = _lerp_pair(w[0, k], tx, bits, mask, half, signed)
            c01 = _lerp_pair(w[1, k], tx, bits, mask, half, signed)
            c10 = _lerp_pair(w[2, k], tx, bits, mask, half, signed)
            c11 = _lerp_pair(w[3, k], tx, bits, mask, half, signed)
            c0 = (1.0 - ty) * c00 + ty * c01
            c1 = (1.0 - ty) * c10 + ty * c11
            buf[i0 + k - off] = (1.0 - tz) * c0 + tz * c1


@njit(inline="always", **JIT)
def _row_linear(src, flat, m, k, j, cval, buf, scratch):  # type: ignore[no-untyped-def]
    """A linear row: the general sample at the ends, the staged clamp-free loop
    (:func:`_linear_interior`, or its paired form for 8/16-bit voxels) over the interior.

    `scratch` is :func:`_linear_scratch`'s, allocated once per block of rows.
    """
    nz, ny, nx = src.shape
    bz = (m[0, 0] * k + m[0, 1] * j) + m[0, 3]
    by = (m[1, 0] * k + m[1, 1] * j) + m[1, 3]
    bx = (m[2, 0] * k + m[2, 1] * j) + m[2, 3]
    sz, sy, sx = m[0, 2], m[1, 2], m[2, 2]
    ni = buf.shape[0]
    lo, hi = _interior_span(bz, sz, nz, 0, ni)
    lo, hi = _interior_span(by, sy, ny, lo, hi)
    lo, hi = _interior_span(bx, sx, nx, lo, hi)
    for i in range(lo):
        di = float(i)
        buf[i] = _linear_at(src, bz + sz * di, by + sy * di, bx + sx * di, cval)
    t, offs, v, pairs, bits, signed, pw = scratch
    if bits:
        _linear_interior_pairs(
            pairs, bits, signed, ny, nx, bz, by, bx, sz, sy, sx, lo, hi, buf, 0, t, offs, pw
        )
    else:
        _linear_interior(flat, ny, nx, bz, by, bx, sz, sy, sx, lo, hi, buf, 0, t, offs, v)
    for i in range(max(hi, lo), ni):
        di = float(i)
        buf[i] = _linear_at(src, bz + sz * di, by + sy * di, bx + sx * di, cval)


@njit(**JIT)
def _linear_scratch(src, pairs, bits, signed):  # type: ignore[no-untyped-def]
    """Per-thread scratch of the staged linear loop."""
    return (
        np.empty((3, BLOCK)),
        np.empty(BLOCK, np.int64),
        np.empty((8, BLOCK), src.dtype),
        pairs,
        bits,
        signed,
        np.empty((4, BLOCK), pairs.dtype),
    )


# One sample at an inside position (edges clamped; cubic mirrored), shared with render.


@njit(**JIT)
def _sample_nearest(src, pz, py, px):  # type: ignore[no-untyped-def]
    nz, ny, nx = src.shape
    z = _clamp(int(np.floor(pz + 0.5)), nz - 1)
    y = _clamp(int(np.floor(py + 0.5)), ny - 1)
    x = _clamp(int(np.floor(px + 0.5)), nx - 1)
    return float(src[z, y, x])


@njit(**JIT)
def _sample_linear(src, pz, py, px):  # type: ignore[no-untyped-def]
    nz, ny, nx = src.shape
    fz, fy, fx = np.floor(pz), np.floor(py), np.floor(px)
    tz, ty, tx = pz - fz, py - fy, px - fx
    z0, y0, x0 = int(fz), int(fy), int(fx)
    z1, y1, x1 = _clamp(z0 + 1, nz - 1), _clamp(y0 + 1, ny - 1), _clamp(x0 + 1, nx - 1)
    z0, y0, x0 = _clamp(z0, nz - 1), _clamp(y0, ny - 1), _clamp(x0, nx - 1)
    c00 = (1.0 - tx) * float(src[z0, y0, x0]) + tx * float(src[z0, y0, x1])
    c01 = (1.0 - tx) * float(src[z0, y1, x0]) + tx * float(src[z0, y1, x1])
    c10 = (1.0 - tx) * float(src[z1, y0, x0]) + tx * float(src[z1, y0, x1])
    c11 = (1.0 - tx) * float(src[z1, y1, x0]) + tx * float(src[z1, y1, x1])
    c0 = (1.0 - ty) * c00 + ty * c01
    c1 = (1.0 - ty) * c10 + ty * c11
    return (1.0 - tz) * c0 + tz * c1


@njit(**JIT)
def _sample_cubic(src, pz, py, px, w, idx):  # type: ignore[no-untyped-def]
    nz, ny, nx = src.shape
    fz, fy, fx = np.floor(pz), np.floor(py), np.floor(px)
    _bspline_weights(pz - fz, w[0])
    _bspline_weights(py - fy, w[1])
    _bspline_weights(px - fx, w[2])
    z0, y0, x0 = int(fz), int(fy), int(fx)
    for a in range(4):
        idx[0, a] = _fold_mirror(z0 + a - 1, nz)
        idx[1, a] = _fold_mirror(y0 + a - 1, ny)
        idx[2, a] = _fold_mirror(x0 + a - 1, nx)
    vz = 0.0
    for c in range(4):
        vy = 0.0
        for b in range(4):
            row = src[idx[0, c], idx[1, b]]
            vx = w[2, 0] * float(row[idx[2, 0]])
            vx = vx + w[2, 1] * float(row[idx[2, 1]])
            vx = vx + w[2, 2] * float(row[idx[2, 2]])
            vx = vx + w[2, 3] * float(row[idx[2, 3]])
            vy = w[1, b] * vx if b == 0 else vy + w[1, b] * vx
        vz = w[0, c] * vy if c == 0 else vz + w[0, c] * vy
    return vz


@njit(**JIT)
def _row(src, m, k, j, order, cval, buf, w, idx):  # type: ignore[no-untyped-def]
    nz, ny, nx = src.shape
    bz = (m[0, 0] * k + m[0, 1] * j) + m[0, 3]
    by = (m[1, 0] * k + m[1, 1] * j) + m[1, 3]
    bx = (m[2, 0] * k + m[2, 1] * j) + m[2, 3]
    sz, sy, sx = m[0, 2], m[1, 2], m[2, 2]
    hz, hy, hx = nz - 0.5, ny - 0.5, nx - 0.5
    for i in range(buf.shape[0]):
        di = float(i)
        pz = bz + sz * di
        py = by + sy * di
        px = bx + sx * di
        if not (
            pz >= -0.5 and pz <= hz and py >= -0.5 and py <= hy and px >= -0.5 and px <= hx
        ):
            buf[i] = cval
            continue
        if order == 0:
            buf[i] = _sample_nearest(src, pz, py, px)
        elif order == 1:
            buf[i] = _sample_linear(src, pz, py, px)
        elif order == LANCZOS:
            fz, fy, fx = np.floor(pz), np.floor(py), np.floor(px)
            _lanczos_weights(pz - fz, w[0])
            _lanczos_weights(py - fy, w[1])
            _lanczos_weights(px - fx, w[2])
            z0, y0, x0 = int(fz), int(fy), int(fx)
            for a in range(6):
                idx[0, a] = _clamp(z0 + a - 2, nz - 1)
                idx[1, a] = _clamp(y0 + a - 2, ny - 1)
                idx[2, a] = _clamp(x0 + a - 2, nx - 1)
            vz = 0.0
            for c in range(6):
                vy = 0.0
                for b in range(6):
                    row = src[idx[0, c], idx[1, b]]
                    vx = w[2, 0] * float(row[idx[2, 0]])
                    for a in range(1, 6):
                        vx = vx + w[2, a] * float(row[idx[2, a]])
                    vy = w[1, b] * vx if b == 0 else vy + w[1, b] * vx
                vz = w[0, c] * vy if c == 0 else vz + w[0, c] * vy
            buf[i] = vz
        else:
            buf[i] = _sample_cubic(src, pz, py, px, w, idx)


@njit(**JIT)
def _affine_rows(src, pairs, bits, signed, m, out, order, cval, lo, hi, buf, start, stop):  # type: ignore[no-untyped-def]
    nj = out.shape[1]
    w = np.empty((3, 6))
    idx = np.empty((3, 6), np.int64)
    flat = src.reshape(-1)
    scratch = _linear_scratch(src, pairs, bits, signed)
    for r in range(start, stop):
        k = r // nj
        j = r - k * nj
        if order == 1:
            _row_linear(src, flat, m, k, j, cval, buf, scratch)
        else:
            _row(src, m, k, j, order, cval, buf, w, idx)
        store_row(buf, out[k, j], lo, hi)


@njit(**PARALLEL_JIT)
def _affine_parallel(src, pairs, bits, signed, m, out, order, cval, lo, hi, bufs):  # type: ignore[no-untyped-def]
    rows = out.shape[0] * out.shape[1]
    blocks = bufs.shape[0]
    per = (rows + blocks - 1) // blocks
    for b in prange(blocks):
        _affine_rows(
            src,
            pairs,
            bits,
            signed,
            m,
            out,
            order,
            cval,
            lo,
            hi,
            bufs[b],
            min(rows, b * per),
            min(rows, (b + 1) * per),
        )


@contextmanager
def _blocks_on_demand() -> Iterator[None]:
    """Numba's prange hands out one iteration (row block) at a time (see ``row_blocks``)."""
    previous = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(previous)


def _store_bounds(dtype: np.dtype) -> tuple[float, float]:
    if dtype.kind == "f":
        return 0.0, 0.0
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def _voxel_pairs(src: np.ndarray) -> tuple[np.ndarray, int]:
    """For 8- and 16-bit voxels on a little-endian machine: an (unaligned) view of `src` whose
    element q is voxels q and q + 1 as one word, and the voxel's bits; else (empty, 0)."""
    if src.dtype.itemsize > 2 or src.dtype.kind == "f" or sys.byteorder != "little":
        return np.empty(0, np.uint32), 0
    word = np.uint16 if src.dtype.itemsize == 1 else np.uint32
    pairs = np.ndarray((max(src.size - 1, 0),), dtype=word, buffer=src, strides=(src.itemsize,))
    return pairs, 8 * src.dtype.itemsize


def sample_affine(
    src: np.ndarray, matrix: np.ndarray, out: np.ndarray, order: int, cval: float
) -> None:
    """Sample under an affine; see :func:`voxelflow.kernels.reference.resample.sample_affine`."""
    plan = check_sample_affine(src, matrix, out, order, cval)
    if plan.out.size == 0:
        return
    rows = plan.out.shape[0] * plan.out.shape[1]
    threads = max(1, min(plan.threads, rows))
    bufs = np.empty((row_blocks(rows, threads), plan.out.shape[2]), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    pairs, bits = _voxel_pairs(plan.src)
    signed = plan.src.dtype.kind == "i"
    args = (plan.src, pairs, bits, signed, plan.matrix, plan.out, plan.order, plan.cval, lo, hi)
    if threads <= 1:
        _affine_rows(*args, bufs[0], 0, rows)
        return
    apply_num_threads()
    with _blocks_on_demand():
        _affine_parallel(*args, bufs)


@njit(**JIT)
def _axis_rows(src, out, axis, index, weight, lo, hi, buf, start, stop):  # type: ignore[no-untyped-def]
    nj, ni = out.shape[1], out.shape[2]
    taps = index.shape[1]
    for r in range(start, stop):
        k = r // nj
        j = r - k * nj
        if axis == 2:
            row = src[k, j]
            for o in range(ni):
                acc = weight[o, 0] * float(row[index[o, 0]])
                for t in range(1, taps):
                    acc = acc + weight[o, t] * float(row[index[o, t]])
                buf[o] = acc
        else:
            o = k if axis == 0 else j
            row = src[index[o, 0], j] if axis == 0 else src[k, index[o, 0]]
            w0 = weight[o, 0]
            for x in range(ni):
                buf[x] = w0 * float(row[x])
            for t in range(1, taps):
                row = src[index[o, t], j] if axis == 0 else src[k, index[o, t]]
                wt = weight[o, t]
                for x in range(ni):
                    buf[x] = buf[x] + wt * float(row[x])
        store_row(buf, out[k, j], lo, hi)


@njit(**PARALLEL_JIT)
def _axis_parallel(src, out, axis, index, weight, lo, hi, bufs):  # type: ignore[no-untyped-def]
    rows = out.shape[0] * out.shape[1]
    blocks = bufs.shape[0]
    per = (rows + blocks - 1) // blocks
    for b in prange(blocks):
        _axis_rows(
            src, out, axis, index, weight, lo, hi, bufs[b], min(rows, b * per),
            min(rows, (b + 1) * per),
        )


def sample_axis(
    src: np.ndarray, out: np.ndarray, axis: int, index: np.ndarray, weight: np.ndarray
) -> None:
    """Resample one axis; see :func:`voxelflow.kernels.reference.resample.sample_axis`."""
    plan = check_sample_axis(src, out, axis, index, weight)
    if plan.out.size == 0:
        return
    rows = plan.out.shape[0] * plan.out.shape[1]
    threads = max(1, min(plan.threads, rows))
    bufs = np.empty((row_blocks(rows, threads), plan.out.shape[2]), np.float64)
    lo, hi = _store_bounds(plan.out.dtype)
    args = (plan.src, plan.out, plan.axis, plan.index, plan.weight, lo, hi)
    if threads <= 1:
        _axis_rows(*args, bufs[0], 0, rows)
        return
    apply_num_threads()
    with _blocks_on_demand():
        _axis_parallel(*args, bufs)
