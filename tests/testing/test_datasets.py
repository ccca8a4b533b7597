"""dataset_from_array: every layout and transfer syntax reads back through pydicom as intended."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, get_encoder, pixel_array
from pydicom.uid import JPEGLSLossless

from voxelflow.errors import MissingPluginError, ParameterError, VoxelflowError
from voxelflow.testing import (
    TRANSFER_SYNTAXES,
    available_transfer_syntaxes,
    dataset_from_array,
    save_dataset,
)

NATIVE = ("explicit_le", "implicit_le", "explicit_be", "deflated")
LOSSLESS_COMPRESSED = ("rle", "jpeg_lossless", "jpeg_ls", "jpeg2000_lossless")


def _roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _decoded(ds: pydicom.Dataset, **options) -> np.ndarray:
    return pixel_array(_roundtrip(ds), **options)


def _values(rng, shape, dtype, bits_stored, signed):
    low = -(1 << (bits_stored - 1)) if signed else 0
    high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
    arr = rng.integers(low, high, shape, endpoint=True).astype(dtype)
    # The range edges are where sign and mask handling go wrong.
    flat = arr.reshape(-1)
    flat[0], flat[-1] = low, high
    return arr


# (dtype, bits_allocated, bits_stored)
INTEGER_LAYOUTS = [
    (np.uint8, 8, 8),
    (np.uint8, 8, 6),
    (np.int8, 8, 7),
    (np.uint16, 16, 12),
    (np.int16, 16, 12),
    (np.uint16, 16, 16),
    (np.int16, 16, 16),
    (np.int32, 32, 20),
    (np.uint32, 32, 32),
]
SAMPLE_LAYOUTS = [("MONOCHROME2", 0), ("MONOCHROME1", 0), ("RGB", 0), ("RGB", 1)]


@pytest.mark.parametrize("transfer_syntax", NATIVE)
@pytest.mark.parametrize("dtype,bits_allocated,bits_stored", INTEGER_LAYOUTS)
def test_native_integer_grid_reads_back_exactly(
    transfer_syntax, dtype, bits_allocated, bits_stored
):
    rng = np.random.default_rng(bits_stored)
    signed = np.dtype(dtype).kind == "i"
    fills = ("zero", "sign", "random") if bits_stored < bits_allocated else ("zero",)
    for (photometric, planar), frames, fill in itertools.product(SAMPLE_LAYOUTS, (1, 3), fills):
        shape = ((frames,) if frames > 1 else ()) + (5, 7) + ((3,) if photometric == "RGB" else ())
        arr = _values(rng, shape, dtype, bits_stored, signed)
        ds = dataset_from_array(
            arr, photometric=photometric, bits_stored=bits_stored, planar_configuration=planar,
            transfer_syntax=transfer_syntax, fill_unused_bits=fill,
        )
        r = _roundtrip(ds)
        assert r.BitsAllocated == bits_allocated and r.BitsStored == bits_stored
        assert r.PixelRepresentation == int(signed)
        assert int(r.get("NumberOfFrames", 1)) == frames
        assert len(r.PixelData) % 2 == 0
        out = pixel_array(r, as_rgb=False)
        np.testing.assert_array_equal(out, arr, err_msg=f"{photometric} pc={planar} fill={fill}")


def test_unused_high_bits_really_hold_garbage():
    arr = np.array([[-3, 5, -2048, 2047]] * 4, dtype=np.int16)
    for fill, expect in (("zero", 0), ("sign", None), ("random", None)):
        ds = dataset_from_array(arr, bits_stored=12, fill_unused_bits=fill, seed=1)
        raw = np.frombuffer(ds.PixelData, dtype="<u2")
        high = raw >> 12
        if fill == "zero":
            assert not high.any()
        elif fill == "sign":
            np.testing.assert_array_equal(high, np.where(arr.reshape(-1) < 0, 0xF, 0))
        else:
            assert len(set(high.tolist())) > 2
        np.testing.assert_array_equal(_decoded(ds), arr)


def test_big_endian_bytes_are_swapped():
    arr = np.array([[0x0102, 0x0304]], dtype=np.uint16)
    ds = dataset_from_array(arr, transfer_syntax="explicit_be")
    assert ds.PixelData == b"\x01\x02\x03\x04"
    r = _roundtrip(ds)
    assert not r.original_encoding[1]  # big endian on disk
    np.testing.assert_array_equal(r.pixel_array, arr)


def test_deflated_file_is_deflated(tmp_path):
    arr = np.zeros((64, 64), dtype=np.uint16)
    plain = save_dataset(dataset_from_array(arr), tmp_path / "plain.dcm")
    deflated = save_dataset(dataset_from_array(arr, transfer_syntax="deflated"), tmp_path / "d.dcm")
    assert deflated.stat().st_size < plain.stat().st_size / 4
    r = pydicom.dcmread(deflated)
    assert r.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES["deflated"]
    np.testing.assert_array_equal(r.pixel_array, arr)


@pytest.mark.parametrize("transfer_syntax", NATIVE)
def test_one_bit_frames_pack_across_byte_boundaries(transfer_syntax):
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 2, (3, 3, 5)).astype(bool)  # 15 bits a frame: frames start mid-byte
    ds = dataset_from_array(arr, transfer_syntax=transfer_syntax)
    assert ds.BitsAllocated == 1 and len(ds.PixelData) == 6
    r = _roundtrip(ds)
    np.testing.assert_array_equal(r.pixel_array, arr)
    assert r.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.1"


@pytest.mark.parametrize("transfer_syntax", NATIVE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_pixel_data(transfer_syntax, dtype):
    arr = np.random.default_rng(4).normal(size=(2, 5, 7)).astype(dtype)
    ds = dataset_from_array(arr, float_pixel_data=True, transfer_syntax=transfer_syntax)
    keyword = "FloatPixelData" if dtype == np.float32 else "DoubleFloatPixelData"
    assert keyword in ds and "PixelData" not in ds and "BitsStored" not in ds
    r = _roundtrip(ds)
    np.testing.assert_array_equal(r.pixel_array, arr)
    assert r.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"


def test_odd_length_pixel_data_is_padded():
    arr = np.arange(9, dtype=np.uint8).reshape(3, 3)
    ds = dataset_from_array(arr)
    assert len(ds.PixelData) == 10 and ds.PixelData[-1:] == b"\x00"
    np.testing.assert_array_equal(_decoded(ds), arr)


@pytest.mark.parametrize("transfer_syntax", NATIVE)
def test_ybr_full_422_native(transfer_syntax):
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (2, 6, 8, 3)).astype(np.uint8)
    arr[:, :, 1::2, 1:] = arr[:, :, 0::2, 1:]
    ds = dataset_from_array(arr, photometric="YBR_FULL_422", transfer_syntax=transfer_syntax)
    assert len(ds.PixelData) == 2 * 6 * 8 * 2  # two bytes a pixel: Y Y Cb Cr per pair
    r = _roundtrip(ds)
    assert r.PhotometricInterpretation == "YBR_FULL_422"
    np.testing.assert_array_equal(pixel_array(r, as_rgb=False), arr)
    with pytest.raises(ParameterError, match="chroma"):
        bad = arr.copy()
        bad[0, 0, 1, 1] ^= 1
        dataset_from_array(bad, ybr_422=True, photometric="YBR_FULL")


@pytest.mark.parametrize("transfer_syntax", NATIVE)
@pytest.mark.parametrize("segmented", [False, True])
def test_palette_color(transfer_syntax, segmented):
    rng = np.random.default_rng(6)
    n = np.arange(256, dtype=np.uint16)
    palette = {
        "red": n * 200,
        "green": np.concatenate([(255 - n[:128]) * 100, rng.integers(0, 65535, 128)]).astype(
            np.uint16
        ),
        "blue": np.full(256, 7, np.uint16),
        "first_mapped": 10,
        "segmented": segmented,
    }
    arr = rng.integers(0, 300, (20, 30)).astype(np.uint16)
    ds = dataset_from_array(arr, photometric="PALETTE COLOR", palette=palette,
                            transfer_syntax=transfer_syntax)
    r = _roundtrip(ds)
    np.testing.assert_array_equal(r.pixel_array, arr)
    index = np.clip(arr.astype(int) - 10, 0, 255)
    expected = np.stack([palette[c][index] for c in ("red", "green", "blue")], axis=-1)
    if segmented:
        data = r.SegmentedRedPaletteColorLookupTableData
        assert len(data) < 512  # the linear run really was compressed into segments
    if transfer_syntax == "explicit_be" and not segmented:
        # OW words are big endian here; pydicom's apply_color_lut reads plain LUT data in
        # native byte order, so check the words directly.
        for colour in ("Red", "Green", "Blue"):
            words = np.frombuffer(r[f"{colour}PaletteColorLookupTableData"].value, dtype=">u2")
            np.testing.assert_array_equal(words, palette[colour.lower()])
    else:
        np.testing.assert_array_equal(apply_color_lut(r.pixel_array, r), expected)


def test_palette_with_8_bit_entries():
    lut = np.arange(256, dtype=np.uint8)
    palette = {"red": lut, "green": lut[::-1].copy(), "blue": np.full(256, 9, np.uint8)}
    arr = np.random.default_rng(7).integers(0, 256, (8, 9)).astype(np.uint8)
    r = _roundtrip(dataset_from_array(arr, photometric="PALETTE COLOR", palette=palette))
    assert list(r.RedPaletteColorLookupTableDescriptor) == [256, 0, 8]
    expected = np.stack([palette[c][arr] for c in ("red", "green", "blue")], axis=-1)
    np.testing.assert_array_equal(apply_color_lut(r.pixel_array, r), expected)


# (dtype, bits_stored) per syntax, within what each codec's DICOM profile allows.
_ALL_LAYOUTS = [(np.uint8, 8), (np.uint16, 12), (np.int16, 12), (np.uint16, 16), (np.int16, 16)]
COMPRESSED_LAYOUTS = {
    "rle": _ALL_LAYOUTS,
    "jpeg_lossless": _ALL_LAYOUTS,
    "jpeg_ls": [(np.uint8, 8), (np.uint16, 12), (np.int16, 12), (np.uint16, 16)],
    "jpeg2000_lossless": _ALL_LAYOUTS,
}


def _smooth(rng, shape, dtype, bits_stored):
    """Noisy gradients: compressible like images, with the full value range present."""
    signed = np.dtype(dtype).kind == "i"
    low = -(1 << (bits_stored - 1)) if signed else 0
    high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
    ramp = np.linspace(0.0, 1.0, int(np.prod(shape))).reshape(shape)
    arr = low + ramp * (high - low) + rng.normal(0, 3, shape)
    arr = np.clip(np.rint(arr), low, high).astype(dtype)
    arr.reshape(-1)[[0, -1]] = low, high
    return arr


@pytest.mark.parametrize("transfer_syntax", LOSSLESS_COMPRESSED)
def test_lossless_compressed_grid_reads_back_exactly(transfer_syntax):
    if transfer_syntax not in available_transfer_syntaxes():
        pytest.skip(f"{transfer_syntax} encoder not installed")
    rng = np.random.default_rng(8)
    for (dtype, bits_stored), samples, frames in itertools.product(
        COMPRESSED_LAYOUTS[transfer_syntax], (1, 3), (1, 2)
    ):
        signed = np.dtype(dtype).kind == "i"
        if samples == 3 and (signed or transfer_syntax == "jpeg_ls" and bits_stored > 8):
            continue  # colour codec profiles are unsigned (and 8-bit for JPEG-LS here)
        shape = ((frames,) if frames > 1 else ()) + (36, 40) + ((3,) if samples == 3 else ())
        arr = _smooth(rng, shape, dtype, bits_stored)
        ds = dataset_from_array(
            arr, photometric="RGB" if samples == 3 else "MONOCHROME2", bits_stored=bits_stored,
            transfer_syntax=transfer_syntax,
        )
        assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[transfer_syntax]
        assert "LossyImageCompression" not in ds
        out = _decoded(ds, as_rgb=False)
        np.testing.assert_array_equal(out, arr, err_msg=f"{dtype} {bits_stored} {samples}")


def test_jpeg_lossless_handles_extreme_differences():
    # Differences of +-32768 (category 16) and 0xFF bytes needing stuffing.
    arr = np.array([[0, 65535, 0, 65535], [65535, 0, 32768, 32767]] * 2, dtype=np.uint16)
    arr8 = np.full((5, 5), 255, dtype=np.uint8)
    for a in (arr, arr8):
        ds = dataset_from_array(a, transfer_syntax="jpeg_lossless")
        np.testing.assert_array_equal(_decoded(ds), a)


@pytest.mark.parametrize("transfer_syntax,tolerance", [
    ("jpeg_ls_near", 2), ("jpeg2000", 8), ("jpeg_baseline", 8),
])
def test_lossy_syntaxes_stay_close(transfer_syntax, tolerance):
    if transfer_syntax not in available_transfer_syntaxes():
        pytest.skip(f"{transfer_syntax} encoder not installed")
    rng = np.random.default_rng(9)
    dtype, bits = (np.uint8, 8) if transfer_syntax == "jpeg_baseline" else (np.uint16, 12)
    arr = _smooth(rng, (2, 48, 64), dtype, bits)
    ds = dataset_from_array(arr, bits_stored=bits, transfer_syntax=transfer_syntax)
    assert ds.LossyImageCompression == "01"
    out = _decoded(ds).astype(np.int64)
    assert out.shape == arr.shape
    assert np.abs(out - arr).max() <= tolerance


def test_jpeg_baseline_colour_is_ybr_422():
    y, x = np.mgrid[0:48, 0:64]
    arr = np.stack([x * 3, y * 4, 255 - x * 2], axis=-1).astype(np.uint8)
    ds = dataset_from_array(arr, photometric="RGB", transfer_syntax="jpeg_baseline")
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    out = _decoded(ds)  # pydicom converts to RGB
    assert np.abs(out.astype(int) - arr).mean() < 2.0


def test_available_transfer_syntaxes_and_missing_plugins(monkeypatch):
    available = available_transfer_syntaxes()
    for name in ("explicit_le", "implicit_le", "explicit_be", "deflated", "rle",
                 "jpeg_baseline", "jpeg_lossless"):
        assert available[name] == TRANSFER_SYNTAXES[name]
    assert "htj2k" not in available
    arr = np.zeros((32, 32), dtype=np.uint16)
    with pytest.raises(MissingPluginError, match="HTJ2K"):
        dataset_from_array(arr, transfer_syntax="htj2k_lossless")
    monkeypatch.setattr(get_encoder(JPEGLSLossless), "_available", {})
    assert "jpeg_ls" not in available_transfer_syntaxes()
    with pytest.raises(MissingPluginError, match="pip install pyjpegls") as info:
        dataset_from_array(arr, transfer_syntax="jpeg_ls")
    assert isinstance(info.value, ImportError) and isinstance(info.value, VoxelflowError)


def test_transfer_syntax_by_uid():
    arr = np.ones((4, 4), dtype=np.uint16)
    ds = dataset_from_array(arr, transfer_syntax="1.2.840.10008.1.2")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    with pytest.raises(ParameterError, match="transfer_syntax"):
        dataset_from_array(arr, transfer_syntax="zip")


@pytest.mark.parametrize("kwargs,match", [
    ({"bits_stored": 4}, "outside"),
    ({"photometric": "CMYK"}, "photometric"),
    ({"bits_allocated": 12}, "bits_allocated"),
    ({"fill_unused_bits": "ones"}, "fill_unused_bits"),
    ({"planar_configuration": 2}, "planar_configuration"),
    ({"number_of_frames": 3}, "number_of_frames"),
    ({"transfer_syntax": "jpeg_baseline"}, "JPEG Baseline"),
    ({"photometric": "PALETTE COLOR"}, "palette"),
    ({"transfer_syntax": "rle", "fill_unused_bits": "random", "bits_stored": 12}, "native"),
    ({"transfer_syntax": "jpeg2000_lossless"}, "32 rows"),
])
def test_bad_parameters_raise(kwargs, match):
    arr = np.arange(40, dtype=np.uint16).reshape(5, 8) * 50
    with pytest.raises(ParameterError, match=match):
        dataset_from_array(arr, **kwargs)


def test_float_needs_the_flag():
    with pytest.raises(ParameterError, match="float_pixel_data"):
        dataset_from_array(np.zeros((2, 2), dtype=np.float32))


def test_sop_classes_and_determinism(tmp_path):
    frames = np.zeros((2, 4, 4), dtype=np.uint8)
    assert dataset_from_array(frames).SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.2"
    assert dataset_from_array(frames.astype(np.uint16)).SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.3"
    assert dataset_from_array(frames[0]).SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    rgb = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert dataset_from_array(rgb, photometric="RGB").SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.4"
    a = save_dataset(dataset_from_array(frames, seed=3), tmp_path / "a.dcm").read_bytes()
    b = save_dataset(dataset_from_array(frames, seed=3), tmp_path / "b.dcm").read_bytes()
    c = save_dataset(dataset_from_array(frames, seed=4), tmp_path / "c.dcm").read_bytes()
    assert a == b and a != c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm", "b.dcm", "c.dcm"]
