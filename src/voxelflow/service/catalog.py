"""The store as DICOMweb sees it: studies, series and SOP instances, each resolved to a volume
and a slice, built from the volumes' stored metadata and refreshed when the store changes.

Each volume's metadata is read once per process and kept while the volume's folder keeps its
identity (inode and change time); a replaced or deleted volume leaves the catalog at the next
refresh. The catalog is an immutable snapshot: a refresh builds a new one and swaps it in, so a
request holds one consistent view whatever happens meanwhile.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError, VolumeNotFoundError
from ..store import VolumeStore
from ..store.checked_store import folder_identity
from ..store.layout import volume_path
from ..volume import Volume
from .params import RequestError

__all__ = ["Catalog", "CatalogSnapshot", "InstanceRef", "NotStored", "VolumeEntry", "check_uid"]

log = logging.getLogger("voxelflow.service")

#: Called with the series UID of each volume a request resolves (the app sets it per request,
#: to hold the series against removal while the request reads it).
LOOKUP: ContextVar[Callable[[str], None] | None] = ContextVar("voxelflow_catalog_lookup", default=None)


def _looked_up(entries: Iterable[VolumeEntry]) -> None:
    note = LOOKUP.get()
    if note is not None:
        for entry in entries:
            if entry.series:
                note(entry.series)


# PS3.5 9.1: components of digits without leading zeros, separated by dots, 64 characters at most
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def check_uid(value: str, name: str) -> str:
    """`value` if it is a DICOM UID; else a 400 RequestError naming `name`. Checked before any
    lookup."""
    if len(value) > 64 or not _UID.fullmatch(value):
        raise RequestError(f"{name} {value[:80]!r} is not a DICOM UID (digits and dots, at most 64 characters)", parameter=name)
    return value


class NotStored(VolumeNotFoundError):
    """A study or series the store does not hold at all (an upstream archive may): `study`
    and `series` are the UIDs asked for (either may be None)."""

    def __init__(self, message: str, *, study: str | None = None, series: str | None = None) -> None:
        super().__init__(message)
        self.study = study
        self.series = series


@dataclass(frozen=True)
class InstanceRef:
    """Where one SOP instance's frames lie: ``slices[f]`` is the flat slice index (volume order)
    of frame ``f + 1``."""

    key: str
    slices: tuple[int, ...]


@dataclass(frozen=True)
class VolumeEntry:
    """One stored volume as the service keeps it: the lazily opened level-0 volume (metadata
    read once) and the identity of its folder when opened."""

    key: str
    volume: Volume
    identity: tuple[int, int] | None
    levels: tuple[Volume, ...] = field(repr=False)

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.volume.meta

    @property
    def study(self) -> str:
        return str(self.meta.get("study_instance_uid") or "")

    @property
    def series(self) -> str:
        return str(self.meta.get("series_instance_uid") or "")

    @property
    def slice_count(self) -> int:
        """Slices in volume order (for 4-D, t-major then z)."""
        n = 1
        for s in self.slice_axes:
            n *= int(s)
        return n

    @property
    def slice_axes(self) -> tuple[int, ...]:
        """The shape of the axes that number the slices: (z,) or (t, z)."""
        shape = self.volume.shape
        return tuple(shape[:-3] if self.volume.is_colour else shape[:-2])

    @property
    def plane(self) -> tuple[int, int]:
        """(rows, columns) of one slice (a colour slice has its RGB samples besides)."""
        rows, cols = self.volume.spatial_shape[1:]
        return int(rows), int(cols)


@dataclass(frozen=True)
class CatalogSnapshot:
    """The store's volumes and the DICOMweb hierarchy over them, at one moment."""

    volumes: Mapping[str, VolumeEntry]
    studies: Mapping[str, tuple[str, ...]]  # study UID -> series UIDs
    series: Mapping[str, tuple[str, ...]]  # series UID -> volume keys
    instances: Mapping[str, InstanceRef]  # SOP Instance UID -> where its frames are
    series_instances: Mapping[str, tuple[str, ...]]  # series UID -> SOP UIDs in slice order

    def volume(self, key: str) -> VolumeEntry:
        """The volume stored under `key`, or the one volume of the series with UID `key`."""
        entry = self.volumes.get(key)
        if entry is None and len(self.series.get(key, ())) == 1:
            entry = self.volumes[self.series[key][0]]
        if entry is not None:
            _looked_up([entry])
            return entry
        keys = self.series.get(key, ())
        if keys:
            raise RequestError(
                f"key: series {key} is stored as {len(keys)} volumes; name one: {', '.join(keys)}",
                parameter="key",
            )
        shown = key if len(key) <= 200 else key[:200] + "..."
        if len(key) <= 64 and _UID.fullmatch(key):
            raise NotStored(f"no volume or series {shown!r} in the store", series=key)
        raise VolumeNotFoundError(f"no volume or series {shown!r} in the store")

    def study_series(self, study: str) -> tuple[str, ...]:
        found = self.studies.get(check_uid(study, "study"))
        if found is None:
            raise NotStored(f"study {study} is not in the store", study=study)
        return found

    def series_in_study(self, study: str, series: str) -> tuple[VolumeEntry, ...]:
        """The volumes of `series`, which must belong to `study`."""
        check_uid(series, "series")
        try:
            held = self.study_series(study)
        except NotStored as exc:
            raise NotStored(str(exc), study=study, series=series) from None
        if series not in held:
            raise NotStored(f"series {series} is not in study {study}", study=study, series=series)
        entries = tuple(self.volumes[k] for k in self.series[series])
        _looked_up(entries)
        return entries

    def instance(self, study: str, series: str, sop: str) -> tuple[VolumeEntry, InstanceRef]:
        self.series_in_study(study, series)
        ref = self.instances.get(check_uid(sop, "instance"))
        if ref is None or self.volumes[ref.key].series != series:
            raise VolumeNotFoundError(f"instance {sop} is not in series {series}")
        return self.volumes[ref.key], ref


def _build(entries: Mapping[str, VolumeEntry]) -> CatalogSnapshot:
    studies: dict[str, set[str]] = defaultdict(set)
    series: dict[str, list[str]] = defaultdict(list)
    frames: dict[str, dict[int, int]] = defaultdict(dict)
    owner: dict[str, str] = {}
    order: dict[str, list[str]] = defaultdict(list)
    for key in sorted(entries):
        entry = entries[key]
        if not entry.series or not entry.study:
            continue  # not from DICOM: reachable as a volume, not through DICOMweb
        studies[entry.study].add(entry.series)
        series[entry.series].append(key)
        sops = list(entry.meta.get("sop_instance_uids") or ())
        if len(sops) != entry.slice_count:
            # slices were added or merged (filled gaps, resampled spacing): no slice is one
            # instance's any more, so the volume answers as a volume only
            continue
        numbers = entry.meta.get("frames") or [None] * len(sops)
        for k, (sop, frame) in enumerate(zip(sops, numbers)):
            if owner.setdefault(sop, key) != key:
                continue  # an instance split over volumes: its first volume answers for it
            frames[sop][0 if frame is None else int(frame)] = k
            if len(frames[sop]) == 1:
                order[entry.series].append(sop)
    instances = {
        sop: InstanceRef(owner[sop], tuple(by_frame[f] for f in sorted(by_frame)))
        for sop, by_frame in frames.items()
    }
    return CatalogSnapshot(
        volumes=dict(entries),
        studies={s: tuple(sorted(v)) for s, v in studies.items()},
        series={s: tuple(v) for s, v in series.items()},
        instances=instances,
        series_instances={s: tuple(v) for s, v in order.items()},
    )


class Catalog:
    """The current :class:`CatalogSnapshot` of a store, refreshed at most every `refresh_s`."""

    def __init__(self, store: VolumeStore, *, refresh_s: float = 2.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self._snapshot = _build({})
        self.refresh()

    def due(self) -> bool:
        """Whether the next :meth:`snapshot` looks at the store first."""
        return time.monotonic() - self._checked >= self.refresh_s

    def snapshot(self) -> CatalogSnapshot:
        """The catalog as of the last refresh (refreshing first when `refresh_s` has passed)."""
        if self.due():
            with self._lock:
                if self.due():  # another request may have refreshed while this one waited
                    self._refresh_locked()
        return self._snapshot

    def refresh(self) -> CatalogSnapshot:
        """Look at the store now: open added or changed volumes, drop the deleted."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> CatalogSnapshot:
        old = self._snapshot.volumes
        entries: dict[str, VolumeEntry] = {}
        for key in self.store.keys():
            identity = folder_identity(volume_path(self.store.path, key))
            kept = old.get(key)
            if kept is not None and kept.identity == identity and identity is not None:
                entries[key] = kept
                continue
            try:
                entries[key] = _open_entry(self.store, key, identity)
            except StoreError as exc:
                # a volume replaced or damaged meanwhile: left out until it reads again
                log.warning("volume %s left out of the catalog: %s", key, exc)
        changed = entries.keys() != old.keys() or any(entries[k] is not old.get(k) for k in entries)
        if changed:
            self._snapshot = _build(entries)
            log.info("catalog: %d volume(s), %d study(ies)", len(entries), len(self._snapshot.studies))
        self._checked = time.monotonic()
        return self._snapshot


def _open_entry(store: VolumeStore, key: str, identity: tuple[int, int] | None) -> VolumeEntry:
    base = store.open(key)
    count = int(base.source.levels) if base.source is not None else 1
    levels = (base, *(store.open(key, level=n) for n in range(1, count)))
    return VolumeEntry(key=key, volume=base, identity=identity, levels=levels)
