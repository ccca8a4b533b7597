"""The BIDS side-car of a converted volume: the JSON that dcm2niix writes beside each NIfTI.

Research pipelines (fMRIPrep, MRtrix, BIDS validators) read acquisition parameters from this
file, not from the NIfTI header, so ``voxelflow convert`` writes one per volume with
dcm2niix's key names and units (seconds for times, degrees for angles). Values come from the
volume's first slice (geometric order); patient identifiers are never written, as dcm2niix
leaves them out by default.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pydicom

from . import __version__
from .errors import DecodeError

__all__ = ["sidecar", "write_sidecar"]

# (BIDS key, DICOM keyword, kind): kind "s" = milliseconds in DICOM, seconds in BIDS
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("Modality", "Modality", "str"),
    ("MagneticFieldStrength", "MagneticFieldStrength", "num"),
    ("ImagingFrequency", "ImagingFrequency", "num"),
    ("Manufacturer", "Manufacturer", "str"),
    ("ManufacturersModelName", "ManufacturerModelName", "str"),
    ("InstitutionName", "InstitutionName", "str"),
    ("InstitutionalDepartmentName", "InstitutionalDepartmentName", "str"),
    ("DeviceSerialNumber", "DeviceSerialNumber", "str"),
    ("StationName", "StationName", "str"),
    ("SoftwareVersions", "SoftwareVersions", "str"),
    ("BodyPart", "BodyPartExamined", "str"),
    ("PatientPosition", "PatientPosition", "str"),
    ("MRAcquisitionType", "MRAcquisitionType", "str"),
    ("SeriesDescription", "SeriesDescription", "str"),
    ("ProtocolName", "ProtocolName", "str"),
    ("ScanningSequence", "ScanningSequence", "str"),
    ("SequenceVariant", "SequenceVariant", "str"),
    ("ScanOptions", "ScanOptions", "str"),
    ("SequenceName", "SequenceName", "str"),
    ("ImageType", "ImageType", "list"),
    ("SeriesNumber", "SeriesNumber", "int"),
    ("AcquisitionNumber", "AcquisitionNumber", "int"),
    ("SliceThickness", "SliceThickness", "num"),
    ("SpacingBetweenSlices", "SpacingBetweenSlices", "num"),
    ("EchoTime", "EchoTime", "s"),
    ("RepetitionTime", "RepetitionTime", "s"),
    ("InversionTime", "InversionTime", "s"),
    ("FlipAngle", "FlipAngle", "num"),
    ("EchoTrainLength", "EchoTrainLength", "int"),
    ("KVP", "KVP", "num"),
    ("XRayExposure", "Exposure", "num"),
    ("ConvolutionKernel", "ConvolutionKernel", "str"),
)


def _plain(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    if kind == "list":
        return [str(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])]
    if kind == "str":
        text = str(value[0] if isinstance(value, pydicom.multival.MultiValue) else value).strip()
        return text or None
    try:
        number = float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)
    except (TypeError, ValueError):
        return None  # a malformed number is left out, never guessed
    if not math.isfinite(number):
        return None
    if kind == "int":
        return int(number) if number.is_integer() else None
    if kind == "s":
        return round(number / 1000.0, 9)
    return number


def _time(value: Any) -> str | None:
    """DICOM TM (HHMMSS.FFFFFF) as dcm2niix writes it (HH:MM:SS.FFFFFF)."""
    text = str(value or "").strip()
    if len(text) < 6 or not text[:6].isdigit():
        return None
    return f"{text[0:2]}:{text[2:4]}:{text[4:]}"


def sidecar(first_slice: str | os.PathLike[str]) -> dict[str, Any]:
    """The BIDS side-car dict of a volume whose first slice (in volume order) is the DICOM
    file `first_slice`."""
    try:
        ds = pydicom.dcmread(first_slice, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a damaged header
        raise DecodeError(f"{os.fspath(first_slice)}: header unreadable for the BIDS side-car: {exc}") from None
    out: dict[str, Any] = {}
    for key, keyword, kind in _FIELDS:
        value = _plain(ds.get(keyword), kind)
        if value is not None:
            out[key] = value
    when = _time(ds.get("AcquisitionTime"))
    if when:
        out["AcquisitionTime"] = when
    orientation = ds.get("ImageOrientationPatient")
    if orientation is not None:
        try:
            values = [float(v) for v in orientation]
            if len(values) == 6 and all(math.isfinite(v) for v in values):
                out["ImageOrientationPatientDICOM"] = [int(v) if v.is_integer() else v for v in values]
        except (TypeError, ValueError):
            pass
    out["ConversionSoftware"] = "voxelflow"
    out["ConversionSoftwareVersion"] = __version__
    return out


def write_sidecar(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write `data` as JSON to `path`, atomically (a temporary name, then a rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, target)
    return target
