"""The zarr v3 volume store: OME-Zarr 0.5 groups with pyramids, written atomically.

>>> store = VolumeStore("cohort.zarr")                 # doctest: +SKIP
>>> store.write("study/series/1", volume)              # doctest: +SKIP
>>> store.open("study/series/1", level=2).to_numpy()   # doctest: +SKIP

Modules: :mod:`.volume_store` (the store), :mod:`.layout` (keys and folders),
:mod:`.metadata` (OME-Zarr and voxelflow attributes), :mod:`.pyramid` (levels and their
geometry), :mod:`.atomic` (staging, locks, rename), :mod:`.chunkwise` (chunk-by-chunk copies),
:mod:`.checked_store` (the one checked chunk reader: missing, damaged or replaced chunks
raise), :mod:`.integrity` (metadata validated on open).
"""

from __future__ import annotations

from .layout import parse_key
from .pyramid import PYRAMID_TARGET, downsample_mean, level_affine, plan_pyramid
from .volume_store import COMPRESSORS, DEFAULT_CHUNKS, VolumeStore, WriteResult

__all__ = [
    "COMPRESSORS",
    "DEFAULT_CHUNKS",
    "PYRAMID_TARGET",
    "VolumeStore",
    "WriteResult",
    "downsample_mean",
    "level_affine",
    "parse_key",
    "plan_pyramid",
]
