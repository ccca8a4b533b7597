"""Received DICOM instances on disk, by series, until (and after) their series is ingested.

Whatever reaches voxelflow from an archive (a STOW-RS body, a C-STORE, a WADO-RS pull) is
written here first, each instance to its own file, synced and renamed into place before the
sender is told it is stored: a crash after the acknowledgement loses nothing, since the next
start ingests what it finds. Each file is checked on arrival with the scanner the ingest uses
(so an instance that would fail the ingest is refused to its sender, not lost later).

Layout under the store's bookkeeping folder::

    .voxelflow/<area>/<series UID>/<SOP Instance UID>.dcm

One instance is one file named by its UID, so an instance sent twice is stored once, and a
pull that stopped half-way keeps the instances it fetched.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from ..dicom.scan import scan, scan_bytes
from ..errors import InstanceError, StoreError, VoxelflowError
from ..ingest import IngestReport, ingest
from ..store import VolumeStore
from ..store.atomic import file_lock
from ..store.layout import BOOKKEEPING
from .catalog import check_uid
from .params import RequestError

__all__ = ["SeriesCollector", "StagedInstance", "Staging", "stored_series"]

log = logging.getLogger("voxelflow.service")

_SUFFIX = ".dcm"


def stored_series(store: VolumeStore, series: str) -> list[str]:
    """Keys of the volumes `store` holds for `series` (ingest names them ``<series UID>/...``)."""
    return [k for k in store.keys() if k.split("/", 1)[0] == series]


@dataclass(frozen=True)
class StagedInstance:
    """One instance as staged: its UIDs and file."""

    study: str
    series: str
    sop: str
    sop_class: str
    path: Path


def _uid(value: str | None, name: str) -> str:
    if not value:
        raise InstanceError(f"the instance has no {name}", failure=0xA900)
    try:
        return check_uid(value, name)
    except RequestError:
        raise InstanceError(f"{name} {value[:80]!r} is not a DICOM UID", failure=0xA900) from None


def _uids_of(source: Path | bytes) -> dict[str, str | None]:
    """The SOP Class / Instance UIDs of a refused file (or its bytes), where pydicom can read
    them: the sender is told which instance failed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source, stop_before_pixels=True, force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        found = {"sop_class": str(ds.get("SOPClassUID", "") or ""), "sop_instance": str(ds.get("SOPInstanceUID", "") or "")}
    except Exception:  # a file this broken names nothing; the refusal stands either way
        return {}
    return {k: v if v and len(v) <= 64 else None for k, v in found.items()}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staging:
    """The staged instances of one area (``"received"``, ``"pulls"``) of `store`; with
    `durable`, each instance is on disk (synced) when :meth:`stage_file` returns."""

    def __init__(self, store: VolumeStore, area: str, *, durable: bool = True) -> None:
        self.store = store
        # received instances are synced before they are acknowledged; a pull's need not be
        # (the upstream still holds them, and a crash only means fetching them again)
        self.durable = durable
        self.root = store.path / BOOKKEEPING / area
        self.root.mkdir(parents=True, exist_ok=True)

    def series_dir(self, series: str) -> Path:
        return self.root / check_uid(series, "series")

    def lock(self, series: str, *, blocking: bool = True):
        """Exclusive lock on one series of this area, across threads and processes: held while
        a series is retrieved or ingested."""
        return file_lock(self.root / f"{check_uid(series, 'series')}.lock", blocking=blocking)

    def new_file(self) -> Path:
        """A fresh temporary file name in this area, on the store's filesystem."""
        return self.root / f".incoming-{os.getpid()}-{uuid.uuid4().hex}"

    def stage_bytes(self, data: bytes | bytearray | memoryview) -> StagedInstance:
        """Check and stage one instance given as its Part 10 bytes."""
        tmp = self.new_file()
        with open(tmp, "wb") as f:
            f.write(data)
        return self.stage_file(tmp)

    def stage_file(self, tmp: Path, *, expect_series: str | None = None) -> StagedInstance:
        """Check the Part 10 file `tmp` (a :meth:`new_file`) and move it into its series.

        Raises
        ------
        InstanceError
            When the file is not a DICOM instance with pixel data and its UIDs, or (with
            `expect_series`) belongs to another series; `tmp` is removed.
        """
        try:
            found = self._check(tmp)
            if expect_series is not None and found.series != expect_series:
                raise InstanceError(f"the instance belongs to series {found.series}, not {expect_series}", failure=0xA900)
            folder = self.root / found.series
            folder.mkdir(exist_ok=True)
            target = folder / f"{found.sop}{_SUFFIX}"
            if self.durable:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, target)
            if self.durable:
                _fsync_dir(folder)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StagedInstance(found.study, found.series, found.sop, found.sop_class, target)

    @staticmethod
    def check_bytes(data: bytes) -> StagedInstance:
        """The check :meth:`stage_file` makes, of an instance still in memory (nothing is
        staged: ``path`` is that of no file).

        Raises
        ------
        InstanceError
            As :meth:`stage_file` does.
        """
        return Staging._check(Path("<instance bytes>"), data)

    @staticmethod
    def _check(path: Path, data: bytes | None = None) -> StagedInstance:
        index = scan(path, workers=1) if data is None else scan_bytes(data, str(path))
        for issues, failure in ((index.errors, 0xC000), (index.skipped, 0xC000), (index.no_pixels, 0x0122)):
            if issues:
                raise InstanceError(issues[0].reason, failure=failure, **_uids_of(path if data is None else data))
        if len(index.rows) != 1:
            raise InstanceError("not one DICOM instance", failure=0xC000)
        row = index.rows[0]
        return StagedInstance(
            study=_uid(row.study_instance_uid, "Study Instance UID"),
            series=_uid(row.series_instance_uid, "Series Instance UID"),
            sop=_uid(row.sop_instance_uid, "SOP Instance UID"),
            sop_class=str(row.sop_class_uid or ""),
            path=path,
        )

    def sops(self, series: str) -> set[str]:
        """SOP Instance UIDs staged for `series`."""
        folder = self.series_dir(series)
        if not folder.is_dir():
            return set()
        return {p.name[: -len(_SUFFIX)] for p in folder.iterdir() if p.name.endswith(_SUFFIX)}

    def newest(self, series: str) -> float | None:
        """When the newest staged instance of `series` arrived (file mtime); None if none is."""
        folder = self.root / series
        times = [p.stat().st_mtime for p in folder.iterdir() if p.name.endswith(_SUFFIX)] if folder.is_dir() else []
        return max(times, default=None)

    def series(self) -> dict[str, float]:
        """Every staged series and the time its newest instance arrived."""
        found = {folder.name: self.newest(folder.name) for folder in self.root.iterdir()
                 if folder.is_dir() and not folder.name.startswith(".")}
        return {name: t for name, t in found.items() if t is not None}

    def ingest(self, series: str) -> IngestReport:
        """Ingest every staged instance of `series` into the store, replacing the volumes it
        made before (instances may have been added since: a gap filled may join two volumes
        into one, so earlier volumes the ingest did not write again are removed).

        Raises
        ------
        StoreError
            When no volume could be written (every failure's reason in the message).
        """
        folder = self.series_dir(series)
        started = time.perf_counter()
        report = ingest([folder], self.store, overwrite=True)
        written = [v for v in report.volumes if v.status in ("written", "skipped")]
        reasons = [f"{key}: {why}" for key, why in report.failures]
        if not written:
            raise StoreError(f"series {series}: no volume ingested" + (f" ({'; '.join(reasons)})" if reasons else ""))
        for key in set(stored_series(self.store, series)) - {v.key for v in report.volumes}:
            self.store.delete(key)
        log.info("ingested series %s: %d volume(s), %d instance(s) in %.2f s%s", series, len(written),
                 len(self.sops(series)), time.perf_counter() - started,
                 f"; failures: {'; '.join(reasons)}" if reasons else "")
        return report

    def discard(self, series: str) -> None:
        shutil.rmtree(self.series_dir(series), ignore_errors=True)


class SeriesCollector:
    """Ingests each staged series of a :class:`Staging` once no instance of it has arrived for
    `idle_s` seconds, on a thread of its own. Series staged before a restart (the process died
    between an acknowledgement and the ingest) are ingested at start.

    `on_ingested(series, report_or_error)` is called after each attempt (tests, logs).
    """

    def __init__(
        self,
        staging: Staging,
        idle_s: float,
        *,
        on_ingested: Callable[[str, IngestReport | VoxelflowError], None] | None = None,
    ) -> None:
        self.staging = staging
        self.idle_s = float(idle_s)
        self.on_ingested = on_ingested
        self._lock = threading.Condition()
        self._arrived: dict[str, float] = {s: time.monotonic() - max(0.0, time.time() - t)
                                           for s, t in staging.series().items() if not self._done(s, t)}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="voxelflow-series-collector", daemon=True)
        self._thread.start()

    def _done(self, series: str, newest: float) -> bool:
        # a series whose sources are older than its ingest marker was ingested already
        marker = self.staging.root / f"{series}.ingested"
        try:
            return marker.stat().st_mtime >= newest
        except OSError:
            return False

    def arrived(self, series: str) -> None:
        """An instance of `series` was staged now: its ingest waits `idle_s` from now."""
        with self._lock:
            self._arrived[series] = time.monotonic()
            self._lock.notify()

    @property
    def pending(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._arrived)

    def flush(self) -> None:
        """Ingest every pending series now, whatever its idle time (on this thread)."""
        with self._lock:
            todo = list(self._arrived)
            self._arrived.clear()
        for series in todo:
            self._ingest(series)

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    return
                now = time.monotonic()
                due = [s for s, t in self._arrived.items() if now - t >= self.idle_s]
                for s in due:
                    del self._arrived[s]
                if not due:
                    wait = min((self.idle_s - (now - t) for t in self._arrived.values()), default=None)
                    self._lock.wait(timeout=None if wait is None else max(0.01, wait))
                    continue
            for series in due:
                self._ingest(series)

    def _ingest(self, series: str) -> None:
        marker = self.staging.root / f"{series}.ingested"
        result: IngestReport | VoxelflowError
        try:
            with self.staging.lock(series):
                newest = self.staging.newest(series)
                if newest is None or self._done(series, newest):
                    return  # another process ingested it meanwhile, or it was discarded
                started = time.time()
                result = self.staging.ingest(series)
                marker.touch()
                os.utime(marker, (started, started))
        except VoxelflowError as exc:
            log.error("series %s not ingested: %s", series, exc)
            result = exc
        except Exception as exc:  # the collector thread must survive any series
            log.exception("series %s not ingested", series)
            result = StoreError(f"series {series}: unexpected {type(exc).__name__}: {exc}")
        if self.on_ingested is not None:
            self.on_ingested(series, result)
