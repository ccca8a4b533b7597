"""BIDS side-cars of `convert` against dcm2niix's for the same series."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from voxelflow.cli import main
from voxelflow.ingest import convert
from voxelflow.testing import write_series
from voxelflow.testing.vendors import DIRECTIONS, dicom_time, tag_diffusion

#: Keys every side-car of an MR phantom carries, as dcm2niix names them.
CORE = ("Modality", "MagneticFieldStrength", "ManufacturersModelName", "BodyPart", "PatientPosition",
        "MRAcquisitionType", "ScanningSequence", "SequenceVariant", "ImageType", "SeriesNumber",
        "AcquisitionNumber", "SliceThickness", "SpacingBetweenSlices", "EchoTime", "RepetitionTime",
        "ImageOrientationPatientDICOM", "ConversionSoftware")


def _dcm2niix(src, out):
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    out.mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "y", "-o", str(out), "-f", "ref", str(src)],
                   check=True, capture_output=True, timeout=120)
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("modality,orientation", [("MR", "axial"), ("MR", "sagittal"), ("CT", "coronal")])
def test_sidecar_agrees_with_dcm2niix(tmp_path, modality, orientation):
    write_series(tmp_path / "dicom", shape=(6, 16, 16), modality=modality, orientation=orientation)
    ref = _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    (v,) = convert(tmp_path / "dicom", tmp_path / "ours").volumes
    ours = json.loads((tmp_path / "ours" / v.output.rsplit("/", 1)[-1].replace(".nii.gz", ".json")).read_text())
    if modality == "MR":
        assert set(CORE) <= set(ours), set(CORE) - set(ours)
    shared = (set(ours) & set(ref)) - {"ConversionSoftware", "ConversionSoftwareVersion"}
    assert len(shared) >= 8
    for key in sorted(shared):
        if isinstance(ref[key], float) or isinstance(ours[key], float):
            assert ours[key] == pytest.approx(ref[key], rel=1e-6), key
        else:
            assert ours[key] == ref[key], key
    # never a patient identifier
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(ours)


def test_no_sidecar_option(tmp_path, capsys):
    write_series(tmp_path / "dicom", shape=(4, 8, 8), modality="MR")
    assert main(["-q", "convert", str(tmp_path / "dicom"), "-o", str(tmp_path / "out"), "--no-sidecar"]) == 0
    assert list((tmp_path / "out").glob("*.json")) == []
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 1




def _dwi_series(root, orientation, vendor="standard"):
    """A classic diffusion series (one volume per b-value / direction, told apart by Instance
    Number only), with the standard Diffusion b-value and Gradient Orientation attributes or
    with one vendor's private tags instead."""
    uid = "1.2.826.0.1.3680043.8.498.56"
    for t, (b, g) in enumerate(DIRECTIONS):
        info = write_series(root / str(t), shape=(6, 16, 16), modality="MR", series_uid=uid, seed=t + 1,
                            orientation=orientation)
        for path in info.paths:
            ds = pydicom.dcmread(path)
            ds.InstanceNumber += 100 * t
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{t + 1}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            tag_diffusion(ds, vendor, b, g)
            ds.save_as(path)


def _world(bvec_rows, affine):
    """.bvec columns back to RAS directions through the file's own affine (FSL convention)."""
    matrix = np.asarray(affine)[:3, :3]
    axes = matrix / np.linalg.norm(matrix, axis=0)
    v = np.array(bvec_rows, dtype=np.float64)
    if np.linalg.det(matrix) > 0:
        v[0] = -v[0]
    return axes @ v


@pytest.mark.parametrize("vendor", ["standard", "siemens", "ge", "philips"])
@pytest.mark.parametrize("orientation", ["axial", "oblique", "sagittal"])
def test_bval_bvec_agree_with_dcm2niix(tmp_path, orientation, vendor):
    _dwi_series(tmp_path / "dicom", orientation, vendor)
    _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    (v,) = convert(tmp_path / "dicom", tmp_path / "ours").volumes
    assert v.shape == (4, 6, 16, 16)
    stem = v.output[: -len(".nii.gz")]
    ref_stem = str(next((tmp_path / "ref").glob("*.nii")))[: -len(".nii")]

    def read(path):
        return [[float(x) for x in line.split()] for line in open(path).read().splitlines() if line.strip()]

    assert read(stem + ".bval") == read(ref_stem + ".bval") == [[b for b, _ in DIRECTIONS]]
    ours = _world(read(stem + ".bvec"), nib.load(v.output).affine)
    ref = _world(read(ref_stem + ".bvec"), nib.load(ref_stem + ".nii").affine)
    np.testing.assert_allclose(ours, ref, atol=1e-5)  # the same directions in the scanner's space
    if vendor == "ge":
        return  # GE's gradients are in the image's frame, not LPS: dcm2niix is the only oracle
    for t, (b, g) in enumerate(DIRECTIONS):
        if g is not None:  # and they are the DICOM gradients (LPS) seen in RAS
            np.testing.assert_allclose(ours[:, t], [-g[0], -g[1], g[2]], atol=1e-5)


def test_no_bval_for_a_series_without_b_values(tmp_path):
    write_series(tmp_path / "dicom", shape=(4, 8, 8), modality="MR")
    convert(tmp_path / "dicom", tmp_path / "out")
    assert list((tmp_path / "out").glob("*.bv*")) == []


#: Where each vendor keeps its private b-value: (group, private creator, element).
PRIVATE_B = {"siemens": (0x0019, "SIEMENS MR HEADER", 0x0C), "ge": (0x0043, "GEMS_PARM_01", 0x39),
             "philips": (0x2001, "Philips Imaging DD 001", 0x03)}


@pytest.mark.parametrize("vendor,bad", [("siemens", b"not-a-b "), ("ge", b"not-a-b "), ("philips", float("nan"))])
def test_no_bval_for_a_private_b_value_that_is_not_a_number(tmp_path, vendor, bad):
    _dwi_series(tmp_path / "dicom", "axial", vendor)
    group, creator, element = PRIVATE_B[vendor]
    placeholder = b"12345678"  # pydicom will not put text in an IS, so it goes into the bytes
    for path in sorted((tmp_path / "dicom" / "3").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        block = ds.private_block(group, creator)
        block[element].value = bad if isinstance(bad, float) else int(placeholder)
        ds.save_as(path)
        if isinstance(bad, bytes):
            raw = path.read_bytes()
            assert raw.count(placeholder) == 1
            path.write_bytes(raw.replace(placeholder, bad))
    (v,) = convert(tmp_path / "dicom", tmp_path / "out").volumes
    assert v.shape == (4, 6, 16, 16)
    assert list((tmp_path / "out").glob("*.nii.gz")) and list((tmp_path / "out").glob("*.json"))
    assert list((tmp_path / "out").glob("*.bv*")) == []


def _timing_in_space(sidecar, nifti):
    """SliceTiming keyed by each slice's position along the scanner's slice axis (mm), so two
    files that store the slices in opposite orders compare slice by slice."""
    affine = nib.load(nifti).affine
    k = affine[:3, 2]
    positions = [float((affine[:3, 3] + n * k) @ (k / np.linalg.norm(k) * np.sign(k[np.argmax(np.abs(k))])))
                 for n in range(len(sidecar["SliceTiming"]))]
    return sorted(zip(np.round(positions, 3), sidecar["SliceTiming"]))


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("orientation", ["axial", "sagittal"])
def test_mosaic_slice_timing_agrees_with_dcm2niix(tmp_path, order, orientation):
    """MosaicRefAcqTimes (CSA Image Header, one per tile) as SliceTiming: where the tiles run
    against the normal voxelflow stores the slices the other way round, and the times with them."""
    from voxelflow.testing import write_mosaic_series

    write_mosaic_series(tmp_path / "dicom", shape=(10, 16, 16), slice_order=order, orientation=orientation)
    ref = _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    (v,) = convert(tmp_path / "dicom", tmp_path / "ours").volumes
    ours = json.loads(Path(v.output.replace(".nii.gz", ".json")).read_text())
    assert len(ours["SliceTiming"]) == 10
    mine = _timing_in_space(ours, v.output)
    theirs = _timing_in_space(ref, next((tmp_path / "ref").glob("*.nii")))
    assert [p for p, _ in mine] == pytest.approx([p for p, _ in theirs], abs=1e-3)
    assert [t for _, t in mine] == pytest.approx([t for _, t in theirs], abs=1e-6)


@pytest.mark.parametrize("manufacturer,source,times_points", [
    ("SIEMENS", "mr header", 3), ("SIEMENS", "acquisition time", 3), ("SIEMENS", "acquisition time", 1),
    ("SIEMENS", "none", 3), ("Philips Medical Systems", "acquisition time", 3), ("TOSHIBA", "acquisition time", 3),
    ("SIEMENS", "ct", 1),
])
def test_classic_slice_timing_as_dcm2niix(tmp_path, manufacturer, source, times_points):
    """Classic (one file per slice) series: a Siemens EPI run lists every slice's time in each
    file's MR header (0019,xx29); failing that, dcm2niix takes the slices' Acquisition Times
    (Siemens only). Other vendors' files get no SliceTiming from either, nor do slices acquired
    at one time."""
    uid = "1.2.826.0.1.3680043.8.498.77"
    interleaved = [0, 2, 4, 1, 3, 5]
    times = [interleaved.index(k) * 2000.0 / 6 for k in range(6)]
    for t in range(times_points):
        info = write_series(tmp_path / "dicom" / str(t), shape=(6, 16, 16), modality="CT" if source == "ct" else "MR",
                            series_uid=uid, seed=t + 1)
        for k, path in enumerate(info.paths):
            ds = pydicom.dcmread(path)
            ds.InstanceNumber += 100 * t
            ds.TemporalPositionIdentifier = t + 1
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{t + 1}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.Manufacturer = manufacturer
            ds.RepetitionTime = 2000
            start = 36000.0 + 2.0 * t
            ds.AcquisitionTime = dicom_time(start + (times[k] / 1000 if source in ("acquisition time", "ct") else 0.0))
            if source == "mr header":
                ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x29, "FD", times)
            ds.save_as(path)
    ref = _dcm2niix(tmp_path / "dicom", tmp_path / "ref")
    (v,) = convert(tmp_path / "dicom", tmp_path / "ours").volumes
    assert v.shape == ((times_points,) if times_points > 1 else ()) + (6, 16, 16)
    ours = json.loads(Path(v.output.replace(".nii.gz", ".json")).read_text())
    if manufacturer == "SIEMENS" and source in ("mr header", "acquisition time"):
        # dcm2niix prints 6 digits, and rounds Acquisition Times through float32 seconds of
        # the day (1/256 s steps at 10:00)
        tolerance = 1e-5 if source == "mr header" else 4e-3
        assert ours["SliceTiming"] == pytest.approx(ref["SliceTiming"], abs=tolerance)
        assert ours["SliceTiming"] == pytest.approx([t / 1000 for t in times], abs=1e-6)
    else:
        assert "SliceTiming" not in ours and "SliceTiming" not in ref
