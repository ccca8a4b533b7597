"""voxelflow.decode on every pixel layout voxelflow.testing can write, against the intended
values and against pydicom."""

from __future__ import annotations

import itertools

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

import voxelflow
from voxelflow.errors import MissingPluginError
from voxelflow.testing import available_transfer_syntaxes, dataset_from_array, save_dataset

BACKENDS = ["reference", "cython", "numba"]
NATIVE_AND_RLE = ["explicit_le", "implicit_le", "explicit_be", "deflated", "rle"]


def _values(rng, shape, bits_allocated, bits_stored, signed):
    if signed:
        lo, hi = -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    else:
        lo, hi = 0, 2**bits_stored - 1
    dtype = f"{'i' if signed else 'u'}{bits_allocated // 8}"
    values = rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)
    values.flat[:2] = [lo, hi]  # the edges, where sign extension goes wrong
    return values.astype(dtype)


def _both_ways(ds, tmp_path, **kwargs):
    """decode(Dataset) and decode(path) of the same instance."""
    path = tmp_path / "x.dcm"
    save_dataset(ds, path)
    return voxelflow.decode(ds, **kwargs), voxelflow.decode(path, **kwargs), path


GRID = [
    (ts, ba, bs, signed, samples, frames)
    for ts, (ba, bs), signed, samples, frames in itertools.product(
        NATIVE_AND_RLE,
        [(8, 8), (8, 6), (16, 16), (16, 12), (32, 32), (32, 20)],
        [False, True],
        [1, 3],
        [1, 3],
    )
    # pydicom's RLE encoder (used by voxelflow.testing) stops at 16 bits: see test_rle_32_bit
    if not (samples == 3 and signed) and not (ts == "rle" and ba == 32)
]


@pytest.mark.parametrize(("ts", "ba", "bs", "signed", "samples", "frames"), GRID)
def test_integer_layouts(tmp_path, ts, ba, bs, signed, samples, frames):
    rng = np.random.default_rng(ba * 1000 + bs * 10 + samples + frames)
    shape = (frames, 7, 9) + ((3,) if samples == 3 else ())
    arr = _values(rng, shape, ba, bs, signed)
    ds = dataset_from_array(
        arr if frames > 1 else arr[0],
        photometric="RGB" if samples == 3 else "MONOCHROME2",
        bits_stored=bs,
        transfer_syntax=ts,
        fill_unused_bits="zero" if ts == "rle" else "random",
        planar_configuration=1 if samples == 3 and ts != "rle" else 0,
    )
    expected = arr if frames > 1 else arr[0]
    from_ds, from_file, path = _both_ways(ds, tmp_path)
    for got in (from_ds, from_file):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(from_file, pixel_array(str(path)) if ts != "deflated" else pydicom.dcmread(path).pixel_array)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("samples", "signed"), [(1, True), (1, False), (3, False)])
def test_rle_32_bit(tmp_path, backend, samples, signed):
    from pydicom.encaps import encapsulate

    from voxelflow.kernels.reference.rle import rle_encode_frame

    shape = (2, 6, 7) + ((3,) if samples == 3 else ())
    arr = _values(np.random.default_rng(11), shape, 32, 32, signed)
    ds = dataset_from_array(arr, photometric="RGB" if samples == 3 else "MONOCHROME2")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    ds.PixelData = encapsulate([rle_encode_frame(frame) for frame in arr])
    ds["PixelData"].is_undefined_length = True
    from_ds, from_file, path = _both_ways(ds, tmp_path, backend=backend)
    np.testing.assert_array_equal(from_ds, arr)
    np.testing.assert_array_equal(from_file, pixel_array(str(path)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ts", NATIVE_AND_RLE)
def test_every_backend_decodes_the_same(tmp_path, backend, ts):
    rng = np.random.default_rng(7)
    arr = _values(rng, (4, 33, 17), 16, 12, True)
    ds = dataset_from_array(
        arr, bits_stored=12, transfer_syntax=ts, fill_unused_bits="zero" if ts == "rle" else "random"
    )
    from_ds, from_file, _ = _both_ways(ds, tmp_path, backend=backend)
    np.testing.assert_array_equal(from_ds, arr)
    np.testing.assert_array_equal(from_file, arr)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ts", ["explicit_le", "explicit_be", "implicit_le"])
def test_one_bit_frames_off_byte_boundaries(tmp_path, backend, ts):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 2, size=(3, 5, 5), dtype=np.uint8)  # 25 bits a frame
    ds = dataset_from_array(arr.astype(bool), transfer_syntax=ts)
    from_ds, from_file, path = _both_ways(ds, tmp_path, backend=backend)
    np.testing.assert_array_equal(from_ds, arr)
    np.testing.assert_array_equal(from_file, arr)
    np.testing.assert_array_equal(voxelflow.decode(path, frames=[2, 1], backend=backend), arr[[2, 1]])


@pytest.mark.parametrize("ts", ["explicit_le", "explicit_be", "implicit_le"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_pixel_data(tmp_path, ts, dtype):
    arr = np.random.default_rng(2).normal(size=(2, 6, 5)).astype(dtype)
    arr.flat[0] = np.inf
    ds = dataset_from_array(arr, float_pixel_data=True, transfer_syntax=ts)
    from_ds, from_file, _ = _both_ways(ds, tmp_path)
    for got in (from_ds, from_file):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("ts", ["explicit_le", "explicit_be", "rle"])
def test_ybr_full_becomes_rgb_like_pydicom(tmp_path, ts):
    rgb = np.random.default_rng(3).integers(0, 256, size=(2, 8, 10, 3), dtype=np.uint8)
    ds = dataset_from_array(rgb, photometric="YBR_FULL", transfer_syntax=ts)
    from_ds, from_file, path = _both_ways(ds, tmp_path)
    expected = pixel_array(str(path))
    np.testing.assert_array_equal(from_ds, expected)
    np.testing.assert_array_equal(from_file, expected)


def test_ybr_full_422_native(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    rgb[:, 1::2, 1:] = rgb[:, 0::2, 1:]  # each horizontal pair shares its chroma
    ds = dataset_from_array(rgb, photometric="YBR_FULL_422")
    from_ds, from_file, path = _both_ways(ds, tmp_path)
    np.testing.assert_array_equal(from_file, pixel_array(str(path)))
    np.testing.assert_array_equal(from_ds, from_file)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("bits", "segmented", "first"), [(8, False, 0), (16, False, 10), (16, True, 0)])
def test_palette_color(tmp_path, backend, bits, segmented, first):
    rng = np.random.default_rng(5)
    entries = 256
    dtype = np.uint8 if bits == 8 else np.uint16
    ramp = np.linspace(0, 2**bits - 1, entries).astype(dtype)
    palette = {"red": ramp, "green": ramp[::-1].copy(), "blue": np.full(entries, 2 ** (bits - 1), dtype), "first_mapped": first, "bits": bits, "segmented": segmented}
    idx = rng.integers(first, first + entries, size=(2, 9, 11)).astype(np.uint16 if first else np.uint8)
    ds = dataset_from_array(idx, photometric="PALETTE COLOR", palette=palette, bits_allocated=16 if first else 8)
    from_ds, from_file, path = _both_ways(ds, tmp_path, backend=backend)
    np.testing.assert_array_equal(from_file, idx)  # stored indices by default, as pydicom
    rgb = voxelflow.decode(path, apply_palette=True, backend=backend)
    from pydicom.pixels.processing import apply_color_lut

    np.testing.assert_array_equal(rgb, apply_color_lut(idx, pydicom.dcmread(path)))


def test_pydicom_segmented_palette_file():
    from pydicom.data import get_testdata_file
    from pydicom.pixels.processing import apply_color_lut

    path = get_testdata_file("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(voxelflow.decode(path, apply_palette=True), apply_color_lut(ds.pixel_array, ds))


def test_out_and_frames(tmp_path):
    arr = _values(np.random.default_rng(6), (5, 12, 10), 16, 12, True)
    ds = dataset_from_array(arr, bits_stored=12, fill_unused_bits="random")
    path = tmp_path / "m.dcm"
    save_dataset(ds, path)
    volume = np.full((7, 12, 10), 123, np.int16)
    for k, f in enumerate([4, 0, 2]):
        assert np.shares_memory(voxelflow.decode(path, frames=f, out=volume[k + 2]), volume)
    np.testing.assert_array_equal(volume[2:5], arr[[4, 0, 2]])
    assert (volume[:2] == 123).all() and (volume[5:] == 123).all()
    np.testing.assert_array_equal(voxelflow.decode(path, frames=[3, 4, 1]), arr[[3, 4, 1]])
    assert voxelflow.decode(path, frames=3).shape == (12, 10)


def test_deflated_dataset_equals_file(tmp_path):
    arr = _values(np.random.default_rng(8), (3, 10, 10), 16, 16, False)
    ds = dataset_from_array(arr, transfer_syntax="deflated")
    from_ds, from_file, _ = _both_ways(ds, tmp_path)
    np.testing.assert_array_equal(from_file, arr)


LOSSLESS = {"jpeg_lossless", "jpeg_ls", "jpeg2000_lossless", "htj2k_lossless"}


@pytest.mark.parametrize(
    "name",
    ["jpeg_baseline", "jpeg_lossless", "jpeg_ls", "jpeg_ls_near", "jpeg2000_lossless", "jpeg2000"],
)
def test_jpeg_family_through_plugins(tmp_path, name):
    if name not in available_transfer_syntaxes():
        pytest.skip(f"no {name} encoder installed to make the test file")
    rng = np.random.default_rng(9)
    arr = rng.integers(0, 256, size=(2, 32, 32), dtype=np.uint8)
    ds = dataset_from_array(arr, transfer_syntax=name)
    from_ds, from_file, path = _both_ways(ds, tmp_path)
    np.testing.assert_array_equal(from_file, pixel_array(str(path)))
    np.testing.assert_array_equal(from_ds, from_file)
    if name in LOSSLESS:
        np.testing.assert_array_equal(from_file, arr)


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203"])
def test_htj2k_syntaxes(tmp_path, uid):
    # No HTJ2K encoder is installable here; the HTJ2K syntaxes also carry Part 1 codestreams
    # (block coder of the decoder's choice), which is how this file is made.
    arr = np.random.default_rng(10).integers(0, 4096, size=(2, 32, 32), dtype=np.uint16)
    ds = dataset_from_array(arr, bits_stored=12, transfer_syntax="jpeg2000_lossless")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(uid)
    from_ds, from_file, _ = _both_ways(ds, tmp_path)
    np.testing.assert_array_equal(from_ds, arr)
    np.testing.assert_array_equal(from_file, arr)


def test_missing_plugin_names_the_package(tmp_path, monkeypatch):
    if "jpeg_ls" not in available_transfer_syntaxes():
        pytest.skip("no JPEG-LS encoder to make the test file")
    ds = dataset_from_array(np.zeros((8, 8), np.uint8), transfer_syntax="jpeg_ls")
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(MissingPluginError, match="pip install pyjpegls"):
        voxelflow.decode(ds)
