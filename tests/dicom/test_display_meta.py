"""A stored volume carries each slice's display pipeline: rendering stored slice k through
``slice_pipeline(meta, k)`` gives exactly what ``render_frame`` gives from slice k's file
(VOI LUT Sequence, VOI LUT Function, Presentation LUT Shape, MONOCHROME1, Modality LUT
Sequence, per-slice rescale, per-slice and per-frame windows, enhanced multi-frame)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import voxelflow
from voxelflow.display import (
    AutoWindow,
    DisplayPipeline,
    Rescale,
    Window,
    pipeline_for,
    slice_pipeline,
)
from voxelflow.errors import DisplayError
from voxelflow.ingest import ingest
from voxelflow.render.mpr import rescale_for
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series

SHAPE = (6, 16, 12)


def _store_one(folder: Path, tmp_path: Path) -> voxelflow.Volume:
    store = VolumeStore(tmp_path / "store")
    report = ingest(folder, store)
    assert not report.failures, report.failures
    (key,) = store.keys()
    return store.open(key)


def _files_by_sop(folder: Path) -> dict[str, Path]:
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in sorted(folder.glob("*.dcm"))
    }


def _assert_slices_render_as_files(volume: voxelflow.Volume, folder: Path, slices=None) -> int:
    """Every (or the given) stored slice through its pipeline == render_frame of its file."""
    meta = volume.meta
    files = _files_by_sop(folder)
    frames = meta.get("frames")
    count = len(meta["sop_instance_uids"])
    flat = np.asarray(volume.array).reshape(count, *volume.shape[-2:])
    checked = 0
    for k in range(count) if slices is None else slices:
        path = files[meta["sop_instance_uids"][k]]
        frame = frames[k] if frames is not None else 0
        expected = voxelflow.render_frame(path, frame=frame)
        got = voxelflow.window(flat[k], slice_pipeline(meta, k))
        assert got.dtype == np.uint8 and expected.dtype == np.uint8
        np.testing.assert_array_equal(got, expected, err_msg=f"slice {k} ({path.name} frame {frame})")
        checked += 1
    return checked


def _edit(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"modality": "MR"},
        {"photometric": "MONOCHROME1"},
        {"voi_lut": True},
        {"per_slice_rescale": True},
        {"per_slice_rescale": True, "modality": "MR"},
        {"per_slice_rescale": True, "voi_lut": True},
        {"per_slice_rescale": True, "photometric": "MONOCHROME1"},
        {"enhanced": True, "shuffle_instance_numbers": True},
        {"enhanced": True, "per_slice_rescale": True},
        {"enhanced": True, "voi_lut": True},
        {"enhanced": True, "photometric": "MONOCHROME1", "modality": "MR"},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "ct",
)
def test_stored_slices_render_as_their_files(tmp_path: Path, options: dict) -> None:
    folder = tmp_path / "in"
    info = write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), **options)
    volume = _store_one(folder, tmp_path)
    meta = volume.meta
    assert "display" in meta and "slice_windows" not in meta
    pipeline = DisplayPipeline.from_dict(meta["display"])
    json.dumps(meta["display"])  # the store keeps JSON
    assert pipeline.inverse == (options.get("photometric") == "MONOCHROME1")
    if options.get("voi_lut") and not options.get("enhanced"):
        assert meta["display"]["voi"]["type"] == "lut"
        assert all(type(v) is int for v in meta["display"]["voi"]["data"])
    if options.get("per_slice_rescale"):
        # the volume holds modality values: the pipeline must not rescale them again
        assert meta["values"] == "modality" and pipeline.modality == Rescale()
        assert rescale_for(volume, True) == (1.0, 0.0)
    else:
        slope, intercept = info.rescale[0]
        assert pipeline.modality == Rescale(slope=slope, intercept=intercept)
        assert rescale_for(volume, True) == (slope, intercept)
    if options.get("enhanced"):
        assert meta["frames"] == [info.instance_numbers[k] - 1 for k in range(SHAPE[0])]
    else:
        assert "frames" not in meta
    # the older keys stay as they were
    assert meta["windows"][0]["center"] == info.windows[0][0]
    assert meta["photometric"] == options.get("photometric", "MONOCHROME2")
    assert _assert_slices_render_as_files(volume, folder) == SHAPE[0]


def test_per_slice_windows(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), modality="MR", per_slice_rescale=True)
    paths = sorted(folder.glob("*.dcm"))
    for n, path in enumerate(paths):
        def change(ds: Dataset, n: int = n) -> None:
            if n == 2:  # one slice without any window: its file is auto-windowed
                del ds.WindowCenter, ds.WindowWidth, ds.WindowCenterWidthExplanation
            else:
                ds.WindowCenter = [f"{600 + 37 * n}", "1000"]
                ds.WindowWidth = [f"{900 + 55 * n}", "2000"]
                ds.WindowCenterWidthExplanation = [f"SLICE {n}", "WIDE"]

        _edit(path, change)
    volume = _store_one(folder, tmp_path)
    meta = volume.meta
    windows = meta["slice_windows"]
    assert len(windows) == SHAPE[0]
    by_sop = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): n for n, p in enumerate(paths)
    }
    for k, sop in enumerate(meta["sop_instance_uids"]):
        n = by_sop[sop]
        if n == 2:
            assert windows[k] == []
            assert slice_pipeline(meta, k).voi == AutoWindow()
        else:
            assert windows[k] == [
                {"center": 600.0 + 37 * n, "width": 900.0 + 55 * n, "explanation": f"SLICE {n}"},
                {"center": 1000.0, "width": 2000.0, "explanation": "WIDE"},
            ]
            assert slice_pipeline(meta, k).voi == Window(
                center=600 + 37 * n, width=900 + 55 * n, explanation=f"SLICE {n}"
            )
    assert _assert_slices_render_as_files(volume, folder) == SHAPE[0]
    # the volume's own pipeline stays the first slice's
    first = by_sop[meta["sop_instance_uids"][0]]
    assert pipeline_for(volume) == slice_pipeline(meta, 0)
    assert first != 2 and pipeline_for(volume).voi.center == 600.0 + 37 * first


def test_per_frame_windows_of_an_enhanced_file(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), modality="MR", enhanced=True,
                 shuffle_instance_numbers=True)
    (path,) = folder.glob("*.dcm")

    def change(ds: Dataset) -> None:
        for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            voi = Dataset()
            voi.WindowCenter = f"{500 + 40 * f}"
            voi.WindowWidth = f"{800 + 60 * f}"
            voi.WindowCenterWidthExplanation = f"FRAME {f}"
            item.FrameVOILUTSequence = DicomSequence([voi])

    _edit(path, change)
    volume = _store_one(folder, tmp_path)
    meta = volume.meta
    assert [w[0]["center"] for w in meta["slice_windows"]] == [500.0 + 40 * f for f in meta["frames"]]
    assert _assert_slices_render_as_files(volume, folder) == SHAPE[0]


def test_voi_lut_function_and_presentation_lut_shape(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8))

    def change(ds: Dataset) -> None:
        ds.VOILUTFunction = "SIGMOID"
        ds.PresentationLUTShape = "INVERSE"

    for path in folder.glob("*.dcm"):
        _edit(path, change)
    volume = _store_one(folder, tmp_path)
    pipeline = DisplayPipeline.from_dict(volume.meta["display"])
    assert pipeline.voi.function == "SIGMOID" and pipeline.inverse
    assert _assert_slices_render_as_files(volume, folder) == SHAPE[0]


def test_per_slice_windows_keep_the_voi_lut_function(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), windows=[(40.0, 400.0, "SOFT")])
    for n, path in enumerate(sorted(folder.glob("*.dcm"))):
        def change(ds: Dataset, n: int = n) -> None:
            ds.VOILUTFunction = "LINEAR_EXACT"
            ds.WindowCenter = f"{20 + 15 * n}"
            ds.WindowWidth = f"{300 + 25 * n}"

        _edit(path, change)
    volume = _store_one(folder, tmp_path)
    assert len(volume.meta["slice_windows"]) == SHAPE[0]
    assert all(slice_pipeline(volume.meta, k).voi.function == "LINEAR_EXACT" for k in range(SHAPE[0]))
    assert _assert_slices_render_as_files(volume, folder) == SHAPE[0]


def test_per_slice_windows_leave_a_voi_lut(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), voi_lut=True)
    for n, path in enumerate(sorted(folder.glob("*.dcm"))):
        def change(ds: Dataset, n: int = n) -> None:
            ds.WindowCenter = f"{20 + 15 * n}"
            ds.WindowWidth = f"{300 + 25 * n}"

        _edit(path, change)
    volume = _store_one(folder, tmp_path)
    assert "slice_windows" in volume.meta
    lut = DisplayPipeline.from_dict(volume.meta["display"]).voi
    assert all(slice_pipeline(volume.meta, k).voi == lut for k in range(SHAPE[0]))
    assert _assert_slices_render_as_files(volume, folder) == SHAPE[0]


def _ingestible_copy(name: str, folder: Path) -> Path:
    """A pydicom test file given the geometry a volume needs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copy(get_testdata_file(name), path)

    def change(ds: Dataset) -> None:
        ds.ImagePositionPatient = [0, 0, 0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]

    _edit(path, change)
    return path


@pytest.mark.parametrize("name, kind", [("mlut_18.dcm", "modality"), ("vlut_04.dcm", "voi")])
def test_real_lut_files(tmp_path: Path, name: str, kind: str) -> None:
    if get_testdata_file(name) is None:
        pytest.skip(f"{name} needs pydicom-data")
    _ingestible_copy(name, tmp_path / "in")
    volume = _store_one(tmp_path / "in", tmp_path)
    display = volume.meta["display"]
    assert display["modality" if kind == "modality" else "voi"]["type"] == "lut"
    assert _assert_slices_render_as_files(volume, tmp_path / "in") == 1
    _assert_mpr_renders_as_files(volume, tmp_path / "in")


def _assert_mpr_renders_as_files(volume: voxelflow.Volume, folder: Path) -> None:
    """mpr(display=True) on the axial plane through each slice's voxel centres (the volume's
    own pipeline, its rescale from rescale_for) is the file's rendering."""
    files = _files_by_sop(folder)
    nz, ny, nx = volume.shape
    spacing = np.linalg.norm(volume.affine[:3, 1:3], axis=0)
    for k in sorted({0, nz // 2, nz - 1}):
        centre = (volume.affine @ np.array([k, (ny - 1) / 2, (nx - 1) / 2, 1.0]))[:3]
        plane = voxelflow.Plane.axial(centre, spacing=tuple(spacing), size=(ny, nx))
        path = files[volume.meta["sop_instance_uids"][k]]
        np.testing.assert_array_equal(
            voxelflow.mpr(volume, plane, display=True), voxelflow.render_frame(path), err_msg=str(path)
        )


@pytest.mark.parametrize(
    "options",
    [{}, {"voi_lut": True}, {"photometric": "MONOCHROME1"}, {"per_slice_rescale": True},
     {"per_slice_rescale": True, "voi_lut": True}],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "ct",
)
def test_mpr_with_the_volume_display_renders_as_the_files(tmp_path: Path, options: dict) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), **options)
    _assert_mpr_renders_as_files(_store_one(folder, tmp_path), folder)


def test_a_header_that_cannot_be_read_leaves_the_old_keys(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "in"
    write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8))

    def broken(cls, *args, **kwargs):
        raise DisplayError("broken on purpose")

    monkeypatch.setattr(DisplayPipeline, "from_dataset", classmethod(broken))
    volume = _store_one(folder, tmp_path)
    assert "display" not in volume.meta
    assert volume.meta["windows"] and volume.meta["rescale"]
    # the pipeline derived from the old keys
    assert slice_pipeline(volume.meta, 0) == pipeline_for(volume)
    assert slice_pipeline(volume.meta, 0).voi == Window(center=40, width=400, explanation="SOFT TISSUE")


def test_slice_pipeline_arguments() -> None:
    meta = {
        "display": DisplayPipeline(modality=Rescale(slope=2.0), voi=Window(center=1, width=2)).to_dict(),
        "sop_instance_uids": ["a", "b"],
        "slice_windows": [[{"center": 5.0, "width": 6.0, "explanation": "A"}], []],
    }
    assert slice_pipeline(meta, 0) == DisplayPipeline(
        modality=Rescale(slope=2.0), voi=Window(center=5, width=6, explanation="A")
    )
    assert slice_pipeline(meta, 1).voi == AutoWindow()
    for bad in (2, -1, 1.0, True):
        with pytest.raises(DisplayError, match="slice index"):
            slice_pipeline(meta, bad)
    # a Volume-like object, and metadata without any display information
    assert slice_pipeline(type("V", (), {"meta": {"sop_instance_uids": ["a"]}})(), 0) == DisplayPipeline()
    with pytest.raises(DisplayError, match="metadata"):
        slice_pipeline(None, 0)
