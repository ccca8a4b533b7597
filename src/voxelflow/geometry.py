"""Affine geometry in voxelflow's conventions (pure numpy).

An affine maps an array index in array order ``[k, j, i, 1]`` (slice, row, column) to patient
coordinates ``[x, y, z, 1]`` in millimetres, LPS (DICOM's patient system). DICOM's Image
Orientation (Patient) holds the row cosine (direction of increasing column index i) and then
the column cosine (increasing row index j); Pixel Spacing is (between rows, between columns),
i.e. (j, i) spacing. RAS appears only at the NIfTI boundary (:func:`nifti_affine`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ParameterError

__all__ = [
    "LPS_TO_RAS",
    "affine_from_dicom",
    "affine_spacing",
    "nifti_affine",
    "slice_normal",
]

#: LPS -> RAS flips x and y (and the inverse is the same matrix).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal (row cosine x column cosine) of a DICOM Image Orientation (Patient).

    Raises
    ------
    ParameterError
        If the six values are not two unit, orthogonal vectors (tolerance 1e-3).
    """
    iop = np.asarray(orientation, dtype=np.float64)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise ParameterError(f"Image Orientation (Patient) must be 6 finite numbers, got {orientation!r}")
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise ParameterError(f"Image Orientation (Patient) {list(iop)} is not two orthogonal unit vectors")
    normal = np.cross(row, col)
    return normal / np.linalg.norm(normal)


def affine_from_dicom(
    orientation: Sequence[float],
    first_position: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_step: Sequence[float] | None = None,
) -> np.ndarray:
    """The (k, j, i) -> LPS affine of a stack of slices.

    Parameters
    ----------
    orientation : 6 floats
        Image Orientation (Patient): row cosine, then column cosine.
    first_position : 3 floats
        Image Position (Patient) of slice k = 0, in mm.
    pixel_spacing : 2 floats
        Pixel Spacing (between rows, between columns) in mm.
    slice_step : 3 floats, optional
        Patient-space vector from slice k to k + 1, in mm (from positions, which is what makes
        a gantry tilt a shear). Default: the unit normal (a single slice, spacing 1 mm).
    """
    iop = np.asarray(orientation, dtype=np.float64)
    row_cos, col_cos = iop[:3], iop[3:]
    dr, dc = (float(v) for v in pixel_spacing)
    affine = np.eye(4)
    affine[:3, 0] = slice_normal(iop) if slice_step is None else np.asarray(slice_step, np.float64)
    affine[:3, 1] = col_cos * dr  # j: down the rows
    affine[:3, 2] = row_cos * dc  # i: along a row
    affine[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return affine


def affine_spacing(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel spacing in array order (k, j, i), in mm: the lengths of the affine's columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def nifti_affine(affine: np.ndarray) -> np.ndarray:
    """The NIfTI (RAS) affine of a volume whose voxels are written in (i, j, k) order.

    voxelflow arrays are (k, j, i); NIfTI stores x (= i) fastest, so the array is transposed
    to (i, j, k) and the affine's columns reversed to match, then LPS becomes RAS.
    """
    reverse = np.eye(4)[:, [2, 1, 0, 3]]
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64) @ reverse
