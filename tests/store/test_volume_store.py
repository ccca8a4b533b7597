"""VolumeStore: round trips (oblique, 4-D, odd shapes, every source kind), skip/overwrite,
keys, missing chunks, replaced volumes, incomplete groups, metadata conversion, bad input."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import pickle
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

import voxelflow
from voxelflow.errors import (
    IncompleteVolumeError,
    InvalidKeyError,
    KeyConflictError,
    MissingChunkError,
    ParameterError,
    StoreError,
    VolumeChangedError,
    VolumeNotFoundError,
)
from voxelflow.geometry import affine_from_dicom, slice_normal
from voxelflow.store import COMPRESSORS, VolumeStore, WriteResult
from voxelflow.testing import phantom_volume
from voxelflow.volume import Volume


def oblique_affine(spacing=(2.5, 0.7, 0.8), origin=(-120.5, 88.25, 31.0)) -> np.ndarray:
    """A (k, j, i) -> LPS affine tilted about all three axes (no axis-aligned direction)."""
    a, b, c = np.radians([20.0, -35.0, 12.5])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    rot = rz @ ry @ rx
    iop = [*rot[:, 0], *rot[:, 1]]
    step = slice_normal(iop) * spacing[0]
    return affine_from_dicom(iop, origin, (spacing[1], spacing[2]), step)


META = {
    "modality": "CT",
    "rescale": {"slope": 1.0, "intercept": -1024.0},
    "values": "stored",
    "windows": [
        {"center": 40.0, "width": 400.0, "explanation": "SOFT"},
        {"center": -600.0, "width": 1500.0},
    ],
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "findings": [{"code": "nonuniform_spacing", "min_step": 2.49, "max_step": 2.51}],
    "axes": None,
}


def ct_volume(shape=(20, 70, 60), *, affine=None, seed=0, meta=None) -> Volume:
    array = phantom_volume(shape, spacing=(2.5, 0.7, 0.8), seed=seed)
    uids = [f"1.2.826.0.1.3680043.8.498.1.{k + 1}" for k in range(shape[0])]
    return Volume(
        array,
        oblique_affine() if affine is None else affine,
        {**META, "sop_instance_uids": uids, **(meta or {})},
    )


@pytest.fixture
def store(tmp_path: Path) -> VolumeStore:
    return VolumeStore(tmp_path / "store.zarr")


def test_round_trip_of_an_oblique_phantom(store):
    volume = ct_volume()
    result = store.write("1.2.3/4.5.6/1", volume)
    assert isinstance(result, WriteResult) and not result.skipped
    assert result.key == "1.2.3/4.5.6/1" and result.path == store.path / "1.2.3" / "4.5.6" / "1"
    opened = store.open("1.2.3/4.5.6/1")
    assert isinstance(opened.array, zarr.Array)
    assert opened.dtype == np.int16 and opened.shape == volume.shape
    np.testing.assert_array_equal(opened.to_numpy(), volume.array)
    np.testing.assert_allclose(opened.affine, volume.affine, rtol=0, atol=1e-9)
    assert opened.meta == json.loads(json.dumps(volume.meta))
    assert opened.meta["sop_instance_uids"] == volume.meta["sop_instance_uids"]
    record = store.info("1.2.3/4.5.6/1")["voxelflow"]
    assert record["version"] == voxelflow.__version__ and record["complete"] is True
    assert record["key"] == "1.2.3/4.5.6/1" and record["dtype"] == "i2"
    np.testing.assert_array_equal(
        np.array(record["affine"]), volume.affine
    )  # JSON floats are exact
    assert store["1.2.3/4.5.6/1"].shape == volume.shape


def test_open_is_lazy_and_converts_to_numpy_and_dask(store):
    volume = ct_volume((18, 40, 50))
    store.write("v", volume, chunks=(8, 16, 32))
    opened = store.open("v")
    assert opened.array.chunks == (8, 16, 32)
    lazy = opened.to_dask()
    assert isinstance(lazy, da.Array) and lazy.chunksize == (8, 16, 32)
    np.testing.assert_array_equal(lazy[3:11, 5:30, 7:49].compute(), volume.array[3:11, 5:30, 7:49])
    np.testing.assert_array_equal(opened.array[17, -1], volume.array[17, -1])


def test_four_dimensional_volume(store):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 4096, size=(3, 10, 80, 72), dtype=np.uint16)
    affine = np.diag([3.0, 1.5, 1.5, 1.0])
    result = store.write("fmri", Volume(array, affine, {"axes": {"t": "temporal_position"}}))
    assert result.shapes == ((3, 10, 80, 72), (3, 10, 40, 36))  # time is never decimated
    opened = store.open("fmri")
    np.testing.assert_array_equal(opened.to_numpy(), array)
    assert opened.array.chunks == (1, 10, 80, 72)
    assert opened.meta == {"axes": {"t": "temporal_position"}}
    level1 = store.open("fmri", level=1)
    assert level1.shape == (3, 10, 40, 36)  # z (3 mm) is coarser than sqrt(2) x 1.5 mm: kept
    reference = np.rint(array.reshape(3, 10, 40, 2, 36, 2).astype(np.float64).mean(axis=(3, 5)))
    np.testing.assert_array_equal(level1.to_numpy(), reference.astype(np.uint16))


@pytest.mark.parametrize(
    ("shape", "chunks"), [((13, 37, 29), (4, 16, 8)), ((1, 65, 3), (2, 64, 2)), ((7, 7, 130), None)]
)
def test_odd_shapes_not_multiples_of_the_chunks(store, shape, chunks):
    array = np.random.default_rng(1).integers(-2000, 3000, size=shape, dtype=np.int16)
    result = store.write("odd", Volume(array, np.eye(4)), chunks=chunks)
    np.testing.assert_array_equal(store.open("odd").to_numpy(), array)
    for level, level_shape in enumerate(result.shapes):
        assert store.open("odd", level=level).to_numpy().shape == level_shape
    store.verify("odd")


def test_default_chunks_are_capped_by_the_shape(store):
    store.write("small", Volume(np.zeros((5, 300, 100), np.int16), np.eye(4)), pyramid=False)
    assert store.open("small").array.chunks == (5, 256, 100)
    store.write("t", Volume(np.zeros((2, 5, 30, 20), np.int16), np.eye(4)), pyramid=False)
    assert store.open("t").array.chunks == (1, 5, 30, 20)


def test_dask_source_is_computed_block_by_block_once(store):
    source = np.random.default_rng(2).normal(size=(21, 50, 45)).astype(np.float32)
    calls = []

    def tracked(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return block

    lazy = da.from_array(source, chunks=(5, 30, 30)).map_blocks(tracked, dtype=source.dtype)
    store.write("lazy", Volume(lazy, np.eye(4)), chunks=(4, 16, 16))  # blocks misaligned: rechunked
    assert len(calls) == len(set(calls)) == math.prod(len(c) for c in lazy.chunks)
    np.testing.assert_array_equal(store.open("lazy").to_numpy(), source)
    eager = VolumeStore(store.path.parent / "eager.zarr")
    eager.write("lazy", Volume(source, np.eye(4)), chunks=(4, 16, 16))
    for level in range(len(store.info("lazy")["voxelflow"]["levels"])):
        np.testing.assert_array_equal(
            store.open("lazy", level=level).to_numpy(), eager.open("lazy", level=level).to_numpy()
        )


def test_zarr_source_and_a_store_to_store_copy(store):
    source = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(9, 33, 20), chunks=(2, 7, 9), dtype="uint8"
    )
    source[...] = np.arange(source.size, dtype=np.uint64).reshape(source.shape) % 251
    store.write("from-zarr", Volume(source, np.eye(4)), chunks=(4, 16, 16))
    np.testing.assert_array_equal(store.open("from-zarr").to_numpy(), source[...])
    copy = VolumeStore(store.path.parent / "copy.zarr")
    copy.write("again", store.open("from-zarr"))
    np.testing.assert_array_equal(copy.open("again").to_numpy(), source[...])


def test_a_stored_volume_rewritten_over_itself(store):
    """Rechunking or recompressing in place: the source is read before the swap."""
    volume = ct_volume((12, 70, 66))
    store.write("k", volume, chunks=(4, 32, 32))
    result = store.write(
        "k", store.open("k"), chunks=(12, 70, 66), compressor="zstd", overwrite=True
    )
    assert not result.skipped
    rewritten = store.open("k")
    assert (
        rewritten.array.chunks == (12, 70, 66)
        and store.info("k")["voxelflow"]["compressor"] == "zstd"
    )
    np.testing.assert_array_equal(rewritten.to_numpy(), volume.array)
    np.testing.assert_array_equal(rewritten.affine, volume.affine)


@pytest.mark.parametrize("dtype", [">i2", "<u2", "float32", ">f8", "uint8", "int32", "bool"])
def test_dtypes_round_trip_in_native_byte_order(store, dtype):
    rng = np.random.default_rng(5)
    array = (rng.normal(size=(6, 20, 18)) * 100).astype(dtype)
    store.write("d", Volume(array, np.eye(4)))
    back = store.open("d").to_numpy()
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, array)


def test_rewrite_is_skipped_unless_overwrite(store):
    first, second = (
        ct_volume((8, 30, 30), seed=1),
        ct_volume((9, 32, 30), seed=2, meta={"modality": "MR"}),
    )
    assert not store.write("k", first).skipped
    skipped = store.write("k", second)
    assert skipped.skipped and skipped.shapes[0] == (8, 30, 30)
    np.testing.assert_array_equal(store.open("k").to_numpy(), first.array)
    replaced = store.write("k", second, overwrite=True)
    assert not replaced.skipped and replaced.shapes[0] == (9, 32, 30)
    opened = store.open("k")
    np.testing.assert_array_equal(opened.to_numpy(), second.array)
    assert opened.meta["modality"] == "MR"
    assert list((store.path / ".voxelflow" / "staging").iterdir()) == []  # the old copy is gone


def test_keys_contains_len_delete(store):
    volume = ct_volume((4, 20, 20))
    for key in ("b/2", "a/1", "a/3", "flat"):
        store.write(key, volume, pyramid=False)
    assert store.keys() == ["a/1", "a/3", "b/2", "flat"] == list(store)
    assert len(store) == 4 and "a/3" in store and "a" not in store and "a/2" not in store
    assert "../x" not in store and 42 not in store
    store.delete("a/3")
    assert store.keys() == ["a/1", "b/2", "flat"]
    with pytest.raises(VolumeNotFoundError, match="no volume 'a/3'"):
        store.open("a/3")
    with pytest.raises(KeyError):  # VolumeNotFoundError is a KeyError too
        store["a/3"]
    with pytest.raises(VolumeNotFoundError):
        store.delete("a/3")
    with pytest.raises(VolumeNotFoundError, match="is a group, not a volume"):
        store.open("a")
    with pytest.raises(KeyConflictError):
        store.delete("a")
    assert dict(store.items()).keys() == {"a/1", "b/2", "flat"}


BAD_KEYS = [
    "",
    "/abs",
    "a/../b",
    "..",
    ".",
    "a//b",
    "a/",
    ".hidden",
    "a/.x",
    "__zarr",
    "a\\b",
    "a b",
    "é",
    "x" * 256,
    5,
    None,
    ("a", "b"),
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_keys_are_refused_everywhere(store, key):
    volume = ct_volume((2, 8, 8))
    for call in (
        lambda: store.write(key, volume),
        lambda: store.open(key),
        lambda: store.delete(key),
        lambda: store.info(key),
    ):
        with pytest.raises(InvalidKeyError) as excinfo:
            call()
        assert isinstance(excinfo.value, ValueError)
    assert key not in store
    assert [p.name for p in store.path.iterdir() if not p.name.startswith(".")] == ["zarr.json"]


def test_key_conflicts(store):
    volume = ct_volume((2, 8, 8))
    store.write("a", volume)
    with pytest.raises(KeyConflictError, match="inside the volume 'a'"):
        store.write("a/b", volume)
    store.write("x/y", volume)
    with pytest.raises(KeyConflictError, match="not a voxelflow volume"):
        store.write("x", volume)
    store.delete("x/y")
    assert not store.write("x", volume).skipped  # an emptied group may become a volume
    (store.path / "foreign").mkdir()
    (store.path / "foreign" / "notes.txt").write_text("not ours")
    with pytest.raises(KeyConflictError):
        store.write("foreign", volume, overwrite=True)
    assert (store.path / "foreign" / "notes.txt").read_text() == "not ours"


def test_missing_chunk_raises_naming_the_key_and_chunk(store):
    array = np.zeros((10, 40, 80), np.int16)  # all fill value: every chunk is still written
    store.write("s/v", Volume(array, np.eye(4)), chunks=(4, 16, 16))
    assert sum(p.is_file() for p in (store.path / "s" / "v" / "0" / "c").rglob("*")) == 3 * 3 * 5
    (store.path / "s" / "v" / "0" / "c" / "1" / "2" / "0").unlink()
    opened = store.open("s/v")
    np.testing.assert_array_equal(opened.array[:4], 0)  # chunks that exist still read
    with pytest.raises(
        MissingChunkError, match=r"'s/v' level 0 is missing chunk \(1, 2, 0\)"
    ) as excinfo:
        opened.to_numpy()
    assert (excinfo.value.key, excinfo.value.level, excinfo.value.chunk) == ("s/v", 0, (1, 2, 0))
    assert isinstance(excinfo.value, StoreError)
    with pytest.raises(MissingChunkError):
        opened.to_dask().sum().compute()
    with pytest.raises(MissingChunkError, match="missing 1 chunk"):
        store.verify("s/v")
    np.testing.assert_array_equal(store.open("s/v", level=1).to_numpy(), 0)
    store.write("s/v", Volume(array, np.eye(4)), chunks=(4, 16, 16), overwrite=True)
    store.verify("s/v")


def test_a_volume_replaced_or_deleted_after_open_raises(store):
    store.write("k", ct_volume((6, 20, 20), seed=1), chunks=(2, 20, 20))
    opened = store.open("k")
    opened.array[0]
    store.write("k", ct_volume((6, 20, 20), seed=2), chunks=(2, 20, 20), overwrite=True)
    with pytest.raises(VolumeChangedError, match="replaced or deleted"):
        opened.array[2:4]
    reopened = store.open("k")
    np.testing.assert_array_equal(reopened.to_numpy(), ct_volume((6, 20, 20), seed=2).array)
    store.delete("k")
    with pytest.raises(VolumeChangedError):
        reopened.to_numpy()


def test_an_incomplete_group_is_not_a_volume_and_is_redone(store):
    volume = ct_volume((4, 16, 16))
    store.write("k", volume)
    document = store.path / "k" / "zarr.json"
    body = json.loads(document.read_text())
    body["attributes"]["voxelflow"]["complete"] = False
    document.write_text(json.dumps(body))
    assert "k" not in store and store.keys() == []
    with pytest.raises(IncompleteVolumeError, match="never completed"):
        store.open("k")
    assert not store.write("k", volume).skipped
    assert "k" in store


class Plane(enum.Enum):
    AXIAL = "axial"


@dataclasses.dataclass
class Finding:
    code: str
    magnitude: float


def test_meta_is_converted_to_json(store):
    meta = {
        "int": np.int64(7),
        "float": np.float32(0.5),
        "flag": np.bool_(True),
        "array": np.arange(3, dtype=np.uint16),
        "tuple": (1, 2.5),
        "set": {"b", "a"},
        "nan": float("nan"),
        "inf": -np.inf,
        "finding": Finding("gantry_tilt", np.float64(12.5)),
        "plane": Plane.AXIAL,
        "date": datetime.date(2024, 5, 1),
        "path": Path("/data/x.dcm"),
        "int_keys": {1: "one"},
    }
    store.write("m", Volume(np.zeros((2, 4, 4), np.int16), np.eye(4), meta))
    assert store.open("m").meta == {
        "int": 7,
        "float": 0.5,
        "flag": True,
        "array": [0, 1, 2],
        "tuple": [1, 2.5],
        "set": ["a", "b"],
        "nan": "NaN",
        "inf": "-Infinity",
        "finding": {"code": "gantry_tilt", "magnitude": 12.5},
        "plane": "axial",
        "date": "2024-05-01",
        "path": "/data/x.dcm",
        "int_keys": {"1": "one"},
    }
    json.loads(
        (store.path / "m" / "zarr.json").read_text(), parse_constant=pytest.fail
    )  # strict JSON


def test_unstorable_meta_fails_before_anything_is_written(store):
    with pytest.raises(ParameterError, match=r"meta\['raw'\]\[1\]: bytes"):
        store.write("m", Volume(np.zeros((2, 4, 4), np.int16), np.eye(4), {"raw": [1, b"\x00"]}))
    with pytest.raises(ParameterError, match="not a string"):
        store.write("m", Volume(np.zeros((2, 4, 4), np.int16), np.eye(4), {(1, 2): 3}))
    assert "m" not in store and not (store.path / "m").exists()


def test_bad_parameters(store):
    volume = ct_volume((4, 16, 16))
    for chunks in ((0, 8, 8), (4, 8), (4, 8, 8, 1, 1), (4.0, 8, 8), 5, (True, 8, 8)):
        with pytest.raises(ParameterError, match="chunks"):
            store.write("k", volume, chunks=chunks)
    with pytest.raises(ParameterError, match="unknown compressor 'lzma'"):
        store.write("k", volume, compressor="lzma")
    with pytest.raises(ParameterError, match="compressor"):
        store.write("k", volume, compressor=3)
    with pytest.raises(ParameterError, match=r"3 .* or 4"):
        store.write("k", Volume(np.zeros((1, 2, 3, 4, 5)), np.eye(4)))
    with pytest.raises(ParameterError, match="complex"):
        store.write("k", Volume(np.zeros((2, 3, 4), np.complex64), np.eye(4)))
    with pytest.raises(ParameterError, match="empty axis"):
        store.write("k", Volume(np.zeros((0, 3, 4)), np.eye(4)))
    with pytest.raises(ParameterError, match="Volume"):
        store.write("k", np.zeros((2, 3, 4)))
    assert "k" not in store
    store.write("k", volume)
    for level in (-1, 1, 1.0, True):
        with pytest.raises(ParameterError, match=r"levels 0\.\.0"):
            store.open("k", level=level)


@pytest.mark.parametrize("compressor", [*COMPRESSORS, None, zarr.codecs.GzipCodec(level=1)])
def test_compressors(store, compressor):
    volume = ct_volume((6, 24, 24))
    store.write("c", volume, compressor=compressor, pyramid=False)
    np.testing.assert_array_equal(store.open("c").to_numpy(), volume.array)
    codecs = json.loads((store.path / "c" / "0" / "zarr.json").read_text())["codecs"]
    names = [codec["name"] for codec in codecs]
    expected = {"blosc": "blosc", "blosc-zstd": "blosc", "zstd": "zstd", "none": None, None: None}
    # every chain ends in a crc32c checksum (voxelflow.store.checked_store)
    assert names[1:] == (
        [] if expected.get(compressor, "gzip") is None else [expected.get(compressor, "gzip")]
    ) + ["crc32c"]


def test_read_only_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        VolumeStore(tmp_path / "absent", read_only=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="not a folder"):
        VolumeStore(tmp_path / "file")
    VolumeStore(tmp_path / "s").write("k", ct_volume((3, 8, 8)))
    reader = VolumeStore(tmp_path / "s", read_only=True)
    assert reader.keys() == ["k"] and reader.open("k").shape == (3, 8, 8)
    with pytest.raises(StoreError, match="read-only"):
        reader.write("j", ct_volume((3, 8, 8)))
    with pytest.raises(StoreError, match="read-only"):
        reader.delete("k")


def test_opened_volumes_and_store_errors_pickle(store):
    """dask.distributed ships arrays to workers and their errors back, pickled."""
    volume = ct_volume((6, 20, 20))
    store.write("k", volume, chunks=(2, 20, 20))
    array = pickle.loads(pickle.dumps(store.open("k").array))
    np.testing.assert_array_equal(array[...], volume.array)
    (store.path / "k" / "0" / "c" / "1" / "0" / "0").unlink()
    with pytest.raises(MissingChunkError) as excinfo:
        array[...]
    error = pickle.loads(pickle.dumps(excinfo.value))
    assert (error.key, error.level, error.chunk, str(error)) == (
        "k",
        0,
        (1, 0, 0),
        str(excinfo.value),
    )
    assert pickle.loads(pickle.dumps(store)) == store == VolumeStore(store.path)
    assert (
        store != VolumeStore(store.path, read_only=True)
        and len({store, VolumeStore(store.path)}) == 1
    )


def test_public_names():
    assert voxelflow.VolumeStore is VolumeStore and voxelflow.Volume is Volume
    assert {"VolumeStore", "Volume"} <= set(dir(voxelflow))
