"""Helpers shared by the service tests (decoding answers, checking problem bodies)."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import threading
from typing import Any

import httpx
import numpy as np
from PIL import Image

from voxelflow import Plane


def image(data: bytes) -> np.ndarray:
    """A PNG or JPEG answer decoded with Pillow (16-bit PNGs keep their depth)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


def frames(data: bytes) -> list[np.ndarray]:
    """Every frame of an animated GIF / APNG, as grayscale."""
    out = []
    with Image.open(io.BytesIO(data)) as im:
        for n in range(getattr(im, "n_frames", 1)):
            im.seek(n)
            out.append(np.asarray(im.convert("L")))
    return out


def n_frames(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        return int(getattr(im, "n_frames", 1))


def multipart(response: Any) -> list[tuple[str, str | None, bytes]]:
    """A multipart/related answer parsed by Python's MIME parser: (Content-Type,
    Content-Location, payload) of each part."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related"), content_type
    raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart()
    assert not message.defects, message.defects
    return [(part.get_content_type(), part["Content-Location"], part.get_payload(decode=True))
            for part in message.iter_parts()]


def problem(response: Any, status: int) -> dict[str, Any]:
    """The JSON problem body of an error answer, after checking its status, media type and
    that no traceback leaked."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    assert body["status"] == status
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def plane_from_headers(headers: Any) -> Plane:
    """The plane an mpr answer's X-Plane-* headers describe."""

    def vector(name: str) -> np.ndarray:
        return np.array([float(v) for v in headers[name].split(",")])

    rows, cols = (int(v) for v in headers["X-Plane-Size"].split(","))
    spacing = tuple(vector("X-Plane-Spacing"))
    return Plane(vector("X-Plane-Center"), vector("X-Plane-Row"), vector("X-Plane-Column"),
                 spacing=spacing, size=(rows, cols))


def raw_array(response: Any) -> np.ndarray:
    """An application/octet-stream answer: float32 little-endian, shape in X-Array-Shape."""
    shape = tuple(int(v) for v in response.headers["X-Array-Shape"].split(","))
    return np.frombuffer(response.content, dtype="<f4").reshape(shape)


class Client:
    """A synchronous face of ``httpx.AsyncClient(transport=httpx.ASGITransport(app))``: the
    requests go through the real ASGI app on an event loop of their own (a thread), so that
    tests read like plain HTTP calls."""

    def __init__(self, app: Any, base_url: str = "http://test") -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-client-loop", daemon=True)
        self._thread.start()

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, timeout=60)

        self._client = self._call(make())

    def _call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._call(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def close(self) -> None:
        try:
            self._call(self._client.aclose(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            service = getattr(self.app.state, "service", None)
            if service is not None:
                service.scheduler.close()
