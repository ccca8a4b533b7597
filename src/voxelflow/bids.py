"""The BIDS side-car of a converted volume: the JSON that dcm2niix writes beside each NIfTI.

Research pipelines (fMRIPrep, MRtrix, BIDS validators) read acquisition parameters from this
file, not from the NIfTI header, so ``voxelflow convert`` writes one per volume with
dcm2niix's key names and units (seconds for times, degrees for angles), and, for a diffusion
series, the ``.bval`` / ``.bvec`` pair FSL reads. Values come from the
volume's first slice (geometric order); patient identifiers are never written, as dcm2niix
leaves them out by default.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom

from . import __version__
from .errors import DecodeError

__all__ = ["bvecs", "diffusion_table", "read_header", "sidecar", "slice_timing", "write_bval_bvec", "write_sidecar"]

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


def read_header(first_slice: str | os.PathLike[str]) -> pydicom.Dataset:
    """The header of a volume's first slice, as :func:`sidecar` and :func:`slice_timing` read it.

    Raises
    ------
    DecodeError
        Where pydicom cannot read it.
    """
    try:
        return pydicom.dcmread(first_slice, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a damaged header
        raise DecodeError(f"{os.fspath(first_slice)}: header unreadable for the BIDS side-car: {exc}") from None


def sidecar(first_slice: str | os.PathLike[str] | pydicom.Dataset) -> dict[str, Any]:
    """The BIDS side-car dict of a volume whose first slice (in volume order) is the DICOM
    file `first_slice` (or its header, :func:`read_header`)."""
    ds = first_slice if isinstance(first_slice, pydicom.Dataset) else read_header(first_slice)
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


def slice_timing(
    ds: pydicom.Dataset,
    tiles: Sequence[int | None],
    acquisition_times: Sequence[str] = (),
) -> list[float] | None:
    """BIDS SliceTiming (seconds from the start of each volume, one per slice in the volume's
    order) of a Siemens series, as dcm2niix writes it, or None. `ds` is the header of the
    volume's first slice (:func:`read_header`).

    Siemens lists each slice's time in the repetition (ms) as MosaicRefAcqTimes in the CSA
    Image Header (mosaics, one per tile, in tile order) or, in classic EPI files, in the MR
    header's (0019,xx29), in the series' slice order. `tiles` gives, per slice of the volume,
    its tile number in the mosaic (None for classic slices): a mosaic whose tiles run against
    the volume's slice order gets its times reordered with them. Failing both, the classic
    slices' own Acquisition Times (`acquisition_times`, DICOM TM, one per slice of the first
    volume) less the earliest, where they differ. Other vendors get none, as from dcm2niix
    without their protocol blocks (GE's 0025,101B) or at all (Philips, Canon).
    """
    if "SIEMENS" not in str(ds.get("Manufacturer", "")).upper() or str(ds.get("Modality", "MR")) != "MR":
        return None  # dcm2niix times MR slices only (a Siemens CT's Acquisition Times are not)
    times = None
    try:
        from nibabel.nicom import csareader

        csa = csareader.get_csa_header(ds, "image")
        if csa is not None:
            times = csa["tags"].get("MosaicRefAcqTimes", {}).get("items") or None
    except Exception:  # noqa: BLE001 - an unreadable CSA header only means no timing from it
        times = None
    if times is None:
        times = _private(ds, 0x0019, "SIEMENS MR HEADER", 0x29)
    if times is None:
        return _from_acquisition_times(acquisition_times, len(tiles))
    values = _finite(times, len(tiles))
    if values is None or len(list(times)) != len(tiles):
        return None
    mosaic = all(t is not None for t in tiles)
    ordered = [values[t] for t in tiles] if mosaic else list(values)  # type: ignore[index]
    return [round(v / 1000.0, 6) for v in ordered]


def _seconds(tm: str) -> float | None:
    """DICOM TM (HHMMSS.FFFFFF) as seconds after midnight, None where it is not one."""
    text = str(tm or "").strip()
    try:
        return int(text[0:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:]) if len(text) >= 6 else None
    except ValueError:
        return None


def _from_acquisition_times(times: Sequence[str], slices: int) -> list[float] | None:
    # dcm2niix rounds these through float32 seconds of the day (steps of 1/256 s at 10:00):
    # its values differ from these exact ones by up to 4 ms
    seconds = [_seconds(t) for t in times]
    if len(seconds) != slices or slices < 2 or any(s is None or not math.isfinite(s) for s in seconds):
        return None
    first = min(seconds)  # type: ignore[type-var]
    if max(seconds) == first:  # type: ignore[type-var]
        return None
    return [round(s - first, 6) for s in seconds]  # type: ignore[operator]


def write_sidecar(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write `data` as JSON to `path`, atomically (a temporary name, then a rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, target)
    return target


def _diffusion_of(ds: Any, frame: int | None) -> tuple[float, tuple[float, float, float] | None] | None:
    """(b-value, gradient direction in LPS or None) of one image from the standard attributes:
    Diffusion b-value (0018,9087) and Diffusion Gradient Orientation (0018,9089), top level
    or, for an enhanced frame, in its MR Diffusion Sequence; failing those, for a classic
    image, from the Siemens, GE or Philips private tags that dcm2niix reads."""
    source = ds
    if frame is not None:
        frames = ds.get("PerFrameFunctionalGroupsSequence") or []
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        for item in ((frames[frame] if frame < len(frames) else None), shared):
            if item is not None and item.get("MRDiffusionSequence"):
                source = item.MRDiffusionSequence[0]
                break
    b = source.get("DiffusionBValue")
    if b is None:
        # vendors' private tags describe the whole file, so they cannot tell enhanced frames apart
        return _private_diffusion(ds) if frame is None else None
    try:
        b = float(b)
    except (TypeError, ValueError):
        return None
    gradient = None
    if source.get("DiffusionGradientDirectionSequence"):
        vector = source.DiffusionGradientDirectionSequence[0].get("DiffusionGradientOrientation")
    else:
        vector = source.get("DiffusionGradientOrientation")
    if vector is not None and len(vector) == 3:
        values = tuple(float(v) for v in vector)
        if all(math.isfinite(v) for v in values) and any(values):
            gradient = values  # type: ignore[assignment]
    return (b if math.isfinite(b) else 0.0), gradient


def _private(ds: Any, group: int, creator: str, element: int) -> Any:
    """A private element's value, located through its private creator (the block is not always
    at 0x10); None when absent or unreadable."""
    try:
        return ds.private_block(group, creator)[element].value
    except Exception:  # noqa: BLE001 - pydicom converts a raw value on access; a damaged one may raise
        return None


def _finite(value: Any, count: int) -> tuple[float, ...] | None:
    """The first `count` values as finite floats, or None."""
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    if len(values) < count:
        return None
    try:
        numbers = tuple(float(v) for v in values[:count])
    except (TypeError, ValueError):
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def _private_diffusion(ds: Any) -> tuple[float, tuple[float, float, float] | None] | None:
    """(b-value, gradient in LPS or None) from the private tags dcm2niix reads when a classic
    DWI file lacks the standard attributes; None when there is no finite b-value."""
    maker = str(ds.get("Manufacturer") or "").upper()
    if "SIEMENS" in maker:
        b = _finite(_private(ds, 0x0019, "SIEMENS MR HEADER", 0x0C), 1)
        g = _finite(_private(ds, 0x0019, "SIEMENS MR HEADER", 0x0E), 3)
    elif "PHILIPS" in maker:
        b = _finite(_private(ds, 0x2001, "Philips Imaging DD 001", 0x03), 1)
        g = _finite([_private(ds, 0x2005, "Philips MR Imaging DD 001", e) for e in (0xB0, 0xB1, 0xB2)], 3)
    elif "GE" in maker:
        b = _finite(_private(ds, 0x0043, "GEMS_PARM_01", 0x39), 1)
        if b is not None and b[0] >= 1e9:
            b = (b[0] % 1e9,)  # multiples of 1e9 encode something other than b; dcm2niix keeps the rest
        g = _finite([_private(ds, 0x0019, "GEMS_ACQU_01", e) for e in (0xBB, 0xBC, 0xBD)], 3)
        orientation = _finite(ds.get("ImageOrientationPatient"), 6)
        if g is not None:
            g = _ge_to_lps(g, orientation) if orientation is not None else None
    else:
        return None
    if b is None:
        return None
    gradient = g if g is not None and any(g) else None
    return b[0], gradient  # type: ignore[return-value]


def _ge_to_lps(g: tuple[float, ...], orientation: tuple[float, ...]) -> tuple[float, float, float]:
    """GE's gradient is in the image's frame, not the patient's: dcm2niix copies it unrotated
    into the voxel axes of its row-flipped NIfTI, i.e. x along the row cosine, y against the
    column cosine, z along their cross product. The same reading keeps both tools in step."""
    r, c = orientation[:3], orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return tuple(g[0] * r[i] - g[1] * c[i] + g[2] * n[i] for i in range(3))  # type: ignore[return-value]


def diffusion_table(first_slices: Sequence[tuple[str, int | None]]) -> list[tuple[float, tuple[float, float, float] | None]] | None:
    """The b-value and gradient of each volume of a 4-D series, from the first slice
    ``(path, frame)`` of each; None unless every volume has a b-value (not a DWI series)."""
    table = []
    cache: dict[str, Any] = {}
    for path, frame in first_slices:
        if path not in cache:
            try:
                cache[path] = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except Exception:  # noqa: BLE001 - no table rather than a failed conversion
                return None
        found = _diffusion_of(cache[path], frame)
        if found is None:
            return None
        table.append(found)
    return table


def bvecs(table: Sequence[tuple[float, tuple[float, float, float] | None]], nifti_affine: Any) -> list[tuple[float, float, float]]:
    """Each gradient in the voxel axes of the NIfTI file whose affine (RAS) is given, in FSL's
    convention (the first axis negated when the affine's determinant is positive), as dcm2niix
    writes .bvec files. b = 0 or no gradient: (0, 0, 0)."""
    import numpy as np

    matrix = np.asarray(nifti_affine, dtype=np.float64)[:3, :3]
    axes = matrix / np.linalg.norm(matrix, axis=0)
    flip = np.linalg.det(matrix) > 0
    out = []
    for b, gradient in table:
        if not b or gradient is None:
            out.append((0.0, 0.0, 0.0))
            continue
        g = np.asarray(gradient, dtype=np.float64)
        g = g / np.linalg.norm(g)
        v = axes.T @ np.array([-g[0], -g[1], g[2]])  # LPS -> RAS, then onto the voxel axes
        if flip:
            v[0] = -v[0]
        out.append(tuple(float(round(x, 6)) + 0.0 for x in v))  # type: ignore[misc]
    return out


def write_bval_bvec(stem: str | os.PathLike[str], table: Sequence[tuple[float, tuple[float, float, float] | None]],
                    nifti_affine: Any) -> tuple[Path, Path]:
    """``stem.bval`` (one line of b-values) and ``stem.bvec`` (three lines: x, y, z) as FSL
    and dcm2niix write them, atomically."""
    stem = Path(stem)
    vectors = bvecs(table, nifti_affine)
    bval = " ".join(f"{b:g}" for b, _ in table) + "\n"
    bvec = "".join(" ".join(f"{v[axis]:g}" for v in vectors) + "\n" for axis in range(3))
    paths = []
    for suffix, text in ((".bval", bval), (".bvec", bvec)):
        target = stem.with_name(stem.name + suffix)
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_text(text)
        os.replace(tmp, target)
        paths.append(target)
    return paths[0], paths[1]
