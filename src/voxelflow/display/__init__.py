"""The DICOM grayscale display pipeline (PS3.3 C.11): Modality LUT, VOI LUT, presentation.

- :class:`DisplayPipeline` (with :class:`Rescale`, :class:`LUT`, :class:`Window`,
  :class:`AutoWindow`): frozen values, read from a dataset or given explicitly, to/from dict.
- :func:`window`: numpy, dask (lazy) and zarr (chunk by chunk) arrays to display values through
  fused display tables (integer input) or one fused arithmetic pass (float input).
- :func:`render_frame`: one DICOM frame with the file's own pipeline (the core of DICOMweb
  ``/rendered``); :func:`write_preset_pngs`: a slice under named CT windows as PNGs.
- :func:`auto_window` and :data:`PRESETS`: automatic and named windows.
"""

from __future__ import annotations

from .apply import (
    LUT_MAX_ENTRIES,
    display_lut,
    display_values,
    pipeline_for,
    slice_pipeline,
    window,
)
from .auto import auto_window
from .pipeline import (
    AUTO_METHODS,
    FUNCTIONS,
    LUT,
    PRESETS,
    AutoWindow,
    DisplayPipeline,
    Rescale,
    Window,
    preset,
    voi_options,
)
from .render import parse_window, render_frame, write_preset_pngs

__all__ = [
    "AUTO_METHODS",
    "FUNCTIONS",
    "LUT",
    "LUT_MAX_ENTRIES",
    "PRESETS",
    "AutoWindow",
    "DisplayPipeline",
    "Rescale",
    "Window",
    "auto_window",
    "display_lut",
    "display_values",
    "parse_window",
    "pipeline_for",
    "preset",
    "render_frame",
    "slice_pipeline",
    "voi_options",
    "window",
    "write_preset_pngs",
]
