"""The OpenAPI document against the app's routes, both ways; /docs is HTML."""

from __future__ import annotations

import html
import re

import pytest
from starlette.routing import Route


def _routes(app):
    out = {}
    for route in app.routes:
        if isinstance(route, Route):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            # one path may have a route per method (GET searches, POST stores)
            out.setdefault(path, set()).update({m.lower() for m in route.methods or ()} - {"head"})
    return out


@pytest.fixture(scope="module")
def document(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_document_is_openapi(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    assert document["paths"]


def test_every_documented_operation_is_a_route(app, document):
    routes = _routes(app)
    for path, operations in document["paths"].items():
        assert path in routes, path
        assert set(operations) <= routes[path], (path, set(operations), routes[path])


def test_every_api_route_is_documented(app, document):
    """Every route but the two documents themselves, the viewer's page and files (a page, not
    an API: tests/service/test_viewer.py), and /healthz, tested below."""
    for path, methods in _routes(app).items():
        if path in ("/openapi.json", "/docs", "/healthz") or path.startswith("/viewer"):
            continue
        assert path in document["paths"], path
        assert methods == set(document["paths"][path]), (path, methods)


def test_health_route_is_documented(app, document):
    assert "/healthz" in _routes(app)
    assert "get" in document["paths"].get("/healthz", {})


def test_path_parameters_are_declared(document):
    for path, operations in document["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for operation in operations.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == names, path


def test_documented_query_parameters_are_accepted(client, phantoms, document):
    """Every query parameter the document lists for mpr is one the route takes (no 400 'unknown')."""
    mpr = document["paths"]["/volumes/{key}/mpr"]["get"]
    names = [p["name"] for p in mpr["parameters"] if p["in"] == "query"]
    assert {"orientation", "position", "center", "normal", "up", "slab", "mode", "window"} <= set(names)
    url = f"/volumes/{phantoms.key('ct')}/mpr"
    for name in names:
        r = client.get(url, params={name: "x"}, headers={"Accept": "image/png"})
        body = r.json()
        assert "unknown query parameter" not in body["detail"], name


def test_docs_page(client, document):
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "/openapi.json" in page
    for path in document["paths"]:
        assert html.escape(path) in page, path
    assert "<script" not in page.lower()
