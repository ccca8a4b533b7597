"""Whole-volume projections (MIP, MinIP, average, ray sum) seen from any direction, and the
rotating projection (a turntable of views about one axis) written as an animation.

A projection is a thick slab that holds the whole volume: the image plane passes through the
volume's centre perpendicular to the viewing direction, its pixels cover the volume's outline
seen from there, and each pixel reduces the samples of the ray through it (inside samples only,
as for every slab: :mod:`.slab`).

Geometry, exactly (so that the projections of an axis-aligned volume land on voxel centres):
the volume is taken as the box of its voxels, ``[-0.5, n - 0.5]`` in index space on every axis
(the box the kernels call inside). Its extent along a unit vector ``u`` is the spread of the
box's 8 corners projected on ``u``. With pixel spacing ``d`` (rows, columns) the image has
``ceil(extent / d)`` pixels per side (the midpoint rule of :mod:`.slab`: pixel centres are
``d`` apart, the outermost half a pixel in from the outline). The rays are sampled ``step`` mm
apart (default :func:`voxel_step`: one sample per voxel crossed), ``ceil(extent / step)``
samples centred on the volume's centre, plus one when that count's parity differs from the
volume's voxel count along the array axis nearest the ray. For a direction along a volume axis
at the volume's own spacing, pixels and samples are then exactly the voxel centres, and the
projection is computed by the ``project_axis`` kernel (a streaming reduction, no
interpolation) with a result identical to the sampled one.

Orientation: the rays travel along ``direction`` (from the viewer into the patient), which is
the image plane's normal (``row x col`` of :class:`voxelflow.Plane`); the image is the view a
person at the ray's origin sees, with the patient's superior at the top where possible
(:func:`viewer_up`). ``direction=(0, 1, 0)`` (rays travel posterior) is the
anterior view: the coronal image seen from the front, the patient's left on the image's right.
The reductions are symmetric, so a ray traversed the other way gives the same pixel value (up to
the float rounding of a sum's order); the direction fixes what the image shows, not the values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import kernels
from ..errors import RenderError
from ..geometry import Plane, rotation_matrix
from ..progress import Progress
from ..volume import Volume
from .limits import RenderLimits, check_count, check_image, resolve
from .mpr import (
    _SWAP,
    EMPTY,
    _check_volume,
    _order,
    _pipeline,
    choose_level,
    finish,
    render_grid,
    rescale_for,
    slab_grid,
)
from .slab import parse_mode

__all__ = ["project", "rotating_projection", "view_direction", "voxel_step"]

_SUPERIOR = np.array([0.0, 0.0, 1.0])
_POSTERIOR = np.array([0.0, 1.0, 0.0])
# The fast path takes a sampling grid whose index-space steps are within this of 0 or +-1 and
# whose offsets are within this of whole voxels as landing exactly on voxel centres.
_AXIS_TOLERANCE = 1e-9


def _unit(value: Any, name: str, what: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RenderError(
            f"{what}: {name} must be 3 finite numbers (an LPS vector), got {value!r}"
        ) from None
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise RenderError(f"{what}: {name} must be 3 finite numbers (an LPS vector), got {value!r}")
    length = float(np.linalg.norm(v))
    if length == 0.0:
        raise RenderError(f"{what}: {name} must not be the zero vector")
    return v / length


def _angle(value: Any, name: str, what: str) -> float:
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise RenderError(
            f"{what}: {name} must be a finite number of degrees, got {value!r}"
        ) from None
    if not math.isfinite(a):
        raise RenderError(f"{what}: {name} must be a finite number of degrees, got {value!r}")
    return a


def view_direction(azimuth: float = 0.0, elevation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(ray direction, image up) of the view at `azimuth` and `elevation` degrees, unit LPS.

    Azimuth 0, elevation 0 is the anterior view: the viewer stands in front of the patient and
    the rays travel posterior ``(0, 1, 0)``, superior up. The azimuth turns the viewer about the
    patient's superior axis by the right-hand rule (seen from the head, counter-clockwise): 90
    is the view from the patient's left (rays travel to the right, the image of
    :meth:`voxelflow.Plane.sagittal`), 180 from behind, 270 from the right. The elevation
    raises the viewer towards superior: at 90 the viewer looks down from above the head (rays
    travel inferior) and the image's up is the horizontal direction the rays had at elevation 0,
    so the camera moves continuously over the top.
    """
    az = math.radians(_angle(azimuth, "azimuth", "view_direction"))
    el = math.radians(_angle(elevation, "elevation", "view_direction"))
    horizontal = rotation_matrix(_SUPERIOR, math.degrees(az)) @ _POSTERIOR
    direction = math.cos(el) * horizontal - math.sin(el) * _SUPERIOR
    up = math.sin(el) * horizontal + math.cos(el) * _SUPERIOR
    return direction / np.linalg.norm(direction), up / np.linalg.norm(up)


def _corners(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(centre, corners - centre): the LPS centre of the voxel box and its 8 corners (mm)."""
    shape = np.array(volume.shape[-3:], dtype=np.float64)
    box = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64)
    index = box * shape - 0.5
    affine = volume.affine
    centre = affine[:3, :3] @ ((shape - 1.0) / 2.0) + affine[:3, 3]
    points = index @ affine[:3, :3].T + affine[:3, 3]
    return centre, points - centre


def voxel_step(volume: Volume, direction: Sequence[float]) -> float:
    """The default sampling distance along a ray (mm): the length of the ray that advances one
    voxel along the array axis it crosses fastest. Along an array axis that is the axis's
    spacing (every voxel centre is a sample); obliquely it is shorter than the voxel diagonal
    and no sample skips a voxel on any axis."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    per_mm = np.abs(np.linalg.solve(np.asarray(volume.affine)[:3, :3], d))
    return float(1.0 / per_mm.max())


def _parity(count: int, volume: Volume, direction: np.ndarray) -> int:
    """`count`, or one more so that it has the parity of the volume's voxel count along the
    array axis nearest `direction`: points centred on the volume's centre, one voxel spacing
    apart along that axis, then fall on its voxel centres."""
    steps = np.asarray(volume.affine)[:3, :3]
    axis = int(np.argmax(np.abs(direction @ steps) / np.linalg.norm(steps, axis=0)))
    return count + (count - int(volume.shape[-3:][axis])) % 2


def _ray(
    volume: Volume,
    direction: np.ndarray,
    thickness: float,
    step: float | None,
    limits: RenderLimits,
    what: str,
) -> tuple[int, float]:
    """(samples, step in mm) of the rays along `direction` across `thickness` mm, centred on the
    volume: `step` (default :func:`voxel_step`) apart, ``ceil(thickness / step)`` of them, plus
    one where :func:`_parity` asks, checked against ``limits.max_samples``."""
    d = voxel_step(volume, direction) if step is None else step
    wanted = _parity(_pixels(thickness, d), volume, direction)
    return check_count(wanted, "samples (ray length / step)", limits.max_samples, what), d


def _positive(value: Any, name: str, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RenderError(
            f"{what}: {name} must be a positive number of mm, got {value!r}"
        ) from None
    if not math.isfinite(v) or v <= 0:
        raise RenderError(f"{what}: {name} must be a positive number of mm, got {value!r}")
    return v


def _pixels(extent: float, spacing: float) -> int:
    # the 1e-9 keeps 64 voxels of 0.5 mm at 64 pixels of 0.5 mm despite float noise
    return max(1, math.ceil(extent / spacing - 1e-9))


def _spacing_pair(spacing: Any, default: float, what: str) -> tuple[float, float]:
    if spacing is None:
        return default, default
    arr = (
        np.asarray(spacing, dtype=np.float64)
        if not isinstance(spacing, str)
        else np.array([np.nan])
    )
    if arr.ndim == 0:
        arr = np.full(2, float(arr))
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise RenderError(
            f"{what}: spacing must be a positive number of mm or 2 of them (rows, columns), "
            f"got {spacing!r}"
        )
    return float(arr[0]), float(arr[1])


def viewer_up(direction: np.ndarray) -> np.ndarray:
    """The image's up for rays along `direction`: superior, or anterior within 25 degrees of
    vertical. Not Plane.oblique's default, which turns a plane to its standard view's side: a
    projection is what a viewer at the ray's origin sees, so the posterior view must stay the
    mirror of the anterior one."""
    return np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([0.0, -1.0, 0.0])


def _size_pair(size: Any, what: str) -> tuple[int, int]:
    arr = np.asarray(size, dtype=np.float64) if not isinstance(size, str) else np.array([np.nan])
    if arr.ndim == 0:
        arr = np.full(2, float(arr))
    if (
        arr.shape != (2,)
        or not np.all(np.isfinite(arr))
        or np.any(arr < 1)
        or np.any(arr != np.round(arr))
    ):
        raise RenderError(
            f"{what}: size must be a positive whole number of pixels or 2 of them "
            f"(rows, columns), got {size!r}"
        )
    return int(arr[0]), int(arr[1])


def _plane(
    volume: Volume,
    direction: np.ndarray,
    up: np.ndarray | None,
    spacing: tuple[float, float],
    size: tuple[int, int] | None,
    offsets: np.ndarray,
) -> Plane:
    centre, _ = _corners(volume)
    plane = Plane.oblique(centre, direction, up=up, spacing=spacing, size=(1, 1))
    if size is None:
        rows = _pixels(float(np.ptp(offsets @ plane.col)), spacing[0])
        cols = _pixels(float(np.ptp(offsets @ plane.row)), spacing[1])
        size = (rows, cols)
    return plane.replace(size=size)


def project(
    volume: Volume,
    *,
    direction: Sequence[float] | None = None,
    azimuth: float | None = None,
    elevation: float | None = None,
    mode: str = "max",
    size: Any = None,
    spacing: Any = None,
    step: float | None = None,
    interp: str = "linear",
    display: Any = None,
    out: np.ndarray | None = None,
    cval: float | None = None,
    level: int | str = "auto",
    backend: str | None = None,
    limits: RenderLimits | None = None,
) -> np.ndarray:
    """The projection of the whole `volume` seen along `direction` (a MIP by default).

    Parameters
    ----------
    volume : Volume
        3-D, in memory, dask or stored.
    direction : 3 floats, optional
        LPS vector the rays travel along (from the viewer into the patient; normalised), e.g.
        ``(0, 1, 0)`` for the anterior view. Superior is up in the image, or anterior when the
        direction is within 25 degrees of superior/inferior (:func:`viewer_up`).
    azimuth, elevation : float, optional
        The view in degrees instead of `direction` (see :func:`view_direction`: azimuth about
        the superior axis from the anterior view, elevation towards superior); either may be
        left out (0). With neither nor `direction`, the anterior view.
    mode : {"max", "min", "mean", "sum"} (or "mip", "minip", "average")
        The ray reduction: MIP, MinIP, average intensity, ray sum (DRR-like).
    size : int or (rows, columns), optional
        Output pixels, centred on the volume's centre. Default: the volume's outline seen
        along the direction (module docstring).
    spacing : float or (rows, columns), optional
        Pixel spacing in mm (default: the volume's smallest voxel spacing).
    step : float, optional
        Largest distance between samples along a ray, mm (default :func:`voxel_step`: one
        sample per voxel crossed, so an axis-aligned ray samples every voxel centre).
    interp, display, out, cval, level, backend, limits
        As in :func:`voxelflow.mpr`.

    Returns
    -------
    numpy.ndarray
        (rows, columns) float32 modality values, or display values with `display`.

    Raises
    ------
    RenderError
        For a zero or non-finite direction, both `direction` and angles, a bad mode, size,
        spacing, interpolation or display, or a request past `limits` (before allocating).
    """
    what = "project"
    volume = _check_volume(volume, what)
    limits = resolve(limits)
    if direction is not None:
        if azimuth is not None or elevation is not None:
            raise RenderError(f"{what}: give direction or azimuth/elevation, not both")
        d = _unit(direction, "direction", what)
        up = viewer_up(d)
    else:
        d, up = view_direction(
            0.0 if azimuth is None else azimuth, 0.0 if elevation is None else elevation
        )
    mode = parse_mode(mode, what)
    _order(interp, what)
    pix = _spacing_pair(spacing, float(min(volume.spacing)), what)
    fixed = None if size is None else _size_pair(size, what)
    _, offsets = _corners(volume)
    plane = _plane(volume, d, up, pix, fixed, offsets)
    check_image(plane.size, limits, what)
    thickness = float(np.ptp(offsets @ plane.normal))
    ray_step = None if step is None else _positive(step, "step", what)
    _ray(volume, plane.normal, thickness, ray_step, limits, what)
    source = choose_level(volume, min(plane.spacing), level)
    return _render(
        source,
        plane,
        thickness,
        ray_step,
        mode,
        interp,
        display,
        out,
        cval,
        backend,
        limits,
        what,
    )


def _render(
    source: Volume,
    plane: Plane,
    thickness: float,
    step: float | None,
    mode: str,
    interp: str,
    display: Any,
    out: np.ndarray | None,
    cval: float | None,
    backend: str | None,
    limits: RenderLimits,
    what: str,
) -> np.ndarray:
    """The projection of `source` (a volume at the pyramid level chosen) on `plane`, of rays
    across `thickness` mm centred on it (:func:`_ray`)."""
    samples, step = _ray(source, plane.normal, thickness, step, limits, what)
    grid = slab_grid(plane, samples, step)
    extent = (samples, *plane.size)
    fast = _axis_projection(source, grid, extent, mode, display, backend)
    if fast is not None:
        stored, described, shown = fast
        return finish(described, stored, shown, out=out, cval=cval, backend=backend, what=what)
    return render_grid(
        source,
        grid,
        extent,
        mode=mode,
        interp=interp,
        display=display,
        out=out,
        cval=cval,
        backend=backend,
        what=what,
    )


def _axis_projection(
    volume: Volume,
    grid: np.ndarray,
    extent: tuple[int, int, int],
    mode: str,
    display: Any,
    backend: str | None,
) -> tuple[Volume, np.ndarray, Any] | None:
    """The fast path: when every sample is a voxel centre and every ray runs along one array
    axis through all its voxels, (the volume reduced along that axis by ``project_axis``, as a
    one-slice volume with the identity affine, and the grid that samples it at the pixels'
    voxel centres, and the display to apply); else None.

    Sampling that grid with nearest interpolation and one sample per pixel, through
    :func:`render_grid`, then gives what the slab would: the same voxel values reduced (a
    linear interpolation at a voxel centre is the voxel), the same Modality LUT and display,
    and the same fill for pixels outside the volume.
    """
    matrix = (np.linalg.inv(volume.affine) @ grid)[:3]
    steps = matrix[:, :3]
    axes = []
    for c in range(3):
        a = int(np.argmax(np.abs(steps[:, c])))
        column = np.zeros(3)
        column[a] = np.sign(steps[a, c])
        if abs(abs(steps[a, c]) - 1.0) > _AXIS_TOLERANCE or np.any(
            np.abs(steps[:, c] - column) > _AXIS_TOLERANCE
        ):
            return None
        axes.append(a)
    offset = matrix[:, 3]
    if len(set(axes)) != 3 or np.any(np.abs(offset - np.round(offset)) > _AXIS_TOLERANCE):
        return None
    ray = axes[0]
    n = volume.shape[-3:][ray]
    ends = sorted((round(offset[ray]), round(offset[ray] + steps[ray, 0] * (extent[0] - 1))))
    if ends[0] > 0 or ends[1] < n - 1:
        return None  # a slab through part of the volume: the sampled path
    slope, intercept = rescale_for(volume, display)
    kernel_mode = _SWAP[mode] if slope < 0 else mode
    reduced = _reduce_axis(volume.array, ray, kernel_mode, backend)
    # the pixel (j, i) -> reduced index map: per reduced axis a +-1 step along j or i
    pixel_map = np.array([np.round(matrix[a, 1:]) for a in range(3) if a != ray])
    stored = _place(reduced, pixel_map, extent[1:])
    meta = dict(volume.meta)
    if mode == "sum" and intercept != 0.0:
        # every pixel's ray held n inside samples, so the Modality LUT adds n intercepts
        pipeline = _pipeline(display, volume)
        if pipeline is None:
            meta["rescale"] = {"slope": slope, "intercept": n * intercept}
        else:
            from dataclasses import replace

            from ..display import Rescale

            display = replace(pipeline, modality=Rescale(slope=slope, intercept=n * intercept))
    return stored, Volume(volume.array, volume.affine, meta), display


def _place(reduced: np.ndarray, pixel_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 image of `size` whose pixel (j, i) is ``reduced[r0, r1]`` with
    ``(r0, r1) = pixel_map @ (j, i, 1)``, EMPTY where that index is outside `reduced`.

    `pixel_map` (2 x 3, whole numbers) steps each reduced axis by +-1 along one image axis, so
    the image is a flipped or transposed window of `reduced`: a strided copy, no sampling.
    """
    image = np.full(size, EMPTY, np.float32)
    view = reduced
    if pixel_map[0, 1] != 0:  # reduced axis 0 follows the columns: swap the axes
        view, pixel_map = view.T, pixel_map[::-1]
    windows = []
    for axis in range(2):
        step, offset = int(pixel_map[axis, axis]), int(pixel_map[axis, 2])
        n = view.shape[axis]
        # image positions p with 0 <= step * p + offset < n
        lo = max(0, -offset) if step > 0 else max(0, offset - n + 1)
        hi = min(size[axis], n - offset) if step > 0 else min(size[axis], offset + 1)
        if lo >= hi:
            return image
        first, last = step * lo + offset, step * (hi - 1) + offset
        stop = last + step if last + step >= 0 else None
        windows.append((slice(lo, hi), slice(first, stop, step)))
    image[windows[0][0], windows[1][0]] = view[windows[0][1], windows[1][1]]
    return image


def _reduce_axis(array: Any, axis: int, mode: str, backend: str | None) -> np.ndarray:
    """`array` (numpy, zarr or dask) reduced along `axis` by ``project_axis``; a chunked array
    is read one chunk-thick block along the axis at a time and the blocks' results combined.

    max and min keep the voxels' dtype (exact); sum and mean accumulate in float64.
    """
    kernel = kernels.get("project_axis", backend)
    shape = tuple(int(s) for s in array.shape[-3:])
    plane = tuple(s for a, s in enumerate(shape) if a != axis)
    exact = mode in ("max", "min")
    if isinstance(array, np.ndarray):
        blocks = [(0, shape[axis])]
    else:
        chunks = getattr(array, "chunksize", None) or getattr(array, "chunks", None)
        depth = (
            int(chunks[-3:][axis])
            if chunks is not None and isinstance(chunks[-1], (int, np.integer))
            else shape[axis]
        )
        blocks = [(a, min(a + depth, shape[axis])) for a in range(0, shape[axis], max(1, depth))]
    total: np.ndarray | None = None
    for a, b in blocks:
        index = [slice(None)] * 3
        index[axis] = slice(a, b)
        block = array[tuple(index)]
        if hasattr(block, "compute"):
            block = block.compute()
        data = _kernel_array(np.asarray(block))
        part = np.empty(plane, data.dtype if exact else np.float64)
        kernel(data, axis, mode if exact or mode == "sum" else "sum", part)
        if total is None:
            total = part
        elif mode == "max":
            np.maximum(total, part, out=total)
        elif mode == "min":
            np.minimum(total, part, out=total)
        else:
            total += part
    assert total is not None
    if mode == "mean" and len(blocks) > 0:
        total /= shape[axis]
    return total


def _kernel_array(data: np.ndarray) -> np.ndarray:
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype.itemsize == 8 and data.dtype.kind in "iu":
        data = data.astype(np.float64)
    return np.ascontiguousarray(data)


def rotating_projection(
    volume: Volume,
    n_views: int,
    *,
    axis: str | Sequence[float] = "S",
    mode: str = "max",
    size: Any = None,
    spacing: Any = None,
    interp: str = "linear",
    display: Any = None,
    path: str | None = None,
    fps: float = 10.0,
    level: int | str = "auto",
    backend: str | None = None,
    limits: RenderLimits | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """`n_views` projections of `volume` turning about `axis`: the rotating MIP of a CT
    angiogram or a PET scan.

    View ``k`` is the projection (:func:`project`) along the starting direction rotated by
    ``360 * k / n_views`` degrees about `axis` (right-hand rule), through the volume's centre.
    For the default superior axis the views are :func:`view_direction` at azimuth
    ``360 * k / n_views``: the anterior view first, then from the patient's left at a quarter
    turn. For another axis the first view looks along the posterior direction made
    perpendicular to the axis (along the inferior one if the axis is anterior-posterior).
    The axis points up in every image.

    Every view has the same size and the volume stays in place: the image covers the volume's
    bounding cylinder about the axis (the largest distance of the voxel box's corners from the
    axis through the centre, both ways across; the box's extent along the axis up and down),
    and every ray crosses the whole cylinder.

    Parameters
    ----------
    volume : Volume
    n_views : int
        Number of views, 1 .. ``limits.max_views`` (checked before anything is allocated).
    axis : "S" or 3 floats
        The rotation axis: ``"S"`` (superior), ``"A"``/``"P"``, ``"L"``/``"R"``, ``"I"``, or an
        LPS vector.
    mode, size, spacing, interp, level, backend, limits
        As in :func:`project` (`size` replaces the cylinder's).
    display : DisplayPipeline, dict or True, optional
        As in :func:`voxelflow.mpr`. When writing a file with `display` None, the volume's own
        pipeline is used (``display=True``); files need 8-bit display values.
    path : str or path-like, optional
        Also write the views as an animation: ``.png`` (animated PNG) or ``.gif``
        (:func:`voxelflow.render.save_animation`, atomic), looping forever at `fps` frames per
        second.
    fps : float
        Frame rate of the animation file.
    progress : callable, optional
        ``progress(done, n_views)`` after each view (:mod:`voxelflow.progress`).

    Returns
    -------
    numpy.ndarray
        (n_views, rows, columns): float32 modality values, or display values.

    Raises
    ------
    RenderError
        For a bad `n_views` (or one past ``limits.max_views``), axis, mode, size, spacing,
        display, path or fps, or an image or ray past `limits`, before allocating.
    """
    what = "rotating_projection"
    volume = _check_volume(volume, what)
    limits = resolve(limits)
    n = check_count(n_views, "n_views", limits.max_views, what)
    a = _axis_vector(axis, what)
    mode = parse_mode(mode, what)
    _order(interp, what)
    if path is not None:
        from .images import check_animation_path, frame_duration

        check_animation_path(path, what)
        frame_duration(fps, what)
        if display is None:
            display = True
        shown = _pipeline(display, volume)
        if shown is None or np.dtype(shown.out_dtype) != np.uint8:
            raise RenderError(
                f"{what}: an animation file needs 8-bit display values, got "
                f"{None if shown is None else np.dtype(shown.out_dtype)} "
                "(use a display pipeline with bits=8)"
            )
    pix = _spacing_pair(spacing, float(min(volume.spacing)), what)
    fixed = None if size is None else _size_pair(size, what)
    start = _POSTERIOR - (_POSTERIOR @ a) * a
    if np.linalg.norm(start) < 0.1:
        start = -_SUPERIOR - (-_SUPERIOR @ a) * a
    start /= np.linalg.norm(start)
    _, offsets = _corners(volume)
    along = offsets @ a
    across = np.linalg.norm(offsets - along[:, None] * a, axis=1)
    radius = float(across.max())
    plane = _plane(volume, start, a, pix, fixed, offsets)
    if fixed is None:
        rows = _parity(_pixels(float(np.ptp(along)), pix[0]), volume, plane.col)
        cols = _parity(_pixels(2.0 * radius, pix[1]), volume, plane.row)
        plane = plane.replace(size=(rows, cols))
    check_image(plane.size, limits, what)
    thickness = 2.0 * radius
    views_planes = [plane.rotated(a, 360.0 * k / n) for k in range(n)]
    for view in views_planes:  # every ray against the limits before the first view
        _ray(volume, view.normal, thickness, None, limits, what)
    source = choose_level(volume, min(plane.spacing), level)
    display = _one_window(
        source, display, views_planes[0], thickness, mode, interp, backend, limits
    )
    views: np.ndarray | None = None
    for k, view in enumerate(views_planes):
        target = None if views is None else views[k]
        image = _render(
            source,
            view,
            thickness,
            None,
            mode,
            interp,
            display,
            target,
            None,
            backend,
            limits,
            what,
        )
        if views is None:
            views = np.empty((n, *image.shape), image.dtype)
            views[0] = image
        if progress is not None:
            progress(k + 1, n)
    assert views is not None
    if path is not None:
        from .images import save_animation

        save_animation(views, path, fps=fps)
    return views


def _one_window(
    volume: Volume,
    display: Any,
    first: Plane,
    thickness: float,
    mode: str,
    interp: str,
    backend: str | None,
    limits: RenderLimits,
) -> Any:
    """`display` with an automatic window (AutoWindow) resolved once, on the first view's
    modality values, so that every view shows the same window (no flicker as the volume
    turns); other displays as they are."""
    from dataclasses import replace

    from ..display import Rescale

    pipeline = _pipeline(display, volume)
    if pipeline is None or pipeline.is_resolved or not hasattr(pipeline.modality, "slope"):
        return display  # fixed windows, and a Modality LUT's (resolved per view)
    slope, intercept = rescale_for(volume, pipeline)
    meta = {**volume.meta, "rescale": {"slope": slope, "intercept": intercept}, "values": "stored"}
    probe = Volume(volume.array, volume.affine, meta)
    values = _render(
        probe,
        first,
        thickness,
        None,
        mode,
        interp,
        None,
        None,
        None,
        backend,
        limits,
        "rotating_projection",
    )
    values = values[np.isfinite(values)]
    if values.size == 0:
        return pipeline
    return pipeline.with_voi(replace(pipeline, modality=Rescale()).resolve(values).voi)


_AXES = {
    "S": (0.0, 0.0, 1.0),
    "I": (0.0, 0.0, -1.0),
    "A": (0.0, -1.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
}


def _axis_vector(axis: Any, what: str) -> np.ndarray:
    if isinstance(axis, str):
        key = axis.strip().upper()
        if key not in _AXES:
            raise RenderError(
                f"{what}: axis must be one of {', '.join(_AXES)} or an LPS vector, got {axis!r}"
            )
        return np.array(_AXES[key])
    return _unit(axis, "axis", what)
