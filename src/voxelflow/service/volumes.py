"""Volume resources (what DICOMweb lacks): the store's volumes, MPR / slab, projections, spins and
curved MPR, addressed by store key or series UID.

Images come out through the volume's own display pipeline, or the ``window`` / ``preset`` asked
for; ``application/octet-stream`` and ``application/x-npy`` give the float32 modality values
(HU for CT) for AI clients.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..display import pipeline_for, preset
from ..display.pipeline import DisplayPipeline
from ..geometry import Plane
from ..render import (
    CURVED_MODES,
    INTERPOLATIONS,
    RenderLimits,
    Slab,
    curved_mpr,
    encode_animation,
    encode_image,
    mpr,
    project,
    rotating_projection,
)
from ..render.slab import parse_mode
from .app import Service, handler, problem
from .catalog import VolumeEntry
from .params import (
    MediaType,
    RequestError,
    choose_media,
    only_known,
    parse_floats,
    parse_int,
    parse_positive,
    parse_quality,
    parse_window,
)

__all__ = ["routes"]

IMAGES = ("image/jpeg", "image/png", "image/png;bits=16", "application/octet-stream", "application/x-npy")
ANIMATIONS = ("image/gif", "image/apng")
_ORIENTATIONS = {"axial": (Plane.axial, 2), "coronal": (Plane.coronal, 1), "sagittal": (Plane.sagittal, 0)}
_COMMON = ("window", "preset", "quality", "accept", "interp")
_AXES = ("L", "R", "P", "A", "S", "I")


def _limits(service: Service, views: int = 1) -> RenderLimits:
    """The settings as the renderers' limits; with several `views`, each view's pixels are
    capped so that all of them stay within ``max_response_pixels`` (checked before rendering)."""
    s = service.settings
    pixels = min(s.max_output_pixels, max(1, s.max_response_pixels // views))
    return RenderLimits(max_side=s.max_side, max_pixels=pixels, max_samples=s.max_slab_samples,
                        max_views=s.max_frames)


def _display(entry: VolumeEntry, query: Mapping[str, Any], media: MediaType) -> DisplayPipeline | None:
    """The pipeline images go through (None for raw modality values)."""
    if media.kind in ("raw", "npy"):
        if "window" in query or "preset" in query:
            raise RequestError("window and preset apply to images; raw output holds modality values",
                               parameter="window" if "window" in query else "preset")
        return None
    pipeline = pipeline_for(entry.volume) or DisplayPipeline()
    if "window" in query and "preset" in query:
        raise RequestError("give window or preset, not both", parameter="preset")
    if "window" in query:
        pipeline = pipeline.with_voi(parse_window(str(query["window"])))
    elif "preset" in query:
        try:
            pipeline = pipeline.with_voi(preset(str(query["preset"])))
        except Exception as exc:
            raise RequestError(str(exc), parameter="preset") from None
    return pipeline.with_bits(media.bits)


def _answer(image: np.ndarray, media: MediaType, quality: int, headers: dict[str, str] | None = None) -> Response:
    if media.kind == "raw":
        data = np.ascontiguousarray(image, dtype="<f4").tobytes()
        extra = {"X-Array-Shape": ",".join(map(str, image.shape)), "X-Array-Dtype": "float32-le"}
        return Response(data, media_type=media.name, headers={**(headers or {}), **extra})
    if media.kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(image, dtype=np.float32))
        return Response(buffer.getvalue(), media_type=media.name, headers=headers)
    return Response(encode_image(image, media.fmt, quality=quality, bits=media.bits), media_type=media.short, headers=headers)


def _vector(query: Mapping[str, Any], name: str, *, direction: bool = False) -> np.ndarray | None:
    if name not in query:
        return None
    v = np.array(parse_floats(str(query[name]), name, 3))
    if direction and not np.any(v):
        raise RequestError(f"{name} must be a direction, not the zero vector", parameter=name)
    return v


def _choice(query: Mapping[str, Any], name: str, default: str, parse: Any) -> str:
    """The query's `name` checked by the library's own parser, so a bad value is named here."""
    value = str(query.get(name, default))
    try:
        parse(value)
    except Exception as exc:
        raise RequestError(str(exc), parameter=name) from None
    return value


def _mode(query: Mapping[str, Any], default: str = "mip") -> str:
    return _choice(query, "mode", default, lambda v: parse_mode(v, "mode"))


def _interp(query: Mapping[str, Any]) -> str:
    def parse(value: str) -> None:
        if value not in INTERPOLATIONS:
            raise RequestError(f"interp must be one of {', '.join(INTERPOLATIONS)}, got {value[:40]!r}")

    return _choice(query, "interp", "linear", parse)


def _size(query: Mapping[str, Any], max_side: int) -> tuple[int, int] | None:
    if "size" not in query:
        return None
    parts = str(query["size"]).split(",")
    if len(parts) not in (1, 2):
        raise RequestError(f"size must be N or rows,columns, got {str(query['size'])[:80]!r}", parameter="size")
    values = [parse_int(p.strip(), "size", 1, max_side) for p in parts]
    return (values[0], values[-1])


def _spacing(query: Mapping[str, Any]) -> tuple[float, float] | None:
    if "spacing" not in query:
        return None
    values = parse_floats(str(query["spacing"]), "spacing", (1, 2))
    if min(values) <= 0:
        raise RequestError("spacing must be positive (mm)", parameter="spacing")
    return (values[0], values[-1])


def plane_from_query(volume: Any, query: Mapping[str, Any], max_side: int) -> Plane:
    """The plane an mpr request names: ``orientation`` (+ ``position``) or ``normal``
    (+ ``center``, ``up``), with ``size`` and ``spacing``."""
    size, spacing = _size(query, max_side), _spacing(query)
    if "orientation" in query:
        if "normal" in query or "up" in query:
            raise RequestError("give orientation or normal (with up), not both", parameter="normal")
        name = str(query["orientation"]).lower()
        if name not in _ORIENTATIONS:
            raise RequestError(f"orientation must be axial, coronal or sagittal, got {name[:40]!r}",
                               parameter="orientation")
        make, axis = _ORIENTATIONS[name]
        plane = make(volume, spacing=spacing, size=size)
        if "center" in query:
            plane = plane.replace(center=_vector(query, "center"))
        if "position" in query:
            values = parse_floats(str(query["position"]), "position", (1, 3))
            center = np.array(plane.center)
            if len(values) == 3:
                center = np.array(values)
            else:
                center[axis] = values[0]  # the LPS coordinate along the view's axis (z, y or x)
            plane = plane.replace(center=center)
        return plane
    if "position" in query:
        raise RequestError("position goes with orientation; give center for an oblique plane", parameter="position")
    normal = _vector(query, "normal", direction=True)
    if normal is None:
        raise RequestError("give orientation=axial|coronal|sagittal or normal=x,y,z", parameter="orientation")
    up = _vector(query, "up", direction=True)
    if up is not None and np.linalg.norm(np.cross(up, normal)) <= 1e-6 * np.linalg.norm(up) * np.linalg.norm(normal):
        raise RequestError("up must not be parallel to the normal", parameter="up")
    center = _vector(query, "center")
    return Plane.oblique(volume if center is None else center, normal, up=up, spacing=spacing,
                         size=size if size is not None or center is None else (512, 512))


def _slab(query: Mapping[str, Any]) -> Slab | None:
    if "slab" not in query:
        if "mode" in query:
            raise RequestError("mode goes with slab (its thickness in mm)", parameter="mode")
        return None
    thickness = parse_positive(str(query["slab"]), "slab")
    spacing = parse_positive(str(query["slab_spacing"]), "slab_spacing") if "slab_spacing" in query else None
    return Slab(thickness, _mode(query), spacing=spacing)


def _plane_headers(plane: Plane) -> dict[str, str]:
    def vec(v: Any) -> str:
        return ",".join(repr(float(x)) for x in v)  # repr: the shortest text that reads back exactly

    return {
        "X-Plane-Center": vec(plane.center),
        "X-Plane-Row": vec(plane.row),
        "X-Plane-Column": vec(plane.col),
        "X-Plane-Spacing": vec(plane.spacing),
        "X-Plane-Size": f"{plane.size[0]},{plane.size[1]}",
    }


async def _rendered(service: Service, work: Any) -> Response:
    response, timing = await service.run(work)
    response.headers["Server-Timing"] = timing
    return response


async def _entry(request: Request) -> tuple[Service, VolumeEntry]:
    service: Service = request.app.state.service
    snapshot = await service.snapshot()
    return service, snapshot.volume(request.path_params["key"])


@handler
async def volume_mpr(request: Request) -> Response:
    """GET /volumes/{key}/mpr"""
    query = request.query_params
    only_known(query, (*_COMMON, "orientation", "position", "center", "normal", "up", "size", "spacing",
                       "slab", "slab_spacing", "mode"))
    service, entry = await _entry(request)
    media = choose_media(request.headers.get("accept"), IMAGES, query=query.get("accept"))
    quality = parse_quality(query.get("quality"), service.settings.jpeg_quality)
    display = _display(entry, query, media)
    plane = plane_from_query(entry.volume, query, service.settings.max_side)
    slab = _slab(query)
    interp = _interp(query)

    def work() -> Response:
        volume = service.cache.volume(entry)
        image = mpr(volume, plane, slab=slab, interp=interp, display=display, limits=_limits(service))
        return _answer(image, media, quality, _plane_headers(plane))

    return await _rendered(service, work)


@handler
async def volume_projection(request: Request) -> Response:
    """GET /volumes/{key}/projection"""
    query = request.query_params
    only_known(query, (*_COMMON, "direction", "azimuth", "elevation", "mode", "size", "spacing"))
    service, entry = await _entry(request)
    media = choose_media(request.headers.get("accept"), IMAGES, query=query.get("accept"))
    quality = parse_quality(query.get("quality"), service.settings.jpeg_quality)
    display = _display(entry, query, media)
    direction = _vector(query, "direction", direction=True)
    azimuth = parse_floats(str(query["azimuth"]), "azimuth", 1)[0] if "azimuth" in query else None
    elevation = parse_floats(str(query["elevation"]), "elevation", 1)[0] if "elevation" in query else None
    if direction is None and azimuth is None and elevation is None:
        direction = np.array([0.0, 1.0, 0.0])  # the anterior view
    size, spacing = _size(query, service.settings.max_side), _spacing(query)
    mode, interp = _mode(query, "max"), _interp(query)

    def work() -> Response:
        volume = service.cache.volume(entry)
        image = project(volume, direction=direction, azimuth=azimuth, elevation=elevation, mode=mode,
                        size=size, spacing=spacing, interp=interp, display=display, limits=_limits(service))
        return _answer(image, media, quality)

    return await _rendered(service, work)


@handler
async def volume_spin(request: Request) -> Response:
    """GET /volumes/{key}/spin"""
    query = request.query_params
    only_known(query, ("window", "preset", "accept", "interp", "n", "axis", "mode", "size", "spacing", "fps"))
    service, entry = await _entry(request)
    media = choose_media(request.headers.get("accept"), ANIMATIONS, query=query.get("accept"))
    display = _display(entry, query, media)
    n = parse_int(str(query.get("n", "36")), "n", 1, service.settings.max_frames)
    axis: Any = str(query.get("axis", "S"))
    if "," in axis:
        axis = _vector(query, "axis", direction=True)
    elif axis.upper() not in _AXES:
        raise RequestError(f"axis must be one of {', '.join(_AXES)} or x,y,z, got {axis[:40]!r}", parameter="axis")
    mode, interp = _mode(query, "max"), _interp(query)
    fps = parse_positive(str(query.get("fps", "10")), "fps")
    size, spacing = _size(query, service.settings.max_side), _spacing(query)

    def work() -> Response:
        volume = service.cache.volume(entry)
        views = rotating_projection(volume, n, axis=axis, mode=mode, size=size, spacing=spacing,
                                    interp=interp, display=display, limits=_limits(service, n))
        return Response(encode_animation(views, media.fmt, fps=fps), media_type=media.name)

    return await _rendered(service, work)


async def _json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body ({declared} bytes) is past the limit of {limit} bytes", status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(f"the request body is past the limit of {limit} bytes", status=413)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind != "application/json":
        raise RequestError(f"the body must be application/json, got {kind[:60]!r}", status=415, parameter="Content-Type")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not JSON: {exc}", parameter="body") from None


_CURVED_KEYS = ("centerline", "width", "mode", "spacing", "up", "slab", "slab_mode", "interp", "window", "preset")


@handler
async def volume_curved(request: Request) -> Response:
    """POST /volumes/{key}/curved"""
    service, entry = await _entry(request)
    only_known(request.query_params, ("accept", "quality"))
    settings = service.settings
    body = await _json_body(request, settings.max_body_bytes)
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", parameter="body")
    only_known(body, _CURVED_KEYS)
    media = choose_media(request.headers.get("accept"), IMAGES, query=request.query_params.get("accept"))
    quality = parse_quality(request.query_params.get("quality"), settings.jpeg_quality)
    points = body.get("centerline")
    if not isinstance(points, list) or not 2 <= len(points) <= settings.max_centerline_points:
        raise RequestError(f"centerline must be a list of 2..{settings.max_centerline_points} [x, y, z] points (mm)",
                           parameter="centerline")
    try:
        centerline = np.array(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError("centerline must be a list of [x, y, z] numbers (mm)", parameter="centerline") from None
    if centerline.shape != (len(points), 3):
        raise RequestError("centerline must be a list of [x, y, z] points (mm)", parameter="centerline")
    width = body.get("width")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < float("inf"):
        raise RequestError("width must be a positive number (mm)", parameter="width")
    mode = str(body.get("mode", "straightened"))
    if mode not in CURVED_MODES:
        raise RequestError(f"mode must be one of {', '.join(CURVED_MODES)}, got {mode[:40]!r}", parameter="mode")
    window = body.get("window")
    if isinstance(window, list):
        window = ",".join(str(v) for v in window)
    query = {k: v for k, v in (("window", window), ("preset", body.get("preset"))) if v is not None}
    display = _display(entry, query, media)
    slab = None
    if body.get("slab") is not None:
        thickness = body["slab"]
        if isinstance(thickness, bool) or not isinstance(thickness, (int, float)) or not 0 < thickness < float("inf"):
            raise RequestError("slab must be a positive number (mm)", parameter="slab")
        slab = Slab(float(thickness), _mode({"mode": body.get("slab_mode", "mip")}))
    interp = _interp({"interp": body.get("interp", "linear")})
    for name in ("spacing",):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RequestError(f"{name} must be a number (mm)", parameter=name)

    def work() -> Response:
        volume = service.cache.volume(entry)
        image = curved_mpr(volume, centerline, width_mm=float(width), spacing=body.get("spacing"),
                           mode=mode, up=body.get("up"), slab=slab,
                           interp=interp, display=display, limits=_limits(service))
        return _answer(image, media, quality)

    return await _rendered(service, work)


def describe(entry: VolumeEntry, *, full: bool) -> dict[str, Any]:
    """A volume as JSON: shape, spacing, study / series and, in full, affine, levels, findings and windows."""
    v = entry.volume
    meta = entry.meta
    out: dict[str, Any] = {
        "key": entry.key,
        "shape": list(v.shape),
        "dtype": str(v.dtype),
        "spacing": [round(float(s), 6) for s in v.spacing],
        "modality": meta.get("modality") or None,
        "study_instance_uid": entry.study or None,
        "series_instance_uid": entry.series or None,
        "findings": [f.get("code") for f in meta.get("findings") or ()],
    }
    if full:
        out.update(
            axes=list(meta.get("axes") or (["t"] if v.ndim == 4 else []) + ["z", "y", "x"]),
            affine=np.asarray(v.affine).tolist(),
            levels=[{"shape": list(level.shape), "spacing": [round(float(s), 6) for s in level.spacing]}
                    for level in entry.levels],
            findings=list(meta.get("findings") or ()),
            windows=list(meta.get("windows") or ()),
            rescale=meta.get("rescale"),
            values=meta.get("values"),
            photometric=meta.get("photometric"),
            series_number=meta.get("series_number"),
            frame_of_reference_uid=meta.get("frame_of_reference_uid") or None,
        )
    return out


@handler
async def list_volumes(request: Request) -> Response:
    """GET /volumes"""
    only_known(request.query_params, ())
    snapshot = await request.app.state.service.snapshot()
    body = [describe(snapshot.volumes[k], full=False) for k in sorted(snapshot.volumes)]
    return Response(json.dumps(body), media_type="application/json")


@handler
async def get_volume(request: Request) -> Response:
    """GET /volumes/{key}"""
    only_known(request.query_params, ())
    key = request.path_params["key"]
    if key.endswith("/curved"):
        # the catch-all route met a POST-only resource
        service: Service = request.app.state.service
        if key[: -len("/curved")] in (await service.snapshot()).volumes:
            return problem(405, f"{request.method} is not allowed on {request.url.path[:200]}: use POST",
                           headers={"Allow": "POST"})
    _, entry = await _entry(request)
    return Response(json.dumps(describe(entry, full=True), default=str), media_type="application/json")


def routes() -> list[Route]:
    return [
        Route("/volumes", list_volumes, methods=["GET"]),
        Route("/volumes/{key:path}/mpr", volume_mpr, methods=["GET"]),
        Route("/volumes/{key:path}/projection", volume_projection, methods=["GET"]),
        Route("/volumes/{key:path}/spin", volume_spin, methods=["GET"]),
        Route("/volumes/{key:path}/curved", volume_curved, methods=["POST"]),
        Route("/volumes/{key:path}", get_volume, methods=["GET"]),
    ]
