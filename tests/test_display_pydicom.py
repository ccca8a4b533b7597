"""voxelflow's display pipeline against pydicom's, on every grayscale file of pydicom's test
files and pydicom-data that carries a window, a Modality LUT (Sequence or rescale) or a VOI LUT.

pydicom's ``apply_modality_lut``, ``apply_voi_lut`` / ``apply_voi`` / ``apply_windowing``
return values in their own ranges; each is mapped to the display range ``0 .. 2**bits - 1``
and rounded half up, as voxelflow documents, before comparing. Equal, or within one grey
level, for these reasons (each checked or counted below):

- Windows: pydicom returns ``((x - c') / w' + 0.5) * (y_max - y_min) + y_min`` over the stored
  range through the rescale, and the test maps it back with ``(p - y_min) / (y_max - y_min)``:
  an extra multiply/divide round trip in float64 that can move a value sitting exactly on a
  rounding tie (k + 0.5) by one ulp, so one grey level.
- VOI LUTs: pydicom returns the raw entries; the test scales them by the bits per entry
  voxelflow uses. Where a descriptor says 16 bits and the data hold 8, voxelflow (like dcmtk)
  scales by 8 bits; pydicom's declared depth would render the image almost black. The
  detection is asserted where it happens.
- Files without a VOI (rescale or Modality LUT Sequence only): pydicom has no automatic
  window, so its modality values are mapped with the frame's min/max, voxelflow's default
  automatic window; the two formulas differ in float rounding, so one grey level at ties.
- MONOCHROME1 and Presentation LUT Shape INVERSE: pydicom's VOI functions apply no
  presentation transformation; voxelflow inverts (``ymax - y`` before rounding), so the test
  inverts pydicom's mapped value the same way.
- Enhanced objects: pydicom's functions read top-level attributes only; the test lifts the
  frame's Pixel Value Transformation and Frame VOI LUT values to the top level for pydicom.
"""

from __future__ import annotations

import copy
import math
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels.processing import apply_modality_lut, apply_voi, apply_windowing

from voxelflow.display import LUT, DisplayPipeline, Window, render_frame, voi_options, window

_MARKERS = (
    "WindowCenter",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "RescaleSlope",
    "SharedFunctionalGroupsSequence",
)


def _header(path: str) -> Any:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM, or deliberately broken: not in the corpus
        return None


def _corpus() -> list[tuple[str, int]]:
    """(path, voi_index) for every grayscale test file that carries a display pipeline."""
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_testdata_files()):
            ds = _header(path)
            if ds is None:
                continue
            if ds.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
                continue
            if not any(k in ds for k in _MARKERS):
                continue
            try:
                # the oracle must decode the pixels (MR_truncated.dcm, cut short, is for the
                # decoder's malformed-input tests)
                _ = pydicom.dcmread(path).pixel_array
            except Exception:  # noqa: BLE001
                continue
            try:
                count = len(voi_options(ds))
            except Exception:  # noqa: BLE001 - reported by test_corpus_parses
                count = 1
            cases.extend((path, k) for k in range(max(count, 1)))
    return cases


CASES = _corpus()


def _id(case: tuple[str, int]) -> str:
    return f"{Path(case[0]).name}-{case[1]}"


def test_corpus_is_the_expected_one() -> None:
    names = {Path(p).name for p, _ in CASES}
    # The files the issue names, and the kinds of pipeline they exercise.
    assert {"CT_small.dcm", "MR_small.dcm", "mlut_18.dcm", "vlut_04.dcm"} <= names
    assert {"RG1_UNCR.dcm", "eCT_Supplemental.dcm", "examples_overlay.dcm"} <= names
    assert len(CASES) >= 60


def _frame_view(ds: Any) -> Any:
    """A copy of `ds` with frame 0's functional-group values at the top level (for pydicom)."""
    view = copy.deepcopy(ds)
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        groups.append(per_frame[0])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for keyword in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
        for group in reversed(groups):  # per-frame last: it wins
            if keyword in group:
                for element in group[keyword][0]:
                    view[element.tag] = element
    return view


def _pixels(ds: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = ds.pixel_array
    return arr[0] if int(ds.get("NumberOfFrames") or 1) > 1 else arr


def _pydicom_display(
    ds: Any, arr: np.ndarray, option: Window | LUT | None, voi_index: int, bits: int
) -> np.ndarray:
    """pydicom's pipeline mapped to 0 .. 2**bits - 1 (float64, unrounded)."""
    top = float((1 << bits) - 1)
    view = _frame_view(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modality = apply_modality_lut(arr, view)
        if option is None:
            m = modality.astype(np.float64)
            span = m.max() - m.min()
            return (m - m.min()) / span * top if span else np.zeros_like(m)
        if isinstance(option, LUT):
            entries = apply_voi(modality, view, index=voi_index).astype(np.float64)
            return entries / ((1 << option.bits) - 1) * top
        window_index = voi_index - sum(isinstance(o, LUT) for o in voi_options(ds))
        if "VOILUTSequence" in view:
            del view.VOILUTSequence  # apply_windowing, not the LUT
        p = apply_windowing(modality, view, index=window_index)
    if view.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** view.ModalityLUTSequence[0].LUTDescriptor[2] - 1)
    elif view.PixelRepresentation == 0:
        y_min, y_max = 0.0, float(2**view.BitsStored - 1)
    else:
        y_min, y_max = float(-(2 ** (view.BitsStored - 1))), float(2 ** (view.BitsStored - 1) - 1)
    if "RescaleSlope" in view and "RescaleIntercept" in view:
        slope, intercept = float(view.RescaleSlope), float(view.RescaleIntercept)
        y_min, y_max = y_min * slope + intercept, y_max * slope + intercept
    return (p - y_min) / (y_max - y_min) * top


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_matches_pydicom(case: tuple[str, int], bits: int) -> None:
    path, voi_index = case
    ds = pydicom.dcmread(path)
    arr = _pixels(ds)
    pipeline = DisplayPipeline.from_dataset(ds, voi_index=voi_index, bits=bits)
    ours = window(arr, pipeline).astype(np.int64)
    options = voi_options(ds)
    option = options[voi_index] if options else None
    if isinstance(option, LUT):
        declared = int(ds.VOILUTSequence[voi_index].LUTDescriptor[2])
        if declared == 16 and option.bits == 8:
            assert option.table.max() < 256  # 16 declared, 8 held: scaled as 8 bits
    y = _pydicom_display(ds, arr, option, voi_index, bits)
    top = float((1 << bits) - 1)
    if pipeline.inverse:
        y = top - y
    theirs = np.floor(np.clip(y, 0.0, top) + 0.5).astype(np.int64)
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1, f"{Path(path).name}: {int(diff.max())} grey levels apart"
    # Where they differ, the exact value is a rounding tie k + 1/2 that float rounding pushed
    # to either side: both answers are the correctly rounded value within one ulp.
    for stored in np.unique(arr[diff > 0]).tolist():
        exact = _exact_display(stored, pipeline.resolve(arr))
        assert exact - math.floor(exact) == Fraction(1, 2), (stored, exact)


def _exact_display(stored: float, pipeline: DisplayPipeline) -> Fraction:
    """The display value of one stored value in exact rational arithmetic (before rounding)."""
    top = Fraction((1 << pipeline.bits) - 1)
    modality = pipeline.modality
    if isinstance(modality, LUT):
        index = min(max(int(stored) - modality.first_mapped, 0), modality.entries - 1)
        x = Fraction(int(modality.table[index]))
    else:
        x = Fraction(stored) * Fraction(modality.slope) + Fraction(modality.intercept)
    voi = pipeline.voi
    if isinstance(voi, LUT):
        index = min(max(math.floor(x + Fraction(1, 2)) - voi.first_mapped, 0), voi.entries - 1)
        y = Fraction(int(voi.table[index])) / ((1 << voi.bits) - 1) * top
    else:
        c, w = Fraction(voi.center), Fraction(voi.width)
        c0, w0 = (c - Fraction(1, 2), w - 1) if voi.function == "LINEAR" else (c, w)
        if x <= c0 - w0 / 2:
            y = Fraction(0)
        elif x > c0 + w0 / 2:
            y = top
        else:
            y = ((x - c0) / w0 + Fraction(1, 2)) * top
    return top - y if pipeline.inverse else y


@pytest.mark.filterwarnings("ignore::voxelflow.errors.DecodeWarning")  # MR_small_padded
@pytest.mark.parametrize(
    "case", [c for c in CASES if c[1] == 0], ids=[_id(c) for c in CASES if c[1] == 0]
)
def test_render_frame_equals_window_of_the_decoded_frame(case: tuple[str, int]) -> None:
    path = case[0]
    ds = pydicom.dcmread(path)
    arr = _pixels(ds)
    got = render_frame(path)
    assert np.array_equal(got, window(arr, DisplayPipeline.from_dataset(ds)))
