"""Volume: an array (numpy, zarr or dask) with its affine and DICOM-derived metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError
from .geometry import affine_spacing, nifti_affine

__all__ = ["RGB24", "StoredSource", "Volume", "require_grayscale"]

#: NIfTI's RGB24 voxel (datatype 128), as nibabel reads and writes it: how dcm2niix stores colour.
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


@dataclass(frozen=True)
class StoredSource:
    """Where a lazily opened Volume lives: its store, key and pyramid level (``levels`` in all),
    so renderers can switch to a coarser level of the same volume."""

    store: Any
    key: str
    level: int
    levels: int

    def open(self, level: int) -> Volume:
        """The same volume at another pyramid level."""
        return self.store.open(self.key, level=level)  # type: ignore[no-any-return]


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D (or 4-D: t, z, y, x) image and where it lies in the patient.

    Attributes
    ----------
    array : numpy.ndarray, zarr.Array or dask.array.Array
        The voxels in (z, y, x) order (``(..., z, y, x)`` with leading axes such as time),
        stored values in their DICOM dtype unless ``meta["values"] == "modality"``. A colour
        volume (``meta["axes"]`` ending in ``"c"``, see :attr:`is_colour`) is (z, y, x, 3)
        uint8 RGB: its sample axis comes last, after x.
    affine : (4, 4) float64 array
        Maps ``[k, j, i, 1]`` to LPS patient coordinates in mm (see :mod:`voxelflow.geometry`).
    meta : mapping
        DICOM-derived facts: ``modality``, ``rescale`` ({"slope", "intercept"} or None when the
        values are already modality values), ``values`` ("stored" or "modality"), ``windows``,
        ``sop_instance_uids``, ``series_instance_uid``, ``findings``, ``axes`` ...
    source : StoredSource or None
        Set on a volume opened from a :class:`~voxelflow.VolumeStore`; None otherwise (and on
        every volume derived from it, whose voxels are no longer the stored ones).
    """

    array: Any
    affine: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: StoredSource | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ParameterError(f"Volume affine must be a finite 4x4 matrix, got shape {affine.shape}")
        if len(getattr(self.array, "shape", ())) < 3:
            raise ParameterError(f"Volume array must have at least 3 axes (z, y, x), got {getattr(self.array, 'shape', None)}")
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def is_colour(self) -> bool:
        """Whether the voxels are RGB samples: axes (z, y, x, c), ``meta["axes"]`` says so."""
        axes = self.meta.get("axes")
        return isinstance(axes, (list, tuple)) and len(axes) == len(self.shape) and list(axes[-1:]) == ["c"]

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """The (z, y, x) extent, whatever axes lead (time) or follow (colour samples)."""
        shape = self.shape[:-1] if self.is_colour else self.shape
        return tuple(shape[-3:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, in array order (z, y, x)."""
        return affine_spacing(self.affine)  # type: ignore[return-value]

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    def to_numpy(self) -> np.ndarray:
        """The voxels as an in-memory numpy array (reads every chunk of a stored volume)."""
        array = self.array
        if hasattr(array, "compute"):
            return np.asarray(array.compute())
        return np.asarray(array[...])

    def to_dask(self, chunks: Any = None) -> Any:
        """The voxels as a lazy dask array (the store's chunks unless `chunks` is given)."""
        import dask.array as da

        array = self.array
        if hasattr(array, "dask"):
            return array if chunks is None else array.rechunk(chunks)
        if chunks is None:
            chunks = getattr(array, "chunks", None) or "auto"
        return da.from_array(array, chunks=chunks)

    def with_array(self, array: Any, **meta: Any) -> Volume:
        """The same geometry over another array (and updated metadata)."""
        return Volume(array, self.affine, {**self.meta, **meta})

    def to_nifti(self, path: str | Path) -> Path:
        """Write a NIfTI-1 file (``.nii`` or ``.nii.gz``) with correct RAS sform and qform.

        4-D volumes (t, z, y, x) become 4-D NIfTI (x, y, z, t). A uniform rescale is written
        as scl_slope/scl_inter so readers recover modality values. A colour volume becomes an
        RGB24 NIfTI (datatype 128, :data:`RGB24` voxels, x, y, z), as dcm2niix writes colour.
        """
        import nibabel as nib

        data = self.to_numpy()
        if self.is_colour:
            data = np.ascontiguousarray(data, dtype=np.uint8).view(RGB24)[..., 0]
        data = np.transpose(data, tuple(range(data.ndim))[::-1]) if data.ndim == 3 else np.transpose(data, (3, 2, 1, 0))
        image = nib.Nifti1Image(np.asanyarray(data), nifti_affine(self.affine))
        image.set_sform(nifti_affine(self.affine), code=1)  # scanner anatomical
        image.set_qform(nifti_affine(self.affine), code=1)
        rescale = self.meta.get("rescale")
        if rescale and self.meta.get("values", "stored") == "stored":
            image.header.set_slope_inter(float(rescale["slope"]), float(rescale["intercept"]))
        image.header.set_xyzt_units("mm", "sec")
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial{''.join(path.suffixes)}")
        nib.save(image, tmp)
        tmp.replace(path)
        return path

    def to_sitk(self) -> Any:
        """A SimpleITK image (3-D only) with origin, spacing and direction in LPS, as ITK uses."""
        import SimpleITK as sitk

        if len(self.shape) != 3:
            raise ParameterError(f"to_sitk needs a 3-D one-sample volume, got shape {self.shape}")
        image = sitk.GetImageFromArray(self.to_numpy())  # numpy (z, y, x) -> ITK (x, y, z)
        spacing = self.spacing
        image.SetSpacing((spacing[2], spacing[1], spacing[0]))
        image.SetOrigin(tuple(float(v) for v in self.affine[:3, 3]))
        direction = self.affine[:3, [2, 1, 0]] / np.array([spacing[2], spacing[1], spacing[0]])
        image.SetDirection(tuple(float(v) for v in direction.reshape(-1)))
        return image


def require_grayscale(volume: Volume, error: type[Exception], what: str) -> None:
    """Raise `error` (the caller's typed error) when `volume` is a colour volume.

    Resampling, rendering and the DICOM display pipeline (Modality LUT, VOI LUT) are defined
    on one-sample images (PS3.3 C.11: the grayscale pipeline); an RGB volume is stored and
    converted as it is, never interpolated or windowed as if its samples were a time axis."""
    if isinstance(volume, Volume) and volume.is_colour:
        name = volume.source.key if volume.source is not None else "the volume"
        raise error(
            f"{what}: {name} is a colour (RGB) volume, shape {volume.shape} (z, y, x, c); "
            f"{what} takes one-sample (grayscale) volumes"
        )
