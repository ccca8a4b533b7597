"""``voxelflow window``, ``resample`` and ``render`` as a user runs them: each output equals the
Python API called directly with the same parameters; bad parameters fail with one line naming
them (exit 2) and leave nothing behind; existing outputs are refused without --overwrite."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from voxelflow import Plane, Slab, Window, curved_mpr, mpr, project, render_frame, resample
from voxelflow import rotating_projection
from voxelflow.display import PRESETS, DisplayPipeline, pipeline_for, preset
from voxelflow.geometry import nifti_affine
from voxelflow.ingest import ingest
from voxelflow.render import encode_image
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxelflow", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )


def run_all(lines: list[list[str | Path]]) -> list[subprocess.CompletedProcess[str]]:
    """Every command line run, a few at a time: the children mostly start Python and wait on
    imports, so the tables' cases overlap instead of queueing (same results as one by one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda line: run(*line), lines))


def ok(result: subprocess.CompletedProcess[str], output: Path | str) -> None:
    assert result.returncode == 0, result.stderr
    # standard error holds progress lines only (not a terminal: no redraws), never a warning
    assert all(": " in line and "/" in line and "error" not in line.lower() for line in result.stderr.splitlines()), result.stderr
    assert "\r" not in result.stderr
    assert any(line.startswith(f"wrote {output}") for line in result.stdout.splitlines()), result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    # progress lines of the steps begun may come first; the error is one line, the last
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and "error:" in errors[0], result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def read_frames(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        frames = []
        for n in range(getattr(im, "n_frames", 1)):
            im.seek(n)
            frames.append(np.asarray(im.convert("L")))
    return np.stack(frames)


@dataclass(frozen=True)
class Phantom:
    root: Path
    ct_file: Path  # one CT slice (three windows: soft tissue, lung, bone)
    enhanced_file: Path  # one 4-frame Enhanced CT file
    store: Path  # holds one volume, the 24 x 64 x 64 CT
    key: str
    two: Path  # holds two volumes

    def volume(self) -> Any:
        return VolumeStore(self.store, read_only=True).open(self.key)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Phantom:
    root = tmp_path_factory.mktemp("cli_views")
    ct = write_series(root / "ct", shape=(24, 64, 64), seed=11)
    enhanced = write_series(root / "enhanced", shape=(4, 32, 32), enhanced=True, seed=12)
    mr = write_series(root / "mr", shape=(6, 16, 16), modality="MR", seed=13)
    assert not ingest([root / "ct"], root / "store").failures
    assert not ingest([root / "ct", root / "mr"], root / "two").failures
    (key,) = VolumeStore(root / "store", read_only=True).keys()
    assert len(VolumeStore(root / "two", read_only=True).keys()) == 2 and mr.paths
    return Phantom(root, ct.paths[len(ct.paths) // 2], enhanced.paths[0], root / "store", key, root / "two")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def image_display(volume: Any, voi: Any = None, bits: int = 8) -> DisplayPipeline:
    """What an image output goes through: the volume's own pipeline, its window replaced."""
    pipeline = pipeline_for(volume) or DisplayPipeline()
    return (pipeline if voi is None else pipeline.with_voi(voi)).with_bits(bits)


# -- help ------------------------------------------------------------------------------------

def test_help_tables_match_the_library() -> None:
    from voxelflow import cli_views
    from voxelflow.render import INTERPOLATIONS as RENDER
    from voxelflow.resampling import INTERPOLATIONS as RESAMPLE

    assert cli_views.PRESET_NAMES == tuple(PRESETS)
    assert set(cli_views.RENDER_INTERPOLATIONS) == set(RENDER)
    assert set(cli_views.RESAMPLE_INTERPOLATIONS) == set(RESAMPLE)


HELP = {
    ("window",): ("HU", "default 0", "default 8", "default 90", "linear-exact", "sigmoid", *PRESETS),
    ("resample",): ("mm", "Z,Y,X", "default linear", "default: on", "--no-anti-alias", ".nii.gz", ".npy",
                    "store", "lanczos", "majority"),
    ("render", "plane"): ("mm", "LPS", "default axial", "default linear", "HU", "default 8", "smallest voxel spacing",
                          "float32 modality values", *PRESETS),
    ("render", "slab"): ("thickness in mm", "default mip", "minip", "mean", "sum", "mm"),
    ("render", "projection"): ("degrees", "default 0", "anterior", "default mip", "mm", "one sample per voxel"),
    ("render", "spin"): ("default 36", "default 10", "default S", ".gif", ".apng", "frames per second"),
    ("render", "curved"): ("mm", "default straightened", "stretched", "LPS", "(N, 3)", "default mip"),
}


@pytest.mark.parametrize("command", HELP, ids=" ".join)
def test_help_states_units_and_defaults(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for phrase in HELP[command]:
        assert phrase in text, phrase
    if command == ("render", "plane"):
        assert "KEY" in text and "exactly one volume" in text


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("window", "resample", "render"):
        assert f"    {command}" in result.stdout


# -- window ----------------------------------------------------------------------------------

WINDOW_CASES = {
    "own": ([], {}),
    "voi-index": (["--voi-index", "1"], {"voi_index": 1}),
    "preset-16": (["--preset", "lung", "--bits", "16"], {"window": preset("lung"), "bits": 16}),
    "window-sigmoid": (["--window=-600,1500,sigmoid"],
                       {"window": Window(center=-600, width=1500, function="SIGMOID")}),
    "window-exact": (["--window", "40,0.5,linear-exact"],
                     {"window": Window(center=40, width=0.5, function="LINEAR_EXACT")}),
}


@pytest.mark.parametrize("case", WINDOW_CASES)
def test_window_png_equals_render_frame(phantom: Phantom, out: Path, case: str) -> None:
    args, options = WINDOW_CASES[case]
    target = out / "frame.png"
    ok(run("window", phantom.ct_file, "-o", target, *args), target)
    expected = render_frame(phantom.ct_file, **options)
    got = read_image(target)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_window_frame_of_a_multiframe_file_as_jpeg(phantom: Phantom, out: Path) -> None:
    target = out / "frame.jpg"
    ok(run("window", phantom.enhanced_file, "--frame", "2", "--quality", "80", "-o", target), target)
    expected = render_frame(phantom.enhanced_file, frame=2)
    assert not np.array_equal(expected, render_frame(phantom.enhanced_file, frame=0))
    assert target.read_bytes() == encode_image(expected, "JPEG", quality=80)


# -- resample --------------------------------------------------------------------------------

#: name -> (options, the same as resample's keywords, output suffix)
RESAMPLE_CASES = {
    "spacing": (["--spacing", "1.5"], {"spacing": 1.5}, ".npy"),
    "spacing-zyx-cubic": (["--spacing", "2.5,1.4,1.4", "--interp", "cubic", "--no-anti-alias"],
                          {"spacing": [2.5, 1.4, 1.4], "interp": "cubic", "anti_alias": False}, ".nii.gz"),
    "shape-nearest": (["--shape", "12,32,40", "--interp", "nearest"],
                      {"shape": [12, 32, 40], "interp": "nearest"}, ".nii"),
}


@pytest.mark.parametrize("case", RESAMPLE_CASES)
def test_resample_file_equals_the_api(phantom: Phantom, out: Path, case: str) -> None:
    args, options, suffix = RESAMPLE_CASES[case]
    target = out / f"resampled{suffix}"
    ok(run("resample", phantom.store, phantom.key, *args, "-o", target), target)
    expected = resample(phantom.volume(), **options)
    data = expected.to_numpy()
    if suffix == ".npy":
        got = np.load(target)
        assert got.dtype == data.dtype and np.array_equal(got, data)
        return
    image = nib.load(target)
    assert np.array_equal(np.asarray(image.dataobj.get_unscaled()), data.transpose(2, 1, 0))
    np.testing.assert_allclose(image.affine, nifti_affine(expected.affine), atol=1e-5)
    rescale = expected.meta["rescale"]
    assert (image.dataobj.slope, image.dataobj.inter) == (rescale["slope"], rescale["intercept"])


def test_resample_into_a_store(phantom: Phantom, tmp_path: Path) -> None:
    target = tmp_path / "resampled.zarr"
    result = run("resample", phantom.store, "--spacing", "2", "-o", target, "--out-key", "iso/2mm")
    assert result.returncode == 0, result.stderr
    assert f"wrote iso/2mm in store {target}" in result.stdout
    got = VolumeStore(target, read_only=True).open("iso/2mm")
    expected = resample(phantom.volume(), spacing=2)
    assert np.array_equal(got.to_numpy(), expected.to_numpy())
    np.testing.assert_allclose(got.affine, expected.affine)
    assert got.meta["rescale"] == expected.meta["rescale"]
    # the same key again: refused, then replaced with --overwrite
    again = run("resample", phantom.store, "--spacing", "3", "-o", target, "--out-key", "iso/2mm")
    one_line_error(again, "iso/2mm", "--overwrite")
    assert VolumeStore(target, read_only=True).open("iso/2mm").shape == expected.shape
    ok_run = run("resample", phantom.store, "--spacing", "3", "-o", target, "--out-key", "iso/2mm", "--overwrite")
    assert ok_run.returncode == 0, ok_run.stderr
    assert VolumeStore(target, read_only=True).open("iso/2mm").shape == resample(phantom.volume(), spacing=3).shape


# -- render ----------------------------------------------------------------------------------

CENTER = (0.0, -15.0, -120.0)
CENTERLINE = np.array([[0.0, -15.0, -145.0], [3.0, -12.0, -120.0], [5.0, -10.0, -95.0]])


def _coronal(v: Any) -> Plane:
    plane = Plane.coronal(v)
    center = np.array(plane.center)
    center[1] = -15.0
    return plane.replace(center=center)


#: name -> (command line after STORE [KEY], output suffix, the API call giving the expected
#: result (volume -> array), the plane of a NIfTI output)
RENDER_CASES: dict[str, tuple[list[str], str, Any, Any]] = {
    "plane-axial-png": (["plane"], ".png",
                        lambda v: mpr(v, Plane.axial(v), display=image_display(v)), None),
    "plane-key-jpeg": (["plane", "KEY", "--orientation", "sagittal", "--quality", "70"], ".jpg",
                       lambda v: mpr(v, Plane.sagittal(v), display=image_display(v)), None),
    "plane-coronal-nifti": (["plane", "--orientation", "coronal", "--position=-15"], ".nii.gz",
                            lambda v: mpr(v, _coronal(v)), _coronal),
    "plane-oblique-npy": (["plane", "--normal", "0.2,0.3,1", "--up=0,-1,0", "--center=0,-15,-120",
                           "--size", "40,48", "--spacing", "0.9,1.1", "--interp", "cubic"], ".npy",
                          lambda v: mpr(v, Plane.oblique(v, [0.2, 0.3, 1], up=[0, -1, 0], spacing=(0.9, 1.1),
                                                         size=(40, 48)).replace(center=CENTER), interp="cubic"),
                          None),
    "plane-preset-16": (["plane", "--orientation", "axial", "--preset", "bone", "--bits", "16",
                         "--interp", "nearest"], ".png",
                        lambda v: mpr(v, Plane.axial(v), interp="nearest",
                                      display=image_display(v, preset("bone"), 16)), None),
    "slab-minip-npy": (["slab", "--slab", "10", "--mode", "minip", "--normal", "0,1,1"], ".npy",
                       lambda v: mpr(v, Plane.oblique(v, [0, 1, 1]), slab=Slab(10, "minip")), None),
    "slab-mean-png": (["slab", "--slab", "6", "--mode", "mean", "--slab-spacing", "0.5",
                       "--window", "40,400"], ".png",
                      lambda v: mpr(v, Plane.axial(v), slab=Slab(6, "mean", spacing=0.5),
                                    display=image_display(v, Window(center=40, width=400))), None),
    "slab-sum-nifti": (["slab", "--slab", "5", "--mode", "sum", "--orientation", "coronal"], ".nii",
                       lambda v: mpr(v, Plane.coronal(v), slab=Slab(5, "sum")), lambda v: Plane.coronal(v)),
    "projection-png": (["projection"], ".png", lambda v: project(v, display=image_display(v)), None),
    "projection-angles": (["projection", "--azimuth", "30", "--elevation=-10", "--preset", "bone"], ".png",
                          lambda v: project(v, azimuth=30, elevation=-10, display=image_display(v, preset("bone"))),
                          None),
    "projection-direction-npy": (["projection", "--direction", "1,1,0", "--mode", "mean", "--size", "40",
                                  "--spacing", "1.2", "--step", "0.8"], ".npy",
                                 lambda v: project(v, direction=[1, 1, 0], mode="mean", size=(40, 40),
                                                   spacing=(1.2, 1.2), step=0.8), None),
    "spin-gif": (["spin", "--views", "4", "--fps", "5"], ".gif",
                 lambda v: rotating_projection(v, 4, display=image_display(v)), None),
    "spin-apng": (["spin", "--views", "3", "--axis", "L", "--preset", "lung"], ".apng",
                  lambda v: rotating_projection(v, 3, axis="L", display=image_display(v, preset("lung"))), None),
    "spin-npy": (["spin", "--views", "3", "--axis", "0,1,1", "--mode", "min", "--size", "30"], ".npy",
                 lambda v: rotating_projection(v, 3, axis=[0, 1, 1], mode="min", size=(30, 30)), None),
    "curved-png": (["curved", "--centerline", "CENTERLINE.txt", "--width", "30"], ".png",
                   lambda v: curved_mpr(v, CENTERLINE, width_mm=30, display=image_display(v)), None),
    "curved-stretched-npy": (["curved", "--centerline", "CENTERLINE.json", "--width", "24", "--mode", "stretched",
                              "--spacing", "0.8", "--up", "0,1,0", "--slab", "4", "--slab-mode", "mean"], ".npy",
                             lambda v: curved_mpr(v, CENTERLINE, width_mm=24, mode="stretched", spacing=0.8,
                                                  up=[0, 1, 0], slab=Slab(4, "mean")), None),
}


def _command(phantom: Phantom, args: list[str], folder: Path) -> list[str | Path]:
    """`args` with the store inserted after the view, KEY and centerline files filled in."""
    (folder / "CENTERLINE.txt").write_text("# x y z (mm)\n" + "\n".join(" ".join(map(str, p)) for p in CENTERLINE))
    (folder / "CENTERLINE.json").write_text(json.dumps(CENTERLINE.tolist()))
    line: list[str | Path] = [args[0], phantom.store]
    for a in args[1:]:
        line.append(phantom.key if a == "KEY" else folder / a if a.startswith("CENTERLINE") else a)
    return line


@pytest.fixture(scope="module")
def rendered(phantom: Phantom, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """case -> (its output folder, the command's result), every case run once."""
    root = tmp_path_factory.mktemp("rendered")
    folders, lines = {}, []
    for case, (args, suffix, _, _) in RENDER_CASES.items():
        folders[case] = root / case / "out"
        folders[case].mkdir(parents=True)
        lines.append(["render", *_command(phantom, args, root / case), "-o", folders[case] / f"view{suffix}"])
    return dict(zip(RENDER_CASES, zip(folders.values(), run_all(lines))))


@pytest.mark.parametrize("case", RENDER_CASES)
def test_render_equals_the_api(phantom: Phantom, rendered: dict[str, Any], case: str) -> None:
    args, suffix, call, nifti_plane = RENDER_CASES[case]
    out, result = rendered[case]
    target = out / f"view{suffix}"
    ok(result, target)
    volume = phantom.volume()
    expected = call(volume)
    if suffix == ".npy":
        got = np.load(target)
        assert got.dtype == np.float32 == expected.dtype
        assert np.array_equal(got, expected, equal_nan=True)
    elif suffix in (".nii", ".nii.gz"):
        image = nib.load(target)
        data = np.asarray(image.dataobj)
        assert data.dtype == np.float32 and data.shape == (*expected.shape[::-1], 1)
        assert np.array_equal(data[:, :, 0].T, expected, equal_nan=True)
        np.testing.assert_allclose(image.affine, nifti_affine(nifti_plane(volume).affine), atol=1e-5)
    elif suffix in (".gif", ".apng"):
        assert np.array_equal(read_frames(target), expected)
    elif suffix == ".jpg":
        quality = int(args[args.index("--quality") + 1])
        assert target.read_bytes() == encode_image(expected, "JPEG", quality=quality)
    else:
        got = read_image(target)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert sorted(p.name for p in out.iterdir()) == [target.name]  # no temporary left


def test_key_is_needed_when_the_store_holds_several(phantom: Phantom, out: Path) -> None:
    result = run("render", "plane", phantom.two, "-o", out / "x.png")
    one_line_error(result, "KEY", "2 volumes")
    keys = VolumeStore(phantom.two, read_only=True).keys()
    assert keys[0] in result.stderr
    ok(run("render", "plane", phantom.two, keys[0], "-o", out / "x.png"), out / "x.png")


# -- bad parameters --------------------------------------------------------------------------

#: (command line with STORE / FILE / OUT placeholders, words the one-line error must hold)
BAD = [
    (["window", "FILE", "-o", "OUT.png", "--bits", "12"], ["--bits", "8 or 16"]),
    (["window", "FILE", "-o", "OUT.jpg", "--bits", "16"], ["--bits 16", "JPEG"]),
    (["window", "FILE", "-o", "OUT.jpg", "--quality", "0"], ["--quality", "1..95"]),
    (["window", "FILE", "-o", "OUT.png", "--quality", "80"], ["--quality", "JPEG"]),
    (["window", "FILE", "-o", "OUT.png", "--frame", "-1"], ["--frame"]),
    (["window", "FILE", "-o", "OUT.png", "--frame", "5"], ["frame"]),
    (["window", "FILE", "-o", "OUT.png", "--voi-index", "7"], ["voi_index"]),
    (["window", "FILE", "-o", "OUT.png", "--preset", "lungs"], ["--preset", "lungs", "lung", "brain", "spine"]),
    (["window", "FILE", "-o", "OUT.png", "--window", "40"], ["--window", "CENTER,WIDTH"]),
    (["window", "FILE", "-o", "OUT.png", "--window", "40,0"], ["--window", "width"]),
    (["window", "FILE", "-o", "OUT.png", "--window", "40,400,cubic"], ["--window", "sigmoid"]),
    (["window", "FILE", "-o", "OUT.png", "--window", "40,400", "--preset", "lung"], ["--window", "--preset"]),
    (["window", "FILE", "-o", "OUT.bmp"], ["-o", ".png"]),
    (["window", "MISSING", "-o", "OUT.png"], ["FILE", "no such file"]),
    (["resample", "STORE", "-o", "OUT.npy"], ["--spacing", "--shape"]),
    (["resample", "STORE", "-o", "OUT.npy", "--spacing", "1", "--shape", "4"], ["--spacing", "--shape"]),
    (["resample", "STORE", "-o", "OUT.npy", "--spacing", "0"], ["--spacing", "positive"]),
    (["resample", "STORE", "-o", "OUT.npy", "--spacing", "1,2"], ["--spacing", "Z,Y,X"]),
    (["resample", "STORE", "-o", "OUT.npy", "--shape", "1.5"], ["--shape", "whole"]),
    (["resample", "STORE", "-o", "OUT.npy", "--spacing", "1", "--interp", "bicubic"], ["--interp", "lanczos"]),
    (["resample", "STORE", "-o", "OUT.png", "--spacing", "1"], ["-o", ".nii.gz", ".npy"]),
    (["resample", "STORE", "-o", "OUT.npy", "--spacing", "1", "--out-key", "a"], ["--out-key", ".npy"]),
    (["resample", "STORE", "-o", "OUT", "--spacing", "1", "--out-key", "../up"], ["--out-key"]),
    (["resample", "STORE", "nope/0", "-o", "OUT.npy", "--spacing", "1"], ["nope/0"]),
    (["resample", "MISSING", "-o", "OUT.npy", "--spacing", "1"], ["STORE", "not a voxelflow store"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--orientation", "oblique"], ["--orientation", "sagittal"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--normal", "0,0,0"], ["normal", "zero"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--normal", "0,0,1", "--orientation", "axial"],
     ["--orientation", "--normal"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--normal", "0,0,1", "--position", "3"], ["--position"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--normal", "0,0,1", "--up", "0,0,2"], ["up", "parallel"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--up", "0,0,1"], ["--up", "--normal"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--size", "0"], ["--size", "positive"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--size", "1.5"], ["--size", "whole"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--size", "20000"], ["20000", "limits"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--spacing=-1"], ["--spacing", "positive"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--center", "1,2"], ["--center", "X,Y,Z"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--position", "abc"], ["--position", "mm"]),
    (["render", "plane", "STORE", "-o", "OUT.png", "--interp", "lanczos"], ["--interp", "cubic"]),
    (["render", "plane", "STORE", "-o", "OUT.npy", "--window", "40,400"], ["--window", "modality values"]),
    (["render", "plane", "STORE", "-o", "OUT.nii.gz", "--bits", "16"], ["--bits"]),
    (["render", "plane", "STORE", "nope/0", "-o", "OUT.png"], ["nope/0"]),
    (["render", "slab", "STORE", "-o", "OUT.png", "--slab", "0"], ["--slab", "positive", "mm"]),
    (["render", "slab", "STORE", "-o", "OUT.png", "--slab", "5", "--mode", "median"], ["--mode", "minip"]),
    (["render", "slab", "STORE", "-o", "OUT.png", "--slab", "5", "--slab-spacing", "x"], ["--slab-spacing"]),
    (["render", "projection", "STORE", "-o", "OUT.png", "--direction", "0,1,0", "--azimuth", "10"],
     ["--direction", "--azimuth"]),
    (["render", "projection", "STORE", "-o", "OUT.png", "--azimuth", "north"], ["--azimuth", "degrees"]),
    (["render", "projection", "STORE", "-o", "OUT.png", "--direction", "0,0,0"], ["direction", "zero"]),
    (["render", "projection", "STORE", "-o", "OUT.png", "--step", "0"], ["--step"]),
    (["render", "projection", "STORE", "-o", "OUT.nii.gz"], ["-o", ".npy"]),
    (["render", "spin", "STORE", "-o", "OUT.gif", "--views", "0"], ["--views"]),
    (["render", "spin", "STORE", "-o", "OUT.gif", "--views", "5000"], ["n_views", "limit"]),
    (["render", "spin", "STORE", "-o", "OUT.gif", "--axis", "Q"], ["axis"]),
    (["render", "spin", "STORE", "-o", "OUT.gif", "--fps", "1000"], ["fps"]),
    (["render", "spin", "STORE", "-o", "OUT.npy", "--fps", "5"], ["--fps", ".npy"]),
    (["render", "spin", "STORE", "-o", "OUT.jpg"], ["-o", ".gif"]),
    (["render", "curved", "STORE", "-o", "OUT.png", "--centerline", "LINE", "--width", "0"], ["--width"]),
    (["render", "curved", "STORE", "-o", "OUT.png", "--centerline", "MISSING", "--width", "9"],
     ["--centerline", "no such file"]),
    (["render", "curved", "STORE", "-o", "OUT.png", "--centerline", "POINT", "--width", "9"],
     ["--centerline", "2 or more"]),
    (["render", "curved", "STORE", "-o", "OUT.png", "--centerline", "TEXT", "--width", "9"], ["--centerline"]),
    (["render", "curved", "STORE", "-o", "OUT.png", "--centerline", "LINE", "--width", "9", "--mode", "flat"],
     ["--mode", "stretched"]),
    (["render", "curved", "STORE", "-o", "OUT.png", "--centerline", "LINE", "--width", "9", "--slab-mode", "mean"],
     ["--slab-mode", "--slab"]),
]


def _bad_line(phantom: Phantom, args: list[str], folder: Path) -> list[str | Path]:
    """`args` with its placeholders made real under `folder` (outputs go into folder/out)."""
    out = folder / "out"
    out.mkdir(parents=True)
    files = {
        "FILE": phantom.ct_file if "--frame" not in args else phantom.enhanced_file,
        "STORE": phantom.store,
        "MISSING": folder / "missing",
        "LINE": folder / "line.txt",
        "POINT": folder / "point.txt",
        "TEXT": folder / "text.txt",
    }
    files["LINE"].write_text("0 -15 -140\n0 -15 -100\n")
    files["POINT"].write_text("0 -15 -140\n")
    files["TEXT"].write_text("from here to there\n")
    return [files[a] if a in files else out / a if a.startswith("OUT") else a for a in args]


@pytest.fixture(scope="module")
def refused(phantom: Phantom, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Any]]:
    """(output folder, result) of every BAD case, in order, each run once."""
    root = tmp_path_factory.mktemp("bad")
    folders = [root / str(n) for n in range(len(BAD))]
    lines = [_bad_line(phantom, args, folder) for (args, _), folder in zip(BAD, folders)]
    return [(folder / "out", result) for folder, result in zip(folders, run_all(lines))]


@pytest.mark.parametrize("n", range(len(BAD)), ids=[" ".join(a[:2] + a[3:]) for a, _ in BAD])
def test_bad_parameter_fails_with_one_line(refused: list[tuple[Path, Any]], n: int) -> None:
    out, result = refused[n]
    one_line_error(result, *BAD[n][1])
    assert list(out.iterdir()) == []  # nothing written, not even a temporary


# -- existing outputs, failures part way --------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["window", "FILE"],
    ["resample", "STORE", "--spacing", "2"],
    ["render", "plane", "STORE"],
    ["render", "spin", "STORE", "--views", "2"],
])
def test_existing_output_is_refused_unless_overwrite(phantom: Phantom, out: Path, command: list[str]) -> None:
    target = out / ("taken.gif" if "spin" in command else "taken.npy" if "resample" in command else "taken.png")
    target.write_bytes(b"precious")
    line = [str(phantom.ct_file) if a == "FILE" else str(phantom.store) if a == "STORE" else a for a in command]
    refused = run(*line, "-o", target)
    one_line_error(refused, str(target), "exists", "--overwrite")
    assert target.read_bytes() == b"precious"
    ok(run(*line, "-o", target, "--overwrite"), target)
    assert target.read_bytes() != b"precious"
    assert sorted(p.name for p in out.iterdir()) == [target.name]


def test_a_failure_part_way_leaves_nothing(phantom: Phantom, tmp_path: Path) -> None:
    """A store with a lost chunk: the error is named once the read reaches it, after the
    outputs were checked, and neither a new store nor a file is left."""
    damaged = tmp_path / "damaged"
    shutil.copytree(phantom.store, damaged)
    chunks = sorted((damaged / phantom.key / "0" / "c").rglob("*"))
    next(p for p in chunks if p.is_file()).unlink()
    out = tmp_path / "out"
    out.mkdir()
    lines: list[list[str | Path]] = [
        ["resample", damaged, "--spacing", "2", "-o", out / "new.zarr"],
        ["resample", damaged, "--spacing", "2", "-o", out / "new.nii.gz"],
        ["render", "projection", damaged, "-o", out / "view.png"],
    ]
    for result in run_all(lines):
        one_line_error(result, "missing")
    assert list(out.iterdir()) == []
