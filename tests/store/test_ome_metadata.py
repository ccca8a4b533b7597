"""OME-Zarr 0.5 conformance of stored volumes, and what plain zarr sees.

The JSON schema below is written from the MUST/SHOULD statements of the OME-Zarr 0.5
specification ("axes", "coordinateTransformations" and "multiscales" metadata; the strict
variant requires name, type and metadata); the rules a schema cannot state (axis order by
type, levels ordered from largest to smallest, array dimension names) are checked in code.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
import zarr

from voxelflow.store import VolumeStore
from voxelflow.store.metadata import frame_translation
from voxelflow.volume import Volume

SPACE_UNITS = [
    "angstrom",
    "attometer",
    "centimeter",
    "decimeter",
    "exameter",
    "femtometer",
    "foot",
    "gigameter",
    "hectometer",
    "inch",
    "kilometer",
    "megameter",
    "meter",
    "micrometer",
    "mile",
    "millimeter",
    "nanometer",
    "parsec",
    "petameter",
    "picometer",
    "terameter",
    "yard",
    "yoctometer",
    "yottameter",
    "zeptometer",
    "zettameter",
]

TRANSFORMS = {
    "type": "array",
    "minItems": 1,
    "maxItems": 2,
    "prefixItems": [
        {
            "type": "object",
            "properties": {
                "type": {"const": "scale"},
                "scale": {"type": "array", "minItems": 2, "items": {"type": "number"}},
            },
            "required": ["type", "scale"],
        },
        {
            "type": "object",
            "properties": {
                "type": {"const": "translation"},
                "translation": {"type": "array", "minItems": 2, "items": {"type": "number"}},
            },
            "required": ["type", "translation"],
        },
    ],
}

IMAGE_SCHEMA = {
    "type": "object",
    "required": ["ome"],
    "properties": {
        "ome": {
            "type": "object",
            "required": ["version", "multiscales"],
            "properties": {
                "version": {"const": "0.5"},
                "multiscales": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["axes", "datasets", "name", "type", "metadata"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string"},
                            "metadata": {"type": "object"},
                            "axes": {
                                "type": "array",
                                "minItems": 2,
                                "maxItems": 5,
                                "items": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "type": {"type": "string"},
                                        "unit": {"type": "string"},
                                    },
                                    "if": {
                                        "properties": {"type": {"const": "space"}},
                                        "required": ["type"],
                                    },
                                    "then": {"properties": {"unit": {"enum": SPACE_UNITS}}},
                                },
                            },
                            "datasets": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["path", "coordinateTransformations"],
                                    "properties": {
                                        "path": {"type": "string"},
                                        "coordinateTransformations": TRANSFORMS,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def check_ome_image(folder) -> dict:
    """Validate the OME-Zarr 0.5 image group in `folder`; return its multiscale."""
    document = json.loads((folder / "zarr.json").read_text())
    assert document["zarr_format"] == 3 and document["node_type"] == "group"
    attributes = document["attributes"]
    jsonschema.validate(attributes, IMAGE_SCHEMA)
    (multiscale,) = attributes["ome"]["multiscales"]
    axes = multiscale["axes"]
    names = [axis["name"] for axis in axes]
    types = [axis.get("type") for axis in axes]
    assert len(set(names)) == len(names)
    assert 2 <= types.count("space") <= 3 and types.count("time") <= 1
    order = {"time": 0, "channel": 1, "space": 2}
    assert [order[t] for t in types] == sorted(order[t] for t in types)  # time, channel, space
    previous = None
    for dataset in multiscale["datasets"]:
        transforms = dataset["coordinateTransformations"]
        assert transforms[0]["type"] == "scale"
        for transform in transforms:
            assert len(transform[transform["type"]]) == len(axes)
        array = json.loads((folder / dataset["path"] / "zarr.json").read_text())
        assert array["node_type"] == "array" and len(array["shape"]) == len(axes)
        assert array["dimension_names"] == names
        if previous is not None:  # ordered from largest to smallest
            assert all(a >= b for a, b in zip(previous, array["shape"]))
            assert np.prod(previous) > np.prod(array["shape"])
        previous = array["shape"]
    return multiscale


@pytest.fixture
def store(tmp_path) -> VolumeStore:
    return VolumeStore(tmp_path / "s.zarr")


def rotated(spacing=(2.0, 0.8, 0.6), origin=(10.0, -20.0, 35.5)) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = q * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def test_3d_volume_is_an_ome_zarr_05_image(store):
    array = np.random.default_rng(0).integers(0, 1000, size=(40, 150, 130), dtype=np.int16)
    store.write("a/b", Volume(array, rotated()))
    multiscale = check_ome_image(store.path / "a" / "b")
    assert multiscale["name"] == "a/b" and multiscale["type"] == "mean"
    assert multiscale["axes"] == [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    np.testing.assert_allclose(scales, [[2.0, 0.8, 0.6], [2.0, 1.6, 1.2], [2.0, 3.2, 2.4]])


def test_4d_volume_has_a_leading_time_axis(store):
    store.write("t", Volume(np.zeros((3, 4, 100, 90), np.uint16), np.diag([2.0, 1.0, 1.0, 1.0])))
    multiscale = check_ome_image(store.path / "t")
    assert multiscale["axes"][0] == {"name": "t", "type": "time"}
    for dataset in multiscale["datasets"]:
        scale, translation = (t[t["type"]] for t in dataset["coordinateTransformations"])
        assert scale[0] == 1.0 and translation[0] == 0.0


def test_translation_places_voxels_along_the_volume_axes(store):
    affine = rotated()
    store.write("v", Volume(np.zeros((20, 140, 70), np.int16), affine))
    multiscale = check_ome_image(store.path / "v")
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    levels = store.info("v")["voxelflow"]["levels"]
    assert len(levels) == len(multiscale["datasets"]) == 3
    rng = np.random.default_rng(1)
    for dataset, level in zip(multiscale["datasets"], levels):
        scale, translation = (np.array(t[t["type"]]) for t in dataset["coordinateTransformations"])
        for index in rng.integers(0, 20, size=(5, 3)):
            ome = scale * index + translation  # OME physical coordinates (z, y, x), mm
            lps = np.array(level["affine"]) @ [*index, 1]
            np.testing.assert_allclose(directions @ ome, lps[:3], atol=1e-9)


def test_axial_translation_is_the_lps_origin():
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, 0, 0.7], [0, 0.7, 0], [2.5, 0, 0]])  # k -> +z, j -> +y, i -> +x
    affine[:3, 3] = [-180.0, -150.0, 42.5]
    np.testing.assert_allclose(frame_translation(affine), [42.5, -150.0, -180.0])


def test_plain_zarr_opens_the_store_and_the_volume(store):
    array = np.arange(30 * 70 * 66, dtype=np.int32).reshape(30, 70, 66)
    store.write("study/series/1", Volume(array, np.eye(4), {"modality": "MR"}))
    group = zarr.open_group(store.path / "study" / "series" / "1", mode="r")
    assert group.attrs["ome"]["version"] == "0.5"
    assert group.attrs["voxelflow"]["meta"] == {"modality": "MR"}
    np.testing.assert_array_equal(group["0"][...], array)
    assert group["1"].shape == (30, 35, 33)
    root = zarr.open_group(store.path, mode="r")
    np.testing.assert_array_equal(root["study/series/1/0"][5], array[5])
    assert root.attrs["voxelflow"]["type"] == "store"


@pytest.mark.parametrize(
    "damage",
    [
        lambda ms: ms.pop("name"),
        lambda ms: ms["datasets"][0]["coordinateTransformations"][0]["scale"].pop(),
        lambda ms: ms["datasets"][0]["coordinateTransformations"].reverse(),
        lambda ms: ms["axes"][0].update(unit="mm"),
        lambda ms: ms["datasets"].reverse(),
        lambda ms: ms["axes"].reverse(),
    ],
)
def test_the_checker_catches_broken_metadata(store, damage):
    store.write("v", Volume(np.zeros((4, 70, 70), np.int16), np.diag([3.0, 1.0, 1.0, 1.0])))
    document = store.path / "v" / "zarr.json"
    body = json.loads(document.read_text())
    damage(body["attributes"]["ome"]["multiscales"][0])
    document.write_text(json.dumps(body))
    with pytest.raises((jsonschema.ValidationError, AssertionError)):
        check_ome_image(store.path / "v")
