"""The package surface: version, lazy import, the kernel registry, threads, the CLI and the demo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import voxelflow
import voxelflow.kernels as K
from voxelflow.cli import main
from voxelflow.errors import BackendError, ParameterError


def test_version_and_cli_version(capsys):
    assert voxelflow.__version__
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert voxelflow.__version__ in capsys.readouterr().out


def test_import_does_no_heavy_work():
    code = (
        "import sys, voxelflow; "
        "heavy = [m for m in ('numba', 'pydicom', 'zarr', 'dask', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_kernel_has_every_backend():
    avail = K.available()
    assert set(avail) == set(K.KERNELS)
    for kernel, backends in avail.items():
        assert backends == list(K.BACKENDS), kernel


def test_backend_selection(monkeypatch):
    assert K.get("unpack_words", "numba") is not K.get("unpack_words", "cython")
    monkeypatch.setenv("VOXELFLOW_BACKEND", "numba")
    assert K.get("unpack_words") is K.get("unpack_words", "numba")
    monkeypatch.setenv("VOXELFLOW_BACKEND", "fortran")
    with pytest.raises(BackendError, match="VOXELFLOW_BACKEND"):
        K.get("unpack_words")
    with pytest.raises(BackendError, match="unknown kernel"):
        K.get("fft", "cython")
    with pytest.raises(BackendError, match="no backend"):
        K.get("unpack_words", "cuda")


def test_set_num_threads():
    before = voxelflow.get_num_threads()
    try:
        voxelflow.set_num_threads(1)
        assert voxelflow.get_num_threads() == 1
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ParameterError):
                voxelflow.set_num_threads(bad)
    finally:
        voxelflow.set_num_threads(before)


def test_cli_decode(tmp_path, capsys):
    from voxelflow.testing import dataset_from_array, save_dataset

    arr = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    path = tmp_path / "a.dcm"
    save_dataset(dataset_from_array(arr), path)
    assert main(["decode", str(path), "-o", str(tmp_path / "a.npy")]) == 0
    assert "shape (2, 3, 4)" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr)


def test_cli_reports_bad_input(tmp_path, capsys):
    path = tmp_path / "bad.dcm"
    path.write_bytes(b"")
    assert main(["decode", str(path)]) == 2
    assert "empty" in capsys.readouterr().err


def test_demo(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "voxelflow", "demo", "--out", str(tmp_path), "--slices", "6", "--size", "64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "identical to pydicom's: yes" in result.stdout
    from PIL import Image

    for preset in ("lung", "soft_tissue", "bone"):
        png = tmp_path / f"middle_slice_{preset}.png"
        assert png.exists() and str(png) in result.stdout
        image = np.asarray(Image.open(png))
        # air is dark in every preset (-1000 HU sits ~60 grey levels up in the lung window);
        # each shows structure
        assert image.shape == (64, 64) and image.min() < 80 and image.max() - image.min() > 100
    assert "1 volume(s), 0 failure(s)" in result.stdout
    assert "resampled to isotropic spacing" in result.stdout and "computed" in result.stdout
    # the preset PNGs window the slice the axial MPR shows (Plane.axial: the middle, rounded down)
    assert "windowed slice 2 " in result.stdout  # 6 slices
    # the rendering step: MPRs and a slab MIP of the stored volume, and a rotating MIP
    for name in ("mpr_axial", "mpr_coronal", "mpr_sagittal", "slab_mip_oblique_20mm"):
        png = tmp_path / f"{name}.png"
        assert png.exists() and str(png) in result.stdout
        with Image.open(png) as image:
            pixels = np.asarray(image)
        assert image.format == "PNG" and pixels.dtype == np.uint8 and pixels.ndim == 2
        assert pixels.max() - pixels.min() > 50  # structure, not a blank image
    gif = tmp_path / "rotating_mip.gif"
    assert gif.exists() and str(gif) in result.stdout
    from voxelflow.demo import DEMO_VIEWS

    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == DEMO_VIEWS and image.info.get("loop") == 0
