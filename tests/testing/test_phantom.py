"""The torso phantom: plausible values, anatomy in the right places, scaling with spacing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from voxelflow.errors import ParameterError
from voxelflow.testing import TISSUES, phantom_volume
from voxelflow.testing.phantom import phantom_labels

CT_VALUES = {entry[1] for entry in TISSUES.values()}


@pytest.fixture(scope="module")
def ct():
    return phantom_volume((64, 128, 128), spacing=(5.0, 2.8, 2.8), noise=False)


def test_dtype_shape_and_determinism():
    a = phantom_volume((6, 40, 50), spacing=(2.0, 1.0, 1.0), seed=1)
    assert a.shape == (6, 40, 50) and a.dtype == np.int16
    np.testing.assert_array_equal(a, phantom_volume((6, 40, 50), spacing=(2.0, 1.0, 1.0), seed=1))
    assert not np.array_equal(a, phantom_volume((6, 40, 50), spacing=(2.0, 1.0, 1.0), seed=2))
    mr = phantom_volume((6, 40, 50), spacing=(2.0, 1.0, 1.0), modality="MR")
    assert mr.dtype == np.uint16 and mr.max() <= 4095


def test_noiseless_ct_holds_only_tissue_values(ct):
    assert set(np.unique(ct).tolist()) <= CT_VALUES


def test_plausible_hu_statistics(ct):
    body = ct > -500
    assert 0.25 < body.mean() < 0.6
    assert (ct == -1000).mean() > 0.2  # air around the body
    assert ct[:, 0, 0].max() == -1000 and ct[:, -1, -1].max() == -1000
    inside = ct[body]
    assert 20 <= np.median(inside) <= 60  # soft tissue dominates the body
    assert (ct == -100).any() and (ct == -850).any()  # fat, lungs
    assert (ct >= 400).mean() > 0.002 and ct.max() >= 1000  # bone, cortical
    assert (ct == 200).any()  # contrast vessels
    for value in (60, 45, 35):  # liver, spleen/heart, kidney
        assert (ct == value).any()


def test_noise_is_about_ten_hu():
    noisy = phantom_volume((8, 96, 96), spacing=(5.0, 4.0, 4.0), seed=3)
    clean = phantom_volume((8, 96, 96), spacing=(5.0, 4.0, 4.0), noise=False)
    soft = clean == 40
    diff = noisy[soft].astype(float) - 40
    assert abs(diff.mean()) < 1.0 and 8.0 < diff.std() < 12.0
    assert noisy.min() >= -1024


def test_anatomy_in_the_right_places(ct):
    # Axial: axis 1 runs anterior -> posterior, axis 2 patient right -> left; z rises.
    lungs = np.argwhere(ct == -850)
    bone = np.argwhere(ct == 1300)
    liver = np.argwhere(ct == 60)
    assert lungs[:, 0].mean() > liver[:, 0].mean()  # lungs above the liver
    assert bone[:, 1].mean() > 64  # spine posterior
    assert liver[:, 2].mean() < 64  # liver on the patient's right
    assert ct.shape[0] // 2 in set(lungs[:, 0]) or ct.shape[0] // 2 in set(liver[:, 0])


def test_anatomy_scales_with_spacing():
    # The same field of view at two resolutions: same tissue fractions.
    coarse = phantom_volume((24, 64, 64), spacing=(5.0, 3.0, 3.0), noise=False)
    fine = phantom_volume((24, 128, 128), spacing=(5.0, 1.5, 1.5), noise=False)
    for value in (-1000, -850, 40, 60):
        assert abs((coarse == value).mean() - (fine == value).mean()) < 0.01
    # Anisotropic pixels keep the body's shape in mm: width / depth ~ 340 / 240.
    aniso = phantom_volume((1, 200, 100), spacing=(1.0, 1.0, 2.0), noise=False)[0]
    body = aniso > -500
    width = body.any(axis=0).sum() * 2.0
    depth = body.any(axis=1).sum() * 1.0
    assert width / depth == pytest.approx(340 / 240, rel=0.05)


def test_small_field_of_view_shrinks_the_body_to_fit():
    small = phantom_volume((4, 32, 32), spacing=(1.0, 1.0, 1.0), noise=False)
    assert small[:, 0, :].max() == -1000 and small[:, :, 0].max() == -1000
    assert (small > -500).mean() > 0.2


def test_oblique_labels_match_axis_aligned_ones_where_planes_coincide():
    positions = np.array([[-50.0, -50.0, z] for z in (-10.0, 0.0, 10.0)])
    axial = phantom_labels(positions, (1, 0, 0), (0, 1, 0), (1.0, 1.0), (100, 100))
    tiny = 1e-7  # a rotation this small takes the general (sampled) path
    row = (np.cos(tiny), np.sin(tiny), 0.0)
    col = (-np.sin(tiny), np.cos(tiny), 0.0)
    sampled = phantom_labels(positions, row, col, (1.0, 1.0), (100, 100))
    assert (axial == sampled).mean() > 0.97


@pytest.mark.parametrize("kwargs", [
    {"shape": (0, 4, 4)}, {"shape": (4, 4)}, {"spacing": (1.0, -1.0, 1.0)},
    {"spacing": (1.0, 1.0)}, {"modality": "PET"},
])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ParameterError):
        phantom_volume(**{"shape": (2, 8, 8), **kwargs})


@pytest.mark.slow
def test_large_volume_is_fast():
    start = time.perf_counter()
    volume = phantom_volume((300, 512, 512), spacing=(1.0, 0.7, 0.7))
    assert volume.shape == (300, 512, 512)
    assert time.perf_counter() - start < 15.0
