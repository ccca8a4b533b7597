"""Sampling a volume on another grid: the oracle, the shared argument checks, the spline prefilter.

``sample_affine`` fills every output voxel ``(k, j, i)`` with the input sampled at the continuous
input index ``p = matrix @ [k, j, i, 1]`` (``matrix`` is 3 x 4, float64, array order (z, y, x)).
``sample_axis`` is its separable special case: one axis of the input is resampled through a
table of taps (any number of indices and weights per output position), the other two are
copied; an axis-aligned scaling is one ``sample_axis`` pass per scaled axis, and a Gaussian
smoothing (or smoothing fused with interpolation) is one pass per axis with wider tables.

The rules, which every backend follows to the bit:

- **Position.** Per axis ``a``: ``p_a = ((m[a,0]*k + m[a,1]*j) + m[a,3]) + m[a,2]*i`` in float64,
  in that order (native loops compute the row base once and step along ``i``).
- **Inside.** A voxel is inside when ``-0.5 <= p_a <= n_a - 0.5`` on every axis, i.e. within the
  input's voxels, each of which extends half a voxel around its centre (DICOM/ITK convention,
  what ITK's ResampleImageFilter calls inside the buffer). Outside voxels get ``cval``.
- **Order 0 (nearest).** Index ``floor(p_a + 0.5)`` (halves round up), clamped to ``[0, n_a-1]``.
- **Order 1 (linear).** ``f = floor(p_a)``, ``t = p_a - f``; neighbours ``f`` and ``f + 1``,
  each clamped to ``[0, n_a - 1]`` (beyond the outermost centres the edge value holds, as in ITK
  and ``scipy.ndimage`` mode ``"nearest"``); combined as ``(1 - t) * a + t * b`` along x, then
  y, then z, in float64.
- **Order 3 (cubic B-spline).** ``src`` holds B-spline *coefficients* (see
  :func:`bspline_prefilter`; ``scipy.ndimage.map_coordinates(..., prefilter=False)``
  semantics). Taps ``f - 1 .. f + 2`` with the cubic B-spline weights of ``t``, indices folded
  by mirror symmetry about the edge centres (``scipy.ndimage`` mode ``"mirror"``, ITK's
  B-spline boundary); summed tap by tap along x, then y, then z, in float64.
- **Lanczos-3 (order code** :data:`LANCZOS` **= 6).** The windowed sinc
  ``L(x) = sinc(x) sinc(x / 3)`` for ``|x| < 3`` (Duchon 1979; Turkowski 1990), six taps
  ``f - 2 .. f + 3`` at distances ``x = t - d``; indices clamped to ``[0, n_a - 1]`` (ITK's
  ZeroFluxNeumann boundary); weights normalised to sum to 1, so constants stay constant.
  ``t * t == 0`` (``t`` is 0, or so small that its square underflows) gives the weights
  ``(0, 0, 1, 0, 0, 0)``: a sample at a voxel centre is that voxel.
  Otherwise the common factor ``3 sin(pi t) / pi**2`` of the six ``L(t - d)`` cancels in the
  normalisation and ``sin(pi (t - d) / 3)`` is expanded about ``a = pi t / 3``, leaving
  ``u_d = (s * P[d] - c * Q[d]) / ((t - d) * (t - d))`` with ``P[d] = (-1)**d cos(pi d / 3)``,
  ``Q[d] = (-1)**d sin(pi d / 3)`` (:data:`LANCZOS_P`, :data:`LANCZOS_Q`), ``s`` and ``c`` the
  sine and cosine of ``a`` by the Horner polynomials of :func:`lanczos_weights` (a libm's or
  numpy's ``sin`` may differ by an ulp between backends; these cannot), and
  ``w_d = u_d / (((((u_-2 + u_-1) + u_0) + u_1) + u_2) + u_3)``; summed tap by tap along x,
  then y, then z, in float64, like the cubic.
- **Store.** Float output is the float64 value rounded once to the output dtype. Integer output
  is rounded to nearest (ties to even, ``numpy.rint``), saturated to the dtype's range, NaN
  becoming 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..._threads import parallel_threads
from ...errors import ParameterError
from .unpack import check_array, check_disjoint, check_integer

__all__ = [
    "LANCZOS",
    "ORDERS",
    "SAMPLE_DTYPES",
    "AxisPlan",
    "SamplePlan",
    "axis_taps",
    "bspline_prefilter",
    "check_sample_affine",
    "check_sample_axis",
    "inside_mask",
    "interpolate",
    "lanczos_weights",
    "row_blocks",
    "sample_affine",
    "sample_axis",
    "store",
]

#: dtypes ``sample_affine`` and ``sample_axis`` read and write.
SAMPLE_DTYPES = tuple(
    np.dtype(t)
    for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)
#: the order code of Lanczos-3 (windowed sinc): its taps per axis; no B-spline order is 6.
LANCZOS = 6
#: interpolation orders: nearest, linear, cubic B-spline, Lanczos-3.
ORDERS = (0, 1, 3, LANCZOS)
#: taps per output voxel and axis for each order.
TAPS = {0: 1, 1: 2, 3: 4, LANCZOS: 6}
#: Lanczos-3 tap offsets d and the constants (-1)**d cos(pi d / 3), (-1)**d sin(pi d / 3).
LANCZOS_OFFSETS = (-2, -1, 0, 1, 2, 3)
_HALF_SQRT3 = 0.8660254037844386
LANCZOS_P = (-0.5, -0.5, 1.0, -0.5, -0.5, 1.0)
LANCZOS_Q = (-_HALF_SQRT3, _HALF_SQRT3, 0.0, -_HALF_SQRT3, _HALF_SQRT3, 0.0)
# Taylor coefficients of sin (a**3, a**5 .. a**17) and cos (a**2 .. a**18): on [0, pi/3) the
# truncation error is below 1e-17, under an ulp of the result.
_SIN = (-0.16666666666666666, 0.008333333333333333, -0.0001984126984126984,
        2.7557319223985893e-06, -2.505210838544172e-08, 1.6059043836821613e-10,
        -7.647163731819816e-13, 2.8114572543455206e-15)
_COS = (-0.5, 0.041666666666666664, -0.001388888888888889, 2.48015873015873e-05,
        -2.755731922398589e-07, 2.08767569878681e-09, -1.1470745597729725e-11,
        4.779477332387385e-14, -1.5619206968586225e-16)
_PI_3 = 1.0471975511965976
_FLOAT64 = (np.dtype(np.float64),)
_INT64 = (np.dtype(np.int64),)

# The pole of the cubic B-spline's direct filter (Unser, "Splines: a perfect fit for signal and
# image processing", IEEE SPM 1999), as scipy.ndimage and ITK use it.
BSPLINE3_POLE = np.sqrt(3.0) - 2.0


class SamplePlan(NamedTuple):
    """The arguments of ``sample_affine`` after :func:`check_sample_affine`."""

    src: np.ndarray
    matrix: np.ndarray
    out: np.ndarray
    order: int
    cval: float
    threads: int


class AxisPlan(NamedTuple):
    """The arguments of ``sample_axis`` after :func:`check_sample_axis`."""

    src: np.ndarray
    out: np.ndarray
    axis: int
    index: np.ndarray
    weight: np.ndarray
    threads: int


def _check_order(order: Any, kernel: str) -> int:
    value = check_integer(order, "order", kernel)
    if value not in ORDERS:
        raise ParameterError(f"{kernel}: order must be one of {ORDERS}, got {value}")
    return value


def check_sample_affine(src: Any, matrix: Any, out: Any, order: Any, cval: Any) -> SamplePlan:
    """Validate the arguments of ``sample_affine``.

    Raises
    ------
    ParameterError
        If `src` is not a non-empty 3-D aligned C-contiguous array of a :data:`SAMPLE_DTYPES`
        dtype, `matrix` not a finite C-contiguous (3, 4) float64 array, `out` not a writeable
        3-D aligned C-contiguous array of float32, float64 or `src`'s dtype disjoint from
        `src`, `order` not in :data:`ORDERS`, or `cval` not a real number.
    """
    kernel = "sample_affine"
    src = check_array(src, "src", kernel, ndim=3, dtypes=SAMPLE_DTYPES)
    if src.size == 0:
        raise ParameterError(f"{kernel}: src must not be empty, got shape {src.shape}")
    matrix = check_array(matrix, "matrix", kernel, ndim=2, dtypes=_FLOAT64)
    if matrix.shape != (3, 4) or not np.all(np.isfinite(matrix)):
        raise ParameterError(f"{kernel}: matrix must be a finite (3, 4) array, got {matrix.shape}")
    out = check_array(out, "out", kernel, ndim=3, dtypes=SAMPLE_DTYPES, writeable=True)
    check_disjoint(out, {"src": src, "matrix": matrix}, kernel)
    order_ = _check_order(order, kernel)
    if isinstance(cval, (bool, np.bool_)) or not isinstance(cval, (int, float, np.number)):
        raise ParameterError(f"{kernel}: cval must be a real number, got {cval!r}")
    # Each output voxel reads up to 6**3 input voxels: the work, not the bytes, sets threads.
    work = out.size * (8 if order_ == 0 else 16 * TAPS[order_])
    return SamplePlan(src, matrix, out, order_, float(cval), parallel_threads(work))


def check_sample_axis(src: Any, out: Any, axis: Any, index: Any, weight: Any) -> AxisPlan:
    """Validate the arguments of ``sample_axis``.

    Raises
    ------
    ParameterError
        If `src` is not a 3-D aligned C-contiguous array of a :data:`SAMPLE_DTYPES` dtype,
        `axis` not 0, 1 or 2, `index` not a C-contiguous (n, taps >= 1) int64 array with every entry
        in ``[0, src.shape[axis])``, `weight` not a finite float64 array of `index`'s shape,
        or `out` not a writeable C-contiguous array of a :data:`SAMPLE_DTYPES` dtype whose
        shape is `src`'s with ``shape[axis] = n``, disjoint from the inputs.
    """
    kernel = "sample_axis"
    src = check_array(src, "src", kernel, ndim=3, dtypes=SAMPLE_DTYPES)
    ax = check_integer(axis, "axis", kernel)
    if ax not in (0, 1, 2):
        raise ParameterError(f"{kernel}: axis must be 0, 1 or 2, got {ax}")
    index = check_array(index, "index", kernel, ndim=2, dtypes=_INT64)
    weight = check_array(weight, "weight", kernel, ndim=2, dtypes=_FLOAT64)
    if index.shape[1] < 1:
        raise ParameterError(f"{kernel}: index must have at least 1 tap, got {index.shape}")
    if weight.shape != index.shape:
        raise ParameterError(
            f"{kernel}: weight must have index's shape {index.shape}, got {weight.shape}"
        )
    if index.size and (index.min() < 0 or index.max() >= src.shape[ax]):
        raise ParameterError(
            f"{kernel}: index entries must lie in [0, {src.shape[ax]}) (src axis {ax}), "
            f"got [{index.min()}, {index.max()}]"
        )
    if not np.all(np.isfinite(weight)):
        raise ParameterError(f"{kernel}: weight must be finite")
    out = check_array(out, "out", kernel, ndim=3, dtypes=SAMPLE_DTYPES, writeable=True)
    expected = list(src.shape)
    expected[ax] = index.shape[0]
    if out.shape != tuple(expected):
        raise ParameterError(f"{kernel}: out must have shape {tuple(expected)}, got {out.shape}")
    check_disjoint(out, {"src": src, "index": index, "weight": weight}, kernel)
    work = out.size * 8 * index.shape[1]
    return AxisPlan(src, out, ax, index, weight, parallel_threads(work))


def row_blocks(rows: int, threads: int) -> int:
    """How many blocks the native backends split `rows` output rows into, for `threads`.

    Threads take the next free block: rows differ in cost (those beyond the input are
    cheap) and a thread may lose its core to another process, and many small blocks handed
    out on demand keep either from idling the other threads. Each block has its own float64
    row buffer, so the split never changes a result.
    """
    return 1 if threads <= 1 else min(rows, 16 * threads)


def store(values: np.ndarray, out: np.ndarray) -> None:
    """Write float64 `values` into `out` by the module's store rule."""
    if out.dtype.kind == "f":
        out[...] = values
        return
    info = np.iinfo(out.dtype)
    rounded = np.rint(values)
    rounded = np.where(np.isnan(rounded), 0.0, np.clip(rounded, info.min, info.max))
    out[...] = rounded.astype(out.dtype)


def _fold_mirror(m: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected about the edge centres (d c b | a b c d | c b a)."""
    if n == 1:
        return np.zeros_like(m)
    period = 2 * n - 2
    m = np.abs(m) % period
    return np.where(m >= n, period - m, m)


def bspline_weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """The cubic B-spline weights of taps ``f-1, f, f+1, f+2`` at fraction `t` in [0, 1)."""
    t2 = t * t
    t3 = t2 * t
    u = 1.0 - t
    u2 = u * u
    u3 = u2 * u
    return (u3 / 6.0, (2.0 / 3.0 - t2) + 0.5 * t3, (2.0 / 3.0 - u2) + 0.5 * u3, t3 / 6.0)


def lanczos_weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """The normalised Lanczos-3 weights of taps ``f-2 .. f+3`` at fraction `t` in [0, 1).

    The module docstring's rule, operation for operation (the native backends repeat it).
    """
    t = np.asarray(t, dtype=np.float64)
    a = _PI_3 * t
    a2 = a * a
    sp = _SIN[7]
    for coef in _SIN[6::-1]:
        sp = coef + a2 * sp
    s = a + a * (a2 * sp)
    cp = _COS[8]
    for coef in _COS[7::-1]:
        cp = coef + a2 * cp
    c = 1.0 + a2 * cp
    u = []
    for d, pd, qd in zip(LANCZOS_OFFSETS, LANCZOS_P, LANCZOS_Q):
        x = t - float(d)
        # t * t == 0 divides by 0 at d = 0; those weights are replaced below
        with np.errstate(divide="ignore", invalid="ignore"):
            u.append((s * pd - c * qd) / (x * x))
    total = u[0]
    for ud in u[1:]:
        total = total + ud
    at_centre = t * t == 0.0
    return tuple(
        np.where(at_centre, 1.0 if d == 0 else 0.0, ud / np.where(at_centre, 1.0, total))
        for d, ud in zip(LANCZOS_OFFSETS, u)
    )


def axis_taps(p: np.ndarray, n: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights, ``(len(p), taps)``, of sampling an axis of `n` voxels at `p`.

    The taps and boundary rules of the module docstring (the caller handles the inside test).
    """
    p = np.asarray(p, dtype=np.float64)
    if order == 0:
        idx = np.clip(np.floor(p + 0.5), 0, n - 1).astype(np.int64)
        return idx[:, None], np.ones((p.size, 1))
    f = np.floor(p)
    t = p - f
    fi = f.astype(np.int64)
    if order == 1:
        idx = np.stack([np.clip(fi, 0, n - 1), np.clip(fi + 1, 0, n - 1)], axis=1)
        return idx, np.stack([1.0 - t, t], axis=1)
    if order == LANCZOS:
        idx = np.stack([np.clip(fi + d, 0, n - 1) for d in LANCZOS_OFFSETS], axis=1)
        return idx, np.stack(lanczos_weights(t), axis=1)
    idx = np.stack([_fold_mirror(fi + d, n) for d in (-1, 0, 1, 2)], axis=1)
    return idx, np.stack(bspline_weights(t), axis=1)


def inside_mask(shape: tuple[int, ...], p: list[np.ndarray]) -> np.ndarray:
    """Where positions `p` (one array per axis, z, y, x) lie inside a volume of `shape`."""
    inside = np.ones(np.shape(p[0]), bool)
    for a in range(3):
        inside &= (p[a] >= -0.5) & (p[a] <= shape[a] - 0.5)
    return inside


def interpolate(src: np.ndarray, pts: list[np.ndarray], order: int) -> np.ndarray:
    """float64 values of `src` at inside positions `pts` (1-D arrays z, y, x), by the taps and
    summation order of ``sample_affine``."""
    (iz, wz), (iy, wy), (ix, wx) = (axis_taps(pts[a], src.shape[a], order) for a in range(3))
    n_taps = iz.shape[1]
    value = np.zeros(pts[0].size)
    for c in range(n_taps):
        vz = np.zeros(pts[0].size)
        for b in range(n_taps):
            vy = np.zeros(pts[0].size)
            for a in range(n_taps):
                term = wx[:, a] * src[iz[:, c], iy[:, b], ix[:, a]].astype(np.float64)
                vy = term if a == 0 else vy + term
            term = wy[:, b] * vy
            vz = term if b == 0 else vz + term
        term = wz[:, c] * vz
        value = term if c == 0 else value + term
    return value


def sample_affine(
    src: np.ndarray, matrix: np.ndarray, out: np.ndarray, order: int, cval: float
) -> None:
    """Sample `src` at ``matrix @ [k, j, i, 1]`` for every voxel of `out` (module docstring).

    Parameters
    ----------
    src : ndarray, 3-D (z, y, x), C-contiguous, one of :data:`SAMPLE_DTYPES`
        The input (B-spline coefficients for order 3).
    matrix : (3, 4) float64
        Output index ``(k, j, i, 1)`` to continuous input index, rows in (z, y, x) order.
    out : ndarray, 3-D, C-contiguous, one of :data:`SAMPLE_DTYPES` (any, whatever `src`'s)
        Receives the samples.
    order : 0, 1, 3 or 6 (:data:`LANCZOS`)
        Nearest, linear, cubic B-spline or Lanczos-3.
    cval : float
        The value of output voxels outside the input.

    Raises
    ------
    ParameterError
        See :func:`check_sample_affine`.
    """
    plan = check_sample_affine(src, matrix, out, order, cval)
    if plan.out.size == 0:
        return
    m, s = plan.matrix, plan.src
    shape = plan.out.shape
    k = np.arange(shape[0], dtype=np.float64)[:, None, None]
    j = np.arange(shape[1], dtype=np.float64)[None, :, None]
    i = np.arange(shape[2], dtype=np.float64)[None, None, :]
    full = np.zeros(shape)
    p = [((m[a, 0] * k + m[a, 1] * j) + m[a, 3]) + m[a, 2] * i + full for a in range(3)]
    inside = inside_mask(s.shape, p)
    value = interpolate(s, [pa[inside] for pa in p], plan.order)
    result = np.full(shape, plan.cval)
    result[inside] = value
    store(result, plan.out)


def sample_axis(
    src: np.ndarray, out: np.ndarray, axis: int, index: np.ndarray, weight: np.ndarray
) -> None:
    """Resample one axis of `src` through a tap table; the other axes are copied.

    ``out[..., o, ...] = sum_t weight[o, t] * src[..., index[o, t], ...]`` along `axis`, summed
    in float64 tap by tap from t = 0, then stored by the module's store rule.

    Raises
    ------
    ParameterError
        See :func:`check_sample_axis`.
    """
    plan = check_sample_axis(src, out, axis, index, weight)
    if plan.out.size == 0:
        return
    s = np.moveaxis(plan.src, plan.axis, 0)
    shape = (plan.index.shape[0],) + (1, 1)
    value = None
    for t in range(plan.index.shape[1]):
        term = plan.weight[:, t].reshape(shape) * s[plan.index[:, t]].astype(np.float64)
        value = term if value is None else value + term
    store(np.moveaxis(value, 0, plan.axis), plan.out)


def _prefilter_axis(c: np.ndarray, axis: int) -> None:
    """In place: the cubic B-spline direct filter along `axis`, mirror boundary (float64)."""
    n = c.shape[axis]
    if n == 1:
        return
    z = BSPLINE3_POLE
    v = np.moveaxis(c, axis, 0)
    v *= (1.0 - z) * (1.0 - 1.0 / z)  # the filter's gain: 6 for the cubic spline
    # Causal initialisation for the mirror-symmetric extension (scipy's _init_causal_mirror).
    zn = z ** (n - 1)
    first = v[0] + zn * v[n - 1]
    zi = z
    for i in range(1, n - 1):
        first = first + zi * (v[i] + zn * v[n - 1 - i])
        zi *= z
    v[0] = first / (1.0 - zn * zn)
    for i in range(1, n):
        v[i] += z * v[i - 1]
    # Anti-causal initialisation (mirror), then the backward recursion.
    v[n - 1] = (z * v[n - 2] + v[n - 1]) * z / (z * z - 1.0)
    for i in range(n - 2, -1, -1):
        v[i] = z * (v[i + 1] - v[i])


def bspline_prefilter(array: Any) -> np.ndarray:
    """Cubic B-spline coefficients of `array` (float64, same shape), mirror boundary.

    The spline through these coefficients interpolates `array` at every voxel centre. This is
    ``scipy.ndimage.spline_filter(array, order=3, mode="mirror")``: the recursive IIR filter of
    Unser (1999) along each axis in turn, with the exact mirror-symmetric initialisation.
    """
    coeffs = np.array(array, dtype=np.float64, copy=True)
    for axis in range(coeffs.ndim):
        _prefilter_axis(coeffs, axis)
    return coeffs
