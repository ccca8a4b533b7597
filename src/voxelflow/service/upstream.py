"""An upstream DICOMweb archive (Orthanc, dcm4chee, a cloud PACS) as the source of series.

:class:`Upstream` finds series (QIDO-RS) and retrieves them (WADO-RS, multipart/related, in
their stored transfer syntax) into a :class:`~voxelflow.service.staging.Staging` area, one
instance file at a time as the answer streams. :func:`fetch_series` is the one retrieval the
service (``serve --upstream``) and the CLI (``voxelflow pull``) share: under the series' lock,
so concurrent requests for one series (threads or worker processes) make one retrieval; only
a complete series is ingested, so a half-retrieved one is never visible in the store; what a
stopped pull fetched stays staged and is not fetched again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import InstanceError, ParameterError, UpstreamError
from ..ingest import IngestReport
from ..progress import Reporter
from ..store import VolumeStore
from .catalog import check_uid
from .multipart import MultipartError, MultipartParser, boundary_of, media_type
from .staging import Staging, stored_series

__all__ = ["FetchResult", "InstanceWatch", "Upstream", "fetch_series", "read_auth"]

log = logging.getLogger("voxelflow.service")

#: The stored transfer syntax, whatever it is: no transcoding by the archive.
_ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: How many bytes receiving may run ahead of writing them to the staging files (they wait in
#: memory meanwhile): one retrieval holds at most about this much.
_READ_AHEAD = 256 << 20
#: A part's UIDs are looked for in its first bytes (its header).
_HEAD = 64 << 10


def read_auth(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``Authorization`` header for the upstream, from a file: a bare token (sent as
    ``Bearer <token>``) or a whole header value (``Basic ...``, ``Bearer ...``)."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ParameterError(f"--upstream-auth-file {os.fspath(path)!r}: {exc.strerror or exc}") from None
    if not text or "\n" in text:
        raise ParameterError(f"--upstream-auth-file {os.fspath(path)!r}: expected one line (a token or an Authorization value)")
    scheme = text.split(" ", 1)[0].lower()
    return {"Authorization": text if scheme in ("bearer", "basic") and " " in text else f"Bearer {text}"}


@dataclass
class FetchResult:
    """One series retrieved and ingested (or found already stored)."""

    study: str
    series: str
    instances: int = 0
    bytes: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)
    report: IngestReport | None = None
    retrieved: bool = True


def _uid_value(item: Mapping[str, Any], tag: str) -> str | None:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else None


class Upstream:
    """A DICOMweb base URL (``http://host:8042/dicom-web``) with its settings.

    Parameters
    ----------
    url : str
        The base URL (``http`` or ``https``).
    headers : mapping, optional
        Sent with every request (an ``Authorization`` header, see :func:`read_auth`).
    connect_timeout, read_timeout : float
        Seconds to connect, and between two reads of an answer.
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0) -> None:
        import httpx

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ParameterError(f"upstream {url!r}: expected an http(s) DICOMweb base URL")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ParameterError(f"upstream {name} must be a positive number of seconds, got {value!r}")
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=False,
        )
        self._httpx = httpx

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failed(self, what: str, exc: Exception) -> UpstreamError:
        kind = "timed out" if isinstance(exc, self._httpx.TimeoutException) else "failed"
        return UpstreamError(f"upstream {what} {kind}: {type(exc).__name__}: {exc}")

    def _json(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        try:
            answer = self._client.get(self.url + path, params=params, headers={"Accept": "application/dicom+json"})
        except self._httpx.HTTPError as exc:
            raise self._failed(f"QIDO-RS {path}", exc) from None
        if answer.status_code == 204:
            return []
        if answer.status_code != 200:
            raise UpstreamError(f"upstream QIDO-RS {path} answered {answer.status_code}", status=answer.status_code)
        try:
            found = answer.json()
        except ValueError:
            raise UpstreamError(f"upstream QIDO-RS {path} answered something that is not JSON") from None
        if not isinstance(found, list) or not all(isinstance(i, dict) for i in found):
            raise UpstreamError(f"upstream QIDO-RS {path} answered JSON that is not a list of data sets")
        return found

    def find_series(self, *, study: str | None = None, series: str | None = None) -> list[tuple[str, str, int | None]]:
        """``(study UID, series UID, instance count)`` of the series the upstream holds: those
        of `study`, or the one with UID `series` (in `study` if given). The count is the
        upstream's Number of Series Related Instances (None where it gives none)."""
        if study is None and series is None:
            raise ParameterError("find_series needs a study or a series UID")
        params = {"SeriesInstanceUID": check_uid(series, "series")} if series else {}
        path = f"/studies/{check_uid(study, 'study')}/series" if study else "/series"
        params["includefield"] = "0020000D,00201209"
        found = []
        for item in self._json(path, params):
            st, se = _uid_value(item, "0020000D") or study, _uid_value(item, "0020000E")
            count = _uid_value(item, "00201209")
            if st and se and (series is None or se == series):
                found.append((st, se, int(count) if count and count.isdigit() else None))
        return found

    def instances(self, study: str, series: str) -> list[str]:
        """SOP Instance UIDs of the series (QIDO-RS)."""
        found = self._json(f"/studies/{check_uid(study, 'study')}/series/{check_uid(series, 'series')}/instances",
                           {"includefield": "00080018"})
        return [sop for item in found if (sop := _uid_value(item, "00080018"))]

    def retrieve(self, path: str, staging: Staging, series: str, on_instance: Any = None,
                 watch: InstanceWatch | None = None) -> tuple[int, int]:
        """Stream the WADO-RS multipart answer at `path` into `staging`, each part to its own
        file (checked, synced, named by its SOP Instance UID); returns (instances, bytes).
        `on_instance(staged, bytes so far)` is called as each part is staged; the parts
        `watch` wants are handed to it as soon as they are received.

        Raises
        ------
        UpstreamError
            On a refused request, a timeout, a broken answer, or an instance that is not of
            `series` or not a DICOM image (nothing of it is kept).
        """
        writer = _PartWriter(staging, series, on_instance, watch)
        size = 0
        try:
            with self._client.stream("GET", self.url + path, headers={"Accept": _ACCEPT_DICOM}) as answer:
                if answer.status_code != 200:
                    raise UpstreamError(f"upstream WADO-RS {path} answered {answer.status_code}", status=answer.status_code)
                parser = MultipartParser(boundary_of(answer.headers.get("content-type", "")))
                for chunk in answer.iter_raw():
                    size += len(chunk)
                    for event, value in parser.feed(chunk):
                        if event == "part":
                            kind = media_type(value.get("content-type", "application/dicom"))
                            if kind != "application/dicom":
                                raise UpstreamError(f"upstream WADO-RS {path}: a part is {kind}, not application/dicom")
                        writer.put(event, value, size)
                parser.close()
            writer.finish()
        except self._httpx.HTTPError as exc:
            raise self._failed(f"WADO-RS {path}", exc) from None
        except (MultipartError, InstanceError) as exc:
            raise UpstreamError(f"upstream WADO-RS {path}: {exc}") from None
        finally:
            writer.close()
        return writer.count, size


class InstanceWatch(Protocol):
    """Who wants some instances of a retrieval as soon as they have arrived, before they are
    written and staged (a request waiting to render one of them)."""

    def wanted(self) -> Collection[str]:
        """The SOP Instance UIDs waited for now."""

    def arrived(self, sop: str, data: bytes) -> None:
        """Instance `sop` arrived whole and passed the staging check (it is staged later, in
        its turn). Called on the receiving thread: it must neither block nor raise."""


class _PartWriter:
    """Writes and stages the parts of one answer on a thread of its own, so that receiving
    the next part overlaps writing the last (file writes and socket reads both release the
    GIL); receiving runs at most `read_ahead` bytes ahead of writing.

    Writing new files is the slower of the two (filling fresh page cache), so a part that
    `watch` wants is looked for as it is received: whoever waits for it gets it then, not
    once every part before it is written."""

    def __init__(self, staging: Staging, series: str, on_instance: Any, watch: InstanceWatch | None = None,
                 read_ahead: int = _READ_AHEAD) -> None:
        self.staging = staging
        self.series = series
        self.on_instance = on_instance
        self.watch = watch
        self.read_ahead = read_ahead
        self.count = 0
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue[tuple[str, Any, int] | None] = queue.SimpleQueue()
        self._room = threading.Condition()
        self._ahead = 0  # bytes received and not yet written
        self._hold = False
        # the part being received, while it may be one `watch` wants: its UIDs and its data
        self._keys: list[bytes] | None = None
        self._chunks: list[bytes] = []
        self._head = 0
        self._hit = False
        self._thread = threading.Thread(target=self._run, name="voxelflow-upstream-writer", daemon=True)
        self._thread.start()

    def put(self, event: str, value: Any, size: int) -> None:
        if self.error is not None:
            raise self.error
        if self.watch is not None:
            self._look(event, value)
        if event == "data":
            with self._room:
                while self._ahead > self.read_ahead:
                    if self.error is not None:
                        raise self.error
                    self._room.wait()
                self._ahead += len(value)
                if self._ahead > self.read_ahead:
                    self._room.notify_all()  # a writer holding for a wanted part writes now
        self._queue.put((event, value, size))

    def _look(self, event: str, value: Any) -> None:
        """Follow the part being received; hand it to `watch` at its end if it is wanted."""
        if event == "part":
            wanted = self.watch.wanted()
            # (a request's path names any text; only UIDs can be found)
            self._keys = [sop.encode("ascii") for sop in wanted if sop and sop.isascii()] or None
            self._chunks, self._head, self._hit = [], 0, False
            self._hold_writes(self._keys is not None)
        elif self._keys is None:
            return
        elif event == "data":
            if not self._hit:
                # the UIDs are in the header, at the part's start; a match is only a candidate
                # (the UID may be a reference to it, or the prefix of another)
                self._hit = any(value.find(key, 0, _HEAD) >= 0 for key in self._keys)
                self._head += len(value)
                if not self._hit and self._head >= _HEAD:
                    self._keys, self._chunks = None, []
                    return
            self._chunks.append(value)
        else:
            data = b"".join(self._chunks) if self._hit else b""
            self._keys, self._chunks = None, []
            if not data:
                return
            try:
                found = Staging.check_bytes(data)
            except InstanceError:
                return  # refused when the writer stages it, in its turn
            if found.series == self.series:
                self.watch.arrived(found.sop, data)

    def _hold_writes(self, hold: bool) -> None:
        # while a request waits for a part, writing waits (up to the read-ahead): both cores
        # go to receiving, not to filling page cache for the parts in front of it
        if hold != self._hold:
            with self._room:
                self._hold = hold
                self._room.notify_all()

    def finish(self) -> None:
        """Wait for every part to be staged; raise what the writer met."""
        self._hold_writes(False)
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self._thread.is_alive():
            self._hold_writes(False)
            # the writer drains what is queued without writing it, then stops at the None
            self.error = self.error or UpstreamError("retrieval abandoned")
            self._queue.put(None)
            self._thread.join()

    def _wrote(self, n: int) -> None:
        with self._room:
            self._ahead -= n
            self._room.notify_all()

    def _run(self) -> None:
        tmp: Path | None = None
        out = None
        try:
            while (item := self._queue.get()) is not None:
                if self.error is not None:
                    continue  # drain: the receiving thread raises it
                event, value, size = item
                if event == "part":
                    tmp = self.staging.new_file()
                    out = open(tmp, "wb")  # noqa: SIM115 - closed at the part's end
                elif event == "data":
                    if self._hold:
                        with self._room:
                            while self._hold and self._ahead <= self.read_ahead:
                                self._room.wait()
                    out.write(value)
                    self._wrote(len(value))
                else:
                    out.close()
                    out = None
                    staged = self.staging.stage_file(tmp, expect_series=self.series)
                    tmp = None
                    self.count += 1
                    if self.on_instance is not None:
                        self.on_instance(staged, size)
        except BaseException as exc:  # noqa: BLE001 - handed to the receiving thread, which raises it
            with self._room:
                self.error = exc
                self._room.notify_all()
            while self._queue.get() is not None:
                pass
        finally:
            if out is not None:
                out.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)


def fetch_series(
    upstream: Upstream,
    store: VolumeStore,
    study: str,
    series: str,
    *,
    expected: int | None = None,
    reporter: Reporter | None = None,
    on_staged: Any = None,
    watch: InstanceWatch | None = None,
) -> FetchResult:
    """Retrieve `series` of `study` from `upstream` and ingest it into `store`, unless the
    store holds it already.

    Instances staged by an earlier, interrupted retrieval are kept and not fetched again. The
    series is ingested only once every instance the upstream lists is staged; then its staged
    files are removed. `expected` (the instance count :meth:`Upstream.find_series` gave)
    spares a first retrieval the instance-level query: the series is complete when that many
    instances of it arrived. `on_staged(instance)` is called (on the retrieval's writer
    thread) with each :class:`~voxelflow.service.staging.StagedInstance` as it is staged;
    `watch` is handed the instances it wants as soon as they are received (see
    :class:`InstanceWatch`).

    Raises
    ------
    UpstreamError
        When the upstream fails or the retrieval is incomplete (what was fetched stays staged).
    StoreError
        When no volume could be ingested from the series.
    """
    check_uid(study, "study")
    check_uid(series, "series")
    staging = Staging(store, "pulls", durable=False)
    result = FetchResult(study, series)
    with staging.lock(series):
        keys = stored_series(store, series)
        if keys:  # another request or process fetched it while this one waited for the lock
            result.keys, result.retrieved = keys, False
            return result
        started = time.perf_counter()
        have = staging.sops(series)
        if have or not expected:
            wanted = upstream.instances(study, series)
            if not wanted:
                raise UpstreamError(f"upstream has no instance of series {series} in study {study}", status=404)
        else:  # nothing staged: the count is enough, and the instance query costs ~1 ms an instance
            wanted = [""] * expected
        missing = [sop for sop in wanted if sop not in have]
        progress = None if reporter is None else reporter(f"retrieving {series}", "instances")
        done = len(wanted) - len(missing)

        def on_instance(staged: Any, size: int) -> None:
            nonlocal done
            done += 1
            if on_staged is not None:
                on_staged(staged)
            if progress is not None:
                if hasattr(progress, "note"):
                    progress.note = f"{(result.bytes + size) / 1e6:.1f} MB"
                progress(min(done, len(wanted)), len(wanted))

        base = f"/studies/{study}/series/{series}"
        if len(missing) * 2 >= len(wanted):  # most of it: one request for the whole series
            result.instances, result.bytes = upstream.retrieve(base, staging, series, on_instance, watch)
        else:  # resuming: only what is missing, one instance at a time
            for sop in missing:
                n, size = upstream.retrieve(f"{base}/instances/{sop}", staging, series, on_instance, watch)
                result.instances += n
                result.bytes += size
        staged = staging.sops(series)
        if not all(wanted) and len(staged) != len(wanted):  # counted, not listed: now list them
            wanted = upstream.instances(study, series)
        lacking = set(wanted) - staged if all(wanted) else set()
        if lacking:
            raise UpstreamError(f"upstream gave {len(wanted) - len(lacking)} of the {len(wanted)} instances of series "
                                f"{series}; {len(lacking)} missing (e.g. {min(lacking)})")
        if progress is not None:
            progress(len(wanted), len(wanted))
        fetched = time.perf_counter()
        result.report = staging.ingest(series)
        ingested = time.perf_counter()
        staging.discard(series)
        result.keys = stored_series(store, series)
        result.seconds = time.perf_counter() - started
        log.info("upstream: series %s retrieved (%d instances, %.1f MB) in %.2f s, ingested in %.2f s, staging "
                 "removed in %.2f s", series, result.instances, result.bytes / 1e6, fetched - started,
                 ingested - fetched, time.perf_counter() - ingested)
        return result
