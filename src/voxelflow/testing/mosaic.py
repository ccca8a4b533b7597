"""Write Siemens MOSAIC MR series (fMRI runs) of the torso phantom.

A Siemens scanner stores an EPI volume as one classic MR image, a *mosaic*: the ``N`` slices are
tiled row by row into a ``g x g`` grid, ``g = ceil(sqrt(N))``, unused tiles left black. The DICOM
attributes describe the mosaic as if it were one slice, and the Siemens private CSA Image
Header Info (0029,xx10) holds what the standard attributes cannot:

- ``NumberOfImagesInMosaic``: ``N`` (the grid follows from it);
- ``SliceNormalVector``: the direction in which tile index increases, which is the plane normal
  (row cosine x column cosine) or its opposite;
- ``MosaicRefAcqTimes``: each slice's acquisition time in the repetition, ms.

Image Position (Patient) is not the first slice's first pixel: Siemens writes the position the
first pixel would have if the first slice were as large as the whole mosaic and centred where the
slice is, so a reader moves it by half the size difference along the row and column directions.
Each file is one time point of the run; Acquisition Number and Acquisition Time increase.

:func:`csa2_header` encodes a CSA header in the "SV10" (CSA2) layout, the one current scanners
write, so tests can build broken and unusual headers too.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import UID

from ..errors import ParameterError
from .datasets import check_transfer_syntax, deterministic_uid, save_dataset, set_pixel_data
from .phantom import parse_shape, parse_spacing, phantom_labels, tissue_values
from .series import MR_IMAGE_STORAGE, _base_dataset, _ds, _parse_orientation, _window_elements

__all__ = ["MosaicInfo", "csa2_header", "write_mosaic_series"]

#: Siemens syngo data type codes of the VRs written here (the CSA tag's "SyngoDT" field, which
#: readers do not interpret: the VR string says how to read the value).
_SYNGO_DT = {"DS": 3, "FD": 4, "IS": 6, "SL": 7, "UL": 9, "US": 10, "CS": 16, "LO": 19, "SH": 22, "ST": 25}
#: The filler CSA2 writes in its "unused" words; readers skip it.
_CSA_FILLER = 77


def csa2_header(tags: Mapping[str, tuple[str, Sequence[object]]]) -> bytes:
    """Encode a Siemens CSA header in the CSA2 ("SV10") layout.

    Parameters
    ----------
    tags : mapping of name -> (VR, values)
        In the order to write. Values are written as text (numbers through ``str`` unless they
        are already strings); an empty sequence writes a tag without values.

    Returns
    -------
    bytes
        ``"SV10"``, four bytes ``04 03 02 01``, the tag count and a filler word, then per tag a
        64-byte name, VM, a 4-byte VR, SyngoDT, the item count and a filler, then per item four
        words (length, length, filler, length) and the NUL-terminated text padded to 4 bytes.
        Like a scanner, a tag holds at least six items, the unused ones empty.
    """
    out = bytearray(b"SV10" + bytes((4, 3, 2, 1)))
    out += struct.pack("<2I", len(tags), _CSA_FILLER)
    for name, (vr, values) in tags.items():
        encoded_name = name.encode("ascii")
        if len(encoded_name) >= 64 or len(vr) > 3:
            raise ParameterError(f"CSA tag {name!r} ({vr}): names are < 64 bytes, VRs <= 3")
        items = [v if isinstance(v, str) else str(v) for v in values]
        n_items = max(len(items), 6)
        out += struct.pack(
            "<64si4s3i", encoded_name, len(items), vr.encode("ascii"), _SYNGO_DT.get(vr, 0), n_items,
            _CSA_FILLER,
        )
        for n in range(n_items):
            text = items[n].encode("latin-1") + b"\0" if n < len(items) else b""
            out += struct.pack("<4i", len(text), len(text), _CSA_FILLER, len(text))
            out += text + bytes(-len(text) % 4)
    return bytes(out)


@dataclass(frozen=True, eq=False)
class MosaicInfo:
    """Ground truth for a series written by :func:`write_mosaic_series`.

    Attributes
    ----------
    paths : tuple of Path
        One file per time point, in acquisition order.
    volume : numpy.ndarray
        Stored values (t, z, y, x), slices in spatial order: ascending along the plane normal
        (row cosine x column cosine), whichever way the tiles run.
    affine : numpy.ndarray
        4x4, maps ``[k, j, i, 1]`` of `volume` to LPS mm (as parsed back from the written text).
    positions : numpy.ndarray
        (z, 3) LPS mm of the first pixel of each slice of `volume`.
    tile_of_slice : tuple of int
        Mosaic tile index (row-major) of each slice of `volume`.
    mosaic_position : numpy.ndarray
        (3,) Image Position (Patient) as written (the Siemens mosaic convention, not a slice's).
    orientation : numpy.ndarray
        (6,) Image Orientation (Patient) as written.
    slice_normal_vector : numpy.ndarray
        (3,) the CSA SliceNormalVector as written: the direction of increasing tile index.
    spacing : tuple of float
        (z, y, x) mm: Spacing Between Slices, then Pixel Spacing.
    grid : int
        Tiles per side of the mosaic.
    mosaic_shape : tuple of int
        (Rows, Columns) of the mosaic image.
    acquisition_numbers : tuple of int
    series_uid, study_uid : str
    sop_uids : tuple of str
        One per file, in acquisition order.
    transfer_syntax : UID
    """

    paths: tuple[Path, ...]
    volume: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    positions: np.ndarray = field(repr=False)
    tile_of_slice: tuple[int, ...] = field(repr=False)
    mosaic_position: np.ndarray = field(repr=False)
    orientation: np.ndarray = field(repr=False)
    slice_normal_vector: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    grid: int
    mosaic_shape: tuple[int, int]
    acquisition_numbers: tuple[int, ...]
    series_uid: str
    study_uid: str
    sop_uids: tuple[str, ...] = field(repr=False)
    transfer_syntax: UID


def _acquisition_time(seconds: float) -> str:
    """TM text ``HHMMSS.FFFFFF`` for `seconds` after midnight."""
    micro = round(seconds * 1e6)
    hours, micro = divmod(micro, 3_600_000_000)
    minutes, micro = divmod(micro, 60_000_000)
    secs, micro = divmod(micro, 1_000_000)
    return f"{hours:02d}{minutes:02d}{secs:02d}.{micro:06d}"


def write_mosaic_series(
    folder: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int] = (10, 32, 32),
    time_points: int = 3,
    spacing: tuple[float, float, float] = (3.3, 3.0, 3.0),
    orientation: str | Sequence[float] = "axial",
    center: tuple[float, float, float] = (0.0, -15.0, -120.0),
    slice_order: str = "ascending",
    slice_thickness: float | None = None,
    repetition_time: float = 2000.0,
    transfer_syntax: str = "explicit_le",
    csa_header: bool = True,
    mr_header: bool = False,
    images_in_mosaic: int | None = None,
    noise: bool = True,
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    seed: int = 0,
) -> MosaicInfo:
    """Write a Siemens MOSAIC fMRI run of the torso phantom to `folder`; return its ground truth.

    Parameters
    ----------
    folder : path
        Created if missing. Files are named ``MOSAIC_<series>_<time point>.dcm``.
    shape : (int, int, int)
        (slices, rows, columns) of one volume; the mosaic is ``g * rows`` by ``g * columns``
        with ``g = ceil(sqrt(slices))``.
    time_points : int
        Files (volumes) in the run.
    spacing : (float, float, float)
        (z, y, x) mm: Spacing Between Slices, then Pixel Spacing.
    orientation : str or six floats
        As for :func:`voxelflow.testing.write_series`.
    center : (float, float, float)
        LPS mm of the middle of the volume.
    slice_order : {"ascending", "descending"}
        Tile index increases along (ascending) or against (descending) the plane normal; the CSA
        SliceNormalVector says which.
    slice_thickness : float, optional
        Slice Thickness, mm; default the slice spacing (no gap). A thinner slice makes a gap, as
        a Siemens "distance factor" does: readers must step by Spacing Between Slices.
    repetition_time : float
        ms between time points (Repetition Time; Acquisition Time steps by it).
    transfer_syntax : str
        A name from ``voxelflow.testing.TRANSFER_SYNTAXES`` or a UID.
    csa_header : bool
        Write the CSA Image Header Info; False (alone) leaves a MOSAIC a reader cannot unpack.
    mr_header : bool
        Write Siemens' NumberOfImagesInMosaic (0019,xx0A, private creator "SIEMENS MR HEADER"),
        which anonymisers that strip the CSA headers often keep.
    images_in_mosaic : int, optional
        NumberOfImagesInMosaic to write; default the slice count (another value makes a broken
        header, for tests: MosaicRefAcqTimes still lists the true slices).
    noise : bool
        Add image noise (seeded per time point, so time points differ).
    series_number : int
    study_uid, series_uid : str, optional
        Default: derived from `seed` (study) and from `seed` and every parameter (series).
    seed : int

    Returns
    -------
    MosaicInfo

    Raises
    ------
    ParameterError
        On an invalid parameter.
    MissingPluginError
        If the transfer syntax has no encoder installed.
    """
    n, rows, cols = parse_shape(shape)
    dz, dy, dx = parse_spacing(spacing)
    if not isinstance(time_points, (int, np.integer)) or time_points < 1:
        raise ParameterError(f"time_points={time_points!r}; expected a positive integer")
    if slice_order not in ("ascending", "descending"):
        raise ParameterError(f"slice_order={slice_order!r}; expected 'ascending' or 'descending'")
    thickness = dz if slice_thickness is None else float(slice_thickness)
    if not thickness > 0:
        raise ParameterError(f"slice_thickness={slice_thickness!r}; expected mm > 0")
    if not repetition_time > 0:
        raise ParameterError(f"repetition_time={repetition_time!r}; expected ms > 0")
    uid = check_transfer_syntax(transfer_syntax)
    row, col = _parse_orientation(orientation)
    center_v = np.asarray(center, dtype=np.float64)
    if center_v.shape != (3,) or not np.all(np.isfinite(center_v)):
        raise ParameterError(f"center={center!r}; expected three LPS mm values")
    grid = math.isqrt(n - 1) + 1  # ceil(sqrt(n)) without floating point
    if grid * rows > 65535 or grid * cols > 65535:
        raise ParameterError(f"a {grid} x {grid} mosaic of {rows} x {cols} tiles is too large for DICOM")

    normal = np.cross(row, col)
    sign = 1.0 if slice_order == "ascending" else -1.0
    # tile k lies at tile 0 + k * dz * SliceNormalVector; tile 0 is the lowest slice along the
    # normal when ascending, the highest when descending
    in_plane = center_v - ((cols - 1) / 2.0) * dx * row - ((rows - 1) / 2.0) * dy * col
    in_plane = in_plane - (in_plane @ normal) * normal
    along = float(center_v @ normal) + (np.arange(n) - (n - 1) / 2.0) * dz
    tile_of_slice = np.arange(n) if sign > 0 else np.arange(n)[::-1]
    first_tile = in_plane + along[tile_of_slice[0]] * normal
    mosaic_rows, mosaic_cols = grid * rows, grid * cols
    # Siemens' position: the first tile's origin moved back by half the mosaic/tile difference
    ipp = first_tile - row * dx * (mosaic_cols - cols) / 2.0 - col * dy * (mosaic_rows - rows) / 2.0
    ipp_text = [_ds(v) for v in ipp]
    iop_text = [_ds(v) for v in (*row, *col)]
    normal_text = [f"{v * sign + 0.0:.8f}" for v in normal]

    # Ground truth from the text a reader parses.
    ipp_read = np.array([float(v) for v in ipp_text])
    iop_read = np.array([float(v) for v in iop_text])
    row_read, col_read = iop_read[:3], iop_read[3:]
    normal_read = np.cross(row_read, col_read)
    normal_read /= np.linalg.norm(normal_read)
    dz_read, dy_read, dx_read = float(_ds(dz)), float(_ds(dy)), float(_ds(dx))
    first_read = (ipp_read + row_read * dx_read * (mosaic_cols - cols) / 2.0
                  + col_read * dy_read * (mosaic_rows - rows) / 2.0)
    tile_positions = first_read + np.arange(n)[:, np.newaxis] * (sign * dz_read * normal_read)
    positions = tile_positions[tile_of_slice]
    affine = np.eye(4)
    affine[:3, 0] = dz_read * normal_read
    affine[:3, 1] = dy_read * col_read
    affine[:3, 2] = dx_read * row_read
    affine[:3, 3] = positions[0]

    labels = phantom_labels(in_plane + along[:, np.newaxis] * normal, row, col, (dy, dx), (rows, cols))
    volume = np.stack([
        tissue_values(labels, modality="MR", seed=seed * 1000 + t, noise=noise) for t in range(time_points)
    ])

    study = study_uid or deterministic_uid("study", seed)
    series = series_uid or deterministic_uid(
        "mosaic-series", seed, (n, rows, cols), time_points, (dz, dy, dx), iop_text, center_v.tolist(),
        slice_order, thickness, repetition_time, uid, csa_header, images_in_mosaic, noise, series_number,
    )
    for_uid = deterministic_uid("frame-of-reference", study)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    short = f"{int(str(series).rsplit('.', 1)[-1]) % (1 << 32):08x}"

    ds = _base_dataset("MR", study_uid=study, series_uid=series, for_uid=for_uid,
                       series_number=series_number, seed=seed)
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Phantom"
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.ScanningSequence = "EP"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = "FS"
    ds.SequenceName = f"epfid2d1_{rows}"
    ds.RepetitionTime = _ds(repetition_time)
    ds.EchoTime = "30"
    ds.MagneticFieldStrength = "3"
    ds.SliceThickness = _ds(thickness)
    ds.SpacingBetweenSlices = _ds(dz)
    ds.AcquisitionMatrix = [0, cols, rows, 0]
    ds.ImageOrientationPatient = iop_text
    ds.ImagePositionPatient = ipp_text
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceLocation = _ds(float(first_read @ normal_read))
    _window_elements(ds, ((700.0, 1400.0, "T2*"),))
    # slices acquired interleaved within each repetition, as EPI usually is
    interleaved = [*range(0, n, 2), *range(1, n, 2)]
    slice_times = np.empty(n)
    slice_times[interleaved] = np.arange(n) * (repetition_time / n)
    if mr_header:
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(
            0x0A, "US", n if images_in_mosaic is None else images_in_mosaic)
    if csa_header:
        block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        block.add_new(0x08, "CS", "IMAGE NUM 4")
        block.add_new(0x09, "LO", "20100114")
        block.add_new(0x10, "OB", csa2_header({
            "EchoLinePosition": ("IS", [rows // 2]),
            "ProtocolSliceNumber": ("IS", [0]),
            "AcquisitionMatrixText": ("SH", [f"{rows}p*{cols}"]),
            "NumberOfImagesInMosaic": ("US", [n if images_in_mosaic is None else images_in_mosaic]),
            "SliceNormalVector": ("FD", normal_text),
            "SliceMeasurementDuration": ("DS", [f"{repetition_time / n:.8f}"]),
            "MosaicRefAcqTimes": ("FD", [f"{v:.8f}" for v in slice_times]),
            "ImaRelTablePosition": ("IS", [0, 0, 0]),
            "B_value": ("IS", []),
        }))

    mosaic = np.zeros((mosaic_rows, mosaic_cols), dtype=np.uint16)
    paths, sop_uids = [], []
    start = 10 * 3600 + 15 * 60  # 10:15:00, the study time
    for t in range(time_points):
        for k in range(n):
            tile = int(tile_of_slice[k])
            r0, c0 = (tile // grid) * rows, (tile % grid) * cols
            mosaic[r0:r0 + rows, c0:c0 + cols] = volume[t, k]
        sop = deterministic_uid(series, "mosaic", t)
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = t + 1
        ds.AcquisitionNumber = t + 1
        ds.AcquisitionTime = ds.ContentTime = _acquisition_time(start + t * repetition_time / 1000.0)
        set_pixel_data(ds, mosaic, photometric="MONOCHROME2", bits_allocated=16, bits_stored=12,
                       pixel_representation=0, transfer_syntax=uid)
        paths.append(save_dataset(ds, folder / f"MOSAIC_{short}_{t + 1:05d}.dcm"))
        sop_uids.append(str(sop))

    return MosaicInfo(
        paths=tuple(paths),
        volume=volume,
        affine=affine,
        positions=positions,
        tile_of_slice=tuple(int(v) for v in tile_of_slice),
        mosaic_position=ipp_read,
        orientation=iop_read,
        slice_normal_vector=np.array([float(v) for v in normal_text]),
        spacing=(dz_read, dy_read, dx_read),
        grid=grid,
        mosaic_shape=(mosaic_rows, mosaic_cols),
        acquisition_numbers=tuple(range(1, time_points + 1)),
        series_uid=str(series),
        study_uid=str(study),
        sop_uids=tuple(sop_uids),
        transfer_syntax=uid,
    )
