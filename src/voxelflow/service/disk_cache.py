"""Series retrieved from the upstream, kept in the store within a byte bound (``--cache-size``).

The store is then a cache of the archive: once the series retrieved from the upstream hold
more than the bound, the least recently used are removed (a later request retrieves them
again). Only retrieved series are ever removed: a volume ingested from local files or received
by STOW-RS / C-STORE has no other copy here, and is never touched.

Each retrieved series has a marker, ``.voxelflow/retrieved/<series UID>``, whose modification
time is its last use, and a lock file beside it. A request holds the lock shared while it reads
the series (in whichever worker process); removal takes it exclusively without waiting and
passes over a series that is being read, so no request ever loses the volume under it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..store import VolumeStore
from ..store.atomic import file_lock
from ..store.layout import BOOKKEEPING, volume_path
from .staging import stored_series

__all__ = ["DiskCache"]

log = logging.getLogger("voxelflow.service")

#: A series' last use is written at most this often per process (seconds).
_TOUCH_S = 1.0


def _folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


class DiskCache:
    """The retrieved series of `store`, at most `budget` bytes on disk."""

    def __init__(self, store: VolumeStore, budget: int) -> None:
        self.store = store
        self.budget = int(budget)
        self.root = store.path / BOOKKEEPING / "retrieved"
        self.root.mkdir(parents=True, exist_ok=True)
        self._touched: dict[str, float] = {}

    def _marker(self, series: str) -> Path:
        return self.root / series

    def _lock(self, series: str, **kwargs: bool) -> contextlib.AbstractContextManager[bool]:
        return file_lock(self.root / f"{series}.lock", **kwargs)

    def retrieved(self, series: str) -> None:
        """`series` was just retrieved into the store: it counts against the bound."""
        self._marker(series).touch()

    @contextlib.contextmanager
    def reading(self, series: str) -> Iterator[None]:
        """Held while a request reads `series`: it is not removed meanwhile, and its last use
        is now."""
        marker = self._marker(series)
        if not marker.exists():  # not a retrieved series: never removed, nothing to hold
            yield
            return
        with self._lock(series, shared=True):
            now = time.monotonic()
            if now - self._touched.get(series, -1e9) >= _TOUCH_S:
                self._touched[series] = now
                with contextlib.suppress(OSError):
                    os.utime(marker)
            yield

    def series_bytes(self, series: str) -> int:
        return sum(_folder_bytes(volume_path(self.store.path, key)) for key in stored_series(self.store, series))

    def evict(self, keep: frozenset[str] = frozenset()) -> list[str]:
        """Remove least recently used retrieved series until the rest fit the budget; never
        one in `keep` or one a request is reading. Returns the series removed."""
        used = []
        for marker in self.root.iterdir():
            if marker.suffix != ".lock":
                with contextlib.suppress(OSError):
                    used.append((marker.stat().st_mtime, marker.name))
        sizes = {series: self.series_bytes(series) for _, series in used}
        total = sum(sizes.values())
        removed = []
        for last_used, series in sorted(used):
            if total <= self.budget:
                break
            if series in keep:
                continue
            with self._lock(series, blocking=False) as free:
                if not free:
                    log.info("cache: series %s is being read; kept", series)
                    continue
                for key in stored_series(self.store, series):
                    self.store.delete(key)
                self._marker(series).unlink(missing_ok=True)
            total -= sizes[series]
            removed.append(series)
            log.info("cache: evicted series %s (%.1f MB, last used %.0f s ago); %.1f of %.1f MB held", series,
                     sizes[series] / 1e6, time.time() - last_used, total / 1e6, self.budget / 1e6)
        return removed
