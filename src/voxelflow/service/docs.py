"""The OpenAPI document (``/openapi.json``) and a browsable page of it (``/docs``).

The document is written here as data, next to nothing else, and a test checks it against the
app's routes both ways. ``/docs`` is plain HTML made from the same data: no script, nothing
fetched from elsewhere, so it works on an air-gapped PACS network.
"""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .._version import __version__

__all__ = ["openapi", "routes"]

_P = {
    "window": "center,width[,function]: the VOI window in modality units (HU for CT); function linear (default), linear-exact or sigmoid. Default: the instance's own VOI (stored window or VOI LUT).",
    "viewport": "vw,vh or vw,vh,sx,sy,sw,sh (pixels): source region (sx, sy, |sw|, |sh|), negative sw / sh flip, fitted into vw x vh keeping the aspect ratio.",
    "quality": "JPEG quality 1..100 (default 90; above 95 is encoded at 95).",
    "accept": "Media type, instead of the Accept header.",
    "preset": "A named CT window: lung, mediastinum, soft_tissue, bone, brain, ... (instead of window).",
    "interp": "nearest, linear (default) or cubic.",
    "orientation": "axial, coronal or sagittal (instead of normal).",
    "position": "With orientation: the LPS coordinate (mm) along the view's axis (axial z, coronal y, sagittal x), or a point x,y,z.",
    "center": "x,y,z: LPS mm of the image centre (default: the volume's centre).",
    "normal": "x,y,z: LPS direction of the plane's normal (an oblique plane).",
    "up": "x,y,z: LPS direction shown at the top of the image (default superior, anterior for near-axial planes).",
    "size": "N or rows,columns: output pixels (default: covering the volume; 512 with an explicit center).",
    "spacing": "mm per pixel, one value or rows,columns (default: the volume's finest spacing).",
    "slab": "Slab thickness, mm (a thick slab around the plane).",
    "slab_spacing": "mm between slab samples (default: the volume's finest spacing).",
    "mode": "mip, minip, mean or sum.",
    "direction": "x,y,z: LPS direction the rays travel (default 0,1,0: the anterior view).",
    "azimuth": "Degrees about the superior axis from the anterior view (instead of direction).",
    "elevation": "Degrees towards superior (instead of direction).",
    "n": "Number of views (default 36).",
    "axis": "S (default), or x,y,z: the rotation axis.",
    "fps": "Frames per second of the animation (default 10).",
    "limit": "At most this many results.",
    "offset": "Skip this many results.",
    "Modality": "Only results with this modality.",
    "includefield": "Accepted and ignored: every attribute held is returned.",
    "fuzzymatching": "Accepted and ignored.",
}

_RENDER = ["window", "viewport", "quality", "accept"]
_MEDIA_RENDERED = ["image/jpeg", "image/png", "image/png;bits=16", "image/gif", "multipart/related"]
_MEDIA_VIEW = ["image/jpeg", "image/png", "image/png;bits=16", "application/octet-stream", "application/x-npy"]
_ST = "/dicom-web/studies/{study}"
_SE = _ST + "/series/{series}"
_IN = _SE + "/instances/{sop}"

#: (method, path, summary, query parameters, media types of a 200 answer)
ENDPOINTS: list[tuple[str, str, str, list[str], list[str]]] = [
    ("get", "/dicom-web/studies", "QIDO-RS: the studies in the store", ["limit", "offset", "includefield", "fuzzymatching", "Modality"], ["application/dicom+json"]),
    ("get", "/dicom-web/series", "QIDO-RS: every series", ["limit", "offset", "includefield", "fuzzymatching", "Modality"], ["application/dicom+json"]),
    ("get", _ST + "/series", "QIDO-RS: the study's series", ["limit", "offset", "includefield", "fuzzymatching", "Modality"], ["application/dicom+json"]),
    ("get", _SE + "/instances", "QIDO-RS: the series' instances, in slice order", ["limit", "offset", "includefield", "fuzzymatching"], ["application/dicom+json"]),
    ("get", _ST + "/thumbnail", "Thumbnail of the study (middle instance of its first series)", ["viewport", "quality", "accept"], ["image/jpeg", "image/png", "image/gif"]),
    ("get", _SE + "/rendered", "Every instance of the series rendered (multipart, or an animated GIF)", _RENDER, _MEDIA_RENDERED),
    ("get", _SE + "/thumbnail", "Thumbnail of the series (its middle instance)", ["viewport", "quality", "accept"], ["image/jpeg", "image/png", "image/gif"]),
    ("get", _IN + "/rendered", "The instance rendered", _RENDER, _MEDIA_RENDERED),
    ("get", _IN + "/thumbnail", "Thumbnail of the instance", ["viewport", "quality", "accept"], ["image/jpeg", "image/png", "image/gif"]),
    ("get", _IN + "/frames/{frames}/rendered", "Frames (1-based, comma-separated) rendered; several: multipart or GIF", _RENDER, _MEDIA_RENDERED),
    ("get", _IN + "/frames/{frames}/thumbnail", "Thumbnail of one frame", ["viewport", "quality", "accept"], ["image/jpeg", "image/png", "image/gif"]),
    ("get", "/volumes", "The stored volumes", [], ["application/json"]),
    ("get", "/healthz", "Liveness: volumes in the catalog, renders pending, cache bytes (no token needed)", [], ["application/json"]),
    ("get", "/volumes/{key}", "One volume: shape, spacing, affine, levels, findings, windows", [], ["application/json"]),
    ("get", "/volumes/{key}/mpr", "A plane or thick slab (MPR, MIP, MinIP); X-Plane-* headers say where its pixels lie",
     ["orientation", "position", "center", "normal", "up", "size", "spacing", "slab", "slab_spacing", "mode", "interp", "window", "preset", "quality", "accept"], _MEDIA_VIEW),
    ("get", "/volumes/{key}/projection", "A whole-volume projection (MIP by default)",
     ["direction", "azimuth", "elevation", "mode", "size", "spacing", "interp", "window", "preset", "quality", "accept"], _MEDIA_VIEW),
    ("get", "/volumes/{key}/spin", "A rotating projection, animated", ["n", "axis", "mode", "size", "spacing", "interp", "window", "preset", "fps", "accept"], ["image/gif", "image/apng"]),
    ("post", "/volumes/{key}/curved", "Curved MPR along a centerline. JSON body: centerline [[x,y,z],...] mm, width mm, mode straightened|stretched, spacing, up, slab, slab_mode, interp, window, preset",
     ["quality", "accept"], _MEDIA_VIEW),
    ("post", "/dicom-web/studies", "STOW-RS: store instances (body multipart/related; type=\"application/dicom\"). "
     "200 all stored, 202 some failed, 409 none stored; the body lists them (Referenced / Failed SOP Sequence). "
     "Each series is ingested once no instance of it arrived for receive_idle_s", [], ["application/dicom+json"]),
    ("post", _ST, "STOW-RS into one study: instances of another study fail (0xA900)", [], ["application/dicom+json"]),
]

_PATH_DOC = {
    "study": "Study Instance UID",
    "series": "Series Instance UID",
    "sop": "SOP Instance UID",
    "frames": "Frame numbers, 1-based, comma-separated",
    "key": "Volume key in the store (slashes kept), or a Series Instance UID stored as one volume",
}

_ERRORS = {
    "400": "A bad parameter or a request past a limit: `detail` says which and why, and `parameter` names the query parameter where one is at fault",
    "401": "No bearer token (when the server has one)",
    "403": "A wrong bearer token",
    "404": "Unknown study, series, instance or volume (in the store, and upstream when the server has one)",
    "415": "A request body of another media type (STOW-RS takes multipart/related of application/dicom)",
    "502": "The upstream archive failed, refused or timed out while retrieving a series the store did not hold",
    "406": "No acceptable media type",
    "503": "Busy: retry after the Retry-After header's seconds",
    "504": "The render did not finish within the deadline",
}


def openapi() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, summary, params, media in ENDPOINTS:
        parameters = [
            {"name": name, "in": "path", "required": True, "description": _PATH_DOC[name], "schema": {"type": "string"}}
            for name in _PATH_DOC
            if "{" + name + "}" in path
        ]
        parameters += [{"name": p, "in": "query", "required": False, "description": _P[p], "schema": {"type": "string"}} for p in params]
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {m: {} for m in media}}}
        responses.update({code: {"description": text, "content": {"application/problem+json": {}}} for code, text in _ERRORS.items()})
        if method == "post":
            responses["413"] = {"description": "The body is past the size limit"}
        paths.setdefault(path, {})[method] = {"summary": summary, "parameters": parameters, "responses": responses}
    return {
        "openapi": "3.1.0",
        "info": {"title": "voxelflow", "version": __version__,
                 "description": "DICOMweb rendered resources and server-side MPR / MIP over a voxelflow store."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }


async def openapi_json(request: Request) -> Response:
    return Response(json.dumps(openapi()), media_type="application/json")


async def docs_page(request: Request) -> Response:
    rows = []
    for method, path, summary, params, media in ENDPOINTS:
        items = "".join(f"<li><code>{html.escape(p)}</code>: {html.escape(_P[p])}</li>" for p in params)
        rows.append(
            f"<section><h2><span class=m>{method.upper()}</span> <code>{html.escape(path)}</code></h2>"
            f"<p>{html.escape(summary)}</p><p>Answers: {html.escape(', '.join(media))}</p>"
            + (f"<ul>{items}</ul>" if items else "") + "</section>"
        )
    errors = "".join(f"<li><b>{code}</b> {html.escape(text)}</li>" for code, text in _ERRORS.items())
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>voxelflow API</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "section{border-top:1px solid #ccc}.m{background:#236;color:#fff;padding:0 .3em}"
        "</style></head><body>"
        f"<h1>voxelflow {html.escape(__version__)} HTTP API</h1>"
        "<p>The machine-readable document: <a href=/openapi.json>/openapi.json</a>. Errors answer "
        f"<code>application/problem+json</code>:</p><ul>{errors}</ul>" + "".join(rows) + "</body></html>"
    )
    return HTMLResponse(page)


def routes() -> list[Route]:
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
    ]
