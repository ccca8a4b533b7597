"""voxelflow.mpr: planes and slabs against slices, scipy and brute force; chunk-bounded reads
of stored volumes; pyramid levels; bad requests."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
import scipy.ndimage as ndi

import voxelflow
from voxelflow import Plane, Slab
from voxelflow.errors import MissingChunkError, RenderError
from voxelflow.render import RenderLimits
from voxelflow.render.chunks import touched_chunks
from voxelflow.store import VolumeStore
from voxelflow.store.checked_store import ChunkCheckedStore, parse_chunk_key
from voxelflow.volume import Volume

SPACING = (2.5, 0.8, 0.7)


def _axial_affine(shape: tuple[int, int, int], spacing=SPACING, origin=(-20.0, 13.0, -41.0)) -> np.ndarray:
    a = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2] = spacing  # k -> superior, j -> posterior, i -> left
    a[:3, 3] = origin
    a[3, 3] = 1.0
    return a


@pytest.fixture(scope="module")
def ct() -> Volume:
    rng = np.random.default_rng(11)
    shape = (17, 23, 29)
    data = rng.integers(-1000, 2000, shape).astype(np.int16)
    return Volume(data, _axial_affine(shape), {"modality": "CT"})


def _voxel(volume: Volume, index) -> np.ndarray:
    return (volume.affine @ np.append(np.asarray(index, float), 1.0))[:3]


def _index_coords(volume: Volume, positions: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(volume.affine)
    return positions @ inv[:3, :3].T + inv[:3, 3]


def _inside(coords: np.ndarray, shape) -> np.ndarray:
    n = np.array(shape, float)
    return np.all((coords >= -0.5) & (coords <= n - 0.5), axis=-1)


# -- exactness on voxel centres ------------------------------------------------------------


@pytest.mark.parametrize("interp", ["nearest", "linear", "cubic"])
def test_axial_plane_through_voxel_centres_is_the_slice(ct: Volume, interp: str) -> None:
    nz, ny, nx = ct.shape
    for k in (0, 7, nz - 1):
        plane = Plane.axial(_voxel(ct, (k, (ny - 1) / 2, (nx - 1) / 2)), spacing=SPACING[1:], size=(ny, nx))
        image = voxelflow.mpr(ct, plane, interp=interp)
        if interp == "cubic":
            np.testing.assert_allclose(image, ct.array[k], atol=1e-3)  # float32 of an exact spline
        else:
            np.testing.assert_array_equal(image, ct.array[k].astype(np.float32))


def test_coronal_and_sagittal_through_voxel_centres_are_the_slices(ct: Volume) -> None:
    nz, ny, nx = ct.shape
    j, i = 5, 11
    coronal = Plane.coronal(_voxel(ct, ((nz - 1) / 2, j, (nx - 1) / 2)), spacing=(SPACING[0], SPACING[2]), size=(nz, nx))
    # rows run inferior, k runs superior
    np.testing.assert_array_equal(voxelflow.mpr(ct, coronal), ct.array[::-1, j, :])
    sagittal = Plane.sagittal(_voxel(ct, ((nz - 1) / 2, (ny - 1) / 2, i)), spacing=(SPACING[0], SPACING[1]), size=(nz, ny))
    np.testing.assert_array_equal(voxelflow.mpr(ct, sagittal), ct.array[::-1, :, i])


def test_plane_fitted_to_an_axial_volume_lands_on_its_voxels(ct: Volume) -> None:
    plane = Plane.axial(ct, spacing=SPACING[1:])
    assert plane.size == ct.shape[1:]
    # by default, square pixels of the smallest spacing over the same extent
    square = Plane.axial(ct)
    assert square.spacing == (0.7, 0.7) and square.size == (26, 29)
    np.testing.assert_array_equal(voxelflow.mpr(ct, plane), ct.array[(ct.shape[0] - 1) // 2])


# -- against scipy and brute force ----------------------------------------------------------


def _oblique(volume: Volume, size=(31, 37), spacing=(0.9, 0.6)) -> Plane:
    centre = _voxel(volume, (np.array(volume.shape) - 1) / 2) + (1.3, -0.7, 2.1)
    return Plane.oblique(centre, (0.3, -0.5, 0.8), up=(0.2, 0.1, 1.0), spacing=spacing, size=size)


def test_oblique_linear_equals_map_coordinates(ct: Volume) -> None:
    data = ct.array.astype(np.float32)
    volume = ct.with_array(data)
    plane = _oblique(volume, size=(60, 70), spacing=(0.7, 0.5))
    image = voxelflow.mpr(volume, plane)
    coords = _index_coords(volume, plane.positions())
    inside = _inside(coords, volume.shape)
    assert inside.mean() > 0.3 and not inside.all()
    expected = ndi.map_coordinates(data, np.moveaxis(coords, -1, 0), order=1, mode="nearest")
    np.testing.assert_allclose(image[inside], expected[inside], rtol=1e-5, atol=1e-3)
    assert np.isnan(image[~inside]).all()


@pytest.mark.parametrize("mode", ["max", "min", "mean", "sum"])
@pytest.mark.parametrize("samples", [1, 4, 9])
def test_slab_equals_brute_force(ct: Volume, mode: str, samples: int) -> None:
    data = ct.array.astype(np.float64)
    plane = _oblique(ct)
    thickness = 6.0
    image = voxelflow.mpr(ct, plane, slab=Slab(thickness, mode, samples=samples))
    step = thickness / samples
    values, masks = [], []
    for s in range(samples):
        offset = (s - (samples - 1) / 2) * step
        coords = _index_coords(ct, plane.positions() + offset * plane.normal)
        values.append(ndi.map_coordinates(data, np.moveaxis(coords, -1, 0), order=1, mode="nearest"))
        masks.append(_inside(coords, ct.shape))
    v = np.ma.array(np.stack(values), mask=~np.stack(masks))
    expected = {"max": v.max, "min": v.min, "mean": v.mean, "sum": v.sum}[mode](axis=0)
    any_inside = np.stack(masks).any(axis=0)
    np.testing.assert_allclose(image[any_inside], expected.data[any_inside], rtol=1e-5, atol=1e-2)
    assert np.isnan(image[~any_inside]).all()


def test_slab_sampling_rule() -> None:
    assert Slab(20, "mip", spacing=1.0).plan(0.7, RenderLimits()) == (20, 1.0)
    n, step = Slab(20).plan(0.7, RenderLimits())
    assert n == 29 and step == pytest.approx(20 / 29)
    np.testing.assert_allclose(Slab.offsets(4, 2.5), [-3.75, -1.25, 1.25, 3.75])
    assert Slab(5, "MinIP").mode == "min"


def test_rescale_gives_modality_values(ct: Volume) -> None:
    plane = _oblique(ct)
    raw = voxelflow.mpr(ct, plane, slab=Slab(5, "max", samples=5))
    inside = ~np.isnan(raw)
    scaled = ct.with_array(ct.array, rescale={"slope": 2.0, "intercept": -1024.0}, values="stored")
    got = voxelflow.mpr(scaled, plane, slab=Slab(5, "max", samples=5))
    np.testing.assert_allclose(got[inside], 2.0 * raw[inside] - 1024.0, rtol=1e-6)
    # a negative slope turns the stored minimum into the modality maximum
    flipped = ct.with_array(ct.array, rescale={"slope": -1.0, "intercept": 0.0}, values="stored")
    low = voxelflow.mpr(ct, plane, slab=Slab(5, "min", samples=5))
    np.testing.assert_allclose(voxelflow.mpr(flipped, plane, slab=Slab(5, "max", samples=5))[inside], -low[inside])
    # a ray sum adds the intercept once per inside sample
    total = voxelflow.mpr(ct, plane, slab=Slab(5, "sum", samples=5))
    mean = voxelflow.mpr(ct, plane, slab=Slab(5, "mean", samples=5))
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = np.round(total / mean)
    ok = inside & (np.abs(mean) > 1)
    got = voxelflow.mpr(scaled, plane, slab=Slab(5, "sum", samples=5))
    np.testing.assert_allclose(got[ok], 2.0 * total[ok] - 1024.0 * counts[ok], rtol=1e-5)


def test_display_pipeline_is_the_window_of_the_modality_image(ct: Volume) -> None:
    plane = _oblique(ct)
    pipeline = voxelflow.DisplayPipeline(voi=voxelflow.Window(center=40, width=400))
    image = voxelflow.mpr(ct, plane, display=pipeline)
    values = voxelflow.mpr(ct, plane)
    expected = voxelflow.window(np.nan_to_num(values, nan=-1e9), pipeline)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)
    assert (image[np.isnan(values)] == 0).all()
    # the volume's own window from its metadata
    windowed = ct.with_array(ct.array, windows=[(40, 400)])
    np.testing.assert_array_equal(voxelflow.mpr(windowed, plane, display=True), image)


def test_out_receives_the_image(ct: Volume) -> None:
    plane = _oblique(ct)
    out = np.empty(plane.size, np.float32)
    assert voxelflow.mpr(ct, plane, out=out) is out
    with pytest.raises(RenderError, match="out"):
        voxelflow.mpr(ct, plane, out=np.empty((3, 3), np.float32))


def test_plane_missing_the_volume_is_all_fill(ct: Volume) -> None:
    plane = Plane.axial((1e4, 1e4, 1e4), size=(8, 9))
    assert np.isnan(voxelflow.mpr(ct, plane)).all()
    assert (voxelflow.mpr(ct, plane, cval=-2048) == -2048).all()


# -- stored volumes: chunk-bounded reads, pyramid levels --------------------------------------


@pytest.fixture
def chunk_log(monkeypatch):
    reads: list[tuple[int, tuple[int, ...]]] = []
    check = ChunkCheckedStore._check

    def counting(self, key: str, missing: bool) -> None:
        parsed = parse_chunk_key(key)
        if parsed is not None:
            reads.append(parsed)
        check(self, key, missing)

    monkeypatch.setattr(ChunkCheckedStore, "_check", counting)
    return reads


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    rng = np.random.default_rng(5)
    shape = (48, 80, 96)
    data = rng.integers(0, 3000, shape).astype(np.int16)
    volume = Volume(data, _axial_affine(shape, spacing=(1.0, 1.0, 1.0)), {"modality": "CT"})
    store = VolumeStore(tmp_path_factory.mktemp("render-store"))
    store.write("v", volume, chunks=(8, 8, 8))
    return store, volume


def _chunks_near_samples(volume: Volume, plane: Plane, chunk: int, reach: tuple[int, int]) -> set:
    coords = _index_coords(volume, plane.positions()).reshape(-1, 3)
    coords = coords[_inside(coords, volume.shape)]
    base = np.floor(coords).astype(np.int64)
    found = set()
    for d in itertools.product(range(reach[0], reach[1] + 1), repeat=3):
        v = np.clip(base + d, 0, np.array(volume.shape) - 1)
        found.update(map(tuple, np.unique(v // chunk, axis=0)))
    return found


@pytest.mark.parametrize("interp", ["nearest", "linear"])
def test_stored_volume_reads_only_the_chunks_the_plane_touches(stored, chunk_log, interp) -> None:
    store, volume = stored
    lazy = store.open("v")
    centre = _voxel(volume, (23.5, 40.2, 47.9))
    plane = Plane.oblique(centre, (0.35, 0.2, 0.9), spacing=1.0, size=(40, 40))
    chunk_log.clear()
    image = voxelflow.mpr(lazy, plane, interp=interp, level=0)
    read = {index for level, index in chunk_log}
    np.testing.assert_array_equal(image, voxelflow.mpr(volume, plane, interp=interp))
    needed = _chunks_near_samples(volume, plane, 8, (0, 1))  # what interpolation reads
    bound = _chunks_near_samples(volume, plane, 8, (-1, 2))  # one voxel of slack each way
    assert needed <= read <= bound
    assert len(read) == len(chunk_log)  # each chunk read once
    total = np.prod(np.ceil(np.array(volume.shape) / 8))
    assert len(read) < 0.25 * total


def test_missing_chunk_in_the_view_names_it(tmp_path) -> None:
    shape = (16, 16, 16)
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    store = VolumeStore(tmp_path)
    store.write("v", Volume(data, _axial_affine(shape), {"modality": "CT"}), chunks=(8, 8, 8), pyramid=False)
    (tmp_path / "v" / "0" / "c" / "1" / "0" / "1").unlink()
    volume = store.open("v")
    centre = _voxel(volume, (11.0, 7.5, 7.5))
    with pytest.raises(MissingChunkError, match=r"chunk \(1, 0, 1\)"):
        voxelflow.mpr(volume, Plane.axial(centre, spacing=1.0, size=(16, 16)))
    # a view that does not touch the lost chunk still renders
    elsewhere = Plane.axial(_voxel(volume, (3.0, 7.5, 7.5)), spacing=1.0, size=(16, 16))
    expected = voxelflow.mpr(volume.with_array(data), elsewhere)
    assert np.isfinite(expected).any()
    np.testing.assert_array_equal(voxelflow.mpr(volume, elsewhere), expected)


def test_touched_chunks_of_a_thin_diagonal_sheet_are_few() -> None:
    # a 45-degree plane through a 1024^3 volume of 64^3 chunks: a sheet, not the bounding box
    shape, chunks = (1024, 1024, 1024), (64, 64, 64)
    c = np.sqrt(0.5)
    matrix = np.array([[0.0, c, 0.0, 512 - 255.5 * c], [0.0, c, 0.0, 512 - 255.5 * c], [0.0, 0.0, 1.0, 256.0]])
    found = touched_chunks(matrix, (1, 512, 512), shape, chunks, 1.0)
    box = {tuple(c) for c in found}
    # the sheet crosses 6 x 6 chunks in (z, y) along the diagonal, for each of 8 along x
    diagonal = {(a, a, x) for a in range(5, 11) for x in range(4, 12)}
    assert diagonal <= box
    assert len(found) <= 0.6 * 6 * 6 * 8


def test_coarse_output_uses_the_pyramid(tmp_path, chunk_log) -> None:
    shape = (64, 160, 160)
    data = np.add.outer(np.arange(64), np.add.outer(np.arange(160), np.arange(160))).astype(np.int16)
    volume = Volume(data, _axial_affine(shape, spacing=(1.0, 1.0, 1.0)), {"modality": "CT"})
    store = VolumeStore(tmp_path)
    result = store.write("p", volume, chunks=(16, 32, 32))
    assert len(result.shapes) >= 2
    lazy = store.open("p")
    centre = _voxel(volume, (31.5, 79.5, 79.5))
    fine = Plane.axial(centre, spacing=1.0, size=(64, 64))
    chunk_log.clear()
    voxelflow.mpr(lazy, fine)
    assert {level for level, _ in chunk_log} == {0}
    coarse = Plane.axial(centre, spacing=2.0, size=(64, 64))
    chunk_log.clear()
    image = voxelflow.mpr(lazy, coarse)
    assert {level for level, _ in chunk_log} == {1}
    np.testing.assert_array_equal(image, voxelflow.mpr(store.open("p", level=1), coarse))
    chunk_log.clear()
    voxelflow.mpr(lazy, coarse, level=0)
    assert {level for level, _ in chunk_log} == {0}


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, "size"),
        ({"size": (-3, 4)}, "size"),
        ({"spacing": 0.0}, "spacing"),
        ({"spacing": float("nan")}, "spacing"),
        ({"center": (0, float("nan"), 0)}, "center"),
        ({"row": (1.0, 0.1, 0.0)}, "unit"),
        ({"col": (0.6, 0.8, 0.0)}, "orthogonal"),
        ({"size": (2.5, 3)}, "whole"),
    ],
)
def test_bad_planes_raise(kwargs, match) -> None:
    fields = {"center": (0.0, 0.0, 0.0), "row": (1.0, 0.0, 0.0), "col": (0.0, 1.0, 0.0), "spacing": 1.0, "size": 8}
    fields.update(kwargs)
    with pytest.raises(RenderError, match=match):
        Plane(**fields)


def test_bad_oblique_vectors_raise() -> None:
    with pytest.raises(RenderError, match="parallel"):
        Plane.oblique((0, 0, 0), (0, 0, 1), up=(0, 0, 2))
    with pytest.raises(RenderError, match="zero"):
        Plane.oblique((0, 0, 0), (0, 0, 0))
    with pytest.raises(RenderError, match="normal"):
        Plane.oblique((0, 0, 0), (0, float("inf"), 1))


@pytest.mark.parametrize(
    "slab, match",
    [
        ({"thickness": 0}, "thickness"),
        ({"thickness": -5}, "thickness"),
        ({"thickness": float("nan")}, "thickness"),
        ({"thickness": 10, "mode": "brightest"}, "mode"),
        ({"thickness": 10, "samples": 0}, "samples"),
        ({"thickness": 10, "samples": 4, "spacing": 1.0}, "not both"),
    ],
)
def test_bad_slabs_raise(slab, match) -> None:
    with pytest.raises(RenderError, match=match):
        Slab(**slab)


def test_requests_past_the_limits_fail_before_allocating(ct: Volume) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RenderError, match="limits"):
            voxelflow.mpr(ct, Plane.axial((0, 0, 0), size=(100_000, 100_000)))
        with pytest.raises(RenderError, match="limit"):
            voxelflow.mpr(ct, Plane.axial(ct), slab=Slab(1e6, spacing=0.01))
        with pytest.raises(RenderError, match="limit"):
            voxelflow.mpr(ct, Plane.axial(ct), slab=Slab(10, samples=100), limits=RenderLimits(max_samples=50))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    with pytest.raises(RenderError, match="interp"):
        voxelflow.mpr(ct, Plane.axial(ct), interp="sinc")
    with pytest.raises(RenderError, match="Plane"):
        voxelflow.mpr(ct, "axial")  # type: ignore[arg-type]
    with pytest.raises(RenderError, match="3-D"):
        voxelflow.mpr(ct.with_array(np.zeros((2, 3, 4, 5), np.int16)), Plane.axial(ct))
    with pytest.raises(RenderError, match="level"):
        voxelflow.mpr(ct, Plane.axial(ct), level=2)
