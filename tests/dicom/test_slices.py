"""A plan's slices decoded into an array or lazily (SliceStack): indexing equals the eager
volume, only indexed files are decoded, the lazy path steps aside where the whole volume is
needed, and a bad slice found while a store writes the stack fails that volume alone."""

from __future__ import annotations

import numpy as np
import pytest

import voxelflow.dicom.decode as decode_module
from voxelflow.dicom.scan import scan
from voxelflow.dicom.series import SeriesError, build_volume, plan_volumes
from voxelflow.dicom.slices import SliceStack, decode_slices
from voxelflow.errors import ParameterError
from voxelflow.ingest import ingest
from voxelflow.store import VolumeStore
from voxelflow.testing import write_mosaic_series, write_series

SHAPE = (9, 24, 20)


def only_plan(folder):
    plans, failures = plan_volumes(scan([str(folder)]).rows)
    assert not failures
    (plan,) = plans
    return plan


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    info = write_series(folder, shape=SHAPE, spacing=(2.0, 0.8, 0.8), shuffle_instance_numbers=True)
    return info, only_plan(folder)


@pytest.fixture
def decoded_files(monkeypatch):
    """The files decode() is called on, in order."""
    calls: list[str] = []
    real = decode_module.decode

    def counting(src, **kwargs):
        calls.append(str(src))
        return real(src, **kwargs)

    monkeypatch.setattr(decode_module, "decode", counting)
    return calls


KEYS = [
    (...),
    (slice(None),),
    (slice(2, 7),),
    (3,),
    (-1,),
    (slice(None, None, 3), slice(5, 10), slice(None, None, 2)),
    (..., 4),
    (2, ..., slice(3, 9)),
    (slice(7, 2, -2), -3),
    (slice(4, 4),),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_indexing_equals_the_eager_volume(series, key):
    info, plan = series
    stack = build_volume(plan, lazy=True).array
    assert isinstance(stack, SliceStack)
    assert stack.shape == SHAPE and stack.dtype == info.volume.dtype and len(stack) == SHAPE[0]
    got = stack[key]
    expected = info.volume[key]
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert got.flags.c_contiguous


def test_only_the_indexed_slices_are_decoded(series, decoded_files):
    info, plan = series
    stack = build_volume(plan, lazy=True).array
    decoded_files.clear()
    np.testing.assert_array_equal(stack[2:5, 3:7], info.volume[2:5, 3:7])
    assert decoded_files == [s.path for s in plan.geometry.slices[2:5]]
    decoded_files.clear()
    np.testing.assert_array_equal(np.asarray(stack), info.volume)
    assert len(decoded_files) == SHAPE[0]


@pytest.mark.parametrize("key", [[1, 2], None, np.array([0, 1]), (0, 1, 2, 3), (..., 1, ...), 1.0])
def test_unsupported_indices_raise(series, key):
    stack = build_volume(series[1], lazy=True).array
    with pytest.raises(ParameterError):
        stack[key]


def test_decode_slices_names_a_slice_that_does_not_fit(series):
    info, plan = series
    with pytest.raises(SeriesError, match=str(plan.geometry.slices[0].path)):
        decode_slices(plan.geometry.slices[:2], np.empty((2, 24, 21), info.volume.dtype))
    with pytest.raises(SeriesError, match="decoding needs"):
        decode_slices(plan.geometry.slices[:2], np.empty((2, 24, 20), np.float32))


def test_lazy_4d_mosaic_stack_equals_the_eager_volume(tmp_path, decoded_files):
    info = write_mosaic_series(tmp_path, shape=(5, 12, 16), spacing=(3.0, 2.0, 2.0), time_points=3)
    plan = only_plan(tmp_path)
    stack = build_volume(plan, lazy=True).array
    assert isinstance(stack, SliceStack) and stack.shape == info.volume.shape
    np.testing.assert_array_equal(stack[1, 2:4], info.volume[1, 2:4])
    np.testing.assert_array_equal(stack[:, -1, 3], info.volume[:, -1, 3])
    decoded_files.clear()
    np.testing.assert_array_equal(np.asarray(stack), info.volume)
    assert sorted(decoded_files) == sorted(str(p) for p in info.paths)  # each mosaic once


def test_values_that_need_the_whole_volume_are_decoded_eagerly(tmp_path):
    info = write_series(tmp_path / "rescale", shape=(6, 16, 16), per_slice_rescale=True)
    volume = build_volume(only_plan(tmp_path / "rescale"), lazy=True)
    assert isinstance(volume.array, np.ndarray) and volume.meta["values"] == "modality"
    write_series(tmp_path / "gap", shape=(8, 16, 16), missing_slices=[3])
    plans, _ = plan_volumes(scan([str(tmp_path / "gap")]).rows)
    assert all(isinstance(build_volume(p, lazy=True).array, SliceStack) for p in plans)  # split
    del info


def test_lazy_and_eager_volumes_store_the_same(series, tmp_path):
    info, plan = series
    store = VolumeStore(tmp_path / "s")
    store.write("lazy", build_volume(plan, lazy=True))
    store.write("eager", build_volume(plan))
    np.testing.assert_array_equal(store.open("lazy").to_numpy(), info.volume)
    levels = store.info("eager")["voxelflow"]["levels"]
    assert store.info("lazy")["voxelflow"]["levels"] == levels
    for n in range(len(levels)):
        lazy, eager = store.open("lazy", level=n), store.open("eager", level=n)
        np.testing.assert_array_equal(lazy.to_numpy(), eager.to_numpy())
        assert lazy.meta == eager.meta


def test_a_slice_failing_while_stored_fails_its_volume_only(tmp_path):
    good = write_series(tmp_path / "src" / "good", shape=(70, 16, 16), series_number=1, seed=1)
    bad = write_series(
        tmp_path / "src" / "bad", shape=(70, 16, 16), series_number=2, seed=2, transfer_syntax="rle"
    )
    # the header scans fine; the RLE header of a slice in the second slab (slices 64..69) claims
    # 255 segments (PS3.5 G.5 allows 15): only decoding finds out
    victim = bad.paths[66]
    data = bytearray(victim.read_bytes())
    item = b"\xfe\xff\x00\xe0"
    fragment = data.index(item, data.index(item) + 8)  # after the Basic Offset Table item
    data[fragment + 8 : fragment + 12] = (255).to_bytes(4, "little")
    victim.write_bytes(bytes(data))
    report = ingest(tmp_path / "src", tmp_path / "store")
    assert [v.shape for v in report.volumes] == [(70, 16, 16)]
    ((what, reason),) = report.failures
    assert what.startswith(bad.series_uid) and victim.name in reason
    store = VolumeStore(tmp_path / "store")
    (key,) = store.keys()
    np.testing.assert_array_equal(store.open(key).to_numpy(), good.volume)
    assert not list((store.path / ".voxelflow" / "staging").iterdir())
