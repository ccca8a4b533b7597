"""Authentication (bearer token: 401 / 403 / 200), the public documents, and CORS."""

from __future__ import annotations

import numpy as np
import pytest

import voxelflow

from svc_helpers import image, problem

TOKEN = "x" * 32
ORIGIN = "http://viewer.example"


@pytest.fixture(scope="module")
def guarded(phantoms):
    from svc_helpers import Client
    from voxelflow.service import create_app

    c = Client(create_app(phantoms.store, token=TOKEN))
    yield c
    c.close()


def _urls(phantoms):
    url, _ = phantoms.instance("ct", 5)
    return [
        ("/dicom-web/studies", "application/dicom+json"),
        (f"{url}/rendered", "image/png"),
        (f"{url}/thumbnail", "image/jpeg"),
        ("/volumes", "application/json"),
        (f"/volumes/{phantoms.key('ct')}/mpr?orientation=axial", "image/png"),
    ]


def test_no_token_is_401(guarded, phantoms):
    for url, accept in _urls(phantoms):
        r = guarded.get(url, headers={"Accept": accept})
        body = problem(r, 401)
        assert "token" in body["detail"]
        assert r.headers["www-authenticate"].lower().startswith("bearer")
    r = guarded.post(f"/volumes/{phantoms.key('ct')}/curved", json={"centerline": [[0, 0, 0], [0, 0, 1]], "width": 5})
    problem(r, 401)


@pytest.mark.parametrize("authorization", [f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"])
def test_other_schemes_are_401(guarded, authorization):
    problem(guarded.get("/volumes", headers={"Authorization": authorization}), 401)


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer "])
def test_empty_bearer_is_refused(guarded, authorization):
    r = guarded.get("/volumes", headers={"Authorization": authorization})
    problem(r, r.status_code)
    assert r.status_code in (401, 403)


@pytest.mark.parametrize("token", ["y" * 32, TOKEN[:-1], TOKEN + "x", "x" * 31 + "X"])
def test_wrong_token_is_403(guarded, phantoms, token):
    for url, accept in _urls(phantoms):
        r = guarded.get(url, headers={"Accept": accept, "Authorization": f"Bearer {token}"})
        problem(r, 403)
        assert "invalid_token" in r.headers["www-authenticate"]


def test_right_token_is_answered(guarded, phantoms):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for url, accept in _urls(phantoms):
        r = guarded.get(url, headers={"Accept": accept, **headers})
        assert r.status_code == 200, (url, r.text[:300])
        assert r.headers["content-type"].startswith(accept)
    url, path = phantoms.instance("ct", 5)
    r = guarded.get(f"{url}/rendered", headers={"Accept": "image/png", "authorization": f"bearer {TOKEN}"})
    assert np.array_equal(image(r.content), voxelflow.render_frame(path))


def test_errors_behind_the_token_are_still_problems(guarded):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    problem(guarded.get("/volumes/nope", headers=headers), 404)
    problem(guarded.get("/nope", headers=headers), 404)
    # an unknown path without a token: refused, not described
    problem(guarded.get("/nope"), 401)


@pytest.mark.parametrize("path,kind", [("/openapi.json", "application/json"), ("/docs", "text/html"),
                                       ("/healthz", "application/json")])
def test_documents_need_no_token(guarded, path, kind):
    r = guarded.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(kind)


# -- CORS ------------------------------------------------------------------------------------

def test_no_cors_headers_by_default(client, phantoms):
    r = client.get(f"/volumes/{phantoms.key('ct')}/mpr?orientation=axial", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    r = client.options("/volumes", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]


def test_cors_for_the_allowed_origin(client_factory, phantoms):
    c = client_factory(cors_origins=(ORIGIN,))
    r = c.get(f"/volumes/{phantoms.key('ct')}/mpr?orientation=axial", headers={"Origin": ORIGIN, "Accept": "image/png"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"x-plane-center", "x-plane-row", "x-plane-column", "x-plane-spacing", "x-plane-size"} <= exposed
    # preflight
    r = c.options("/volumes", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "Authorization"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    # another origin gets nothing
    r = c.get("/volumes", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = c.options("/volumes", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert r.headers.get("access-control-allow-origin") != "http://evil.example"


def test_cors_with_a_token(client_factory):
    c = client_factory(cors_origins=(ORIGIN,), token=TOKEN)
    # the browser's preflight carries no token
    r = c.options("/volumes", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "Authorization"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    # a refusal is readable by the allowed origin
    r = c.get("/volumes", headers={"Origin": ORIGIN})
    problem(r, 401)
    assert r.headers["access-control-allow-origin"] == ORIGIN
    r = c.get("/volumes", headers={"Origin": ORIGIN, "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
