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

__all__ = [
    "__version__",
    "DecodeError",
    "VoxelflowError",
    "decode",
    "get_num_threads",
    "set_num_threads",
]

_LAZY = {
    "decode": "voxelflow.dicom.decode",
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
