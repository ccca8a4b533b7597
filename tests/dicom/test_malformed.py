"""Hostile and broken inputs: a DecodeError naming what is wrong, never a crash or a big allocation.

The cases follow ../shared/reference/malformed-inputs.md.
"""

from __future__ import annotations

import struct
import tracemalloc
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

import voxelflow
from voxelflow.errors import DecodeError, DecodeWarning, VoxelflowError

BACKENDS = ["reference", "cython", "numba"]


@pytest.fixture
def ct():
    """A 128x128 16-bit signed CT slice (Explicit VR Little Endian)."""
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


@pytest.fixture
def rle():
    """A 10-frame 64x64 16-bit (12 stored) RLE Lossless MR."""
    return pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))


def _rle_frames(ds) -> list[bytearray]:
    from pydicom.encaps import generate_frames

    return [bytearray(f) for f in generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames)]


def _with_frames(ds, frames, *, bot=False):
    ds.PixelData = encapsulate([bytes(f) for f in frames], has_bot=bot)
    ds["PixelData"].is_undefined_length = True
    return ds


def _raises(src, match, **kwargs):
    with pytest.raises(DecodeError, match=match) as info:
        voxelflow.decode(src, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, VoxelflowError)
    return info.value


# --- file / container ------------------------------------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    err = _raises(path, "empty")
    assert str(path) in str(err)


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not DICOM" * 20)
    _raises(path, "not a DICOM file")


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.dcm", "cannot open")


@pytest.mark.parametrize("keep", [0.99, 0.9, 0.6, 0.3, 0.1])
def test_truncated_file(tmp_path, keep):
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DecodeError):
        voxelflow.decode(path)


def test_truncated_at_every_offset_of_the_last_kib(tmp_path):
    data = open(get_testdata_file("MR_small_RLE.dcm"), "rb").read()
    # the file ends with (FFFC,FFFC) padding after the pixel data's sequence delimiter:
    # cutting that is harmless, cutting anything before the delimiter's end is not
    end = data.rindex(b"\xfe\xff\xdd\xe0") + 8
    path = tmp_path / "cut.dcm"
    for cut in range(end - 1024, end):
        path.write_bytes(data[:cut])
        with pytest.raises(DecodeError):
            voxelflow.decode(path)


def test_pixel_length_beyond_file(tmp_path, ct):
    path = tmp_path / "ct.dcm"
    ct.save_as(path)
    data = bytearray(path.read_bytes())
    tag = data.rfind(b"\xe0\x7f\x10\x00OW")
    struct.pack_into("<I", data, tag + 8, 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    _raises(path, "runs past the end of the file")


# --- Image Pixel module ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "value", "match"),
    [
        ("Rows", 0, "Rows is 0"),
        ("Columns", 0, "Columns is 0"),
        ("Rows", 70000, "Rows is 70000"),
        ("BitsAllocated", 0, "Bits Allocated is 0"),
        ("BitsAllocated", 7, "Bits Allocated is 7"),
        ("BitsAllocated", 12, "Bits Allocated is 12"),
        ("BitsAllocated", 64, "Bits Allocated is 64"),
        ("BitsStored", 0, "Bits Stored is 0"),
        ("BitsStored", 17, "Bits Stored is 17"),
        ("SamplesPerPixel", 0, "Samples per Pixel is 0"),
        ("SamplesPerPixel", 2, "Samples per Pixel is 2"),
        ("SamplesPerPixel", 4, "Samples per Pixel is 4"),
        ("PixelRepresentation", 2, "Pixel Representation is 2"),
        ("PhotometricInterpretation", "HSV", "'HSV' is unknown"),
        ("PhotometricInterpretation", "RGB", "needs 3 samples"),
        ("NumberOfFrames", 0, "Number of Frames is 0"),
        ("NumberOfFrames", -1, "Number of Frames is -1"),
        ("NumberOfFrames", 2**31, "Number of Frames is 2147483648"),
    ],
)
def test_bad_image_pixel_attribute(ct, keyword, value, match):
    setattr(ct, keyword, value)
    _raises(ct, match)


def test_non_numeric_number_of_frames(tmp_path, rle):
    path = tmp_path / "frames.dcm"
    rle.NumberOfFrames = "77"
    rle.save_as(path)
    element = b"\x28\x00\x08\x00IS\x02\x0077"
    data = path.read_bytes()
    assert data.count(element) == 1
    path.write_bytes(data.replace(element, element[:-2] + b"1A"))
    _raises(path, r"\(0028,0008\) NumberOfFrames")


def test_missing_rows(ct):
    del ct.Rows
    _raises(ct, r"\(0028,0010\) Rows is missing")


def test_planar_configuration_2():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
    ds.PlanarConfiguration = 2
    _raises(ds, "Planar Configuration is 2")


def test_high_bit_mismatch_warns(ct):
    ct.HighBit = 11
    with pytest.warns(DecodeWarning, match="High Bit"):
        voxelflow.decode(ct)


def test_huge_dimensions_with_tiny_data_refused_before_allocating(ct):
    # 46341^2 * 2 bytes just exceeds 2^32: a classic overflow probe, here with 9 KB of data
    ct.Rows = ct.Columns = 46341
    ct.PixelData = bytes(9 * 1024)
    tracemalloc.start()
    try:
        _raises(ct, "needs|exceeds")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_dimensions_within_limit_but_data_short(ct):
    ct.Rows = ct.Columns = 40000
    err = _raises(ct, "holds 32768 bytes")
    assert "needs 3200000000" in str(err)


def test_output_limit_is_configurable(ct, monkeypatch):
    from voxelflow.dicom import pixel_info

    monkeypatch.setattr(pixel_info.limits, "max_output_bytes", 1000)
    _raises(ct, "exceeds the limit of 1000")


def test_pixel_data_short_by_one_byte(ct):
    ct.PixelData = ct.PixelData[:-2] + b"\x00"  # odd, one byte short
    _raises(ct, "holds 32767 bytes")


def test_excess_bytes_warn_and_trim(ct):
    expected = voxelflow.decode(ct)
    ct.PixelData = ct.PixelData + bytes(64)
    with pytest.warns(DecodeWarning, match="64 bytes beyond"):
        got = voxelflow.decode(ct)
    np.testing.assert_array_equal(got, expected)


def test_ybr422_with_full_size_buffer():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
    ds.PhotometricInterpretation = "YBR_FULL_422"
    _raises(ds, "unsubsampled")


def test_no_pixel_data(ct):
    del ct.PixelData
    _raises(ct, "no Pixel Data")


def test_missing_transfer_syntax(ct):
    del ct.file_meta.TransferSyntaxUID
    ct._read_implicit = None
    ct._read_little = None
    with pytest.raises(DecodeError, match="Transfer Syntax UID"):
        voxelflow.decode(ct)


def test_bad_frames_argument(rle):
    with pytest.raises(voxelflow.errors.ParameterError, match="out of range"):
        voxelflow.decode(rle, frames=[10])
    with pytest.raises(voxelflow.errors.ParameterError, match="empty"):
        voxelflow.decode(rle, frames=[])


def test_bad_out_argument(ct):
    with pytest.raises(voxelflow.errors.ParameterError, match="out has shape"):
        voxelflow.decode(ct, out=np.empty((128, 127), np.int16))
    with pytest.raises(voxelflow.errors.ParameterError, match="C-contiguous"):
        voxelflow.decode(ct, out=np.empty((128, 256), np.int16)[:, ::2])


# --- encapsulation ---------------------------------------------------------------------


def test_bot_item_tag_wrong(rle):
    data = bytearray(rle.PixelData)
    data[0:4] = b"\xfe\xff\x00\xe1"
    rle.PixelData = bytes(data)
    _raises(rle, r"expected the Basic Offset Table item \(FFFE,E000\)")


def test_bot_length_not_multiple_of_4(rle):
    frames = _rle_frames(rle)
    _with_frames(rle, frames, bot=True)
    data = bytearray(rle.PixelData)
    struct.pack_into("<I", data, 4, 6)
    rle.PixelData = bytes(data)
    _raises(rle, "not a multiple of 4")


def _first_fragment_length_at(data) -> int:
    # the first fragment item follows the Basic Offset Table item
    return 8 + struct.unpack_from("<I", data, 4)[0] + 4


def test_fragment_length_past_buffer(rle):
    data = bytearray(rle.PixelData)
    struct.pack_into("<I", data, _first_fragment_length_at(data), 0x7FFFFFF0)
    rle.PixelData = bytes(data)
    _raises(rle, "runs past the end")


def test_fragment_with_undefined_length(rle):
    data = bytearray(rle.PixelData)
    struct.pack_into("<I", data, _first_fragment_length_at(data), 0xFFFFFFFF)
    rle.PixelData = bytes(data)
    _raises(rle, "undefined length")


def test_fewer_fragments_than_frames(rle):
    _with_frames(rle, _rle_frames(rle)[:7])
    _raises(rle, "7 fragments for 10 frames")


def test_bot_offsets_inconsistent(rle):
    frames = _rle_frames(rle)
    frames[0] = frames[0] + frames[1]  # 9 fragments, BOT pointing nowhere sensible
    _with_frames(rle, frames[:1] + frames[2:], bot=True)
    rle.NumberOfFrames = 10
    with pytest.raises(DecodeError):
        voxelflow.decode(rle)


def test_defined_length_for_encapsulated_syntax(ct):
    ct.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    _raises(ct, "needs encapsulated Pixel Data")


# --- RLE (PS3.5 Annex G) -----------------------------------------------------------------


def _mutate_header(rle, frame, fn):
    frames = _rle_frames(rle)
    fn(frames[frame])
    return _with_frames(rle, frames)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: struct.pack_into("<I", f, 0, 0), "segment"),
        (lambda f: struct.pack_into("<I", f, 0, 16), "segment"),
        (lambda f: struct.pack_into("<I", f, 0, 3), "segment"),
        (lambda f: struct.pack_into("<I", f, 4, 60), "64"),
        (lambda f: struct.pack_into("<I", f, 8, 0x7FFFFFFF), "offset|beyond|past"),
        (lambda f: struct.pack_into("<I", f, 8, 64), "increas|offset"),
        (lambda f: f.__delitem__(slice(100, None)), "."),
    ],
    ids=["zero-segments", "16-segments", "3-segments", "first-offset", "offset-beyond", "not-increasing", "truncated"],
)
def test_rle_header_errors(rle, backend, mutate, match):
    _mutate_header(rle, 3, mutate)
    err = _raises(rle, match, backend=backend)
    assert err.frame == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_rle_frame_shorter_than_header(rle, backend):
    frames = _rle_frames(rle)
    frames[2] = frames[2][:40]
    _with_frames(rle, frames)
    # refused by the expansion bound or by the header check; frame 2 named either way
    err = _raises(rle, ".", backend=backend)
    assert err.frame == 2


def test_rle_huge_frame_from_tiny_fragment(rle):
    rle.Rows = rle.Columns = 46341
    rle.NumberOfFrames = 1
    _with_frames(rle, [_rle_frames(rle)[0][:9000]])
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            voxelflow.decode(rle)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


# --- palettes --------------------------------------------------------------------------


def test_palette_index_outside_table():
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    entries, first, bits = ds.RedPaletteColorLookupTableDescriptor
    arr = voxelflow.decode(ds)
    assert arr.max() >= first
    for channel in ("Red", "Green", "Blue"):
        setattr(ds, f"{channel}PaletteColorLookupTableDescriptor", [int(arr.max()) - first, first, bits])
        data = getattr(ds, f"{channel}PaletteColorLookupTableData")
        setattr(ds, f"{channel}PaletteColorLookupTableData", data[: 2 * (int(arr.max()) - first)])
    _raises(ds, "outside the palette", apply_palette=True)


def test_palette_descriptor_disagrees_with_data():
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    ds.RedPaletteColorLookupTableData = ds.RedPaletteColorLookupTableData[:100]
    _raises(ds, "holds 100 bytes", apply_palette=True)


def test_palette_bad_bits():
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    entries, first, _ = ds.RedPaletteColorLookupTableDescriptor
    ds.RedPaletteColorLookupTableDescriptor = [entries, first, 12]
    _raises(ds, "12 bits per entry", apply_palette=True)


def test_warnings_are_not_errors(ct):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        voxelflow.decode(ct)


# --- multi-frame offset tables (PS3.5 A.4, PS3.3 C.7.6.3.1.8) ------------------------------
# The corpus (voxelflow.testing.malformed) repeats one slice; here the frames differ, so a
# framing that mixes them up shows as wrong pixels, asserted against each slice decoded alone.


def _item(fragment: bytes) -> bytes:
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(fragment)) + fragment


def _split(stream: bytes, parts: int) -> list[bytes]:
    stream += b"\0" * (len(stream) % 2)
    step = max(2, (len(stream) // parts) & ~1)
    cuts = [i * step for i in range(parts)] + [len(stream)]
    return [stream[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def _multiframe(tmp_path, ts, layout):
    """(2-frame dataset framed by `layout`, reference pixels of its frames)."""
    from pydicom.encaps import generate_frames

    from voxelflow.testing import write_series

    info = write_series(tmp_path / "src", shape=(2, 32, 32), modality="MR", transfer_syntax=ts)
    paths = sorted(info.paths)
    reference = np.stack([voxelflow.decode(p) for p in paths])
    streams = []
    for p in paths:
        (stream,) = generate_frames(pydicom.dcmread(p).PixelData, number_of_frames=1)
        streams.append(bytes(stream))
    ds = pydicom.dcmread(paths[0])
    per_frame = [[s] if ts == "rle" else _split(s, 2 + i) for i, s in enumerate(streams)]
    fragments = [f for frame in per_frame for f in frame]
    positions, pos = [], 0
    for f in fragments:
        positions.append(pos)
        pos += 8 + len(f)
    firsts = [0, len(per_frame[0])]
    bot, eot = layout([positions[i] for i in firsts], fragments)
    if ts == "rle" or eot is not None:
        fragments = [b"".join(frame) for frame in per_frame]
        fragments = [f + b"\0" * (len(f) % 2) for f in fragments]
        first = 8 + len(fragments[0])
        bot, eot = layout([0, first], fragments)
    ds.NumberOfFrames = 2
    ds.PixelData = _item(struct.pack(f"<{len(bot)}I", *bot)) + b"".join(map(_item, fragments))
    ds["PixelData"].is_undefined_length = True
    if eot is not None:
        ds.ExtendedOffsetTable = struct.pack(f"<{len(eot[0])}Q", *eot[0])
        ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(eot[1])}Q", *eot[1])
    return ds, reference


def _no_table(starts, fragments):
    return [], None


def _bot(starts, fragments):
    return starts, None


def _eot(starts, fragments):
    return [], (starts, [len(f) for f in fragments])


def _eot_unpadded(starts, fragments):
    # Extended Offset Table Lengths without the fragment's pad byte are as good
    return [], (starts, [len(f) - (f[-1:] == b"\0") for f in fragments])


@pytest.mark.parametrize("ts", ["rle", "jpeg_baseline", "jpeg_lossless", "jpeg_ls", "jpeg2000_lossless"])
@pytest.mark.parametrize("layout", [_no_table, _bot, _eot, _eot_unpadded], ids=lambda f: f.__name__)
def test_exact_framings_decode_to_the_frames(tmp_path, ts, layout):
    ds, reference = _multiframe(tmp_path, ts, layout)
    if layout in (_eot, _eot_unpadded):
        assert len(ds.PixelData) and ds.ExtendedOffsetTable  # one fragment per frame
    path = tmp_path / "multi.dcm"
    ds.save_as(path)
    for src in (path, ds):
        np.testing.assert_array_equal(voxelflow.decode(src), reference)
        np.testing.assert_array_equal(voxelflow.decode(src, frames=1), reference[1])
        np.testing.assert_array_equal(voxelflow.decode(src, frames=[1, 0]), reference[::-1])


def test_decoding_leaves_the_dataset_alone(tmp_path):
    ds, _ = _multiframe(tmp_path, "jpeg_baseline", _eot)
    before = bytes(ds.PixelData)
    voxelflow.decode(ds)
    assert ds.NumberOfFrames == 2 and bytes(ds.PixelData) == before and "ExtendedOffsetTable" in ds


@pytest.mark.parametrize("ts", ["jpeg_baseline", "jpeg2000_lossless"])
def test_swapped_extended_offsets_are_refused_not_followed(tmp_path, ts):
    # pydicom follows the table: frame 0 would have been decoded from frame 1's fragment
    ds, _ = _multiframe(tmp_path, ts, lambda s, f: ([], (s[::-1], [len(x) for x in f][::-1])))
    err = _raises(ds, r"frame 0: \(7FE0,0001\) Extended Offset Table gives frame 0 the offset")
    assert err.frame == 0


@pytest.mark.parametrize("ts", ["rle", "jpeg_baseline"])
def test_a_table_that_disagrees_is_refused_even_with_one_fragment_per_frame(tmp_path, ts):
    ds, _ = _multiframe(tmp_path, ts, lambda s, f: ([0, s[1] + 2], None))
    _raises(ds, r"frame 1: \(7FE0,0010\) Basic Offset Table offset \d+ lands inside fragment")


def test_eot_and_bot_must_agree(tmp_path):
    ds, _ = _multiframe(tmp_path, "rle", _eot)
    good = bytes(ds.PixelData)
    (first,) = struct.unpack_from("<I", good, 12)
    ds.PixelData = _item(struct.pack("<2I", 0, 8 + first)) + good[8:]
    ds["PixelData"].is_undefined_length = True
    assert voxelflow.decode(ds).shape == (2, 32, 32)  # both tables right: fine
    ds.ExtendedOffsetTableLengths = struct.pack("<2Q", first, 8)
    _raises(ds, r"frame 1: \(7FE0,0002\)")


def test_eot_without_its_lengths(tmp_path):
    ds, _ = _multiframe(tmp_path, "rle", _eot)
    del ds.ExtendedOffsetTableLengths
    _raises(ds, r"\(7FE0,0001\) Extended Offset Table is present without \(7FE0,0002\)")


def test_jpeg_frames_derived_from_markers_must_start_with_soi(tmp_path):
    ds, _ = _multiframe(tmp_path, "jpeg_baseline", _no_table)
    data = bytearray(ds.PixelData)
    # frame 1 starts with a fragment whose SOI is gone: markers give 2 frames, not exactly
    first_len = struct.unpack_from("<I", data, 12)[0]
    i = 8
    while True:  # find the fragment after the one ending in EOI
        length = struct.unpack_from("<I", data, i + 4)[0]
        i += 8 + length
        if bytes(data[i - 4 : i]).rstrip(b"\0").endswith(b"\xff\xd9"):
            break
    data[i + 8 : i + 10] = b"\0\0"
    ds.PixelData = bytes(data)
    assert first_len
    _raises(ds, r"frame 1: .*do not start with a start-of-image marker")
