"""Stored volumes kept decoded in memory, least recently used first out, within a byte budget.

Rendering one frame or one slab from a store decodes whole chunks (a 512 x 512 slice of a CT
stored in 64 x 256 x 256 chunks decodes 32 MiB); a viewer scrolling through a series asks for
its neighbours next. So the first request for a volume that fits the budget starts reading it
whole (one pass over its chunks, on a thread of its own; that request and any during the load
render from the store) and later requests render from memory. A volume larger than the budget
is never loaded: its requests read only the chunks they touch.

Pyramid levels are cached apart, each on first use: a copy in memory keeps a source that
opens its other levels through the cache, so renderers pick the same level for a cached
volume as for the stored one (:func:`voxelflow.render.choose_level`), and the pixels do not
depend on what happens to be cached.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..volume import Volume
from .catalog import VolumeEntry

__all__ = ["CachedSource", "VolumeCache"]

log = logging.getLogger("voxelflow.service")


@dataclass(frozen=True)
class CachedSource:
    """The ``Volume.source`` of a cached level: what :func:`~voxelflow.render.choose_level`
    asks of a stored volume's source (``level``, ``levels``, ``open``), answered from the cache."""

    cache: VolumeCache
    entry: VolumeEntry
    level: int

    @property
    def levels(self) -> int:
        return len(self.entry.levels)

    def open(self, level: int) -> Volume:
        return self.cache.volume(self.entry, level)


class _Filling:
    """A volume being loaded: its array so far, whole up to `done` along the first axis."""

    def __init__(self) -> None:
        self.out: np.ndarray | None = None
        self.done = 0


def _read_by_slabs(array: object, filling: _Filling | None = None) -> np.ndarray:
    """The whole stored array, read one slab of chunks (along the first axis) at a time: the
    store's reads go through one queue, and a request rendering from the store while the load
    runs then waits for one slab, not for the whole volume. `filling` follows the progress."""
    chunks = getattr(array, "chunks", None)
    if not chunks or not hasattr(array, "shape"):
        return np.asarray(array[...])
    out = np.empty(array.shape, array.dtype)
    filling = filling or _Filling()
    filling.out = out
    step = max(1, int(chunks[0]))
    for start in range(0, out.shape[0], step):
        out[start : start + step] = array[start : start + step]
        filling.done = min(out.shape[0], start + step)
    return out


class VolumeCache:
    """In-memory copies of stored volumes, at most `budget` bytes in all."""

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, object, int], _Filling] = {}
        self._items: OrderedDict[tuple[str, object, int], Volume] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def volume(self, entry: VolumeEntry, level: int = 0) -> Volume:
        """Pyramid `level` of `entry`'s volume in memory when it fits the budget, else the
        stored (lazy) one.

        The first request for a volume does not wait for it to be read whole: it renders from
        the store (reading only the chunks it touches, tens of ms where the whole read of a
        300-slice CT takes ~0.3-0.5 s) while one thread loads the volume for the requests after
        it; concurrent first requests start one load.
        """
        stored = entry.levels[level]
        size = int(np.prod(stored.shape, dtype=np.int64)) * stored.dtype.itemsize
        if size > self.budget:
            return stored
        name = (entry.key, entry.identity, level)
        with self._lock:
            found = self._items.get(name)
            if found is not None:
                self._items.move_to_end(name)
                return found
            if name in self._loading:
                return stored
            filling = self._loading[name] = _Filling()
        threading.Thread(target=self._load, args=(entry, level, name, size, filling), name="voxelflow-cache-load",
                         daemon=True).start()
        return stored

    def slice_values(self, entry: VolumeEntry, position: tuple[int, ...]) -> np.ndarray:
        """The 2-D slice at `position` (indices of the leading axes) of `entry`'s level 0: from
        memory once the volume is cached, or once its load has passed that slice, else from
        the store (what :meth:`volume` starts, this starts)."""
        volume = self.volume(entry)
        if isinstance(volume.array, np.ndarray):
            return volume.array[position]
        with self._lock:
            filling = self._loading.get((entry.key, entry.identity, 0))
        if filling is not None and filling.out is not None and position[0] < filling.done:
            return filling.out[position]
        return np.asarray(volume.array[position])

    def _load(self, entry: VolumeEntry, level: int, name: tuple[str, object, int], size: int,
              filling: _Filling) -> None:
        stored = entry.levels[level]
        try:
            t0 = time.perf_counter()
            loaded = Volume(_read_by_slabs(stored.array, filling), stored.affine, stored.meta,
                            source=CachedSource(self, entry, level))
            log.info("cache: loaded %s level %d (%.1f MB) in %.2f s", entry.key, level, size / 1e6,
                     time.perf_counter() - t0)
            with self._lock:
                self._items[name] = loaded
                self._bytes += size
                self._evict()
        except Exception as exc:  # a damaged volume: its requests keep reading the store (and say why)
            log.warning("cache: %s level %d not loaded: %s: %s", entry.key, level, type(exc).__name__, exc)
        finally:
            with self._lock:
                self._loading.pop(name, None)

    def _evict(self) -> None:
        # entries are only dropped from the dict: a request still rendering from one keeps its
        # array alive until it finishes
        while self._bytes > self.budget and len(self._items) > 1:
            name, volume = self._items.popitem(last=False)
            self._bytes -= volume.array.nbytes
            log.info("cache: evicted %s (%.1f MB)", name[0], volume.array.nbytes / 1e6)
