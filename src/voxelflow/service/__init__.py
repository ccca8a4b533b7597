"""The HTTP service: DICOMweb rendered resources and server-side MPR / MIP over a store.

- :func:`create_app`: the ASGI app over a :class:`~voxelflow.VolumeStore` (Starlette).
- :func:`serve`: the app under uvicorn (``voxelflow serve``), one or several processes.
- :class:`ServiceSettings`: limits, scheduling, cache and security settings.

Modules: :mod:`.app` (app factory, errors, authentication), :mod:`.catalog` (the store by
study / series / instance), :mod:`.cache` (volumes kept in memory), :mod:`.scheduler` (render
threads, queue, deadlines), :mod:`.params` (query parameters, Accept), :mod:`.dicomweb`
(QIDO-RS, rendered, thumbnails), :mod:`.volumes` (volume resources), :mod:`.docs` (OpenAPI).
"""

from __future__ import annotations

from .app import create_app
from .server import serve
from .settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app", "serve"]
