"""Concurrent clients get what serial ones get; a full queue answers 503 (Retry-After), a slow
render 504."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

import voxelflow.service.dicomweb as dicomweb
from voxelflow.service import create_app

from svc_helpers import multipart, problem


def _mixed_requests(phantoms) -> list[tuple[str, str]]:
    """(URL, Accept): rendered frames, thumbnails, MPR / slab / raw, projection, frame lists, QIDO."""
    ct_key, mr_key = phantoms.key("ct"), phantoms.key("mr")
    requests = []
    for i in range(0, 24, 3):
        url, _ = phantoms.instance("ct", i)
        requests.append((f"{url}/rendered", "image/png"))
        requests.append((f"{url}/rendered?window=-600,1500&viewport=32,32", "image/jpeg"))
    for i in range(0, 12, 4):
        url, _ = phantoms.instance("mr", i)
        requests.append((f"{url}/rendered", "image/png;bits=16"))
        requests.append((f"{url}/thumbnail", "image/jpeg"))
    enhanced, _ = phantoms.instance("enhanced", 0)
    requests += [
        (f"{enhanced}/frames/1,4,7/rendered", "image/png"),
        (f"{enhanced}/frames/2,3/rendered", "image/gif"),
        (f"{phantoms.base('ct')}/thumbnail", "image/jpeg"),
        (f"{phantoms.base('pyramid')}/thumbnail", "image/jpeg"),
        (f"/volumes/{ct_key}/mpr?orientation=axial", "image/png"),
        (f"/volumes/{ct_key}/mpr?orientation=coronal&slab=8&mode=mip", "image/png"),
        (f"/volumes/{ct_key}/mpr?normal=0.2,0.3,1&center=0,-15,-120&size=48", "application/octet-stream"),
        (f"/volumes/{mr_key}/mpr?orientation=sagittal", "image/jpeg"),
        (f"/volumes/{mr_key}/mpr?orientation=axial&slab=5&mode=mean", "application/x-npy"),
        (f"/volumes/{ct_key}/projection?size=32", "image/png"),
        (f"/volumes/{phantoms.key('pyramid')}/mpr?orientation=axial", "image/png"),
        (f"{phantoms.base('ct')}/instances", "application/dicom+json"),
    ]
    return requests


def _content(response):
    """What must match between the serial and the concurrent answer (multipart boundaries differ)."""
    assert response.status_code == 200, response.text[:300]
    kind = response.headers["content-type"]
    if kind.startswith("multipart/"):
        return ("multipart", [(k, loc, data) for k, loc, data in multipart(response)])
    return (kind, dict((h, response.headers[h]) for h in response.headers if h.startswith("x-")), response.content)


def test_eight_concurrent_clients_match_serial(client, phantoms):
    requests = _mixed_requests(phantoms)
    serial = {req: _content(client.get(req[0], headers={"Accept": req[1]})) for req in requests}

    app = create_app(phantoms.store)  # a fresh app: an empty cache, loaded under the concurrent load

    async def one_client(n: int) -> list[tuple[tuple[str, str], object]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60) as c:
            out = []
            for k in range(10):
                req = requests[(n * 7 + k * 5) % len(requests)]
                r = await c.get(req[0], headers={"Accept": req[1]})
                out.append((req, r))
            return out

    async def main():
        return await asyncio.gather(*(one_client(n) for n in range(8)))

    try:
        results = asyncio.run(main())
    finally:
        app.state.service.scheduler.close()
    answered = [item for per_client in results for item in per_client]
    assert len(answered) == 80
    assert len({req for req, _ in answered}) > 20
    for req, response in answered:
        assert _content(response) == serial[req], req
    assert app.state.service.scheduler.pending == 0


@pytest.fixture
def held_render(monkeypatch):
    """Every rendered frame waits until the test lets it go (a wrapper round render_slice that
    blocks its render thread on an event): ``started`` lists the renders begun."""
    original = dicomweb.render_slice
    gate = threading.Event()
    started: list[float] = []

    def held(*args, **kwargs):
        started.append(time.monotonic())
        if not gate.wait(10):
            raise AssertionError("the test never released the render")
        return original(*args, **kwargs)

    monkeypatch.setattr(dicomweb, "render_slice", held)
    yield gate, started
    gate.set()


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)


def test_full_queue_is_503_with_retry_after(phantoms, held_render):
    gate, started = held_render
    app = create_app(phantoms.store, render_threads=1, queue_size=0)
    a, _ = phantoms.instance("ct", 1)
    b, _ = phantoms.instance("ct", 2)

    async def main():
        async with _client(app) as c:
            first = asyncio.ensure_future(c.get(f"{a}/rendered", headers={"Accept": "image/png"}))
            await _until(lambda: started)  # the one thread is busy
            busy = await c.get(f"{b}/rendered", headers={"Accept": "image/png"})
            gate.set()
            done = await first
            again = await c.get(f"{b}/rendered", headers={"Accept": "image/png"})
            return busy, done, again

    try:
        busy, done, again = asyncio.run(main())
    finally:
        app.state.service.scheduler.close()
    body = problem(busy, 503)
    assert "busy" in body["detail"]
    assert int(busy.headers["retry-after"]) >= 1
    assert done.status_code == 200
    assert again.status_code == 200  # the slot is free again once the render is done
    assert app.state.service.scheduler.pending == 0


def test_queue_admits_threads_plus_queue(phantoms, held_render):
    gate, started = held_render
    app = create_app(phantoms.store, render_threads=1, queue_size=2)
    urls = [f"{phantoms.instance('ct', i)[0]}/rendered" for i in range(5)]

    async def main():
        async with _client(app) as c:
            tasks = [asyncio.ensure_future(c.get(u, headers={"Accept": "image/png"})) for u in urls]
            await _until(lambda: sum(t.done() for t in tasks) == 2)  # two refused at once, three held
            assert len(started) == 1  # one thread: one render running, two waiting
            gate.set()
            return await asyncio.gather(*tasks)

    try:
        responses = asyncio.run(main())
    finally:
        app.state.service.scheduler.close()
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 503, 503]
    for r in responses:
        if r.status_code == 503:
            problem(r, 503)
            assert r.headers["retry-after"]


def test_slow_render_is_504(phantoms, held_render):
    gate, started = held_render
    app = create_app(phantoms.store, deadline_s=0.05)
    url, _ = phantoms.instance("ct", 4)

    async def main():
        async with _client(app) as c:
            late = await c.get(f"{url}/rendered", headers={"Accept": "image/png"})  # answered at the deadline
            assert started and app.state.service.scheduler.pending == 1  # its slot is still held
            gate.set()
            await _until(lambda: app.state.service.scheduler.pending == 0)
            return late

    try:
        late = asyncio.run(main())
    finally:
        app.state.service.scheduler.close()
    body = problem(late, 504)
    assert "deadline" in body["detail"]


def test_health_is_not_queued_behind_renders(phantoms, held_render):
    gate, started = held_render
    app = create_app(phantoms.store, render_threads=1, queue_size=0)
    url, _ = phantoms.instance("ct", 6)

    async def main():
        async with _client(app) as c:
            render = asyncio.ensure_future(c.get(f"{url}/rendered", headers={"Accept": "image/png"}))
            await _until(lambda: started)
            health = await c.get("/healthz")
            studies = await c.get("/dicom-web/studies", headers={"Accept": "application/dicom+json"})
            gate.set()
            return health, studies, await render

    try:
        health, studies, render = asyncio.run(main())
    finally:
        app.state.service.scheduler.close()
    assert render.status_code == 200
    assert health.status_code == 200
    assert health.json()["pending_renders"] == 1
    assert studies.status_code == 200  # QIDO needs no render thread
