"""Siemens MOSAIC: tiles unpacked into slices, geometry as nibabel's MosaicWrapper (and dcm2niix)
sees it, 4-D fMRI runs through ingest and convert, broken CSA headers reported by file."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pydicom
import pytest

from voxelflow.dicom.mosaic import mosaic_slice_refs
from voxelflow.dicom.scan import scan
from voxelflow.dicom.series import SeriesError, build_volume, plan_volumes
from voxelflow.dicom.stack import SliceRef
from voxelflow.ingest import convert, ingest
from voxelflow.store import VolumeStore
from voxelflow.testing import csa2_header, write_mosaic_series, write_series

# non-square tiles and pixels, so a row/column mix-up cannot pass; 10 slices leave 6 blank tiles
SHAPE = (10, 16, 20)
SPACING = (3.3, 2.5, 3.0)


def _nibabel_wrapper(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom calls its DICOM readers experimental
        from nibabel.nicom import dicomwrappers

        wrapper = dicomwrappers.wrapper_from_file(str(path))
    assert type(wrapper).__name__ == "MosaicWrapper"
    return wrapper


def _plan(folder):
    plans, failures = plan_volumes(scan([str(folder)]).rows)
    return plans, failures


def _replace_csa(path, data):
    ds = pydicom.dcmread(path)
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER")
    if data is None:
        del ds[block.get_tag(0x10)]
    else:
        ds[block.get_tag(0x10)].value = data
    ds.save_as(path)


def _csa_tags(n=10, normal=("0.00000000", "0.00000000", "1.00000000"), acq_times=True):
    tags = {
        "AcquisitionMatrixText": ("SH", ["16p*20"]),
        "NumberOfImagesInMosaic": ("US", [n]),
        "SliceNormalVector": ("FD", list(normal)),
    }
    if acq_times:
        tags["MosaicRefAcqTimes"] = ("FD", [f"{100.0 * k:.8f}" for k in range(n)])
    return tags


# -- the phantom writer ------------------------------------------------------------------------


def test_csa2_header_reads_back_with_nibabel():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

    data = csa2_header({
        "NumberOfImagesInMosaic": ("US", [36]),
        "SliceNormalVector": ("FD", ["0.1", "-0.2", "0.97467943"]),
        "AcquisitionMatrixText": ("SH", ["64p*64"]),
        "MosaicRefAcqTimes": ("FD", [f"{v:.8f}" for v in np.arange(9) * 12.5]),
        "B_value": ("IS", []),
    })
    assert data[:4] == b"SV10" and len(data) % 4 == 0
    csa = csareader.read(data)
    assert csa["type"] == 2 and csa["n_tags"] == 5
    assert csareader.get_n_mosaic(csa) == 36
    assert csareader.get_acq_mat_txt(csa) == "64p*64"
    np.testing.assert_array_equal(csareader.get_slice_normal(csa), [0.1, -0.2, 0.97467943])
    assert csa["tags"]["MosaicRefAcqTimes"]["items"] == list(np.arange(9) * 12.5)
    assert csa["tags"]["B_value"]["items"] == []
    assert csareader.is_mosaic(csa)


def test_writer_matches_nibabel(tmp_path):
    """The phantom's ground truth is what nibabel's MosaicWrapper reads from the files."""
    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=1, slice_order="descending")
    wrapper = _nibabel_wrapper(info.paths[0])
    assert wrapper.n_mosaic == SHAPE[0] and info.grid == 4 and info.mosaic_shape == (64, 80)
    data = wrapper.get_unscaled_data()  # (rows, columns, tile)
    for k, tile in enumerate(info.tile_of_slice):
        np.testing.assert_array_equal(data[:, :, tile], info.volume[0, k])
        np.testing.assert_allclose(wrapper.affine @ [0, 0, tile, 1], [*info.positions[k], 1], atol=1e-6)
    ds = pydicom.dcmread(info.paths[0], stop_before_pixels=True)
    assert "MOSAIC" in ds.ImageType and ds.Manufacturer == "SIEMENS"


# -- geometry and voxels against nibabel --------------------------------------------------------


def _assert_same_geometry_as_nibabel(volume_affine, volume_data, paths):
    """Every slice of the volume lies where nibabel puts one of the mosaic's tiles, same voxels."""
    data = volume_data.reshape(-1, *volume_data.shape[-3:])
    assert data.shape[0] == len(paths)
    corners = [(0, 0), (0, data.shape[-1] - 1), (data.shape[-2] - 1, 0), (data.shape[-2] - 1, data.shape[-1] - 1)]
    for t, path in enumerate(paths):
        wrapper = _nibabel_wrapper(path)
        # nibabel's wrapper.affine maps (row j, column i, tile) to DICOM LPS mm; ours (k, j, i)
        nib_affine = wrapper.affine
        tiles = wrapper.get_unscaled_data()
        assert tiles.shape[2] == data.shape[1]
        tile_origins = np.array([nib_affine @ [0, 0, n, 1] for n in range(tiles.shape[2])])[:, :3]
        used = set()
        for k in range(data.shape[1]):
            origin = (volume_affine @ [k, 0, 0, 1])[:3]
            distance = np.linalg.norm(tile_origins - origin, axis=1)
            tile = int(np.argmin(distance))
            assert distance[tile] < 1e-4, f"slice {k} lies at no tile's position"
            used.add(tile)
            for j, i in corners:
                np.testing.assert_allclose(volume_affine @ [k, j, i, 1], nib_affine @ [j, i, tile, 1], atol=1e-4)
            np.testing.assert_array_equal(data[t, k], tiles[:, :, tile])
        assert used == set(range(data.shape[1]))


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal", "oblique"])
@pytest.mark.parametrize("slice_order", ["ascending", "descending"])
def test_mosaic_run_is_one_4d_volume_with_nibabel_geometry(tmp_path, orientation, slice_order):
    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=3,
                               orientation=orientation, slice_order=slice_order)
    plans, failures = _plan(tmp_path)
    assert not failures
    (plan,) = plans
    volume = build_volume(plan)
    assert volume.shape == (3, *SHAPE)
    assert volume.meta["axes"] == ["t", "z", "y", "x"]
    assert volume.meta["fourth_axis"] == {"size": 3, "meaning": "acquisition_number", "values": [1.0, 2.0, 3.0]}
    assert volume.meta["findings"] == []
    np.testing.assert_array_equal(volume.to_numpy(), info.volume)
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)
    # slices in spatial order: the slice axis runs along the plane normal, by Spacing Between Slices
    normal = np.cross(info.orientation[:3], info.orientation[3:])
    np.testing.assert_allclose(volume.affine[:3, 0], SPACING[0] * normal, atol=1e-4)
    _assert_same_geometry_as_nibabel(volume.affine, volume.to_numpy(), info.paths)


def test_tiles_decode_each_mosaic_once(tmp_path, monkeypatch):
    import voxelflow.dicom.decode as decode_module

    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=4, slice_order="descending")
    calls = []
    real = decode_module.decode

    def counting(src, **kwargs):
        calls.append(str(src))
        return real(src, **kwargs)

    monkeypatch.setattr(decode_module, "decode", counting)
    (plan,) = _plan(tmp_path)[0]
    volume = build_volume(plan)
    np.testing.assert_array_equal(volume.to_numpy(), info.volume)
    assert sorted(calls) == sorted(str(p) for p in info.paths)


def test_slice_refs_name_their_tile(tmp_path):
    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=1)
    row = scan([str(tmp_path)]).rows[0]
    assert row.mosaic and (row.rows, row.columns) == (64, 80)
    base = SliceRef(path=row.path, frame=None, position=row.image_position_patient,
                    orientation=row.image_orientation_patient, pixel_spacing=row.pixel_spacing,
                    rows=row.rows, columns=row.columns)
    refs = mosaic_slice_refs(base)
    assert len(refs) == SHAPE[0]
    assert [r.tile for r in refs[:5]] == [(0, 0, 16, 20), (0, 20, 16, 20), (0, 40, 16, 20), (0, 60, 16, 20), (16, 0, 16, 20)]
    assert all((r.rows, r.columns) == (16, 20) for r in refs)
    np.testing.assert_allclose([r.position for r in refs], info.positions[list(np.argsort(info.tile_of_slice))], atol=1e-6)


def test_single_time_point_is_3d(tmp_path):
    info = write_mosaic_series(tmp_path, shape=(9, 16, 16), spacing=SPACING, time_points=1, orientation="oblique")
    (plan,) = _plan(tmp_path)[0]
    volume = build_volume(plan)
    assert volume.shape == (9, 16, 16) and volume.meta["axes"] == ["z", "y", "x"]
    np.testing.assert_array_equal(volume.to_numpy(), info.volume[0])
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)
    _assert_same_geometry_as_nibabel(volume.affine, volume.to_numpy()[np.newaxis], info.paths)


def test_slice_gap_steps_by_spacing_between_slices(tmp_path):
    """A distance factor makes Slice Thickness smaller than the step: positions use the spacing."""
    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=2, slice_thickness=3.0)
    (plan,) = _plan(tmp_path)[0]
    volume = build_volume(plan)
    np.testing.assert_allclose(volume.spacing, SPACING, atol=1e-6)
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)


@pytest.mark.parametrize("transfer_syntax", ["implicit_le", "explicit_be", "rle"])
def test_transfer_syntaxes(tmp_path, transfer_syntax):
    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=2,
                               transfer_syntax=transfer_syntax, orientation="oblique")
    plans, failures = _plan(tmp_path)
    assert not failures
    volume = build_volume(plans[0])
    np.testing.assert_array_equal(volume.to_numpy(), info.volume)
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)


# -- broken mosaics ---------------------------------------------------------------------------


def _single_failure(folder):
    plans, failures = _plan(folder)
    assert plans == []
    ((_, reason),) = failures
    return reason


def test_missing_csa_header_names_the_file(tmp_path):
    info = write_mosaic_series(tmp_path, shape=SHAPE, time_points=1, csa_header=False)
    reason = _single_failure(tmp_path)
    assert str(info.paths[0]) in reason and "CSA" in reason
    # an anonymiser that keeps the private creator but drops the header
    info = write_mosaic_series(tmp_path / "b", shape=SHAPE, time_points=1)
    _replace_csa(info.paths[0], None)
    reason = _single_failure(tmp_path / "b")
    assert str(info.paths[0]) in reason and "CSA Image Header Info" in reason


@pytest.mark.parametrize(("declared", "why"), [
    (5, "3 x 3 tiling"),  # 64 x 80 does not divide by 3
    (17, "5 x 5 tiling"),
    (3, "MosaicRefAcqTimes lists 10"),  # a 2 x 2 tiling would divide: the slice times disagree
    (0, "NumberOfImagesInMosaic"),
])
def test_images_in_mosaic_that_do_not_fit_the_tiling(tmp_path, declared, why):
    info = write_mosaic_series(tmp_path, shape=SHAPE, time_points=1, images_in_mosaic=declared)
    reason = _single_failure(tmp_path)
    assert str(info.paths[0]) in reason and why in reason


@pytest.mark.parametrize(("tags", "why"), [
    (_csa_tags(normal=("0.00000000", "0.70710678", "0.70710678")), "not along the normal"),
    ({k: v for k, v in _csa_tags().items() if k != "SliceNormalVector"}, "no SliceNormalVector"),
    ({k: v for k, v in _csa_tags().items() if k != "NumberOfImagesInMosaic"}, "NumberOfImagesInMosaic"),
])
def test_inconsistent_csa_header(tmp_path, tags, why):
    info = write_mosaic_series(tmp_path, shape=SHAPE, time_points=1)
    _replace_csa(info.paths[0], csa2_header(tags))
    reason = _single_failure(tmp_path)
    assert str(info.paths[0]) in reason and why in reason


def test_corrupt_csa_header(tmp_path):
    info = write_mosaic_series(tmp_path, shape=SHAPE, time_points=1)
    _replace_csa(info.paths[0], csa2_header(_csa_tags())[:60])
    reason = _single_failure(tmp_path)
    assert str(info.paths[0]) in reason and "unreadable" in reason
    base = SliceRef(path=str(info.paths[0]), frame=None, position=(0.0, 0.0, 0.0),
                    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), pixel_spacing=(1.0, 1.0), rows=64, columns=80)
    with pytest.raises(SeriesError, match="unreadable"):
        mosaic_slice_refs(base)


def test_a_csa_header_without_mosaic_times_still_reads(tmp_path):
    """Older software writes no MosaicRefAcqTimes: the tiling then rests on the image size."""
    info = write_mosaic_series(tmp_path, shape=SHAPE, spacing=SPACING, time_points=1)
    _replace_csa(info.paths[0], csa2_header(_csa_tags(acq_times=False)))
    (plan,) = _plan(tmp_path)[0]
    volume = build_volume(plan)
    np.testing.assert_array_equal(volume.to_numpy(), info.volume[0])


# -- end to end ------------------------------------------------------------------------------


def test_ingest_and_store(tmp_path):
    info = write_mosaic_series(tmp_path / "dicom" / "run", shape=SHAPE, spacing=SPACING, time_points=3,
                               orientation="oblique", slice_order="descending")
    broken = write_mosaic_series(tmp_path / "dicom" / "broken", shape=SHAPE, time_points=1, csa_header=False,
                                 series_number=3)
    ct = write_series(tmp_path / "dicom" / "ct", shape=(6, 16, 16), series_number=2)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert report.partial
    ((what, reason),) = report.failures
    assert what == broken.series_uid and str(broken.paths[0]) in reason
    by_key = {v.key.split("/")[0]: v for v in report.volumes}
    assert set(by_key) == {info.series_uid, ct.series_uid}
    assert by_key[info.series_uid].shape == (3, *SHAPE)
    store = VolumeStore(tmp_path / "store")
    volume = store.open(by_key[info.series_uid].key)
    np.testing.assert_array_equal(volume.to_numpy(), info.volume)
    np.testing.assert_allclose(volume.affine, info.affine, atol=1e-4)
    assert volume.meta["fourth_axis"]["meaning"] == "acquisition_number"
    np.testing.assert_array_equal(store.open(by_key[ct.series_uid].key).to_numpy(), ct.volume)


def test_convert_writes_4d_nifti_like_dcm2niix(tmp_path):
    import nibabel as nib

    info = write_mosaic_series(tmp_path / "dicom", shape=SHAPE, spacing=SPACING, time_points=3,
                               orientation="oblique", slice_order="descending")
    report = convert(tmp_path / "dicom", tmp_path / "ours")
    assert not report.failures
    (ours,) = [v.output for v in report.volumes]
    image = nib.load(ours)
    assert image.shape == (SHAPE[2], SHAPE[1], SHAPE[0], 3)  # NIfTI (x, y, z, t)
    data = np.asanyarray(image.dataobj)
    np.testing.assert_array_equal(data, info.volume.transpose(3, 2, 1, 0))
    # RAS: voxel (i, j, k) of the NIfTI is voxel (k, j, i) of the LPS volume
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    for k, j, i in ((0, 0, 0), (9, 15, 19), (4, 3, 7)):
        np.testing.assert_allclose(image.affine @ [i, j, k, 1], lps_to_ras @ info.affine @ [k, j, i, 1], atol=1e-3)

    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp_path / "ref"), "-f", "ref", str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    ref = nib.as_closest_canonical(nib.load(tmp_path / "ref" / "ref.nii"))
    mine = nib.as_closest_canonical(image)
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(mine.dataobj), np.asanyarray(ref.dataobj))


def test_anonymised_mosaic_without_csa_header_reads_with_a_finding(tmp_path):
    """An anonymiser stripped the CSA headers but kept NumberOfImagesInMosaic (0019,xx0A): the
    tiling comes from it and the image size, the slices along the plane normal (as dcm2niix
    reads it), and a finding says what was assumed (issue 12)."""
    info = write_mosaic_series(tmp_path / "dicom", shape=SHAPE, spacing=SPACING, time_points=2,
                               csa_header=False, mr_header=True)
    reference = write_mosaic_series(tmp_path / "ref", shape=SHAPE, spacing=SPACING, time_points=2)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    assert not report.failures, report.table()
    (v,) = report.volumes
    assert "mosaic_assumed" in v.findings
    volume = VolumeStore(tmp_path / "store").open(v.key)
    np.testing.assert_array_equal(volume.to_numpy(), info.volume)
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-4)
    finding = next(f for f in volume.meta["findings"] if f["code"] == "mosaic_assumed")
    assert sorted(finding["files"]) == sorted(str(p) for p in info.paths)


def test_anonymised_mosaic_agrees_with_dcm2niix(tmp_path):
    import nibabel as nib

    write_mosaic_series(tmp_path / "dicom", shape=SHAPE, spacing=SPACING, time_points=2, csa_header=False, mr_header=True)
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-o", str(tmp_path / "ref"), "-f", "ref", str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    (ref_path,) = (tmp_path / "ref").glob("*.nii")
    (ours,) = convert(tmp_path / "dicom", tmp_path / "ours").volumes
    ref, mine = nib.as_closest_canonical(nib.load(ref_path)), nib.as_closest_canonical(nib.load(ours.output))
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(mine.dataobj, np.float64), np.asarray(ref.dataobj, np.float64))
