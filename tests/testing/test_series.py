"""write_series: geometry, ordering, rescale, windowing, encodings and enhanced files."""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

from voxelflow.errors import MissingPluginError, ParameterError
from voxelflow.testing import (
    ORIENTATIONS,
    TRANSFER_SYNTAXES,
    available_transfer_syntaxes,
    write_series,
)

SMALL = dict(shape=(6, 40, 48), spacing=(3.0, 2.0, 2.5))


def _read(info):
    return [pydicom.dcmread(p) for p in info.paths]


def _geometric(datasets):
    """Datasets sorted by position along the slice normal, as a reader would."""
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient) @ normal))


def _check_geometry(info, datasets):
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    row, col = iop[:3], iop[3:]
    assert np.linalg.norm(row) == pytest.approx(1.0, abs=1e-9)
    assert np.linalg.norm(col) == pytest.approx(1.0, abs=1e-9)
    assert abs(row @ col) < 1e-9
    np.testing.assert_array_equal(info.orientation, iop)
    ordered = _geometric(datasets)
    ipp = np.asarray([ds.ImagePositionPatient for ds in ordered], dtype=float)
    np.testing.assert_array_equal(ipp, info.positions)
    for k, g in enumerate(info.grid_indices):
        mapped = info.affine @ np.array([g, 0.0, 0.0, 1.0])
        np.testing.assert_allclose(mapped[:3], ipp[k], atol=1e-6, rtol=0)
        # The in-plane axes of the affine follow the column (j) and row (i) directions.
        corner = info.affine @ np.array([g, 3.0, 5.0, 1.0])
        expected = ipp[k] + 3 * info.spacing[1] * col + 5 * info.spacing[2] * row
        np.testing.assert_allclose(corner[:3], expected, atol=1e-6, rtol=0)
    for k, ds in enumerate(ordered):
        np.testing.assert_array_equal(ds.pixel_array, info.volume[k])
    return ordered


@pytest.mark.parametrize("orientation", [*ORIENTATIONS, (0.0, 1.0, 0.0, 0.6, 0.0, -0.8)])
def test_geometry_of_each_orientation(tmp_path, orientation):
    info = write_series(tmp_path, orientation=orientation, **SMALL)
    datasets = _read(info)
    ordered = _check_geometry(info, datasets)
    ipp = info.positions
    steps = np.diff(ipp, axis=0)
    # Positions advance along the normal by the slice spacing, with no in-plane drift.
    np.testing.assert_allclose(steps, np.tile(3.0 * info.normal, (5, 1)), atol=1e-6)
    assert info.spacing == pytest.approx((3.0, 2.0, 2.5))
    assert [float(v) for v in ordered[0].PixelSpacing] == [2.0, 2.5]
    assert float(ordered[0].SpacingBetweenSlices) == pytest.approx(3.0)
    assert info.volume.shape == (6, 40, 48) and info.volume.dtype == np.uint16


def test_anatomy_follows_the_orientation(tmp_path):
    cube = dict(shape=(48, 48, 48), spacing=(6.0, 6.0, 6.0), noise=False)
    axial = write_series(tmp_path / "ax", **cube).modality_values()
    coronal = write_series(tmp_path / "co", orientation="coronal", **cube).modality_values()
    sagittal = write_series(tmp_path / "sa", orientation="sagittal", **cube).modality_values()
    # One isotropic cube in three orientations is one volume, permuted and flipped:
    # coronal (k: +y, j: -z, i: +x), sagittal (k: -x, j: -z, i: +y). Rounding of positions
    # may move a voxel across a shape boundary, hence the tiny allowance.
    assert (coronal != axial[::-1].transpose(1, 0, 2)).mean() < 1e-3
    assert (sagittal != axial[::-1, :, ::-1].transpose(2, 0, 1)).mean() < 1e-3


def test_default_ct_values_and_rescale(tmp_path):
    info = write_series(tmp_path, **SMALL, noise=False)
    ds = pydicom.dcmread(info.paths[0])
    assert ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 12, 0)
    assert float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == -1024.0
    hu = info.modality_values()
    assert hu.min() == -1000 and 1000 <= hu.max() <= 1300
    np.testing.assert_array_equal(info.rescale, np.tile([1.0, -1024.0], (6, 1)))


def test_mr_series(tmp_path):
    info = write_series(tmp_path, modality="MR", **SMALL)
    ds = pydicom.dcmread(info.paths[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.Modality == "MR"
    assert (ds.BitsStored, ds.PixelRepresentation) == (16, 0)
    assert "RescaleSlope" not in ds
    assert info.volume.dtype == np.uint16 and info.volume.max() > 1000
    assert list(ds.WindowCenterWidthExplanation) == ["T1", "WIDE"]


@pytest.mark.parametrize("slice_order", ["ascending", "descending"])
def test_slice_order(tmp_path, slice_order):
    info = write_series(tmp_path, slice_order=slice_order, **SMALL)
    datasets = _read(info)
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, 7))
    along = [float(np.asarray(ds.ImagePositionPatient, float) @ info.normal) for ds in datasets]
    assert along == sorted(along, reverse=slice_order == "descending")
    expected = (1, 2, 3, 4, 5, 6) if slice_order == "ascending" else (6, 5, 4, 3, 2, 1)
    assert info.instance_numbers == expected
    _check_geometry(info, datasets)


def test_shuffled_instance_numbers(tmp_path):
    info = write_series(tmp_path, shape=(12, 32, 32), shuffle_instance_numbers=True, seed=5)
    assert sorted(info.instance_numbers) == list(range(1, 13))
    assert list(info.instance_numbers) not in (list(range(1, 13)), list(range(12, 0, -1)))
    datasets = _read(info)
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, 13))
    ordered = _check_geometry(info, datasets)
    assert tuple(ds.InstanceNumber for ds in ordered) == info.instance_numbers
    assert tuple(ds.SOPInstanceUID for ds in ordered) == info.sop_uids
    again = write_series(
        tmp_path / "again", shape=(12, 32, 32), shuffle_instance_numbers=True, seed=5
    )
    assert again.instance_numbers == info.instance_numbers


def test_gantry_tilt(tmp_path):
    tilt = 20.0
    info = write_series(tmp_path, gantry_tilt=tilt, **SMALL)
    datasets = _read(info)
    ordered = _check_geometry(info, datasets)
    assert float(ordered[0].GantryDetectorTilt) == tilt
    t = np.radians(tilt)
    np.testing.assert_allclose(info.orientation, [1, 0, 0, 0, np.cos(t), np.sin(t)], atol=1e-12)
    # Slices step along the table (z) while the planes are tilted: the step has a component
    # of spacing * sin(tilt) along the column direction and spacing * cos(tilt) along the normal.
    step = np.diff(info.positions, axis=0)
    np.testing.assert_allclose(step, np.tile([0.0, 0.0, 3.0], (5, 1)), atol=1e-6)
    col = info.orientation[3:]
    np.testing.assert_allclose(step @ col, 3.0 * np.sin(t), atol=1e-6)
    np.testing.assert_allclose(step @ info.normal, 3.0 * np.cos(t), atol=1e-6)
    assert float(ordered[0].SpacingBetweenSlices) == pytest.approx(3.0 * np.cos(t))


def test_missing_slices(tmp_path):
    full = write_series(tmp_path / "full", shape=(10, 32, 32))
    info = write_series(tmp_path / "gaps", shape=(10, 32, 32), missing_slices=(0, 4, 5))
    assert len(info.paths) == 7 and info.volume.shape[0] == 7
    assert info.grid_indices == (1, 2, 3, 6, 7, 8, 9)
    np.testing.assert_array_equal(info.volume, full.volume[list(info.grid_indices)])
    np.testing.assert_array_equal(info.positions, full.positions[list(info.grid_indices)])
    _check_geometry(info, _read(info))
    with pytest.raises(ParameterError, match="missing_slices"):
        write_series(tmp_path / "bad", shape=(4, 32, 32), missing_slices=(4,))


def test_non_uniform_slice_positions(tmp_path):
    positions = [-40.0, -37.5, -35.0, -30.0, -20.0, -19.0]
    info = write_series(tmp_path, slice_positions=positions[::-1], **SMALL)
    np.testing.assert_allclose(info.positions @ info.normal, positions, atol=1e-9)
    datasets = _read(info)
    ordered = _geometric(datasets)
    for k, ds in enumerate(ordered):
        np.testing.assert_array_equal(ds.pixel_array, info.volume[k])
    # The affine carries the mean step.
    assert info.spacing[0] == pytest.approx(21.0 / 5)


def test_per_slice_rescale_keeps_modality_values(tmp_path):
    plain = write_series(tmp_path / "plain", **SMALL)
    info = write_series(tmp_path / "rescaled", per_slice_rescale=True, **SMALL)
    assert len({tuple(r) for r in info.rescale}) > 2
    for ds, k in zip(_geometric(_read(info)), range(6)):
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == tuple(info.rescale[k])
        assert ds.RescaleType == "HU"
    error = np.abs(info.modality_values() - plain.modality_values())
    assert np.all(error <= info.rescale[:, 0, None, None] / 2 + 1e-9)
    # pydicom's Modality LUT gives the same values.
    ds = pydicom.dcmread(info.paths[3])
    k = _geometric(_read(info)).index(next(d for d in _read(info) if d.InstanceNumber == 4))
    np.testing.assert_allclose(apply_modality_lut(ds.pixel_array, ds), info.modality_values()[k])


def test_windows_are_multi_valued(tmp_path):
    windows = ((40, 400, "SOFT TISSUE"), (-600, 1500, "LUNG"), (300, 2000, "BONE"))
    info = write_series(tmp_path, windows=windows, **SMALL)
    ds = pydicom.dcmread(info.paths[0])
    assert [float(v) for v in ds.WindowCenter] == [40, -600, 300]
    assert [float(v) for v in ds.WindowWidth] == [400, 1500, 2000]
    assert list(ds.WindowCenterWidthExplanation) == ["SOFT TISSUE", "LUNG", "BONE"]
    lung = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds, index=1)
    assert lung.shape == ds.pixel_array.shape
    none = write_series(tmp_path / "none", windows=(), **SMALL)
    assert "WindowCenter" not in pydicom.dcmread(none.paths[0])


@pytest.mark.parametrize("transfer_syntax", ["explicit_le", "implicit_le", "explicit_be"])
def test_voi_lut_sequence_works_with_pydicom(tmp_path, transfer_syntax):
    info = write_series(tmp_path, voi_lut=True, transfer_syntax=transfer_syntax, **SMALL)
    ds = pydicom.dcmread(info.paths[0])
    assert ds.PixelRepresentation == 1  # negative first mapped value needs signed storage
    item = ds.VOILUTSequence[0]
    entries, first, bits = item.LUTDescriptor
    # Explicit VR keeps US; an implicit VR read resolves "US or OW" LUT Data to OW bytes.
    count = len(item.LUTData) // (1 if item["LUTData"].VR == "US" else 2)
    assert first < 0 and bits == 16 and entries == count
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.int32)
    shown = apply_voi_lut(hu, ds, prefer_lut=True)
    assert shown.dtype == np.uint16
    # A sigmoid over the soft tissue window: monotonic in HU, half-way at the center (40 HU).
    order = np.argsort(hu, axis=None)
    assert np.all(np.diff(shown.reshape(-1)[order].astype(int)) >= 0)
    assert shown[hu == -1000].max() < 100 and shown[hu > 1000].min() > 65000
    probe = np.array([40], dtype=np.int32)
    assert abs(int(apply_voi_lut(probe, ds)[0]) - 32768) <= 1


def test_voi_lut_refuses_ambiguous_unsigned_descriptor(tmp_path):
    with pytest.raises(ParameterError, match="pixel_representation=1"):
        write_series(tmp_path, voi_lut=True, pixel_representation=0, **SMALL)


def test_monochrome1_inverts_so_display_matches(tmp_path):
    mono2 = write_series(tmp_path / "m2", **SMALL)
    mono1 = write_series(tmp_path / "m1", photometric="MONOCHROME1", **SMALL)
    np.testing.assert_array_equal(mono1.volume, 4095 - mono2.volume)
    np.testing.assert_array_equal(mono1.modality_values(), 2047 - mono2.modality_values())
    ds1, ds2 = pydicom.dcmread(mono1.paths[2]), pydicom.dcmread(mono2.paths[2])
    assert ds1.PhotometricInterpretation == "MONOCHROME1"
    assert float(ds1.WindowCenter[0]) == 2047 - 40
    for index in range(3):
        shown1 = apply_windowing(apply_modality_lut(ds1.pixel_array, ds1), ds1, index=index)
        shown2 = apply_windowing(apply_modality_lut(ds2.pixel_array, ds2), ds2, index=index)
        # pydicom's window output spans the rescaled stored range; MONOCHROME1 shows its
        # maximum as black, so the displayed brightness is one minus the normalised output.
        low = float(ds1.RescaleIntercept)
        high = low + float(ds1.RescaleSlope) * (2**ds1.BitsStored - 1)
        bright1 = 1.0 - (shown1 - low) / (high - low)
        bright2 = (shown2 - low) / (high - low)
        # The DICOM linear window is offset by half a unit, so the two differ by 1 / (w - 1).
        width = float(ds1.WindowWidth[index])
        np.testing.assert_allclose(bright1, bright2, atol=1.0 / (width - 1) + 1e-9)


def _tolerance(info):
    if not info.lossy:
        return 0
    return {"jpeg_baseline": 8, "jpeg_ls_near": 2, "jpeg2000": 16}[
        next(k for k, v in TRANSFER_SYNTAXES.items() if v == info.transfer_syntax)
    ]


@pytest.mark.parametrize("transfer_syntax", list(TRANSFER_SYNTAXES))
def test_each_transfer_syntax_reads_back(tmp_path, transfer_syntax):
    kwargs = dict(shape=(3, 40, 48), spacing=(3.0, 2.0, 2.0), transfer_syntax=transfer_syntax)
    if transfer_syntax not in available_transfer_syntaxes():
        with pytest.raises(MissingPluginError):
            write_series(tmp_path, **kwargs)
        assert not any(tmp_path.iterdir())  # nothing half-written
        return
    info = write_series(tmp_path, **kwargs)
    assert info.transfer_syntax == TRANSFER_SYNTAXES[transfer_syntax]
    for k, ds in enumerate(_geometric(_read(info))):
        assert ds.file_meta.TransferSyntaxUID == info.transfer_syntax
        out = ds.pixel_array.astype(np.int64)
        assert np.abs(out - info.volume[k]).max() <= _tolerance(info)
    if transfer_syntax == "jpeg_baseline":
        assert info.volume.dtype == np.uint8 and info.rescale[0, 0] > 1


@pytest.mark.parametrize("per_slice_rescale", [False, True])
def test_enhanced_multiframe(tmp_path, per_slice_rescale):
    info = write_series(
        tmp_path, enhanced=True, per_slice_rescale=per_slice_rescale, shuffle_instance_numbers=True,
        missing_slices=(2,), **SMALL,
    )
    assert len(info.paths) == 1 and len(info.sop_uids) == 1
    ds = pydicom.dcmread(info.paths[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.1"
    assert ds.NumberOfFrames == 5
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [2.0, 2.5]
    np.testing.assert_array_equal(
        np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float),
        info.orientation,
    )
    assert list(shared.FrameVOILUTSequence[0].WindowCenterWidthExplanation)[0] == "SOFT TISSUE"
    pointers = [int(item.DimensionIndexPointer) for item in ds.DimensionIndexSequence]
    assert pointers == [0x00209056, 0x00209057]
    assert all(int(item.FunctionalGroupPointer) == 0x00209111 for item in ds.DimensionIndexSequence)
    frames = ds.pixel_array
    assert frames.shape == (5, 40, 48)
    per_frame = ds.PerFrameFunctionalGroupsSequence
    assert len(per_frame) == 5
    in_stack = []
    for f, item in enumerate(per_frame):
        content = item.FrameContentSequence[0]
        g = int(content.InStackPositionNumber) - 1
        in_stack.append(g)
        assert list(content.DimensionIndexValues) == [1, g + 1]
        assert info.instance_numbers[g] == f + 1
        ipp = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_array_equal(ipp, info.positions[g])
        np.testing.assert_array_equal(frames[f], info.volume[g])
        transform = (item if per_slice_rescale else shared).PixelValueTransformationSequence[0]
        written = (float(transform.RescaleSlope), float(transform.RescaleIntercept))
        assert written == tuple(info.rescale[g])
    assert sorted(in_stack) == list(range(5)) and in_stack != list(range(5))
    assert ("PixelValueTransformationSequence" in shared) != per_slice_rescale


def test_enhanced_mr_compressed(tmp_path):
    info = write_series(tmp_path, enhanced=True, modality="MR", transfer_syntax="rle", **SMALL)
    ds = pydicom.dcmread(info.paths[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
    assert "MRImageFrameTypeSequence" in ds.SharedFunctionalGroupsSequence[0]
    np.testing.assert_array_equal(ds.pixel_array, info.volume)


def test_deterministic_files_and_uids(tmp_path):
    a = write_series(tmp_path / "a", **SMALL, seed=11)
    b = write_series(tmp_path / "b", **SMALL, seed=11)
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]
    c = write_series(tmp_path / "a", modality="MR", **SMALL, seed=11)
    assert c.study_uid == a.study_uid and c.series_uid != a.series_uid
    assert len(list((tmp_path / "a").iterdir())) == 12  # two series share the folder
    d = write_series(tmp_path / "d", **SMALL, seed=12)
    assert d.study_uid != a.study_uid
    ds = pydicom.dcmread(a.paths[0])
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) == (
        a.study_uid, a.series_uid, a.frame_of_reference_uid)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kwargs,match", [
    ({"orientation": "diagonal"}, "orientation"),
    ({"orientation": (1, 0, 0, 1, 0, 0)}, "orthogonal"),
    ({"orientation": (2, 0, 0, 0, 1, 0)}, "unit"),
    ({"slice_order": "random"}, "slice_order"),
    ({"gantry_tilt": 60}, "gantry_tilt"),
    ({"photometric": "RGB"}, "photometric"),
    ({"slice_positions": [1.0, 2.0]}, "slice_positions"),
    ({"slice_positions": [1.0] * 6}, "distinct"),
    ({"modality": "US"}, "modality"),
    ({"bits_stored": 20}, "bits_stored"),
    ({"windows": ((40, 0, "X"),)}, "width"),
    ({"transfer_syntax": "lzw"}, "transfer_syntax"),
])
def test_bad_parameters_raise(tmp_path, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        write_series(tmp_path, **{**SMALL, **kwargs})


def test_default_series_is_fast(tmp_path):
    start = time.perf_counter()
    info = write_series(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(info.paths) == 48 and info.volume.shape == (48, 128, 128)
    assert elapsed < 3.0  # well under a second on an idle machine


@pytest.mark.slow
def test_large_uncompressed_series_is_fast(tmp_path):
    start = time.perf_counter()
    info = write_series(tmp_path, shape=(300, 512, 512), spacing=(1.0, 0.7, 0.7), windows=())
    assert len(info.paths) == 300
    assert time.perf_counter() - start < 20.0
