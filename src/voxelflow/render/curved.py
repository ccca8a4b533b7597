"""Curved planar reformation (CPR): the image of a volume along a curve, such as a vessel's
centerline, so that the whole vessel shows in one picture.

Kanitsar, Fleischmann, Wegenkittl, Felkel, Gröller, "CPR - Curved Planar Reformation",
IEEE Visualization 2002, describe the methods; voxelflow implements two of them. Both lay the
image out the same way: **rows run along the centerline** (row 0 at its first point, the vessel
runs top to bottom) and **columns run across it** along a lateral unit vector, column
``(columns - 1) / 2`` on the centerline; pixels are `spacing` mm apart both ways.

- ``"straightened"``: row ``k`` is the centerline point at arc length ``k * spacing`` (the
  polyline resampled, ``floor(length / spacing) + 1`` rows), and its pixels lie on the line
  through that point along the row's lateral vector ``r_k``:
  ``c_k + (column - (columns - 1) / 2) * spacing * r_k``. The lateral vectors form a rotation
  minimising frame along the centerline (the double reflection method of Wang, Jüttler, Zheng
  and Liu, "Computation of rotation minimizing frames", ACM TOG 27(1), 2008), started from
  `up` made perpendicular to the first tangent: continuous, with no twist about the tangent,
  and no flip where the tangent passes `up` (which a fixed reference projected off each
  tangent would do). Tangents are the central differences of the polyline one `spacing` on
  either side, so a polyline's corners turn the frame over two rows instead of at once. The
  vessel is straight in the image and lengths along it are true.
- ``"stretched"``: one lateral vector ``v`` for every row, `up` made perpendicular to the
  centerline's overall direction (last point minus first). The surface the centerline sweeps
  along ``v`` is unrolled onto the image without distortion (Kanitsar's stretched CPR): rows are
  ``spacing`` mm apart in the arc length of the centerline's component perpendicular to ``v``,
  and a centerline point's column follows its offset along ``v``, so the vessel keeps its
  shape across the image and distances in the image are distances in the patient. The columns
  cover the centerline's excursion along ``v`` plus ``width_mm / 2`` on either side.

`width_mm` gives ``2 * floor(width_mm / (2 * spacing)) + 1`` columns (straightened; an odd
number, the centerline on the middle one). A thick slab (`slab`) samples each pixel along the
row's normal ``lateral x tangent`` (for a straight centerline, the normal of the equivalent
:class:`voxelflow.Plane` with ``row = lateral``, ``col = tangent``), at the offsets of
:mod:`.slab`, and reduces the samples inside the volume only (inside: ``-0.5 <= p <= n - 0.5``
in index space on every axis, the kernels' rule), as :func:`voxelflow.mpr` does. The Modality
LUT and display pipeline follow exactly as in :func:`voxelflow.mpr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import kernels
from ..errors import RenderError
from ..volume import Volume
from .chunks import Region
from .limits import RenderLimits, check_image, resolve
from .mpr import (
    _CUBIC_MARGIN,
    _SUPPORT,
    _SWAP,
    EMPTY,
    _check_volume,
    _kernel_source,
    _order,
    finish,
    rescale_for,
)
from .project import _positive, _unit
from .slab import Slab

__all__ = ["CURVED_MODES", "curved_mpr"]

#: the layouts of :func:`curved_mpr`.
CURVED_MODES = ("straightened", "stretched")
_LEFT = np.array([1.0, 0.0, 0.0])
_SUPERIOR = np.array([0.0, 0.0, 1.0])


def _centerline(points: Any, what: str) -> np.ndarray:
    try:
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise RenderError(f"{what}: centerline_mm must be N x 3 finite LPS points (mm)") from None
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 2:
        raise RenderError(
            f"{what}: centerline_mm must be N >= 2 LPS points, shape (N, 3), got shape {p.shape}"
        )
    if not np.all(np.isfinite(p)):
        raise RenderError(f"{what}: centerline_mm must hold finite numbers")
    keep = np.ones(len(p), bool)
    keep[1:] = np.any(np.diff(p, axis=0) != 0.0, axis=1)  # repeated points add no length
    p = p[keep]
    if len(p) < 2:
        raise RenderError(f"{what}: centerline_mm points are all the same; a curve needs length")
    with np.errstate(over="ignore", invalid="ignore"):
        length = float(np.sum(np.linalg.norm(np.diff(p, axis=0), axis=1)))
    if not math.isfinite(length):
        raise RenderError(f"{what}: centerline_mm is too long to measure (its points are too far apart)")
    return p


def _default_up(direction: np.ndarray) -> np.ndarray:
    """The patient's left, or superior when the centerline runs within 25 degrees of
    left-right: for a head-to-foot centerline the image then looks like a coronal one."""
    return _SUPERIOR if abs(direction @ _LEFT) > 0.9 else _LEFT


def _lateral(up: np.ndarray, tangent: np.ndarray, what: str) -> np.ndarray:
    r = up - (up @ tangent) * tangent
    norm = np.linalg.norm(r)
    if norm < 1e-6:
        raise RenderError(f"{what}: up {list(up)} is parallel to the centerline ({list(tangent)})")
    return r / norm


def _at(points: np.ndarray, arc: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points of the polyline at arc lengths `s` (clamped to its ends)."""
    return np.stack([np.interp(s, arc, points[:, a]) for a in range(3)], axis=-1)


def _tangents(points: np.ndarray, arc: np.ndarray, s: np.ndarray, h: float) -> np.ndarray:
    chord = _at(points, arc, np.minimum(s + h, arc[-1])) - _at(points, arc, np.maximum(s - h, 0.0))
    norm = np.linalg.norm(chord, axis=1)
    # a polyline that doubles back on itself: the segment's own direction
    segment = np.clip(np.searchsorted(arc, s, side="right") - 1, 0, len(points) - 2)
    own = points[segment + 1] - points[segment]
    chord = np.where((norm > 1e-9 * h)[:, None], chord, own)
    return chord / np.linalg.norm(chord, axis=1)[:, None]


def _rotation_minimising(x: np.ndarray, t: np.ndarray, r0: np.ndarray) -> np.ndarray:
    """Lateral vectors along points `x` with unit tangents `t`, from `r0` (Wang et al. 2008)."""
    r = np.empty_like(x)
    r[0] = r0
    for i in range(len(x) - 1):
        v1 = x[i + 1] - x[i]
        c1 = v1 @ v1
        ri, ti = r[i], t[i]
        if c1 > 0.0:
            ri = ri - (2.0 / c1) * (v1 @ ri) * v1
            ti = ti - (2.0 / c1) * (v1 @ ti) * v1
        v2 = t[i + 1] - ti
        c2 = v2 @ v2
        if c2 > 0.0:
            ri = ri - (2.0 / c2) * (v2 @ ri) * v2
        # re-orthonormalise against float drift over long centerlines
        ri = ri - (ri @ t[i + 1]) * t[i + 1]
        r[i + 1] = ri / np.linalg.norm(ri)
    return r


def _straightened(
    points: np.ndarray,
    spacing: float,
    width: int,
    up: np.ndarray | None,
    limits: RenderLimits,
    what: str,
) -> tuple[tuple[int, int], Any]:
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    rows = math.floor(arc[-1] / spacing + 1e-9) + 1
    check_image((rows, width), limits, what)

    def frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.arange(rows, dtype=np.float64) * spacing
        centre = _at(points, arc, s)
        tangent = _tangents(points, arc, s, spacing)
        reference = _default_up(tangent[0]) if up is None else up
        lateral = _rotation_minimising(centre, tangent, _lateral(reference, tangent[0], what))
        return centre, lateral, np.cross(lateral, tangent)

    return (rows, width), frame


def _stretched(
    points: np.ndarray,
    spacing: float,
    width_mm: float,
    up: np.ndarray | None,
    limits: RenderLimits,
    what: str,
) -> tuple[tuple[int, int], Any]:
    overall = points[-1] - points[0]
    if np.linalg.norm(overall) < 1e-9 * max(1.0, float(np.abs(points).max())):
        # a closed curve: its principal direction
        overall = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)[2][0]
    overall = overall / np.linalg.norm(overall)
    v = _lateral(_default_up(overall) if up is None else up, overall, what)
    offset = (points - points[0]) @ v
    flat = points - offset[:, None] * v  # the centerline with its lateral component removed
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(flat, axis=0), axis=1))])
    if arc[-1] <= 0.0:
        raise RenderError(
            f"{what}: the centerline runs along up {list(v)}; the stretched CPR has no rows"
        )
    rows = math.floor(arc[-1] / spacing + 1e-9) + 1
    centre_offset = (offset.min() + offset.max()) / 2.0
    span = float(offset.max() - offset.min()) + width_mm
    width = 2 * math.floor(span / (2.0 * spacing) + 1e-9) + 1
    check_image((rows, width), limits, what)

    def frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.arange(rows, dtype=np.float64) * spacing
        # arc of the flattened curve only grows; repeated values (runs along v) pick one end
        keep = np.concatenate([[True], np.diff(arc) > 0.0])
        base = _at(flat[keep], arc[keep], s) + centre_offset * v
        tangent = _tangents(flat[keep], arc[keep], s, spacing)
        lateral = np.broadcast_to(v, base.shape)
        return base, lateral, np.cross(lateral, tangent)

    return (rows, width), frame


def curved_mpr(
    volume: Volume,
    centerline_mm: Any,
    *,
    width_mm: float,
    spacing: float | None = None,
    mode: str = "straightened",
    up: Sequence[float] | None = None,
    slab: Slab | float | None = None,
    interp: str = "linear",
    display: Any = None,
    out: np.ndarray | None = None,
    cval: float | None = None,
    backend: str | None = None,
    limits: RenderLimits | None = None,
) -> np.ndarray:
    """The curved planar reformation of `volume` along `centerline_mm` (module docstring).

    Parameters
    ----------
    volume : Volume
        3-D, in memory, dask or stored (only the bounding box of the samples is read).
    centerline_mm : (N, 3) array-like
        N >= 2 LPS points in mm, in order along the curve (a polyline; repeated consecutive
        points are dropped).
    width_mm : float
        Width of the image across the centerline, mm.
    spacing : float, optional
        Pixel spacing in mm, along and across (default: the volume's smallest voxel spacing).
    mode : {"straightened", "stretched"}
        The CPR method.
    up : 3 floats, optional
        The reference lateral direction (Kanitsar's "vector of interest"): the image's columns
        run along `up` made perpendicular to the centerline (to the first tangent, then carried
        along without twist, for straightened; to the overall direction for stretched).
        Default: the patient's left, or superior for a centerline running left-right.
    slab : Slab or float, optional
        A thick slab about the curved surface (a number: a MIP that many mm thick, sampled at
        the volume's smallest spacing).
    interp, display, out, cval, backend, limits
        As in :func:`voxelflow.mpr`.

    Returns
    -------
    numpy.ndarray
        (rows along the centerline, columns across): float32 modality values, or display values.

    Raises
    ------
    RenderError
        For fewer than 2 finite distinct points, a width or spacing that is not positive, an
        unknown mode or interpolation, `up` parallel to the centerline, a bad slab, or an image
        or slab past `limits`, before the image is allocated.
    """
    what = "curved_mpr"
    volume = _check_volume(volume, what)
    limits = resolve(limits)
    points = _centerline(centerline_mm, what)
    width_mm = _positive(width_mm, "width_mm", what)
    step = float(min(volume.spacing)) if spacing is None else _positive(spacing, "spacing", what)
    if mode not in CURVED_MODES:
        raise RenderError(f"{what}: mode must be one of {', '.join(CURVED_MODES)}, got {mode!r}")
    reference = None if up is None else _unit(up, "up", what)
    order = _order(interp, what)
    if slab is not None and not isinstance(slab, Slab):
        slab = Slab(slab)  # type: ignore[arg-type]
    if mode == "straightened":
        width = 2 * math.floor(width_mm / (2.0 * step) + 1e-9) + 1
        size, frame = _straightened(points, step, width, reference, limits, what)
    else:
        size, frame = _stretched(points, step, width_mm, reference, limits, what)
    if slab is None:
        samples, slab_step, reduce = 1, 0.0, "max"
    else:
        samples, slab_step = slab.plan(float(min(volume.spacing)), limits)
        reduce = slab.mode
    centre, lateral, normal = frame()
    stored = _sample_surface(
        volume,
        centre,
        lateral,
        normal,
        size,
        step,
        Slab.offsets(samples, slab_step),
        reduce,
        order,
        display,
        backend,
    )
    return finish(volume, stored, display, out=out, cval=cval, backend=backend, what=what)


def _sample_surface(
    volume: Volume,
    centre: np.ndarray,
    lateral: np.ndarray,
    normal: np.ndarray,
    size: tuple[int, int],
    spacing: float,
    offsets: np.ndarray,
    mode: str,
    order: int,
    display: Any,
    backend: str | None,
) -> np.ndarray:
    """Stored values reduced over the slab offsets, float64 (rows, columns), ``EMPTY`` where no
    sample is inside; a ray sum carries its intercepts (see the end)."""
    rows, cols = size
    inverse = np.linalg.inv(volume.affine)
    to_index, shift = inverse[:3, :3], inverse[:3, 3]
    across = (np.arange(cols, dtype=np.float64) - (cols - 1) / 2.0) * spacing
    base = (centre @ to_index.T + shift)[:, None, :] + across[None, :, None] * (
        lateral @ to_index.T
    )[:, None, :]
    step_index = normal @ to_index.T  # index change per mm along each row's normal
    shape = np.array(volume.shape[-3:])
    src, start = _region(volume, base, step_index, offsets, order)
    sample = kernels.get("sample_points", backend)
    values = np.full((rows, cols), EMPTY, np.float64)
    if src is None:
        return values
    slope, intercept = rescale_for(volume, display)
    kernel_mode = _SWAP[mode] if slope < 0 else mode
    if len(offsets) == 1 and offsets[0] == 0.0:
        coords = np.ascontiguousarray(base - start)
        sample(src, coords, values, order, EMPTY)
        return values
    acc = np.full(
        (rows, cols),
        -0.0 if kernel_mode in ("sum", "mean") else (-np.inf if kernel_mode == "max" else np.inf),
    )
    count = np.zeros((rows, cols), np.int64)
    v = np.empty((rows, cols), np.float64)
    for o in offsets:
        coords = base + (o * step_index)[:, None, :]
        inside = np.all((coords >= -0.5) & (coords <= shape - 0.5), axis=-1)
        coords -= start
        sample(src, np.ascontiguousarray(coords), v, order, 0.0)
        # the kernels' reduction rules (voxelflow.kernels.reference.render)
        if kernel_mode == "max":
            acc = np.where(inside & ((v > acc) | np.isnan(v)), v, acc)
        elif kernel_mode == "min":
            acc = np.where(inside & ((v < acc) | np.isnan(v)), v, acc)
        else:
            acc = np.where(inside, acc + v, acc)
        count += inside
    if kernel_mode == "mean":
        acc = acc / np.maximum(count, 1)
    elif kernel_mode == "sum" and intercept != 0.0 and slope != 0.0:
        # the Modality LUT adds one intercept per inside sample, the pass below adds one
        acc = acc + (count - 1) * (intercept / slope)
    values[:] = np.where(count > 0, acc, EMPTY)
    return values


def _region(
    volume: Volume, base: np.ndarray, step_index: np.ndarray, offsets: np.ndarray, order: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """(kernel source over the bounding box of every sample, grown by the interpolation's
    support, or None if it misses the volume; the box's first voxel index)."""
    support = _SUPPORT[order] + (_CUBIC_MARGIN if order == 3 else 0)
    ends = [base + (o * step_index)[:, None, :] for o in (offsets.min(), offsets.max())]
    lo = np.minimum(ends[0].min(axis=(0, 1)), ends[1].min(axis=(0, 1)))
    hi = np.maximum(ends[0].max(axis=(0, 1)), ends[1].max(axis=(0, 1)))
    shape = np.array(volume.shape[-3:], dtype=np.int64)
    start = np.maximum(np.floor(lo - support).astype(np.int64), 0)
    stop = np.minimum(np.ceil(hi + support).astype(np.int64) + 1, shape)
    if np.any(start >= stop):
        return None, start.astype(np.float64)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    data = volume.array[box]
    if hasattr(data, "compute"):
        data = data.compute()
    region = Region(np.asarray(data), tuple(int(a) for a in start), 0)  # type: ignore[arg-type]
    return _kernel_source(region, order), start.astype(np.float64)
