"""Plane.oblique's default orientation: the nearest standard view, kept upright.

Each standard plane is tilted by up to 45 degrees about each of its in-plane axes (the two
rotations that keep it nearest its own view); the image must then show the view's up at the
top and, for near-axial planes, the patient's right on the image's left.
"""

from __future__ import annotations

import numpy as np
import pytest

from voxelflow import Plane, Volume, project
from voxelflow.geometry import rotation_matrix
from voxelflow.render.project import viewer_up

ANGLES = (0.0, 5.0, 20.0, 30.0, 44.0, 45.0)
LEFT, POSTERIOR, SUPERIOR = np.eye(3)
ANTERIOR, RIGHT = -POSTERIOR, -LEFT

# name: (normal, the direction the image's top must show, the in-plane axes to tilt about)
VIEWS = {
    "axial": (SUPERIOR, ANTERIOR, (LEFT, POSTERIOR)),
    "coronal": (POSTERIOR, SUPERIOR, (LEFT, SUPERIOR)),
    "sagittal": (RIGHT, SUPERIOR, (POSTERIOR, SUPERIOR)),
}


def tilted(normal: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    return rotation_matrix(axis, degrees) @ normal


def cases():
    for name, (normal, _, axes) in VIEWS.items():
        for k, axis in enumerate(axes):
            for degrees in ANGLES:
                for sign in (1.0, -1.0):
                    yield pytest.param(name, tilted(normal, axis, sign * degrees),
                                       id=f"{name}-axis{k}-{sign * degrees:+g}")


def nearest(normal: np.ndarray) -> str:
    # the largest component; at exactly 45 degrees the two rounded components decide (either
    # view is then a correct reading), and on an exact tie the documented order: axial first
    return ("axial", "coronal", "sagittal")[int(np.argmax(np.abs(normal[[2, 1, 0]])))]


@pytest.mark.parametrize("view, normal", list(cases()))
@pytest.mark.parametrize("flip", [False, True], ids=["as-given", "reversed"])
def test_default_orientation_keeps_the_nearest_view_upright(view: str, normal: np.ndarray, flip: bool) -> None:
    given = -normal if flip else normal
    plane = Plane.oblique((10.0, -20.0, 30.0), given)
    shown = nearest(normal)
    view_normal, top, _ = VIEWS[shown]
    # top of the image: -col; the plane's normal is turned to the view's side
    assert -plane.col @ top > 0.0
    assert plane.normal @ view_normal > 0.0
    np.testing.assert_allclose(np.abs(plane.normal), np.abs(normal), atol=1e-12)
    np.testing.assert_allclose(plane.normal, np.cross(plane.row, plane.col), atol=1e-12)
    assert abs(plane.row @ plane.col) < 1e-12
    if shown == "axial":
        assert plane.row @ LEFT > 0.0  # patient right on the image's left
    elif shown == "coronal":
        assert plane.row @ LEFT > 0.0  # seen from the front
    else:
        assert plane.row @ POSTERIOR > 0.0  # seen from the patient's left: anterior on the left


@pytest.mark.parametrize("make, normal", [(Plane.axial, SUPERIOR), (Plane.coronal, POSTERIOR),
                                          (Plane.sagittal, RIGHT)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_untilted_default_is_the_standard_plane(make, normal: np.ndarray, sign: float) -> None:
    standard = make((1.0, 2.0, 3.0))
    plane = Plane.oblique((1.0, 2.0, 3.0), sign * normal)
    np.testing.assert_allclose(plane.row, standard.row, atol=1e-15)
    np.testing.assert_allclose(plane.col, standard.col, atol=1e-15)


def test_the_readme_style_tilt_is_not_upside_down() -> None:
    # a plane ~37 degrees off axial (the README's example): superior projected into it points
    # posterior, which the old default put at the top (the spine up)
    plane = Plane.oblique((0.0, 0.0, 0.0), (0.3, -0.5, 0.8))
    assert -plane.col @ ANTERIOR > 0.5
    assert plane.row @ LEFT > 0.5


def test_explicit_up_keeps_the_given_normal() -> None:
    plane = Plane.oblique((0.0, 0.0, 0.0), (0.0, 0.0, -1.0), up=(0.0, -1.0, 0.0))
    np.testing.assert_allclose(plane.normal, (0.0, 0.0, -1.0))
    np.testing.assert_allclose(-plane.col, ANTERIOR)


def test_projections_keep_the_viewers_side() -> None:
    # the posterior view of a projection is the mirror of the anterior one, not a copy
    rng = np.random.default_rng(7)
    volume = Volume(rng.integers(0, 1000, (6, 9, 11)).astype(np.int16), np.diag([0.8, 0.9, 1.0, 1.0]))
    front = project(volume, direction=POSTERIOR)
    back = project(volume, direction=ANTERIOR)
    np.testing.assert_array_equal(back, front[:, ::-1])
    assert viewer_up(SUPERIOR) @ ANTERIOR == 1.0
