"""Applying a display pipeline: fused display tables, the window kernels, numpy / dask / zarr.

Integer stored values (8, 16 or 32 bits) go through one table that fuses the whole chain —
Modality LUT or rescale, window or VOI LUT, inversion, output scaling — built once per
pipeline, input dtype and range (cached) and applied by the ``lut_apply`` kernel in a single
pass. The table spans only the stored values where the display value can change (beyond
them every value maps to the table's end entries, which the kernel clamps to), or, for large
8/16-bit inputs, the whole dtype range so the kernel needs no clamping. Float input (and
32-bit input too wide for a table) goes through the fused arithmetic kernel ``window_apply``.
Anything else (a LUT with float input, 64-bit integers, float16) takes :func:`display_values`,
the NumPy statement of the chain that the tables are built with.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from .. import kernels
from ..errors import DisplayError
from ..kernels.reference.window import (
    FUNCTION_CODES,
    LUT_SRC_DTYPES,
    WINDOW_SRC_DTYPES,
    finish_values,
    window_edges,
    window_values,
)
from ..volume import require_grayscale
from .auto import resolve
from .pipeline import LUT, AutoWindow, DisplayPipeline, Rescale, Window, check_bits, preset

__all__ = [
    "LUT_MAX_ENTRIES",
    "apply_pipeline",
    "chunk_blocks",
    "display_lut",
    "display_values",
    "is_chunked",
    "is_dask",
    "slice_pipeline",
    "varying_range",
    "window",
]

#: Largest display table built; wider ranges (32-bit input) use the arithmetic kernel.
LUT_MAX_ENTRIES = 1 << 20
# An 8/16-bit input of at least this many times the dtype's value count gets a table over the
# whole dtype range (no clamping in the kernel: measured 1.5x faster), built once and cached.
_FULL_TABLE_FACTOR = 16
# Values per step of the NumPy fallback: bounds its float64 temporaries.
_CHUNK = 1 << 20
# Chunked (zarr) input is read in slabs along the first axis of at most this many bytes.
_SLAB_BYTES = 64 << 20

_UNSET: Any = object()


# -- the chain in NumPy (the oracle the tables are built with) --------------------------------


def _voi_values(x: np.ndarray, pipeline: DisplayPipeline) -> np.ndarray:
    voi = pipeline.voi
    ymax = pipeline.ymax
    if isinstance(voi, Window):
        code = FUNCTION_CODES[voi.function]
        return window_values(x, code, *window_edges(code, voi.center, voi.width), ymax)
    if isinstance(voi, LUT):
        # VOI LUT entries span 0 .. 2**bits - 1 (C.11.2.1.1): scale them to the output range.
        entries = voi.lookup(x)
        y = entries / float((1 << voi.bits) - 1) * ymax
        return np.minimum(y, ymax)
    raise DisplayError("the pipeline's AutoWindow must be resolved against data first")


def display_values(values: Any, pipeline: DisplayPipeline, out: np.ndarray) -> None:
    """Write the display values of stored `values` to `out` (same size), in NumPy.

    This is the definition every faster path reproduces bit for bit: modality values in
    float64, the VOI output clamped to ``[0, ymax]`` (NaN counts as below the window, and as
    below the first entry of a LUT), the inversion, one rounding half up for integer output.
    """
    values = np.asarray(values)
    x = pipeline.modality.apply(values)
    y = _voi_values(x, pipeline)
    finish_values(y, pipeline.ymax, pipeline.inverse, out.reshape(values.shape))


# -- fused display tables -------------------------------------------------------------------


def _stored_bounds(a: float, b: float, rescale: Rescale) -> tuple[float, float]:
    """Stored values whose modality values are a and b (in either order)."""
    ends = ((a - rescale.intercept) / rescale.slope, (b - rescale.intercept) / rescale.slope)
    return min(ends), max(ends)


def _voi_varying_x(pipeline: DisplayPipeline) -> tuple[float, float] | None:
    """Modality values outside which the display value is constant (None: nowhere)."""
    voi = pipeline.voi
    if isinstance(voi, LUT):
        # Inputs round half up to an entry: below first - 0.5 the first, from last + 0.5 the last.
        return voi.first_mapped - 0.5, voi.last_mapped + 0.5
    if isinstance(voi, Window):
        code = FUNCTION_CODES[voi.function]
        _, _, lo, hi = window_edges(code, voi.center, voi.width)
        if voi.function != "SIGMOID":
            return lo, hi
        if pipeline.bits is None:
            return None
        # y < 0.37 (rounds to 0) where 4 |x - c| / w > ln(2 ymax - 1) + 1, and the mirror.
        reach = voi.width / 4.0 * (math.log(2.0 * pipeline.ymax - 1.0) + 1.0)
        return voi.center - reach, voi.center + reach
    return None


def varying_range(pipeline: DisplayPipeline, lo: int, hi: int) -> tuple[int, int]:
    """The stored values within ``[lo, hi]`` that a display table must span: outside them the
    display value equals that of the range's nearest end. A margin of one stored value on each
    side keeps float rounding in the bounds harmless."""
    modality = pipeline.modality
    if isinstance(modality, LUT):
        a, b = modality.first_mapped, modality.last_mapped
    else:
        x_range = _voi_varying_x(pipeline)
        if x_range is None:
            a, b = lo, hi
        elif modality.slope == 0.0:
            a = b = lo  # every stored value has the same modality value
        else:
            s0, s1 = _stored_bounds(*x_range, modality)
            a = math.floor(s0) - 1 if math.isfinite(s0) else lo
            b = math.ceil(s1) + 1 if math.isfinite(s1) else hi
    a, b = max(a, lo), min(b, hi)
    if a > b:  # the varying range lies beyond the dtype: one entry says it all
        a = b = min(max(a, lo), hi)
    return a, b


@functools.lru_cache(maxsize=128)
def _cached_table(pipeline: DisplayPipeline, dtype: str, lo: int, hi: int) -> np.ndarray:
    stored = np.arange(lo, hi + 1, dtype=np.int64)
    table = np.empty(stored.size, pipeline.out_dtype)
    display_values(stored, pipeline, table)
    table.flags.writeable = False
    return table


def display_lut(
    pipeline: DisplayPipeline,
    dtype: Any,
    *,
    full: bool = False,
    value_range: tuple[int, int] | None = None,
) -> tuple[np.ndarray, int]:
    """The fused display table of `pipeline` for integer stored values of `dtype`.

    Parameters
    ----------
    pipeline : DisplayPipeline
        Resolved (no AutoWindow).
    dtype : numpy dtype
        An integer dtype of at most 32 bits.
    full : bool
        Span every value of `dtype` (8/16-bit only) instead of the varying range.
    value_range : (int, int), optional
        The stored values present, when known: the table need not reach beyond them.

    Returns
    -------
    (table, first) : (read-only ndarray, int)
        ``table[v - first]`` is the display value of stored value ``v``; values beyond the
        table take its end entries. Cached: the same arguments return the same array.

    Raises
    ------
    DisplayError
        If the pipeline is not resolved, `dtype` is not an integer dtype of <= 32 bits, or
        the table would exceed :data:`LUT_MAX_ENTRIES` entries.
    """
    dt = np.dtype(dtype)
    if dt not in LUT_SRC_DTYPES:
        raise DisplayError(f"display tables index 8/16/32-bit integers, not {dt}")
    if not pipeline.is_resolved:
        raise DisplayError("resolve the pipeline's AutoWindow against data first")
    info = np.iinfo(dt)
    if full:
        if dt.itemsize > 2:
            raise DisplayError(f"a full-range table of {dt} would have {1 << 32} entries")
        lo, hi = int(info.min), int(info.max)
    else:
        lo, hi = varying_range(pipeline, int(info.min), int(info.max))
        if value_range is not None:
            vlo, vhi = (int(v) for v in value_range)
            lo, hi = max(lo, min(vlo, hi)), min(hi, max(vhi, lo))
    if hi - lo + 1 > LUT_MAX_ENTRIES:
        raise DisplayError(
            f"the display table would span {hi - lo + 1} stored values (> {LUT_MAX_ENTRIES})"
        )
    return _cached_table(pipeline, dt.str, lo, hi), lo


def _table_for(pipeline: DisplayPipeline, src: np.ndarray) -> tuple[np.ndarray, int] | None:
    dt = src.dtype
    if dt.itemsize <= 2 and src.size >= _FULL_TABLE_FACTOR << (8 * dt.itemsize):
        return display_lut(pipeline, dt, full=True)
    info = np.iinfo(dt)
    lo, hi = varying_range(pipeline, int(info.min), int(info.max))
    if hi - lo + 1 <= LUT_MAX_ENTRIES:
        return display_lut(pipeline, dt)
    # 32-bit input with a wide varying range: the values present may still fit a table.
    value_range = (int(src.min()), int(src.max()))
    if min(hi, value_range[1]) - max(lo, value_range[0]) + 1 > LUT_MAX_ENTRIES:
        return None
    return display_lut(pipeline, dt, value_range=value_range)


# -- applying to arrays ---------------------------------------------------------------------


def _output(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise DisplayError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise DisplayError(
            f"out has shape {out.shape} and dtype {out.dtype}; the result is {shape} {dtype}"
        )
    if not out.flags.writeable:
        raise DisplayError("out is read-only")
    return out


def _apply_flat(
    src: np.ndarray, pipeline: DisplayPipeline, dst: np.ndarray, backend: str | None
) -> None:
    if src.size == 0:
        return
    if src.dtype in LUT_SRC_DTYPES:
        table = _table_for(pipeline, src)
        if table is not None:
            kernels.get("lut_apply", backend)(src, table[0], table[1], dst)
            return
    voi, modality = pipeline.voi, pipeline.modality
    if isinstance(modality, Rescale) and isinstance(voi, Window) and src.dtype in WINDOW_SRC_DTYPES:
        ymax: float | int = 1.0 if pipeline.bits is None else (1 << pipeline.bits) - 1
        kernels.get("window_apply", backend)(
            src,
            dst,
            modality.slope,
            modality.intercept,
            FUNCTION_CODES[voi.function],
            voi.center,
            voi.width,
            ymax,
            pipeline.inverse,
        )
        return
    for start in range(0, src.size, _CHUNK):
        display_values(src[start : start + _CHUNK], pipeline, dst[start : start + _CHUNK])


def apply_pipeline(
    data: Any,
    pipeline: DisplayPipeline,
    *,
    out: np.ndarray | None = None,
    backend: str | None = None,
) -> np.ndarray:
    """Display values of an in-memory array through a pipeline (resolved on the array first
    if its VOI is an AutoWindow). See :func:`window` for the parameters."""
    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)
    elif arr.dtype.kind not in "iuf":
        raise DisplayError(f"display values need integer or float input, got {arr.dtype}")
    if arr.dtype.byteorder not in "=|":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    pipeline = resolve(pipeline, arr)
    result = _output(out, arr.shape, pipeline.out_dtype)
    src = np.ascontiguousarray(arr).reshape(-1)
    direct = result.flags.c_contiguous and not np.may_share_memory(result, src)
    dst = result.reshape(-1) if direct else np.empty(result.size, result.dtype)
    _apply_flat(src, pipeline, dst, backend)
    if not direct:
        result[...] = dst.reshape(result.shape)
    return result


def is_dask(data: Any) -> bool:
    """Whether `data` is a dask array (without importing dask)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(data, module.Array)


def is_chunked(data: Any) -> bool:
    """Whether `data` is a chunked array read region by region (zarr, h5py ...)."""
    if isinstance(data, np.ndarray) or is_dask(data):
        return False
    return all(hasattr(data, a) for a in ("shape", "dtype", "chunks", "__getitem__"))


def _regions(data: Any) -> Iterator[tuple[slice, ...]]:
    shape = tuple(data.shape)
    if not shape:
        yield ()
        return
    chunks = getattr(data, "shards", None) or getattr(data, "chunks", None) or shape
    chunks = tuple(int(c) for c in chunks)
    itemsize = np.dtype(data.dtype).itemsize
    rest = int(np.prod(shape[1:], dtype=np.int64))
    if chunks[0] * rest * itemsize <= _SLAB_BYTES:
        # Slabs of whole chunk rows along the first axis: few, large reads.
        step = max(chunks[0], _SLAB_BYTES // max(rest * itemsize, 1) // chunks[0] * chunks[0])
        for start in range(0, shape[0], step):
            yield (slice(start, min(start + step, shape[0])),) + tuple(
                slice(None) for _ in shape[1:]
            )
        return
    starts = [range(0, s, c) for s, c in zip(shape, chunks)]
    for corner in itertools.product(*starts):
        yield tuple(slice(a, min(a + c, s)) for a, c, s in zip(corner, chunks, shape))


def chunk_blocks(data: Any) -> Iterator[np.ndarray]:
    """The blocks of a chunked array, as numpy arrays, in slabs or chunks."""
    for region in _regions(data):
        yield np.asarray(data[region])


def _apply_block(block: np.ndarray, pipeline: DisplayPipeline, backend: str | None) -> np.ndarray:
    return apply_pipeline(block, pipeline, backend=backend)


def _window_dask(data: Any, pipeline: DisplayPipeline, out: Any, backend: str | None) -> Any:
    if out is not None:
        raise DisplayError("out is not supported for a dask array: the result is a lazy dask array")
    # The window must be the same for every block: compute an automatic one over all of them.
    pipeline = resolve(pipeline, data)
    dtype = pipeline.out_dtype
    return data.map_blocks(
        _apply_block,
        pipeline=pipeline,
        backend=backend,
        dtype=dtype,
        meta=np.empty((0,) * data.ndim, dtype),
    )


def _window_chunked(data: Any, pipeline: DisplayPipeline, out: Any, backend: str | None) -> Any:
    pipeline = resolve(pipeline, data)
    shape, dtype = tuple(data.shape), pipeline.out_dtype
    if out is None:
        result: Any = np.empty(shape, dtype)
    elif isinstance(out, np.ndarray):
        result = _output(out, shape, dtype)
    else:
        if tuple(out.shape) != shape or np.dtype(out.dtype) != dtype:
            raise DisplayError(
                f"out has shape {tuple(out.shape)} and dtype {out.dtype}; the result is "
                f"{shape} {dtype}"
            )
        result = out
    for region in _regions(data):
        result[region] = apply_pipeline(np.asarray(data[region]), pipeline, backend=backend)
    return result


def _meta_window(item: Any) -> Window:
    if isinstance(item, Window):
        return item
    if isinstance(item, Mapping):
        return Window(
            center=item.get("center"),
            width=item.get("width"),
            function=item.get("function", "LINEAR"),
            explanation=item.get("explanation", ""),
        )
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        explanation = item[2] if len(item) > 2 else ""
        return Window(center=item[0], width=item[1], explanation=explanation)
    raise DisplayError(f"volume metadata window {item!r} is not (center, width[, explanation])")


def pipeline_for(data: Any) -> DisplayPipeline | None:
    """The pipeline a Volume-like object carries: ``.display``; or in ``.meta`` /
    ``.metadata``: ``"display"`` (a pipeline or its dict), else ``"rescale"`` ({"slope",
    "intercept"}, applied when ``"values"`` is "stored"), ``"windows"`` (the first is used),
    ``"photometric"`` (MONOCHROME1 inverts), else DICOM keywords (RescaleSlope, WindowCenter,
    ...) read as a dataset."""
    display = getattr(data, "display", None)
    if isinstance(display, DisplayPipeline):
        return display
    if isinstance(display, Mapping):
        return DisplayPipeline.from_dict(display)
    meta = getattr(data, "meta", None)
    if not isinstance(meta, Mapping):
        meta = getattr(data, "metadata", None)
    if not isinstance(meta, Mapping):
        return None
    if "display" in meta:
        value = meta["display"]
        return value if isinstance(value, DisplayPipeline) else DisplayPipeline.from_dict(value)
    if any(k in meta for k in ("rescale", "windows", "photometric")):
        rescale = meta.get("rescale")
        modality = Rescale()
        if isinstance(rescale, Mapping) and meta.get("values", "stored") == "stored":
            modality = Rescale(
                slope=rescale.get("slope", 1.0), intercept=rescale.get("intercept", 0.0)
            )
        windows = list(meta.get("windows") or ())
        voi: Window | AutoWindow = _meta_window(windows[0]) if windows else AutoWindow()
        photometric = str(meta.get("photometric") or "").strip().upper()
        return DisplayPipeline(modality=modality, voi=voi, inverse=photometric == "MONOCHROME1")
    keys = (
        "RescaleSlope",
        "RescaleIntercept",
        "ModalityLUTSequence",
        "WindowCenter",
        "VOILUTSequence",
        "PhotometricInterpretation",
        "PresentationLUTShape",
    )
    if any(k in meta for k in keys):
        return DisplayPipeline.from_dataset(meta)
    return None


def slice_pipeline(meta: Any, index: int) -> DisplayPipeline:
    """The display pipeline of one slice of a stored volume: what
    :func:`~voxelflow.display.render_frame` applies to that slice's instance (no window
    override), for the values the volume holds.

    Parameters
    ----------
    meta : mapping, or a Volume-like object with ``.meta``
        The volume's metadata: ``"display"`` (the first slice's pipeline; else what
        :func:`pipeline_for` derives from "rescale", "windows" and "photometric") and, where
        the slices' windows differ, ``"slice_windows"`` (one list of {"center", "width",
        "explanation"} per slice).
    index : int
        The slice, a flat index in volume order (as ``meta["sop_instance_uids"]``; for a 4-D
        volume t-major then z: ``t * nz + z``).

    Returns
    -------
    DisplayPipeline
        The volume's pipeline with its VOI replaced by the slice's first window (keeping the
        VOI LUT Function) when "slice_windows" is present and the pipeline's VOI is a window
        (or automatic); a slice without windows gets the automatic window, as its file would.
        A VOI LUT stays.

    Raises
    ------
    DisplayError
        If `index` is not a slice of the volume, or the metadata holds an invalid pipeline.
    """
    if not isinstance(meta, Mapping):
        meta = getattr(meta, "meta", None)
        if not isinstance(meta, Mapping):
            raise DisplayError("slice_pipeline needs a volume's metadata (a mapping or .meta)")
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise DisplayError(f"slice index must be an integer, got {index!r}")
    index = int(index)
    slices = meta.get("slice_windows")
    count = len(slices) if slices is not None else len(meta.get("sop_instance_uids") or ())
    if index < 0 or (count and index >= count):
        raise DisplayError(f"slice index {index} out of range: the volume has {count} slices")
    pipeline = pipeline_for(SimpleNamespace(meta=meta)) or DisplayPipeline()
    if slices is None or isinstance(pipeline.voi, LUT):
        return pipeline
    windows = list(slices[index] or ())
    if not windows:
        return pipeline.with_voi(AutoWindow())
    first = _meta_window(windows[0])
    function = pipeline.voi.function if isinstance(pipeline.voi, Window) else first.function
    return pipeline.with_voi(
        Window(center=first.center, width=first.width, function=function, explanation=first.explanation)
    )


def _voi_override(
    center: Any, width: Any, function: Any, preset_name: Any, auto: Any
) -> Window | AutoWindow | None:
    given = [
        name
        for name, v in (
            ("center/width", center if center is not None else width),
            ("preset", preset_name),
            ("auto", auto),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise DisplayError(f"give one of center/width, preset and auto, not {' and '.join(given)}")
    if center is not None or width is not None:
        if center is None or width is None:
            raise DisplayError("center and width go together: give both")
        return Window(center=center, width=width, function=function)
    if preset_name is not None:
        named = preset(preset_name)
        return Window(
            center=named.center, width=named.width, function=function, explanation=named.explanation
        )
    if auto is not None:
        return auto if isinstance(auto, AutoWindow) else AutoWindow(method=auto)
    return None


def window(
    data: Any,
    pipeline: DisplayPipeline | Mapping[str, Any] | None = None,
    *,
    center: float | None = None,
    width: float | None = None,
    function: str = "linear",
    preset: str | None = None,
    auto: str | AutoWindow | None = None,
    bits: int | None = _UNSET,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Display values of `data`: Modality LUT, VOI window or LUT, presentation, output scaling.

    Parameters
    ----------
    data : array-like, dask array, zarr array, or an object with ``.array``
        Stored values, any shape ((z, y, x) for volumes). A numpy array is done at once; a
        dask array lazily, block by block (``map_blocks``); a zarr (or other chunked) array
        in slabs of chunks, into `out` or a numpy result. An object with ``.array`` (a
        Volume) supplies its pipeline from ``.display`` or ``.metadata["display"]`` (a
        :class:`DisplayPipeline` or its dict) or from DICOM keywords in ``.metadata``.
    pipeline : DisplayPipeline or dict, optional
        The whole chain (default: identity modality, automatic min/max window, no inversion).
    center, width : float, optional
        A window in modality units (HU for CT), replacing the pipeline's VOI.
    function : str
        VOI LUT Function of `center`/`width` or `preset`: "linear", "linear_exact" or
        "sigmoid" (C.11.2.1.2, C.11.2.1.3).
    preset : str, optional
        A named CT window (:data:`PRESETS`: "lung", "soft_tissue", "bone", ...).
    auto : str or AutoWindow, optional
        An automatic window: "minmax", "minmax_no_extremes", "histogram", "percentile".
    bits : int or None
        Output depth: 1..16 (uint8 up to 8, uint16 above), None for float32 in ``[0, 1]``.
        Default: the pipeline's, else 8.
    out : ndarray (or zarr array for zarr input), optional
        Receives the result (shape of `data`, dtype of the output depth).
    backend : str, optional
        Kernel backend ("cython", "numba", "reference"); default from ``VOXELFLOW_BACKEND``.

    Returns
    -------
    numpy.ndarray, dask array, or `out`
        Display values, shape of `data`. Integers are rounded once, half up.

    Raises
    ------
    DisplayError
        Naming the bad parameter: width < 1 (LINEAR) or <= 0 (LINEAR_EXACT, SIGMOID), NaN or
        inf, an unknown function, preset or automatic method, bits outside 1..16, center
        without width, conflicting VOI choices, an `out` of the wrong shape or dtype.
    """
    array = data
    base: DisplayPipeline | None
    if isinstance(pipeline, DisplayPipeline):
        base = pipeline
    elif isinstance(pipeline, Mapping):
        base = DisplayPipeline.from_dict(pipeline)
    elif pipeline is None:
        base = None
    else:
        raise DisplayError(
            f"pipeline must be a DisplayPipeline or its dict, got {type(pipeline).__name__}"
        )
    if not isinstance(data, np.ndarray) and not is_dask(data) and hasattr(data, "array"):
        require_grayscale(data, DisplayError, "window")
        array = data.array
        if base is None:
            base = pipeline_for(data)
    pipe = base if base is not None else DisplayPipeline()
    voi = _voi_override(center, width, function, preset, auto)
    if voi is not None:
        pipe = pipe.with_voi(voi)
    if bits is not _UNSET:
        pipe = pipe.with_bits(check_bits(bits))
    if is_dask(array):
        return _window_dask(array, pipe, out, backend)
    if is_chunked(array):
        return _window_chunked(array, pipe, out, backend)
    return apply_pipeline(array, pipe, out=out, backend=backend)
