"""STOW-RS (PS3.18 10.5): ``POST /dicom-web/studies[/{study}]`` stores instances.

The body (multipart/related; type="application/dicom") is read as it arrives, each part
written to its own file in the store's "received" staging area and checked there; an instance
is reported stored only once its file is synced to disk. Each series is ingested once no
instance of it has arrived for ``receive_idle_s`` (more may follow in later requests).

The answer follows PS3.18 10.5.3: 200 when every instance was stored, 202 when some failed,
409 when none was stored; its body lists the stored instances (Referenced SOP Sequence, with
their Retrieve URL) and the failed ones (Failed SOP Sequence, with a Failure Reason).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InstanceError
from .app import Service, handler
from .catalog import check_uid
from .multipart import MultipartError, MultipartParser, boundary_of, content_param, media_type
from .params import RequestError

__all__ = ["routes"]

log = logging.getLogger("voxelflow.service")

_DICOM = "application/dicom"


def _item(sop_class: str | None, sop: str | None, **extra: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if sop_class:
        item["00081150"] = {"vr": "UI", "Value": [sop_class]}
    if sop:
        item["00081155"] = {"vr": "UI", "Value": [sop]}
    item.update(extra)
    return item


def _check_type(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    kind = media_type(content_type) if content_type else ""
    if kind != "multipart/related":
        raise RequestError(f"STOW-RS takes multipart/related; type=\"{_DICOM}\", not {content_type[:100] or 'no Content-Type'}",
                           status=415)
    part_type = content_param(content_type, "type")
    if part_type is not None and part_type.lower() != _DICOM:
        raise RequestError(f"STOW-RS here stores {_DICOM} parts, not {part_type[:80]} (no metadata + bulk data)", status=415)
    try:
        return boundary_of(content_type)
    except MultipartError as exc:
        raise RequestError(str(exc), status=400) from None


@handler
async def store_instances(request: Request) -> Response:
    service: Service = request.app.state.service
    study = request.path_params.get("study")
    if study is not None:
        check_uid(study, "study")
    parser = MultipartParser(_check_type(request))
    receiver = service.receiver
    staging = receiver.staging
    limit = service.settings.max_stow_bytes
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    series_seen: set[str] = set()
    size = number = 0
    out = None
    tmp: Path | None = None
    part_ok = True
    base = str(request.base_url).rstrip("/") + "/dicom-web"
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"the STOW-RS body exceeds max_stow_bytes ({limit} bytes); send the series in parts",
                                   status=413)
            for event, value in parser.feed(chunk):
                if event == "part":
                    number += 1
                    kind = media_type(value.get("content-type", _DICOM))
                    part_ok = kind == _DICOM
                    if not part_ok:
                        failed.append(_item(None, None, **{"00081197": {"vr": "US", "Value": [0xC000]}}))
                        log.warning("STOW-RS part %d refused: it is %s, not %s", number, kind, _DICOM)
                        continue
                    tmp = staging.new_file()
                    out = open(tmp, "wb")  # noqa: SIM115 - closed at the part's end
                elif event == "data":
                    if out is not None:
                        out.write(value)
                elif out is not None:
                    out.close()
                    out, path, tmp = None, tmp, None
                    try:
                        staged = await asyncio.to_thread(staging.stage_file, path)
                        if study is not None and staged.study != study:
                            staged.path.unlink(missing_ok=True)
                            raise InstanceError(f"the instance belongs to study {staged.study}, not {study}", failure=0xA900)
                    except InstanceError as exc:
                        log.warning("STOW-RS part %d refused: %s", number, exc)
                        failed.append(_item(exc.sop_class, exc.sop_instance,
                                            **{"00081197": {"vr": "US", "Value": [exc.failure]}}))
                        continue
                    series_seen.add(staged.series)
                    url = f"{base}/studies/{staged.study}/series/{staged.series}/instances/{staged.sop}"
                    stored.append(_item(staged.sop_class, staged.sop, **{"00081190": {"vr": "UR", "Value": [url]}}))
        parser.close()
    except MultipartError as exc:
        raise RequestError(f"STOW-RS body: {exc} ({len(stored)} instance(s) before it were stored)", status=400) from None
    finally:
        if out is not None:
            out.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        for series in series_seen:  # what was stored stays stored, whatever happened after it
            receiver.arrived(series)
    body: dict[str, Any] = {}
    if study is not None:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else (202 if stored else 409)
    log.info("STOW-RS: %d instance(s) stored, %d failed, series %s", len(stored), len(failed), ", ".join(sorted(series_seen)) or "-")
    return Response(json.dumps(body), status_code=status, media_type="application/dicom+json")


def routes() -> list[Route]:
    return [
        Route("/dicom-web/studies", store_instances, methods=["POST"]),
        Route("/dicom-web/studies/{study}", store_instances, methods=["POST"]),
    ]
