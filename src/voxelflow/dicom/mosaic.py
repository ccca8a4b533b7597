"""Siemens MOSAIC images: one classic MR instance holding all slices of a volume as tiles.

A mosaic tiles its ``N`` slices row by row into a ``g x g`` grid, ``g = ceil(sqrt(N))``, the
unused tiles left black. ``N`` and the direction in which the tile index runs live only in the
Siemens private CSA Image Header Info (0029,xx10), read here with nibabel's CSA reader
(``NumberOfImagesInMosaic``, ``SliceNormalVector``). The standard attributes describe the
mosaic as one image, and Siemens writes Image Position (Patient) as the first pixel of a slice
as large as the whole mosaic centred on the first slice, so the first tile's first pixel lies
half the size difference further along the row and column directions. Tile ``k`` lies
``k * Spacing Between Slices`` along ``SliceNormalVector`` from tile 0 (the normal of the
image plane, or its opposite when the tiles run against it).

:func:`mosaic_slice_refs` turns the one slice reference the scan gives a mosaic instance into one
reference per tile; the planner then orders them along the normal like any other slices, and a
series of mosaics (the time points of an fMRI run) becomes a 4-D volume.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import slice_normal
from .series import SeriesError
from .stack import SliceRef

__all__ = ["MosaicLayout", "mosaic_grid", "mosaic_layout", "mosaic_slice_refs", "tile_index"]

#: |cos| between the CSA SliceNormalVector and the plane normal of Image Orientation (Patient)
#: may fall short of 1 by this much (about 0.8 degrees): both are written rounded, never skewed.
NORMAL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MosaicLayout:
    """How the slices of one mosaic instance are tiled and where they lie.

    Attributes
    ----------
    images : int
        NumberOfImagesInMosaic: the slices in the mosaic.
    grid : int
        Tiles per side, ``ceil(sqrt(images))``.
    tile_shape : (int, int)
        Rows and columns of one slice.
    first_position : (float, float, float)
        LPS mm of the first pixel of tile 0 (Image Position (Patient) corrected).
    slice_step : (float, float, float)
        LPS mm from one tile's first pixel to the next tile's: Spacing Between Slices along the
        CSA SliceNormalVector.
    """

    images: int
    grid: int
    tile_shape: tuple[int, int]
    first_position: tuple[float, float, float]
    slice_step: tuple[float, float, float]
    #: what had to be assumed (an anonymised mosaic without its CSA Image Header Info)
    assumed: str = ""

    def tile(self, index: int) -> tuple[int, int, int, int]:
        """(first row, first column, rows, columns) of tile `index` in the mosaic image."""
        rows, cols = self.tile_shape
        return (index // self.grid) * rows, (index % self.grid) * cols, rows, cols

    def position(self, index: int) -> tuple[float, float, float]:
        """LPS mm of the first pixel of tile `index`."""
        p = np.asarray(self.first_position) + index * np.asarray(self.slice_step)
        return (float(p[0]), float(p[1]), float(p[2]))


def _images_without_csa(ds: Any, csareader: Any) -> int | None:
    """NumberOfImagesInMosaic where the CSA Image Header Info is gone: Siemens' MR header
    (0019,xx0A), else ``sSliceArray.lSize`` of the protocol in the CSA Series Header."""
    try:
        block = ds.private_block(0x0019, "SIEMENS MR HEADER")
        value = ds[block.get_tag(0x0A)].value
        count = int(value[0] if isinstance(value, (list, tuple)) else value)
        if count > 0:
            return count
    except (KeyError, ValueError, TypeError, IndexError):
        pass
    try:
        series = csareader.get_csa_header(ds, "series")
        protocol = series["tags"]["MrPhoenixProtocol"]["items"][0] if series else ""
    except Exception:  # noqa: BLE001 - nibabel raises several types on a damaged header
        return None
    found = re.search(r"sSliceArray\.lSize\s*=\s*(\d+)", str(protocol))
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


def _number(ds: Any, keyword: str) -> float | None:
    value = ds.get(keyword)
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and np.isfinite(number) and number > 0 else None


def mosaic_grid(images: int) -> int:
    """Tiles a side of a mosaic of `images` slices: ceil(sqrt(images)), exactly."""
    return math.isqrt(images - 1) + 1


def tile_index(tile: tuple[int, int, int, int] | None, images: int) -> int | None:
    """Which tile (row-major) of a mosaic of `images` slices a slice's (first row, first column,
    rows, columns) is, the inverse of :meth:`MosaicLayout.tile`; None for a slice no tile."""
    if tile is None:
        return None
    r0, c0, rows, cols = tile
    return (r0 // rows) * mosaic_grid(images) + c0 // cols


def mosaic_layout(
    ds: Any,
    *,
    rows: int,
    columns: int,
    position: tuple[float, ...],
    orientation: tuple[float, ...],
    pixel_spacing: tuple[float, ...],
    source: str = "",
) -> MosaicLayout:
    """The tiling and slice geometry of a Siemens mosaic.

    Parameters
    ----------
    ds : pydicom.Dataset
        The instance's header (the CSA Image Header Info, Spacing Between Slices, Slice
        Thickness are read from it).
    rows, columns : int
        Of the mosaic image.
    position, orientation, pixel_spacing : tuple of float
        Image Position (Patient) as Siemens writes it for a mosaic, Image Orientation (Patient),
        Pixel Spacing (between rows, between columns), mm.
    source : str
        Names the file in error messages.

    Returns
    -------
    MosaicLayout

    Raises
    ------
    SeriesError
        If the CSA header is missing or unreadable, NumberOfImagesInMosaic is missing or does
        not tile the image (Rows and Columns must divide by ``ceil(sqrt(N))``, and the
        MosaicRefAcqTimes, when present, must list N slices), SliceNormalVector is missing or not
        along the plane normal, or a mosaic of several slices has neither Spacing Between Slices
        nor Slice Thickness.
    """
    with warnings.catch_warnings():
        # nibabel.nicom warns about its DICOM *readers* on import; only its CSA parser is used
        warnings.filterwarnings("ignore", message="The DICOM readers are highly experimental")
        from nibabel.nicom import csareader

    where = source or "mosaic"
    try:
        csa = csareader.get_csa_header(ds, "image")
    except Exception as exc:  # nibabel raises CSAReadError, struct.error, ValueError ...
        raise SeriesError(f"{where}: MOSAIC image with an unreadable Siemens CSA Image Header Info: {exc}") from exc
    assumed = ""
    if csa is None:
        # anonymised: the slice count from Siemens' MR header (or the protocol in the CSA
        # Series Header), the tiles taken to run along the plane normal, as dcm2niix does
        images = _images_without_csa(ds, csareader)
        if images is None:
            raise SeriesError(
                f"{where}: MOSAIC image without a Siemens CSA Image Header Info (0029,xx10), nor "
                "NumberOfImagesInMosaic (0019,xx0A) or a CSA Series Header protocol: the slice count "
                "and order of the tiles are unknown"
            )
        csa_normal, acq_times = slice_normal(orientation), []
        assumed = (f"MOSAIC without its CSA Image Header Info: {images} slices from "
                   "NumberOfImagesInMosaic, tiles assumed to run along the plane normal")
    else:
        try:
            images = csareader.get_n_mosaic(csa)
            csa_normal = csareader.get_slice_normal(csa)
            acq_times = csa["tags"].get("MosaicRefAcqTimes", {}).get("items") or []
        except (ValueError, TypeError, KeyError) as exc:
            raise SeriesError(f"{where}: MOSAIC CSA header: {exc}") from exc
    if not isinstance(images, int) or images < 1:
        raise SeriesError(f"{where}: MOSAIC CSA header has no valid NumberOfImagesInMosaic (got {images!r})")
    grid = mosaic_grid(images)
    if rows % grid or columns % grid:
        raise SeriesError(
            f"{where}: NumberOfImagesInMosaic {images} needs a {grid} x {grid} tiling, but the "
            f"{rows} x {columns} mosaic does not divide into {grid} x {grid} tiles"
        )
    if acq_times and len(acq_times) != images:
        raise SeriesError(
            f"{where}: NumberOfImagesInMosaic is {images} but MosaicRefAcqTimes lists {len(acq_times)} "
            "slices; the tiling is ambiguous"
        )
    if csa_normal is None:
        raise SeriesError(f"{where}: MOSAIC CSA header has no SliceNormalVector: the tile order is unknown")
    normal = slice_normal(orientation)
    csa_normal = np.asarray(csa_normal, dtype=np.float64)
    length = float(np.linalg.norm(csa_normal))
    cos = float(csa_normal @ normal) / length if length > 0 else 0.0
    if not abs(cos) >= 1.0 - NORMAL_TOLERANCE:
        raise SeriesError(
            f"{where}: CSA SliceNormalVector {csa_normal.tolist()} is not along the normal "
            f"{normal.round(6).tolist()} of Image Orientation (Patient)"
        )
    # the plane normal from the orientation is the exact one; the CSA vector gives its sign
    direction = normal if cos > 0 else -normal
    spacing = _number(ds, "SpacingBetweenSlices") or _number(ds, "SliceThickness")
    if spacing is None:
        if images > 1:
            raise SeriesError(
                f"{where}: MOSAIC of {images} slices without Spacing Between Slices or Slice Thickness"
            )
        spacing = 1.0

    tile_rows, tile_cols = rows // grid, columns // grid
    iop = np.asarray(orientation, dtype=np.float64)
    row_cosine, col_cosine = iop[:3], iop[3:]
    dy, dx = (float(v) for v in pixel_spacing)
    first = (
        np.asarray(position, dtype=np.float64)
        + row_cosine * dx * (columns - tile_cols) / 2.0
        + col_cosine * dy * (rows - tile_rows) / 2.0
    )
    step = direction * spacing
    return MosaicLayout(
        images=images,
        grid=grid,
        tile_shape=(tile_rows, tile_cols),
        first_position=(float(first[0]), float(first[1]), float(first[2])),
        slice_step=(float(step[0]), float(step[1]), float(step[2])),
        assumed=assumed,
    )


def mosaic_slice_refs(ref: SliceRef, notes: list[str] | None = None) -> list[SliceRef]:
    """One slice reference per tile of the mosaic instance `ref` describes; what had to be
    assumed about it (an anonymised mosaic) is appended to `notes`.

    Parameters
    ----------
    ref : SliceRef
        The instance as one image (the scan's view): its path, mosaic Rows / Columns, Image
        Position (Patient) as written, orientation and pixel spacing.

    Returns
    -------
    list of SliceRef
        In tile order, each with the tile's position, ``rows`` / ``columns`` of one slice and
        ``tile`` = (first row, first column, rows, columns) within the mosaic image.

    Raises
    ------
    SeriesError
        If the file cannot be read or its mosaic header is missing or inconsistent (see
        :func:`mosaic_layout`).
    """
    import pydicom

    if ref.frame is not None:
        raise SeriesError(f"{ref.path}: a multi-frame MOSAIC image is not supported")
    try:
        ds = pydicom.dcmread(ref.path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise SeriesError(f"{ref.path}: cannot read the MOSAIC header: {exc}") from exc
    layout = mosaic_layout(
        ds,
        rows=ref.rows,
        columns=ref.columns,
        position=ref.position,
        orientation=ref.orientation,
        pixel_spacing=ref.pixel_spacing,
        source=ref.path,
    )
    if layout.assumed and notes is not None:
        notes.append(f"{ref.path}: {layout.assumed}")
    rows, cols = layout.tile_shape
    return [
        dataclasses.replace(ref, position=layout.position(k), rows=rows, columns=cols, tile=layout.tile(k))
        for k in range(layout.images)
    ]
