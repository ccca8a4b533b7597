"""Multiplanar reformatting: a plane, or a thick slab around it, sampled from a volume.

One path serves every view (axial, coronal, sagittal, oblique, thick slab, projection): the
plane and its slab become a 4 x 4 grid mapping (sample, row, column) to LPS millimetres; that
grid composed with the inverse of the volume's affine gives the continuous voxel index of every
sample, which the ``sample_slab`` kernel interpolates and reduces in one pass. A stored (zarr)
volume is read only in the chunks the slab touches (:mod:`.chunks`), from the coarsest pyramid
level that still resolves the output pixel spacing.

Values: the kernel samples stored values; the Modality LUT (rescale slope and intercept from
the volume's metadata) is applied to the reduced result, which is exact for interpolation and
for every mode (a negative slope swaps MIP and MinIP; a ray sum adds the intercept once per
inside sample). With a display pipeline, its VOI and presentation follow on the same buffer,
row block by row block while it is in cache: no second pass over the image in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import kernels
from ..errors import RenderError
from ..geometry import Plane, affine_spacing
from ..volume import Volume, require_grayscale
from .chunks import Region, read_region
from .limits import RenderLimits, check_image, resolve
from .slab import Slab

__all__ = [
    "EMPTY",
    "INTERPOLATIONS",
    "choose_level",
    "finish",
    "index_matrix",
    "mpr",
    "render_grid",
    "rescale_for",
    "slab_grid",
]

#: interpolation name -> kernel order.
INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}
# Voxels read around a sample position: nearest and linear read floor(p) .. floor(p) + 1,
# cubic floor(p) - 1 .. floor(p) + 2.
_SUPPORT = {0: 1.0, 1: 1.0, 3: 2.0}
# The cubic prefilter runs on the region read, grown by this margin: the filter's influence
# decays as |sqrt(3) - 2| ** n, 0.268 ** 16 = 1.4e-9 of a voxel value at the region's edge.
_CUBIC_MARGIN = 16
#: The kernels' fill for pixels with no inside sample: a float32 no interpolation of the volume
#: produces (the most negative finite float32), turned into NaN or `cval` by :func:`finish`.
EMPTY = float(np.finfo(np.float32).min)
# Rows per block when a display pipeline follows: 64 x 512 float32 stays in L2.
_BLOCK_PIXELS = 1 << 15
_SWAP = {"max": "min", "min": "max", "mean": "mean", "sum": "sum"}


def _order(interp: Any, what: str) -> int:
    if interp not in INTERPOLATIONS:
        raise RenderError(f"{what}: interp must be one of {', '.join(INTERPOLATIONS)}, got {interp!r}")
    return INTERPOLATIONS[interp]


def _check_volume(volume: Any, what: str) -> Volume:
    if not isinstance(volume, Volume):
        raise RenderError(f"{what}: volume must be a voxelflow.Volume, got {type(volume).__name__}")
    require_grayscale(volume, RenderError, what)
    if len(volume.shape) != 3:
        raise RenderError(
            f"{what}: needs a 3-D volume, got shape {volume.shape} (select one time point first)"
        )
    if volume.dtype.kind not in "iuf" or volume.dtype.itemsize > 8:
        raise RenderError(f"{what}: cannot sample voxels of dtype {volume.dtype}")
    return volume


def choose_level(volume: Volume, pixel_spacing: float, level: Any = "auto") -> Volume:
    """The pyramid level to render at (stored volumes only; others are returned as they are).

    ``"auto"``: the coarsest level whose every voxel spacing is at most `pixel_spacing`, i.e.
    the level switches once the output pixels are at least twice the volume's voxels
    (pyramid levels halve the spacing's finest axes). An integer picks that level.
    """
    source = volume.source
    if isinstance(level, str) and level == "auto":
        if source is None or source.levels <= 1 or source.level != 0:
            return volume
        if pixel_spacing < 2.0 * min(volume.spacing) * (1 - 1e-9):
            return volume
        for n in range(source.levels - 1, 0, -1):
            candidate = source.open(n)
            if max(candidate.spacing) <= pixel_spacing * (1 + 1e-9):
                return candidate
        return volume
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
        raise RenderError(f"level must be 'auto' or a pyramid level >= 0, got {level!r}")
    if int(level) == 0 and (source is None or source.level == 0):
        return volume
    if source is None:
        raise RenderError(f"level={level}: the volume has no pyramid (it was not opened from a VolumeStore)")
    if not 0 <= int(level) < source.levels:
        raise RenderError(f"level={level}: the volume has levels 0..{source.levels - 1}")
    return source.open(int(level))


def slab_grid(plane: Plane, samples: int, step: float) -> np.ndarray:
    """The 4 x 4 map of (sample, row, column) to LPS: `samples` points `step` mm apart along
    the plane's normal, centred on the plane (the slab rule of :mod:`.slab`)."""
    grid = plane.affine.copy()
    grid[:3, 0] = plane.normal * step
    grid[:3, 3] = plane.origin - plane.normal * step * (samples - 1) / 2.0
    return grid


def index_matrix(volume: Volume, grid: np.ndarray) -> np.ndarray:
    """The 3 x 4 map of (sample, row, column) to continuous voxel index (z, y, x).

    Entries within 1e-9 of a multiple of 2**-16 are snapped to it: composing the grid with the
    inverse affine leaves ~1e-13 of rounding noise, which would put a plane meant to run
    through voxel centres a hair beside them (and mix in a 1e-13 share of the neighbours).
    """
    matrix = (np.linalg.inv(volume.affine) @ np.asarray(grid, dtype=np.float64))[:3]
    grain = np.rint(matrix * 65536.0) / 65536.0
    return np.where(np.abs(matrix - grain) < 1e-9, grain, matrix)


def _rescale(volume: Volume) -> tuple[float, float]:
    meta = volume.meta
    rescale = meta.get("rescale")
    if isinstance(rescale, Mapping) and meta.get("values", "stored") == "stored":
        return float(rescale.get("slope", 1.0)), float(rescale.get("intercept", 0.0))
    return 1.0, 0.0


def rescale_for(volume: Volume, display: Any) -> tuple[float, float]:
    """(slope, intercept) that turn reduced stored values into modality values: the display
    pipeline's rescale if it has one that is not the identity, else the volume's metadata;
    (1, 0) under a Modality LUT, which is not linear and maps the values inside the pipeline."""
    pipeline = _pipeline(display, volume)
    stage = None if pipeline is None else pipeline.modality
    if stage is not None and not hasattr(stage, "slope"):
        return 1.0, 0.0
    if stage is not None and not stage.is_identity:
        return float(stage.slope), float(stage.intercept)
    return _rescale(volume)


def _pipeline(display: Any, volume: Volume) -> Any:
    from ..display import DisplayPipeline, pipeline_for

    if display is None:
        return None
    if display is True:
        found = pipeline_for(volume)
        return found if found is not None else DisplayPipeline()
    if isinstance(display, DisplayPipeline):
        return display
    if isinstance(display, Mapping):
        return DisplayPipeline.from_dict(display)
    raise RenderError(
        f"display must be a DisplayPipeline, its dict, or True (the volume's own), got {type(display).__name__}"
    )


def _sample(
    volume: Volume,
    grid: np.ndarray,
    extent: tuple[int, int, int],
    mode: str,
    order: int,
    backend: str | None,
) -> np.ndarray:
    """Reduced stored values as float32 (rows, columns), EMPTY where no sample was inside:
    the kernel call on the voxels the grid touches."""
    matrix = index_matrix(volume, grid)
    support = _SUPPORT[order] + (_CUBIC_MARGIN if order == 3 else 0)
    region = read_region(volume.array, matrix, extent, support)
    values = np.full(extent[1:], EMPTY, np.float32)
    if region is None:
        return values
    local = matrix.copy()
    local[:, 3] -= np.asarray(region.offset, dtype=np.float64)
    src = _kernel_source(region, order)
    kernels.get("sample_slab", backend)(src, local, values, order, EMPTY, extent[0], mode)
    return values


def _kernel_source(region: Region, order: int) -> np.ndarray:
    data = region.data
    if order == 3:
        from ..kernels.reference.resample import bspline_prefilter

        return bspline_prefilter(data)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype.kind == "i" and data.dtype.itemsize == 8 or data.dtype.kind == "u" and data.dtype.itemsize == 8:
        data = data.astype(np.float64)
    return np.ascontiguousarray(data)


def render_grid(
    volume: Volume,
    grid: np.ndarray,
    extent: tuple[int, int, int],
    *,
    mode: str = "max",
    interp: str = "linear",
    display: Any = None,
    out: np.ndarray | None = None,
    cval: float | None = None,
    backend: str | None = None,
    what: str = "render",
) -> np.ndarray:
    """Sample and reduce `volume` over `grid` ((sample, row, column) -> LPS, `extent` samples,
    rows, columns), then apply the Modality LUT and an optional display pipeline.

    The shared core of :func:`mpr` and the projections; arguments as in :func:`mpr`.
    """
    order = _order(interp, what)
    pipeline = _pipeline(display, volume)
    slope, intercept = rescale_for(volume, pipeline)
    kernel_mode = _SWAP[mode] if slope < 0 else mode
    stored = _sample(volume, grid, extent, kernel_mode, order, backend)
    counts = None
    if mode == "sum" and intercept != 0.0:
        counts = _inside_counts(volume, grid, extent, order, backend)
    return finish(
        volume, stored, pipeline, counts=counts, out=out, cval=cval, backend=backend, what=what
    )


def finish(
    volume: Volume,
    stored: np.ndarray,
    display: Any = None,
    *,
    counts: np.ndarray | None = None,
    out: np.ndarray | None = None,
    cval: float | None = None,
    backend: str | None = None,
    what: str = "render",
) -> np.ndarray:
    """The image of reduced stored values: `volume`'s Modality LUT (or the display pipeline's),
    then the display pipeline, fused row block by row block; pixels holding :data:`EMPTY`
    (no inside sample) become `cval` (NaN by default; black under a display).

    The last step of every renderer (:func:`render_grid`, the projections' axis path, curved
    MPR); `volume` supplies the rescale and windows, `counts` the inside samples per pixel of
    a ray sum whose intercept is not 0 (each adds one intercept).
    """
    pipeline = _pipeline(display, volume)
    slope, intercept = rescale_for(volume, pipeline)
    lut_modality = pipeline is not None and not hasattr(pipeline.modality, "slope")
    rows, cols = stored.shape
    empty = stored == np.float32(EMPTY)
    fill = np.nan if cval is None else float(cval)
    if pipeline is None:
        result = _output(out, (rows, cols), np.dtype(np.float32), what)
        _modality(stored, slope, intercept, counts, empty, fill, result)
        return result
    from ..display import Rescale, window

    if not lut_modality:
        pipeline = _replace_modality(pipeline, Rescale())
    result = _output(out, (rows, cols), pipeline.out_dtype, what)
    if not pipeline.is_resolved:
        modality = np.empty((rows, cols), np.float32)
        _modality(stored, slope, intercept, counts, empty, fill, modality)
        pipeline = pipeline.resolve(modality[~np.isnan(modality)] if np.isnan(modality).any() else modality)
    step = max(1, _BLOCK_PIXELS // max(cols, 1))
    block = np.empty((min(step, rows), cols), np.float32)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        part = block[: r1 - r0]
        _modality(
            stored[r0:r1], slope, intercept, None if counts is None else counts[r0:r1], empty[r0:r1], fill, part
        )
        window(part, pipeline, out=result[r0:r1], backend=backend)
        if cval is None:
            # no data is black, whatever the presentation (an inverting pipeline would whiten it)
            result[r0:r1][empty[r0:r1]] = 0
    return result


def _replace_modality(pipeline: Any, modality: Any) -> Any:
    from dataclasses import replace

    return replace(pipeline, modality=modality)


def _modality(
    stored: np.ndarray,
    slope: float,
    intercept: float,
    counts: np.ndarray | None,
    empty: np.ndarray,
    fill: float,
    out: np.ndarray,
) -> None:
    with np.errstate(over="ignore", invalid="ignore"):  # the empty marker may overflow
        np.multiply(stored, np.float32(slope), out=out)
        if counts is not None:
            out += counts * np.float32(intercept)
        elif intercept != 0.0:
            out += np.float32(intercept)
    out[empty] = fill


def _inside_counts(
    volume: Volume, grid: np.ndarray, extent: tuple[int, int, int], order: int, backend: str | None
) -> np.ndarray:
    """Inside samples per pixel: a ray sum of ones over the same grid and region."""
    matrix = index_matrix(volume, grid)
    shape = volume.shape[-3:]
    from .chunks import index_box

    box = index_box(matrix, extent, shape, _SUPPORT[order])
    counts = np.zeros(extent[1:], np.float32)
    if box is None:
        return counts
    start, stop = box
    ones = np.ones(tuple(int(b - a) for a, b in zip(start, stop)), np.uint8)
    local = matrix.copy()
    local[:, 3] -= start
    # nearest keeps the inside rule and reads only ones
    kernels.get("sample_slab", backend)(ones, local, counts, 0, 0.0, extent[0], "sum")
    return counts


def _output(out: Any, shape: tuple[int, int], dtype: np.dtype, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise RenderError(
            f"{what}: out must be a C-contiguous {dtype} array of shape {shape}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    return out


def mpr(
    volume: Volume,
    plane: Plane,
    *,
    slab: Slab | float | None = None,
    interp: str = "linear",
    display: Any = None,
    out: np.ndarray | None = None,
    cval: float | None = None,
    level: int | str = "auto",
    backend: str | None = None,
    limits: RenderLimits | None = None,
) -> np.ndarray:
    """The image of `volume` on `plane`: a thin MPR, or a thick slab (MIP, MinIP, mean, sum).

    Parameters
    ----------
    volume : Volume
        3-D, in memory, dask or stored (zarr: only the chunks the slab touches are read).
    plane : Plane
        Where the output pixels lie (:class:`voxelflow.Plane`).
    slab : Slab or float, optional
        A thick slab (:class:`voxelflow.Slab`; a number is a MIP that many mm thick, sampled
        at the volume's smallest spacing). None: the plane itself.
    interp : {"linear", "nearest", "cubic"}
        Interpolation of the volume (cubic: B-spline with its prefilter, run on the region
        read plus a 16-voxel margin).
    display : DisplayPipeline, dict or True, optional
        Apply windowing: a pipeline (its Modality stage, if not identity, replaces the
        volume's rescale), its dict, or True for the volume's own (metadata windows). The
        result is then uint8/uint16 (or float32 in [0, 1] for ``bits=None``) display values.
    out : ndarray, optional
        Receives the result (float32, or the pipeline's output dtype).
    cval : float, optional
        Value of pixels none of whose samples lies inside the volume, in modality units
        (default NaN; with a display pipeline the default renders them black).
    level : "auto" or int
        Pyramid level of a stored volume (see :func:`choose_level`).
    backend : str, optional
        Kernel backend.
    limits : RenderLimits, optional
        Request limits (default :data:`voxelflow.render.limits.DEFAULT_LIMITS`).

    Returns
    -------
    numpy.ndarray
        (rows, columns): float32 modality values (HU for CT), or display values.

    Raises
    ------
    RenderError
        For a bad plane, slab, interpolation, display or `out`, or a request past `limits`,
        before anything is allocated.
    """
    volume = _check_volume(volume, "mpr")
    if not isinstance(plane, Plane):
        raise RenderError(f"mpr: plane must be a voxelflow.Plane, got {type(plane).__name__}")
    limits = resolve(limits)
    check_image(plane.size, limits, "mpr")
    _order(interp, "mpr")
    if slab is not None and not isinstance(slab, Slab):
        slab = Slab(slab)  # type: ignore[arg-type]
    source = choose_level(volume, min(plane.spacing), level)
    if slab is None:
        samples, step, mode = 1, 1.0, "max"
    else:
        samples, step = slab.plan(min(affine_spacing(source.affine)), limits)
        mode = slab.mode
    grid = slab_grid(plane, samples, step)
    return render_grid(
        source,
        grid,
        (samples, *plane.size),
        mode=mode,
        interp=interp,
        display=display,
        out=out,
        cval=cval,
        backend=backend,
        what="mpr",
    )
