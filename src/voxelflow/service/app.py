"""The ASGI application: routes, authentication, CORS, and the one place errors become answers.

Routes stay thin (parse the request, call the library on a render thread, encode the answer);
every error, whatever raised it, is turned into a status code and a JSON problem body
(RFC 9457) here, so no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InstanceError, StoreError, UpstreamError, VolumeNotFoundError, VoxelflowError
from ..store import VolumeStore
from ..store.layout import BOOKKEEPING
from .cache import VolumeCache
from .catalog import LOOKUP, Catalog, NotStored
from .params import RequestError
from .scheduler import RenderScheduler
from .settings import ServiceSettings

__all__ = ["Service", "create_app", "problem"]

log = logging.getLogger("voxelflow.service")


def _resolve(arrival: asyncio.Future[bytes], data: bytes | None) -> None:
    if not arrival.done():
        if data is None:
            arrival.cancel()
        else:
            arrival.set_result(data)


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(status: int, detail: str, *, parameter: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """A JSON problem answer (``application/problem+json``) naming what was wrong."""
    body: dict[str, Any] = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    if parameter is not None:
        body["parameter"] = parameter
    return Response(json.dumps(body), status_code=status, media_type="application/problem+json", headers=headers)


def error_response(exc: BaseException) -> Response:
    """The answer to an exception raised while handling a request."""
    if isinstance(exc, RequestError):
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return problem(exc.status, str(exc), parameter=exc.parameter, headers=headers)
    if isinstance(exc, UpstreamError):
        if exc.status == 404:
            return problem(404, str(exc))
        return problem(502, str(exc) if exc.status is None else f"{exc} (upstream status {exc.status})")
    if isinstance(exc, VolumeNotFoundError):
        return problem(404, str(exc))
    if isinstance(exc, InstanceError):
        return problem(400, str(exc))
    if isinstance(exc, StoreError):
        # the request was fine; the stored volume is not (a lost or damaged chunk). The
        # message names files of the server: it goes to the log, not to the client.
        log.error("store error: %s", exc)
        key = getattr(exc, "key", None)
        what = f"the stored volume {key}" if key else "a stored volume"
        return problem(500, f"{what} cannot be read: a chunk is missing or damaged ({type(exc).__name__}); "
                            "the server log has the details")
    if isinstance(exc, VoxelflowError):
        return problem(400, str(exc))
    log.exception("unexpected error", exc_info=exc)
    return problem(500, "internal error; the server log has the details")


class Service:
    """What one process of the service holds: the store, its catalog, the volume cache and the
    render scheduler. Routes reach it as ``request.app.state.service``."""

    def __init__(self, store: VolumeStore, settings: ServiceSettings) -> None:
        self.store = store
        self.settings = settings
        self.catalog = Catalog(store, refresh_s=settings.refresh_s)
        self.cache = VolumeCache(settings.cache_bytes)
        self.scheduler = RenderScheduler(settings.render_threads, settings.queue_size, settings.deadline_s)
        self.upstream = None
        if settings.upstream:
            from .upstream import Upstream, read_auth

            headers = read_auth(settings.upstream_auth_file) if settings.upstream_auth_file else None
            self.upstream = Upstream(settings.upstream, headers=headers,
                                     connect_timeout=settings.upstream_connect_timeout_s,
                                     read_timeout=settings.upstream_read_timeout_s)
        self.disk_cache = None
        if self.upstream is not None and settings.cache_size:
            from .disk_cache import DiskCache

            self.disk_cache = DiskCache(self.writable_store, settings.cache_size)
        self._fetches: dict[tuple[str | None, str | None], asyncio.Future[None]] = {}
        # instances of a retrieval in progress: the staged file of each (for a request that
        # comes late) and the requests waiting for one; the retrieval's writer thread fills them
        self._arrivals = threading.Lock()
        self._staged: dict[str, Path] = {}
        self._waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes]]]] = {}
        self._receiver: Any = None
        if (store.path / BOOKKEEPING / "received").is_dir():
            # series received before a restart and not yet ingested are ingested now
            self.receiver  # noqa: B018 - made for its side effect

    @functools.cached_property
    def writable_store(self) -> VolumeStore:
        """The store opened for writing (once): retrieved and received series are ingested
        into it."""
        return VolumeStore(self.store.path)

    @property
    def receiver(self) -> Any:
        """The STOW-RS receiver (staging area and idle-series ingest), made on first use."""
        if self._receiver is None:
            from .staging import SeriesCollector, Staging

            staging = Staging(self.writable_store, "received")
            self._receiver = SeriesCollector(staging, self.settings.receive_idle_s,
                                             on_ingested=lambda series, result: self.catalog.refresh())
        return self._receiver

    async def fetch(self, missing: NotStored, *, sop: str | None = None) -> bytes | None:
        """Retrieve what `missing` names from the upstream and ingest it; concurrent requests
        for the same study / series wait for one retrieval (other worker processes wait on the
        series' lock, then find it stored).

        With `sop`, return that instance's DICOM bytes as soon as the retrieval has staged it
        (the retrieval and the ingest go on; later requests wait for them), or None when the
        series was stored first (other worker processes' retrievals are not watched).

        Raises
        ------
        VolumeNotFoundError
            When the upstream does not hold it either. UpstreamError when the upstream fails.
        """
        name = (missing.study, missing.series)
        pending = self._fetches.get(name)
        if pending is None and missing.series is not None:
            # a request naming the series alone (/volumes/{series}) joins the retrieval of that
            # series that a request naming its study started, rather than looking it up again
            pending = next((f for (_, se), f in self._fetches.items() if se == missing.series), None)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._fetch, missing.study, missing.series))
            self._fetches[name] = pending
            pending.add_done_callback(functools.partial(self._fetched, name))
        if sop is None:
            await asyncio.shield(pending)
            return None
        arrival = self._arrival(sop)
        done, _ = await asyncio.wait({pending, arrival}, return_when=asyncio.FIRST_COMPLETED)
        if arrival in done and not arrival.cancelled():
            return arrival.result()
        self._forget(sop, arrival)
        await asyncio.shield(pending)  # raises what the retrieval met
        return None

    def _arrival(self, sop: str) -> asyncio.Future[bytes]:
        """A future of `sop`'s bytes: done now if a retrieval staged it already."""
        loop = asyncio.get_running_loop()
        arrival: asyncio.Future[bytes] = loop.create_future()
        with self._arrivals:
            path = self._staged.get(sop)
            if path is None:
                self._waiting.setdefault(sop, []).append((loop, arrival))
                return arrival
        try:
            arrival.set_result(path.read_bytes())
        except OSError:  # ingested and removed meanwhile: the series is in the store now
            arrival.cancel()
        return arrival

    def _forget(self, sop: str, arrival: asyncio.Future[bytes]) -> None:
        with self._arrivals:
            waiting = [w for w in self._waiting.get(sop, []) if w[1] is not arrival]
            if waiting:
                self._waiting[sop] = waiting
            else:
                self._waiting.pop(sop, None)
        arrival.cancel()

    def _on_staged(self, staged: Any) -> None:
        """(the retrieval's writer thread) One instance staged: hand it to whoever waits."""
        with self._arrivals:
            self._staged[staged.sop] = staged.path
            if staged.sop not in self._waiting:
                return
        try:
            data: bytes | None = staged.path.read_bytes()
        except OSError:  # never fail the retrieval for it: the waiters wait for the store
            data = None
        self.arrived(staged.sop, data)

    # the retrieval's watch (upstream.InstanceWatch): the instances requests wait for reach
    # them as soon as they are received, before the parts in front of them are written

    def wanted(self) -> tuple[str, ...]:
        with self._arrivals:
            return tuple(self._waiting)

    def arrived(self, sop: str, data: bytes | None) -> None:
        """`sop`'s bytes to whoever waits for them (None: they wait for the store)."""
        with self._arrivals:
            waiting = self._waiting.pop(sop, [])
        for loop, arrival in waiting:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, arrival, data)

    def _fetched(self, name: tuple[str | None, str | None], pending: asyncio.Future[None]) -> None:
        self._fetches.pop(name, None)
        series = name[1]
        with self._arrivals:
            if not self._fetches:  # no retrieval left whose staged files these could be
                self._staged.clear()
        if not pending.cancelled() and pending.exception() is not None:
            # requests answered from an instance do not wait for the rest: say it here too
            log.warning("upstream: retrieval of %s failed: %s", series or name[0], pending.exception())

    def _fetch(self, study: str | None, series: str | None) -> None:
        from .upstream import fetch_series

        assert self.upstream is not None
        found = self.upstream.find_series(study=study, series=series)
        if not found:
            what = f"series {series}" if series else f"study {study}"
            raise VolumeNotFoundError(f"{what} is neither in the store nor upstream")
        store = self.writable_store
        for st, se, count in found:
            fetched = fetch_series(self.upstream, store, st, se, expected=count, on_staged=self._on_staged,
                                   watch=self)
            if fetched.retrieved and self.disk_cache is not None:
                self.disk_cache.retrieved(se)
        if self.disk_cache is not None:
            self.disk_cache.evict(keep=frozenset(se for _, se, _ in found))
        self.catalog.refresh()

    @contextlib.contextmanager
    def request_scope(self) -> Iterator[None]:
        """Around one request: the retrieved series it resolves are held against removal
        (:mod:`~voxelflow.service.disk_cache`) until it has answered."""
        if self.disk_cache is None:
            yield
            return
        cache = self.disk_cache
        held: set[str] = set()
        with contextlib.ExitStack() as stack:

            def hold(series: str) -> None:
                if series not in held:
                    held.add(series)
                    stack.enter_context(cache.reading(series))

            token = LOOKUP.set(hold)
            try:
                yield
            finally:
                LOOKUP.reset(token)

    async def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, str]:
        """`fn(*args)` on a render thread; returns its result and a ``Server-Timing`` value
        (time waiting for a thread, time rendering and encoding, in ms) for the answer."""
        queued = time.perf_counter()
        started: list[float] = []

        def timed() -> Any:
            started.append(time.perf_counter())
            return fn(*args)

        result = await self.scheduler.run(timed)
        done = time.perf_counter()
        return result, f"queue;dur={(started[0] - queued) * 1e3:.1f}, render;dur={(done - started[0]) * 1e3:.1f}"

    async def snapshot(self) -> Any:
        """The catalog now; a due refresh (a walk of the store) runs off the event loop, on a
        thread of its own rather than a render thread, so it never queues behind renders."""
        if self.catalog.due():
            return await asyncio.to_thread(self.catalog.snapshot)
        return self.catalog.snapshot()


def _public(path: str) -> bool:
    return path in ("/openapi.json", "/docs", "/healthz") or path.startswith("/viewer")


class _BearerAuth:
    """ASGI middleware: 401 without a bearer token, 403 with a wrong one (constant-time compare).

    Plain ASGI rather than Starlette's BaseHTTPMiddleware: it adds nothing to a request's path
    but one header comparison."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or _public(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip() or None
        if given is None:
            response = problem(401, "this server needs a bearer token (Authorization: Bearer <token>)",
                               headers={"WWW-Authenticate": 'Bearer realm="voxelflow"'})
        elif not hmac.compare_digest(given, self.token):
            response = problem(403, "the bearer token is not valid",
                               headers={"WWW-Authenticate": 'Bearer realm="voxelflow", error="invalid_token"'})
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


class _Errors:
    """ASGI middleware: whatever escapes a route becomes a JSON problem, never a traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            await error_response(exc)(scope, receive, send)


def handler(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A route whose errors are answered by :func:`error_response`; a study or series the
    store does not hold is first retrieved from the upstream, if there is one."""

    async def wrapped(request: Request) -> Response:
        service: Service = request.app.state.service
        with service.request_scope():
            return await _answer(request, service)

    async def _answer(request: Request, service: Service) -> Response:
        try:
            return await fn(request)
        except NotStored as missing:
            if service.upstream is None:
                return error_response(missing)
            try:
                # a route that can answer from one instance's own file does so as soon as the
                # retrieval has it, without waiting for the rest of the series and its ingest
                early = wrapped.from_instance  # type: ignore[attr-defined]
                sop = request.path_params.get("sop") if early is not None else None
                data = await service.fetch(missing, sop=sop)
                if data is not None:
                    response = await early(request, data)
                    if response is not None:
                        return response
                    await service.fetch(missing)
                return await fn(request)
            except Exception as exc:
                return error_response(exc)
        except Exception as exc:
            return error_response(exc)

    # set by a route that can render from one instance's bytes: (request, bytes) -> Response
    # or None (None: this instance needs the stored series)
    wrapped.from_instance = None  # type: ignore[attr-defined]
    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def create_app(store: str | os.PathLike[str] | VolumeStore, settings: ServiceSettings | None = None, **overrides: Any) -> Any:
    """The HTTP service over `store` as an ASGI application.

    Parameters
    ----------
    store : path or VolumeStore
        Opened read-only; volumes added, replaced or deleted while the app runs appear or leave
        within ``settings.refresh_s``.
    settings : ServiceSettings, optional
    **overrides
        Fields of :class:`ServiceSettings` (``token=``, ``cache_bytes=`` ...).

    Returns
    -------
    An ASGI app (Starlette), with ``app.state.service`` the :class:`Service`.

    Raises
    ------
    StoreError
        If `store` is not a readable volume store.
    """
    from . import dicomweb, docs, stow, viewer, volumes

    settings = settings or ServiceSettings()
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    if not isinstance(store, VolumeStore):
        if not os.path.isdir(store):
            raise StoreError(f"no volume store at {os.fspath(store)!r}")
        store = VolumeStore(store, read_only=True)
    service = Service(store, settings)

    routes = [
        *dicomweb.routes(),
        *stow.routes(),
        *volumes.routes(),
        *docs.routes(),
        *viewer.routes(),
        Route("/healthz", handler(_health), methods=["GET"]),
    ]
    middleware = [Middleware(_Errors)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Accept", "Content-Type"],
                expose_headers=["X-Plane-Center", "X-Plane-Row", "X-Plane-Column", "X-Plane-Spacing", "X-Plane-Size", "X-Array-Shape", "X-Array-Dtype", "Server-Timing"],
            )
        )
    if settings.token:
        middleware.append(Middleware(_BearerAuth, token=settings.token))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: _not_found, 405: _not_allowed},
        lifespan=_lifespan,
    )
    app.state.service = service
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    from .dicomweb import warm_up

    await asyncio.to_thread(warm_up, app.state.service.settings)
    yield
    service = app.state.service
    if service._fetches:
        # retrievals that requests no longer wait for (answered from their instance): finish
        # them, so that what was retrieved is ingested rather than left staged
        log.info("waiting for %d upstream retrieval(s) to finish", len(service._fetches))
        await asyncio.gather(*service._fetches.values(), return_exceptions=True)
    service.scheduler.close()
    if service._receiver is not None:
        service._receiver.close()
    if service.upstream is not None:
        service.upstream.close()


async def _health(request: Request) -> Response:
    service: Service = request.app.state.service
    snapshot = await service.snapshot()
    body = {"status": "ok", "volumes": len(snapshot.volumes), "pending_renders": service.scheduler.pending,
            "cache_bytes": service.cache.nbytes}
    return Response(json.dumps(body), media_type="application/json")


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem(404, f"no resource at {request.url.path[:200]}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return problem(405, f"{request.method} is not allowed on {request.url.path[:200]}")
