# cython: language_level=3
"""Inline helpers shared by the resampling and rendering kernels (cimport them; never copy
them): the index arithmetic, spline weights and store rule of the NumPy references in
voxelflow.kernels.reference.resample, operation for operation."""

from libc.stdint cimport int8_t, int16_t, int32_t, uint8_t, uint16_t, uint32_t

from fused cimport store_t, voxel_t


# Volumes below this many voxels index with 32-bit offsets in the C loops.
cdef enum:
    INT32_LIMIT = 2147483647


cdef inline double rint_fast(double v) noexcept nogil:
    """numpy.rint (nearest, ties to even) for |v| < 2**51 in the default rounding mode:
    (v + 1.5 * 2**52) - 1.5 * 2**52, which vectorises on SSE2 (nearbyint is a call)."""
    return (v + 6755399441055744.0) - 6755399441055744.0


cdef inline double floor_fast(double p) noexcept nogil:
    """floor(p) for |p| < 2**62 up to the sign of zero; a truncating convert and a compare
    (libm's floor is a call on baseline x86-64, which has no SSE4.1 round instruction)."""
    cdef double f = <double><Py_ssize_t>p
    return f - 1.0 if p < f else f


cdef inline double frac(double p, double f) noexcept nogil:
    """p - floor(p) as the reference computes it: never -0.0 (at p = -0.0 the reference's floor
    is -0.0 and the difference +0.0; floor_fast's +0.0 would give -0.0). x + 0.0 is x for every
    other x, so the addition only canonicalises the zero."""
    return (p - f) + 0.0


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


# One sample at an inside position (the clamped, general path): the reference's rules.

cdef inline double sample_nearest(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny,
                                  Py_ssize_t nx, double pz, double py,
                                  double px) noexcept nogil:
    cdef Py_ssize_t z = clamp_index(<Py_ssize_t>floor_fast(pz + 0.5), nz - 1)
    cdef Py_ssize_t y = clamp_index(<Py_ssize_t>floor_fast(py + 0.5), ny - 1)
    cdef Py_ssize_t x = clamp_index(<Py_ssize_t>floor_fast(px + 0.5), nx - 1)
    return <double>src[(z * ny + y) * nx + x]


cdef inline double sample_linear(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny,
                                 Py_ssize_t nx, double pz, double py,
                                 double px) noexcept nogil:
    cdef double fz = floor_fast(pz), fy = floor_fast(py), fx = floor_fast(px)
    cdef double tz = frac(pz, fz), ty = frac(py, fy), tx = frac(px, fx)
    cdef Py_ssize_t z0 = <Py_ssize_t>fz, y0 = <Py_ssize_t>fy, x0 = <Py_ssize_t>fx
    cdef Py_ssize_t z1 = clamp_index(z0 + 1, nz - 1)
    cdef Py_ssize_t y1 = clamp_index(y0 + 1, ny - 1)
    cdef Py_ssize_t x1 = clamp_index(x0 + 1, nx - 1)
    z0 = clamp_index(z0, nz - 1)
    y0 = clamp_index(y0, ny - 1)
    x0 = clamp_index(x0, nx - 1)
    cdef const voxel_t* r00 = src + (z0 * ny + y0) * nx
    cdef const voxel_t* r01 = src + (z0 * ny + y1) * nx
    cdef const voxel_t* r10 = src + (z1 * ny + y0) * nx
    cdef const voxel_t* r11 = src + (z1 * ny + y1) * nx
    cdef double c00 = (1.0 - tx) * <double>r00[x0] + tx * <double>r00[x1]
    cdef double c01 = (1.0 - tx) * <double>r01[x0] + tx * <double>r01[x1]
    cdef double c10 = (1.0 - tx) * <double>r10[x0] + tx * <double>r10[x1]
    cdef double c11 = (1.0 - tx) * <double>r11[x0] + tx * <double>r11[x1]
    cdef double c0 = (1.0 - ty) * c00 + ty * c01
    cdef double c1 = (1.0 - ty) * c10 + ty * c11
    return (1.0 - tz) * c0 + tz * c1


cdef inline double sample_cubic(const voxel_t* src, Py_ssize_t nz, Py_ssize_t ny,
                                Py_ssize_t nx, double pz, double py,
                                double px) noexcept nogil:
    cdef double wz[4]
    cdef double wy[4]
    cdef double wx[4]
    cdef Py_ssize_t iz[4]
    cdef Py_ssize_t iy[4]
    cdef Py_ssize_t ix[4]
    cdef double fz = floor_fast(pz), fy = floor_fast(py), fx = floor_fast(px)
    cdef double vz = 0.0, vy = 0.0, vx
    cdef Py_ssize_t a, b, c
    cdef Py_ssize_t z0 = <Py_ssize_t>fz, y0 = <Py_ssize_t>fy, x0 = <Py_ssize_t>fx
    cdef const voxel_t* row
    bspline_weights(frac(pz, fz), wz)
    bspline_weights(frac(py, fy), wy)
    bspline_weights(frac(px, fx), wx)
    for a in range(4):
        iz[a] = fold_mirror(z0 + a - 1, nz)
        iy[a] = fold_mirror(y0 + a - 1, ny)
        ix[a] = fold_mirror(x0 + a - 1, nx)
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
    return vz


cdef inline void store_row(const double* buf, store_t* out, Py_ssize_t n, double lo,
                           double hi) noexcept nogil:
    """The store rule: floats rounded once; integers rint, saturated, NaN -> 0."""
    cdef Py_ssize_t i
    cdef double v
    if store_t is float or store_t is double:
        for i in range(n):
            out[i] = <store_t>buf[i]
    else:
        # selects rather than branches, so the compiler vectorises the loop
        for i in range(n):
            v = buf[i]
            v = v if v == v else 0.0
            v = lo if v < lo else v
            v = hi if v > hi else v
            out[i] = <store_t>rint_fast(v)


# The clamp-free linear loop, in C so that it can be compiled for several targets (the
# baseline, AVX2 and AVX-512, the CPU picking one at load time, as csrc/window.pyx does) and in
# three stages the compiler vectorises around the one that cannot be: positions, fractions and
# offsets of a block of pixels (vector), the 8 neighbours' loads (scalar), the 7 lerps
# (vector). Each pixel's arithmetic is the reference's, operation for operation; the vector
# lanes round exactly as the scalar ones. Offsets are 32-bit: volumes of 2**31 voxels or more
# take the Cython loop.
cdef extern from *:
    """
    #if defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #elif defined(__GNUC__)
    #pragma GCC optimize ("fp-contract=off", "no-trapping-math")
    #endif

    #if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
    #if __has_attribute(target_clones)
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    #define VF_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
    #else
    #define VF_CLONES __attribute__((target_clones("avx2", "default")))
    #endif
    #endif
    #endif
    #ifndef VF_CLONES
    #define VF_CLONES
    #endif

    #include <string.h>
    #define VF_BLOCK 32

    /* The first stage: positions, fractions and offsets of samples i0 .. i0 + n - 1 (in the
       callers' variables), 0 <= p < n - 1 on every axis. */
    #define VF_POSITIONS                                                                      \
            for (k = 0; k < n; k++) {                                                         \
                const double di = d0 + (double)k;                                             \
                const double pz = bz + sz * di, py = by + sy * di, px = bx + sx * di;         \
                /* 0 <= p < n - 1: truncation is floor; + 0.0 makes p = -0.0 give +0.0 */     \
                const int z0 = (int)pz, y0 = (int)py, x0 = (int)px;                           \
                tz[k] = (pz - (double)z0) + 0.0;                                              \
                ty[k] = (py - (double)y0) + 0.0;                                              \
                tx[k] = (px - (double)x0) + 0.0;                                              \
                off[k] = z0 * plane + y0 * nx + x0;                                           \
            }

    #define VF_LINEAR(NAME, T)                                                                \
    VF_CLONES static void NAME(const void *src_, Py_ssize_t ny_, Py_ssize_t nx_,              \
                               double bz, double by, double bx, double sz, double sy,         \
                               double sx, Py_ssize_t start, Py_ssize_t stop,                  \
                               double *buf) {                                                 \
        const T *src = (const T *)src_;                                                       \
        const int nx = (int)nx_, plane = (int)(ny_ * nx_);                                    \
        double tz[VF_BLOCK], ty[VF_BLOCK], tx[VF_BLOCK];                                      \
        int off[VF_BLOCK];                                                                    \
        T v0[VF_BLOCK], v1[VF_BLOCK], v2[VF_BLOCK], v3[VF_BLOCK];                             \
        T v4[VF_BLOCK], v5[VF_BLOCK], v6[VF_BLOCK], v7[VF_BLOCK];                             \
        Py_ssize_t i0;                                                                        \
        int k, n;                                                                             \
        for (i0 = start; i0 < stop; i0 += VF_BLOCK) {                                         \
            /* i0 + k as a double: both exact integers, so the sum is (double)(i0 + k) */     \
            const double d0 = (double)i0;                                                     \
            n = (int)(stop - i0 < VF_BLOCK ? stop - i0 : VF_BLOCK);                           \
            VF_POSITIONS                                                                      \
            for (k = 0; k < n; k++) {                                                         \
                const T *r = src + off[k];                                                    \
                v0[k] = r[0];                                                                 \
                v1[k] = r[1];                                                                 \
                v2[k] = r[nx];                                                                \
                v3[k] = r[nx + 1];                                                            \
                v4[k] = r[plane];                                                             \
                v5[k] = r[plane + 1];                                                         \
                v6[k] = r[plane + nx];                                                        \
                v7[k] = r[plane + nx + 1];                                                    \
            }                                                                                 \
            for (k = 0; k < n; k++) {                                                         \
                const double c00 = (1.0 - tx[k]) * (double)v0[k] + tx[k] * (double)v1[k];     \
                const double c01 = (1.0 - tx[k]) * (double)v2[k] + tx[k] * (double)v3[k];     \
                const double c10 = (1.0 - tx[k]) * (double)v4[k] + tx[k] * (double)v5[k];     \
                const double c11 = (1.0 - tx[k]) * (double)v6[k] + tx[k] * (double)v7[k];     \
                const double c0 = (1.0 - ty[k]) * c00 + ty[k] * c01;                          \
                const double c1 = (1.0 - ty[k]) * c10 + ty[k] * c11;                          \
                buf[i0 - start + k] = (1.0 - tz[k]) * c0 + tz[k] * c1;                        \
            }                                                                                 \
        }                                                                                     \
    }

    /* Integer voxels, little-endian: one load of twice the width fetches a voxel and its x
       neighbour (halving the loads and stores of the scalar stage); the halves are split
       back in the vector stage. */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define VF_LINEAR_PAIRS(NAME, T, UT, P)                                                   \
    VF_CLONES static void NAME(const void *src_, Py_ssize_t ny_, Py_ssize_t nx_,              \
                               double bz, double by, double bx, double sz, double sy,         \
                               double sx, Py_ssize_t start, Py_ssize_t stop,                  \
                               double *buf) {                                                 \
        const T *src = (const T *)src_;                                                       \
        const int nx = (int)nx_, plane = (int)(ny_ * nx_);                                    \
        const int shift = 8 * (int)sizeof(T);                                                 \
        double tz[VF_BLOCK], ty[VF_BLOCK], tx[VF_BLOCK];                                      \
        int off[VF_BLOCK];                                                                    \
        P w0[VF_BLOCK], w1[VF_BLOCK], w2[VF_BLOCK], w3[VF_BLOCK];                             \
        Py_ssize_t i0;                                                                        \
        int k, n;                                                                             \
        for (i0 = start; i0 < stop; i0 += VF_BLOCK) {                                         \
            const double d0 = (double)i0;                                                     \
            n = (int)(stop - i0 < VF_BLOCK ? stop - i0 : VF_BLOCK);                           \
            VF_POSITIONS                                                                      \
            for (k = 0; k < n; k++) {                                                         \
                const T *r = src + off[k];                                                    \
                memcpy(&w0[k], r, sizeof(P));                                                 \
                memcpy(&w1[k], r + nx, sizeof(P));                                           \
                memcpy(&w2[k], r + plane, sizeof(P));                                        \
                memcpy(&w3[k], r + plane + nx, sizeof(P));                                   \
            }                                                                                 \
            for (k = 0; k < n; k++) {                                                         \
                const double a0 = (double)(T)(UT)w0[k], a1 = (double)(T)(UT)(w0[k] >> shift); \
                const double a2 = (double)(T)(UT)w1[k], a3 = (double)(T)(UT)(w1[k] >> shift); \
                const double a4 = (double)(T)(UT)w2[k], a5 = (double)(T)(UT)(w2[k] >> shift); \
                const double a6 = (double)(T)(UT)w3[k], a7 = (double)(T)(UT)(w3[k] >> shift); \
                const double c00 = (1.0 - tx[k]) * a0 + tx[k] * a1;                           \
                const double c01 = (1.0 - tx[k]) * a2 + tx[k] * a3;                           \
                const double c10 = (1.0 - tx[k]) * a4 + tx[k] * a5;                           \
                const double c11 = (1.0 - tx[k]) * a6 + tx[k] * a7;                           \
                const double c0 = (1.0 - ty[k]) * c00 + ty[k] * c01;                          \
                const double c1 = (1.0 - ty[k]) * c10 + ty[k] * c11;                          \
                buf[i0 - start + k] = (1.0 - tz[k]) * c0 + tz[k] * c1;                        \
            }                                                                                 \
        }                                                                                     \
    }
    VF_LINEAR_PAIRS(vf_linear_u1, uint8_t, uint8_t, uint16_t)
    VF_LINEAR_PAIRS(vf_linear_i1, int8_t, uint8_t, uint16_t)
    VF_LINEAR_PAIRS(vf_linear_u2, uint16_t, uint16_t, uint32_t)
    VF_LINEAR_PAIRS(vf_linear_i2, int16_t, uint16_t, uint32_t)
    VF_LINEAR_PAIRS(vf_linear_u4, uint32_t, uint32_t, uint64_t)
    VF_LINEAR_PAIRS(vf_linear_i4, int32_t, uint32_t, uint64_t)
    #else
    VF_LINEAR(vf_linear_u1, uint8_t)
    VF_LINEAR(vf_linear_i1, int8_t)
    VF_LINEAR(vf_linear_u2, uint16_t)
    VF_LINEAR(vf_linear_i2, int16_t)
    VF_LINEAR(vf_linear_u4, uint32_t)
    VF_LINEAR(vf_linear_i4, int32_t)
    #endif
    VF_LINEAR(vf_linear_f4, float)
    VF_LINEAR(vf_linear_f8, double)
    """
    void vf_linear_u1(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_i1(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_u2(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_i2(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_u4(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_i4(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_f4(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void vf_linear_f8(const void*, Py_ssize_t, Py_ssize_t, double, double, double, double,
                      double, double, Py_ssize_t, Py_ssize_t, double*) noexcept nogil


cdef inline void linear_interior(const voxel_t* src, Py_ssize_t ny, Py_ssize_t nx, bint small,
                                 double bz, double by, double bx, double sz, double sy, double sx,
                                 Py_ssize_t start, Py_ssize_t stop, double* buf) noexcept nogil:
    """Linear samples start..stop into buf[0..], where 0 <= p < n - 1 on every axis: no
    clamps, and floor is truncation (this loop for volumes of 2**31 voxels or more, the C
    one, vf_linear_*, for the rest)."""
    cdef Py_ssize_t i, z0, y0, x0, plane = ny * nx
    cdef double di, pz, py, px, tz, ty, tx, c00, c01, c10, c11, c0, c1
    cdef const voxel_t* r
    if small:
        if voxel_t is uint8_t:
            vf_linear_u1(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        elif voxel_t is int8_t:
            vf_linear_i1(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        elif voxel_t is uint16_t:
            vf_linear_u2(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        elif voxel_t is int16_t:
            vf_linear_i2(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        elif voxel_t is uint32_t:
            vf_linear_u4(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        elif voxel_t is int32_t:
            vf_linear_i4(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        elif voxel_t is float:
            vf_linear_f4(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        else:
            vf_linear_f8(src, ny, nx, bz, by, bx, sz, sy, sx, start, stop, buf)
        return
    for i in range(start, stop):
        di = <double>i
        pz = bz + sz * di
        py = by + sy * di
        px = bx + sx * di
        z0 = <Py_ssize_t>pz
        y0 = <Py_ssize_t>py
        x0 = <Py_ssize_t>px
        tz = (pz - <double>z0) + 0.0
        ty = (py - <double>y0) + 0.0
        tx = (px - <double>x0) + 0.0
        r = src + (z0 * ny + y0) * nx + x0
        c00 = (1.0 - tx) * <double>r[0] + tx * <double>r[1]
        c01 = (1.0 - tx) * <double>r[nx] + tx * <double>r[nx + 1]
        c10 = (1.0 - tx) * <double>r[plane] + tx * <double>r[plane + 1]
        c11 = (1.0 - tx) * <double>r[plane + nx] + tx * <double>r[plane + nx + 1]
        c0 = (1.0 - ty) * c00 + ty * c01
        c1 = (1.0 - ty) * c10 + ty * c11
        buf[i - start] = (1.0 - tz) * c0 + tz * c1
