"""Every error the service gives: status code, application/problem+json body naming the problem
(and the parameter), never a traceback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import voxelflow.service.dicomweb as dicomweb
from voxelflow.ingest import ingest

from svc_helpers import problem

PNG = "image/png"
GIF = "image/gif"
JSON = "application/dicom+json"
BAD_UIDS = ["1.2..3", "01.2", "1" * 65, "abc", "1.2.", ".1.2", "1.2.3a"]


@pytest.fixture(scope="module")
def where(phantoms):
    """URL pieces: {I} an instance of the CT, {E} the enhanced instance, {S} the CT's study,
    {SE} the CT series, {V} the CT volume, {st} {se} {sop} the bare UIDs."""
    ct = phantoms.series["ct"]
    instance, _ = phantoms.instance("ct", 3)
    enhanced, _ = phantoms.instance("enhanced", 0)
    return {
        "I": instance, "E": enhanced, "S": f"/dicom-web/studies/{ct.study_uid}", "SE": phantoms.base("ct"),
        "V": f"/volumes/{phantoms.key('ct')}", "st": ct.study_uid, "se": ct.series_uid, "sop": ct.sop_uids[3],
    }


def _get(client, where, template, accept):
    return client.get(template.format(**where), headers={"Accept": accept})


#: (URL template, Accept, the parameter the body must name)
BAD_REQUESTS = [
    ("{I}/rendered?window=abc", PNG, "window"),
    ("{I}/rendered?window=40", PNG, "window"),
    ("{I}/rendered?window=40,0", PNG, "window"),
    ("{I}/rendered?window=40,400,cubic", PNG, "window"),
    ("{I}/rendered?window=40,400,linear,4", PNG, "window"),
    ("{I}/rendered?window=nan,400", PNG, "window"),
    ("{I}/rendered?viewport=0,10", PNG, "viewport"),
    ("{I}/rendered?viewport=10", PNG, "viewport"),
    ("{I}/rendered?viewport=10,10,1,1,0,5", PNG, "viewport"),
    ("{I}/rendered?viewport=10,10,1,1,5,0", PNG, "viewport"),
    ("{I}/rendered?viewport=10,10,-1,1,5,5", PNG, "viewport"),
    ("{I}/rendered?viewport=a,b", PNG, "viewport"),
    ("{I}/rendered?viewport=99999,10", PNG, "viewport"),
    ("{I}/rendered?quality=0", PNG, "quality"),
    ("{I}/rendered?quality=101", PNG, "quality"),
    ("{I}/rendered?quality=x", PNG, "quality"),
    ("{I}/rendered?foo=1", PNG, "foo"),
    ("{I}/rendered", "image/png;q=abc", "Accept"),
    ("{I}/frames/0/rendered", PNG, "frames"),
    ("{I}/frames/99/rendered", PNG, "frames"),
    ("{I}/frames/a/rendered", PNG, "frames"),
    ("{I}/frames/1,,2/rendered", PNG, "frames"),
    ("{E}/frames/1,9/rendered", PNG, "frames"),
    ("{E}/frames/-1/rendered", PNG, "frames"),
    ("{E}/frames/1,2/thumbnail", PNG, "frames"),
    ("{I}/thumbnail?viewport=10,10,1,1,5,5", PNG, "viewport"),
    ("{I}/thumbnail?viewport=0,0", PNG, "viewport"),
    ("{V}/mpr?orientation=axial&size=0", PNG, "size"),
    ("{V}/mpr?orientation=axial&size=100000", PNG, "size"),
    ("{V}/mpr?orientation=axial&size=1,2,3", PNG, "size"),
    ("{V}/mpr?orientation=axial&spacing=-1", PNG, "spacing"),
    ("{V}/mpr?orientation=axial&spacing=abc", PNG, "spacing"),
    ("{V}/mpr?orientation=axial&spacing=inf", PNG, "spacing"),
    ("{V}/mpr?normal=1,2", PNG, "normal"),
    ("{V}/mpr?normal=1,2,x", PNG, "normal"),
    ("{V}/mpr?normal=0,0,1&up=1", PNG, "up"),
    ("{V}/mpr?normal=0,0,1&center=1,2", PNG, "center"),
    ("{V}/mpr?orientation=axial&slab=-5", PNG, "slab"),
    ("{V}/mpr?orientation=axial&slab=0", PNG, "slab"),
    ("{V}/mpr?orientation=axial&slab=5&slab_spacing=0", PNG, "slab_spacing"),
    ("{V}/mpr?orientation=axial&mode=mip", PNG, "mode"),
    ("{V}/mpr?orientation=diagonal", PNG, "orientation"),
    ("{V}/mpr", PNG, "orientation"),
    ("{V}/mpr?orientation=axial&normal=0,0,1", PNG, "normal"),
    ("{V}/mpr?normal=0,0,1&position=3", PNG, "position"),
    ("{V}/mpr?orientation=axial&position=1,2", PNG, "position"),
    ("{V}/mpr?orientation=axial&foo=1", PNG, "foo"),
    ("{V}/mpr?orientation=axial&preset=nope", PNG, "preset"),
    ("{V}/mpr?orientation=axial&preset=lung&window=40,400", PNG, "preset"),
    ("{V}/mpr?orientation=axial&window=40,-1", PNG, "window"),
    ("{V}/mpr?orientation=axial&quality=0", PNG, "quality"),
    ("{V}/projection?azimuth=abc", PNG, "azimuth"),
    ("{V}/projection?direction=1,2", PNG, "direction"),
    ("{V}/projection?size=0", PNG, "size"),
    ("{V}/projection?bar=2", PNG, "bar"),
    ("{V}/spin?n=0", GIF, "n"),
    ("{V}/spin?n=100000", GIF, "n"),
    ("{V}/spin?n=x", GIF, "n"),
    ("{V}/spin?fps=0", GIF, "fps"),
    ("{V}/spin?axis=1,2", GIF, "axis"),
    ("/volumes?foo=1", "application/json", "foo"),
    ("{V}?foo=1", "application/json", "foo"),
    ("/dicom-web/studies?limit=x", JSON, "limit"),
    ("/dicom-web/studies?limit=-1", JSON, "limit"),
    ("/dicom-web/studies?offset=-1", JSON, "offset"),
    ("/dicom-web/studies?bogus=1", JSON, "bogus"),
    ("{S}/series?bogus=1", JSON, "bogus"),
]


@pytest.mark.parametrize("template,accept,parameter", BAD_REQUESTS, ids=[t[0] for t in BAD_REQUESTS])
def test_bad_request_names_the_parameter(client, where, template, accept, parameter):
    body = problem(_get(client, where, template, accept), 400)
    assert body["parameter"] == parameter
    assert parameter.lower() in body["detail"].lower()


def test_frame_limit(client_factory, where):
    c = client_factory(max_frames=4)
    for template, accept, parameter in [("{SE}/rendered", PNG, "frames"), ("{SE}/rendered", GIF, "frames"),
                                        ("{E}/frames/1,2,3,4,5/rendered", PNG, "frames"),
                                        ("{V}/spin?n=5", GIF, "n")]:
        body = problem(c.get(template.format(**where), headers={"Accept": accept}), 400)
        assert body["parameter"] == parameter
    assert c.get(where["E"] + "/frames/1,2,3,4/rendered", headers={"Accept": PNG}).status_code == 200


def test_output_past_the_pixel_limit(client, where):
    body = problem(_get(client, where, "{I}/rendered?viewport=8192,8192", PNG), 400)
    assert body["parameter"] == "viewport"
    assert "limit" in body["detail"]


#: bad UIDs in each position: (URL template with {bad}, Accept, parameter)
UID_POSITIONS = [
    ("/dicom-web/studies/{bad}/series", JSON, "study"),
    ("/dicom-web/studies/{bad}/thumbnail", PNG, "study"),
    ("/dicom-web/studies/{bad}/series/{se}/instances", JSON, "study"),
    ("/dicom-web/studies/{bad}/series/{se}/instances/{sop}/rendered", PNG, "study"),
    ("/dicom-web/studies/{st}/series/{bad}/instances", JSON, "series"),
    ("/dicom-web/studies/{st}/series/{bad}/rendered", PNG, "series"),
    ("/dicom-web/studies/{st}/series/{bad}/thumbnail", PNG, "series"),
    ("/dicom-web/studies/{st}/series/{bad}/instances/{sop}/rendered", PNG, "series"),
    ("/dicom-web/studies/{st}/series/{se}/instances/{bad}/rendered", PNG, "instance"),
    ("/dicom-web/studies/{st}/series/{se}/instances/{bad}/thumbnail", PNG, "instance"),
    ("/dicom-web/studies/{st}/series/{se}/instances/{bad}/frames/1/rendered", PNG, "instance"),
]


@pytest.mark.parametrize("bad", BAD_UIDS, ids=["double-dot", "leading-zero", "65-chars", "letters", "trailing-dot",
                                                "leading-dot", "suffix"])
@pytest.mark.parametrize("template,accept,parameter", UID_POSITIONS, ids=[t[0].split("/", 3)[-1] for t in UID_POSITIONS])
def test_bad_uid_is_400_naming_its_position(client, where, template, accept, parameter, bad):
    body = problem(client.get(template.format(bad=bad, **where), headers={"Accept": accept}), 400)
    assert body["parameter"] == parameter
    assert bad[:60] in body["detail"]


def test_a_64_character_uid_is_a_uid(client):
    uid = "1." + "2" * 62
    assert len(uid) == 64
    problem(client.get(f"/dicom-web/studies/{uid}/series", headers={"Accept": JSON}), 404)


#: bad values the library (not the service's parsers) refuses: (URL template, Accept, parameter)
LIBRARY_REFUSALS = [
    ("{V}/mpr?normal=0,0,0", PNG, "normal"),
    ("{V}/mpr?normal=0,0,1&up=0,0,1", PNG, "up"),
    ("{V}/mpr?orientation=axial&slab=5&mode=xyz", PNG, "mode"),
    ("{V}/mpr?orientation=axial&interp=cubicx", PNG, "interp"),
    ("{V}/projection?mode=xyz", PNG, "mode"),
    ("{V}/projection?direction=0,0,0", PNG, "direction"),
    ("{V}/spin?n=2&axis=Q", GIF, "axis"),
    ("{V}/spin?n=2&mode=xyz", GIF, "mode"),
    ("{I}/rendered?viewport=10,10,1000,0,5,5", PNG, "viewport"),
]


@pytest.mark.parametrize("template,accept,parameter", LIBRARY_REFUSALS, ids=[t[0] for t in LIBRARY_REFUSALS])
def test_library_refusals_are_400_naming_the_problem(client, where, template, accept, parameter):
    body = problem(_get(client, where, template, accept), 400)
    assert parameter in body["detail"]
    assert body.get("parameter", parameter) == parameter


@pytest.mark.parametrize("template,accept,parameter", LIBRARY_REFUSALS, ids=[t[0] for t in LIBRARY_REFUSALS])
def test_library_refusals_set_parameter(client, where, template, accept, parameter):
    body = problem(_get(client, where, template, accept), 400)
    assert body.get("parameter") == parameter


CENTERLINE = [[0.0, -15.0, -135.0], [0.0, -15.0, -105.0]]

#: curved bodies refused: (body, parameter)
BAD_BODIES = [
    ({"width": 20}, "centerline"),
    ({"centerline": CENTERLINE}, "width"),
    ({"centerline": CENTERLINE, "width": "20"}, "width"),
    ({"centerline": CENTERLINE, "width": True}, "width"),
    ({"centerline": [[0, 0, 0]], "width": 20}, "centerline"),
    ({"centerline": [[0, 0], [1, 1]], "width": 20}, "centerline"),
    ({"centerline": [[0, 0, "a"], [1, 1, 1]], "width": 20}, "centerline"),
    ({"centerline": "abc", "width": 20}, "centerline"),
    ({"centerline": CENTERLINE, "width": 20, "bogus": 1}, "bogus"),
    ({"centerline": CENTERLINE, "width": 20, "window": [40]}, "window"),
    ({"centerline": CENTERLINE, "width": 20, "preset": "nope"}, "preset"),
    ([1, 2], "body"),
]


@pytest.mark.parametrize("body,parameter", BAD_BODIES, ids=[p for _, p in BAD_BODIES])
def test_bad_curved_body(client, where, body, parameter):
    r = client.post(where["V"] + "/curved", json=body, headers={"Accept": PNG})
    assert problem(r, 400)["parameter"] == parameter


@pytest.mark.parametrize("body,word", [
    ({"centerline": CENTERLINE, "width": 0}, "width"),
    ({"centerline": [[0, 0, 0], [0, 0, 0]], "width": 20}, "centerline"),
    ({"centerline": CENTERLINE, "width": 20, "mode": "zz"}, "mode"),
    ({"centerline": CENTERLINE, "width": 20, "spacing": -1}, "spacing"),
    ({"centerline": CENTERLINE, "width": 20, "up": [0, 0]}, "up"),
])
def test_curved_refusals_from_the_library(client, where, body, word):
    r = client.post(where["V"] + "/curved", json=body, headers={"Accept": PNG})
    assert word in problem(r, 400)["detail"]


# -- 500s where the answer should be 400 --------------------------------------------------------

@pytest.mark.parametrize("slab", ["abc", [1]], ids=["text", "list"])
def test_curved_bad_slab_is_400(client, where, slab, caplog):
    caplog.set_level(logging.CRITICAL, logger="voxelflow.service")
    r = client.post(where["V"] + "/curved", json={"centerline": CENTERLINE, "width": 20, "slab": slab},
                    headers={"Accept": PNG})
    assert problem(r, 400).get("parameter") == "slab"


def test_tiny_slab_spacing_is_400(client, where, caplog):
    caplog.set_level(logging.CRITICAL, logger="voxelflow.service")
    problem(client.get(where["V"] + "/mpr?orientation=axial&slab=5&slab_spacing=1e-308", headers={"Accept": PNG}), 400)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_huge_centerline_is_400(client, where, caplog):
    caplog.set_level(logging.CRITICAL, logger="voxelflow.service")
    r = client.post(where["V"] + "/curved", json={"centerline": [[1e308, 0, 0], [-1e308, 0, 0]], "width": 20},
                    headers={"Accept": PNG})
    problem(r, 400)


def test_oversized_viewport_is_refused_before_rendering(client, where, monkeypatch):
    calls = []

    def spy(image, viewport):  # records, and does not do the (large) resize
        calls.append(viewport)
        return np.asarray(image)

    monkeypatch.setattr(dicomweb, "apply_viewport", spy)
    r = _get(client, where, "{SE}/rendered?viewport=8192,8192", PNG)
    assert r.status_code == 400
    assert calls == []


# -- 404 -------------------------------------------------------------------------------------

NOT_FOUND = [
    ("/dicom-web/studies/1.2.3.4/series", JSON),
    ("/dicom-web/studies/1.2.3.4/thumbnail", PNG),
    ("/dicom-web/studies/1.2.3.4/series/{se}/instances/{sop}/rendered", PNG),
    ("{S}/series/1.2.3.4/instances", JSON),
    ("{S}/series/1.2.3.4/rendered", PNG),
    ("{S}/series/1.2.3.4/thumbnail", PNG),
    ("{SE}/instances/1.2.3.4/rendered", PNG),
    ("{SE}/instances/1.2.3.4/frames/1/rendered", PNG),
    ("{SE}/instances/1.2.3.4/thumbnail", PNG),
    ("/volumes/no/such/volume", "application/json"),
    ("/volumes/nope/mpr?orientation=axial", PNG),
    ("/volumes/1.2.3.4/projection", PNG),
    ("/volumes/1.2.3.4/spin", GIF),
    ("/nope", "*/*"),
    ("/dicom-web", "*/*"),
    ("/dicom-web/nope", "*/*"),
    ("{I}/nope", "*/*"),
]


@pytest.mark.parametrize("template,accept", NOT_FOUND, ids=[t for t, _ in NOT_FOUND])
def test_not_found(client, where, template, accept):
    problem(_get(client, where, template, accept), 404)


def test_not_found_names_what(client, where):
    assert "1.2.3.4" in problem(_get(client, where, "/dicom-web/studies/1.2.3.4/series", JSON), 404)["detail"]
    assert "nope" in problem(_get(client, where, "/volumes/nope", "*/*"), 404)["detail"]
    assert "/nope" in problem(_get(client, where, "/nope", "*/*"), 404)["detail"]


# -- 405, 406, 413 -------------------------------------------------------------------------

# a study's URL takes STOW-RS (POST) only: WADO-RS retrieval of a whole study is not served
@pytest.mark.parametrize("method,template", [("DELETE", "/volumes"), ("PUT", "/dicom-web/studies"), ("GET", "{S}"),
                                             ("PUT", "{I}/rendered"), ("POST", "{V}/mpr")])
def test_method_not_allowed(client, where, method, template):
    body = problem(client.request(method, template.format(**where)), 405)
    assert method in body["detail"]


NOT_ACCEPTABLE = [
    ("{I}/rendered", "text/html", "Accept"),
    ("{I}/rendered", "application/octet-stream", "Accept"),
    ("{I}/rendered?accept=text/html", PNG, "accept"),
    ("{I}/frames/1/rendered", "application/dicom", "Accept"),
    ("{SE}/rendered", "video/mp4", "Accept"),
    ("{V}/mpr?orientation=axial", GIF, "Accept"),
    ("{V}/mpr?orientation=axial", "text/html", "Accept"),
    ("{V}/projection", GIF, "Accept"),
    ("{V}/spin?n=2", "image/jpeg", "Accept"),
    ("{I}/thumbnail", "image/png;bits=16", "Accept"),
    ("/dicom-web/studies", "text/html", "Accept"),
    ("{SE}/instances", "image/png", "Accept"),
]


@pytest.mark.parametrize("template,accept,parameter", NOT_ACCEPTABLE, ids=[f"{t}-{a}" for t, a, _ in NOT_ACCEPTABLE])
def test_not_acceptable(client, where, template, accept, parameter):
    body = problem(_get(client, where, template, accept), 406)
    assert body["parameter"] == parameter


def test_not_acceptable_says_what_is_offered(client, where):
    body = problem(_get(client, where, "{I}/rendered", "text/html"), 406)
    assert "image/png" in body["detail"] and "image/jpeg" in body["detail"]


def test_body_too_large(client_factory, where):
    c = client_factory(max_body_bytes=1000)
    body = problem(c.post(where["V"] + "/curved", content=b"{" + b" " * 2000 + b"}",
                          headers={"Content-Type": "application/json"}), 413)
    assert "1000" in body["detail"]


# -- 500: a damaged store --------------------------------------------------------------------

@pytest.fixture(scope="module")
def damaged(phantoms, tmp_path_factory):
    """A store holding the MONOCHROME1 series, one of whose chunk files is gone."""
    store = tmp_path_factory.mktemp("damaged") / "store"
    ingest([phantoms.root / "dicom" / "mono1"], store)
    key = phantoms.key("mono1")
    chunk = next(p for p in sorted((store / key).rglob("*")) if p.is_file() and "c" in p.relative_to(store / key).parts)
    chunk.unlink()
    return store, key


@pytest.mark.parametrize("cache_bytes", [1, 1 << 30], ids=["uncached", "cached"])
def test_damaged_store_is_500_without_traceback(client_factory, phantoms, damaged, cache_bytes, caplog):
    caplog.set_level(logging.CRITICAL, logger="voxelflow.service")
    store, key = damaged
    c = client_factory(store=store, cache_bytes=cache_bytes)
    body = problem(c.get(f"/volumes/{key}/mpr?orientation=axial", headers={"Accept": PNG}), 500)
    assert "chunk" in body["detail"]
    url, _ = phantoms.instance("mono1", 0)
    problem(c.get(f"{url}/rendered", headers={"Accept": PNG}), 500)
    # the rest of the service still answers
    assert c.get("/volumes").status_code == 200


def test_damaged_store_answer_does_not_reveal_server_paths(client_factory, damaged, caplog):
    caplog.set_level(logging.CRITICAL, logger="voxelflow.service")
    store, key = damaged
    c = client_factory(store=store, cache_bytes=1)
    body = problem(c.get(f"/volumes/{key}/mpr?orientation=axial", headers={"Accept": PNG}), 500)
    assert str(store) not in body["detail"]
    assert str(store.parent) not in body["detail"]
