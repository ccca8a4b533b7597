"""Classic 4-D MR series as each vendor encodes them (voxelflow.testing.vendors), converted by
voxelflow and by the dcm2niix wheel: the same NIfTI files, shapes (with the fourth axis),
affines (1e-3 mm), voxels, b-values and b-vectors, and the volumes in acquisition order."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from voxelflow.ingest import convert
from voxelflow.testing.vendors import KINDS, VENDORS, write_vendor_series

pytestmark = pytest.mark.filterwarnings("ignore")


def _dcm2niix(src: Path, out: Path) -> list[Path]:
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    out.mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "y", "-o", str(out), "-f", "ref_%e", str(src)],
                   check=True, capture_output=True, timeout=120)
    return sorted(out.glob("*.nii"))


def _lines(path: str) -> list[list[float]]:
    return [[float(x) for x in line.split()] for line in Path(path).read_text().splitlines() if line.strip()]


def _in_space(rows: list[list[float]], affine: np.ndarray) -> np.ndarray:
    """.bvec columns as RAS directions through the file's affine (first axis negated when the
    determinant is positive, FSL's convention)."""
    matrix = np.asarray(affine)[:3, :3]
    v = np.array(rows)
    if np.linalg.det(matrix) > 0:
        v[0] = -v[0]
    return (matrix / np.linalg.norm(matrix, axis=0)) @ v


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_series_converts_like_dcm2niix(tmp_path, vendor, kind):
    orientation = {"siemens": "axial", "ge": "sagittal", "philips": "oblique", "canon": "coronal"}[vendor]
    info = write_vendor_series(tmp_path / "dicom", vendor, kind, orientation=orientation, seed=3)
    refs = _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    report = convert(tmp_path / "dicom", tmp_path / "ours")
    assert not report.failures, report.table()
    ours = report.volumes
    if kind == "multiecho":  # one volume per echo, paired by Echo Time
        def echo(path):
            return json.loads(Path(str(path).replace(".nii.gz", ".json").replace(".nii", ".json")).read_text())["EchoTime"]
        ours = sorted(ours, key=lambda v: echo(v.output))
        refs = sorted(refs, key=echo)
        assert [echo(v.output) for v in ours] == pytest.approx([t / 1000 for t in info.echo_times])
    assert len(ours) == len(refs) == (2 if kind == "multiecho" else 1)
    for v, ref_path in zip(ours, refs):
        mine, ref = nib.as_closest_canonical(nib.load(v.output)), nib.as_closest_canonical(nib.load(ref_path))
        assert mine.shape == ref.shape
        np.testing.assert_allclose(mine.affine, ref.affine, atol=1e-3)
        np.testing.assert_array_equal(np.asarray(mine.dataobj, np.float64), np.asarray(ref.dataobj, np.float64))
    # and the volumes are the acquisition's, in its order (not merely dcm2niix's)
    if kind == "multiecho":
        for v, truth in zip(ours, info.volumes):
            np.testing.assert_array_equal(np.asarray(nib.load(v.output).dataobj).transpose(2, 1, 0), truth)
    else:
        (v,) = ours
        assert v.shape == (len(info.volumes), *info.volumes[0].shape)
        data = np.asarray(nib.load(v.output).dataobj).transpose(3, 2, 1, 0)
        for t, truth in enumerate(info.volumes):
            np.testing.assert_array_equal(data[t], truth)
    if kind == "dwi":
        (v,) = ours
        stem, ref_stem = v.output[: -len(".nii.gz")], str(refs[0])[: -len(".nii")]
        assert _lines(stem + ".bval") == _lines(ref_stem + ".bval") == [list(info.b_values)]
        # b-vectors are on each file's own voxel axes (FSL): the same directions in space
        np.testing.assert_allclose(_in_space(_lines(stem + ".bvec"), nib.load(v.output).affine),
                                   _in_space(_lines(ref_stem + ".bvec"), nib.load(refs[0]).affine), atol=1e-5)


#: A key that runs against the Instance Numbers of the time points, by the vendor that writes it.
CONFLICTS = {"siemens": "AcquisitionNumber", "philips": "TemporalPositionIdentifier", "canon": "AcquisitionTime"}


@pytest.mark.parametrize("vendor", sorted(CONFLICTS))
def test_repeats_follow_instance_numbers_as_dcm2niix(tmp_path, vendor):
    """Where a vendor's time key and the Instance Numbers disagree, dcm2niix (measured with
    its wheel), and so voxelflow, order the volumes by Instance Number where those run through
    one volume before the next (Siemens, Canon); Philips numbers the repeats of a slice first
    (slice-major), which says nothing of time: its Temporal Position Identifier orders them."""
    import pydicom

    info = write_vendor_series(tmp_path / "dicom", vendor, "fmri", seed=4)
    count = len(info.volumes)
    for path in info.paths:
        ds = pydicom.dcmread(path)
        t = int(str(ds.SOPInstanceUID).split(".")[-2]) - 1  # write_vendor_series' <uid>.<t+1>.<k+1>
        key = CONFLICTS[vendor]
        if key == "AcquisitionTime":
            ds.AcquisitionTime = f"1000{10 * (count - t):02d}"
        else:
            setattr(ds, key, count - t)
        ds.save_as(path)
    refs = _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    (v,) = convert(tmp_path / "dicom", tmp_path / "ours").volumes
    data = np.asarray(nib.load(v.output).dataobj).transpose(3, 2, 1, 0)
    expected = info.volumes[::-1] if vendor == "philips" else info.volumes
    for t, truth in enumerate(expected):
        np.testing.assert_array_equal(data[t], truth)
    (ref,) = refs
    mine, theirs = nib.as_closest_canonical(nib.load(v.output)), nib.as_closest_canonical(nib.load(ref))
    np.testing.assert_array_equal(np.asarray(mine.dataobj, np.float64), np.asarray(theirs.dataobj, np.float64))


def test_ge_magnitude_and_phase_told_apart_by_the_private_type_are_two_volumes(tmp_path):
    """GE writes one Image Type for the magnitude and phase images of a series and tells them
    apart by its private image type (0043,xx2F: 0 magnitude, 1 phase) only: two volumes, as
    dcm2niix writes them (its "_ph" file), never one 4-D volume mixing them."""
    import pydicom

    from voxelflow.testing import write_series

    uid = "1.2.826.0.1.3680043.8.498.5151"
    truth = {}
    for t, kind in enumerate((0, 1)):
        info = write_series(tmp_path / "dicom" / str(t), shape=(6, 16, 16), modality="MR", series_uid=uid, seed=t + 1)
        truth[kind] = info.volume
        for k, path in enumerate(info.paths):
            ds = pydicom.dcmread(path)
            ds.Manufacturer = "GE MEDICAL SYSTEMS"
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}.{t + 1}.{k + 1}"
            ds.InstanceNumber = t * 6 + k + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", kind)
            ds.save_as(path)
    refs = _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    report = convert(tmp_path / "dicom", tmp_path / "ours", sidecar=False)
    assert not report.failures, report.table()
    assert [v.shape for v in report.volumes] == [(6, 16, 16)] * 2 and len(refs) == 2
    theirs = [np.asarray(nib.as_closest_canonical(nib.load(r)).dataobj, np.float64) for r in refs]
    for v in report.volumes:
        data = np.asarray(nib.load(v.output).dataobj).transpose(2, 1, 0)
        assert any(np.array_equal(data, truth[kind]) for kind in truth)
        mine = np.asarray(nib.as_closest_canonical(nib.load(v.output)).dataobj, np.float64)
        assert any(np.array_equal(mine, other) for other in theirs)
