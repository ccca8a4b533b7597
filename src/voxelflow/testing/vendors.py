"""Classic (one file per slice) 4-D MR series as each vendor encodes them.

A time series, a diffusion series and a multi-echo series repeat every slice position; what
tells the repeats apart differs by vendor, and a reader that looks at the wrong tag drops or
mixes time points. :func:`write_vendor_series` writes one series of a kind the way a vendor
does, with the files' names and Instance Numbers arranged so that no reading order but the
vendor's own keys gives the right one:

==========  ================================================================================
vendor      what tells the volumes apart
==========  ================================================================================
siemens     Acquisition Number per volume, Acquisition Time; diffusion in the MR header
            (0019,xx0C b-value, 0019,xx0E gradient); Instance Numbers run through the series
ge          nothing but Instance Number (one Acquisition Number for the run, a per-slice
            Trigger Time that repeats each volume); diffusion in 0043,xx39 (b-value, plus
            10^9 on some sequences) and 0019,xxBB-BD (gradient, in the image's frame)
philips     Temporal Position Identifier (with Number of Temporal Positions); Instance
            Numbers slice-major (all time points of slice 1 first); diffusion in the
            standard attributes and 2001,xx03 / 2005,xxB0-B2
canon       (Toshiba) Acquisition Time per volume, one Acquisition Number; diffusion in the
            standard attributes (0018,9087 b-value, 0018,9089 gradient)
==========  ================================================================================

Multi-echo series carry Echo Numbers and Echo Times (every vendor): one volume per echo, as
dcm2niix writes them. The ground truth is each volume's voxels in dcm2niix's order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from ..errors import ParameterError
from .series import write_series

__all__ = ["DIRECTIONS", "KINDS", "MAKERS", "VENDORS", "VendorSeries", "dicom_time", "tag_diffusion",
           "write_vendor_series"]

VENDORS = ("siemens", "ge", "philips", "canon")
KINDS = ("fmri", "dwi", "multiecho")

#: Manufacturer (0008,0070) as each vendor writes it.
MAKERS = {"siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS", "philips": "Philips Medical Systems",
          "canon": "TOSHIBA"}

#: (b-value s/mm², gradient direction in LPS or None) of a diffusion series' volumes.
DIRECTIONS: tuple[tuple[float, tuple[float, float, float] | None], ...] = (
    (0.0, None), (1000.0, (1.0, 0.0, 0.0)), (1000.0, (0.0, 0.6, 0.8)), (2000.0, (0.48, 0.6, 0.64)),
)


@dataclass(frozen=True)
class VendorSeries:
    """What :func:`write_vendor_series` wrote.

    Attributes
    ----------
    paths : tuple of Path
    volumes : list of (z, y, x) arrays
        For "fmri" and "dwi" the time points (diffusion volumes) in acquisition order; for
        "multiecho" one 3-D volume per echo, echo 1 first.
    affine : (4, 4)
    series_uid : str
    b_values, gradients : per volume ("dwi" only; empty otherwise)
    echo_times : per volume, ms ("multiecho" only)
    """

    paths: tuple[Path, ...]
    volumes: list[np.ndarray] = field(repr=False)
    affine: np.ndarray = field(repr=False)
    series_uid: str
    b_values: tuple[float, ...] = ()
    gradients: tuple[tuple[float, float, float] | None, ...] = ()
    echo_times: tuple[float, ...] = ()


def tag_diffusion(ds: pydicom.Dataset, vendor: str, b: float, g: Sequence[float] | None) -> None:
    """Give `ds` a b-value and gradient in `vendor`'s own tags ("standard" and "canon": the
    attributes of PS3.3 C.8.13.5.9; the others their private tags only, each placed through
    its private creator)."""
    if vendor in ("standard", "canon"):
        ds.add_new(0x00189087, "FD", float(b))
        if g is not None:
            ds.add_new(0x00189089, "FD", [float(v) for v in g])
        if vendor == "standard":
            return
    ds.Manufacturer = MAKERS[vendor]
    if vendor == "siemens":
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0C, "IS", int(b))
        if g is not None:
            block.add_new(0x0E, "FD", [float(v) for v in g])
    elif vendor == "ge":
        # GE adds 1e9 to the b-value of some sequences; dcm2niix drops it
        encoded = int(b) + 1_000_000_000 if b == 2000 else int(b)
        ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", [encoded, 0, 0, 0])
        if g is not None:
            block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            for element, value in zip((0xBB, 0xBC, 0xBD), g):
                block.add_new(element, "DS", value)
    elif vendor == "philips":
        ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", float(b))
        if g is not None:
            block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            for element, value in zip((0xB0, 0xB1, 0xB2), g):
                block.add_new(element, "FL", float(value))


def dicom_time(seconds: float) -> str:
    """Seconds after midnight as DICOM TM (HHMMSS.FFFFFF)."""
    return f"{int(seconds // 3600):02d}{int(seconds % 3600 // 60):02d}{seconds % 60:09.6f}"


def write_vendor_series(
    folder: str | os.PathLike[str],
    vendor: str,
    kind: str,
    *,
    shape: tuple[int, int, int] = (6, 16, 16),
    orientation: str | Sequence[float] = "axial",
    time_points: int = 3,
    repetition_time: float = 2000.0,
    seed: int = 0,
) -> VendorSeries:
    """Write a classic 4-D series of `kind` ("fmri", "dwi", "multiecho") as `vendor` does.

    Files are named by a seeded shuffle (``MR<n>.dcm``): only the headers give the order.
    """
    if vendor not in VENDORS:
        raise ParameterError(f"vendor={vendor!r}; expected one of {', '.join(VENDORS)}")
    if kind not in KINDS:
        raise ParameterError(f"kind={kind!r}; expected one of {', '.join(KINDS)}")
    folder = Path(folder)
    uid = f"1.2.826.0.1.3680043.8.498.{900 + VENDORS.index(vendor) * 10 + KINDS.index(kind)}.{seed}"
    count = {"fmri": time_points, "dwi": len(DIRECTIONS), "multiecho": 2}[kind]
    n = shape[0]
    staging = folder / ".staging"
    files: list[tuple[Path, pydicom.Dataset]] = []
    volumes, affine = [], None
    for t in range(count):
        info = write_series(staging / str(t), shape=shape, modality="MR", orientation=orientation,
                            series_uid=uid, seed=seed * 100 + t + 1)
        volumes.append(info.volume)
        affine = info.affine
        for k, path in enumerate(info.paths):  # geometric order, ascending
            ds = pydicom.dcmread(path)
            ds.Manufacturer = MAKERS[vendor]
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}.{t + 1}.{k + 1}"
            ds.RepetitionTime = repetition_time
            ds.AcquisitionNumber = 1
            ds.AcquisitionTime = dicom_time(36000.0)
            ds.InstanceNumber = t * n + k + 1
            if kind == "multiecho":
                ds.EchoNumbers = t + 1
                ds.EchoTime = 10.0 + 15.0 * t
                ds.AcquisitionTime = dicom_time(36000.0 + k * repetition_time / 1000 / n)
            else:
                start = 36000.0 + t * repetition_time / 1000
                if vendor == "siemens":
                    ds.AcquisitionNumber = t + 1
                    ds.AcquisitionTime = dicom_time(start)
                elif vendor == "ge":
                    ds.TriggerTime = k * repetition_time / n  # the slice's time in the volume
                elif vendor == "philips":
                    ds.TemporalPositionIdentifier = t + 1
                    ds.NumberOfTemporalPositions = count
                    ds.InstanceNumber = k * count + t + 1
                else:
                    ds.AcquisitionTime = dicom_time(start)
                if kind == "dwi":
                    tag_diffusion(ds, vendor, *DIRECTIONS[t])
                    if vendor == "philips":  # Philips writes the standard attributes as well
                        tag_diffusion(ds, "standard", *DIRECTIONS[t])
            files.append((path, ds))
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (old, ds) in zip(rng.permutation(len(files)), files):
        target = folder / f"MR{int(number):05d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        old.unlink()
        paths.append(target)
    for sub in sorted(staging.rglob("*"), reverse=True):
        sub.rmdir()
    staging.rmdir()
    dwi = kind == "dwi"
    return VendorSeries(
        paths=tuple(paths), volumes=volumes, affine=affine, series_uid=uid,
        b_values=tuple(b for b, _ in DIRECTIONS) if dwi else (),
        gradients=tuple(g for _, g in DIRECTIONS) if dwi else (),
        echo_times=tuple(10.0 + 15.0 * t for t in range(count)) if kind == "multiecho" else (),
    )
