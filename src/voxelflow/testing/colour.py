"""Colour series phantoms: a stack of RGB images with a patient geometry, as scanners and
workstations write them.

Two kinds occur in research and clinical archives:

- a colour map derived from an acquisition and stored beside it, in the same series: Siemens
  writes the colour FA map of a DTI run as RGB images (Image Type ``DERIVED\\PRIMARY\\FA``...)
  into the diffusion series, one file per slice, with the grayscale maps' geometry;
- colour secondary captures and ultrasound stacks: RGB (or YBR_FULL, or JPEG-compressed,
  which stores YBR_FULL_422) images, one per file or one multi-frame file.

:func:`write_colour_series` writes the first as classic files (and the second by its options);
the ground truth is the (z, y, x, 3) uint8 RGB volume voxelflow should build and the affine
of its grid (:mod:`voxelflow.geometry`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .datasets import deterministic_uid, save_dataset, set_pixel_data
from .series import _base_dataset, _ds, _parse_orientation

__all__ = ["ColourSeries", "colour_volume", "rgb_to_ybr_full", "write_colour_series"]


@dataclass(frozen=True)
class ColourSeries:
    """What :func:`write_colour_series` wrote.

    Attributes
    ----------
    paths : tuple of Path
        One file per slice, in instance order (ascending along the normal).
    volume : (z, y, x, 3) uint8
        The RGB samples (before any lossy or YBR encoding).
    affine : (4, 4) float64
        Of the slice grid: ``[k, j, i, 1]`` to LPS mm.
    series_uid, study_uid : str
    photometric, transfer_syntax : str
        As written.
    """

    paths: tuple[Path, ...]
    volume: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    series_uid: str
    study_uid: str
    photometric: str
    transfer_syntax: str

    @property
    def exact(self) -> bool:
        """Whether decoding gives `volume` back exactly (RGB in a lossless transfer syntax;
        YBR_FULL rounds in its colour transform, JPEG baseline is lossy)."""
        return self.photometric == "RGB" and self.transfer_syntax not in ("jpeg_baseline",)


def colour_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A (z, y, x, 3) uint8 colour phantom: a direction-coloured ellipsoid (red, green and blue
    where a fibre would run left-right, front-back, up-down, as FA maps colour them) in black,
    different on every slice and in every sample, so any swap of axes or samples shows."""
    _, ny, nx = shape
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = (x / 0.9) ** 2 + (y / 0.8) ** 2 + (z / 1.1) ** 2 <= 1.0
    rng = np.random.default_rng(seed)
    rgb = np.stack([np.abs(x), np.abs(y), np.abs(z)], axis=-1) * 230 + rng.uniform(0, 25, (*shape, 3))
    volume = np.where(inside[..., None], rgb, 0.0)
    volume[:, : max(1, ny // 10), : max(1, nx // 10)] = (255, 0, 0)  # an orientation mark, top left
    return np.clip(np.rint(volume), 0, 255).astype(np.uint8)


def rgb_to_ybr_full(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB as YBR_FULL samples (PS3.3 C.7.6.3.1.2, the JPEG File Interchange Format's
    transform), rounded: decoding them back gives the RGB within one or two levels."""
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    ybr = rgb.astype(np.float64) @ m.T + (0.0, 128.0, 128.0)
    return np.clip(np.rint(ybr), 0, 255).astype(np.uint8)


def write_colour_series(
    folder: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int] = (12, 48, 64),
    spacing: tuple[float, float, float] = (3.0, 0.9, 0.9),
    orientation: str | Sequence[float] = "axial",
    center: tuple[float, float, float] = (0.0, -15.0, -40.0),
    photometric: str = "RGB",
    planar_configuration: int = 0,
    transfer_syntax: str = "explicit_le",
    modality: str = "MR",
    image_type: Sequence[str] = ("DERIVED", "PRIMARY", "FA", "COLOUR"),
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    seed: int = 0,
) -> ColourSeries:
    """Write a colour series, one RGB (or YBR) image per file, to `folder`.

    Parameters
    ----------
    folder : path
        Created if missing; files are named ``RGB_<series>_<instance>.dcm``.
    shape : (int, int, int)
        (slices, rows, columns).
    spacing : (float, float, float)
        (z, y, x) mm: slice step along the normal, then Pixel Spacing.
    orientation : str or six floats
        As for :func:`voxelflow.testing.write_series`.
    center : (float, float, float)
        LPS mm of the middle of the volume.
    photometric : {"RGB", "YBR_FULL"}
        As stored: YBR_FULL holds :func:`rgb_to_ybr_full` of the phantom (JPEG baseline stores
        YBR_FULL_422 whatever this says).
    planar_configuration : {0, 1}
        RGBRGB... or RR..GG..BB.. (native transfer syntaxes).
    transfer_syntax : str
        A name from ``voxelflow.testing.TRANSFER_SYNTAXES`` or a UID.
    modality : str
    image_type : sequence of str
        Image Type (0008,0008); the default is a Siemens colour FA map's.
    series_number : int
    study_uid, series_uid : str, optional
        Give the UIDs of another series to write the colour map into it (as scanners do).
    seed : int
    """
    if photometric not in ("RGB", "YBR_FULL"):
        raise ParameterError(f"photometric={photometric!r}; expected 'RGB' or 'YBR_FULL'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = (int(n) for n in shape)
    dz, dy, dx = (float(s) for s in spacing)
    row, col = _parse_orientation(orientation)
    normal = np.cross(row, col)
    first = np.asarray(center, np.float64) - ((nz - 1) * dz * normal + (ny - 1) * dy * col + (nx - 1) * dx * row) / 2
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = dz * normal, dy * col, dx * row, first
    volume = colour_volume((nz, ny, nx), seed)

    study = study_uid or deterministic_uid("colour", seed, "study")
    series = series_uid or deterministic_uid("colour", seed, "series", series_number)
    ds = _base_dataset(modality, study_uid=str(study), series_uid=str(series),
                       for_uid=str(deterministic_uid("colour", seed, "for")), series_number=series_number, seed=seed)
    ds.SeriesNumber = series_number
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4" if modality == "MR" else "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.ImageType = list(image_type)
    ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceThickness = _ds(dz)
    short = str(series).rsplit(".", 1)[-1][-8:]
    paths = []
    for k in range(nz):
        sop = deterministic_uid("colour", seed, series, "sop", k)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = k + 1
        position = first + k * dz * normal
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ normal))
        samples = rgb_to_ybr_full(volume[k]) if photometric == "YBR_FULL" else volume[k]
        set_pixel_data(ds, samples, photometric=photometric, planar_configuration=planar_configuration,
                       transfer_syntax=transfer_syntax)
        paths.append(save_dataset(ds, folder / f"RGB_{short}_{k + 1:05d}.dcm"))
    return ColourSeries(tuple(paths), volume, affine, str(series), str(study),
                        str(ds.PhotometricInterpretation), transfer_syntax)
