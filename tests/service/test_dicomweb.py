"""DICOMweb through HTTP: QIDO-RS search, rendered frames (PNG, 16-bit PNG, JPEG, viewports,
multipart, GIF) and thumbnails, each compared with the library's own answer for the file."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
import pytest

import voxelflow
from voxelflow import Window
from voxelflow.display import slice_pipeline, window
from voxelflow.render import Viewport, apply_viewport

from svc_helpers import frames, image, multipart, n_frames, problem

DICOM_JSON = {"Accept": "application/dicom+json"}
PNG = {"Accept": "image/png"}
PNG16 = {"Accept": "image/png;bits=16"}


def values(item, tag):
    return item[tag].get("Value", [])


# -- QIDO-RS -------------------------------------------------------------------------------

def test_studies_list_every_study_with_modalities_and_counts(client, phantoms):
    r = client.get("/dicom-web/studies", headers=DICOM_JSON)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    by_uid = {values(item, "0020000D")[0]: item for item in r.json()}
    assert set(by_uid) == {info.study_uid for info in phantoms.series.values()}

    ct, mr = phantoms.series["ct"], phantoms.series["mr"]
    shared = by_uid[ct.study_uid]
    assert shared["0020000D"]["vr"] == "UI"
    assert values(shared, "00080061") == ["CT", "MR"]
    assert values(shared, "00201206") == [2]
    assert values(shared, "00201208") == [len(ct.sop_uids) + len(mr.sop_uids)]
    assert values(shared, "00081190")[0].endswith(f"/dicom-web/studies/{ct.study_uid}")
    for name in ("mono1", "voilut", "wcenter", "enhanced", "pyramid"):
        info = phantoms.series[name]
        item = by_uid[info.study_uid]
        assert values(item, "00080061") == [info.modality]
        assert values(item, "00201206") == [1]
        assert values(item, "00201208") == [len(info.sop_uids)]


def test_series_of_a_study_in_series_number_order(client, phantoms):
    ct, mr = phantoms.series["ct"], phantoms.series["mr"]
    r = client.get(f"/dicom-web/studies/{ct.study_uid}/series", headers=DICOM_JSON)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    items = r.json()
    assert [values(i, "0020000E")[0] for i in items] == [ct.series_uid, mr.series_uid]
    assert [values(i, "00080060")[0] for i in items] == ["CT", "MR"]
    assert [values(i, "00200011")[0] for i in items] == [3, 5]
    assert [values(i, "00201209")[0] for i in items] == [len(ct.sop_uids), len(mr.sop_uids)]
    assert all(values(i, "0020000D") == [ct.study_uid] for i in items)


def test_all_series(client, phantoms):
    r = client.get("/dicom-web/series", headers=DICOM_JSON)
    assert r.status_code == 200
    assert {values(i, "0020000E")[0] for i in r.json()} == {s.series_uid for s in phantoms.series.values()}


@pytest.mark.parametrize("name", ["ct", "mr", "wcenter"])
def test_instances_in_slice_order(client, phantoms, name):
    info = phantoms.series[name]
    r = client.get(f"{phantoms.base(name)}/instances", headers=DICOM_JSON)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    items = r.json()
    assert [values(i, "00080018")[0] for i in items] == list(info.sop_uids)
    rows, cols = info.volume.shape[1:]
    for item in items:
        assert values(item, "0020000E") == [info.series_uid]
        assert values(item, "0020000D") == [info.study_uid]
        assert values(item, "00080060") == [info.modality]
        assert values(item, "00280008") == [1]
        assert values(item, "00280010") == [rows]
        assert values(item, "00280011") == [cols]


def test_descending_series_lists_and_renders_in_slice_order(client, phantoms):
    info = phantoms.series["descending"]
    items = client.get(f"{phantoms.base('descending')}/instances", headers=DICOM_JSON).json()
    assert [values(i, "00080018")[0] for i in items] == list(info.sop_uids)
    for index in range(len(info.sop_uids)):
        url, path = phantoms.instance("descending", index)
        got = image(client.get(f"{url}/rendered", headers=PNG).content)
        assert np.array_equal(got, voxelflow.render_frame(path))


def test_instance_number_is_the_instances_own(client, phantoms):
    """The store keeps no Instance Number: QIDO must not answer a made-up one."""
    import pydicom

    items = client.get(f"{phantoms.base('descending')}/instances", headers=DICOM_JSON).json()
    for item in items:
        sop = values(item, "00080018")[0]
        number = pydicom.dcmread(phantoms.files[sop], stop_before_pixels=True).InstanceNumber
        got = item.get("00200013", {}).get("Value", [])
        assert got in ([], [int(number)]), (sop, got, number)


def test_multiframe_instance_counts_its_frames(client, phantoms):
    info = phantoms.series["enhanced"]
    items = client.get(f"{phantoms.base('enhanced')}/instances", headers=DICOM_JSON).json()
    assert [values(i, "00080018")[0] for i in items] == list(info.sop_uids)
    assert values(items[0], "00280008") == [info.volume.shape[0]]


@pytest.mark.parametrize("limit,offset", [(5, 0), (5, 20), (0, 0), (None, 22), (100, 3), (3, 30)])
def test_instances_limit_offset(client, phantoms, limit, offset):
    sops = list(phantoms.series["ct"].sop_uids)
    params = {"offset": offset} if limit is None else {"limit": limit, "offset": offset}
    r = client.get(f"{phantoms.base('ct')}/instances", params=params, headers=DICOM_JSON)
    assert r.status_code == 200
    got = [values(i, "00080018")[0] for i in r.json()]
    assert got == (sops[offset:] if limit is None else sops[offset:offset + limit])


def test_studies_limit_offset(client):
    every = client.get("/dicom-web/studies", headers=DICOM_JSON).json()
    page = client.get("/dicom-web/studies?limit=2&offset=1", headers=DICOM_JSON).json()
    assert page == every[1:3]


def test_qido_filters(client, phantoms):
    mr = phantoms.series["mr"]
    items = client.get("/dicom-web/series?Modality=MR", headers=DICOM_JSON).json()
    assert [values(i, "0020000E")[0] for i in items] == [mr.series_uid]
    items = client.get(f"/dicom-web/studies?StudyInstanceUID={mr.study_uid}", headers=DICOM_JSON).json()
    assert [values(i, "0020000D")[0] for i in items] == [mr.study_uid]
    sop = mr.sop_uids[4]
    items = client.get(f"{phantoms.base('mr')}/instances?SOPInstanceUID={sop}", headers=DICOM_JSON).json()
    assert [values(i, "00080018")[0] for i in items] == [sop]


def test_qido_unknown_study_series_instance_are_404(client, phantoms):
    ct, mr = phantoms.series["ct"], phantoms.series["mr"]
    problem(client.get("/dicom-web/studies/1.2.3.4.5/series", headers=DICOM_JSON), 404)
    problem(client.get(f"/dicom-web/studies/{ct.study_uid}/series/1.2.3.4.5/instances", headers=DICOM_JSON), 404)
    # a series that exists, but in another study
    other = phantoms.series["mono1"]
    problem(client.get(f"/dicom-web/studies/{ct.study_uid}/series/{other.series_uid}/instances",
                       headers=DICOM_JSON), 404)
    # an instance that exists, but in another series of the same study
    body = problem(client.get(f"{phantoms.base('ct')}/instances/{mr.sop_uids[0]}/rendered", headers=PNG), 404)
    assert mr.sop_uids[0] in body["detail"]


def test_qido_refuses_html(client):
    problem(client.get("/dicom-web/studies", headers={"Accept": "text/html"}), 406)


# -- rendered: pixel-equal to render_frame ------------------------------------------------

WINDOWS = {
    None: None,
    "40,400": (40, 400),
    "40,400,linear-exact": Window(center=40, width=400, function="LINEAR_EXACT"),
    "-600,1500,sigmoid": Window(center=-600, width=1500, function="SIGMOID"),
}
PICKS = {"ct": (0, 11, 23), "mr": (0, 6, 11), "mono1": range(6), "voilut": range(6), "wcenter": range(6)}


@pytest.mark.parametrize("query", list(WINDOWS), ids=lambda q: q or "default")
@pytest.mark.parametrize("name", list(PICKS))
def test_rendered_png_equals_render_frame(client, phantoms, name, query):
    for index in PICKS[name]:
        url, path = phantoms.instance(name, index)
        r = client.get(f"{url}/rendered", params={"window": query} if query else None, headers=PNG)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        expected = voxelflow.render_frame(path, window=WINDOWS[query])
        got = image(r.content)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert np.array_equal(got, expected), (name, index, query)


def test_per_file_window_center_is_honoured(client, phantoms):
    """The "wcenter" files differ only in Window Center: the default renders follow each file."""
    assert len(set(phantoms.window_centers)) == len(phantoms.window_centers)
    for index in range(len(phantoms.window_centers)):
        url, path = phantoms.instance("wcenter", index)
        got = image(client.get(f"{url}/rendered", headers=PNG).content)
        assert np.array_equal(got, voxelflow.render_frame(path))
        # and not what the first file's window would give
        if index:
            first = voxelflow.render_frame(path, window=(phantoms.window_centers[0], 400))
            assert not np.array_equal(got, first)


@pytest.mark.parametrize("name", ["ct", "mr", "mono1", "voilut"])
def test_rendered_png16_equals_render_frame_bits16(client, phantoms, name):
    url, path = phantoms.instance(name, 2)
    r = client.get(f"{url}/rendered", headers=PNG16)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    got = image(r.content)
    expected = voxelflow.render_frame(path, bits=16)
    assert got.dtype == np.uint16
    assert np.array_equal(got, expected)
    got = image(client.get(f"{url}/rendered?window=40,400", headers=PNG16).content)
    assert np.array_equal(got, voxelflow.render_frame(path, window=(40, 400), bits=16))


@pytest.mark.parametrize("accept", [None, "*/*", "image/jpeg", "image/*"])
def test_rendered_jpeg_is_close_to_png(client, phantoms, accept):
    url, _ = phantoms.instance("ct", 11)
    reference = image(client.get(f"{url}/rendered", headers=PNG).content).astype(int)
    headers = {"Accept": accept} if accept else {}
    r = client.get(f"{url}/rendered", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content[:2] == b"\xff\xd8"
    error = np.abs(image(r.content).astype(int) - reference)
    assert error.mean() < 2 and error.max() < 40, (error.mean(), error.max())


def test_jpeg_quality(client, phantoms):
    url, _ = phantoms.instance("ct", 11)
    reference = image(client.get(f"{url}/rendered", headers=PNG).content).astype(int)
    q90 = client.get(f"{url}/rendered?quality=90", headers={"Accept": "image/jpeg"})
    q10 = client.get(f"{url}/rendered?quality=10", headers={"Accept": "image/jpeg"})
    assert q90.status_code == q10.status_code == 200
    assert len(q10.content) < len(q90.content)
    assert q90.content == client.get(f"{url}/rendered", headers={"Accept": "image/jpeg"}).content  # default 90
    assert np.abs(image(q10.content).astype(int) - reference).mean() > np.abs(image(q90.content).astype(int) - reference).mean()


def test_accept_negotiation(client, phantoms):
    url, _ = phantoms.instance("ct", 0)
    r = client.get(f"{url}/rendered", headers={"Accept": "image/png;q=0.5, image/jpeg;q=0.9"})
    assert r.headers["content-type"] == "image/jpeg"
    r = client.get(f"{url}/rendered", headers={"Accept": "text/html, image/png;q=0.1"})
    assert r.headers["content-type"] == "image/png"
    r = client.get(f"{url}/rendered?accept=image/png", headers={"Accept": "image/jpeg"})
    assert r.headers["content-type"] == "image/png"


# -- viewport ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,viewport", [("ct", "32,50"), ("ct", "200,30"), ("mr", "28,100"), ("mr", "100,24"),
                                           ("mr", "17,17"), ("ct", "64,64")])
def test_viewport_fits_keeping_aspect(client, phantoms, name, viewport):
    url, path = phantoms.instance(name, 3)
    vw, vh = (int(v) for v in viewport.split(","))
    rows, cols = phantoms.series[name].volume.shape[1:]
    got = image(client.get(f"{url}/rendered?viewport={viewport}", headers=PNG).content)
    h, w = got.shape
    assert w <= vw and h <= vh
    assert w == vw or h == vh  # fitted: one side touches the viewport
    assert abs(w / h - cols / rows) <= 1.0 / min(w, h) + 1e-9, (w, h, cols, rows)
    assert np.array_equal(got, apply_viewport(voxelflow.render_frame(path), Viewport(vw, vh)))


@pytest.mark.parametrize("viewport,crop", [
    ("20,12,5,7,20,12", lambda a: a[7:19, 5:25]),
    ("20,12,5,7,-20,12", lambda a: a[7:19, 5:25][:, ::-1]),
    ("20,12,5,7,20,-12", lambda a: a[7:19, 5:25][::-1]),
    ("20,12,5,7,-20,-12", lambda a: a[7:19, 5:25][::-1, ::-1]),
    ("59,57,5,7,,", lambda a: a[7:, 5:]),
    ("64,64,0,0,-64,", lambda a: a[:, ::-1]),
], ids=["crop", "flip-h", "flip-v", "flip-both", "to-edges", "mirror"])
def test_viewport_crops_and_flips_exactly(client, phantoms, viewport, crop):
    url, _ = phantoms.instance("ct", 11)
    full = image(client.get(f"{url}/rendered", headers=PNG).content)
    r = client.get(f"{url}/rendered?viewport={viewport}", headers=PNG)
    assert r.status_code == 200, r.text
    assert np.array_equal(image(r.content), crop(full))


def test_viewport_crop_then_resize(client, phantoms):
    url, path = phantoms.instance("ct", 11)
    got = image(client.get(f"{url}/rendered?viewport=40,40,10,10,20,20", headers=PNG).content)
    assert got.shape == (40, 40)
    assert np.array_equal(got, apply_viewport(voxelflow.render_frame(path), Viewport(40, 40, 10, 10, 20, 20)))


# -- frames, multipart, animations ------------------------------------------------------------

def test_frame_list_is_multipart_of_single_renders(client, phantoms):
    url, path = phantoms.instance("enhanced", 0)
    numbers = [1, 3, 8, 2]
    r = client.get(f"{url}/frames/{','.join(map(str, numbers))}/rendered", headers=PNG)
    assert r.status_code == 200, r.text
    assert 'type="image/png"' in r.headers["content-type"]
    parts = multipart(r)
    assert len(parts) == len(numbers)
    for (kind, location, data), n in zip(parts, numbers):
        assert kind == "image/png"
        assert location.endswith(f"{url}/frames/{n}/rendered")
        single = client.get(f"{url}/frames/{n}/rendered", headers=PNG)
        assert single.headers["content-type"] == "image/png"
        assert np.array_equal(image(data), image(single.content))
        assert np.array_equal(image(data), voxelflow.render_frame(path, frame=n - 1))


def test_frame_list_multipart_accept(client, phantoms):
    url, _ = phantoms.instance("enhanced", 0)
    r = client.get(f"{url}/frames/1,2/rendered", headers={"Accept": 'multipart/related; type="image/png"'})
    assert r.status_code == 200
    assert [kind for kind, _, _ in multipart(r)] == ["image/png", "image/png"]
    r = client.get(f"{url}/frames/1,2/rendered", headers={"Accept": "image/jpeg"})
    assert [kind for kind, _, _ in multipart(r)] == ["image/jpeg", "image/jpeg"]


def test_multiframe_instance_rendered_gives_every_frame(client, phantoms):
    url, path = phantoms.instance("enhanced", 0)
    parts = multipart(client.get(f"{url}/rendered", headers=PNG))
    assert len(parts) == phantoms.series["enhanced"].volume.shape[0]
    for f, (_, location, data) in enumerate(parts):
        assert location.endswith(f"/frames/{f + 1}/rendered")
        assert np.array_equal(image(data), voxelflow.render_frame(path, frame=f))


def test_frame_list_gif(client, phantoms):
    url, path = phantoms.instance("enhanced", 0)
    r = client.get(f"{url}/frames/1,3,8/rendered", headers={"Accept": "image/gif"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    assert r.content[:6] in (b"GIF87a", b"GIF89a")
    assert n_frames(r.content) == 3
    for got, n in zip(frames(r.content), (1, 3, 8)):
        assert np.array_equal(got, voxelflow.render_frame(path, frame=n - 1))


def test_gif_keeps_repeated_frames(client, phantoms):
    """Frames 2,2,2 play as three frames' time of frame 2 (Pillow stores consecutive identical
    frames once, with their durations summed; see save_animation)."""
    url, _ = phantoms.instance("enhanced", 0)
    one = client.get(f"{url}/frames/2,3/rendered", headers={"Accept": "image/gif"})
    r = client.get(f"{url}/frames/2,2,2/rendered", headers={"Accept": "image/gif"})
    assert r.status_code == 200 and one.status_code == 200

    def durations(data: bytes) -> list[int]:
        with Image.open(io.BytesIO(data)) as im:
            out = []
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                out.append(int(im.info["duration"]))
            return out

    step = durations(one.content)[0]
    assert sum(durations(r.content)) == 3 * step


def test_series_rendered_gif_and_multipart(client, phantoms):
    info = phantoms.series["ct"]
    base = phantoms.base("ct")
    r = client.get(f"{base}/rendered", headers={"Accept": "image/gif"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    assert n_frames(r.content) == len(info.sop_uids)
    r = client.get(f"{base}/rendered", headers=PNG)
    parts = multipart(r)
    assert len(parts) == len(info.sop_uids)
    for (kind, location, data), sop in zip(parts, info.sop_uids):
        assert kind == "image/png"
        assert location.endswith(f"{base}/instances/{sop}/rendered")
    for index in (0, 11, 23):
        assert np.array_equal(image(parts[index][2]), voxelflow.render_frame(phantoms.files[info.sop_uids[index]]))


# -- thumbnails ----------------------------------------------------------------------------

def _thumbnail_urls(phantoms, name, index):
    info = phantoms.series[name]
    url, _ = phantoms.instance(name, index)
    return {
        "study": f"/dicom-web/studies/{info.study_uid}/thumbnail",
        "series": f"{phantoms.base(name)}/thumbnail",
        "instance": f"{url}/thumbnail",
        "frame": f"{url}/frames/1/thumbnail",
    }


@pytest.mark.parametrize("level", ["study", "series", "instance", "frame"])
@pytest.mark.parametrize("name", ["ct", "mr", "pyramid"])
def test_thumbnails_are_small_jpegs(client, app, phantoms, name, level):
    url = _thumbnail_urls(phantoms, name, 0)[level]
    r = client.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    got = image(r.content)
    assert max(got.shape[:2]) <= app.state.service.settings.thumbnail_size == 128


def test_study_thumbnail_is_the_middle_instance_of_its_first_series(client, phantoms):
    info = phantoms.series["ct"]  # series number 3, before the MR's 5
    middle = (len(info.sop_uids) - 1) // 2
    urls = _thumbnail_urls(phantoms, "ct", middle)
    study = client.get(urls["study"], headers=PNG).content
    assert study == client.get(urls["series"], headers=PNG).content
    assert study == client.get(urls["instance"], headers=PNG).content
    assert study == client.get(urls["frame"], headers=PNG).content


def _from_level(store_volumes, key, index, level, size):
    base, coarse = store_volumes.open(key), store_volumes.open(key, level=level)
    assert coarse.shape[0] == base.shape[0]  # z is not decimated in this phantom: same slice
    pipeline = slice_pipeline(base.meta, index).with_bits(8)
    return apply_viewport(window(np.asarray(coarse.array[index]), pipeline), Viewport(size, size))


def test_thumbnail_is_taken_from_a_coarser_level(client_factory, client, phantoms, store_volumes):
    key = phantoms.key("pyramid")
    volume = store_volumes.open(key)
    assert volume.source is not None and int(volume.source.levels) == 3
    middle = (len(phantoms.series["pyramid"].sop_uids) - 1) // 2
    urls = _thumbnail_urls(phantoms, "pyramid", middle)
    expected = _from_level(store_volumes, key, middle, 2, 40)
    from_full = apply_viewport(voxelflow.render_frame(phantoms.instance("pyramid", middle)[1]), Viewport(40, 40))
    assert expected.shape == from_full.shape
    assert not np.array_equal(expected, from_full)  # the check can tell the levels apart

    small = client_factory(thumbnail_size=40)
    for level in ("study", "series", "instance", "frame"):
        r = small.get(urls[level], headers=PNG)
        assert r.status_code == 200, r.text
        assert np.array_equal(image(r.content), expected), level
    # a viewport on the default app asks for the same size
    got = image(client.get(urls["instance"] + "?viewport=40,40", headers=PNG).content)
    assert np.array_equal(got, expected)


def test_warm_up_renders_each_single_image_type(monkeypatch):
    """At start the service renders a tiny instance to each single-image type, so that a
    process's first request does not pay for the imports; it needs no store."""
    from voxelflow.service import dicomweb
    from voxelflow.service.settings import ServiceSettings

    encoded = []
    real = dicomweb._encode

    def spy(images, media, quality):
        out = real(images, media, quality)
        encoded.append((media.name, out[0][:4]))
        return out

    monkeypatch.setattr(dicomweb, "_encode", spy)
    dicomweb.warm_up(ServiceSettings())
    assert [name for name, _ in encoded] == list(dicomweb.SINGLE)
    assert {head[:2] for name, head in encoded if name == "image/jpeg"} == {b"\xff\xd8"}
    assert all(head == b"\x89PNG" for name, head in encoded if name.startswith("image/png"))
