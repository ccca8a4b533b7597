"""Resampling volumes: onto a new spacing, shape or another volume's grid, and reorientation.

Grid convention
---------------
A voxel is a sample at its centre (DICOM, ITK): ``Volume.affine`` maps the index ``(k, j, i)``
of a voxel to the LPS position of its centre, and the voxel covers half a spacing on either
side. A new spacing keeps the centre of voxel ``(0, 0, 0)`` where it was and the axis
directions as they were; along each axis the new grid has as many voxels as fit between the
first and last input centres, so no output voxel needs extrapolation. Where the two grids share
a centre, they share its world position (and, for ``"nearest"`` and ``"linear"``, its value).

Worked example: an axis of 3 slices, 2 mm apart, centres at z = 10, 12, 14 mm.

- ``spacing=1``: ``floor((3 - 1) * 2 / 1) + 1 = 5`` slices at z = 10, 11, 12, 13, 14; slices 0,
  2 and 4 are the input's slices 0, 1 and 2 exactly; slice 1 is their mean (linear).
- ``spacing=3``: ``floor(4 / 3) + 1 = 2`` slices at z = 10 and 13.
- ``shape=4``: spacing ``2 * (3 - 1) / (4 - 1) = 4/3`` mm, slices at z = 10, 11.33, 12.67, 14.

Output voxel ``o`` samples the input at the continuous index ``inv(A_in) @ A_out @ o``; a
voxel outside the input (beyond half a voxel past the outermost centres) gets ``cval``.

Anti-aliasing
-------------
Sampling a grid coarser than the input's folds frequencies above the new Nyquist frequency
back into the image (aliasing: moire, jagged edges). Unless ``anti_alias=False``, each input
axis ``a`` that is downsampled by a factor ``s_a > 1`` is first smoothed with a Gaussian of

    sigma_a = sqrt((s_a**2 - 1) / (8 ln 2))   input voxels,

the point-spread-function matching rule of M. J. Cardoso et al., "Scale factor point spread
function matching: beyond aliasing in image resampling", MICCAI 2015 (also TorchIO's
``Resample``): the Gaussian's FWHM is ``sqrt(s_a**2 - 1)`` voxels, so the input's voxel (FWHM 1)
convolved with it has the output voxel's FWHM ``s_a``. The factor is the length of row ``a`` of
the output-index-to-input-index matrix, the input voxels crossed per output step (exactly the
spacing ratio for an axis-aligned grid). The Gaussian is truncated at 4 sigma with mirror
boundary (``scipy.ndimage.gaussian_filter``'s ``"reflect"``). Nearest-neighbour and
majority-vote resampling (labels) are never smoothed: labels must not blur. A sigma below 1/8
voxel (a factor below 1.042, as a rotation at unchanged spacing gives) counts as 0:
its truncated Gaussian is a single tap, the identity.

Interpolation and boundaries
----------------------------
``"nearest"`` (order 0), ``"linear"`` (order 1, equal to ``scipy.ndimage.map_coordinates``
``order=1, mode="nearest"`` and to SimpleITK ``sitkLinear`` inside the input) and ``"cubic"``
(the cubic B-spline with its interpolating prefilter, equal to ``map_coordinates`` ``order=3,
mode="mirror"``: coefficients and taps mirror about the edge centres). The kernel rules are
those of :mod:`voxelflow.kernels.reference.resample`.

``"lanczos"`` is the Lanczos-3 windowed sinc, ``L(x) = sinc(x) sinc(x / 3)`` for ``|x| < 3``
(C. E. Duchon, "Lanczos filtering in one and two dimensions", J. Appl. Meteor. 1979;
K. Turkowski, "Filters for common resampling tasks", Graphics Gems 1990): six taps per axis,
separable. Two choices differ from ITK's ``LanczosWindowFunction`` radius 3 (SimpleITK's
``sitkLanczosWindowedSinc``): the six weights are normalised to sum to 1 (ITK's are not: a
constant 100 comes out of ITK as 99.7), so constants stay constant; the boundary is the same,
indices clamped to the edge (ITK's ZeroFluxNeumann condition). A sample at a voxel centre is
that voxel exactly. The kernel overshoots at edges (ringing); integer output saturates.
Inside the input, away from the edges, it agrees with SimpleITK to about 0.5% of the signal on
smooth images (the weight normalisation and the windowed sinc's own error).

Labels: majority vote
---------------------
``"majority"`` (alias ``"mode"``) gives each output voxel the most frequent label among the
input voxels whose centres fall in its footprint: along each axis ``a`` downsampled by
``s_a > 1`` the half-open interval ``[p_a - s_a / 2, p_a + s_a / 2)`` of input indices around
the output voxel's centre ``p_a`` (so abutting footprints share no voxel), clipped to the input;
along an axis that is not downsampled, the one voxel nearest rounding picks. Ties go to the
smallest label. Output values are always input labels (or ``cval`` outside the input): no
blurring, no anti-aliasing. Not downsampling along any axis, it equals ``"nearest"``. The
footprint is a box of input voxels only on an axis-aligned grid; an oblique grid raises
:class:`~voxelflow.errors.ResampleError` (use ``"nearest"``). Note that ``spacing=`` keeps the
centre of voxel 0, so a 2x downsample centres footprints on input voxels 0, 2, 4 ... (each
``[2o - 1, 2o + 1)``); to vote over blocks ``{2o, 2o + 1}`` give the grid with ``affine=``
(origin half an input voxel further in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import kernels
from .errors import ResampleError
from .geometry import LPS_TO_RAS, nifti_affine
from .kernels.reference.resample import (
    LANCZOS,
    SAMPLE_DTYPES,
    axis_taps,
    bspline_prefilter,
    store,
)
from .volume import Volume, require_grayscale

__all__ = [
    "INTERPOLATIONS",
    "LANCZOS",
    "MAJORITY",
    "anti_alias_sigma",
    "gaussian_smooth",
    "is_axis_aligned",
    "majority_vote",
    "output_grid",
    "reorient",
    "resample",
    "sample_grid",
]

#: the order code of the majority vote: not a kernel order (the vote is :func:`majority_vote`).
MAJORITY = -1
#: interpolation name -> order code: spline order, :data:`LANCZOS` (6) or :data:`MAJORITY`.
INTERPOLATIONS = {
    "nearest": 0,
    "linear": 1,
    "cubic": 3,
    "lanczos": LANCZOS,
    "majority": MAJORITY,
    "mode": MAJORITY,
}

# FWHM = 2 sqrt(2 ln 2) sigma.
_FWHM_PER_SIGMA2 = 8.0 * np.log(2.0)
# scipy.ndimage.gaussian_filter's default truncation.
_TRUNCATE = 4.0
# Metadata that indexes the input's slices: meaningless on a new grid.
_PER_SLICE_META = ("sop_instance_uids",)


def _triple(value: Any, name: str, *, integer: bool) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(3, float(arr))
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ResampleError(
            f"resample: {name} must be a positive number or 3 positive numbers (z, y, x), "
            f"got {value!r}"
        )
    if integer and np.any(arr != np.round(arr)):
        raise ResampleError(f"resample: {name} must be integers, got {value!r}")
    return arr


def output_grid(
    volume: Volume,
    *,
    spacing: float | Sequence[float] | None = None,
    shape: int | Sequence[int] | None = None,
    like: Volume | None = None,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The affine and (z, y, x) shape of the grid :func:`resample` produces (module docstring).

    Give one of `spacing` (mm, one or three values in array order), `shape`, `like` (another
    volume's grid) or `affine` (with `shape`, default the input's shape).

    Raises
    ------
    ResampleError
        If none or several of them are given, or a value is not positive and finite.
    """
    if like is not None:
        if spacing is not None or shape is not None or affine is not None:
            raise ResampleError("resample: like= takes the whole grid; give no spacing, shape or affine")
        return like.affine.copy(), tuple(int(n) for n in like.shape[-3:])  # type: ignore[return-value]
    in_shape = np.array(volume.shape[-3:], dtype=np.float64)
    if affine is not None:
        if spacing is not None:
            raise ResampleError("resample: give spacing or affine, not both")
        out = np.asarray(affine, dtype=np.float64)
        if out.shape != (4, 4) or not np.all(np.isfinite(out)) or abs(np.linalg.det(out[:3, :3])) < 1e-12:
            raise ResampleError(f"resample: affine must be a finite invertible 4x4 matrix, got {affine!r}")
        size = in_shape if shape is None else _triple(shape, "shape", integer=True)
        return out.copy(), tuple(int(n) for n in size)  # type: ignore[return-value]
    in_spacing = np.array(volume.spacing)
    if spacing is not None and shape is not None:
        raise ResampleError("resample: give spacing or shape, not both")
    if spacing is not None:
        new_spacing = _triple(spacing, "spacing", integer=False)
        # as many centres as fit in the input's span; 1e-6 absorbs rounding of exact ratios
        size = np.floor((in_shape - 1) * in_spacing / new_spacing + 1e-6) + 1
    elif shape is not None:
        size = _triple(shape, "shape", integer=True)
        span = (in_shape - 1) * in_spacing
        new_spacing = np.where(size > 1, span / np.maximum(size - 1, 1), in_spacing * in_shape)
    else:
        raise ResampleError("resample: give one of spacing, shape, like or affine")
    out = volume.affine.copy()
    out[:3, :3] = volume.affine[:3, :3] / in_spacing * new_spacing
    return out, tuple(int(n) for n in size)  # type: ignore[return-value]


def anti_alias_sigma(matrix: np.ndarray) -> np.ndarray:
    """Gaussian sigma (input voxels, z, y, x) before sampling with `matrix` (module docstring).

    `matrix` maps output index to input index (3 x 4 or 4 x 4); axes that are not
    downsampled get 0, and so do axes whose sigma is below 1/8 voxel (the truncated Gaussian
    is then one tap: no smoothing at all).
    """
    factor = np.linalg.norm(np.asarray(matrix, dtype=np.float64)[:3, :3], axis=1)
    sigma = np.sqrt(np.maximum(factor**2 - 1.0, 0.0) / _FWHM_PER_SIGMA2)
    # Below 1/8 voxel the Gaussian truncated at 4 sigma is a single tap of weight 1, the
    # identity: a rotation at unchanged spacing (factor 1 but for rounding) must not pay for a
    # smoothing pass that changes nothing.
    return np.where(_TRUNCATE * sigma + 0.5 < 1.0, 0.0, sigma)


def _gaussian_taps(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and normalised weights of a Gaussian truncated at 4 sigma (scipy's radius)."""
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return offsets, weights / weights.sum()


def _fold_reflect(m: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected about the edges (d c b a | a b c d | d c b a): scipy's "reflect"."""
    m = np.mod(m, 2 * n)
    return np.where(m >= n, 2 * n - 1 - m, m)


def _smoothed_taps(
    index: np.ndarray, weight: np.ndarray, sigma: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Taps of interpolating the Gaussian-smoothed axis: each tap spread over the Gaussian."""
    if sigma <= 0:
        return index, weight
    offsets, g = _gaussian_taps(sigma)
    idx = _fold_reflect(index[:, :, None] + offsets[None, None, :], n)
    w = weight[:, :, None] * g[None, None, :]
    return (
        np.ascontiguousarray(idx.reshape(index.shape[0], -1)),
        np.ascontiguousarray(w.reshape(index.shape[0], -1)),
    )


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Intermediate dtype of multi-pass work: float32 holds 8/16-bit data and float32 exactly."""
    return np.dtype(np.float32) if dtype.itemsize <= 2 or dtype == np.float32 else np.dtype(np.float64)


def gaussian_smooth(array: np.ndarray, sigma: Sequence[float], *, backend: str | None = None) -> np.ndarray:
    """`array` (3-D) smoothed with a Gaussian of `sigma` voxels per axis (z, y, x).

    Truncated at 4 sigma, mirror boundary: ``scipy.ndimage.gaussian_filter(mode="reflect")``.
    Axes with sigma 0 are untouched. Returns float32 for 8/16-bit and float32 input, float64
    otherwise (a new array, or `array` itself if every sigma is 0).
    """
    run = kernels.get("sample_axis", backend)
    work = np.ascontiguousarray(array)
    for axis in range(3):
        if sigma[axis] <= 0:
            continue
        n = work.shape[axis]
        offsets, g = _gaussian_taps(float(sigma[axis]))
        index = np.ascontiguousarray(_fold_reflect(np.arange(n)[:, None] + offsets[None, :], n))
        weight = np.ascontiguousarray(np.broadcast_to(g, index.shape))
        out = np.empty(work.shape, _work_dtype(work.dtype))
        run(work, out, axis, index, weight)
        work = out
    return work


def _positions(matrix: np.ndarray, axis: int, count: int) -> np.ndarray:
    """Input positions along `axis` of an axis-aligned matrix, by the kernels' formula."""
    o = np.arange(count, dtype=np.float64)
    # p = ((0 + 0) + m[a, 3]) + m[a, a] * o, the kernel's evaluation order with zero terms
    return matrix[axis, 3] + matrix[axis, axis] * o


def _sample_separable(
    src: np.ndarray,
    matrix: np.ndarray,
    shape: tuple[int, int, int],
    order: int,
    sigma: np.ndarray,
    cval: float,
    dtype: np.dtype,
    backend: str | None,
) -> np.ndarray:
    """An axis-aligned `matrix`: one tap-table pass per changed axis, smoothing fused in."""
    run = kernels.get("sample_axis", backend)
    positions = [_positions(matrix, a, shape[a]) for a in range(3)]
    work = src
    if order == 3:
        work = bspline_prefilter(gaussian_smooth(src, sigma, backend=backend))
        sigma = np.zeros(3)
    todo = []
    for a in range(3):
        identity = shape[a] == src.shape[a] and np.array_equal(positions[a], np.arange(shape[a]))
        if not identity or sigma[a] > 0:
            todo.append(a)
    # shrinking axes first: every later pass then touches fewer voxels
    todo.sort(key=lambda a: shape[a] / src.shape[a])
    for n_done, a in enumerate(todo):
        index, weight = axis_taps(positions[a], src.shape[a], order)
        index, weight = _smoothed_taps(index, weight, float(sigma[a]), src.shape[a])
        out_shape = list(work.shape)
        out_shape[a] = shape[a]
        last = n_done == len(todo) - 1
        out = np.empty(out_shape, dtype if last else _work_dtype(work.dtype))
        run(np.ascontiguousarray(work), out, a, index, weight)
        work = out
    if not todo:
        work = np.empty(shape, dtype)
        store(src.astype(np.float64), work)
    fill = np.empty((), dtype)
    store(np.array(cval), fill)
    for a in range(3):
        outside = (positions[a] < -0.5) | (positions[a] > src.shape[a] - 0.5)
        if outside.any():
            index = [slice(None)] * 3
            index[a] = outside  # type: ignore[call-overload]
            work[tuple(index)] = fill
    return work


def is_axis_aligned(matrix: np.ndarray) -> bool:
    """Whether the output-to-input `matrix` (3 x 4 or 4 x 4) scales each axis on its own."""
    linear = np.asarray(matrix, dtype=np.float64)[:3, :3]
    return bool(np.count_nonzero(linear - np.diag(np.diag(linear))) == 0)


def _footprint(p: np.ndarray, step: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Members ``(index, counted)``, each ``(len(p), K)``, of the footprints along one axis.

    The input voxels whose centres fall in ``[p - step / 2, p + step / 2)`` (half-open, so
    abutting footprints share no voxel), within the input; one voxel, the nearest
    (``floor(p + 0.5)``, clamped), where the axis is not downsampled (``step <= 1``).
    """
    if step <= 1.0:
        return np.clip(np.floor(p + 0.5), 0, n - 1).astype(np.int64)[:, None], np.ones(
            (p.size, 1), bool
        )
    lo = np.ceil(p - step / 2.0)
    hi = np.ceil(p + step / 2.0)
    width = int((hi - lo).max()) if p.size else 1
    index = lo[:, None] + np.arange(width)
    counted = (index < hi[:, None]) & (index >= 0) & (index <= n - 1)
    return np.clip(index, 0, n - 1).astype(np.int64), counted


def _row_mode(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Per row of `values` (N, K), the most frequent value among the counted entries; ties go
    to the smallest value. Rows must have at least one counted entry."""
    # uncounted entries take their row's first counted value and a count of 0
    first = np.take_along_axis(values, np.argmax(counted, axis=1)[:, None], axis=1)
    values = np.where(counted, values, first)
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, axis=1)
    w = np.take_along_axis(counted, order, axis=1).astype(np.int64)
    total = np.cumsum(w, axis=1)
    starts = np.ones(v.shape, bool)
    starts[:, 1:] = v[:, 1:] != v[:, :-1]
    before_run = np.maximum.accumulate(np.where(starts, total - w, 0), axis=1)
    # the running count within each run of equal values; its first maximum lies in the
    # smallest value that reaches the highest count (the runs are sorted)
    best = np.argmax(total - before_run, axis=1)
    return v[np.arange(v.shape[0]), best]


def _check_majority_grid(matrix: np.ndarray) -> None:
    if not is_axis_aligned(matrix):
        raise ResampleError(
            "resample: interp='majority' needs an axis-aligned grid (the output axes along "
            "the input's); use interp='nearest' for labels on an oblique grid"
        )


# Labels gathered per vote batch: bounds the (voxels, footprint) working arrays.
_VOTE_BATCH = 1 << 22


def majority_vote(
    array: np.ndarray, matrix: np.ndarray, shape: Sequence[int], *, cval: float = 0.0
) -> np.ndarray:
    """Each output voxel gets the most frequent label in its footprint (module docstring).

    Parameters
    ----------
    array : ndarray, 3-D (z, y, x)
        Labels (any numeric dtype).
    matrix : (3, 4) or (4, 4) float
        Output index to continuous input index; must be axis-aligned.
    shape : 3 ints
        The output shape (z, y, x).
    cval : float
        Value of output voxels outside the input.

    Returns
    -------
    numpy.ndarray
        `shape`, `array`'s dtype; every value is one of `array`'s or `cval`.

    Raises
    ------
    ResampleError
        If `matrix` is not axis-aligned (a rotated footprint is not a box of input voxels).
    """
    m = np.asarray(matrix, dtype=np.float64)[:3]
    _check_majority_grid(m)
    src = np.asarray(array)
    shape = tuple(int(n) for n in shape)
    positions = [_positions(m, a, shape[a]) for a in range(3)]
    (iz, cz), (iy, cy), (ix, cx) = (
        _footprint(positions[a], abs(float(m[a, a])), src.shape[a]) for a in range(3)
    )
    out = np.empty(shape, src.dtype)
    taps = iz.shape[1] * iy.shape[1] * ix.shape[1]
    slab = max(1, _VOTE_BATCH // max(1, taps * shape[1] * shape[2]))
    for k0 in range(0, shape[0], slab):
        k = slice(k0, k0 + slab)
        values = src[iz[k, None, None, :, None, None], iy[None, :, None, None, :, None],
                     ix[None, None, :, None, None, :]]
        counted = (cz[k, None, None, :, None, None] & cy[None, :, None, None, :, None]
                   & cx[None, None, :, None, None, :])
        n = values.shape[0] * shape[1] * shape[2]
        values = values.reshape(n, taps)
        counted = counted.reshape(n, taps)
        out[k] = _row_mode(values, counted).reshape(-1, shape[1], shape[2])
    fill = np.empty((), src.dtype)
    if src.dtype.kind in "iu":
        store(np.array(float(cval)), fill)  # rounded and saturated, as the kernels store
    else:
        fill[()] = cval
    for a in range(3):
        outside = (positions[a] < -0.5) | (positions[a] > src.shape[a] - 0.5)
        if outside.any():
            index = [slice(None)] * 3
            index[a] = outside  # type: ignore[call-overload]
            out[tuple(index)] = fill
    return out


def _sample_kernels(
    src: np.ndarray,
    m: np.ndarray,
    shape: tuple[int, int, int],
    order: int,
    anti_alias: bool,
    cval: float,
    out_dtype: np.dtype,
    backend: str | None,
) -> np.ndarray:
    """sample_grid through the interpolation kernels (every order but the majority vote)."""
    if src.dtype not in SAMPLE_DTYPES:
        src = src.astype(np.float64)
    kernel_dtype = out_dtype if out_dtype in SAMPLE_DTYPES else np.dtype(np.float64)
    sigma = anti_alias_sigma(m) if anti_alias and order > 0 else np.zeros(3)
    if is_axis_aligned(m):
        return _sample_separable(src, m, shape, order, sigma, cval, kernel_dtype, backend)
    work = gaussian_smooth(src, sigma, backend=backend) if np.any(sigma > 0) else src
    if order == 3:
        work = bspline_prefilter(work)
    out = np.empty(shape, kernel_dtype)
    kernels.get("sample_affine", backend)(work, m, out, order, float(cval))
    return out


def sample_grid(
    array: np.ndarray,
    matrix: np.ndarray,
    shape: Sequence[int],
    *,
    order: int = 1,
    anti_alias: bool = True,
    cval: float = 0.0,
    dtype: Any = None,
    backend: str | None = None,
) -> np.ndarray:
    """Sample a 3-D array on a new grid: the array-level core of :func:`resample`.

    Parameters
    ----------
    array : array-like, 3-D (z, y, x)
        The input voxels.
    matrix : (3, 4) or (4, 4) float
        Output index ``(k, j, i, 1)`` to continuous input index.
    shape : 3 ints
        The output shape (z, y, x).
    order : 0, 1, 3, 6 or -1
        Nearest, linear, cubic B-spline, Lanczos-3 (:data:`LANCZOS`) or the majority vote
        (:data:`MAJORITY`, axis-aligned `matrix` only): the values of :data:`INTERPOLATIONS`.
    anti_alias : bool
        Smooth downsampled axes first (module docstring); ignored for nearest and majority.
    cval : float
        Value of output voxels outside the input.
    dtype : dtype, optional
        Output dtype (default: the input's); integers are rounded and saturated.
    backend : str, optional
        Kernel backend (default :func:`voxelflow.kernels.default_backend`).

    Returns
    -------
    numpy.ndarray
        A new C-contiguous array of `shape` and `dtype`.
    """
    src = np.ascontiguousarray(array)
    m = np.ascontiguousarray(np.asarray(matrix, dtype=np.float64)[:3])
    shape = tuple(int(n) for n in shape)
    out_dtype = src.dtype if dtype is None else np.dtype(dtype)
    if src.dtype == np.bool_:
        src = src.view(np.uint8)
    if out_dtype == np.bool_:
        return sample_grid(src, m, shape, order=order, anti_alias=anti_alias, cval=cval,
                           dtype=np.uint8, backend=backend).view(np.bool_)
    if order == MAJORITY:
        out = majority_vote(src, m, shape, cval=cval)
    else:
        out = _sample_kernels(src, m, shape, order, anti_alias, cval, out_dtype, backend)  # type: ignore[arg-type]
    if out.dtype != out_dtype:
        if out_dtype.kind in "iu":
            info = np.iinfo(out_dtype)
            out = np.clip(np.rint(np.nan_to_num(out.astype(np.float64))), info.min, info.max)
        out = out.astype(out_dtype)
    return out


def resample(
    volume: Volume,
    *,
    spacing: float | Sequence[float] | None = None,
    shape: int | Sequence[int] | None = None,
    like: Volume | None = None,
    affine: np.ndarray | None = None,
    interp: str = "linear",
    anti_alias: bool = True,
    cval: float | None = None,
    dtype: Any = None,
    chunks: Sequence[int] | None = None,
    backend: str | None = None,
) -> Volume:
    """`volume` resampled onto a new grid, with the exact affine of that grid.

    Parameters
    ----------
    volume : Volume
        The input (3-D, or 4-D with a leading axis such as time, resampled per 3-D volume).
    spacing : float or 3 floats, optional
        New voxel spacing in mm, array order (z, y, x); one number means isotropic.
        Voxel (0, 0, 0) keeps its centre, directions are kept (module docstring).
    shape : int or 3 ints, optional
        New shape (z, y, x); the first and last voxel centres are kept.
    like : Volume, optional
        Resample onto this volume's grid (its affine and shape).
    affine : (4, 4) array, optional
        The output grid's affine (index (k, j, i, 1) to LPS mm), with `shape` (default: the
        input's).
    interp : {"linear", "nearest", "cubic", "lanczos", "majority", "mode"}
        Interpolation (module docstring). For label volumes use "nearest" or "majority"
        (alias "mode": each output voxel takes the most frequent label of its footprint;
        axis-aligned grids only): neither blurs nor smooths.
    anti_alias : bool
        Gaussian smoothing of downsampled axes before sampling (module docstring).
    cval : float, optional
        Value of output voxels outside the input (default 0).
    dtype : dtype, optional
        Output dtype (default: the input's; integer output is rounded to nearest and
        saturated).
    chunks : 3 ints, optional
        Output chunk shape of the out-of-core path (default
        :data:`voxelflow.parallel.DEFAULT_CHUNKS`).
    backend : str, optional
        Kernel backend.

    Returns
    -------
    Volume
        The resampled voxels with the output grid's affine and the input's metadata (less
        per-slice entries such as ``sop_instance_uids``). A numpy input gives numpy; a zarr-
        or dask-backed 3-D input gives a lazy dask array computed output chunk by output
        chunk, each reading only the input box it needs (:mod:`voxelflow.parallel`): write it
        to a store with ``VolumeStore.write`` without holding the volume in memory.

    Raises
    ------
    ResampleError
        If the grid is over- or under-specified, a spacing or shape is not positive,
        `interp` is unknown, or `interp` is "majority" and the grid is not axis-aligned with
        the input's.

    Examples
    --------
    A 3-slice stack 2 mm apart, origin z = 10 mm, resampled to 1 mm: 5 slices at
    z = 10, 11, 12, 13, 14 mm; the affine's slice column becomes 1 mm long, its origin is
    unchanged (see the module docstring for the rule).
    """
    require_grayscale(volume, ResampleError, "resample")
    if interp not in INTERPOLATIONS:
        raise ResampleError(
            f"resample: interp must be one of {', '.join(INTERPOLATIONS)}, got {interp!r}"
        )
    order = INTERPOLATIONS[interp]
    out_affine, out_shape = output_grid(volume, spacing=spacing, shape=shape, like=like, affine=affine)
    matrix = (np.linalg.inv(volume.affine) @ out_affine)[:3]
    if order == MAJORITY:
        _check_majority_grid(matrix)  # now, not inside the out-of-core path's first task
    fill = 0.0 if cval is None else float(cval)
    meta = {k: v for k, v in volume.meta.items() if k not in _PER_SLICE_META}
    if not isinstance(volume.array, np.ndarray) and volume.array.ndim == 3:
        from .parallel import resample_chunked

        lazy = resample_chunked(
            volume.array, matrix, out_shape, order=order, anti_alias=anti_alias, cval=fill,
            dtype=volume.dtype if dtype is None else dtype, chunks=chunks, backend=backend,
        )
        return Volume(lazy, out_affine, meta)
    array = volume.to_numpy()
    lead = array.shape[:-3]
    out_dtype = array.dtype if dtype is None else np.dtype(dtype)
    options: dict[str, Any] = {"order": order, "anti_alias": anti_alias, "cval": fill,
                               "dtype": out_dtype, "backend": backend}
    if not lead:
        # no copy into a preallocated result: on a 3-D volume that doubled the output traffic
        return Volume(sample_grid(array, matrix, out_shape, **options), out_affine, meta)
    out = np.empty(lead + tuple(out_shape), out_dtype)
    for index in np.ndindex(*lead):
        out[index] = sample_grid(array[index], matrix, out_shape, **options)
    return Volume(out, out_affine, meta)


def _parse_codes(codes: str) -> str:
    text = str(codes).upper()
    pairs = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
    if len(text) != 3 or any(c not in pairs for c in text):
        raise ResampleError(f"reorient: codes must be 3 letters from L/R, P/A, S/I, got {codes!r}")
    if len({pairs[c] if c in "RAI" else c for c in text}) != 3:
        raise ResampleError(f"reorient: codes {codes!r} name one anatomical axis twice")
    return text


def reorient(volume: Volume, codes: str = "LPS") -> Volume:
    """`volume` with its axes permuted and flipped to the orientation `codes`: no interpolation.

    Parameters
    ----------
    volume : Volume
        The input (3-D, or with leading axes, which are kept; a colour volume keeps its
        trailing RGB samples).
    codes : str
        Three letters giving the direction in which the column index i, the row index j and
        the slice index k increase, in that order (fastest array axis first, as ITK, nibabel
        and DICOM list them; the reverse of voxelflow's array order): ``"LPS"`` is DICOM's
        usual axial stack (i toward the patient's left, j posterior, k superior), ``"RAS"``
        what nibabel's ``as_closest_canonical`` produces.

    Returns
    -------
    Volume
        Same voxels, exactly (a view of a numpy array where possible), with the affine that
        keeps every voxel's world position. Oblique axes go to the closest anatomical axis
        (nibabel's ``io_orientation``).

    Raises
    ------
    ResampleError
        If `codes` are not three letters naming three different anatomical axes.
    """
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    target = axcodes2ornt(tuple(_parse_codes(codes)), labels=(("L", "R"), ("P", "A"), ("I", "S")))
    # nibabel works in NIfTI terms: voxel axes (i, j, k), world RAS.
    ras = nifti_affine(volume.affine)
    transform = ornt_transform(io_orientation(ras), target)
    shape_ijk = volume.spatial_shape[::-1]
    new_ras = ras @ inv_ornt_aff(transform, shape_ijk)
    reverse = np.eye(4)[:, [2, 1, 0, 3]]
    new_affine = LPS_TO_RAS @ new_ras @ reverse
    array = volume.array
    if not isinstance(array, np.ndarray) and not hasattr(array, "dask"):
        array = volume.to_dask()
    trail = int(volume.is_colour)  # RGB samples follow x and stay last
    lead = array.ndim - 3 - trail
    # transform[a] = (new position, flip) of voxel axis a in (i, j, k); array axis = lead + 2 - a
    for a in range(3):
        if transform[a, 1] == -1:
            array = np.flip(array, axis=lead + 2 - a)
    perm = list(range(lead)) + [0, 0, 0] + list(range(lead + 3, lead + 3 + trail))
    for a in range(3):
        new_axis = int(transform[a, 0])
        perm[lead + 2 - new_axis] = lead + 2 - a
    array = array.transpose(perm)
    meta = {k: v for k, v in volume.meta.items() if k not in _PER_SLICE_META}
    return Volume(array, new_affine, meta)
