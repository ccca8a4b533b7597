"""What ingest keeps, drops and refuses. Repeated slice positions never lose slices silently
(issue 12): a 4-D series, exact copies dropped and counted, or the series refused. A rescale
that is no number refuses the series (issue 13)."""

from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from voxelflow.ingest import convert, ingest
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series

SHAPE = (6, 16, 16)
UID = "1.2.826.0.1.3680043.8.498.77"


def _time_series(root, times=3, *, instance_step=100, **extra):
    """`times` phantom volumes of one series at the same positions, told apart by nothing but
    their Instance Numbers (as GE and Toshiba classic fMRI files often are)."""
    infos = []
    for t in range(times):
        info = write_series(root / str(t), shape=SHAPE, series_uid=UID, seed=t + 1, **extra)
        for path in info.paths:
            ds = pydicom.dcmread(path)
            ds.InstanceNumber = ds.InstanceNumber + instance_step * t
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{t + 1}"  # the phantom's UIDs repeat per call
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(path)
        infos.append(info)
    return infos


def test_repeats_told_apart_by_instance_number_are_a_time_axis(tmp_path):
    infos = _time_series(tmp_path / "dicom")
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    (v,) = report.volumes
    assert v.shape == (3, *SHAPE)
    volume = VolumeStore(tmp_path / "store").open(v.key)
    assert volume.meta["fourth_axis"]["meaning"] == "instance_number"
    for t in range(3):
        np.testing.assert_array_equal(volume.to_numpy()[t], infos[t].volume)


def test_time_axis_agrees_with_dcm2niix(tmp_path):
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    _time_series(tmp_path / "dicom")
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp_path / "ref"), "-f", "ref", str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    (ref_path,) = (tmp_path / "ref").glob("*.nii")
    report = convert(tmp_path / "dicom", tmp_path / "ours")
    (ours,) = [v.output for v in report.volumes]
    ref, mine = nib.as_closest_canonical(nib.load(ref_path)), nib.as_closest_canonical(nib.load(ours))
    assert mine.shape == ref.shape == (16, 16, 6, 3)
    np.testing.assert_allclose(mine.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(mine.dataobj, np.float64), np.asarray(ref.dataobj, np.float64))


def test_a_file_present_twice_is_dropped_and_counted(tmp_path):
    info = write_series(tmp_path / "dicom", shape=SHAPE)
    shutil.copy(info.paths[3], tmp_path / "dicom" / "again.dcm")  # same SOP Instance UID
    (v,) = ingest(tmp_path / "dicom", tmp_path / "store").volumes
    assert v.shape == SHAPE and v.findings == ["duplicate_instances"]
    finding = VolumeStore(tmp_path / "store").open(v.key).meta["findings"][0]
    assert finding["count"] == 1


def test_uneven_repeats_with_other_pixels_refuse_the_series(tmp_path):
    info = write_series(tmp_path / "dicom", shape=SHAPE)
    other = pydicom.dcmread(info.paths[2])
    other.SOPInstanceUID = other.SOPInstanceUID + ".7"
    other.InstanceNumber = 50
    pixels = other.pixel_array.copy()
    pixels[0, 0] += 1  # not a copy: another image at that position
    other.PixelData = pixels.tobytes()
    other.save_as(tmp_path / "dicom" / "other.dcm")
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert report.volumes == []
    ((what, reason),) = report.failures
    assert what == info.series_uid
    assert "repeat" in reason and "refused" in reason and "mm" in reason


@pytest.mark.parametrize("seed", range(6))
def test_never_fewer_slices_than_files_unless_exact_copies(tmp_path, seed):
    """Random repeats of random positions, each a copy or another image: a written volume holds
    every file but the exact copies, and the copies are counted."""
    rng = np.random.default_rng(seed)
    info = write_series(tmp_path / "dicom", shape=SHAPE, seed=seed)
    extra = rng.integers(1, 4)
    copies = 0
    for n in range(extra):
        k = int(rng.integers(0, SHAPE[0]))
        ds = pydicom.dcmread(info.paths[k])
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{n + 1}"
        ds.InstanceNumber = 200 + n
        if rng.random() < 0.5:
            pixels = ds.pixel_array.copy()
            pixels[1, 1] += n + 1
            ds.PixelData = pixels.tobytes()
        else:
            copies += 1
        ds.save_as(tmp_path / "dicom" / f"extra{n}.dcm")
    files = SHAPE[0] + extra
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    for v in report.volumes:
        slices = int(np.prod(v.shape[:-2]))
        dropped = 0
        if "duplicate_instances" in v.findings:
            meta = VolumeStore(tmp_path / "store").open(v.key).meta
            dropped = next(f for f in meta["findings"] if f["code"] == "duplicate_instances")["count"]
        assert slices + dropped == files
        assert dropped == copies
    assert report.volumes or report.failures


@pytest.mark.parametrize("value", ["0", "NaN", "inf", "-inf", "1e999", "abc"])
def test_rescale_that_is_no_number_refuses_the_series(tmp_path, value):
    """Rescale Slope 0, NaN, infinite or text: the series is refused with its code, never read
    with a substitute slope of 1 (issue 13)."""
    import warnings

    info = write_series(tmp_path / "dicom", shape=SHAPE, per_slice_rescale=False)
    raw = pydicom.dcmread(info.paths[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw.RescaleSlope = "9.7531" if value == "abc" else value
        raw.save_as(info.paths[2])
    if value == "abc":  # pydicom refuses to write text as a DS: put it in the bytes
        data = info.paths[2].read_bytes()
        assert data.count(b"9.7531") == 1
        info.paths[2].write_bytes(data.replace(b"9.7531", b"abcdef"))
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert report.volumes == []
    ((what, reason),) = report.failures
    assert what == info.series_uid
    assert reason.startswith("series refused: invalid_rescale")
    assert "Rescale Slope (0028,1053)" in reason and str(info.paths[2]) in reason


@pytest.mark.parametrize("uid", ["1.2.3/../../etc", "1.2\x00.3", "." * 64, "a/b", "../x", "x" * 300, ""])
def test_odd_series_uids_make_safe_keys_and_file_names(tmp_path, uid):
    """Keys and NIfTI names built from a Series Instance UID stay one path-safe name inside
    the output, whatever the UID holds (issue 13)."""
    import warnings

    info = write_series(tmp_path / "dicom", shape=(3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in info.paths:
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = uid
            ds.save_as(path)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    (v,) = report.volumes
    part, suffix = v.key.split("/")
    assert suffix == "0" and ".." not in part and len(part) <= 80
    assert VolumeStore(tmp_path / "store").open(v.key).shape == (3, 8, 8)
    (out,) = convert(tmp_path / "dicom", tmp_path / "nii").volumes
    written = list((tmp_path / "nii").glob("*.nii.gz"))
    assert [p.name for p in written] == [out.output.rsplit("/", 1)[-1]]
    assert "\x00" not in written[0].name


def test_enhanced_frames_of_different_kinds_become_separate_volumes(tmp_path):
    """Magnitude and phase frames of one enhanced MR file at the same positions (as Philips
    writes them): two volumes, never one volume mixing them (issue 12)."""
    import copy

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    info = write_series(tmp_path / "src", shape=SHAPE, modality="MR", enhanced=True)
    (path,) = info.paths
    ds = pydicom.dcmread(path)
    frames = list(ds.PerFrameFunctionalGroupsSequence)
    magnitude = ds.pixel_array.copy()
    phase = (magnitude // 3 + 7).astype(magnitude.dtype)

    def kind(item, component):
        item = copy.deepcopy(item)
        frame_type = Dataset()
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", component[0], "NONE"]
        frame_type.ComplexImageComponent = component
        item.MRImageFrameTypeSequence = Sequence([frame_type])
        return item

    ds.PerFrameFunctionalGroupsSequence = Sequence([kind(f, "MAGNITUDE") for f in frames] + [kind(f, "PHASE") for f in frames])
    ds.NumberOfFrames = 2 * len(frames)
    ds.PixelData = np.concatenate([magnitude, phase]).tobytes()
    (tmp_path / "dicom").mkdir()
    ds.save_as(tmp_path / "dicom" / "mixed.dcm")
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    assert len(report.volumes) == 2
    store = VolumeStore(tmp_path / "store")
    by_component = {store.open(v.key).meta["image_type"][-1]: store.open(v.key).to_numpy() for v in report.volumes}
    assert set(by_component) == {"MAGNITUDE", "PHASE"}
    np.testing.assert_array_equal(by_component["MAGNITUDE"], info.volume)
    np.testing.assert_array_equal(by_component["PHASE"], (info.volume // 3 + 7).astype(info.volume.dtype))
    assert {store.open(v.key).meta["split_reason"] for v in report.volumes} == {"image type"}


@pytest.mark.parametrize("tilt", [12.0, -20.0])
def test_tilt_correction_keeps_every_pixel_where_it_lies(tmp_path, tilt):
    """tilt='correct': each corrected voxel holds the tilted series' value at the same point in
    space (scipy's linear interpolation of the kept slices as the oracle), on a grid grown so no
    slice loses a pixel; the grid is dcm2niix's (its _Tilt_1 file: same shape)."""
    from scipy.ndimage import map_coordinates

    from voxelflow.dicom.scan import scan
    from voxelflow.dicom.series import GeometryPolicy, build_volume, plan_volumes

    write_series(tmp_path / "dicom", shape=(12, 24, 24), gantry_tilt=tilt, spacing=(2.5, 0.7, 0.7))
    rows = scan(tmp_path / "dicom").rows
    (keep,), _ = plan_volumes(rows, GeometryPolicy(tilt="keep"))
    (fixed,), _ = plan_volumes(rows, GeometryPolicy(tilt="correct"))
    kept, corrected = build_volume(keep), build_volume(fixed)
    original, values = kept.to_numpy().astype(np.float64), corrected.to_numpy().astype(np.float64)
    inverse = np.linalg.inv(kept.affine)
    k, j, i = np.meshgrid(*(np.arange(n) for n in values.shape), indexing="ij")
    world = corrected.affine @ np.stack([k.ravel(), j.ravel(), i.ravel(), np.ones(k.size)])
    source = inverse @ world  # where each corrected voxel lies in the tilted series
    np.testing.assert_allclose(source[0], k.ravel(), atol=1e-6)  # the same slice
    eps = 1e-6
    inside = ((source[1] >= -eps) & (source[1] <= original.shape[1] - 1 + eps)
              & (source[2] >= -eps) & (source[2] <= original.shape[2] - 1 + eps))
    coords = np.stack([np.rint(source[0]), np.clip(source[1], 0, original.shape[1] - 1),
                       np.clip(source[2], 0, original.shape[2] - 1)])
    expected = map_coordinates(original, coords, order=1)
    got = values.ravel()
    assert np.abs(got[inside] - expected[inside]).max() <= 0.5 + 1e-9  # rounded to the stored integers
    assert (got[~inside] == original.min()).all()
    # no pixel of any tilted slice falls outside the corrected grid
    k0, j0, i0 = np.meshgrid(*(np.arange(n) for n in original.shape), indexing="ij")
    back = np.linalg.inv(corrected.affine) @ kept.affine @ np.stack([k0.ravel(), j0.ravel(), i0.ravel(), np.ones(k0.size)])
    assert back[1].min() >= -1e-6 and back[1].max() <= values.shape[1] - 1 + 1e-6
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp_path / "ref"), "-f", "ref", str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    (tilted,) = (tmp_path / "ref").glob("*_Tilt_1.nii")
    assert sorted(nib.load(tilted).shape) == sorted(values.shape)


def _misplacement(nifti, truth):
    """Mean |value - truth| over the voxels of `nifti` that lie inside the tilted series `truth`
    (a NIfTI of the kept, sheared slices), the truth sampled where each voxel's affine puts it."""
    from scipy.ndimage import map_coordinates

    image, reference = nib.load(nifti), nib.load(truth)
    data, original = np.asarray(image.dataobj, np.float64), np.asarray(reference.dataobj, np.float64)
    grid = np.stack([*np.meshgrid(*(np.arange(n) for n in data.shape), indexing="ij"), np.ones(data.shape)]).reshape(4, -1)
    source = (np.linalg.inv(reference.affine) @ image.affine @ grid)[:3]
    inside = np.all((source >= -1e-6) & (source <= np.array(original.shape)[:, None] - 1 + 1e-6), axis=0)
    expected = map_coordinates(original, np.clip(source, 0, np.array(original.shape)[:, None] - 1), order=1)
    return float(np.abs(expected - data.reshape(-1))[inside].mean())


@pytest.mark.parametrize("tilt", [-15.0, -7.5, 15.0])
def test_tilt_corrected_nifti_against_dcm2niix(tmp_path, tilt):
    """`convert --tilt correct` against dcm2niix's _Tilt_1 file. Where dcm2niix places its
    corrected grid right (negative tilts of this phantom) the affines agree within 0.01 mm and
    the voxels within rounding. For positive tilts dcm2niix's origin misses the rows it pads
    (its issue 259: the padding side depends on the tilt's sign): its voxels are then not where
    its affine says, voxelflow's are (measured against the kept slices, the truth)."""
    from voxelflow.dicom.series import GeometryPolicy

    write_series(tmp_path / "dicom", shape=(16, 48, 48), spacing=(2.5, 0.7, 0.7), gantry_tilt=tilt, noise=False)
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp_path / "ref"), "-f", "ref", str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    (theirs,) = (tmp_path / "ref").glob("*_Tilt_1.nii")
    (ours,) = convert(tmp_path / "dicom", tmp_path / "ours", policy=GeometryPolicy(tilt="correct"), sidecar=False).volumes
    (kept,) = convert(tmp_path / "dicom", tmp_path / "kept", policy=GeometryPolicy(tilt="keep"), sidecar=False).volumes
    mine, ref = nib.as_closest_canonical(nib.load(ours.output)), nib.as_closest_canonical(nib.load(theirs))
    assert mine.shape == ref.shape
    assert _misplacement(ours.output, kept.output) < 0.1  # each voxel where its affine says
    if tilt < 0:
        np.testing.assert_allclose(mine.affine, ref.affine, atol=0.01)
        assert np.abs(np.asarray(mine.dataobj, np.float64) - np.asarray(ref.dataobj, np.float64)).max() <= 1.0
    else:
        np.testing.assert_allclose(mine.affine[:3, :3], ref.affine[:3, :3], atol=0.01)  # the same grid axes
        assert np.abs(mine.affine[:3, 3] - ref.affine[:3, 3]).max() > 1.0  # dcm2niix's origin is elsewhere
        assert _misplacement(theirs, kept.output) > 10.0  # and its voxels are not where it says
