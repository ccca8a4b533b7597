"""voxelflow.render.chunks: the chunks a view touches, decoded here for the codec chains the
store writes (equal to zarr's own reading), by zarr for any other; damaged chunks named."""

from __future__ import annotations

import google_crc32c
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec

import voxelflow
from voxelflow import Plane
from voxelflow.errors import CorruptChunkError, MissingChunkError
from voxelflow.render import chunks
from voxelflow.render.chunks import read_region
from voxelflow.store import VolumeStore
from voxelflow.volume import Volume

SHAPE = (21, 30, 37)  # no axis a multiple of the chunks: edge chunks are partial


def _affine() -> np.ndarray:
    a = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2], a[3, 3] = 1.0, 0.9, 0.8, 1.0
    return a


def _data(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0.0, 500.0, SHAPE).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -3000), min(info.max, 3000), SHAPE, endpoint=True).astype(dtype)


def _oblique(volume: Volume) -> Plane:
    centre = (volume.affine @ np.array([10.0, 14.5, 18.0, 1.0]))[:3]
    return Plane.oblique(centre, (0.3, 0.4, 0.87), spacing=0.7, size=(48, 48))


# a box matrix: (s, j, i) -> (z, y, x) = (s + 2, j + 3, i + 1) over 15 x 22 x 30 samples
_BOX = np.array([[1.0, 0, 0, 2], [0, 1.0, 0, 3], [0, 0, 1.0, 1]])
_EXTENT = (15, 22, 30)


def _check_region(region, data: np.ndarray) -> None:
    """The region holds the volume's voxels that linear samples of _BOX read: the box
    (2..16, 3..24, 1..30) and one voxel around it (the rest of the region may be unread)."""
    need_lo, need_hi = np.array((1, 2, 0)), np.array((18, 26, 32))
    lo = np.array(region.offset)
    assert (lo <= need_lo).all() and (lo + region.data.shape >= need_hi).all()
    box = tuple(slice(a, b) for a, b in zip(need_lo - lo, need_hi - lo))
    np.testing.assert_array_equal(region.data[box], data[tuple(slice(a, b) for a, b in zip(need_lo, need_hi))])


@pytest.fixture
def no_zarr_reads(monkeypatch):
    """Fail if a read falls back to zarr's own chunk reading."""

    def refuse(*args, **kwargs):
        raise AssertionError("read through zarr, not decoded here")

    monkeypatch.setattr(chunks, "_read_concurrently", refuse)


@pytest.mark.parametrize("compressor", ["blosc", "blosc-zstd", "zstd", "none"])
@pytest.mark.parametrize("dtype", ["int16", "uint8", "int32", "float32"])
def test_stored_chunks_decode_as_zarr_reads_them(tmp_path, no_zarr_reads, compressor, dtype) -> None:
    data = _data(dtype)
    volume = Volume(data, _affine(), {"modality": "CT"})
    store = VolumeStore(tmp_path)
    store.write("v", volume, chunks=(8, 16, 16), compressor=compressor, pyramid=False)
    lazy = store.open("v")
    region = read_region(lazy.array, _BOX, _EXTENT, 1.0)
    _check_region(region, data)
    assert region.chunks_read == 3 * 2 * 2  # z 1..17, y 2..25, x 0..31
    plane = _oblique(volume)
    np.testing.assert_array_equal(voxelflow.mpr(lazy, plane), voxelflow.mpr(volume, plane))


def _zarr_array(path, data: np.ndarray, **kwargs) -> zarr.Array:
    array = zarr.create_array(
        zarr.storage.LocalStore(path), shape=data.shape, dtype=data.dtype, chunks=(8, 16, 16), **kwargs
    )
    array[...] = data
    return array


def test_big_endian_chunks(tmp_path, no_zarr_reads) -> None:
    data = _data("int16")
    array = _zarr_array(tmp_path, data, serializer=BytesCodec(endian="big"), compressors=BloscCodec())
    region = read_region(array, _BOX, _EXTENT, 1.0)
    assert region.data.dtype == np.int16
    _check_region(region, data)


def test_absent_chunks_of_a_plain_zarr_array_are_its_fill_value(tmp_path, no_zarr_reads) -> None:
    array = zarr.create_array(
        zarr.storage.LocalStore(tmp_path), shape=SHAPE, dtype="int16", chunks=(8, 16, 16), fill_value=-7
    )
    array[8:16, 16:32, 16:32] = 5  # one chunk written, the rest absent
    expected = np.full(SHAPE, -7, np.int16)
    expected[8:16, 16:32, 16:32] = 5
    _check_region(read_region(array, _BOX, _EXTENT, 1.0), expected)


def test_other_codec_chains_are_read_by_zarr(tmp_path) -> None:
    data = _data("int16")
    sharded = _zarr_array(tmp_path / "s", data, shards=(16, 32, 32))
    assert any(isinstance(c, ShardingCodec) for c in sharded.metadata.codecs)
    assert chunks._chunk_decoder(sharded) is None
    _check_region(read_region(sharded, _BOX, _EXTENT, 1.0), data)


def _damage(path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "one byte short":
        path.write_bytes(raw[:-1])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # another chunk's worth of noise
        path.write_bytes(np.random.default_rng(1).integers(0, 256, len(raw), dtype=np.uint8).tobytes())


@pytest.mark.parametrize("compressor", ["blosc", "zstd", "none"])
@pytest.mark.parametrize("how", ["truncated", "one byte short", "empty", "noise"])
def test_damaged_chunk_is_named(tmp_path, compressor, how) -> None:
    data = _data("int16")
    volume = Volume(data, _affine(), {"modality": "CT"})
    store = VolumeStore(tmp_path)
    store.write("v", volume, chunks=(8, 16, 16), compressor=compressor, pyramid=False)
    _damage(tmp_path / "v" / "0" / "c" / "1" / "0" / "1", how)
    lazy = store.open("v")
    # even noise of the right size in an uncompressed chunk: its crc32c checksum fails
    with pytest.raises(CorruptChunkError, match=r"chunk \(1, 0, 1\).*c/1/0/1"):
        read_region(lazy.array, _BOX, _EXTENT, 1.0)


def test_missing_chunk_still_raises_missing(tmp_path) -> None:
    volume = Volume(_data("int16"), _affine(), {"modality": "CT"})
    store = VolumeStore(tmp_path)
    store.write("v", volume, chunks=(8, 16, 16), pyramid=False)
    (tmp_path / "v" / "0" / "c" / "1" / "0" / "1").unlink()
    with pytest.raises(MissingChunkError, match=r"chunk \(1, 0, 1\)"):
        read_region(store.open("v").array, _BOX, _EXTENT, 1.0)


def test_many_chunks_span_fetch_batches(tmp_path, monkeypatch, no_zarr_reads) -> None:
    monkeypatch.setattr(chunks, "_BATCH", 4)
    data = _data("int16")
    array = _zarr_array(tmp_path, data, compressors=BloscCodec())
    region = read_region(array, _BOX, _EXTENT, 1.0, threads=2)
    assert region.chunks_read > 4
    _check_region(region, data)


def _zstd_raw_frame(payload: bytes) -> bytes:
    """One zstd frame of one raw block with no content size in its header (RFC 8878), as
    streaming encoders write: window 2**(10 + 3) bytes, the block's size at most that."""
    assert len(payload) <= 8192
    block = (1 | len(payload) << 3).to_bytes(3, "little")  # last block, raw
    return (0xFD2FB528).to_bytes(4, "little") + bytes([0x00, 3 << 3]) + block + payload


@pytest.mark.parametrize("extra", [0, -2, 2])
def test_zstd_frames_without_a_declared_size(tmp_path, no_zarr_reads, extra) -> None:
    data = _data("int16")
    volume = Volume(data, _affine(), {"modality": "CT"})
    store = VolumeStore(tmp_path)
    store.write("v", volume, chunks=(8, 16, 16), compressor="zstd", pyramid=False)
    chunk = np.zeros((8, 16, 16), "<i2")
    chunk[:, :14] = data[8:16, 16:30, 16:32]  # chunk (1, 1, 1); y is cut at 30
    payload = chunk.tobytes() + bytes(max(extra, 0))
    payload = payload[: len(payload) + min(extra, 0)]
    frame = _zstd_raw_frame(payload)
    # the store's chain ends in a crc32c checksum of the frame (little-endian uint32)
    checksum = google_crc32c.value(frame).to_bytes(4, "little")
    (tmp_path / "v" / "0" / "c" / "1" / "1" / "1").write_bytes(frame + checksum)
    lazy = store.open("v")
    if extra:
        with pytest.raises(CorruptChunkError, match=r"chunk \(1, 1, 1\)"):
            read_region(lazy.array, _BOX, _EXTENT, 1.0)
    else:
        _check_region(read_region(lazy.array, _BOX, _EXTENT, 1.0), data)
