"""A colour volume over HTTP: its DICOMweb rendered resources are its RGB slices (no window),
and the grayscale-only renderings answer 400 with a problem body that says why."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from svc_helpers import image, problem

from voxelflow.ingest import ingest
from voxelflow.testing import write_colour_series

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour-service")
    info = write_colour_series(root / "dicom", shape=(6, 40, 48), seed=9)
    report = ingest(root / "dicom", root / "store")
    assert not report.failures, report.table()
    sops = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in info.paths]
    return root / "store", report.volumes[0].key, info, sops


def test_rendered_instances_are_the_rgb_slices(client_factory, colour_store):
    store, _, info, sops = colour_store
    client = client_factory(store=store)
    base = f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}"
    for k in (0, 3):
        url = f"{base}/instances/{sops[k]}"
        png = client.get(f"{url}/rendered", headers={"Accept": "image/png"})
        assert png.status_code == 200, png.text
        np.testing.assert_array_equal(image(png.content), info.volume[k])
        frame = client.get(f"{url}/frames/1/rendered", headers={"Accept": "image/png"})
        np.testing.assert_array_equal(image(frame.content), info.volume[k])
        jpeg = image(client.get(f"{url}/rendered", headers={"Accept": "image/jpeg"}).content)
        assert jpeg.shape == info.volume[k].shape
        assert np.abs(jpeg.astype(int) - info.volume[k]).mean() < 8
    thumb = image(client.get(f"{base}/instances/{sops[2]}/thumbnail", headers={"Accept": "image/png"}).content)
    assert thumb.ndim == 3 and thumb.shape[-1] == 3


def test_volume_description_names_the_sample_axis(client_factory, colour_store):
    store, key, _, _ = colour_store
    body = client_factory(store=store).get(f"/volumes/{key}").json()
    assert body["shape"] == [6, 40, 48, 3]
    assert body["axes"] == ["z", "y", "x", "c"] and body["photometric"] == "RGB"


@pytest.mark.parametrize("path, accept", [("mpr?orientation=axial", "image/png"),
                                          ("projection?direction=0,1,0", "image/png"), ("spin?n=4", "image/gif")])
def test_grayscale_renderings_of_colour_are_400(client_factory, colour_store, path, accept):
    store, key, _, _ = colour_store
    body = problem(client_factory(store=store).get(f"/volumes/{key}/{path}", headers={"Accept": accept}), 400)
    assert "colour (RGB) volume" in body["detail"]
