"""voxelflow: DICOM decoding, windowing, resampling and MPR/MIP on chunked volumes.

The public API, re-exported. Names load on first access so ``import voxelflow`` stays fast
(no Numba, zarr or dask start-up until a function needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .errors import DecodeError, VoxelflowError

if TYPE_CHECKING:
    from .dicom.decode import decode
    from .dicom.index import Index, InstanceRow
    from .dicom.scan import scan
    from .display import (
        AutoWindow,
        DisplayPipeline,
        Window,
        auto_window,
        render_frame,
        window,
        write_preset_pngs,
    )
    from .store import VolumeStore
    from .resampling import reorient, resample
    from .volume import Volume

__all__ = [
    "__version__",
    "AutoWindow",
    "DisplayPipeline",
    "Window",
    "auto_window",
    "render_frame",
    "window",
    "write_preset_pngs",
    "DecodeError",
    "Index",
    "InstanceRow",
    "Volume",
    "VolumeStore",
    "VoxelflowError",
    "decode",
    "get_num_threads",
    "reorient",
    "resample",
    "scan",
    "set_num_threads",
]

_LAZY = {
    "AutoWindow": "voxelflow.display",
    "DisplayPipeline": "voxelflow.display",
    "Window": "voxelflow.display",
    "auto_window": "voxelflow.display",
    "render_frame": "voxelflow.display",
    "window": "voxelflow.display",
    "write_preset_pngs": "voxelflow.display",
    "decode": "voxelflow.dicom.decode",
    "scan": "voxelflow.dicom.scan",
    "Index": "voxelflow.dicom.index",
    "InstanceRow": "voxelflow.dicom.index",
    "Volume": "voxelflow.volume",
    "resample": "voxelflow.resampling",
    "reorient": "voxelflow.resampling",
    "VolumeStore": "voxelflow.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voxelflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
