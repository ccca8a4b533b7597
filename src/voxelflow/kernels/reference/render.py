"""Rendering kernels (MPR, slab MIP, curved MPR): the oracle and the shared argument checks.

``sample_slab`` renders a thick oblique slab: output pixel ``(j, i)`` reduces the input sampled
at ``matrix @ [s, j, i, 1]`` for the samples ``s = 0 .. samples - 1`` (``matrix`` is 3 x 4,
float64, rows in array order (z, y, x); the sample number takes the place of
``sample_affine``'s ``k``). ``project_axis`` is the axis-aligned projection (a whole-volume MIP
along one array axis), and ``sample_points`` samples at arbitrary points (``map_coordinates``:
curved MPR, probes).

The rules, which every backend follows to the bit:

- **Position, inside, interpolation.** Those of
  :mod:`voxelflow.kernels.reference.resample`: ``p_a = ((m[a,0]*s + m[a,1]*j) + m[a,3]) +
  m[a,2]*i`` in float64, inside when ``-0.5 <= p_a <= n_a - 0.5`` on every axis, orders 0, 1
  and 3 (order 3 reads B-spline coefficients), so ``sample_slab(samples=1)`` is
  ``sample_affine`` with an output of one slice. ``sample_points`` takes the positions from
  ``coords`` as they are (non-finite positions are outside).
- **Reduction.** A slab pixel reduces its *inside* samples only, in order of ``s`` (ray-casting
  convention: a ray that leaves the volume contributes nothing there, where ``cval`` would
  bias a MIP or a mean); a pixel with no inside sample gets ``cval``. In float64, starting from
  the reduction's identity: ``max``: ``acc = v if (v > acc or v is NaN) else acc`` from
  ``-inf`` (NaN propagates, as in ``numpy.max``); ``min`` the same with ``<`` from ``+inf``;
  ``sum``: ``acc = acc + v`` from ``-0.0`` (the exact additive identity, so one sample sums to
  itself bit for bit); ``mean``: that sum divided by the number of inside samples.
  ``project_axis`` reduces every voxel along the axis in index order: ``max`` and ``min`` by
  the same comparisons, exactly, in `src`'s own dtype; ``sum`` and ``mean`` in float64 as above.
- **Store.** ``resample``'s: float output is the float64 value rounded once; integer output is
  rounded to nearest (ties to even), saturated to the dtype's range, NaN becoming 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..._threads import parallel_threads
from ...errors import ParameterError
from .resample import SAMPLE_DTYPES, TAPS, _check_order, inside_mask, interpolate, store
from .unpack import check_array, check_disjoint, check_integer

__all__ = [
    "MAX_SAMPLES",
    "MODES",
    "PointsPlan",
    "ProjectPlan",
    "SlabPlan",
    "check_project_axis",
    "check_sample_points",
    "check_sample_slab",
    "project_axis",
    "sample_points",
    "sample_slab",
]

#: Reductions of ``sample_slab`` and ``project_axis``, with the integer codes native loops use.
MODES = {"max": 0, "min": 1, "sum": 2, "mean": 3}
MODE_MAX, MODE_MIN, MODE_SUM, MODE_MEAN = 0, 1, 2, 3
#: The most samples one slab pixel may take: a slab through the diagonal of a 2048**3 volume at
#: half-voxel steps needs ~7100; more is a unit mistake (mm for voxels), not a rendering.
MAX_SAMPLES = 8192
_FLOAT64 = (np.dtype(np.float64),)


class SlabPlan(NamedTuple):
    """The arguments of ``sample_slab`` after :func:`check_sample_slab`."""

    src: np.ndarray
    matrix: np.ndarray
    out: np.ndarray
    order: int
    cval: float
    samples: int
    mode: int
    threads: int


class ProjectPlan(NamedTuple):
    """The arguments of ``project_axis`` after :func:`check_project_axis`."""

    src: np.ndarray
    axis: int
    mode: int
    out: np.ndarray
    threads: int


class PointsPlan(NamedTuple):
    """The arguments of ``sample_points`` after :func:`check_sample_points`.

    ``coords`` is seen as ``(n, 3)`` and ``out`` as ``(n,)`` (views of the caller's arrays).
    """

    src: np.ndarray
    coords: np.ndarray
    out: np.ndarray
    order: int
    cval: float
    threads: int


def _check_mode(mode: Any, kernel: str) -> int:
    if not isinstance(mode, str) or mode not in MODES:
        raise ParameterError(f"{kernel}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MODES[mode]


def _check_cval(cval: Any, kernel: str) -> float:
    if isinstance(cval, (bool, np.bool_)) or not isinstance(cval, (int, float, np.number)):
        raise ParameterError(f"{kernel}: cval must be a real number, got {cval!r}")
    value = float(cval)
    if not np.isfinite(value):
        raise ParameterError(f"{kernel}: cval must be finite, got {value}")
    return value


def _check_src(src: Any, kernel: str) -> np.ndarray:
    src = check_array(src, "src", kernel, ndim=3, dtypes=SAMPLE_DTYPES)
    if src.size == 0:
        raise ParameterError(f"{kernel}: src must not be empty, got shape {src.shape}")
    return src


def _sample_work(points: int, order: int) -> int:
    # Each sample reads up to 4**3 input voxels: the work, not the bytes, sets threads
    # (the measure check_sample_affine uses).
    return points * (8 if order == 0 else 16 * TAPS[order])


def check_sample_slab(
    src: Any, matrix: Any, out: Any, order: Any, cval: Any, samples: Any, mode: Any
) -> SlabPlan:
    """Validate the arguments of ``sample_slab``.

    Raises
    ------
    ParameterError
        If `src` is not a non-empty 3-D aligned C-contiguous array of a :data:`SAMPLE_DTYPES`
        dtype, `matrix` not a finite C-contiguous (3, 4) float64 array, `out` not a writeable
        2-D aligned C-contiguous array of a :data:`SAMPLE_DTYPES` dtype disjoint from the
        inputs, `order` not 0, 1 or 3, `cval` not a finite real number, `samples` not an
        integer in 1..:data:`MAX_SAMPLES`, or `mode` not one of :data:`MODES`.
    """
    kernel = "sample_slab"
    src = _check_src(src, kernel)
    matrix = check_array(matrix, "matrix", kernel, ndim=2, dtypes=_FLOAT64)
    if matrix.shape != (3, 4) or not np.all(np.isfinite(matrix)):
        raise ParameterError(f"{kernel}: matrix must be a finite (3, 4) array, got {matrix.shape}")
    out = check_array(out, "out", kernel, ndim=2, dtypes=SAMPLE_DTYPES, writeable=True)
    check_disjoint(out, {"src": src, "matrix": matrix}, kernel)
    order_ = _check_order(order, kernel)
    cval_ = _check_cval(cval, kernel)
    n = check_integer(samples, "samples", kernel)
    if not 1 <= n <= MAX_SAMPLES:
        raise ParameterError(f"{kernel}: samples must be in 1..{MAX_SAMPLES}, got {n}")
    mode_ = _check_mode(mode, kernel)
    threads = parallel_threads(_sample_work(out.size * n, order_))
    return SlabPlan(src, matrix, out, order_, cval_, n, mode_, threads)


def check_project_axis(src: Any, axis: Any, mode: Any, out: Any) -> ProjectPlan:
    """Validate the arguments of ``project_axis``.

    Raises
    ------
    ParameterError
        If `src` is not a 3-D aligned C-contiguous array of a :data:`SAMPLE_DTYPES` dtype with
        at least one voxel along `axis`, `axis` not 0, 1 or 2, `mode` not one of
        :data:`MODES`, or `out` not a writeable 2-D aligned C-contiguous array of a
        :data:`SAMPLE_DTYPES` dtype whose shape is `src`'s without `axis`, disjoint from `src`.
    """
    kernel = "project_axis"
    src = check_array(src, "src", kernel, ndim=3, dtypes=SAMPLE_DTYPES)
    ax = check_integer(axis, "axis", kernel)
    if ax not in (0, 1, 2):
        raise ParameterError(f"{kernel}: axis must be 0, 1 or 2, got {ax}")
    if src.shape[ax] == 0:
        raise ParameterError(f"{kernel}: src has no voxels along axis {ax} (shape {src.shape})")
    mode_ = _check_mode(mode, kernel)
    out = check_array(out, "out", kernel, ndim=2, dtypes=SAMPLE_DTYPES, writeable=True)
    expected = tuple(n for a, n in enumerate(src.shape) if a != ax)
    if out.shape != expected:
        raise ParameterError(f"{kernel}: out must have shape {expected}, got {out.shape}")
    check_disjoint(out, {"src": src}, kernel)
    return ProjectPlan(src, ax, mode_, out, parallel_threads(src.nbytes + out.nbytes))


def check_sample_points(src: Any, coords: Any, out: Any, order: Any, cval: Any) -> PointsPlan:
    """Validate the arguments of ``sample_points``.

    Raises
    ------
    ParameterError
        If `src` is not a non-empty 3-D aligned C-contiguous array of a :data:`SAMPLE_DTYPES`
        dtype, `coords` not an aligned C-contiguous float64 array of shape ``(..., 3)``, `out`
        not a writeable aligned C-contiguous array of a :data:`SAMPLE_DTYPES` dtype and shape
        ``coords.shape[:-1]`` disjoint from the inputs, `order` not 0, 1 or 3, or `cval` not a
        finite real number.
    """
    kernel = "sample_points"
    src = _check_src(src, kernel)
    if not isinstance(coords, np.ndarray) or coords.ndim < 1 or coords.shape[-1] != 3:
        shape = getattr(coords, "shape", type(coords).__name__)
        raise ParameterError(f"{kernel}: coords must be an array of shape (..., 3), got {shape}")
    coords = check_array(coords, "coords", kernel, ndim=coords.ndim, dtypes=_FLOAT64)
    if not isinstance(out, np.ndarray) or out.shape != coords.shape[:-1]:
        shape = getattr(out, "shape", type(out).__name__)
        raise ParameterError(
            f"{kernel}: out must be an array of shape {coords.shape[:-1]}, got {shape}"
        )
    out = check_array(out, "out", kernel, ndim=out.ndim, dtypes=SAMPLE_DTYPES, writeable=True)
    check_disjoint(out, {"src": src, "coords": coords}, kernel)
    order_ = _check_order(order, kernel)
    cval_ = _check_cval(cval, kernel)
    threads = parallel_threads(_sample_work(out.size, order_))
    return PointsPlan(src, coords.reshape(-1, 3), out.reshape(-1), order_, cval_, threads)


def _reduce(mode: int, acc: np.ndarray, v: np.ndarray, where: np.ndarray | bool) -> np.ndarray:
    """One step of the module docstring's reduction, applied `where` true."""
    if mode == MODE_MAX:
        take = (v > acc) | np.isnan(v)
    elif mode == MODE_MIN:
        take = (v < acc) | np.isnan(v)
    else:
        return np.where(where, acc + v, acc)
    return np.where(where & take, v, acc)


def _identity(mode: int, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    if mode in (MODE_SUM, MODE_MEAN):
        return np.full(shape, -0.0, dtype)
    if np.dtype(dtype).kind == "f":
        return np.full(shape, -np.inf if mode == MODE_MAX else np.inf, dtype)
    info = np.iinfo(dtype)
    return np.full(shape, info.min if mode == MODE_MAX else info.max, dtype)


def sample_slab(
    src: np.ndarray,
    matrix: np.ndarray,
    out: np.ndarray,
    order: int,
    cval: float,
    samples: int,
    mode: str,
) -> None:
    """Render a slab: reduce `samples` samples of `src` per pixel of `out` (module docstring).

    Parameters
    ----------
    src : ndarray, 3-D (z, y, x), C-contiguous, one of :data:`SAMPLE_DTYPES`
        The volume (B-spline coefficients for order 3).
    matrix : (3, 4) float64
        ``(s, j, i, 1)`` (sample, output row, output column) to continuous input index,
        rows in (z, y, x) order; column 0 is the step between samples (the slab normal).
    out : ndarray, 2-D (rows, columns), C-contiguous, one of :data:`SAMPLE_DTYPES`
        Receives the rendered slab.
    order : 0, 1 or 3
        Nearest, linear or cubic B-spline.
    cval : float
        The value of pixels none of whose samples is inside the volume.
    samples : int
        Samples per pixel, 1 .. :data:`MAX_SAMPLES` (1: a thin plane, MPR).
    mode : {"max", "min", "sum", "mean"}
        The reduction (MIP, MinIP, ray sum, average).

    Raises
    ------
    ParameterError
        See :func:`check_sample_slab`.
    """
    plan = check_sample_slab(src, matrix, out, order, cval, samples, mode)
    if plan.out.size == 0:
        return
    m, s = plan.matrix, plan.src
    rows, cols = plan.out.shape
    j = np.arange(rows, dtype=np.float64)[:, None]
    i = np.arange(cols, dtype=np.float64)[None, :]
    full = np.zeros(plan.out.shape)
    acc = _identity(plan.mode, plan.out.shape)
    count = np.zeros(plan.out.shape, np.int64)
    for k in range(plan.samples):
        # A position that overflows is +-inf or NaN: outside, as the native loops find it.
        with np.errstate(over="ignore", invalid="ignore"):
            p = [
                ((m[a, 0] * float(k) + m[a, 1] * j) + m[a, 3]) + m[a, 2] * i + full
                for a in range(3)
            ]
        inside = inside_mask(s.shape, p)
        v = np.zeros(plan.out.shape)
        v[inside] = interpolate(s, [pa[inside] for pa in p], plan.order)
        acc = _reduce(plan.mode, acc, v, inside)
        count += inside
    if plan.mode == MODE_MEAN:
        acc = acc / np.maximum(count, 1)
    store(np.where(count > 0, acc, plan.cval), plan.out)


def project_axis(src: np.ndarray, axis: int, mode: str, out: np.ndarray) -> None:
    """Project `src` along `axis`: max, min, sum or mean of every voxel (module docstring).

    Parameters
    ----------
    src : ndarray, 3-D (z, y, x), C-contiguous, one of :data:`SAMPLE_DTYPES`
    axis : 0, 1 or 2
        The array axis projected away.
    mode : {"max", "min", "sum", "mean"}
        ``max``/``min`` are exact in `src`'s dtype; ``sum``/``mean`` accumulate in float64
        in index order.
    out : ndarray, 2-D, `src`'s shape without `axis`, one of :data:`SAMPLE_DTYPES`

    Raises
    ------
    ParameterError
        See :func:`check_project_axis`.
    """
    plan = check_project_axis(src, axis, mode, out)
    if plan.out.size == 0:
        return
    s = np.moveaxis(plan.src, plan.axis, 0)
    if plan.mode in (MODE_MAX, MODE_MIN):
        acc = _identity(plan.mode, plan.out.shape, s.dtype)
    else:
        acc = _identity(plan.mode, plan.out.shape)
    for k in range(s.shape[0]):
        v = s[k] if plan.mode in (MODE_MAX, MODE_MIN) else s[k].astype(np.float64)
        acc = _reduce(plan.mode, acc, v, True)
    values = acc.astype(np.float64)
    if plan.mode == MODE_MEAN:
        values = values / s.shape[0]
    store(values, plan.out)


def sample_points(
    src: np.ndarray, coords: np.ndarray, out: np.ndarray, order: int, cval: float
) -> None:
    """Sample `src` at the continuous indices `coords` (``map_coordinates``; curved MPR).

    Parameters
    ----------
    src : ndarray, 3-D (z, y, x), C-contiguous, one of :data:`SAMPLE_DTYPES`
        The volume (B-spline coefficients for order 3).
    coords : ndarray, float64, shape ``(..., 3)``, C-contiguous
        Continuous input indices, (z, y, x) last. Points outside (non-finite included)
        get `cval`.
    out : ndarray, shape ``coords.shape[:-1]``, C-contiguous, one of :data:`SAMPLE_DTYPES`
    order : 0, 1 or 3
    cval : float

    Raises
    ------
    ParameterError
        See :func:`check_sample_points`.
    """
    plan = check_sample_points(src, coords, out, order, cval)
    if plan.out.size == 0:
        return
    p = [plan.coords[:, a] for a in range(3)]
    inside = inside_mask(plan.src.shape, p)
    values = np.full(plan.out.shape, plan.cval)
    values[inside] = interpolate(plan.src, [pa[inside] for pa in p], plan.order)
    store(values, plan.out)
