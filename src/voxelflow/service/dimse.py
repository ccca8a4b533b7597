"""DIMSE: a storage SCP that an archive routes series to by C-STORE (``voxelflow listen``).

Every instance received is checked and staged on disk (:class:`~.staging.Staging`, area
``"received"``) before the sender gets its status, so an acknowledged instance survives a crash;
each series is ingested once no instance of it has arrived for ``idle_s`` seconds
(:class:`~.staging.SeriesCollector`), and a listener started on the same store ingests what an
earlier one left staged. C-ECHO (Verification) is answered too.

- :class:`StorageListener`: the SCP on a thread of its own (``start`` / ``stop``, or ``with``).
- :func:`listen`: the same in the foreground until SIGINT / SIGTERM.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, final

from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from ..errors import InstanceError, ParameterError, VoxelflowError
from ..ingest import IngestReport
from ..store import VolumeStore
from .staging import SeriesCollector, Staging

__all__ = ["StorageListener", "listen", "transfer_syntaxes"]

log = logging.getLogger("voxelflow.service")

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)
# RLE is decoded by our own kernel; the others need a pydicom plugin
_ENCAPSULATED = (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless,
                 JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless)

# PS3.4 B.2.3 (Storage): "Refused: Out of Resources"
_OUT_OF_RESOURCES = 0xA700

OnIngested = Callable[[str, "IngestReport | VoxelflowError"], None]


def transfer_syntaxes() -> list[UID]:
    """The transfer syntaxes offered for every storage SOP class.

    Only those this installation decodes: a sender offered a syntax we cannot decode would
    be told "stored" for an instance that then fails its ingest; refused at negotiation, it
    converts the instance or reports the failure itself.
    """
    found = list(_UNCOMPRESSED)
    for uid in _ENCAPSULATED:
        try:
            if uid == RLELossless or get_decoder(uid).is_available:
                found.append(uid)
        except NotImplementedError:
            pass
    return found


def _check_aet(aet: Any) -> str:
    # PS3.5 6.2 (AE): 16 characters of the default repertoire, no backslash or control
    # characters; leading and trailing spaces are not significant, so all-spaces is empty
    if not isinstance(aet, str) or not aet.strip(" ") or len(aet) > 16 or \
            any(c == "\\" or not " " <= c <= "~" for c in aet):
        raise ParameterError(f"aet {aet!r}: an AE title is 1 to 16 printable ASCII characters, without backslash")
    return aet.strip(" ")


def _check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port {port!r}: a TCP port is an integer from 0 (any free port) to 65535")
    return port


@final
class StorageListener:
    """A C-STORE / C-ECHO SCP that stages what it receives and ingests each series into `store`.

    Parameters
    ----------
    store : VolumeStore or path
        Where series are ingested; instances are staged under its bookkeeping folder.
    aet : str
        Our AE title; associations that call another title are rejected (a misrouted sender
        learns it at once instead of filling the wrong store).
    host : str
        The address to bind, always explicit (default loopback): a listener reachable from
        the network is a decision, not a default.
    port : int
        TCP port; 0 binds a free one (see :attr:`port` after :meth:`start`).
    idle_s : float
        Seconds without a new instance after which a series is ingested.
    on_ingested : callable, optional
        ``on_ingested(series_uid, report_or_error)`` after each ingest attempt.

    Raises
    ------
    ParameterError
        For an invalid AE title, port, host or idle time.
    """

    def __init__(
        self,
        store: VolumeStore | Any,
        *,
        aet: str = "VOXELFLOW",
        host: str = "127.0.0.1",
        port: int = 11112,
        idle_s: float = 10.0,
        on_ingested: OnIngested | None = None,
    ) -> None:
        self.aet = _check_aet(aet)
        if not isinstance(host, str) or not host.strip():
            raise ParameterError(f"host {host!r}: give the address to listen on (e.g. 127.0.0.1)")
        self.host = host
        self._port = _check_port(port)
        try:
            self.idle_s = float(idle_s)
        except (TypeError, ValueError):
            raise ParameterError(f"idle_s {idle_s!r}: seconds, a positive number") from None
        if not math.isfinite(self.idle_s) or self.idle_s <= 0:
            raise ParameterError(f"idle_s {idle_s!r}: seconds, a positive number")
        self.store = store if isinstance(store, VolumeStore) else VolumeStore(store)
        self.on_ingested = on_ingested
        self.staging = Staging(self.store, "received")
        self.collector: SeriesCollector | None = None
        self._server: Any = None
        self._counts: dict[int, tuple[Counter[str], Counter[int]]] = {}
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port once started (the real one when 0 was asked for)."""
        return self._server.server_address[1] if self._server is not None else self._port

    def _ae(self) -> AE:
        ae = AE(ae_title=self.aet)
        ae.require_called_aet = True
        syntaxes = transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        return ae

    def start(self) -> StorageListener:
        """Bind and serve on background threads; returns at once. Series staged by an earlier
        listener are queued for ingest.

        Raises
        ------
        OSError
            If the address cannot be bound (port in use, not an address of this machine).
        """
        if self._server is not None:
            return self
        self.collector = SeriesCollector(self.staging, self.idle_s, on_ingested=self.on_ingested)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_CLOSE, self._on_close)]
        ae = self._ae()
        try:
            self._server = ae.start_server((self.host, self._port), block=False, evt_handlers=handlers)
        except BaseException:
            self.collector.close()
            self.collector = None
            raise
        log.info("DIMSE listener %s on %s:%d, store %s, series ingested after %g s idle",
                 self.aet, self.host, self.port, self.store.path, self.idle_s)
        return self

    def stop(self) -> None:
        """Stop accepting and end open associations, then the collector. Series still waiting
        for their idle time stay staged: the next listener on this store ingests them (a
        sender cut off mid-series would otherwise get a partial volume now)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            # an instance being staged is finished first; its sender just gets no answer
            for assoc in server.ae.active_associations:
                assoc.abort()
        collector, self.collector = self.collector, None
        if collector is not None:
            collector.close()

    def __enter__(self) -> StorageListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_store(self, event: evt.Event) -> int:
        # the bytes as sent, with the file meta that makes them a Part 10 file: decoding and
        # re-encoding could change what the archive holds (private tags, odd VRs)
        stored, refused = self._tally(event.assoc)
        try:
            staged = self.staging.stage_bytes(event.encoded_dataset(include_meta=True))
        except InstanceError as exc:
            log.warning("C-STORE from %s refused (0x%04X): %s", _peer(event), exc.failure, exc)
            refused[exc.failure] += 1
            return exc.failure
        except OSError as exc:
            log.error("C-STORE from %s not staged: %s", _peer(event), exc)
            refused[_OUT_OF_RESOURCES] += 1
            return _OUT_OF_RESOURCES
        stored[staged.series] += 1
        collector = self.collector
        if collector is not None:  # else stopping: the next start ingests what is staged
            collector.arrived(staged.series)
        return 0x0000

    def _tally(self, assoc: Any) -> tuple[Counter[str], Counter[int]]:
        with self._lock:
            return self._counts.setdefault(id(assoc), (Counter(), Counter()))

    def _on_close(self, event: evt.Event) -> None:
        with self._lock:
            counts = self._counts.pop(id(event.assoc), None)
        if counts is None:
            return
        stored, refused = counts
        for series, n in stored.items():
            log.info("received %d instance(s) of series %s from %s", n, series, _peer(event))
        if refused:
            log.warning("refused %d instance(s) from %s (%s)", sum(refused.values()), _peer(event),
                        ", ".join(f"0x{s:04X}: {n}" for s, n in sorted(refused.items())))


def _peer(event: evt.Event) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.ae_title} ({requestor.address}:{requestor.port})"


def listen(store: VolumeStore | Any, *, aet: str = "VOXELFLOW", host: str = "127.0.0.1", port: int = 11112,
           idle_s: float = 10.0) -> None:
    """Run a :class:`StorageListener` until SIGINT or SIGTERM (``voxelflow listen``).

    Must be called from the main thread (it installs the signal handlers, and restores the
    previous ones on return). Received instance counts per series and each ingest are logged
    to the ``voxelflow.service`` logger.

    Raises
    ------
    ParameterError
        For an invalid AE title, port, host or idle time.
    OSError
        If the address cannot be bound.
    """
    stop = threading.Event()
    listener = StorageListener(store, aet=aet, host=host, port=port, idle_s=idle_s)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: stopping the DIMSE listener", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with listener:
            # a timed wait: the handler runs on this thread between waits
            while not stop.wait(0.5):
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
