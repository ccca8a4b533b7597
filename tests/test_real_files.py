"""`voxelflow convert` against the dcm2niix wheel on every DICOM file pydicom ships (real
scanners' and toolkits' files: CT, MR, US, RG, SC, RT Dose, enhanced, big-endian, JPEG family,
RLE, palettes, files without a patient geometry).

Each file is converted alone by both. Where dcm2niix writes a NIfTI, voxelflow writes the same
number, with the same shape, affine (1e-3 mm) and voxels, unless the file is listed below with
what voxelflow does instead and why (each such claim is checked). Files voxelflow does not
convert yet are listed too: they must be refused with a reason, never raise nor write.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files

from voxelflow.ingest import convert

FILES = sorted({Path(p) for p in get_testdata_files("*.dcm")}, key=lambda p: p.name)

#: Where voxelflow differs from dcm2niix on purpose: pattern -> why (the test checks the claim).
DIFFERS = {
    "rtdose.dcm": "frames lie at their Grid Frame Offset Vector (5 mm apart, PS3.3 C.8.8.3.2); dcm2niix steps 1 mm",
    "rtdose_expb.dcm": "frames lie at their Grid Frame Offset Vector (5 mm apart); dcm2niix steps 1 mm",
    "rtdose_rle.dcm": "frames lie at their Grid Frame Offset Vector (5 mm apart); dcm2niix steps 1 mm",
    "OBXXXX1A_expb*.dcm": "8-bit samples of an Explicit VR Big Endian file are bytes, not words: voxelflow equals "
                          "pydicom, dcm2niix swaps them in pairs",
    "emri_small*.dcm": "an Enhanced MR file without functional groups: voxelflow keeps each frame as pydicom "
                       "decodes it, dcm2niix flips its rows",
    "J2K_pixelrep_mismatch.dcm": "one gantry-tilted slice: voxelflow's slice axis is the plane normal, dcm2niix's the "
                                 "table axis; values signed as the header's Pixel Representation says (as pydicom), "
                                 "dcm2niix follows the codestream",
    "*overlay*.dcm": "dcm2niix also writes the overlay plane (60xx,3000) as a second NIfTI; voxelflow writes the image",
    "*Overlays*.dcm": "dcm2niix also writes the overlay plane (60xx,3000) as a second NIfTI; voxelflow writes the image",
}

#: Files dcm2niix converts that voxelflow refuses today, by pattern -> what is missing.
#: (Every colour file, Samples per Pixel 3, is not converted yet either.)
NOT_YET = {
    "liver*_1frame.dcm": "a multi-frame file without Number of Frames",
    "badVR.dcm": "Number of Frames '1A' is refused, not guessed",
    "OT-PAL-8-face.dcm": "a data set without the Part 10 preamble and DICM prefix is skipped as not DICOM",
    "*too_short.dcm": "a truncated codestream is refused",
}


def _listed(name: str, table: dict[str, str]) -> str | None:
    return next((why for pattern, why in table.items() if fnmatch.fnmatch(name, pattern)), None)


def _not_yet(path: Path) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SamplesPerPixel"])
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return "colour (RGB / YBR) volumes"
    return _listed(path.name, NOT_YET)


def _convert_both(path: Path, tmp: Path):
    (tmp / "src").mkdir()
    shutil.copy(path, tmp / "src")
    (tmp / "ref").mkdir()
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp / "ref"), "-f", "ref", str(tmp / "src")],
                   capture_output=True, timeout=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = convert(tmp / "src", tmp / "ours", sidecar=False)
    return sorted((tmp / "ref").glob("*.nii")), report


def _canonical(path):
    image = nib.as_closest_canonical(nib.load(path))
    return image, np.asarray(image.dataobj, np.float64)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_convert_like_dcm2niix(path, tmp_path):
    refs, report = _convert_both(path, tmp_path)
    ours = [Path(v.output) for v in report.volumes]
    name = path.name
    if not refs:  # dcm2niix writes nothing: voxelflow may convert or refuse (it returned: it did not raise)
        return
    missing = _not_yet(path)
    if missing is not None:
        assert not ours, f"{name} converts now: take it off NOT_YET ({missing})"
        assert report.failures or report.non_dicom, f"{name}: refused without a reason"
        return
    assert ours, f"{name}: dcm2niix converts it, voxelflow did not: {report.failures}"
    why = _listed(name, DIFFERS)
    mine, mine_data = _canonical(ours[0])
    if why is None:
        assert len(ours) == len(refs)
        for a, b in zip(ours, refs):
            (ia, da), (ib, db) = _canonical(a), _canonical(b)
            assert ia.shape == ib.shape
            np.testing.assert_allclose(ia.affine, ib.affine, atol=1e-3)
            np.testing.assert_allclose(da, db, atol=1e-3, rtol=1e-5)
        return
    ref, ref_data = _canonical(refs[0])
    assert mine.shape == ref.shape, why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    if name.startswith("rtdose"):
        offsets = [float(v) for v in ds.GridFrameOffsetVector]
        assert np.linalg.norm(nib.load(ours[0]).affine[:3, 2]) == pytest.approx(offsets[1] - offsets[0])
        np.testing.assert_allclose(mine_data, ref_data)  # the same voxels, placed differently
    elif name.startswith(("OBXXXX1A", "emri_small")):
        np.testing.assert_allclose(mine.affine, ref.affine, atol=1e-3)
        frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns).astype(np.float64)
        stored = np.asarray(nib.load(ours[0]).dataobj, np.float64)  # (x, y, z): DICOM columns, rows, frames
        np.testing.assert_array_equal(stored.transpose(2, 1, 0), frames)
    elif name == "J2K_pixelrep_mismatch.dcm":
        np.testing.assert_allclose(mine.affine[:3, :2], ref.affine[:3, :2], atol=1e-3)  # the same plane
        stored = np.asarray(nib.load(ours[0]).dataobj, np.float64)[:, :, 0]
        np.testing.assert_array_equal(stored.T, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    else:  # overlays: one image, the same as dcm2niix's image
        assert len(refs) == 2 and len(ours) == 1
        assert any(_canonical(r)[1].shape == mine_data.shape and np.allclose(_canonical(r)[1], mine_data) for r in refs)
