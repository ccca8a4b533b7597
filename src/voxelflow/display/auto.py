"""Automatic windows: a window computed from the modality values of the pixels at hand.

Every method reduces the pixels to the distribution of their modality values: a histogram of
the stored values for 8- and 16-bit integers (exact, one pass, bounded memory), mapped through
the Modality LUT; the distinct values and their counts otherwise. NaN is ignored. From the
chosen range ``[lo, hi]`` the window is dcmtk's min-max window, LINEAR with
``center = (lo + hi + 1) / 2`` and ``width = hi - lo + 1``: its edges are exactly ``lo``
(black) and ``hi`` (white), and the ramp between them is linear (PS3.3 C.11.2.1.2.1).

Methods (:data:`~voxelflow.display.pipeline.AUTO_METHODS`):

``minmax``
    ``lo``, ``hi`` = the smallest and largest value (dcmtk ``+Wm``).
``minmax_no_extremes``
    The second smallest and second largest distinct values: a padding value or a few hot
    pixels do not set the range (dcmtk ``+Wn``). Fewer than three distinct values: minmax.
``histogram``
    Ignore `fraction` of the pixels at each end (dcmtk ``+Wh``): ``lo`` is the first value
    after the lowest values that together hold ``floor(fraction * N)`` pixels, ``hi`` the
    mirror image. If nothing is left between them: minmax.
``percentile``
    ``lo``, ``hi`` = the `percentiles` of the values, interpolated linearly as
    ``numpy.percentile`` does.

Constant images get a width-1 threshold window at their value; an image without any finite
value gets ``Window(center=0.5, width=1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import DisplayError
from .pipeline import LUT, AutoWindow, DisplayPipeline, Rescale, Window

__all__ = ["auto_window", "value_distribution", "window_from_range"]

# Values per chunk when histogramming: bounds the temporary memory (a few MiB).
_CHUNK = 1 << 20


def window_from_range(lo: float, hi: float, explanation: str = "") -> Window:
    """dcmtk's min-max window over ``[lo, hi]`` (LINEAR, edges exactly at lo and hi)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Window(center=0.5, width=1.0, explanation=explanation)
    if hi < lo:
        lo, hi = hi, lo
    return Window(center=(lo + hi + 1.0) / 2.0, width=hi - lo + 1.0, explanation=explanation)


def _histogram_counts(block: np.ndarray, counts: np.ndarray) -> None:
    """Add the stored values of an 8/16-bit integer `block` to `counts` (index = value - min)."""
    flat = block.reshape(-1)
    bits = 8 * flat.dtype.itemsize
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        if flat.dtype.kind == "i":
            # Flipping the sign bit orders signed values as unsigned: index = value + 2**(bits-1).
            part = part.view(f"u{flat.dtype.itemsize}") ^ (1 << (bits - 1))
        counts += np.bincount(part, minlength=counts.size)


def _is_histogrammed(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" and dtype.itemsize <= 2 or dtype.kind == "b"


def value_distribution(
    blocks: Iterable[np.ndarray], modality: Rescale | LUT
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct modality values (sorted float64, finite) and their pixel counts over `blocks`.

    The blocks must share one dtype; NaN and infinities are left out.
    """
    counts: np.ndarray | None = None
    offset = 0
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for block in blocks:
        block = np.asarray(block)
        if block.dtype.kind == "b":
            block = block.view(np.uint8)
        if block.dtype.byteorder not in "=|":
            block = block.astype(block.dtype.newbyteorder("="))
        if _is_histogrammed(block.dtype):
            if counts is None:
                bits = 8 * block.dtype.itemsize
                counts = np.zeros(1 << bits, np.int64)
                offset = -(1 << (bits - 1)) if block.dtype.kind == "i" else 0
            _histogram_counts(block, counts)
        else:
            values, n = np.unique(block.reshape(-1), return_counts=True)
            parts.append((values, n))
    if counts is not None:
        stored = np.nonzero(counts)[0]
        n = counts[stored]
        stored = stored + offset
    elif parts:
        stored = np.concatenate([p[0] for p in parts])
        n = np.concatenate([p[1] for p in parts])
    else:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    x = modality.apply(stored)
    keep = np.isfinite(x)
    x, n = x[keep], n[keep]
    # Several stored values may share one modality value (a LUT, duplicates across blocks).
    values, inverse = np.unique(x, return_inverse=True)
    return values, np.bincount(inverse.reshape(-1), weights=n, minlength=values.size).astype(
        np.int64
    )


def _percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """numpy.percentile(expanded values, q) (linear interpolation) from values and counts."""
    total = int(counts.sum())
    position = q / 100.0 * (total - 1)
    below = math.floor(position)
    cumulative = np.cumsum(counts)
    # The value at rank r (0-based) is the first value whose cumulative count exceeds r.
    lo = values[int(np.searchsorted(cumulative, below, side="right"))]
    hi = values[int(np.searchsorted(cumulative, min(below + 1, total - 1), side="right"))]
    return float(lo + (position - below) * (hi - lo))


def window_from_distribution(values: np.ndarray, counts: np.ndarray, auto: AutoWindow) -> Window:
    """The window `auto` asks for, from sorted distinct values and their counts."""
    label = f"auto {auto.method}"
    if values.size == 0:
        return window_from_range(math.nan, math.nan, label)
    lo, hi = float(values[0]), float(values[-1])
    if auto.method == "minmax_no_extremes" and values.size >= 3:
        lo, hi = float(values[1]), float(values[-2])
    elif auto.method == "histogram":
        ignored = math.floor(auto.fraction * int(counts.sum()))
        if ignored > 0:
            cumulative = np.cumsum(counts)
            # First value after those holding the lowest `ignored` pixels, and the mirror.
            first = int(np.searchsorted(cumulative, ignored, side="left")) + 1
            from_top = np.cumsum(counts[::-1])
            last = values.size - 2 - int(np.searchsorted(from_top, ignored, side="left"))
            if first <= last:
                lo, hi = float(values[first]), float(values[last])
    elif auto.method == "percentile":
        lo = _percentile(values, counts, auto.percentiles[0])
        hi = _percentile(values, counts, auto.percentiles[1])
    return window_from_range(lo, hi, label)


def auto_window(
    data: Any,
    method: str | AutoWindow = "minmax",
    *,
    modality: Rescale | LUT | None = None,
    fraction: float = 0.05,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> Window:
    """A window computed from the modality values of `data` (see the module docstring).

    Parameters
    ----------
    data : numpy array, dask array, zarr array, or an object with ``.array``
        Stored values (any shape). Dask arrays are reduced with dask (per-block
        histograms for 8/16-bit integers; min/max otherwise); zarr arrays chunk by chunk.
    method : str or AutoWindow
        "minmax", "minmax_no_extremes", "histogram" or "percentile" (or an AutoWindow, whose
        fraction and percentiles then apply).
    modality : Rescale or LUT, optional
        Stored -> modality values (default identity); the window is in modality units.
    fraction : float
        "histogram": the fraction of pixels ignored at each end (dcmtk's default 0.05).
    percentiles : (float, float)
        "percentile": the low and high percentiles.

    Returns
    -------
    Window
        LINEAR, its edges at the chosen range.

    Raises
    ------
    DisplayError
        For an unknown method or bad parameters, or a method other than minmax on a
        float (or 32-bit integer) dask or zarr array, which would need every value in memory.
    """
    auto = (
        method
        if isinstance(method, AutoWindow)
        else AutoWindow(method=method, fraction=fraction, percentiles=percentiles)
    )
    modality = Rescale() if modality is None else modality
    data = getattr(data, "array", data)
    from .apply import chunk_blocks, is_chunked, is_dask

    # A rescale is monotone: min/max of the stored values say it all, without a histogram.
    monotone_minmax = auto.method == "minmax" and isinstance(modality, Rescale)
    if is_dask(data) or is_chunked(data):
        dtype = np.dtype(data.dtype)
        if monotone_minmax:
            return _chunked_minmax(data, modality, auto)
        if not _is_histogrammed(dtype):
            if auto.method != "minmax":
                raise DisplayError(
                    f"automatic window method {auto.method!r} on a chunked {dtype} array needs "
                    "every value in memory; use 'minmax', an explicit window, or compute the "
                    "array first"
                )
            return _chunked_minmax(data, modality, auto)
        if is_dask(data):
            import dask

            counts = dask.compute(
                *[dask.delayed(_block_counts)(b) for b in data.to_delayed().ravel()]
            )
            return _from_count_blocks(counts, dtype, modality, auto)
        values, n = value_distribution(chunk_blocks(data), modality)
        return window_from_distribution(values, n, auto)
    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)
    if monotone_minmax:
        return _array_minmax(arr, modality, auto)
    values, n = value_distribution([arr], modality)
    return window_from_distribution(values, n, auto)


def _block_counts(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block)
    if block.dtype.kind == "b":
        block = block.view(np.uint8)
    counts = np.zeros(1 << (8 * block.dtype.itemsize), np.int64)
    _histogram_counts(block, counts)
    return counts


def _from_count_blocks(
    counts: Iterable[np.ndarray], dtype: np.dtype, modality: Rescale | LUT, auto: AutoWindow
) -> Window:
    total = sum(counts)
    if isinstance(total, int):  # no blocks
        return window_from_range(math.nan, math.nan, f"auto {auto.method}")
    stored = np.nonzero(total)[0]
    if dtype.kind == "i":
        stored = stored - (1 << (8 * dtype.itemsize - 1))
    x = modality.apply(stored)
    keep = np.isfinite(x)
    values, inverse = np.unique(x[keep], return_inverse=True)
    n = np.bincount(
        inverse.reshape(-1), weights=total[np.nonzero(total)[0]][keep], minlength=values.size
    )
    return window_from_distribution(values, n.astype(np.int64), auto)


def _range_of(lo: float, hi: float, modality: Rescale | LUT) -> tuple[float, float]:
    ends = modality.apply(np.array([lo, hi], np.float64))
    return float(np.min(ends)), float(np.max(ends))


def _array_minmax(arr: np.ndarray, modality: Rescale, auto: AutoWindow) -> Window:
    # The modality range is the image of the stored range.
    finite = arr if arr.dtype.kind in "iu" else arr[np.isfinite(arr)]
    if finite.size == 0:
        return window_from_range(math.nan, math.nan, f"auto {auto.method}")
    lo, hi = _range_of(float(finite.min()), float(finite.max()), modality)
    return window_from_range(lo, hi, f"auto {auto.method}")


def _chunked_minmax(data: Any, modality: Rescale | LUT, auto: AutoWindow) -> Window:
    from .apply import chunk_blocks, is_dask

    if is_dask(data):
        import dask
        import dask.array as da

        finite = da.where(da.isfinite(data), data, np.nan) if data.dtype.kind == "f" else data
        lo, hi = dask.compute(da.nanmin(finite), da.nanmax(finite))
        lo, hi = float(lo), float(hi)
    else:
        lo, hi = math.inf, -math.inf
        for block in chunk_blocks(data):
            block = block[np.isfinite(block)] if block.dtype.kind == "f" else block
            if block.size:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return window_from_range(math.nan, math.nan, f"auto {auto.method}")
    if isinstance(modality, LUT):
        # Not monotone in general: look the table up over the stored range (values beyond the
        # table take its end entries, so the range clipped to the table says it all).
        a = min(max(math.floor(lo), modality.first_mapped), modality.last_mapped)
        b = min(max(math.ceil(hi), modality.first_mapped), modality.last_mapped)
        x = modality.apply(np.arange(a, b + 1))
        return window_from_range(float(x.min()), float(x.max()), f"auto {auto.method}")
    lo, hi = _range_of(lo, hi, modality)
    return window_from_range(lo, hi, f"auto {auto.method}")


def resolve(pipeline: DisplayPipeline, data: Any) -> DisplayPipeline:
    """`pipeline` with an AutoWindow replaced by the window it computes on `data`."""
    if not isinstance(pipeline.voi, AutoWindow):
        return pipeline
    return pipeline.with_voi(auto_window(data, pipeline.voi, modality=pipeline.modality))
