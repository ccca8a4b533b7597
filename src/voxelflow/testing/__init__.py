"""Phantom DICOM generators for tests, the demo and benchmarks.

- :func:`phantom_volume`: a 3-D torso phantom (CT Hounsfield units or MR intensities).
- :func:`write_series`: a CT / MR DICOM series of it, with orientation, ordering, spacing,
  rescale, windowing, photometric and transfer syntax variations; returns :class:`SeriesInfo`,
  the ground truth a reader must reconstruct.
- :func:`write_mosaic_series`: a Siemens MOSAIC fMRI run (slices tiled in one image per time
  point, CSA header); returns :class:`MosaicInfo`.
- :func:`write_colour_series`: a colour (RGB / YBR) series with a geometry, a Siemens colour
  FA map by default; returns :class:`ColourSeries`.
- :mod:`voxelflow.testing.vendors`: classic 4-D MR series (fMRI, diffusion, multi-echo) as
  Siemens, GE, Philips and Canon encode them.
- :func:`dataset_from_array`: any array as a DICOM SOP instance in any pixel layout and
  transfer syntax; :func:`save_dataset` writes it.

Nothing here imports hypothesis; the strategies live in ``voxelflow.testing.strategies``.
"""

from __future__ import annotations

from .datasets import (
    TRANSFER_SYNTAXES,
    available_transfer_syntaxes,
    dataset_from_array,
    save_dataset,
)
from .colour import ColourSeries, colour_volume, write_colour_series
from .mosaic import MosaicInfo, csa2_header, write_mosaic_series
from .phantom import TISSUES, phantom_volume
from .series import ORIENTATIONS, SeriesInfo, write_series

__all__ = [
    "ColourSeries",
    "MosaicInfo",
    "ORIENTATIONS",
    "SeriesInfo",
    "TISSUES",
    "TRANSFER_SYNTAXES",
    "available_transfer_syntaxes",
    "colour_volume",
    "csa2_header",
    "dataset_from_array",
    "phantom_volume",
    "save_dataset",
    "write_colour_series",
    "write_mosaic_series",
    "write_series",
]
