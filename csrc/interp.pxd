# cython: language_level=3
"""Inline helpers shared by the resampling and rendering kernels (cimport them; never copy
them): the index arithmetic, spline weights and store rule of the NumPy references in
voxelflow.kernels.reference.resample, operation for operation."""

from fused cimport store_t


cdef inline double rint_fast(double v) noexcept nogil:
    """numpy.rint (nearest, ties to even) for |v| < 2**51 in the default rounding mode:
    (v + 1.5 * 2**52) - 1.5 * 2**52, which vectorises on SSE2 (nearbyint is a call)."""
    return (v + 6755399441055744.0) - 6755399441055744.0


cdef inline double floor_fast(double p) noexcept nogil:
    """floor(p) for |p| < 2**62 up to the sign of zero; a truncating convert and a compare
    (libm's floor is a call on baseline x86-64, which has no SSE4.1 round instruction)."""
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
        # selects rather than branches, so the compiler vectorises the loop
        for i in range(n):
            v = buf[i]
            v = v if v == v else 0.0
            v = lo if v < lo else v
            v = hi if v > hi else v
            out[i] = <store_t>rint_fast(v)
