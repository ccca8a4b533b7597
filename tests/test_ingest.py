"""Ingest end to end: phantom series of every geometry variant -> store -> volumes equal to the
ground truth; NIfTI export against dcm2niix; geometry against SimpleITK."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from voxelflow.dicom.series import GeometryPolicy
from voxelflow.ingest import convert, ingest
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series

SHAPE = (20, 32, 40)

VARIANTS = {
    "axial": {},
    "coronal": {"orientation": "coronal"},
    "sagittal": {"orientation": "sagittal"},
    "oblique": {"orientation": "oblique"},
    "descending": {"slice_order": "descending"},
    "shuffled": {"shuffle_instance_numbers": True},
    "tilt": {"gantry_tilt": 12.0},
    "big_endian": {"transfer_syntax": "explicit_be"},
    "rle": {"transfer_syntax": "rle"},
    "implicit": {"transfer_syntax": "implicit_le"},
    "per_slice_rescale": {"per_slice_rescale": True},
    "enhanced": {"enhanced": True},
    "mr": {"modality": "MR"},
}
EXPECTED_FINDINGS = {"tilt": {"gantry_tilt"}, "per_slice_rescale": {"varying_rescale"}}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_round_trips_through_ingest_and_store(tmp_path, name):
    info = write_series(tmp_path / "dicom", shape=SHAPE, **VARIANTS[name])
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    assert len(report.volumes) == 1
    store = VolumeStore(tmp_path / "store")
    volume = store.open(report.volumes[0].key)
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)
    codes = {f["code"] for f in volume.meta["findings"]}
    assert codes == EXPECTED_FINDINGS.get(name, set())
    if volume.meta["values"] == "stored":
        np.testing.assert_array_equal(volume.to_numpy(), info.volume)
        assert volume.meta["rescale"] == {"slope": info.rescale[0][0], "intercept": info.rescale[0][1]}
    else:
        np.testing.assert_allclose(volume.to_numpy(), info.modality_values(), atol=1e-3)
    # one UID per slice: an enhanced file's frames share its SOP Instance UID
    expected_uids = list(info.sop_uids) if len(info.sop_uids) > 1 else list(info.sop_uids) * SHAPE[0]
    assert volume.meta["sop_instance_uids"] == expected_uids


def test_missing_slices_split_or_fill(tmp_path):
    info = write_series(tmp_path / "dicom", shape=SHAPE, missing_slices=(5, 6, 12))
    report = ingest(tmp_path / "dicom", tmp_path / "split")
    assert [v.shape[0] for v in report.volumes] == [5, 5, 7]
    assert all(v.findings == ["missing_slices"] for v in report.volumes)
    store = VolumeStore(tmp_path / "split")
    first = store.open(report.volumes[1].key)
    # the second run starts at grid slot 7
    np.testing.assert_allclose(first.affine[:3, 3], info.affine[:3, :] @ [7, 0, 0, 1], atol=1e-4)

    filled = ingest(tmp_path / "dicom", tmp_path / "fill", policy=GeometryPolicy(gaps="fill"))
    assert [v.shape for v in filled.volumes] == [SHAPE]
    volume = VolumeStore(tmp_path / "fill").open(filled.volumes[0].key)
    assert volume.meta["filled_slices"] == [5, 6, 12]
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)
    kept = [k for k in range(SHAPE[0]) if k not in (5, 6, 12)]
    np.testing.assert_array_equal(volume.to_numpy()[kept], info.volume)


def test_nonuniform_spacing_refused_or_resampled(tmp_path):
    positions = list(np.cumsum([0.0] + [2.5] * 10 + [3.0] * 9))
    write_series(tmp_path / "dicom", shape=SHAPE, slice_positions=positions)
    report = ingest(tmp_path / "dicom", tmp_path / "refuse")
    assert not report.volumes and report.partial
    assert "slice steps vary from 2.5000 to 3.0000 mm" in report.failures[0][1]
    resampled = ingest(tmp_path / "dicom", tmp_path / "resample", policy=GeometryPolicy(nonuniform="resample"))
    (v,) = resampled.volumes
    assert v.findings == ["nonuniform_spacing"]
    assert v.spacing[0] == pytest.approx(2.5)
    assert v.shape[0] == int((positions[-1] - positions[0]) / 2.5) + 1


def test_tilt_correction_gives_orthogonal_affine(tmp_path):
    write_series(tmp_path / "dicom", shape=SHAPE, gantry_tilt=12.0)
    report = ingest(tmp_path / "dicom", tmp_path / "store", policy=GeometryPolicy(tilt="correct"))
    volume = VolumeStore(tmp_path / "store").open(report.volumes[0].key)
    m = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-6)


def test_reingest_skips_unless_overwrite(tmp_path, monkeypatch):
    write_series(tmp_path / "dicom", shape=(6, 16, 16))
    assert [v.status for v in ingest(tmp_path / "dicom", tmp_path / "s").volumes] == ["written"]
    assert (tmp_path / "s" / ".voxelflow" / "scan-index.jsonl.gz").exists()
    # the re-run takes every row from the saved index: no header is parsed again
    from voxelflow.dicom import scan as scan_module

    def no_parse(*args, **kwargs):
        raise AssertionError("an unchanged file was parsed again")

    monkeypatch.setattr(scan_module, "_read_file", no_parse, raising=False)
    assert [v.status for v in ingest(tmp_path / "dicom", tmp_path / "s").volumes] == ["skipped"]
    monkeypatch.undo()
    assert [v.status for v in ingest(tmp_path / "dicom", tmp_path / "s", overwrite=True).volumes] == ["written"]


def test_mixed_folder_ingests_good_series_and_reports_bad_files(tmp_path):
    src = tmp_path / "mixed"
    write_series(src / "a", shape=(6, 16, 16), seed=1)
    write_series(src / "b", shape=(5, 16, 16), seed=2, orientation="coronal")
    (src / "notes.txt").write_text("not dicom")
    (src / "empty.dcm").write_bytes(b"")
    good = sorted((src / "a").iterdir())[0].read_bytes()
    (src / "truncated.dcm").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    corrupt[200:260] = b"\xff" * 60
    (src / "corrupt.dcm").write_bytes(bytes(corrupt))
    result = subprocess.run(
        ["voxelflow", "ingest", str(src), "--store", str(tmp_path / "store")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 3, result.stdout + result.stderr  # partial
    assert "2 volume(s)" in result.stdout
    assert "truncated.dcm" in result.stdout
    assert len(VolumeStore(tmp_path / "store").keys()) == 2
    info = subprocess.run(["voxelflow", "info", str(tmp_path / "store")], capture_output=True, text=True, check=True)
    assert "2 volume(s)" in info.stdout


def test_4d_series(tmp_path):
    """Three time points of the same positions in one series: one (t, z, y, x) volume."""
    import pydicom

    uid = "1.2.826.0.1.3680043.8.498.99"
    infos = []
    for t in range(3):
        info = write_series(tmp_path / "dicom" / str(t), shape=(6, 16, 16), series_uid=uid, seed=t + 1)
        for path in info.paths:
            ds = pydicom.dcmread(path)
            ds.TemporalPositionIdentifier = t + 1
            ds.InstanceNumber = ds.InstanceNumber + 100 * t
            ds.save_as(path)
        infos.append(info)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    (v,) = report.volumes
    assert v.shape == (3, 6, 16, 16)
    volume = VolumeStore(tmp_path / "store").open(v.key)
    assert volume.meta["axes"] == ["t", "z", "y", "x"]
    assert volume.meta["fourth_axis"] == {"size": 3, "meaning": "temporal_position", "values": [1.0, 2.0, 3.0]}
    for t in range(3):
        np.testing.assert_array_equal(volume.to_numpy()[t], infos[t].volume)
    np.testing.assert_allclose(volume.affine, infos[0].affine, atol=1e-4)


def _canonical(path):
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(path))
    return np.asanyarray(image.dataobj), image.affine


@pytest.mark.parametrize("name", ["axial", "coronal", "sagittal", "oblique", "descending", "shuffled", "big_endian", "rle"])
def test_nifti_agrees_with_dcm2niix(tmp_path, name):
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    write_series(tmp_path / "dicom", shape=SHAPE, **VARIANTS[name])
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp_path / "ref"), "-f", "ref", str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    report = convert(tmp_path / "dicom", tmp_path / "ours")
    (ours,) = [v.output for v in report.volumes]
    data, affine = _canonical(ours)
    ref_data, ref_affine = _canonical(tmp_path / "ref" / "ref.nii")
    assert data.shape == ref_data.shape
    np.testing.assert_allclose(affine, ref_affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(data, np.float64), np.asarray(ref_data, np.float64))


@pytest.mark.parametrize("name", ["axial", "coronal", "sagittal", "oblique", "descending"])
def test_geometry_agrees_with_simpleitk(tmp_path, name):
    import SimpleITK as sitk

    write_series(tmp_path / "dicom", shape=SHAPE, **VARIANTS[name])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dicom")))
    ref = reader.Execute()
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    ours = VolumeStore(tmp_path / "store").open(report.volumes[0].key).to_sitk()
    np.testing.assert_allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(ours.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-4)
    # SimpleITK's reader applies the Modality LUT; voxelflow keeps stored values + rescale
    volume = VolumeStore(tmp_path / "store").open(report.volumes[0].key)
    rescale = volume.meta["rescale"]
    modality = sitk.GetArrayFromImage(ours) * rescale["slope"] + rescale["intercept"]
    np.testing.assert_allclose(modality, sitk.GetArrayFromImage(ref), atol=1e-3)


def test_duplicate_positions_are_reported(tmp_path):
    import pydicom

    info = write_series(tmp_path / "dicom", shape=(6, 16, 16))
    copy = pydicom.dcmread(info.paths[2])
    copy.SOPInstanceUID = copy.SOPInstanceUID + ".1"
    copy.InstanceNumber = 99
    copy.save_as(tmp_path / "dicom" / "dup.dcm")
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    (v,) = report.volumes
    # a copy under a new UID (same position, time point and pixels) is dropped, and counted
    assert v.shape == (6, 16, 16) and v.findings == ["duplicate_instances"]
