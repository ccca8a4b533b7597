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
    from .geometry import Plane
    from .render import (
        RenderLimits,
        Slab,
        curved_mpr,
        mpr,
        project,
        rotating_projection,
        save_animation,
        save_image,
    )
    from .resampling import reorient, resample
    from .store import VolumeStore
    from .volume import Volume

__all__ = [
    "AutoWindow",
    "DecodeError",
    "DisplayPipeline",
    "Index",
    "InstanceRow",
    "Plane",
    "RenderLimits",
    "Slab",
    "Volume",
    "VolumeStore",
    "VoxelflowError",
    "Window",
    "__version__",
    "auto_window",
    "curved_mpr",
    "decode",
    "get_num_threads",
    "mpr",
    "project",
    "render_frame",
    "reorient",
    "resample",
    "rotating_projection",
    "save_animation",
    "save_image",
    "scan",
    "set_num_threads",
    "window",
    "write_preset_pngs",
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
    "Plane": "voxelflow.geometry",
    "RenderLimits": "voxelflow.render",
    "Slab": "voxelflow.render",
    "mpr": "voxelflow.render",
    "project": "voxelflow.render",
    "rotating_projection": "voxelflow.render",
    "curved_mpr": "voxelflow.render",
    "save_image": "voxelflow.render",
    "save_animation": "voxelflow.render",
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
