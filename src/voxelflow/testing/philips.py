"""Write Philips MR series (classic and enhanced) with the private scaling Philips scanners add.

Philips MR images carry two transforms of the stored values (Chenevert et al. 2014, PMC3998685;
the Philips DICOM conformance statement):

- the public Rescale Slope / Intercept (0028,1053/1052): *display* values, ``D = SV*RS + RI``;
- the private MR Scale Slope (2005,100E, FL) and Scale Intercept (2005,100D, FL), private
  creator "Philips MR Imaging DD 001" in block (2005,0010): *precise* (floating-point) values,
  ``P = (SV - SI) / SS``, which equal ``D / (RS * SS)`` when ``SI = -RI / RS``.

Enhanced MR files hold the rescale per frame in the Pixel Value Transformation Sequence and,
as real Philips files do, again in the private per-frame sequence (2005,140F), whose item also
carries the private scale values.

:func:`write_philips_series` writes a :func:`voxelflow.testing.write_series` series and adds these
tags; :class:`PhilipsInfo` holds its ground truth, both kinds of value included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from ..errors import ParameterError
from .datasets import save_dataset
from .series import SeriesInfo, _ds, write_series

__all__ = ["PHILIPS_CREATOR", "PhilipsInfo", "write_philips_series"]

PHILIPS_CREATOR = "Philips MR Imaging DD 001"
_PRIVATE_FRAME_SQ = 0x2005140F
_SCALE_SLOPE = 0x0E  # (2005,xx0E) MR Scale Slope
_SCALE_INTERCEPT = 0x0D  # (2005,xx0D) MR Scale Intercept


@dataclass(frozen=True, eq=False)
class PhilipsInfo:
    """Ground truth for a series written by :func:`write_philips_series`.

    Attributes
    ----------
    series : SeriesInfo
        The underlying series (stored values, geometry, public rescale).
    scale_slope : numpy.ndarray
        (slices,) MR Scale Slope of each slice as written (float32-rounded for FL), geometric
        order; NaN where a slice has none.
    scale_intercept : numpy.ndarray or None
        (slices,) MR Scale Intercept as written, or None when none was written.
    """

    series: SeriesInfo
    scale_slope: np.ndarray = field(repr=False)
    scale_intercept: np.ndarray | None = field(repr=False)

    @property
    def paths(self) -> tuple[Any, ...]:
        return self.series.paths

    def display_values(self) -> np.ndarray:
        """``SV * RS + RI`` per slice, float64 (z, y, x)."""
        return self.series.modality_values()

    def precise_values(self) -> np.ndarray:
        """``(SV * RS + RI) / (RS * SS)`` per slice, float64 (z, y, x): what dcm2niix writes
        by default (``-p y``)."""
        rs = self.series.rescale[:, 0, np.newaxis, np.newaxis]
        ss = self.scale_slope[:, np.newaxis, np.newaxis]
        return self.display_values() / (rs * ss)


def _per_slice(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ParameterError(f"{name} needs one value or {n} (one per slice), got {len(values)}")
    return values


def _add_scale(ds: Dataset, slope: Any, intercept: Any, creator: str | None) -> None:
    """The private block and its scale elements: FL for numbers, LO for text (as a converter
    that lost the VR writes them)."""
    if creator is not None:
        ds.add_new(0x20050010, "LO", creator)
    for element, value in ((_SCALE_SLOPE, slope), (_SCALE_INTERCEPT, intercept)):
        if value is None:
            continue
        tag = 0x20051000 | element
        if isinstance(value, str):
            ds.add_new(tag, "LO", value)
        else:
            ds.add_new(tag, "FL", float(value))


def write_philips_series(
    folder: str | os.PathLike[str],
    *,
    scale_slope: float | str | Sequence[float | str] = 0.0125,
    scale_intercept: bool = True,
    creator: str | None = PHILIPS_CREATOR,
    enhanced: bool = False,
    shape: tuple[int, int, int] = (8, 32, 32),
    spacing: tuple[float, float, float] = (4.0, 1.5, 1.5),
    **series_options: Any,
) -> PhilipsInfo:
    """Write a Philips MR series with MR Scale Slope / Intercept; return its ground truth.

    Parameters
    ----------
    folder : path
        Created if missing; file names as :func:`voxelflow.testing.write_series` names them.
    scale_slope : float, str or sequence
        MR Scale Slope (2005,100E): one value for every slice, or one per slice in geometric
        order (slices whose factors differ). Numbers are written as FL (0, NaN and infinity
        too, for tests of their refusal), text as LO.
    scale_intercept : bool
        Also write MR Scale Intercept (2005,100D) as ``-RI / RS`` of the slice, as newer Philips
        software does.
    creator : str or None
        The private creator of block (2005,0010); None writes the elements without one (as
        some anonymisers leave them).
    enhanced : bool
        One Enhanced MR file: the scale values go into each frame's private sequence
        (2005,140F) item, next to a copy of the frame's Rescale Slope / Intercept.
    shape, spacing, **series_options
        As for :func:`voxelflow.testing.write_series` (``modality`` is MR). With
        ``per_slice_rescale=True`` each slice has its own Rescale Slope / Intercept too.

    Returns
    -------
    PhilipsInfo

    Raises
    ------
    ParameterError
        On an invalid parameter (a wrong number of per-slice values, a modality other than MR).
    """
    if series_options.pop("modality", "MR") != "MR":
        raise ParameterError("Philips scaling is written for MR series only")
    info = write_series(folder, shape=shape, spacing=spacing, modality="MR", enhanced=enhanced,
                        **series_options)
    m = info.volume.shape[0]
    slopes = _per_slice(scale_slope, m, "scale_slope")
    rs, ri = info.rescale[:, 0], info.rescale[:, 1]
    intercepts = [float(np.float32(-ri[k] / rs[k])) + 0.0 for k in range(m)] if scale_intercept else [None] * m
    written = np.array([np.float32(v) if not isinstance(v, str) else np.nan for v in slopes], dtype=np.float64)

    if enhanced:
        (path,) = info.paths
        ds = pydicom.dcmread(path)
        ds.Manufacturer = "Philips Medical Systems"
        ds.ManufacturerModelName = "Ingenia"
        frames = ds.PerFrameFunctionalGroupsSequence
        for f, item in enumerate(frames):
            g = int(item.FrameContentSequence[0].InStackPositionNumber) - 1 if "FrameContentSequence" in item else f
            private = Dataset()
            private.RescaleIntercept = _ds(ri[g])
            private.RescaleSlope = _ds(rs[g])
            private.RescaleType = "normalized"
            _add_scale(private, slopes[g], intercepts[g], creator)
            # the private sequence sits in block (2005,0014) of the frame's item, as Philips writes it
            item.add_new(0x20050014, "LO", "Philips MR Imaging DD 005")
            item.add_new(_PRIVATE_FRAME_SQ, "SQ", DicomSequence([private]))
        save_dataset(ds, path)
    else:
        by_uid = {uid: k for k, uid in enumerate(info.sop_uids)}
        for path in info.paths:
            ds = pydicom.dcmread(path)
            k = by_uid[str(ds.SOPInstanceUID)]
            ds.Manufacturer = "Philips Medical Systems"
            ds.ManufacturerModelName = "Ingenia"
            if "RescaleSlope" not in ds:  # Philips writes the rescale on every MR image
                ds.RescaleIntercept = _ds(ri[k])
                ds.RescaleSlope = _ds(rs[k])
                ds.RescaleType = "normalized"
            _add_scale(ds, slopes[k], intercepts[k], creator)
            save_dataset(ds, path)
    return PhilipsInfo(
        series=info,
        scale_slope=written,
        scale_intercept=np.array(intercepts, dtype=np.float64) if scale_intercept else None,
    )
