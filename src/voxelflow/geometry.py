"""Affine geometry in voxelflow's conventions (pure numpy).

An affine maps an array index in array order ``[k, j, i, 1]`` (slice, row, column) to patient
coordinates ``[x, y, z, 1]`` in millimetres, LPS (DICOM's patient system). DICOM's Image
Orientation (Patient) holds the row cosine (direction of increasing column index i) and then
the column cosine (increasing row index j); Pixel Spacing is (between rows, between columns),
i.e. (j, i) spacing. RAS appears only at the NIfTI boundary (:func:`nifti_affine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ParameterError, RenderError

__all__ = [
    "LPS_TO_RAS",
    "Plane",
    "affine_from_dicom",
    "affine_spacing",
    "nifti_affine",
    "rotation_matrix",
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


# Vectors a Plane takes as unit and orthogonal: tolerance on |v| - 1 and on dot products.
_UNIT_TOLERANCE = 1e-6


def _vector(value: Any, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise RenderError(f"Plane: {name} must be 3 finite numbers (LPS mm), got {value!r}")
    return v.copy()


def _pair(value: Any, name: str, *, integer: bool) -> tuple[Any, Any]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(2, float(arr))
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise RenderError(
            f"Plane: {name} must be a positive number or 2 positive numbers (rows, columns), "
            f"got {value!r}"
        )
    if integer:
        if np.any(arr != np.round(arr)):
            raise RenderError(f"Plane: {name} must be whole numbers of pixels, got {value!r}")
        return int(arr[0]), int(arr[1])
    return float(arr[0]), float(arr[1])


def rotation_matrix(axis: Sequence[float], degrees: float) -> np.ndarray:
    """The 3 x 3 rotation by `degrees` about `axis` (right-hand rule, LPS), Rodrigues' formula."""
    a = _vector(axis, "axis")
    norm = np.linalg.norm(a)
    if norm == 0.0 or not np.isfinite(degrees):
        raise RenderError(f"rotation: axis must be non-zero and the angle finite, got {axis!r}, {degrees!r}")
    a = a / norm
    theta = np.radians(float(degrees))
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


@dataclass(frozen=True, eq=False)
class Plane:
    """An image plane in the patient: where each output pixel lies, in LPS millimetres.

    Attributes
    ----------
    center : (3,) float
        LPS position (mm) of the image centre (between pixels when a side is even).
    row : (3,) float
        Unit vector along a row, the direction of increasing column index (DICOM's row cosine).
    col : (3,) float
        Unit vector down a column, the direction of increasing row index (column cosine).
    spacing : (float, float)
        Pixel spacing in mm, (between rows, between columns) as DICOM's Pixel Spacing.
    size : (int, int)
        Output (rows, columns).

    Pixel ``(j, i)`` (row j, column i) lies at
    ``center + (i - (columns - 1) / 2) * spacing[1] * row + (j - (rows - 1) / 2) * spacing[0] * col``.
    The normal ``row x col`` points away from the viewer, into the screen, for the standard
    views (axial seen from the feet: superior; coronal seen from the front: posterior; see the
    constructors); slabs extend both ways.
    """

    center: np.ndarray
    row: np.ndarray
    col: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    size: tuple[int, int] = (512, 512)

    def __post_init__(self) -> None:
        center = _vector(self.center, "center")
        row = _vector(self.row, "row")
        col = _vector(self.col, "col")
        for name, v in (("row", row), ("col", col)):
            if abs(np.linalg.norm(v) - 1.0) > _UNIT_TOLERANCE:
                raise RenderError(f"Plane: {name} must be a unit vector, got {list(v)} (length {np.linalg.norm(v):.6g})")
        if abs(float(row @ col)) > _UNIT_TOLERANCE:
            raise RenderError(f"Plane: row {list(row)} and col {list(col)} must be orthogonal")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "row", row)
        object.__setattr__(self, "col", col)
        object.__setattr__(self, "spacing", _pair(self.spacing, "spacing", integer=False))
        object.__setattr__(self, "size", _pair(self.size, "size", integer=True))

    def __repr__(self) -> str:
        def fmt(v: np.ndarray) -> str:
            return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"

        return (
            f"Plane(center={fmt(self.center)}, row={fmt(self.row)}, col={fmt(self.col)}, "
            f"spacing={self.spacing}, size={self.size})"
        )

    @property
    def normal(self) -> np.ndarray:
        """``row x col``: the direction slabs and projections step along."""
        n = np.cross(self.row, self.col)
        return n / np.linalg.norm(n)

    @property
    def origin(self) -> np.ndarray:
        """LPS position of pixel (0, 0)."""
        rows, cols = self.size
        return (
            self.center
            - (cols - 1) / 2.0 * self.spacing[1] * self.row
            - (rows - 1) / 2.0 * self.spacing[0] * self.col
        )

    @property
    def affine(self) -> np.ndarray:
        """The 4 x 4 map of ``[s, j, i, 1]`` to LPS: pixel (j, i), ``s`` mm along the normal.

        The same convention as :attr:`voxelflow.Volume.affine`, so a plane is the grid of a
        one-slice volume.
        """
        a = np.eye(4)
        a[:3, 0] = self.normal
        a[:3, 1] = self.col * self.spacing[0]
        a[:3, 2] = self.row * self.spacing[1]
        a[:3, 3] = self.origin
        return a

    def positions(self) -> np.ndarray:
        """The LPS position of every pixel, shape (rows, columns, 3)."""
        rows, cols = self.size
        j, i = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
        a = self.affine
        return a[:3, 3] + j[..., None] * a[:3, 1] + i[..., None] * a[:3, 2]

    def replace(self, **changes: Any) -> Plane:
        """This plane with some attributes changed (``center``, ``spacing``, ``size`` ...)."""
        fields = {"center": self.center, "row": self.row, "col": self.col, "spacing": self.spacing, "size": self.size}
        fields.update(changes)
        return Plane(**fields)

    def shifted(self, mm: float) -> Plane:
        """This plane moved `mm` along its normal (scrolling through a stack of MPRs)."""
        return self.replace(center=self.center + float(mm) * self.normal)

    def rotated(self, axis: Sequence[float], degrees: float, about: Sequence[float] | None = None) -> Plane:
        """This plane rotated by `degrees` about the line through `about` (default: its centre)
        along `axis` (LPS, right-hand rule)."""
        r = rotation_matrix(axis, degrees)
        pivot = self.center if about is None else _vector(about, "about")
        return self.replace(
            center=pivot + r @ (self.center - pivot), row=r @ self.row, col=r @ self.col
        )

    # -- constructors --------------------------------------------------------------------

    @classmethod
    def _standard(
        cls,
        row: Sequence[float],
        col: Sequence[float],
        center: Any,
        spacing: Any,
        size: Any,
    ) -> Plane:
        row_v = np.asarray(row, dtype=np.float64)
        col_v = np.asarray(col, dtype=np.float64)
        if hasattr(center, "affine") and hasattr(center, "shape"):
            return _fit_volume(cls, row_v, col_v, center, spacing, size)
        return cls(
            center=_vector(center, "center"),
            row=row_v,
            col=col_v,
            spacing=1.0 if spacing is None else spacing,
            size=512 if size is None else size,
        )

    @classmethod
    def axial(cls, center: Any, *, spacing: Any = None, size: Any = None) -> Plane:
        """The transverse plane through `center` (LPS mm, or a Volume: see below), seen from
        the feet: columns go to the patient's left, rows to posterior, normal superior.

        With a Volume for `center`, the plane passes through the voxel centre nearest the
        volume's centre along the normal, and defaults to the volume's smallest spacing and a
        size that covers the volume (pixels on voxel centres for an axial volume). Otherwise
        spacing defaults to 1 mm and size to 512 x 512.
        """
        return cls._standard((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), center, spacing, size)

    @classmethod
    def coronal(cls, center: Any, *, spacing: Any = None, size: Any = None) -> Plane:
        """The coronal plane, seen from the front: columns to the patient's left, rows to
        inferior, normal posterior (see :meth:`axial` for `center`, `spacing`, `size`)."""
        return cls._standard((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), center, spacing, size)

    @classmethod
    def sagittal(cls, center: Any, *, spacing: Any = None, size: Any = None) -> Plane:
        """The sagittal plane, seen from the patient's left: columns to posterior, rows to
        inferior, normal to the patient's right (see :meth:`axial`)."""
        return cls._standard((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), center, spacing, size)

    @classmethod
    def oblique(
        cls,
        center: Any,
        normal: Sequence[float],
        *,
        up: Sequence[float] | None = None,
        spacing: Any = None,
        size: Any = None,
    ) -> Plane:
        """The plane through `center` (a point or a Volume, as in :meth:`axial`) with the given
        normal.

        With `up` (a direction, projected into the plane) the image shows it at the top, and
        the normal is kept as given. Without it, the plane is shown as the standard view its
        normal is nearest to (the largest component of the normal; axial, then coronal, then
        sagittal on a tie), kept upright as a radiologist reads it: near-axial planes with
        anterior up and the patient's right on the image's left (seen from the feet),
        near-coronal planes with the head up seen from the front, near-sagittal planes with the
        head up seen from the patient's left. For that the normal is turned to the standard
        view's side (superior, posterior or right) when it points the other way: the plane and
        a slab centred on it cover the same points either way; :meth:`shifted` follows the
        turned normal.

        Raises
        ------
        RenderError
            If `normal` is zero or not finite, or `up` is parallel to it.
        """
        n = _vector(normal, "normal")
        length = np.linalg.norm(n)
        if length == 0.0:
            raise RenderError("Plane.oblique: normal must not be the zero vector")
        n = n / length
        if up is None:
            view = _STANDARD_VIEWS[int(np.argmax(np.abs(n[[2, 1, 0]])))]
            if n @ view.normal < 0.0:
                n = -n
            # the view's column direction (down the image) projected into the plane: never
            # parallel to n, whose largest component lies along the view's own normal
            down = view.col - (view.col @ n) * n
            col = down / np.linalg.norm(down)
            return cls._standard(np.cross(col, n), col, center, spacing, size)
        up_v = _vector(up, "up")
        in_plane = up_v - (up_v @ n) * n
        if np.linalg.norm(up_v) == 0.0 or np.linalg.norm(in_plane) < 1e-6 * np.linalg.norm(up_v):
            raise RenderError(f"Plane.oblique: up {list(up_v)} is parallel to the normal {list(n)}")
        col = -in_plane / np.linalg.norm(in_plane)
        row = np.cross(col, n)
        return cls._standard(row, col, center, spacing, size)


@dataclass(frozen=True)
class _StandardView:
    """A standard view's column direction (down the image) and normal (row x col), LPS."""

    col: np.ndarray
    normal: np.ndarray


# As Plane.axial, Plane.coronal and Plane.sagittal lay them out, in the order the largest
# component of an oblique normal (z, y, x) selects them.
_STANDARD_VIEWS = (
    _StandardView(col=np.array([0.0, 1.0, 0.0]), normal=np.array([0.0, 0.0, 1.0])),
    _StandardView(col=np.array([0.0, 0.0, -1.0]), normal=np.array([0.0, 1.0, 0.0])),
    _StandardView(col=np.array([0.0, 0.0, -1.0]), normal=np.array([-1.0, 0.0, 0.0])),
)


def _fit_volume(cls: type[Plane], row: np.ndarray, col: np.ndarray, volume: Any, spacing: Any, size: Any) -> Plane:
    affine = np.asarray(volume.affine, dtype=np.float64)
    shape = np.array(getattr(volume, "spatial_shape", volume.shape[-3:]), dtype=np.float64)
    normal = np.cross(row, col)
    steps = affine[:3, :3]
    # the volume axis most along the normal is snapped to a voxel centre, the others centred
    along = int(np.argmax(np.abs(normal @ steps) / np.linalg.norm(steps, axis=0)))
    index = (shape - 1.0) / 2.0
    index[along] = np.floor(index[along])
    center = affine[:3, :3] @ index + affine[:3, 3]
    if spacing is None:
        spacing = float(min(affine_spacing(affine)))
    pix = _pair(spacing, "spacing", integer=False)
    if size is None:
        extent = np.abs(np.stack([row, col]) @ steps) @ (shape - 1.0)
        size = (int(np.floor(extent[1] / pix[0] + 1e-6)) + 1, int(np.floor(extent[0] / pix[1] + 1e-6)) + 1)
    return cls(center=center, row=row, col=col, spacing=pix, size=size)
