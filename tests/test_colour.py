"""Colour volumes: RGB and YBR series ingested as (z, y, x, 3) uint8 RGB, stored with their
sample axis named, converted to RGB24 NIfTI as dcm2niix does, and refused with a typed error by
what is defined on grayscale only (resampling, rendering, the display pipeline)."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from voxelflow import Volume
from voxelflow.cohort.tasks import write_thumbnail
from voxelflow.display import window
from voxelflow.errors import DisplayError, ParameterError, RenderError, ResampleError, StoreError
from voxelflow.ingest import convert, ingest
from voxelflow.render import Plane, curved_mpr, mpr, project, rotating_projection
from voxelflow.resampling import reorient, resample
from voxelflow.store import VolumeStore
from voxelflow.testing import write_colour_series, write_series

pytestmark = pytest.mark.filterwarnings("ignore")

ENCODINGS = {
    "rgb": {},
    "rgb-planar": {"planar_configuration": 1},
    "ybr-full": {"photometric": "YBR_FULL"},
    "rle": {"transfer_syntax": "rle"},
    "jpeg-baseline": {"transfer_syntax": "jpeg_baseline"},
    "sagittal": {"orientation": "sagittal"},
    "oblique": {"orientation": "oblique"},
}


def _pydicom_rgb(paths) -> np.ndarray:
    """The slices as pydicom decodes them (YBR converted to RGB), instance order."""
    return np.stack([pydicom.dcmread(p).pixel_array for p in paths])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A colour series ingested into a store: (store, key, ColourSeries)."""
    root = tmp_path_factory.mktemp("colour")
    info = write_colour_series(root / "dicom", shape=(10, 40, 56), seed=3)
    report = ingest(root / "dicom", root / "store")
    assert not report.failures and len(report.volumes) == 1, report.table()
    return VolumeStore(root / "store"), report.volumes[0].key, info


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_ingest_builds_the_rgb_volume(encoding, tmp_path):
    info = write_colour_series(tmp_path / "dicom", shape=(8, 32, 40), **ENCODINGS[encoding])
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    (result,) = report.volumes
    assert result.shape == (8, 32, 40, 3) and result.status == "written"
    volume = VolumeStore(tmp_path / "store").open(result.key)
    assert volume.is_colour and volume.spatial_shape == (8, 32, 40)
    assert volume.meta["photometric"] == "RGB" and volume.meta["source_photometric"] == info.photometric
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-6)
    data = volume.to_numpy()
    assert data.dtype == np.uint8
    if info.exact:
        np.testing.assert_array_equal(data, info.volume)
    elif encoding == "ybr-full":
        assert np.abs(data.astype(int) - info.volume).max() <= 2  # the colour transform's rounding
    else:  # lossy: the decoded samples are pydicom's (libjpeg's), slice by slice
        np.testing.assert_array_equal(data, _pydicom_rgb(info.paths))


def test_store_names_the_sample_axis(stored):
    store, key, _ = stored
    attributes = json.loads((store.path / key / "zarr.json").read_text())["attributes"]
    assert attributes["voxelflow"]["axes"] == ["z", "y", "x", "c"]
    assert attributes["voxelflow"]["shape"] == [10, 40, 56, 3]
    assert attributes["voxelflow"]["chunks"][-1] == 3  # a chunk holds whole voxels
    assert len(attributes["voxelflow"]["levels"]) == 1  # no box-mean pyramid of colours
    (multiscale,) = attributes["ome"]["multiscales"]
    assert multiscale["axes"][-1] == {"name": "c", "type": "channel"}
    assert [a["type"] for a in multiscale["axes"][:3]] == ["space"] * 3
    (dataset,) = multiscale["datasets"]
    assert len(dataset["coordinateTransformations"][0]["scale"]) == 4
    assert "display" not in store.open(key).meta  # the grayscale pipeline does not apply


def test_store_refuses_axes_that_contradict_the_array(stored, tmp_path):
    store, key, _ = stored
    copy = tmp_path / "store"
    shutil.copytree(store.path, copy)
    document = copy / key / "zarr.json"
    for axes in (["t", "z", "y", "x"], ["z", "y", "c", "x"], "zyxc"):
        body = json.loads(document.read_text())
        body["attributes"]["voxelflow"]["axes"] = axes
        document.write_text(json.dumps(body))
        if axes == ["t", "z", "y", "x"]:  # a legal layout: the volume then reads as 4-D grey
            assert not VolumeStore(copy).open(key).is_colour
        else:
            with pytest.raises(StoreError, match="'axes'"):
                VolumeStore(copy).open(key)


def test_write_refuses_a_colour_volume_that_is_not_8_bit_rgb(tmp_path):
    store = VolumeStore(tmp_path / "store")
    for array in (np.zeros((2, 3, 4, 3), np.uint16), np.zeros((2, 3, 4, 4), np.uint8)):
        with pytest.raises(ParameterError, match="colour"):
            store.write("a", Volume(array, np.eye(4), {"axes": ["z", "y", "x", "c"]}))
    assert "a" not in store


def test_convert_writes_rgb24_like_dcm2niix(tmp_path):
    info = write_colour_series(tmp_path / "src", shape=(6, 30, 44), orientation="coronal", seed=5)
    report = convert(tmp_path / "src", tmp_path / "ours", sidecar=False)
    assert not report.failures, report.table()
    (ref_dir := tmp_path / "ref").mkdir()
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(ref_dir), "-f", "ref", str(tmp_path / "src")],
                   capture_output=True, timeout=120, check=True)
    (ref_path,) = ref_dir.glob("*.nii")
    ours = nib.load(report.volumes[0].output)
    ref = nib.load(ref_path)
    assert ours.header["datatype"] == ref.header["datatype"] == 128  # RGB24
    a, b = nib.as_closest_canonical(ours), nib.as_closest_canonical(ref)
    assert a.shape == b.shape
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    # and the voxels are the phantom's: NIfTI (x, y, z) are (i, j, k)
    data = np.asarray(ours.dataobj)
    np.testing.assert_array_equal(np.stack([data[c] for c in "RGB"], -1).transpose(2, 1, 0, 3), info.volume)


def test_a_colour_map_in_a_grayscale_series_is_its_own_volume(tmp_path):
    """Siemens writes a DTI run's colour FA map into the diffusion series: two volumes, never
    one array of mixed one- and three-sample slices."""
    grey = write_series(tmp_path / "dicom", shape=(8, 32, 40), modality="MR", seed=2)
    write_colour_series(tmp_path / "dicom", shape=(8, 32, 40), series_uid=grey.series_uid,
                        study_uid=grey.study_uid, seed=2)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    store = VolumeStore(tmp_path / "store")
    volumes = sorted((store.open(v.key) for v in report.volumes), key=lambda v: v.is_colour)
    assert [v.shape for v in volumes] == [(8, 32, 40), (8, 32, 40, 3)]
    assert [v.is_colour for v in volumes] == [False, True]
    assert {v.meta["series_instance_uid"] for v in volumes} == {grey.series_uid}


def test_16_bit_colour_is_refused_with_a_reason(tmp_path):
    info = write_colour_series(tmp_path / "dicom", shape=(3, 16, 16))
    for path in info.paths:  # widen the samples: 16-bit RGB, which neither store nor RGB24 holds
        ds = pydicom.dcmread(path)
        samples = ds.pixel_array
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelData = samples.astype("<u2").tobytes()
        ds.save_as(path)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.volumes
    ((_, reason),) = report.failures
    assert "8-bit RGB" in reason and "uint16" in reason


def test_grayscale_operations_refuse_colour_with_their_typed_error(stored):
    store, key, _ = stored
    volume = store.open(key)
    plane = Plane.axial(volume)
    assert plane.size == (40, 56)  # the plane covers the spatial axes, not the samples
    calls = [
        (RenderError, lambda: mpr(volume, plane)),
        (RenderError, lambda: mpr(volume, plane, slab=6.0)),
        (RenderError, lambda: project(volume, direction=(0, 1, 0))),
        (RenderError, lambda: rotating_projection(volume, 4)),
        (RenderError, lambda: curved_mpr(volume, np.array([[0, -15, -50], [0, -15, -30.0]]), width_mm=20.0)),
        (ResampleError, lambda: resample(volume, spacing=1.0)),
        (DisplayError, lambda: window(volume, center=100, width=200)),
    ]
    for error, call in calls:
        with pytest.raises(error, match=r"colour \(RGB\) volume"):
            call()


def test_reorient_keeps_the_samples_last(stored):
    store, key, info = stored
    volume = store.open(key)
    turned = reorient(volume, "RAS")
    assert turned.is_colour and turned.shape[-1] == 3
    grey = reorient(Volume(info.volume[..., 1], volume.affine), "RAS")
    np.testing.assert_array_equal(np.asarray(turned.array)[..., 1], np.asarray(grey.array))
    np.testing.assert_allclose(turned.affine, grey.affine)


def test_cohort_thumbnail_of_colour_is_its_middle_slice(stored, tmp_path):
    from PIL import Image

    store, key, info = stored
    path = write_thumbnail(store.open(key), tmp_path / "thumb.png", 256)
    with Image.open(path) as im:
        assert im.mode == "RGB"
        shown = np.asarray(im)
    # axial phantom seen from the front: rows along z, superior up; columns along x (toward
    # the patient's left), so the patient's right is on the image's left unflipped
    middle = info.volume[:, info.volume.shape[1] // 2][::-1]
    assert shown.shape[1] == middle.shape[1]  # 0.9 mm pixels: 10 slices of 3 mm become 33 rows
    resized = Image.fromarray(middle).resize((shown.shape[1], shown.shape[0]), Image.Resampling.BOX)
    np.testing.assert_array_equal(shown, np.asarray(resized))


def test_a_4d_colour_series_is_refused_with_a_reason(tmp_path):
    """Repeated positions in a colour series (a colour cine) would be a 4-D colour volume,
    which neither the store's (z, y, x, c) layout nor RGB24 NIfTI holds: refused, never cut."""
    uid = "1.2.826.0.1.3680043.8.498.4343"
    for t in range(2):
        info = write_colour_series(tmp_path / "dicom" / str(t), shape=(3, 16, 16), series_uid=uid, seed=t)
        for path in info.paths:
            ds = pydicom.dcmread(path)
            ds.InstanceNumber += 10 * t
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ds.SOPInstanceUID}.{t + 1}"
            ds.save_as(path)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.volumes
    ((_, reason),) = report.failures
    assert "4-D colour series (2 volumes" in reason
