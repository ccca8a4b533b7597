"""Volume resources through HTTP: listing, description, MPR / slab, projection, spin and curved
MPR, each compared with the library called directly on the stored volume."""

from __future__ import annotations

import io
import time
from urllib.parse import quote

import numpy as np
import pytest

from voxelflow import Plane, Slab, Window, curved_mpr, mpr, project, rotating_projection
from voxelflow.display import pipeline_for, preset
from voxelflow.ingest import ingest

from svc_helpers import frames, image, n_frames, plane_from_headers, problem, raw_array

PNG = {"Accept": "image/png"}
RAW = {"Accept": "application/octet-stream"}


# -- listing -------------------------------------------------------------------------------

def test_list_volumes(client, phantoms):
    r = client.get("/volumes")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    by_key = {v["key"]: v for v in r.json()}
    assert set(by_key) == set(phantoms.keys.values())
    for name, info in phantoms.series.items():
        item = by_key[phantoms.key(name)]
        assert item["shape"] == list(info.volume.shape)
        assert item["series_instance_uid"] == info.series_uid
        assert item["study_instance_uid"] == info.study_uid
        assert item["modality"] == info.modality
        assert item["findings"] == []


@pytest.mark.parametrize("name", ["ct", "mr", "pyramid"])
def test_describe_volume(client, phantoms, name):
    info = phantoms.series[name]
    r = client.get(f"/volumes/{phantoms.key(name)}")
    assert r.status_code == 200
    body = r.json()
    assert body["key"] == phantoms.key(name)
    assert body["shape"] == list(info.volume.shape)
    assert np.allclose(body["spacing"], info.spacing, atol=1e-5)
    affine = np.array(body["affine"], dtype=float)
    assert affine.shape == (4, 4) and np.all(np.isfinite(affine))
    assert np.allclose(affine, info.affine, atol=1e-4)
    assert isinstance(body["findings"], list)
    assert body["levels"][0]["shape"] == list(info.volume.shape)
    if name == "pyramid":
        assert [lv["shape"] for lv in body["levels"]] == [[6, 160, 200], [6, 80, 100], [6, 40, 50]]


def test_volume_by_series_uid_and_encoded_key(client, phantoms):
    key = phantoms.key("ct")
    expected = client.get(f"/volumes/{key}").json()
    assert client.get(f"/volumes/{phantoms.series['ct'].series_uid}").json() == expected
    assert client.get(f"/volumes/{quote(key, safe='')}").json() == expected
    assert "%2F" in quote(key, safe="")


# -- MPR -------------------------------------------------------------------------------------

def _axial(volume, position=None):
    plane = Plane.axial(volume)
    if position is not None:
        center = np.array(plane.center)
        center[2] = position
        plane = plane.replace(center=center)
    return plane


OBLIQUE_CENTER = np.array([0.0, -15.0, -120.0])

#: query -> (plane the service should use, built with the library; slab)
MPR_CASES = {
    "orientation=axial": (lambda v: Plane.axial(v), None),
    "orientation=axial&position=-118.75": (lambda v: _axial(v, -118.75), None),
    "orientation=coronal": (lambda v: Plane.coronal(v), None),
    "orientation=sagittal&spacing=1.5": (lambda v: Plane.sagittal(v, spacing=(1.5, 1.5)), None),
    "orientation=axial&size=40,50&spacing=0.9,1.1": (lambda v: Plane.axial(v, spacing=(0.9, 1.1), size=(40, 50)), None),
    "normal=0.2,0.3,1&up=0,-1,0&center=0,-15,-120&size=48": (
        lambda v: Plane.oblique(OBLIQUE_CENTER, [0.2, 0.3, 1.0], up=[0, -1, 0], size=(48, 48)), None),
    "normal=0,1,1": (lambda v: Plane.oblique(v, [0.0, 1.0, 1.0]), None),
    "orientation=axial&slab=10&mode=mip": (lambda v: Plane.axial(v), Slab(10, "mip")),
    "orientation=coronal&slab=6&mode=minip": (lambda v: Plane.coronal(v), Slab(6, "minip")),
    "normal=0.2,0.3,1&up=0,-1,0&center=0,-15,-120&size=48&slab=8&mode=mip": (
        lambda v: Plane.oblique(OBLIQUE_CENTER, [0.2, 0.3, 1.0], up=[0, -1, 0], size=(48, 48)), Slab(8, "mip")),
    "normal=0,1,1&slab=6&mode=mean": (lambda v: Plane.oblique(v, [0.0, 1.0, 1.0]), Slab(6, "mean")),
    "orientation=axial&slab=5&slab_spacing=0.5&mode=sum": (lambda v: Plane.axial(v), Slab(5, "sum", spacing=0.5)),
}


def _same_plane(a: Plane, b: Plane) -> None:
    assert tuple(a.size) == tuple(b.size)
    for x, y in ((a.center, b.center), (a.row, b.row), (a.col, b.col), (a.spacing, b.spacing)):
        assert np.allclose(np.asarray(x, float), np.asarray(y, float), atol=1e-5), (x, y)


@pytest.mark.parametrize("name,query", [
    (name, query) for name in ("ct", "mr") for query in MPR_CASES
])
def test_mpr_equals_library(client, phantoms, store_volumes, name, query):
    volume = store_volumes.open(phantoms.key(name))
    make, slab = MPR_CASES[query]
    plane = make(volume)
    url = f"/volumes/{phantoms.key(name)}/mpr?{query}"

    r = client.get(url, headers=PNG)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    _same_plane(plane_from_headers(r.headers), plane)
    expected = mpr(volume, plane, slab=slab, display=pipeline_for(volume))
    assert np.array_equal(image(r.content), expected)

    r = client.get(url, headers=RAW)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    got = raw_array(r)
    assert got.shape == tuple(plane.size)
    # float32 modality values: the service may render from an in-memory copy, whose index
    # arithmetic rounds differently from the chunked read's at the 1e-13 level (a MinIP of
    # true zeros gave 1.07e-13 against 7.99e-14); the display images above are exactly equal
    np.testing.assert_allclose(got, mpr(volume, plane, slab=slab, display=None), rtol=1e-6, atol=1e-6)

    r = client.get(url, headers={"Accept": "application/x-npy"})
    assert r.status_code == 200
    assert np.array_equal(np.load(io.BytesIO(r.content)), got, equal_nan=True)


def test_mpr_headers_rebuild_an_axis_aligned_plane_exactly(client, phantoms, store_volumes):
    volume = store_volumes.open(phantoms.key("ct"))
    for query in ("orientation=axial&position=-118.75", "orientation=sagittal"):
        r = client.get(f"/volumes/{phantoms.key('ct')}/mpr?{query}", headers=RAW)
        plane = plane_from_headers(r.headers)
        assert np.array_equal(raw_array(r), mpr(volume, plane), equal_nan=True)


def test_mpr_headers_rebuild_an_oblique_plane_exactly(client, phantoms, store_volumes):
    volume = store_volumes.open(phantoms.key("ct"))
    r = client.get(f"/volumes/{phantoms.key('ct')}/mpr?normal=0.2,0.3,1&up=0,-1,0&center=0,-15,-120&size=48",
                   headers=RAW)
    plane = plane_from_headers(r.headers)
    assert np.array_equal(raw_array(r), mpr(volume, plane), equal_nan=True)


def test_mpr_16bit_window_and_preset(client, phantoms, store_volumes):
    key = phantoms.key("ct")
    volume = store_volumes.open(key)
    plane = Plane.coronal(volume)
    pipeline = pipeline_for(volume)
    r = client.get(f"/volumes/{key}/mpr?orientation=coronal", headers={"Accept": "image/png;bits=16"})
    got = image(r.content)
    assert got.dtype == np.uint16
    assert np.array_equal(got, mpr(volume, plane, display=pipeline.with_bits(16)))
    r = client.get(f"/volumes/{key}/mpr?orientation=coronal&window=-600,1500", headers=PNG)
    expected = mpr(volume, plane, display=pipeline.with_voi(Window(center=-600, width=1500)).with_bits(8))
    assert np.array_equal(image(r.content), expected)
    r = client.get(f"/volumes/{key}/mpr?orientation=coronal&preset=bone", headers=PNG)
    assert np.array_equal(image(r.content), mpr(volume, plane, display=pipeline.with_voi(preset("bone")).with_bits(8)))
    r = client.get(f"/volumes/{key}/mpr?orientation=coronal", headers={"Accept": "image/jpeg"})
    assert r.headers["content-type"] == "image/jpeg"
    error = np.abs(image(r.content).astype(int) - mpr(volume, plane, display=pipeline).astype(int))
    assert error.mean() < 2 and error.max() < 40


def test_mpr_by_series_uid_and_encoded_key(client, phantoms):
    key = phantoms.key("ct")
    expected = client.get(f"/volumes/{key}/mpr?orientation=sagittal", headers=PNG).content
    by_uid = client.get(f"/volumes/{phantoms.series['ct'].series_uid}/mpr?orientation=sagittal", headers=PNG)
    assert by_uid.status_code == 200 and by_uid.content == expected
    encoded = client.get(f"/volumes/{quote(key, safe='')}/mpr?orientation=sagittal", headers=PNG)
    assert encoded.status_code == 200 and encoded.content == expected


def test_raw_output_refuses_a_window(client, phantoms):
    body = problem(client.get(f"/volumes/{phantoms.key('ct')}/mpr?orientation=axial&window=40,400", headers=RAW), 400)
    assert body["parameter"] == "window"


def _pyramid_mpr(volume, response):
    return mpr(volume, plane_from_headers(response.headers))


#: (request on the pyramid volume, the library's answer on the stored volume); spacing 4 mm
#: is coarse enough for mpr / project (level="auto") to read pyramid level 2
PYRAMID_CASES = {
    "mpr?orientation=sagittal&spacing=4": _pyramid_mpr,
    "mpr?orientation=axial&spacing=4": _pyramid_mpr,
    "projection?spacing=4": lambda volume, _: project(volume, direction=[0.0, 1.0, 0.0], spacing=4),
}


@pytest.mark.parametrize("query", list(PYRAMID_CASES))
def test_uncached_pyramid_volume_equals_library(client_factory, phantoms, store_volumes, query):
    """A volume too large for the cache is rendered from the store, pyramid and all."""
    key = phantoms.key("pyramid")
    volume = store_volumes.open(key)
    r = client_factory(cache_bytes=1).get(f"/volumes/{key}/{query}", headers=RAW)
    assert r.status_code == 200, r.text
    assert np.array_equal(raw_array(r), PYRAMID_CASES[query](volume, r), equal_nan=True)


@pytest.mark.parametrize("query", list(PYRAMID_CASES))
def test_cached_pyramid_volume_equals_library(client_factory, phantoms, store_volumes, query):
    key = phantoms.key("pyramid")
    volume = store_volumes.open(key)
    r = client_factory().get(f"/volumes/{key}/{query}", headers=RAW)
    assert r.status_code == 200, r.text
    assert np.array_equal(raw_array(r), PYRAMID_CASES[query](volume, r), equal_nan=True)


# -- projection, spin, curved --------------------------------------------------------------

@pytest.mark.parametrize("query,kwargs", [
    ("", {"direction": [0.0, 1.0, 0.0]}),
    ("direction=1,0,0&mode=mean", {"direction": [1.0, 0.0, 0.0], "mode": "mean"}),
    ("azimuth=30&elevation=10&size=40", {"azimuth": 30.0, "elevation": 10.0, "size": (40, 40)}),
])
def test_projection_equals_library(client, phantoms, store_volumes, query, kwargs):
    key = phantoms.key("ct")
    volume = store_volumes.open(key)
    r = client.get(f"/volumes/{key}/projection?{query}", headers=PNG)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert np.array_equal(image(r.content), project(volume, display=pipeline_for(volume), **kwargs))
    r = client.get(f"/volumes/{key}/projection?{query}", headers=RAW)
    assert np.array_equal(raw_array(r), project(volume, **kwargs), equal_nan=True)


@pytest.mark.parametrize("accept,magic", [("image/gif", b"GIF8"), ("image/apng", b"\x89PNG")])
def test_spin_is_an_animation_of_n_views(client, phantoms, store_volumes, accept, magic):
    key = phantoms.key("ct")
    volume = store_volumes.open(key)
    r = client.get(f"/volumes/{key}/spin?n=5&size=32", headers={"Accept": accept})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == accept
    assert r.content.startswith(magic)
    assert n_frames(r.content) == 5
    views = rotating_projection(volume, 5, size=32, display=pipeline_for(volume))
    if accept == "image/gif":
        for got, expected in zip(frames(r.content), views):
            assert np.array_equal(got, expected)


CENTERLINE = [[0.0, -15.0, -135.0], [3.0, -12.0, -120.0], [0.0, -15.0, -105.0]]


@pytest.mark.parametrize("extra,kwargs", [
    ({}, {}),
    ({"mode": "stretched", "spacing": 0.8}, {"mode": "stretched", "spacing": 0.8}),
    ({"window": [-600, 1500]}, {}),
])
def test_curved_equals_library(client, phantoms, store_volumes, extra, kwargs):
    key = phantoms.key("ct")
    volume = store_volumes.open(key)
    r = client.post(f"/volumes/{key}/curved", json={"centerline": CENTERLINE, "width": 20, **extra}, headers=PNG)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    pipeline = pipeline_for(volume)
    if "window" in extra:
        pipeline = pipeline.with_voi(Window(center=-600, width=1500))
    expected = curved_mpr(volume, np.array(CENTERLINE), width_mm=20.0, display=pipeline.with_bits(8), **kwargs)
    assert np.array_equal(image(r.content), expected)
    r = client.post(f"/volumes/{key}/curved", json={"centerline": CENTERLINE, "width": 20, **kwargs}, headers=RAW)
    assert np.array_equal(raw_array(r), curved_mpr(volume, np.array(CENTERLINE), width_mm=20.0, **kwargs), equal_nan=True)


def test_curved_body_past_the_limit_is_413(client_factory, phantoms):
    c = client_factory(max_body_bytes=1000)
    url = f"/volumes/{phantoms.key('ct')}/curved"
    body = {"centerline": CENTERLINE * 40, "width": 20}
    problem(c.post(url, json=body, headers=PNG), 413)

    async def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(12):
            yield b" " * 100

    problem(c.post(url, content=chunks(), headers={"Content-Type": "application/json", **PNG}), 413)
    # under the limit: answered
    assert c.post(url, json={"centerline": CENTERLINE, "width": 20}, headers=PNG).status_code == 200


def test_curved_needs_json(client, phantoms):
    url = f"/volumes/{phantoms.key('ct')}/curved"
    body = problem(client.post(url, content=b"{}", headers={"Content-Type": "text/plain"}), 415)
    assert body["parameter"] == "Content-Type"
    body = problem(client.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert body["parameter"] == "body"


def test_get_on_curved_is_405(client, phantoms):
    problem(client.get(f"/volumes/{phantoms.key('ct')}/curved"), 405)


# -- the store changing under the app ---------------------------------------------------------

def test_added_and_removed_volumes_appear_and_leave(client_factory, phantoms, tmp_path):
    import shutil

    store = tmp_path / "store"
    ingest([phantoms.root / "dicom" / "mono1"], store)
    c = client_factory(store=store, refresh_s=0.1)
    assert [v["key"] for v in c.get("/volumes").json()] == [phantoms.key("mono1")]
    ingest([phantoms.root / "dicom" / "voilut"], store)
    deadline = time.monotonic() + 5
    while len(c.get("/volumes").json()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {v["key"] for v in c.get("/volumes").json()} == {phantoms.key("mono1"), phantoms.key("voilut")}
    info = phantoms.series["voilut"]
    url = f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}/instances"
    assert c.get(url, headers={"Accept": "application/dicom+json"}).status_code == 200
    shutil.rmtree(store / phantoms.key("voilut").split("/")[0])
    deadline = time.monotonic() + 5
    while len(c.get("/volumes").json()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [v["key"] for v in c.get("/volumes").json()] == [phantoms.key("mono1")]
    problem(c.get(url, headers={"Accept": "application/dicom+json"}), 404)


def test_the_cache_reads_a_volume_by_slabs_of_chunks(tmp_path):
    """The cache loads a volume one slab of chunks at a time (a request rendering from the store
    meanwhile waits for one slab): the same array as one read, whatever the last slab's size."""
    import zarr

    from voxelflow.service.cache import _read_by_slabs

    values = np.random.default_rng(3).integers(-1000, 3000, (23, 17, 9), dtype=np.int16)
    stored = zarr.create_array(tmp_path / "a.zarr", shape=values.shape, chunks=(5, 8, 9), dtype=values.dtype)
    stored[...] = values
    got = _read_by_slabs(stored)
    assert isinstance(got, np.ndarray) and got.dtype == values.dtype
    np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(_read_by_slabs(values), values)  # in memory already: no chunks


def test_slices_a_load_has_passed_come_from_memory_the_rest_from_the_store(tmp_path, monkeypatch):
    """While a volume loads, a rendered instance whose slice the load has passed is read from
    memory (the store's reads queue behind the load's); the others from the store."""
    import threading

    from voxelflow.service import cache as cache_module
    from voxelflow.service.catalog import Catalog
    from voxelflow.store import VolumeStore
    from voxelflow.testing import write_series

    write_series(tmp_path / "dicom", shape=(20, 24, 28), seed=8)
    store = VolumeStore(tmp_path / "store")
    ingest(tmp_path / "dicom", store)
    entry = next(iter(Catalog(VolumeStore(store.path, read_only=True)).refresh().volumes.values()))
    expected = entry.levels[0].to_numpy()
    marked = expected ^ 1  # what the half-done load holds: told apart from the store's values
    cache = cache_module.VolumeCache(1 << 30)
    release, halfway = threading.Event(), threading.Event()
    real = cache_module._read_by_slabs

    def half_then_wait(array, filling):  # the load stops half-way until the test lets it go
        filling.out = np.zeros(array.shape, array.dtype)
        filling.out[:10] = marked[:10]
        filling.done = 10
        halfway.set()
        release.wait(30)
        return real(array, filling)

    monkeypatch.setattr(cache_module, "_read_by_slabs", half_then_wait)
    cache.volume(entry)  # starts the load
    assert halfway.wait(30)
    try:
        for z in (3, 9):
            np.testing.assert_array_equal(cache.slice_values(entry, (z,)), marked[z])
        for z in (10, 17):
            np.testing.assert_array_equal(cache.slice_values(entry, (z,)), expected[z])
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while cache.nbytes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.nbytes == expected.nbytes
    for z in (3, 17):  # cached whole: every slice from memory, the stored values
        np.testing.assert_array_equal(cache.slice_values(entry, (z,)), expected[z])
