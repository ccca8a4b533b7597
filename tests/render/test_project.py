"""Whole-volume projections: orientation, the axis-aligned fast path against the sampled path,
the rotating projection and its files, and bad requests."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import voxelflow as vf
from voxelflow.errors import RenderError
from voxelflow.render import RenderLimits, project, rotating_projection, view_direction

# the module, which the package's function of the same name hides
project_module = importlib.import_module("voxelflow.render.project")


def axial_affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """k -> superior, j -> posterior, i -> left: the usual axial stack."""
    dz, dy, dx = spacing
    affine = np.zeros((4, 4))
    affine[0, 2], affine[1, 1], affine[2, 0] = dx, dy, dz
    affine[:3, 3] = origin
    affine[3, 3] = 1.0
    return affine


@pytest.fixture
def volume() -> vf.Volume:
    rng = np.random.default_rng(6)
    data = rng.integers(-1000, 2000, (7, 9, 11)).astype(np.int16)
    return vf.Volume(data, axial_affine(origin=(-5.0, 3.0, 40.0)))


def sampled(monkeypatch, *args, **kwargs):
    """The projection through the sampled (sample_slab) path, the fast path switched off."""
    with monkeypatch.context() as m:
        m.setattr(project_module, "_axis_projection", lambda *a, **k: None)
        return project(*args, **kwargs)


def test_axis_aligned_projection_is_numpy_max(volume):
    a = volume.array
    # rays travel superior: seen from the feet, columns to the patient's left, rows posterior
    np.testing.assert_array_equal(project(volume, direction=(0, 0, 1)), a.max(axis=0))
    # from the head the patient's left is on the image's left
    np.testing.assert_array_equal(project(volume, direction=(0, 0, -1)), a.max(axis=0)[:, ::-1])
    # the anterior view: superior up (k reversed), the patient's left on the right
    np.testing.assert_array_equal(project(volume), a.max(axis=1)[::-1, :])
    np.testing.assert_array_equal(project(volume, direction=(0, 1, 0)), a.max(axis=1)[::-1, :])
    # from the left (azimuth 90): rows superior to inferior, columns anterior to posterior
    np.testing.assert_array_equal(project(volume, azimuth=90), a.max(axis=2)[::-1, :])
    np.testing.assert_array_equal(project(volume, direction=(-1, 0, 0)), a.max(axis=2)[::-1, :])
    np.testing.assert_array_equal(
        project(volume, direction=(0, 2, 0), mode="min"), a.min(axis=1)[::-1, :]
    )


def test_axis_aligned_projection_uses_the_fast_path(volume, monkeypatch):
    calls = []
    kernel = vf.kernels.get("project_axis")

    def spy(*args):
        calls.append(args[1])
        return kernel(*args)

    monkeypatch.setattr(
        vf.kernels,
        "get",
        lambda name, backend=None: spy if name == "project_axis" else kernel_get(name, backend),
    )
    project(volume, direction=(0, 0, 1))
    project(volume, direction=(0, 1, 0))
    assert calls == [0, 1]


kernel_get = vf.kernels.get


AFFINES = {
    "axial": axial_affine((2.0, 1.0, 1.0)),
    "flipped": axial_affine((2.0, 1.0, 1.0)) @ np.diag([-1.0, 1.0, -1.0, 1.0]),
    "sagittal stack": np.array(
        [[-1.5, 0, 0, 3.0], [0, 0, 0.5, -2.0], [0, -0.5, 0, 8.0], [0, 0, 0, 1.0]]
    ),
    "coronal stack": np.array(
        [[0, 0, 1.0, 0.0], [2.5, 0, 0, 1.0], [0, -1.0, 0, 0.0], [0, 0, 0, 1.0]]
    ),
}


@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize(
    "direction", [(0, 0, 1), (0, 0, -1), (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0)]
)
def test_fast_path_equals_the_sampled_path(name, direction, monkeypatch):
    rng = np.random.default_rng(len(name))
    data = rng.integers(0, 4000, (6, 5, 8)).astype(np.uint16)
    volume = vf.Volume(data, AFFINES[name])
    spacing = sorted(volume.spacing)
    # the in-plane spacings of this direction: pixels on voxel centres
    steps = volume.affine[:3, :3]
    along = int(np.argmax(np.abs(np.asarray(direction) @ steps)))
    plane = [s for a, s in enumerate(volume.spacing) if a != along]
    for pix in [spacing[0], tuple(plane), tuple(plane[::-1])]:
        fast = project(volume, direction=direction, spacing=pix)
        slow = sampled(monkeypatch, volume, direction=direction, spacing=pix)
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("mode", ["max", "min", "mean", "sum"])
def test_fast_path_modes_rescale_and_display(mode, monkeypatch):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 3000, (5, 6, 7)).astype(np.int16)
    meta = {"rescale": {"slope": 1.0, "intercept": -1024.0}, "windows": [(40.0, 400.0)]}
    volume = vf.Volume(data, axial_affine((1.0, 1.0, 1.0)), meta)
    for direction in [(0, 0, 1), (0, -1, 0), (1, 0, 0)]:
        fast = project(volume, direction=direction, mode=mode)
        slow = sampled(monkeypatch, volume, direction=direction, mode=mode)
        np.testing.assert_array_equal(fast, slow)
        shown = project(volume, direction=direction, mode=mode, display=True)
        assert shown.dtype == np.uint8
        np.testing.assert_array_equal(
            shown, sampled(monkeypatch, volume, direction=direction, mode=mode, display=True)
        )
    axis0 = {
        "max": data.max(0),
        "min": data.min(0),
        "mean": data.mean(0),
        "sum": data.sum(0, dtype=np.float64),
    }[mode]
    expected = axis0 - 1024.0 * (data.shape[0] if mode == "sum" else 1)
    # float32 results: the mean is rounded once, then the intercept added in float32
    np.testing.assert_allclose(
        project(volume, direction=(0, 0, 1), mode=mode), expected, rtol=1e-6, atol=1e-3
    )


def test_negative_slope_swaps_max_and_min(monkeypatch):
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    volume = vf.Volume(data, axial_affine(), {"rescale": {"slope": -2.0, "intercept": 10.0}})
    mip = project(volume, direction=(0, 0, 1))
    np.testing.assert_array_equal(mip, -2.0 * data.min(0) + 10.0)
    np.testing.assert_array_equal(mip, sampled(monkeypatch, volume, direction=(0, 0, 1)))


def test_chunked_volumes_match_numpy(volume):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    stored = zarr.create_array(
        zarr.storage.MemoryStore(), shape=volume.shape, chunks=(2, 4, 3), dtype=volume.dtype
    )
    stored[...] = volume.array
    for array in (stored, da.from_array(volume.array, chunks=(3, 2, 5))):
        other = vf.Volume(array, volume.affine)
        for direction in [(0, 0, 1), (0, 1, 0), (1, 0, 0)]:
            for mode in ("max", "mean"):
                np.testing.assert_array_equal(
                    project(other, direction=direction, mode=mode),
                    project(volume, direction=direction, mode=mode),
                )
        np.testing.assert_array_equal(project(other, azimuth=30), project(volume, azimuth=30))


def test_oblique_projection_covers_the_volume():
    data = np.zeros((9, 9, 9), np.float32)
    data[4, 4, 4] = 1.0  # one bright voxel at the centre, seen from every direction
    data[0, 0, 0] = 0.05
    volume = vf.Volume(data, axial_affine())
    for direction in [(1, 1, 0), (1, 1, 1), (0.2, -1, 0.3)]:
        image = project(volume, direction=direction)
        # the centre voxel lands on the centre of the image
        rows, cols = image.shape
        # linear interpolation of one voxel half a pixel off: at least 1/8 of it
        peak = np.unravel_index(np.nanargmax(image), image.shape)
        assert np.nanmax(image) > 0.12
        assert abs(peak[0] - (rows - 1) / 2) <= 1 and abs(peak[1] - (cols - 1) / 2) <= 1
        assert np.isfinite(image).sum() > 0.5 * image.size


def test_view_directions():
    d, up = view_direction(0, 0)
    np.testing.assert_allclose(d, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(up, [0, 0, 1], atol=1e-12)
    d, _ = view_direction(90, 0)
    np.testing.assert_allclose(d, [-1, 0, 0], atol=1e-12)  # from the patient's left
    d, up = view_direction(0, 90)
    np.testing.assert_allclose(d, [0, 0, -1], atol=1e-12)  # from above the head
    np.testing.assert_allclose(up, [0, 1, 0], atol=1e-12)


def test_rotating_projection_views_and_files(volume, tmp_path):
    views = rotating_projection(volume, 8)
    assert views.shape[0] == 8 and views.dtype == np.float32
    size = views.shape[1:]
    # view 0 is the anterior view, view 2 the view from the left, both at the cylinder's size
    np.testing.assert_allclose(views[0], project(volume, size=size), rtol=1e-6)
    np.testing.assert_allclose(views[2], project(volume, azimuth=90, size=size), rtol=1e-6)
    # the axis-aligned views sample voxel centres: the brightest voxel shows in full
    np.testing.assert_array_equal(np.nanmax(views[::2], axis=(1, 2)), volume.array.max())
    from PIL import Image

    meta_volume = volume.with_array(volume.array, windows=[(500.0, 3000.0)])
    for name in ("turn.gif", "turn.png"):
        shown = rotating_projection(meta_volume, 6, path=tmp_path / name, fps=12, spacing=2.0)
        assert shown.dtype == np.uint8 and shown.shape[0] == 6
        with Image.open(tmp_path / name) as image:
            assert image.n_frames == 6 and image.size == shown.shape[:0:-1]
            image.seek(3)
            np.testing.assert_array_equal(np.asarray(image.convert("L")), shown[3])
    assert not list(tmp_path.glob(".*tmp"))


def test_rotating_projection_about_another_axis(volume):
    views = rotating_projection(volume, 4, axis="L", mode="min")
    assert views.shape[0] == 4 and np.isfinite(views).any()
    views = rotating_projection(volume, 3, axis=(1, 1, 0))
    assert views.shape[0] == 3


def test_bad_requests(volume, tmp_path):
    bad = [
        {"direction": (0, 0, 0)},
        {"direction": (np.nan, 0, 1)},
        {"direction": (1, 0)},
        {"direction": (0, 1, 0), "azimuth": 10},
        {"azimuth": float("inf")},
        {"size": 0},
        {"size": (-3, 4)},
        {"size": 2.5},
        {"spacing": 0},
        {"spacing": -1.0},
        {"step": 0},
        {"mode": "median"},
        {"interp": "spline"},
        {"limits": RenderLimits(max_side=8)},
        {"size": (10, 10), "limits": RenderLimits(max_pixels=99)},
        {"spacing": 1.0, "step": 1e-4},  # 11 mm at 0.1 um: past max_samples
    ]
    for kwargs in bad:
        with pytest.raises(RenderError):
            project(volume, **kwargs)
    with pytest.raises(RenderError, match="n_views"):
        rotating_projection(volume, 10**9)
    with pytest.raises(RenderError, match="n_views"):
        rotating_projection(volume, 5, limits=RenderLimits(max_views=4))
    for n in (0, -2, 2.5, True):
        with pytest.raises(RenderError, match="n_views"):
            rotating_projection(volume, n)
    with pytest.raises(RenderError, match="axis"):
        rotating_projection(volume, 4, axis="Q")
    with pytest.raises(RenderError, match="axis"):
        rotating_projection(volume, 4, axis=(0, 0, 0))
    with pytest.raises(RenderError, match="path"):
        rotating_projection(volume, 4, path=tmp_path / "turn.tiff")
    with pytest.raises(RenderError, match="fps"):
        rotating_projection(volume, 4, path=tmp_path / "turn.gif", fps=0)
    with pytest.raises(RenderError, match="8-bit"):
        rotating_projection(volume, 2, path=tmp_path / "turn.gif", display={"bits": 16})
    with pytest.raises(RenderError):
        project(np.zeros((3, 3, 3)))


def test_rotating_projection_resolves_an_automatic_window_once(volume):
    # no window in the metadata: display=True means an AutoWindow, computed on the first view
    # and kept, so one value has one grey level in every view
    shown = rotating_projection(volume, 4, display=True)
    values = rotating_projection(volume, 4)
    inside = np.isfinite(values)
    pairs = np.unique(np.stack([values[inside], shown[inside].astype(np.float32)]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1]
    assert shown.dtype == np.uint8 and shown.min() == 0 and shown.max() == 255
