"""The service's settings: one frozen value, passed to every worker process as JSON."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ParameterError

__all__ = ["ServiceSettings"]


def _default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """What a :func:`voxelflow.service.create_app` app allows and how it schedules work.

    Attributes
    ----------
    token : str or None
        Bearer token every request must carry (``Authorization: Bearer <token>``); None: no
        authentication (loopback only).
    cors_origins : tuple of str
        Origins allowed by CORS; empty (the default): no CORS headers at all.
    render_threads : int
        Renders that run at once (threads; the kernels release the GIL). Default: the cores.
    queue_size : int
        Renders that may wait for a thread; past it a request is answered 503 (Retry-After).
    deadline_s : float
        Seconds a request may wait and render before it is answered 504.
    max_output_pixels : int
        Pixels of one output image (rows x columns); larger requests are answered 400.
    max_response_pixels : int
        Pixels of all the images of one response (frame lists, series, spins).
    max_side : int
        Pixels along one side of an output image.
    max_slab_samples : int
        Samples along one slab or projection ray.
    max_frames : int
        Frames (or views) in one response: frame lists, series renders, spins.
    max_centerline_points : int
        Points of one curved-MPR centerline.
    max_body_bytes : int
        Bytes of one request body (413 past it).
    cache_bytes : int
        Bytes of volume data each process keeps decoded in memory (least recently used
        volumes leave first); a volume larger than this is read chunk by chunk on each request.
    thumbnail_size : int
        Largest side of a thumbnail, pixels (a ``viewport`` overrides it).
    refresh_s : float
        Seconds between checks of the store for added, replaced or deleted volumes.
    jpeg_quality : int
        JPEG quality when a request gives none (1..100; above 95 is taken as 95).
    upstream : str or None
        DICOMweb base URL of an archive: a study or series the store does not hold is looked
        up there (QIDO-RS), retrieved (WADO-RS), ingested, then answered. None: the store only.
    upstream_auth_file : str or None
        File holding the upstream's token or ``Authorization`` value (read by each worker).
    upstream_connect_timeout_s, upstream_read_timeout_s : float
        Seconds to connect to the upstream, and between two reads of its answer.
    cache_size : int
        Bytes on disk the series retrieved from the upstream may hold; past it, the least
        recently used are removed from the store (never one being read; retrieved again when
        asked for). 0: no bound. Volumes ingested otherwise are never removed.
    max_stow_bytes : int
        Bytes of one STOW-RS request body (413 past it); the body streams to disk, never to
        memory.
    receive_idle_s : float
        Seconds after the last instance of a series received by STOW-RS before the series is
        ingested.
    """

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    render_threads: int = 0
    queue_size: int = 64
    deadline_s: float = 30.0
    max_output_pixels: int = 4096 * 4096
    max_response_pixels: int = 1 << 26
    max_side: int = 8192
    max_slab_samples: int = 2048
    max_frames: int = 512
    max_centerline_points: int = 10_000
    max_body_bytes: int = 4 << 20
    cache_bytes: int = 2 << 30
    thumbnail_size: int = 128
    refresh_s: float = 2.0
    jpeg_quality: int = 90
    upstream: str | None = None
    upstream_auth_file: str | None = None
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 60.0
    cache_size: int = 0
    max_stow_bytes: int = 4 << 30
    receive_idle_s: float = 10.0

    def __post_init__(self) -> None:
        if self.render_threads == 0:
            object.__setattr__(self, "render_threads", _default_threads())
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "token":
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise ParameterError("ServiceSettings: token must be a non-empty string or None")
            elif f.name == "cors_origins":
                origins = (value,) if isinstance(value, str) else tuple(value)
                if not all(isinstance(o, str) and o for o in origins):
                    raise ParameterError(f"ServiceSettings: cors_origins must be strings, got {value!r}")
                object.__setattr__(self, f.name, origins)
            elif f.name in ("upstream", "upstream_auth_file"):
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise ParameterError(f"ServiceSettings: {f.name} must be a non-empty string or None")
            elif f.name.endswith("_s"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0
                ):
                    raise ParameterError(f"ServiceSettings: {f.name} must be a positive number of seconds, got {value!r}")
            else:
                low = 0 if f.name in ("queue_size", "cache_size") else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    raise ParameterError(f"ServiceSettings: {f.name} must be an integer >= {low}, got {value!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ParameterError(f"ServiceSettings: jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        data: dict[str, Any] = json.loads(text)
        data["cors_origins"] = tuple(data.get("cors_origins") or ())
        return cls(**data)
