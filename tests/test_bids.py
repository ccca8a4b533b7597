"""BIDS side-cars of `convert` against dcm2niix's for the same series."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from voxelflow.cli import main
from voxelflow.ingest import convert
from voxelflow.testing import write_series

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
