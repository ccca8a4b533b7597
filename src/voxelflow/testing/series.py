"""Write realistic CT / MR DICOM series of the torso phantom, with the geometry and encoding
variations a reader must survive.

:func:`write_series` writes classic single-frame files (one per slice) or one Enhanced CT / MR
multi-frame file, and returns a :class:`SeriesInfo` holding the ground truth: the stored values in
geometric order, the affine, the written positions and the per-slice rescale. Everything is
deterministic for a given seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID
from pydicom.valuerep import format_number_as_ds

from ..errors import ParameterError
from .datasets import (
    LOSSY_TRANSFER_SYNTAXES,
    TRANSFER_SYNTAXES,
    check_transfer_syntax,
    deterministic_uid,
    save_dataset,
    set_pixel_data,
)
from .phantom import CT_RANGE, MR_RANGE, parse_shape, parse_spacing, phantom_labels, tissue_values

__all__ = ["ORIENTATIONS", "SeriesInfo", "write_series"]

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


_OBLIQUE = _rotation(2, 10.0) @ _rotation(1, 20.0) @ _rotation(0, 15.0)

#: Named orientations as (row cosine, column cosine), LPS. Axial rows run to patient left and
#: columns posterior; coronal and sagittal images have the head at the top; "oblique" is axial
#: rotated 15 deg about x, 20 deg about y and 10 deg about z.
ORIENTATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "oblique": (tuple(_OBLIQUE[:, 0]), tuple(_OBLIQUE[:, 1])),
}

_DEFAULT_WINDOWS = {
    "CT": ((40.0, 400.0, "SOFT TISSUE"), (-600.0, 1500.0, "LUNG"), (400.0, 1800.0, "BONE")),
    "MR": ((700.0, 1400.0, "T1"), (1000.0, 2000.0, "WIDE")),
}
# Per-slice rescale slopes cycle through these (doubled where the stored range is too small).
_PER_SLICE_SLOPES = (1.0, 2.0, 0.5, 4.0, 1.5)


@dataclass(frozen=True, eq=False)
class SeriesInfo:
    """Ground truth for a series written by :func:`write_series`.

    Attributes
    ----------
    paths : tuple of Path
        Files in instance-number order (one file for an enhanced series).
    volume : numpy.ndarray
        Stored pixel values (what ``pixel_array`` returns), (z, y, x) in geometric order:
        slices sorted along the stacking direction (ascending position along the slice normal),
        missing slices left out. Lossy syntaxes decode to approximately this.
    affine : numpy.ndarray
        4x4, maps ``[k, j, i, 1]`` to LPS mm. ``k`` counts slices of the complete uniform grid
        (see `grid_indices`); with explicit `slice_positions` the k column is the mean step.
        With gantry tilt it is sheared (the k column follows the table, not the plane normal).
    positions : numpy.ndarray
        (slices, 3) Image Position (Patient) as written, geometric order.
    orientation : numpy.ndarray
        (6,) Image Orientation (Patient) as written.
    spacing : tuple of float
        (z, y, x) mm: the length of the affine's k column, then Pixel Spacing.
    series_uid, study_uid, frame_of_reference_uid : str
    sop_uids : tuple of str
        SOP Instance UIDs in geometric order (one for an enhanced series).
    instance_numbers : tuple of int
        Instance Number (classic) or 1-based frame number (enhanced) of each slice, geometric order.
    grid_indices : tuple of int
        Index of each written slice on the complete grid (differs from 0..n-1 with missing slices).
    rescale : numpy.ndarray
        (slices, 2) Rescale Slope and Intercept of each slice, geometric order.
    windows : tuple of (center, width, explanation)
        As written, in modality units.
    transfer_syntax : UID
    modality : str
    photometric : str
    enhanced : bool
    """

    paths: tuple[Path, ...]
    volume: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    positions: np.ndarray = field(repr=False)
    orientation: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    sop_uids: tuple[str, ...] = field(repr=False)
    instance_numbers: tuple[int, ...] = field(repr=False)
    grid_indices: tuple[int, ...] = field(repr=False)
    rescale: np.ndarray = field(repr=False)
    windows: tuple[tuple[float, float, str], ...]
    transfer_syntax: UID
    modality: str
    photometric: str
    enhanced: bool

    @property
    def lossy(self) -> bool:
        """Whether the transfer syntax is lossy (decoded pixels only approximate `volume`)."""
        return self.transfer_syntax in LOSSY_TRANSFER_SYNTAXES

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the image planes (row cosine x column cosine), LPS."""
        return np.cross(self.orientation[:3], self.orientation[3:])

    def modality_values(self) -> np.ndarray:
        """Return `volume` through each slice's rescale, float64 (z, y, x).

        For MONOCHROME1 these are the inverted values that make the display right.
        """
        slope = self.rescale[:, 0, np.newaxis, np.newaxis]
        intercept = self.rescale[:, 1, np.newaxis, np.newaxis]
        return self.volume.astype(np.float64) * slope + intercept


def _ds(value: float) -> str:
    """Format `value` as a DICOM DS string (at most 16 characters, shortest exact form)."""
    value = float(value) + 0.0  # no "-0.0"
    text = repr(value)
    return text if len(text) <= 16 else format_number_as_ds(value)


def _parse_orientation(orientation: str | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(orientation, str):
        if orientation not in ORIENTATIONS:
            raise ParameterError(
                f"orientation={orientation!r}; expected one of {sorted(ORIENTATIONS)} or six "
                "direction cosines"
            )
        row, col = (np.asarray(v, dtype=np.float64) for v in ORIENTATIONS[orientation])
        return row, col
    try:
        values = np.asarray([float(v) for v in orientation], dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"orientation={orientation!r}; expected six numbers") from None
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        raise ParameterError(f"orientation={orientation!r}; expected six direction cosines")
    row, col = values[:3], values[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-4 or abs(np.linalg.norm(col) - 1) > 1e-4:
        raise ParameterError(f"orientation={list(values)}: the row and column cosines must be unit")
    if abs(float(row @ col)) > 1e-4:
        raise ParameterError(
            f"orientation={list(values)}: the row and column cosines must be orthogonal"
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _choose_rescale(vmin: float, vmax: float, low: int, high: int, slope: float,
                    intercept: float | None) -> tuple[float, float]:
    """Return (slope, intercept) mapping modality values vmin..vmax into stored low..high.

    The preferred `intercept` is kept when it fits; otherwise the intercept puts vmin at the
    bottom of the stored range, and the slope doubles until vmax fits too.
    """
    if intercept is not None and (vmin - intercept) / slope >= low - 0.5 and (
        vmax - intercept
    ) / slope <= high + 0.5:
        return slope, intercept
    while True:
        b = math.floor(vmin) - slope * low
        if (vmax - b) / slope <= high + 0.5:
            return slope, float(b)
        slope *= 2.0


def _stored_dtype(bits_stored: int, signed: bool) -> np.dtype:
    size = 8 if bits_stored <= 8 else 16
    return np.dtype(f"{'i' if signed else 'u'}{size // 8}")


def _voi_lut_item(vmin: int, vmax: int, window: tuple[float, float, str], signed: bool) -> Dataset:
    """A VOI LUT Sequence item: a 16-bit sigmoid over the first window (PS3.3 C.11.2.1.1)."""
    center, width, explanation = window
    inputs = np.arange(vmin, vmax + 1, dtype=np.float64)
    lut = np.rint(65535.0 / (1.0 + np.exp(-4.0 * (inputs - center) / width))).astype(np.int64)
    item = Dataset()
    # The descriptor's VR follows Pixel Representation; first mapped may be negative only as SS.
    item.add_new(0x00283002, "SS" if signed else "US", [inputs.size % 65536, vmin, 16])
    item.LUTExplanation = f"SIGMOID {explanation}"[:64]
    item.add_new(0x00283006, "US", [int(v) for v in lut])
    return item


def _base_dataset(modality: str, *, study_uid: str, series_uid: str, for_uid: str,
                  series_number: int, seed: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = f"VF{seed:08d}"
    ds.Modality = modality
    ds.Manufacturer = "voxelflow"
    ds.ManufacturerModelName = "phantom"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "VOXELFLOW^PHANTOM"
    ds.PatientID = f"VF{seed:06d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.BurnedInAnnotation = "NO"
    if modality == "CT":
        ds.KVP = "120"
    else:
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = "1.5"
        ds.ImagedNucleus = "1H"
    return ds


def _window_elements(ds: Dataset, windows: Sequence[tuple[float, float, str]]) -> None:
    if windows:
        ds.WindowCenter = [_ds(w[0]) for w in windows]
        ds.WindowWidth = [_ds(w[1]) for w in windows]
        ds.WindowCenterWidthExplanation = [w[2] for w in windows]


def _rescale_elements(ds: Dataset, modality: str, slope: float, intercept: float) -> None:
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "HU" if modality == "CT" else "US"


def write_series(
    folder: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int] = (48, 128, 128),
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    modality: str = "CT",
    orientation: str | Sequence[float] = "axial",
    center: tuple[float, float, float] = (0.0, -15.0, -120.0),
    slice_order: str = "ascending",
    shuffle_instance_numbers: bool = False,
    gantry_tilt: float = 0.0,
    missing_slices: Sequence[int] = (),
    slice_positions: Sequence[float] | None = None,
    per_slice_rescale: bool = False,
    windows: Sequence[tuple[float, float, str]] | None = None,
    voi_lut: bool = False,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    pixel_representation: int | None = None,
    transfer_syntax: str = "explicit_le",
    enhanced: bool = False,
    noise: bool = True,
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    seed: int = 0,
) -> SeriesInfo:
    """Write a CT or MR series of the torso phantom to `folder` and return its ground truth.

    Parameters
    ----------
    folder : path
        Created if missing. Files are named ``IM_<series>_<instance>.dcm`` (classic) or
        ``EN_<series>.dcm`` (enhanced), so several series can share a folder.
    shape : (int, int, int)
        (slices, rows, columns) of the complete series.
    spacing : (float, float, float)
        (z, y, x) mm: step between slices along the stacking direction (the table increment
        when tilted), spacing between rows and between columns (Pixel Spacing).
    modality : {"CT", "MR"}
    orientation : str or six floats
        ``"axial"``, ``"coronal"``, ``"sagittal"``, ``"oblique"`` (see ``ORIENTATIONS``) or an
        explicit Image Orientation (Patient) (unit, orthogonal row and column cosines).
    center : (float, float, float)
        LPS mm of the middle of the volume; the anatomy is centred there.
    slice_order : {"ascending", "descending"}
        Instance numbers increase along (ascending) or against (descending) the slice normal.
    shuffle_instance_numbers : bool
        Assign instance numbers (frame order, if enhanced) in a seeded random order.
    gantry_tilt : float
        Degrees, |tilt| < 45. The image planes are rotated about the row direction while slices
        keep stepping along the untilted normal (the table), as on a tilted CT gantry: each slice
        shifts by ``spacing[0] * sin(tilt)`` along the column direction relative to the plane.
    missing_slices : sequence of int
        Geometric indices (0 = lowest along the normal) of slices to leave out.
    slice_positions : sequence of float, optional
        Explicit positions along the stacking direction, mm (one per slice, distinct, any order):
        non-uniform spacing. The projection of each Image Position onto the direction equals it.
    per_slice_rescale : bool
        Give each slice its own Rescale Slope / Intercept; stored values are re-quantised so
        the modality values stay right (to half a slope).
    windows : sequence of (center, width, explanation), optional
        Window Center / Width values in modality units (HU for CT); default: soft tissue, lung
        and bone for CT, two for MR; ``()`` writes none.
    voi_lut : bool
        Add a VOI LUT Sequence (a 16-bit sigmoid over the first window). With negative modality
        values this needs signed storage, which then becomes the default.
    photometric : {"MONOCHROME2", "MONOCHROME1"}
        MONOCHROME1 inverts the modality values (``v' = low + high - v`` over the modality range:
        2047 - HU for CT) and the window centers, so the inverted display looks like the
        MONOCHROME2 one.
    bits_stored : int, optional
        Default 12 for CT, 16 for MR, 8 for JPEG Baseline. Modality values that do not fit get a
        larger slope.
    pixel_representation : {0, 1}, optional
        Default 0 (unsigned, CT intercept -1024), or 1 when `voi_lut` needs it.
    transfer_syntax : str
        A name from ``voxelflow.testing.TRANSFER_SYNTAXES`` or a UID.
    enhanced : bool
        Write one Enhanced CT / MR Image Storage multi-frame file with shared and per-frame
        functional groups and a Stack ID / In-Stack Position dimension index.
    noise : bool
        Add image noise to the phantom.
    series_number : int
    study_uid, series_uid : str, optional
        Default: derived from `seed` (study) and from `seed` and every parameter (series).
    seed : int
        Seeds noise, shuffling and UIDs.

    Returns
    -------
    SeriesInfo

    Raises
    ------
    ParameterError
        On an invalid parameter or combination.
    MissingPluginError
        If the transfer syntax has no encoder installed.
    """
    shape = parse_shape(shape)
    dz, dy, dx = parse_spacing(spacing)
    n, rows, cols = shape
    if modality not in ("CT", "MR"):
        raise ParameterError(f"modality={modality!r}; expected 'CT' or 'MR'")
    if slice_order not in ("ascending", "descending"):
        raise ParameterError(f"slice_order={slice_order!r}; expected 'ascending' or 'descending'")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ParameterError(
            f"photometric={photometric!r}; expected 'MONOCHROME1' or 'MONOCHROME2'"
        )
    tilt = float(gantry_tilt)
    if not abs(tilt) < 45.0:
        raise ParameterError(f"gantry_tilt={gantry_tilt!r}; expected degrees with |tilt| < 45")
    uid = check_transfer_syntax(transfer_syntax)
    row, col = _parse_orientation(orientation)
    stack_dir = np.cross(row, col)  # the table direction; the untilted plane normal
    if tilt:
        t = math.radians(tilt)
        col = math.cos(t) * col + math.sin(t) * stack_dir
    center_v = np.asarray(center, dtype=np.float64)
    if center_v.shape != (3,) or not np.all(np.isfinite(center_v)):
        raise ParameterError(f"center={center!r}; expected three LPS mm values")

    # Slice positions along the stacking direction, sorted: geometric order.
    if slice_positions is None:
        along = float(center_v @ stack_dir) + (np.arange(n) - (n - 1) / 2.0) * dz
    else:
        along = np.sort(np.asarray([float(p) for p in slice_positions], dtype=np.float64))
        if along.shape != (n,) or not np.all(np.isfinite(along)):
            raise ParameterError(f"slice_positions needs {n} finite values (one per slice)")
        if n > 1 and np.min(np.diff(along)) <= 0:
            raise ParameterError("slice_positions must be distinct")
    missing = sorted({int(k) for k in missing_slices})
    if missing and (missing[0] < 0 or missing[-1] >= n):
        raise ParameterError(
            f"missing_slices={list(missing_slices)}; indices must lie in 0..{n - 1}"
        )
    keep = np.asarray([k for k in range(n) if k not in set(missing)], dtype=np.intp)
    if keep.size == 0:
        raise ParameterError("missing_slices removes every slice")

    in_plane = center_v - ((cols - 1) / 2.0) * dx * row - ((rows - 1) / 2.0) * dy * col
    in_plane = in_plane - (in_plane @ stack_dir) * stack_dir
    ideal = in_plane[np.newaxis, :] + along[:, np.newaxis] * stack_dir[np.newaxis, :]
    # What is written is the DS text; the ground truth is what a reader will parse.
    ipp_text = [[_ds(v) for v in p] for p in ideal]
    positions_all = np.asarray([[float(v) for v in p] for p in ipp_text])
    iop_text = [_ds(v) for v in (*row, *col)]
    orientation_written = np.asarray([float(v) for v in iop_text])

    step = dz if slice_positions is None or n == 1 else float((along[-1] - along[0]) / (n - 1))
    affine = np.eye(4)
    affine[:3, 0] = step * stack_dir
    affine[:3, 1] = dy * col
    affine[:3, 2] = dx * row
    affine[:3, 3] = positions_all[0]

    low_mod, high_mod = CT_RANGE if modality == "CT" else MR_RANGE
    mono1 = photometric == "MONOCHROME1"
    flip = low_mod + high_mod  # MONOCHROME1: v' = flip - v

    if windows is None:
        windows = _DEFAULT_WINDOWS[modality]
    written_windows: list[tuple[float, float, str]] = []
    for w in windows:
        try:
            c_, w_, e_ = float(w[0]), float(w[1]), str(w[2])
        except (TypeError, ValueError, IndexError):
            raise ParameterError(
                f"windows item {w!r}; expected (center, width, explanation)"
            ) from None
        if not w_ >= 1.0:
            raise ParameterError(f"window width {w_} must be at least 1")
        written_windows.append((flip - c_ if mono1 else c_, w_, e_))
    if voi_lut and not written_windows:
        raise ParameterError("voi_lut=True needs at least one window to shape the LUT")

    if bits_stored is None:
        bits_stored = 8 if uid == TRANSFER_SYNTAXES["jpeg_baseline"] else (
            12 if modality == "CT" else 16
        )
    if not 2 <= int(bits_stored) <= 16:
        raise ParameterError(f"bits_stored={bits_stored!r}; expected 2..16")
    bits_stored = int(bits_stored)

    # Phantom on the complete grid, so a missing slice leaves the others unchanged.
    labels = phantom_labels(positions_all, row, col, (dy, dx), (rows, cols))
    values = tissue_values(labels, modality=modality, seed=seed, noise=noise)[keep]
    del labels
    vmin_all = float(flip - values.max()) if mono1 else float(values.min())
    vmax_all = float(flip - values.min()) if mono1 else float(values.max())
    needs_signed = voi_lut and vmin_all < 0
    if pixel_representation is None:
        pixel_representation = 1 if needs_signed else 0
    if pixel_representation not in (0, 1):
        raise ParameterError(f"pixel_representation={pixel_representation!r}; expected 0 or 1")
    if needs_signed and pixel_representation == 0:
        raise ParameterError(
            "voi_lut=True with negative modality values needs pixel_representation=1: the VOI "
            "LUT Descriptor's first mapped value is read as US for unsigned pixel data"
        )
    signed = pixel_representation == 1
    low = -(1 << (bits_stored - 1)) if signed else 0
    high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1

    m = keep.size
    dtype = _stored_dtype(bits_stored, signed)
    volume = np.empty((m, rows, cols), dtype=dtype)
    rescale = np.empty((m, 2), dtype=np.float64)
    preferred = (-1024.0 if modality == "CT" and not signed else 0.0)
    if not per_slice_rescale:
        global_rescale = _choose_rescale(vmin_all, vmax_all, low, high, 1.0, preferred)
    for k in range(m):
        v = values[k].astype(np.int32)
        if mono1:
            v = flip - v
        if per_slice_rescale:
            slope, intercept = _choose_rescale(
                float(v.min()), float(v.max()), low, high,
                _PER_SLICE_SLOPES[int(keep[k]) % len(_PER_SLICE_SLOPES)], None,
            )
            slope, intercept = float(_ds(slope)), float(_ds(intercept))
        else:
            slope, intercept = global_rescale
        rescale[k] = slope, intercept
        if slope == 1.0 and intercept == int(intercept):
            stored = v - np.int32(intercept)
        else:
            stored = np.rint((v - intercept) / slope)
        volume[k] = np.clip(stored, low, high)
    del values

    voi_item = None
    if voi_lut:
        mod_lo = int(math.floor(min(rescale[:, 1] + rescale[:, 0] * low)))
        mod_hi = int(math.ceil(max(rescale[:, 1] + rescale[:, 0] * high)))
        # Only the range the image uses, so the entry count fits the descriptor.
        mod_lo = max(mod_lo, int(math.floor(vmin_all)))
        mod_hi = min(mod_hi, int(math.ceil(vmax_all)))
        if mod_hi - mod_lo + 1 > (32767 if signed else 65535):
            raise ParameterError("the modality value range is too wide for a VOI LUT")
        voi_item = _voi_lut_item(mod_lo, mod_hi, written_windows[0], signed)

    # Instance numbers (frame numbers if enhanced), in geometric order.
    order = np.arange(m) if slice_order == "ascending" else np.arange(m)[::-1]
    if shuffle_instance_numbers:
        order = np.random.default_rng([seed, 7]).permutation(m)
    instance_numbers = np.empty(m, dtype=np.int64)
    instance_numbers[order] = np.arange(1, m + 1)

    study = study_uid or deterministic_uid("study", seed)
    series = series_uid or deterministic_uid(
        "series", seed, modality, shape, (dz, dy, dx), orientation_written.tolist(),
        center_v.tolist(), slice_order, shuffle_instance_numbers, tilt, missing,
        None if slice_positions is None else along.tolist(), per_slice_rescale, written_windows,
        voi_lut, photometric, bits_stored, pixel_representation, uid, enhanced, noise,
        series_number,
    )
    for_uid = deterministic_uid("frame-of-reference", study)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    short = f"{int(str(series).rsplit('.', 1)[-1]) % (1 << 32):08x}"

    base = _base_dataset(modality, study_uid=study, series_uid=series, for_uid=for_uid,
                         series_number=series_number, seed=seed)
    image_type = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
    thickness = _ds(dz)
    between = _ds(abs(step * float(stack_dir @ np.cross(row, col))))
    pixel_options = dict(
        photometric=photometric, bits_allocated=8 if bits_stored <= 8 else 16,
        bits_stored=bits_stored, pixel_representation=pixel_representation,
        transfer_syntax=uid,
    )
    uniform_rescale = bool(np.all(rescale == rescale[0]))

    if enhanced:
        sop_uid = deterministic_uid(series, "enhanced")
        ds = base
        sop_class = ENHANCED_CT_IMAGE_STORAGE if modality == "CT" else ENHANCED_MR_IMAGE_STORAGE
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = 1
        # Enhanced CT / MR Image Type value 3 (C.8.15.2.1.1 / C.8.13.1.1.1) and value 4.
        third = "AXIAL" if modality == "CT" else "VOLUME"
        ds.ImageType = [*image_type[:2], third, "NONE"]
        ds.ContentQualification = "PRODUCT"
        ds.PixelPresentation = "MONOCHROME"
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.AcquisitionDateTime = "20240102101500"
        dim_org = deterministic_uid(series, "dimension-organization")
        org = Dataset()
        org.DimensionOrganizationUID = dim_org
        ds.DimensionOrganizationSequence = DicomSequence([org])
        ds.DimensionOrganizationType = "3D"
        dims = []
        for pointer, label in ((0x00209056, "Stack ID"), (0x00209057, "In-Stack Position Number")):
            item = Dataset()
            item.DimensionOrganizationUID = dim_org
            item.DimensionIndexPointer = pointer
            item.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
            item.DimensionDescriptionLabel = label
            dims.append(item)
        ds.DimensionIndexSequence = DicomSequence(dims)

        shared = Dataset()
        measures = Dataset()
        measures.PixelSpacing = [_ds(dy), _ds(dx)]
        measures.SliceThickness = thickness
        measures.SpacingBetweenSlices = between
        shared.PixelMeasuresSequence = DicomSequence([measures])
        plane_orientation = Dataset()
        plane_orientation.ImageOrientationPatient = iop_text
        shared.PlaneOrientationSequence = DicomSequence([plane_orientation])
        if written_windows:
            voi = Dataset()
            _window_elements(voi, written_windows)
            shared.FrameVOILUTSequence = DicomSequence([voi])
        if uniform_rescale:
            pvt = Dataset()
            _rescale_elements(pvt, modality, *rescale[0])
            shared.PixelValueTransformationSequence = DicomSequence([pvt])
        frame_type = Dataset()
        frame_type.FrameType = ds.ImageType
        if modality == "CT":
            shared.CTImageFrameTypeSequence = DicomSequence([frame_type])
            details = Dataset()
            details.GantryDetectorTilt = _ds(tilt)
            shared.CTAcquisitionDetailsSequence = DicomSequence([details])
        else:
            shared.MRImageFrameTypeSequence = DicomSequence([frame_type])
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

        frame_of = np.argsort(instance_numbers)  # geometric index of each frame, frame order
        per_frame = []
        for g in frame_of:
            item = Dataset()
            content = Dataset()
            content.StackID = "1"
            content.InStackPositionNumber = int(g) + 1
            content.DimensionIndexValues = [1, int(g) + 1]
            content.FrameAcquisitionNumber = 1
            item.FrameContentSequence = DicomSequence([content])
            position = Dataset()
            position.ImagePositionPatient = ipp_text[int(keep[g])]
            item.PlanePositionSequence = DicomSequence([position])
            if not uniform_rescale:
                pvt = Dataset()
                _rescale_elements(pvt, modality, *rescale[g])
                item.PixelValueTransformationSequence = DicomSequence([pvt])
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
        if voi_item is not None:
            ds.VOILUTSequence = DicomSequence([voi_item])
        set_pixel_data(ds, volume[frame_of], number_of_frames=m, **pixel_options)
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        paths = (save_dataset(ds, folder / f"EN_{short}.dcm"),)
        sop_uids: tuple[str, ...] = (str(sop_uid),)
    else:
        ds = base
        sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.ImageType = image_type
        ds.ImageOrientationPatient = iop_text
        ds.PixelSpacing = [_ds(dy), _ds(dx)]
        ds.SliceThickness = thickness
        ds.SpacingBetweenSlices = between
        if modality == "CT":
            ds.GantryDetectorTilt = _ds(tilt)
        _window_elements(ds, written_windows)
        if voi_item is not None:
            ds.VOILUTSequence = DicomSequence([voi_item])
        # Classic MR has no Modality LUT module: rescale only when it is not the identity.
        identity = uniform_rescale and tuple(rescale[0]) == (1.0, 0.0)
        write_rescale = modality == "CT" or not identity
        normal = np.cross(row, col)
        sop_list = [deterministic_uid(series, "sop", int(keep[k])) for k in range(m)]
        written: dict[int, Path] = {}
        for k in np.argsort(instance_numbers):
            g = int(keep[k])
            ds.SOPInstanceUID = sop_list[k]
            ds.file_meta.MediaStorageSOPInstanceUID = sop_list[k]
            ds.InstanceNumber = int(instance_numbers[k])
            ds.ImagePositionPatient = ipp_text[g]
            ds.SliceLocation = _ds(float(positions_all[g] @ normal))
            if write_rescale:
                _rescale_elements(ds, modality, *rescale[k])
            set_pixel_data(ds, volume[k], **pixel_options)
            name = folder / f"IM_{short}_{int(instance_numbers[k]):05d}.dcm"
            written[int(instance_numbers[k])] = save_dataset(ds, name)
        paths = tuple(written[i] for i in sorted(written))
        sop_uids = tuple(str(u) for u in sop_list)

    return SeriesInfo(
        paths=paths,
        volume=volume,
        affine=affine,
        positions=positions_all[keep],
        orientation=orientation_written,
        spacing=(float(np.linalg.norm(affine[:3, 0])), dy, dx),
        series_uid=str(series),
        study_uid=str(study),
        frame_of_reference_uid=str(for_uid),
        sop_uids=sop_uids,
        instance_numbers=tuple(int(i) for i in instance_numbers),
        grid_indices=tuple(int(g) for g in keep),
        rescale=rescale,
        windows=tuple(written_windows),
        transfer_syntax=uid,
        modality=modality,
        photometric=photometric,
        enhanced=enhanced,
    )
