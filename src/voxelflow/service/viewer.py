"""The web viewer (``GET /viewer``): static files, and the little the page needs to know.

The page (``viewer/index.html``, ``viewer.js``, ``viewer.css``) is plain HTML, CSS and
JavaScript: no build step, nothing fetched from elsewhere, so it runs on an air-gapped PACS
network. Every pixel it shows is rendered by this service (``/volumes/{key}/mpr`` and
``/projection``); the page only draws crosshairs and labels over them.

The files are public (they hold no data), like ``/docs``: with a token, the page asks for it
once and sends it as a bearer header on every API request, never in a URL.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._version import __version__
from ..display import PRESETS
from .app import Service, problem

__all__ = ["routes"]

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}


def _files() -> dict[str, tuple[bytes, str]]:
    """Each static file's bytes and ETag, read once from the package."""
    folder = resources.files(__package__) / "viewer"
    out = {}
    for name in _TYPES:
        data = (folder / name).read_bytes()
        out[name] = (data, '"' + hashlib.sha256(data).hexdigest()[:20] + '"')
    return out


_FILES = _files()


def _static(request: Request, name: str) -> Response:
    data, etag = _FILES[name]
    # revalidated on every load, so a new version of the service never meets a stale page
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=_TYPES[name], headers=headers)


async def viewer_page(request: Request) -> Response:
    """GET /viewer/"""
    return _static(request, "index.html")


async def viewer_root(request: Request) -> Response:
    """GET /viewer: the page's relative links need the trailing slash."""
    query = ("?" + request.url.query) if request.url.query else ""
    return RedirectResponse("/viewer/" + query, status_code=308)


async def viewer_file(request: Request) -> Response:
    """GET /viewer/{name}"""
    name = request.path_params["name"]
    if name == "config.json":
        service: Service = request.app.state.service
        body = {
            "version": __version__,
            "token_required": bool(service.settings.token),
            # the CT windows the preset buttons offer, in HU
            "presets": {name: [w.center, w.width] for name, w in PRESETS.items()},
        }
        return Response(json.dumps(body), media_type="application/json", headers={"Cache-Control": "no-cache"})
    if name not in _FILES:
        return problem(404, f"no viewer file {name[:80]!r}")
    return _static(request, name)


def routes() -> list[Route]:
    return [
        Route("/viewer", viewer_root, methods=["GET"]),
        Route("/viewer/", viewer_page, methods=["GET"]),
        Route("/viewer/{name}", viewer_file, methods=["GET"]),
    ]
