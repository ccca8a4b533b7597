"""DICOMweb (PS3.18) over the store: QIDO-RS search, rendered resources and thumbnails.

Instances are slices of stored volumes (the catalog maps each SOP Instance UID to its volume
and slices). A rendered frame is the slice's stored values through the instance's own display
pipeline (stored window or VOI LUT, Modality LUT, presentation), exactly as
:func:`voxelflow.render_frame` computes it from the file, unless ``window`` overrides the VOI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..display import slice_pipeline, window
from ..errors import RenderError
from ..render import Viewport, apply_viewport, encode_animation, encode_image
from .app import Service, handler
from .catalog import CatalogSnapshot, InstanceRef, VolumeEntry, check_uid
from .params import MEDIA, MediaType, RequestError, choose_media, only_known, parse_int, parse_quality, parse_viewport, parse_window

__all__ = ["render_slice", "routes", "warm_up"]

BASE = "/dicom-web"
SINGLE = ("image/jpeg", "image/png", "image/png;bits=16", "image/gif")
RENDER_PARAMS = ("window", "viewport", "quality", "accept", "annotation", "charset", "iccprofile")
QIDO_PARAMS = ("limit", "offset", "includefield", "fuzzymatching", "Modality", "00080060",
               "StudyInstanceUID", "0020000D", "SeriesInstanceUID", "0020000E", "SOPInstanceUID", "00080018")


# -- rendering -----------------------------------------------------------------------------

def _slice_values(service: Service, entry: VolumeEntry, index: int) -> np.ndarray:
    position = tuple(int(i) for i in np.unravel_index(index, entry.slice_axes))
    return np.asarray(service.cache.slice_values(entry, position))


def _thumbnail_values(entry: VolumeEntry, index: int, out_rows: int, out_cols: int) -> np.ndarray:
    """The slice from the coarsest pyramid level that still has `out_rows` x `out_cols` pixels."""
    chosen = entry.levels[0]
    for level in entry.levels[1:]:
        if level.shape[-2] >= out_rows and level.shape[-1] >= out_cols:
            chosen = level
    base = entry.levels[0]
    position = list(np.unravel_index(index, entry.slice_axes))
    if chosen is not base:
        # the level's slice nearest the level-0 slice's centre, through the two affines
        k = position[-1]
        centre = base.affine @ np.array([k, (base.shape[-2] - 1) / 2, (base.shape[-1] - 1) / 2, 1.0])
        z = (np.linalg.inv(chosen.affine) @ centre)[0]
        position[-1] = int(np.clip(round(z), 0, chosen.shape[-3] - 1))
    return np.asarray(chosen.array[tuple(position)])


def thumbnail_viewport(service: Service, entry: VolumeEntry, viewport: Viewport | None) -> Viewport:
    """The box a thumbnail fits in: `viewport`'s vw x vh (default the thumbnail size), never
    larger than the image itself (a thumbnail shrinks, it does not enlarge)."""
    if viewport is not None and (viewport.sw is not None or viewport.sh is not None or viewport.sx or viewport.sy):
        raise RequestError("viewport: a thumbnail takes vw,vh only", parameter="viewport")
    size = service.settings.thumbnail_size
    vw, vh = (viewport.vw, viewport.vh) if viewport is not None else (size, size)
    rows, cols = entry.plane
    return Viewport(min(vw, int(cols)), min(vh, int(rows)))


def output_shape(service: Service, entry: VolumeEntry, viewport: Viewport | None, thumbnail: bool) -> tuple[int, int]:
    """(rows, columns) of one rendered frame of `entry`, before rendering it."""
    rows, cols = entry.plane
    if thumbnail:
        viewport = thumbnail_viewport(service, entry, viewport)
    if viewport is None:
        return rows, cols
    try:
        return viewport.output_shape(rows, cols)
    except RenderError as exc:
        raise RequestError(str(exc), parameter="viewport") from None


def render_slice(
    service: Service,
    entry: VolumeEntry,
    index: int,
    *,
    voi: Any = None,
    bits: int = 8,
    viewport: Any = None,
    thumbnail: bool = False,
) -> np.ndarray:
    """Display values of slice `index` (flat, volume order) of `entry`: uint8 or uint16 (a
    colour volume's slice is its RGB samples as they are: the grayscale pipeline, and with it
    the window parameter, does not apply to colour images)."""
    if entry.volume.is_colour:
        if thumbnail:
            viewport = thumbnail_viewport(service, entry, viewport)
        image = _slice_values(service, entry, index)
        return image if viewport is None else apply_viewport(image, viewport)
    pipeline = slice_pipeline(entry.meta, index)
    if voi is not None:
        pipeline = pipeline.with_voi(voi)
    pipeline = pipeline.with_bits(bits)
    if thumbnail:
        viewport = thumbnail_viewport(service, entry, viewport)
        stored = _thumbnail_values(entry, index, *viewport.output_shape(*entry.plane))
    else:
        stored = _slice_values(service, entry, index)
    image = window(stored, pipeline)
    return image if viewport is None else apply_viewport(image, viewport)


def _encode(images: Sequence[np.ndarray], media: MediaType, quality: int) -> list[bytes]:
    if media.kind == "animation":
        first = images[0].shape
        if any(im.shape != first for im in images):
            raise RequestError("frames of different sizes cannot make one animation; ask for image/jpeg or image/png", status=406)
        return [encode_animation(np.stack(images), media.fmt, fps=10.0)]
    return [encode_image(im, media.fmt, quality=quality, bits=media.bits) for im in images]


def _multipart(parts: Sequence[bytes], media: MediaType, locations: Sequence[str]) -> Response:
    boundary = uuid.uuid4().hex
    chunks = []
    for data, location in zip(parts, locations):
        chunks.append(
            f"--{boundary}\r\nContent-Type: {media.name}\r\nContent-Location: {location}\r\n\r\n".encode()
        )
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return Response(
        b"".join(chunks),
        media_type=f'multipart/related; type="{media.name}"; boundary={boundary}',
    )


async def _rendered(
    request: Request,
    targets: Sequence[tuple[VolumeEntry, int]],
    locations: Sequence[str],
    *,
    thumbnail: bool = False,
    many: bool = False,
) -> Response:
    service: Service = request.app.state.service
    settings = service.settings
    if len(targets) > settings.max_frames:
        raise RequestError(
            f"{len(targets)} frames asked for; at most {settings.max_frames} per request", parameter="frames"
        )
    media, voi, viewport, quality = _render_params(request)
    if thumbnail and media.bits != 8:
        raise RequestError("thumbnails are 8-bit; ask for image/jpeg, image/png or image/gif", status=406, parameter="Accept")

    # every output's size is known before anything is rendered: refuse past the limits first
    total = 0
    for entry, _ in targets:
        rows, cols = output_shape(service, entry, viewport, thumbnail)
        _check_output(settings, rows, cols)
        total += rows * cols
    if total > settings.max_response_pixels:
        raise RequestError(f"{len(targets)} frames of {total} pixels in all are past the limit of "
                           f"{settings.max_response_pixels} pixels per response; ask for fewer frames "
                           "or a smaller viewport", parameter="viewport" if viewport else "frames")

    def work() -> list[bytes]:
        images = [
            render_slice(service, entry, index, voi=voi, bits=media.bits, viewport=viewport, thumbnail=thumbnail)
            for entry, index in targets
        ]
        return _encode(images, media, quality)

    parts, timing = await service.run(work)
    if media.kind == "animation" or (len(parts) == 1 and not many):
        response = Response(parts[0], media_type=media.short, headers=_png16(media))
    else:
        response = _multipart(parts, media, locations)
    response.headers["Server-Timing"] = timing
    return response


def _render_params(request: Request) -> tuple[MediaType, Any, Viewport | None, int]:
    """(media type, VOI override, viewport, JPEG quality) of a rendered-resource request,
    checked (unknown query parameters refused)."""
    settings = request.app.state.service.settings
    query = request.query_params
    only_known(query, RENDER_PARAMS)
    media = choose_media(request.headers.get("accept"), SINGLE, query=query.get("accept"))
    voi = parse_window(query["window"]) if "window" in query else None
    viewport = parse_viewport(query["viewport"], settings.max_side) if "viewport" in query else None
    return media, voi, viewport, parse_quality(query.get("quality"), settings.jpeg_quality)


def _check_output(settings: Any, rows: int, cols: int) -> None:
    if rows * cols > settings.max_output_pixels:
        raise RequestError(f"an output image of {cols} x {rows} pixels is past the limit of "
                           f"{settings.max_output_pixels} pixels", parameter="viewport")


def _render_instance(data: bytes, media: MediaType, voi: Any, viewport: Viewport | None, quality: int,
                     settings: Any) -> bytes | None:
    """One single-frame grayscale instance, given as its DICOM bytes, rendered and encoded;
    None for an instance this does not render (multi-frame, colour)."""
    import io

    import pydicom

    from ..display import render_frame

    ds = pydicom.dcmread(io.BytesIO(data), force=True)  # checked as staged: a raw data set too
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    if viewport is not None:
        rows, cols = viewport.output_shape(rows, cols)
    _check_output(settings, rows, cols)
    image = render_frame(ds, window=voi, bits=media.bits)
    return _encode([image if viewport is None else apply_viewport(image, viewport)], media, quality)[0]


def warm_up(settings: Any) -> None:
    """Render a tiny instance to each single-image type once, at start: a request that is a
    process's first (a series retrieved on demand, say) then does not also pay for importing
    the DICOM reader, the display pipeline and the image encoders (~20-50 ms here)."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = np.arange(64, dtype="<i2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    for name in SINGLE:
        _render_instance(out.getvalue(), MEDIA[name], (40, 400), None, 90, settings)


async def _rendered_from_instance(request: Request, data: bytes) -> Response | None:
    """The rendered instance (or its frame 1) from the instance's own DICOM bytes, as a
    retrieval from the upstream has just received them: through the file's display pipeline,
    which is the one the stored series' slice gets (:func:`~voxelflow.display.slice_pipeline`),
    so the answer is the one the store would give. None for what needs the stored series:
    multi-frame and colour instances, other frames."""
    service: Service = request.app.state.service
    media, voi, viewport, quality = _render_params(request)
    if request.path_params.get("frames", "1").strip() != "1":
        return None
    body, timing = await service.run(_render_instance, data, media, voi, viewport, quality, service.settings)
    if body is None:
        return None
    response = Response(body, media_type=media.short, headers=_png16(media))
    response.headers["Server-Timing"] = timing
    return response


def _png16(media: MediaType) -> dict[str, str] | None:
    return {"X-Bits-Stored": "16"} if media.bits == 16 else None


def _frame_numbers(text: str, count: int, max_frames: int) -> list[int]:
    parts = text.split(",")
    if len(parts) > max_frames:
        raise RequestError(f"{len(parts)} frames asked for; at most {max_frames} per request", parameter="frames")
    return [parse_int(p.strip(), "frames", 1, count) for p in parts]


async def _instance_targets(request: Request) -> tuple[CatalogSnapshot, VolumeEntry, InstanceRef, str]:
    service: Service = request.app.state.service
    p = request.path_params
    snapshot = await service.snapshot()
    entry, ref = snapshot.instance(p["study"], p["series"], p["sop"])
    base = f"{BASE}/studies/{p['study']}/series/{p['series']}/instances/{p['sop']}"
    return snapshot, entry, ref, base


@handler
async def instance_rendered(request: Request) -> Response:
    """GET .../instances/{sop}/rendered: the instance (all its frames when it has several)."""
    _, entry, ref, base = await _instance_targets(request)
    targets = [(entry, k) for k in ref.slices]
    return await _rendered(request, targets, [f"{base}/frames/{f + 1}/rendered" for f in range(len(targets))],
                           many=len(targets) > 1)


@handler
async def frames_rendered(request: Request) -> Response:
    """GET .../instances/{sop}/frames/{frames}/rendered: the listed frames (1-based)."""
    service: Service = request.app.state.service
    _, entry, ref, base = await _instance_targets(request)
    numbers = _frame_numbers(request.path_params["frames"], len(ref.slices), service.settings.max_frames)
    return await _rendered(request, [(entry, ref.slices[n - 1]) for n in numbers],
                           [f"{base}/frames/{n}/rendered" for n in numbers], many=len(numbers) > 1)


# a series the store lacks: these answer from the requested instance as soon as it is retrieved
instance_rendered.from_instance = _rendered_from_instance  # type: ignore[attr-defined]
frames_rendered.from_instance = _rendered_from_instance  # type: ignore[attr-defined]


def _series_targets(snapshot: CatalogSnapshot, study: str, series: str) -> list[tuple[VolumeEntry, int, str]]:
    snapshot.series_in_study(study, series)
    out = []
    for sop in snapshot.series_instances.get(series, ()):
        ref = snapshot.instances[sop]
        out.extend((snapshot.volumes[ref.key], k, sop) for k in ref.slices)
    if not out:
        raise RequestError(f"series {series} has no instances stored as slices", status=404)
    return out


@handler
async def series_rendered(request: Request) -> Response:
    """GET .../series/{series}/rendered: every instance of the series, in slice order."""
    service: Service = request.app.state.service
    p = request.path_params
    snapshot = await service.snapshot()
    targets = _series_targets(snapshot, p["study"], p["series"])
    base = f"{BASE}/studies/{p['study']}/series/{p['series']}/instances"
    return await _rendered(request, [(e, k) for e, k, _ in targets],
                           [f"{base}/{sop}/rendered" for _, _, sop in targets], many=True)


def _middle(targets: Sequence[Any]) -> Any:
    return targets[(len(targets) - 1) // 2]


@handler
async def study_thumbnail(request: Request) -> Response:
    """GET /studies/{study}/thumbnail: the middle instance of the study's first series."""
    service: Service = request.app.state.service
    snapshot = await service.snapshot()
    study = request.path_params["study"]
    series = sorted(snapshot.study_series(study), key=lambda s: _series_sort_key(snapshot, s))
    entry, index, _ = _middle(_series_targets(snapshot, study, series[0]))
    return await _rendered(request, [(entry, index)], [""], thumbnail=True)


@handler
async def series_thumbnail(request: Request) -> Response:
    """GET .../series/{series}/thumbnail: the series' middle instance."""
    service: Service = request.app.state.service
    snapshot = await service.snapshot()
    p = request.path_params
    entry, index, _ = _middle(_series_targets(snapshot, p["study"], p["series"]))
    return await _rendered(request, [(entry, index)], [""], thumbnail=True)


@handler
async def instance_thumbnail(request: Request) -> Response:
    """GET .../instances/{sop}/thumbnail: the instance's first frame."""
    _, entry, ref, _ = await _instance_targets(request)
    return await _rendered(request, [(entry, ref.slices[0])], [""], thumbnail=True)


@handler
async def frame_thumbnail(request: Request) -> Response:
    """GET .../frames/{frame}/thumbnail: one frame."""
    _, entry, ref, _ = await _instance_targets(request)
    (number,) = _frame_numbers(request.path_params["frames"], len(ref.slices), 1)
    return await _rendered(request, [(entry, ref.slices[number - 1])], [""], thumbnail=True)


# -- QIDO-RS -------------------------------------------------------------------------------

def _attr(vr: str, *values: Any) -> dict[str, Any]:
    present = [v for v in values if v is not None and v != ""]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _series_sort_key(snapshot: CatalogSnapshot, series: str) -> tuple[int, str]:
    number = snapshot.volumes[snapshot.series[series][0]].meta.get("series_number")
    return (int(number) if isinstance(number, (int, float)) else 1 << 30, series)


def _study_json(snapshot: CatalogSnapshot, study: str) -> dict[str, Any]:
    series = snapshot.studies[study]
    modalities = sorted({str(snapshot.volumes[k].meta.get("modality") or "") for s in series for k in snapshot.series[s]} - {""})
    instances = sum(len(snapshot.series_instances.get(s, ())) for s in series)
    return {
        "0020000D": _attr("UI", study),
        "00080061": _attr("CS", *modalities),
        "00201206": _attr("IS", len(series)),
        "00201208": _attr("IS", instances),
        "00081190": _attr("UR", f"{BASE}/studies/{study}"),
    }


def _series_json(snapshot: CatalogSnapshot, study: str, series: str) -> dict[str, Any]:
    meta = snapshot.volumes[snapshot.series[series][0]].meta
    number = meta.get("series_number")
    return {
        "0020000D": _attr("UI", study),
        "0020000E": _attr("UI", series),
        "00080060": _attr("CS", meta.get("modality") or None),
        "00200011": _attr("IS", int(number) if isinstance(number, (int, float)) else None),
        "00201209": _attr("IS", len(snapshot.series_instances.get(series, ()))),
        "00081190": _attr("UR", f"{BASE}/studies/{study}/series/{series}"),
    }


def _instance_json(snapshot: CatalogSnapshot, study: str, series: str, sop: str) -> dict[str, Any]:
    ref = snapshot.instances[sop]
    entry = snapshot.volumes[ref.key]
    rows, cols = entry.plane
    return {
        "0020000D": _attr("UI", study),
        "0020000E": _attr("UI", series),
        "00080018": _attr("UI", sop),
        "00080060": _attr("CS", entry.meta.get("modality") or None),
        "00280008": _attr("IS", len(ref.slices)),
        "00280010": _attr("US", int(rows)),
        "00280011": _attr("US", int(cols)),
        "00081190": _attr("UR", f"{BASE}/studies/{study}/series/{series}/instances/{sop}"),
    }


def _match(query: Any, names: tuple[str, str], value: str) -> bool:
    wanted = query.get(names[0], query.get(names[1]))
    if wanted is None:
        return True
    return value in {w.strip() for w in wanted.replace("\\", ",").split(",")}


def _page(request: Request, items: list[dict[str, Any]]) -> Response:
    query = request.query_params
    only_known(query, QIDO_PARAMS)
    offset = parse_int(query.get("offset", "0"), "offset", 0, 1 << 31)
    limit = parse_int(query["limit"], "limit", 0, 1 << 31) if "limit" in query else None
    items = items[offset:] if limit is None else items[offset : offset + limit]
    return Response(json.dumps(items), media_type="application/dicom+json")


def _qido_accept(request: Request) -> None:
    accept = request.headers.get("accept", "*/*")
    if not any(t.strip().split(";")[0] in ("*/*", "application/*", "application/json", "application/dicom+json")
               for t in accept.split(",")):
        raise RequestError("QIDO-RS answers application/dicom+json", status=406, parameter="Accept")


@handler
async def search_studies(request: Request) -> Response:
    """GET /studies"""
    _qido_accept(request)
    snapshot = await request.app.state.service.snapshot()
    q = request.query_params
    items = [
        _study_json(snapshot, study)
        for study in sorted(snapshot.studies)
        if _match(q, ("StudyInstanceUID", "0020000D"), study)
        and _match_modality(q, snapshot, snapshot.studies[study])
    ]
    return _page(request, items)


def _match_modality(query: Any, snapshot: CatalogSnapshot, series: Sequence[str]) -> bool:
    return any(
        _match(query, ("Modality", "00080060"), str(snapshot.volumes[snapshot.series[s][0]].meta.get("modality") or ""))
        for s in series
    )


@handler
async def search_series(request: Request) -> Response:
    """GET /studies/{study}/series (or /series: every study)"""
    _qido_accept(request)
    snapshot = await request.app.state.service.snapshot()
    study = request.path_params.get("study")
    studies = [study] if study is not None else sorted(snapshot.studies)
    q = request.query_params
    items = []
    for st in studies:
        for series in sorted(snapshot.study_series(st), key=lambda s: _series_sort_key(snapshot, s)):
            if _match(q, ("SeriesInstanceUID", "0020000E"), series) and _match_modality(q, snapshot, [series]):
                items.append(_series_json(snapshot, st, series))
    return _page(request, items)


@handler
async def search_instances(request: Request) -> Response:
    """GET /studies/{study}/series/{series}/instances"""
    _qido_accept(request)
    snapshot = await request.app.state.service.snapshot()
    p = request.path_params
    snapshot.series_in_study(p["study"], p["series"])
    q = request.query_params
    items = [
        _instance_json(snapshot, p["study"], p["series"], sop)
        for sop in snapshot.series_instances.get(p["series"], ())
        if _match(q, ("SOPInstanceUID", "00080018"), sop)
    ]
    return _page(request, items)


def routes() -> list[Route]:
    st = BASE + "/studies/{study}"
    se = st + "/series/{series}"
    inst = se + "/instances/{sop}"
    get = ["GET"]
    return [
        Route(BASE + "/studies", search_studies, methods=get),
        Route(BASE + "/series", search_series, methods=get),
        Route(st + "/series", search_series, methods=get),
        Route(se + "/instances", search_instances, methods=get),
        Route(st + "/thumbnail", study_thumbnail, methods=get),
        Route(se + "/rendered", series_rendered, methods=get),
        Route(se + "/thumbnail", series_thumbnail, methods=get),
        Route(inst + "/rendered", instance_rendered, methods=get),
        Route(inst + "/thumbnail", instance_thumbnail, methods=get),
        Route(inst + "/frames/{frames}/rendered", frames_rendered, methods=get),
        Route(inst + "/frames/{frames}/thumbnail", frame_thumbnail, methods=get),
    ]


