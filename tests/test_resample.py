"""voxelflow.resample and voxelflow.reorient: grids, oracles (scipy, SimpleITK, nibabel),
anti-aliasing, labels, the separable fast path and errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi  # the oracle; a test dependency (pyproject [test])

import voxelflow
from voxelflow.errors import ResampleError, VoxelflowError
from voxelflow.resampling import (
    INTERPOLATIONS,
    anti_alias_sigma,
    gaussian_smooth,
    majority_vote,
    output_grid,
    sample_grid,
)
from voxelflow.volume import Volume


def _volume(shape=(12, 14, 16), spacing=(2.0, 0.8, 0.7), dtype=np.float64, seed=0, oblique=0.0):
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 30.0, shape)
    data = data.astype(dtype) if np.dtype(dtype).kind == "f" else np.rint(data).astype(dtype)
    c, s = np.cos(oblique), np.sin(oblique)
    affine = np.eye(4)
    # columns: k (slice), j (row), i (column) directions in LPS, scaled by spacing
    affine[:3, 0] = np.array([0.0, 0.0, 1.0]) * spacing[0]
    affine[:3, 1] = np.array([0.0, c, s]) * spacing[1]
    affine[:3, 2] = np.array([1.0, 0.0, 0.0]) * spacing[2]
    affine[:3, 3] = (-20.0, 13.5, 40.0)
    return Volume(data, affine, {"modality": "CT", "sop_instance_uids": ["x"] * shape[0]})


def _rotation(theta: float, axis: int) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    r = np.eye(4)
    a, b = [x for x in range(3) if x != axis]
    r[[a, a, b, b], [a, b, a, b]] = c, -s, s, c
    return r


def _input_positions(volume: Volume, out: Volume) -> np.ndarray:
    matrix = (np.linalg.inv(volume.affine) @ out.affine)[:3]
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in out.shape[-3:]), indexing="ij")
    return np.stack([((matrix[a, 0] * k + matrix[a, 1] * j) + matrix[a, 3]) + matrix[a, 2] * i
                     for a in range(3)])


def _inside(p: np.ndarray, shape, margin: float = 0.0) -> np.ndarray:
    return np.all([(p[a] >= -0.5 + margin) & (p[a] <= shape[a] - 0.5 - margin) for a in range(3)], axis=0)


# -- the grid --------------------------------------------------------------------------------


def test_worked_example_of_the_docstring() -> None:
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (0.0, 0.0, 10.0)  # LPS z of slice k is 10 + 2k
    affine[:3, 0] = (0.0, 0.0, 2.0)
    affine[:3, 2] = (1.0, 0.0, 0.0)
    vol = Volume(np.array([0.0, 10.0, 40.0]).reshape(3, 1, 1) * np.ones((3, 2, 2)), affine)
    fine = voxelflow.resample(vol, spacing=1.0)
    assert fine.shape == (5, 2, 2)
    centres = fine.affine @ np.array([[k, 0, 0, 1] for k in range(5)]).T
    np.testing.assert_allclose(centres[2], [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(fine.array[:, 0, 0], [0.0, 5.0, 10.0, 25.0, 40.0])
    coarse_affine, coarse_shape = output_grid(vol, spacing=3.0)
    assert coarse_shape[0] == 2 and coarse_affine[2, 0] == 3.0
    by_shape, shape = output_grid(vol, shape=(4, 2, 2))
    assert shape == (4, 2, 2)
    np.testing.assert_allclose((by_shape @ [3, 0, 0, 1])[2], 14.0)


def test_shared_centres_keep_position_and_value() -> None:
    vol = _volume(dtype=np.int16)
    out = voxelflow.resample(vol, spacing=(1.0, 0.4, 0.35))  # exact 2x finer on every axis
    np.testing.assert_allclose(out.affine[:, 3], vol.affine[:, 3])
    np.testing.assert_allclose(out.affine @ [4, 6, 8, 1], vol.affine @ [2, 3, 4, 1])
    np.testing.assert_array_equal(out.array[::2, ::2, ::2], vol.array)
    assert out.dtype == np.int16
    assert "sop_instance_uids" not in out.meta and out.meta["modality"] == "CT"


def test_like_resamples_onto_another_grid() -> None:
    vol = _volume()
    target = Volume(np.zeros((5, 6, 7)), vol.affine @ _rotation(0.2, 0) @ np.diag([1.5, 1.5, 1.5, 1]))
    out = voxelflow.resample(vol, like=target, anti_alias=False)
    assert out.shape == (5, 6, 7)
    np.testing.assert_array_equal(out.affine, target.affine)
    direct = voxelflow.resample(vol, affine=target.affine, shape=(5, 6, 7), anti_alias=False)
    np.testing.assert_array_equal(out.array, direct.array)


# -- oracles -------------------------------------------------------------------------------


@pytest.mark.parametrize("theta", [0.0, 0.35])
def test_linear_equals_scipy_map_coordinates(theta: float) -> None:
    vol = _volume(oblique=theta)
    grid = vol.affine @ _rotation(0.3, 1) @ np.diag([0.7, 0.9, 0.6, 1.0])
    out = voxelflow.resample(vol, affine=grid, shape=(20, 15, 18), anti_alias=False, cval=-5.0)
    p = _input_positions(vol, out)
    expected = ndi.map_coordinates(vol.array, p, order=1, mode="nearest")
    expected[~_inside(p, vol.shape)] = -5.0
    np.testing.assert_allclose(out.array, expected, rtol=1e-5)


def test_cubic_equals_scipy_order3_mirror() -> None:
    vol = _volume()
    grid = vol.affine @ _rotation(0.25, 0) @ np.diag([0.8, 0.9, 0.7, 1.0])
    out = voxelflow.resample(vol, affine=grid, shape=(14, 15, 18), interp="cubic", anti_alias=False)
    p = _input_positions(vol, out)
    expected = ndi.map_coordinates(vol.array, p, order=3, mode="mirror")
    inside = _inside(p, vol.shape)
    expected[~inside] = 0.0
    np.testing.assert_allclose(out.array, expected, rtol=1e-4, atol=1e-4 * 100)
    # the axis-aligned (separable) cubic path too
    out = voxelflow.resample(vol, spacing=(1.3, 0.5, 0.45), interp="cubic", anti_alias=False)
    expected = ndi.map_coordinates(vol.array, _input_positions(vol, out), order=3, mode="mirror")
    np.testing.assert_allclose(out.array, expected, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("theta", [0.0, 0.3])
def test_linear_equals_simpleitk(theta: float) -> None:
    import SimpleITK as sitk
    vol = _volume(oblique=0.1)
    grid = vol.affine @ _rotation(theta, 0) @ np.diag([0.6, 1.1, 0.9, 1.0])
    shape = (30, 12, 14)
    out = voxelflow.resample(vol, affine=grid, shape=shape, anti_alias=False, cval=-1.0)
    ref = Volume(np.zeros(shape), grid).to_sitk()
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(ref)
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(-1.0)
    f.SetOutputPixelType(sitk.sitkFloat64)
    expected = sitk.GetArrayFromImage(f.Execute(vol.to_sitk()))
    p = _input_positions(vol, out)
    # away from the half-voxel border, where ITK and we round the inside test differently
    keep = _inside(p, vol.shape, 1e-6) | ~_inside(p, vol.shape, -1e-6)
    assert keep.mean() > 0.95 and _inside(p, vol.shape).mean() > 0.3
    np.testing.assert_allclose(out.array[keep], expected[keep], rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.6, 1.7])
def test_gaussian_equals_scipy(sigma: float) -> None:
    x = np.random.default_rng(3).normal(size=(9, 30, 11))
    np.testing.assert_allclose(
        gaussian_smooth(x, (sigma, 0.0, sigma)),
        ndi.gaussian_filter(x, (sigma, 0.0, sigma), mode="reflect"),
        atol=1e-12,
    )


# -- anti-aliasing -------------------------------------------------------------------------


def _aliasing(anti_alias: bool) -> tuple[float, float]:
    """Downsample 3x along x a low tone (0.05 cycles/voxel) plus a tone above the new Nyquist
    (0.4 cycles/voxel > 1/6); return (aliased energy, kept low tone) as fractions of the input."""
    n = 600
    x = np.arange(n)
    low = np.cos(2 * np.pi * 0.05 * x)
    high = np.cos(2 * np.pi * 0.4 * x)
    data = np.broadcast_to(low + high, (3, 4, n)).copy()
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    out = voxelflow.resample(Volume(data, affine), spacing=(1.0, 1.0, 3.0), anti_alias=anti_alias)
    row = out.array[1, 1, 20:-20]  # away from the edges
    spectrum = np.abs(np.fft.rfft(row * np.hanning(row.size))) ** 2
    freqs = np.fft.rfftfreq(row.size, d=3.0)  # in cycles per input voxel
    aliased_at = abs(0.4 - 1 / 3)  # 0.4 folds about the output sampling rate 1/3
    band = lambda f: spectrum[np.abs(freqs - f) < 0.01].sum()
    total = band(0.05)  # the low tone's energy is the scale (its gain is near 1)
    reference_low = np.abs(np.fft.rfft(np.cos(2 * np.pi * 0.05 * 3 * np.arange(row.size)) * np.hanning(row.size))) ** 2
    return band(aliased_at) / reference_low[np.abs(freqs - 0.05) < 0.01].sum(), total / reference_low[np.abs(freqs - 0.05) < 0.01].sum()


def test_anti_aliasing_removes_energy_above_the_new_nyquist() -> None:
    aliased, kept = _aliasing(anti_alias=True)
    assert aliased < 1e-3
    assert kept > 0.8
    # the same downsampling without the filter aliases the high tone at full strength
    aliased_raw, _ = _aliasing(anti_alias=False)
    assert aliased_raw > 0.5


def test_sigma_formula() -> None:
    sigma = anti_alias_sigma(np.diag([3.0, 1.0, 0.5]))
    np.testing.assert_allclose(sigma, [np.sqrt(8 / (8 * np.log(2))), 0.0, 0.0])
    rotated = (_rotation(0.4, 0) @ np.diag([1.0, 2.0, 2.0, 1.0]))[:3]
    np.testing.assert_allclose(anti_alias_sigma(rotated)[1:], np.sqrt(3 / (8 * np.log(2))))


def test_lanczos_agrees_with_simpleitk_on_a_smooth_image() -> None:
    import SimpleITK as sitk
    shape = (20, 24, 28)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    data = 100 * np.sin(k / 3.1) * np.cos(j / 4.3) + 50 * np.sin(i / 2.7 + 0.3)
    vol = _volume(shape=shape, spacing=(1.2, 0.9, 0.8))
    vol = Volume(data, vol.affine)
    grid = vol.affine @ _rotation(0.3, 0)
    grid[:3, 3] += (1.3, -0.7, 0.4)
    out = voxelflow.resample(vol, affine=grid, interp="lanczos", anti_alias=False)
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(Volume(np.zeros(shape), grid).to_sitk())
    f.SetInterpolator(sitk.sitkLanczosWindowedSinc)
    f.SetOutputPixelType(sitk.sitkFloat64)
    expected = sitk.GetArrayFromImage(f.Execute(vol.to_sitk()))
    p = _input_positions(vol, out)
    interior = np.all([(p[a] >= 3) & (p[a] <= shape[a] - 4) for a in range(3)], axis=0)
    assert interior.sum() > 2000
    # ITK does not normalise its weights (a constant 100 comes out as 99.72 at these
    # fractions: 0.3% low) and both windowed sincs are ~0.5% off this image's analytic
    # values; measured max difference 0.56 = 0.37% of the amplitude 150, bound 1%.
    assert np.abs(out.array - expected)[interior].max() <= 0.01 * np.abs(data).max()
    linear = voxelflow.resample(vol, affine=grid, interp="linear", anti_alias=False)
    assert np.abs(out.array - expected)[interior].max() < np.abs(linear.array - expected)[interior].max()


# -- labels, dtypes, paths -------------------------------------------------------------------


def _blocks(labels: np.ndarray) -> Volume:
    """A volume of 2x2x2 blocks, one per entry of `labels`, spacing 1 mm."""
    data = labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]))


def _block_grid(vol: Volume, factor: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A grid of `factor`-mm voxels whose footprints start at input voxel 0's lower edge."""
    grid = np.diag([factor, factor, factor, 1.0])
    grid[:3, 3] = (factor - 1.0) / 2.0
    return grid, tuple(int(n // factor) for n in vol.shape)  # type: ignore[return-value]


def test_majority_returns_the_block_labels() -> None:
    labels = np.random.default_rng(8).choice(np.array([2, 5, 9, 40], np.int16), (3, 4, 5))
    vol = _blocks(labels)
    grid, shape = _block_grid(vol, 2.0)
    for interp in ("majority", "mode"):
        out = voxelflow.resample(vol, affine=grid, shape=shape, interp=interp)
        assert out.dtype == np.int16
        np.testing.assert_array_equal(out.array, labels)


def test_majority_votes_and_breaks_ties_to_the_smallest_label() -> None:
    data = np.zeros((2, 2, 2), np.uint8)
    data[0] = 7  # 4 voxels of 7, 4 of 0 in one footprint: a tie
    grid, shape = _block_grid(Volume(data, np.eye(4)), 2.0)
    assert voxelflow.resample(Volume(data, np.eye(4)), affine=grid, shape=shape,
                              interp="majority").array.ravel().tolist() == [0]
    data[1, 0, 0] = 7  # 5 against 3
    assert voxelflow.resample(Volume(data, np.eye(4)), affine=grid, shape=shape,
                              interp="majority").array.ravel().tolist() == [7]
    data[...] = [[[3, 3], [1, 1]], [[2, 2], [8, 8]]]  # four pairs: all tie, 1 wins
    assert majority_vote(data, grid, shape).ravel().tolist() == [1]


@pytest.mark.parametrize("spacing", [(3.0, 2.0, 1.5), (1.7, 2.5, 4.0)])
def test_majority_never_blurs_and_keeps_dtype(spacing) -> None:
    rng = np.random.default_rng(9)
    labels = rng.choice(np.array([0, 3, 7, 250], np.uint8), size=(12, 14, 16))
    vol = Volume(labels, np.diag([2.0, 1.0, 1.0, 1.0]))
    out = voxelflow.resample(vol, spacing=spacing, interp="majority")
    assert out.dtype == np.uint8
    assert set(np.unique(out.array)) <= {0, 3, 7, 250}
    # where a footprint holds one label only, that is the vote
    smooth = Volume(np.repeat(labels[:, :1, :1], 14, 1).repeat(16, 2) // 250 * 250, vol.affine)
    out = voxelflow.resample(smooth, spacing=spacing, interp="majority", dtype=np.int32)
    assert out.dtype == np.int32 and set(np.unique(out.array)) <= {0, 250}


def test_majority_without_downsampling_equals_nearest() -> None:
    labels = np.random.default_rng(10).integers(0, 6, (8, 9, 10)).astype(np.int32)
    vol = Volume(labels, np.diag([2.0, 1.0, 1.0, 1.0]))
    for spacing in (0.5, (2.0, 0.7, 1.0), (1.3, 1.0, 0.9)):
        majority = voxelflow.resample(vol, spacing=spacing, interp="majority", cval=-1)
        nearest = voxelflow.resample(vol, spacing=spacing, interp="nearest", cval=-1)
        np.testing.assert_array_equal(majority.array, nearest.array)


def test_majority_needs_an_axis_aligned_grid() -> None:
    vol = _volume(dtype=np.int16)
    with pytest.raises(ResampleError, match="majority.*axis-aligned"):
        voxelflow.resample(vol, affine=vol.affine @ _rotation(0.3, 0), interp="majority")


def test_labels_never_blur() -> None:
    rng = np.random.default_rng(5)
    labels = rng.choice(np.array([0, 3, 7, 250], np.uint8), size=(10, 12, 14))
    vol = Volume(labels, np.diag([2.0, 1.0, 1.0, 1.0]))
    for spacing in (0.5, 3.0):
        out = voxelflow.resample(vol, spacing=spacing, interp="nearest")
        assert out.dtype == np.uint8
        assert set(np.unique(out.array)) <= {0, 3, 7, 250}
    out = voxelflow.resample(vol, affine=vol.affine @ _rotation(0.3, 0), interp="nearest")
    assert set(np.unique(out.array)) <= {0, 3, 7, 250}
    mask = Volume(labels > 5, vol.affine)
    assert voxelflow.resample(mask, spacing=0.7, interp="nearest").dtype == np.bool_


@pytest.mark.parametrize("interp", ["nearest", "linear", "cubic", "lanczos"])
@pytest.mark.parametrize("anti_alias", [False, True])
def test_separable_path_equals_general_path(interp: str, anti_alias: bool) -> None:
    vol = _volume(dtype=np.float32)
    affine, shape = output_grid(vol, spacing=(1.1, 1.9, 0.5))
    matrix = (np.linalg.inv(vol.affine) @ affine)[:3]
    fast = sample_grid(vol.array, matrix, shape, order=INTERPOLATIONS[interp],
                       anti_alias=anti_alias)
    general_matrix = matrix.copy()
    general_matrix[0, 1] = 1e-300  # not diagonal: forces the general kernel
    general = sample_grid(vol.array, general_matrix, shape, order=INTERPOLATIONS[interp],
                          anti_alias=anti_alias)
    np.testing.assert_allclose(fast, general, rtol=2e-6, atol=2e-4)


def test_integer_output_rounds_and_saturates() -> None:
    vol = _volume(dtype=np.int16)
    out = voxelflow.resample(vol, spacing=0.9, dtype=np.uint8)
    assert out.dtype == np.uint8
    as_float = voxelflow.resample(vol, spacing=0.9, dtype=np.float64).array
    np.testing.assert_array_equal(out.array, np.clip(np.rint(as_float), 0, 255))


def test_four_d_volumes_resample_per_volume() -> None:
    vol = _volume()
    stack = Volume(np.stack([vol.array, 2 * vol.array]), vol.affine)
    out = voxelflow.resample(stack, spacing=1.0)
    single = voxelflow.resample(vol, spacing=1.0)
    np.testing.assert_allclose(out.array[1], 2 * single.array, rtol=1e-12)


@pytest.mark.parametrize("interp", ["linear", "lanczos"])
@pytest.mark.parametrize("backend", ["reference", "cython", "numba"])
def test_backends_agree_through_the_api(backend: str, interp: str) -> None:
    vol = _volume(shape=(5, 6, 7))
    grid = vol.affine @ _rotation(0.2, 2)
    expected = voxelflow.resample(vol, affine=grid, backend="reference", interp=interp)
    out = voxelflow.resample(vol, affine=grid, backend=backend, interp=interp)
    np.testing.assert_array_equal(out.array, expected.array)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"spacing": 1.0, "shape": (2, 2, 2)},
        {"spacing": -1.0},
        {"spacing": (1.0, 2.0)},
        {"shape": (2.5, 3, 3)},
        {"spacing": 1.0, "interp": "quadratic"},
        {"like": "not a volume", "spacing": 1.0},
        {"affine": np.zeros((4, 4))},
    ],
)
def test_bad_requests_raise(kwargs: dict) -> None:
    with pytest.raises(ResampleError) as info:
        voxelflow.resample(_volume(), **kwargs)
    assert isinstance(info.value, (VoxelflowError, ValueError))


# -- reorient ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "columns",
    [
        ((0, 0, 1), (0, 1, 0), (1, 0, 0)),  # axial LPS
        ((0, 0, -1), (0, -1, 0), (-1, 0, 0)),
        ((1, 0, 0), (0, 0, -1), (0, 1, 0)),  # sagittal-ish stack
        ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
    ],
)
def test_reorient_equals_nibabel_closest_canonical(tmp_path, columns) -> None:
    import nibabel as nib
    rng = np.random.default_rng(9)
    affine = np.eye(4)
    for a, (col, sp) in enumerate(zip(columns, (2.0, 0.8, 0.7))):
        affine[:3, a] = np.array(col, float) * sp
    affine[:3, :3] = _rotation(0.1, 1)[:3, :3] @ affine[:3, :3]  # slightly oblique
    affine[:3, 3] = (3.0, -4.0, 5.0)
    vol = Volume(rng.integers(0, 1000, (5, 6, 7)).astype(np.int16), affine)
    vol.to_nifti(tmp_path / "in.nii")
    canonical = nib.as_closest_canonical(nib.load(tmp_path / "in.nii"))
    ras = voxelflow.reorient(vol, "RAS")
    ras.to_nifti(tmp_path / "out.nii")
    mine = nib.load(tmp_path / "out.nii")
    np.testing.assert_array_equal(np.asanyarray(mine.dataobj), np.asanyarray(canonical.dataobj))
    np.testing.assert_allclose(mine.affine, canonical.affine, atol=1e-5)
    # every voxel keeps its world position, and LPS takes it back to a plain axial layout
    back = voxelflow.reorient(ras, "lps")
    centre = back.affine @ [1, 2, 3, 1]
    k, j, i = np.rint(np.linalg.solve(vol.affine, centre)[:3]).astype(int)
    assert back.array[1, 2, 3] == vol.array[k, j, i]


def test_reorient_rejects_bad_codes() -> None:
    for codes in ("LPX", "LLS", "RA", "LRS"):
        with pytest.raises(ResampleError, match="codes"):
            voxelflow.reorient(_volume(), codes)
