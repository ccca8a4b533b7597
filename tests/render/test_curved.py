"""Curved planar reformation: a straight centerline is an oblique MPR; the frames' geometry,
read back from volumes whose values are their own coordinates; bad requests."""

from __future__ import annotations

import numpy as np
import pytest

import voxelflow as vf
from voxelflow.errors import RenderError
from voxelflow.render import RenderLimits, Slab, curved_mpr

# an oblique, anisotropic, flipped grid: (k, j, i) -> LPS
AFFINE = np.array(
    [
        [0.0, 0.1, 0.9, 10.0],
        [0.0, -0.8, 0.05, -3.0],
        [1.1, 0.0, 0.0, 7.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
#: LPS position of the volume's centre voxel index (9.5, 11.5, 10.5)
CENTRE = AFFINE[:3, :3] @ np.array([9.5, 11.5, 10.5]) + AFFINE[:3, 3]


@pytest.fixture
def volume() -> vf.Volume:
    rng = np.random.default_rng(11)
    data = rng.normal(100.0, 30.0, (20, 24, 22)).astype(np.float32)
    return vf.Volume(data, AFFINE)


def coordinate_volume(axis: int) -> vf.Volume:
    """A volume whose every voxel holds its LPS coordinate `axis` (mm): linear interpolation
    of it is exact, so an image of it says where each pixel sampled."""
    shape = (24, 30, 28)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    affine = np.diag([1.0, 1.0, 1.0, 1.0])[:, [2, 1, 0, 3]]
    lps = affine[axis, 0] * k + affine[axis, 1] * j + affine[axis, 2] * i + affine[axis, 3]
    return vf.Volume(lps, affine)


def positions(centerline, **kwargs) -> np.ndarray:
    """(rows, columns, 3) LPS positions sampled by curved_mpr."""
    return np.stack(
        [curved_mpr(coordinate_volume(a), centerline, **kwargs) for a in range(3)], axis=-1
    )


def straight_plane(start, direction, rows, cols, spacing, up=(1.0, 0.0, 0.0)) -> vf.Plane:
    t = np.asarray(direction, float) / np.linalg.norm(direction)
    u = np.asarray(up, float)
    lateral = u - (u @ t) * t
    lateral /= np.linalg.norm(lateral)
    return vf.Plane(
        center=np.asarray(start) + (rows - 1) / 2.0 * spacing * t,
        row=lateral,
        col=t,
        spacing=(spacing, spacing),
        size=(rows, cols),
    )


@pytest.mark.parametrize("mode", ["straightened", "stretched"])
@pytest.mark.parametrize(
    "slab", [None, Slab(4.0, "max"), Slab(3.0, "mean", samples=5), Slab(30.0, "min")]
)
def test_straight_centerline_is_the_oblique_mpr(volume, mode, slab):
    start = CENTRE + np.array([-2.0, 3.0, 5.0])
    t = np.array([0.3, 0.5, -0.8])
    t /= np.linalg.norm(t)
    # three collinear points (a polyline with a vertex) and a repeated point
    line = np.stack([start, start + 6 * t, start + 6 * t, start + 14 * t])
    image = curved_mpr(volume, line, width_mm=9.0, spacing=0.7, mode=mode, slab=slab)
    rows = int(np.floor(14 / 0.7 + 1e-9)) + 1
    assert image.shape == (rows, 13)  # 2 * floor(9 / 1.4) + 1 columns
    expected = vf.mpr(volume, straight_plane(start, t, *image.shape, 0.7), slab=slab)
    np.testing.assert_array_equal(np.isnan(image), np.isnan(expected))
    if slab is None:
        assert np.isnan(image).any() and np.isfinite(image).any()  # partly outside the volume
    np.testing.assert_allclose(image, expected, rtol=1e-5, equal_nan=True)


def test_straight_centerline_with_up_display_and_rescale(volume):
    start, end = CENTRE + np.array([-6.0, -4.0, -3.0]), CENTRE + np.array([5.0, 3.0, -2.0])
    meta = {"rescale": {"slope": -1.5, "intercept": 20.0}, "windows": [(-100.0, 200.0)]}
    scaled = volume.with_array(volume.array, **meta)
    up = (0.0, 0.0, 1.0)
    for slab in (None, Slab(5.0, "max"), Slab(5.0, "sum")):
        image = curved_mpr(scaled, [start, end], width_mm=6.0, up=up, slab=slab, display=True)
        assert image.dtype == np.uint8
        rows, cols = image.shape
        plane = straight_plane(start, end - start, rows, cols, min(volume.spacing), up=up)
        np.testing.assert_array_equal(image, vf.mpr(scaled, plane, slab=slab, display=True))
        values = curved_mpr(scaled, [start, end], width_mm=6.0, up=up, slab=slab)
        np.testing.assert_allclose(values, vf.mpr(scaled, plane, slab=slab), rtol=1e-5, atol=1e-3)


def test_straightened_frame_of_a_bent_centerline():
    # a quarter circle in the axial plane, then straight up: the frame turns without twisting
    angles = np.linspace(0.0, np.pi / 2, 30)
    arc = np.stack(
        [12 + 8 * np.cos(angles), 12 + 8 * np.sin(angles), np.full_like(angles, 6.0)], axis=1
    )
    line = np.concatenate([arc, arc[-1] + np.array([[0.0, 0.0, 4.0], [0.0, 0.0, 10.0]])])
    spacing = 0.5
    pos = positions(line, width_mm=6.0, spacing=spacing, up=(0.0, 0.0, 1.0))
    rows, cols = pos.shape[:2]
    mid = (cols - 1) // 2
    length = np.linalg.norm(np.diff(line, axis=0), axis=1).sum()
    assert rows == int(np.floor(length / spacing + 1e-9)) + 1
    centre = pos[:, mid]
    # the middle column follows the centerline at equal arc-length steps
    np.testing.assert_allclose(
        np.linalg.norm(np.diff(centre, axis=0), axis=1)[:24], spacing, rtol=0.02
    )
    lateral = (pos[:, -1] - pos[:, 0]) / ((cols - 1) * spacing)
    # (float32 images of coordinates near 20 mm: 1e-4 mm is their precision)
    np.testing.assert_allclose(np.linalg.norm(lateral, axis=1), 1.0, atol=1e-4)
    tangent = np.gradient(centre, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1)[:, None]
    assert np.abs(np.sum(lateral * tangent, axis=1)).max() < 0.05
    # rotation minimising: between neighbouring rows the lateral vector turns no more than the
    # tangent does (through the corner too), so it turns little where the centerline is smooth
    turn_lateral = np.linalg.norm(np.diff(lateral, axis=0), axis=1)
    turn_tangent = np.linalg.norm(np.diff(tangent, axis=0), axis=1)
    assert np.all(turn_lateral <= turn_tangent + 1e-3)
    assert turn_lateral[:24].max() < 0.1
    # in the plane of the arc the rotation-minimising frame keeps the lateral vector vertical,
    # and where the centerline turns up it tilts into the plane without spinning about it
    np.testing.assert_allclose(lateral[: rows // 2], [[0.0, 0.0, 1.0]] * (rows // 2), atol=1e-4)
    end = lateral[-1]
    assert abs(end[2]) < 1e-4 and abs(np.linalg.norm(end[:2]) - 1) < 1e-4


def test_stretched_unrolls_without_distortion():
    # a centerline that wanders along the lateral direction (x) while running down z
    z = np.linspace(20.0, 4.0, 17)
    # (its ends at the same x: the overall direction is along z, the lateral one exactly x)
    line = np.stack(
        [12 + 3 * np.sin(2 * np.pi * (z - 4.0) / 16.0), np.full_like(z, 14.0), z], axis=1
    )
    spacing = 0.5
    pos = positions(line, width_mm=4.0, spacing=spacing, mode="stretched", up=(1.0, 0.0, 0.0))
    rows = pos.shape[0]
    # rows: the centerline's arc length without its lateral component, here its z extent
    assert rows == int(np.floor(16.0 / spacing + 1e-9)) + 1
    # every row lies along x, columns `spacing` apart; rows `spacing` apart along z
    np.testing.assert_allclose(np.diff(pos[..., 0], axis=1), spacing, atol=1e-4)
    np.testing.assert_allclose(np.diff(pos[..., 2], axis=0), -spacing, atol=1e-4)
    np.testing.assert_allclose(pos[..., 1], 14.0, atol=1e-4)
    # the columns span the centerline's excursion plus the width
    assert (
        pos[0, 0, 0] <= line[:, 0].min() - 2.0 + spacing
        and pos[0, -1, 0] >= line[:, 0].max() + 2.0 - spacing
    )


def test_chunked_volume_matches_numpy(volume):
    da = pytest.importorskip("dask.array")
    line = CENTRE + np.array([[-4.0, -5.0, -8.0], [0.0, 0.0, 0.0], [-3.0, 4.0, 6.0]])
    lazy = vf.Volume(da.from_array(volume.array, chunks=(7, 5, 9)), volume.affine)
    for interp in ("nearest", "linear", "cubic"):
        expected = curved_mpr(volume, line, width_mm=8.0, interp=interp, slab=2.0)
        np.testing.assert_allclose(
            curved_mpr(lazy, line, width_mm=8.0, interp=interp, slab=2.0), expected, rtol=1e-6
        )


def test_outside_the_volume_is_nan_or_cval(volume):
    far = [[500.0, 500.0, 500.0], [520.0, 500.0, 500.0]]
    assert np.isnan(curved_mpr(volume, far, width_mm=4.0)).all()
    assert (curved_mpr(volume, far, width_mm=4.0, cval=-7.0) == -7.0).all()


def test_bad_requests(volume):
    line = [[8.0, 4.0, 4.0], [12.0, 9.0, 10.0]]
    bad = [
        {"centerline_mm": [[1.0, 2.0, 3.0]]},
        {"centerline_mm": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]},
        {"centerline_mm": [[1.0, 2.0, np.nan], [1.0, 2.0, 3.0]]},
        {"centerline_mm": [1.0, 2.0, 3.0]},
        {"centerline_mm": [[1.0, 2.0], [3.0, 4.0]]},
        {"centerline_mm": "a line"},
        {"width_mm": 0.0},
        {"width_mm": -3.0},
        {"width_mm": float("nan")},
        {"spacing": 0.0},
        {"spacing": -1.0},
        {"mode": "projected"},
        {"up": (0.0, 0.0, 0.0)},
        {"up": (4.0, 5.0, 6.0)},  # along the centerline
        {"mode": "stretched", "up": (4.0, 5.0, 6.0)},
        {"interp": "spline"},
        {"slab": -2.0},
        {"spacing": 1e-4},  # 9 mm at 0.1 um: past max_side
        {"limits": RenderLimits(max_pixels=50)},
        {"slab": Slab(10.0, samples=100), "limits": RenderLimits(max_samples=50)},
    ]
    for kwargs in bad:
        args = {"centerline_mm": line, "width_mm": 5.0, **kwargs}
        with pytest.raises(RenderError):
            curved_mpr(volume, args.pop("centerline_mm"), **args)
            pytest.fail(f"no error for {kwargs}")
