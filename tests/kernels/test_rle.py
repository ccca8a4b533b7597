"""The RLE Lossless (PS3.5 Annex G) decode kernel: every backend against the reference.

Three layers: hand-made frames for each rule of the contract (one status code each, see
:mod:`voxelflow.kernels.rle_status`), round trips and agreement with pydicom on real and encoded
frames, and hypothesis runs in which any byte string, valid or mangled, must give every backend
the reference's statuses and output bytes.
"""

from __future__ import annotations

import glob
import os
import struct
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pydicom
import pydicom.data
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.uid import RLELossless

from voxelflow import kernels
from voxelflow.errors import BackendError, ParameterError
from voxelflow.kernels.reference.rle import rle_encode_frame
from voxelflow.kernels.rle_status import RleStatus, describe, is_error, is_warning

BACKENDS = ("reference", "cython", "numba")
GARBAGE = 0xA5  # `out` starts full of it: no backend may leave any of it behind

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=_HEALTH)
LONG = settings(max_examples=20_000, deadline=None, suppress_health_check=_HEALTH)


def _kernel(backend: str) -> Callable[..., np.ndarray]:
    try:
        return kernels.get("rle_decode", backend)
    except BackendError as exc:  # pragma: no cover - a build without the extension
        pytest.skip(str(exc))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    _kernel(request.param)
    return request.param




def decode(
    backend: str,
    frames: Sequence[bytes],
    rows: int,
    columns: int,
    samples: int = 1,
    bps: int = 1,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one backend on `frames`; (statuses, out) with out (nframes, frame bytes)."""
    src = np.frombuffer(b"".join(frames), dtype=np.uint8)
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(f) for f in frames])
    if out is None:
        out = np.full((len(frames), rows * columns * samples * bps), GARBAGE, dtype=np.uint8)
    status = _kernel(backend)(src, offsets, out, rows, columns, samples, bps)
    assert status.dtype == np.int32 and status.shape == (len(frames),)
    return status, out


def as_pixels(out: np.ndarray, rows: int, columns: int, samples: int, bps: int) -> np.ndarray:
    """The decoded bytes as (nframes, rows, columns, samples) little-endian samples."""
    return out.view(f"<u{bps}").reshape(out.shape[0], rows, columns, samples)


def unsigned(arr: np.ndarray) -> np.ndarray:
    """`arr`'s bit patterns as little-endian unsigned integers of the same size."""
    little = arr.astype(arr.dtype.newbyteorder("<"))
    return little.view(f"<u{arr.dtype.itemsize}")


def frame(
    segments: Sequence[bytes], offsets: Sequence[int] | None = None, count: int | None = None
) -> bytes:
    """An RLE frame from raw segment bytes: header (G.5) + segments, offsets computed unless given."""
    if offsets is None:
        offsets = list(64 + np.cumsum([0] + [len(s) for s in segments[:-1]]))
    words = [len(segments) if count is None else count, *offsets]
    header = struct.pack(f"<{len(words)}I", *words).ljust(64, b"\0")
    return header + b"".join(segments)


def literal(data: bytes) -> bytes:
    """One literal run (G.3.2: header n copies the next n + 1 bytes)."""
    assert 1 <= len(data) <= 128
    return bytes([len(data) - 1]) + data


def replicate(value: int, count: int) -> bytes:
    """One replicate run (G.3.2: header -n repeats the next byte n + 1 times)."""
    assert 2 <= count <= 128
    return bytes([257 - count, value])


def assert_same_as_reference(
    frames: Sequence[bytes], rows: int, columns: int, samples: int, bps: int
):
    """Every backend gives the reference's statuses and output bytes; returns the reference's."""
    expected_status, expected = decode("reference", frames, rows, columns, samples, bps)
    for name in BACKENDS[1:]:
        status, out = decode(name, frames, rows, columns, samples, bps)
        np.testing.assert_array_equal(status, expected_status, err_msg=name)
        np.testing.assert_array_equal(out, expected, err_msg=name)
    return expected_status, expected


# --- status codes ------------------------------------------------------------------------------


def test_status_helpers():
    for code in RleStatus:
        assert code.name in describe(code)
        assert is_error(code) == (code < 0)
        assert is_warning(code) == (code > 0)
    assert "unknown" in describe(99)


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["u1", "<u2", "<i2", ">u2", "<u4", ">i4"])
@pytest.mark.parametrize("samples", [1, 3])
def test_round_trip(backend, dtype, samples):
    rng = np.random.default_rng(7)
    shape = (3, 17, 23, samples)
    # Runs of equal bytes and noise side by side, so both run kinds and their mix occur.
    arr = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    arr[:, 4:9] = arr[:, 4:5]
    arr[1, :, :7] = 5
    arr = arr if samples == 3 else arr[..., 0]
    frames = [rle_encode_frame(f) for f in arr]
    bps = arr.dtype.itemsize
    status, out = decode(backend, frames, 17, 23, samples, bps)
    assert (status == 0).all()
    np.testing.assert_array_equal(
        as_pixels(out, 17, 23, samples, bps), unsigned(arr).reshape(3, 17, 23, samples)
    )


def test_long_runs_round_trip(backend):
    # Runs longer than 128 are split by the encoder; the 16-bit path sees all four run pairings.
    arr = np.zeros((40, 50), np.uint16)
    arr[:10] = 0x1234
    arr[10:20] = np.arange(500).reshape(10, 50)
    arr[20:30, ::3] = 0xFF00
    frames = [rle_encode_frame(arr)]
    status, out = decode(backend, frames, 40, 50, 1, 2)
    assert status.tolist() == [0]
    np.testing.assert_array_equal(out.view("<u2").reshape(40, 50), arr)


def test_misaligned_output_takes_the_bytewise_path(backend):
    arr = np.random.default_rng(1).integers(0, 4, (9, 11)).astype(np.uint16) * 300
    frames = [rle_encode_frame(arr)] * 2
    buf = np.full(2 * arr.nbytes + 1, GARBAGE, np.uint8)
    out = buf[1:].reshape(2, arr.nbytes)
    status, out = decode(backend, frames, 9, 11, 1, 2, out=out)
    assert status.tolist() == [0, 0]
    np.testing.assert_array_equal(np.frombuffer(out.tobytes(), "<u2").reshape(2, 9, 11), [arr, arr])


def test_no_frames(backend):
    status, _ = decode(backend, [], 4, 4, 1, 2)
    assert status.shape == (0,)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_threads_agree(backend, threads, nthreads):
    threads(nthreads)
    rng = np.random.default_rng(3)
    arr = (rng.integers(0, 3, (9, 20, 30)) * 1000).astype(np.int16)
    frames = [rle_encode_frame(f) for f in arr]
    frames[4] = frames[4][:100]
    status, out = decode(backend, frames, 20, 30, 1, 2)
    assert status[4] < 0 and (np.delete(status, 4) == 0).all()
    np.testing.assert_array_equal(
        np.delete(out.view("<i2"), 4, axis=0), np.delete(arr.reshape(9, -1), 4, axis=0)
    )


# --- agreement with pydicom ---------------------------------------------------------------------


def _dataset(arr: np.ndarray, frames: Sequence[bytes]) -> Dataset:
    """An RLE Lossless dataset holding `frames` of `arr`'s (nframes, rows, columns[, samples])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless
    samples = arr.shape[3] if arr.ndim == 4 else 1
    ds.Rows, ds.Columns = arr.shape[1:3]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 1
    ds.BitsAllocated = ds.BitsStored = 8 * arr.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(arr.dtype.kind == "i")
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(list(frames))
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


@pytest.mark.parametrize("dtype", ["u1", "<i2", "<u4"])
@pytest.mark.parametrize("samples", [1, 3])
def test_encoder_agrees_with_pydicom(dtype, samples):
    rng = np.random.default_rng(11)
    shape = (2, 13, 19, samples) if samples == 3 else (2, 13, 19)
    arr = rng.integers(0, 6, size=shape).astype(dtype) * 41
    frames = [rle_encode_frame(f) for f in arr]
    ds = _dataset(arr, frames)
    theirs = pixel_array(ds, raw=True, decoding_plugin="pydicom")
    np.testing.assert_array_equal(theirs, arr)
    bps = arr.dtype.itemsize
    for backend in BACKENDS:
        status, out = decode(backend, frames, 13, 19, samples, bps)
        assert (status == 0).all()
        np.testing.assert_array_equal(
            as_pixels(out, 13, 19, samples, bps).reshape(arr.shape), unsigned(theirs)
        )


def _pydicom_rle_files() -> list[str]:
    root = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    found = []
    for path in sorted(glob.glob(os.path.join(root, "*.dcm"))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # some test files carry deliberate oddities
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:  # pragma: no cover - not our subject
            continue
        if ds.get("file_meta") and ds.file_meta.get("TransferSyntaxUID") == RLELossless:
            found.append(path)
    return found


RLE_FILES = _pydicom_rle_files()


@pytest.mark.skipif(not RLE_FILES, reason="pydicom's test files are not installed")
@pytest.mark.parametrize("path", RLE_FILES, ids=os.path.basename)
def test_real_files_agree_with_pydicom(path):
    """Frames from other encoders (pydicom's RLE test files) decode as pydicom decodes them."""
    ds = pydicom.dcmread(path)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    frames = list(generate_frames(ds.PixelData, number_of_frames=nframes))
    theirs = pixel_array(ds, raw=True, decoding_plugin="pydicom")
    rows, columns, samples, bps = ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated // 8
    status, _ = assert_same_as_reference(frames, rows, columns, samples, bps)
    assert not any(is_error(code) for code in status)
    _, out = decode("cython", frames, rows, columns, samples, bps)
    np.testing.assert_array_equal(
        as_pixels(out, rows, columns, samples, bps).reshape(theirs.shape), unsigned(theirs)
    )


def test_pydicom_encoder_agrees():
    """Frames from pydicom's own RLE encoder decode to the array it encoded."""
    arr = (np.random.default_rng(5).integers(0, 40, (21, 17)) * 997).astype(np.uint16)
    ds = _dataset(arr[None], [rle_encode_frame(arr)])
    ds.compress(RLELossless, arr, encoding_plugin="pydicom")
    frames = list(generate_frames(ds.PixelData, number_of_frames=1))
    status, out = assert_same_as_reference(frames, 21, 17, 1, 2)
    assert not any(is_error(code) for code in status)
    np.testing.assert_array_equal(out.view("<u2").reshape(21, 17), arr)


# --- malformed frames: one rule each --------------------------------------------------------------

# A valid 2 x 3, 16-bit frame (6 pixels, two segments) to break one rule at a time.
HI = replicate(0x12, 6)
LO = literal(bytes([1, 2, 3, 4, 5, 6])) + b"\0"  # odd data + G.5 zero pad
VALID = frame([HI, LO])
VALID_PIXELS = [0x1201, 0x1202, 0x1203, 0x1204, 0x1205, 0x1206]


def _patched(data: bytes, at: int, value: int) -> bytes:
    data = bytearray(data)
    struct.pack_into("<I", data, at, value)
    return bytes(data)


ERROR_CASES = {
    "empty frame": (b"", RleStatus.HEADER_TRUNCATED),
    "63-byte frame": (VALID[:63], RleStatus.HEADER_TRUNCATED),
    "zero segments": (_patched(VALID, 0, 0), RleStatus.BAD_SEGMENT_COUNT),
    "16 segments": (_patched(VALID, 0, 16), RleStatus.BAD_SEGMENT_COUNT),
    "2**32 - 1 segments": (_patched(VALID, 0, 2**32 - 1), RleStatus.BAD_SEGMENT_COUNT),
    "1 segment for 2 bytes per sample": (_patched(VALID, 0, 1), RleStatus.SEGMENT_COUNT_MISMATCH),
    "3 segments for 2 bytes per sample": (_patched(VALID, 0, 3), RleStatus.SEGMENT_COUNT_MISMATCH),
    "first offset 60": (_patched(VALID, 4, 60), RleStatus.BAD_FIRST_OFFSET),
    "first offset 66": (_patched(VALID, 4, 66), RleStatus.BAD_FIRST_OFFSET),
    "equal offsets": (_patched(VALID, 8, 64), RleStatus.OFFSETS_NOT_INCREASING),
    "decreasing offsets": (_patched(VALID, 8, 10), RleStatus.OFFSETS_NOT_INCREASING),
    "offset at frame end": (_patched(VALID, 8, len(VALID)), RleStatus.OFFSET_BEYOND_FRAME),
    "offset past frame end": (_patched(VALID, 8, 2**31 - 1), RleStatus.OFFSET_BEYOND_FRAME),
    "header only": (frame([b""]), RleStatus.SEGMENT_COUNT_MISMATCH),
    "segment decodes short": (frame([HI, literal(b"\1\2\3")]), RleStatus.SEGMENT_SHORT),
    "first segment decodes short": (frame([replicate(0x12, 5), LO]), RleStatus.SEGMENT_SHORT),
    "segment of no-ops": (frame([HI, b"\x80\x80"]), RleStatus.SEGMENT_SHORT),
    "literal run past input end": (frame([HI, b"\x05\1\2\3"]), RleStatus.RUN_PAST_INPUT_END),
    "replicate run without its byte": (
        frame([HI, literal(b"\1\2") + b"\xfe"]),
        RleStatus.RUN_PAST_INPUT_END,
    ),
}

WARNING_CASES = {
    "clean": (VALID, RleStatus.OK),
    "no pad byte (odd length)": (frame([HI, LO[:-1]]), RleStatus.ODD_SEGMENT_LENGTH),
    "no-op pad byte": (frame([HI, LO[:-1] + b"\x80"]), RleStatus.OK),
    "no-ops inside": (frame([b"\x80" + HI + b"\x80", b"\x80\x80" + LO]), RleStatus.OK),
    "non-zero pad byte": (frame([HI, LO[:-1] + b"\x07"]), RleStatus.NONZERO_PADDING),
    "replicate run past output end": (frame([replicate(0x12, 100), LO]), RleStatus.SEGMENT_LONG),
    "literal run past output end": (
        frame([HI, literal(bytes([1, 2, 3, 4, 5, 6, 7, 8])) + b"\0"]),
        RleStatus.SEGMENT_LONG,
    ),
    "runs after a complete output": (frame([HI + replicate(9, 4), LO]), RleStatus.SEGMENT_LONG),
    "truncated run after a complete output": (frame([HI + b"\x05\1", LO]), RleStatus.SEGMENT_LONG),
    "non-zero unused offset": (_patched(VALID, 20, 999), RleStatus.UNUSED_OFFSET_NONZERO),
    # Several warnings: the largest code is reported.
    "odd and long": (frame([HI + replicate(1, 2) + b"\1", LO]), RleStatus.SEGMENT_LONG),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_error_cases(backend, case):
    data, code = ERROR_CASES[case]
    status, out = decode(backend, [VALID, data, VALID], 2, 3, 1, 2)
    assert status.tolist() == [0, code, 0], describe(status[1])
    assert is_error(status[1])
    pixels = out.view("<u2")
    assert pixels[0].tolist() == VALID_PIXELS and pixels[2].tolist() == VALID_PIXELS
    assert GARBAGE not in out[1]


@pytest.mark.parametrize("case", list(WARNING_CASES), ids=list(WARNING_CASES))
def test_warning_cases_keep_correct_pixels(backend, case):
    data, code = WARNING_CASES[case]
    status, out = decode(backend, [data], 2, 3, 1, 2)
    assert status.tolist() == [code], describe(status[0])
    assert not is_error(status[0])
    assert out.view("<u2")[0].tolist() == VALID_PIXELS


def test_error_keeps_what_was_decoded_and_zeroes_the_rest(backend):
    # 3 samples x 2 bytes: segments R hi, R lo, G hi, G lo, B hi, B lo. G lo stops after
    # 2 of 4 pixels; B is never decoded.
    segments = [
        replicate(0x11, 4),
        literal(b"\1\2\3\4"),
        replicate(0x22, 4),
        literal(b"\5\6"),
        replicate(0x33, 4),
        replicate(0x44, 4),
    ]
    status, out = decode(backend, [frame(segments)], 2, 2, 3, 2)
    assert status.tolist() == [RleStatus.SEGMENT_SHORT]
    pixels = as_pixels(out, 2, 2, 3, 2).reshape(4, 3)
    assert pixels[:, 0].tolist() == [0x1101, 0x1102, 0x1103, 0x1104]
    assert pixels[:, 1].tolist() == [0x2205, 0x2206, 0x2200, 0x2200]
    assert pixels[:, 2].tolist() == [0, 0, 0, 0]


def test_literal_run_past_input_end_writes_nothing_of_it(backend):
    # 8-bit: the stride-1 path; the failing run is not written at all.
    data = frame([literal(b"\7\7") + b"\x09\1\2\3"])
    status, out = decode(backend, [data], 2, 5, 1, 1)
    assert status.tolist() == [RleStatus.RUN_PAST_INPUT_END]
    assert out[0].tolist() == [7, 7] + [0] * 8


def test_runs_past_output_end_are_clipped_8bit(backend):
    data = frame([replicate(3, 4) + literal(bytes(range(10, 20)))])
    status, out = decode(backend, [data], 2, 4, 1, 1)
    assert status.tolist() == [RleStatus.SEGMENT_LONG]
    assert out[0].tolist() == [3, 3, 3, 3, 10, 11, 12, 13]


@pytest.mark.parametrize("case", list(ERROR_CASES) + list(WARNING_CASES))
def test_malformed_cases_match_reference_bytes(case):
    data = {**ERROR_CASES, **WARNING_CASES}[case][0]
    for rows, columns, samples, bps in [(2, 3, 1, 2), (3, 2, 1, 2), (1, 6, 2, 1), (2, 3, 2, 1)]:
        assert_same_as_reference([data, VALID], rows, columns, samples, bps)


# --- bad calls ---------------------------------------------------------------------------------

_SRC = np.frombuffer(VALID, np.uint8)
_OFF = np.array([0, len(VALID)], np.int64)

BAD_CALLS = {
    "src not an array": (VALID, _OFF, np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "src int8": (_SRC.view(np.int8), _OFF, np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "offsets int32": (_SRC, _OFF.astype(np.int32), np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "out 1-D": (_SRC, _OFF, np.zeros(12, np.uint8), 2, 3, 1, 2),
    "out not contiguous": (_SRC, _OFF, np.zeros((1, 24), np.uint8)[:, ::2], 2, 3, 1, 2),
    "out uint16": (_SRC, _OFF, np.zeros((1, 6), np.uint16), 2, 3, 1, 2),
    "out wrong size": (_SRC, _OFF, np.zeros((1, 10), np.uint8), 2, 3, 1, 2),
    "3 bytes per sample": (_SRC, _OFF, np.zeros((1, 18), np.uint8), 2, 3, 1, 3),
    "no samples": (_SRC, _OFF, np.zeros((1, 0), np.uint8), 2, 3, 0, 2),
    "too few offsets": (_SRC, _OFF[:1], np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "offset past src": (_SRC, _OFF + 1, np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "negative offset": (_SRC, _OFF - 1, np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "decreasing offsets": (_SRC, _OFF[::-1].copy(), np.zeros((1, 12), np.uint8), 2, 3, 1, 2),
    "decreasing offsets, many frames": (
        _SRC,
        np.arange(100, dtype=np.int64)[::-1].copy(),
        np.zeros((99, 12), np.uint8),
        2,
        3,
        1,
        2,
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_calls_raise_parameter_error(backend, case):
    with pytest.raises(ParameterError, match="rle_decode"):
        _kernel(backend)(*BAD_CALLS[case])


def test_read_only_out_is_refused(backend):
    out = np.zeros((1, 12), np.uint8)
    out.flags.writeable = False
    with pytest.raises(ParameterError, match="read-only"):
        _kernel(backend)(_SRC, _OFF, out, 2, 3, 1, 2)


def test_encoder_rejects_what_annex_g_cannot_hold():
    with pytest.raises(ParameterError):
        rle_encode_frame(np.zeros((2, 2, 4), np.uint32))  # 16 segments
    with pytest.raises(ParameterError):
        rle_encode_frame(np.zeros((2, 2), np.float32))
    with pytest.raises(ParameterError):
        rle_encode_frame(np.zeros(4, np.uint8))


def test_encoder_pads_segments_to_even_length():
    data = rle_encode_frame(np.array([[1, 2, 3]], np.uint8))  # literal of 3: 4 bytes, even
    assert len(data) % 2 == 0
    data = rle_encode_frame(np.array([[1, 2]], np.uint8))  # literal of 2: 3 bytes + pad
    assert data[64:] == b"\x01\x01\x02\x00"


# --- hypothesis: the contract on random inputs ----------------------------------------------------

DTYPES = st.sampled_from(["u1", "<u2", "<i2", ">u2", "<u4", "<i4"])


@st.composite
def images(draw) -> np.ndarray:
    """(nframes, rows, columns, samples) arrays whose bytes mix runs and noise."""
    dtype = np.dtype(draw(DTYPES))
    samples = draw(st.sampled_from([1, 3]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 24)), draw(st.integers(1, 24)), samples)
    # A small alphabet of values makes runs (replicate runs) as likely as noise (literals).
    alphabet = draw(st.lists(st.integers(0, 2 ** (8 * dtype.itemsize) - 1), min_size=1, max_size=4))
    codes = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, len(alphabet) - 1)))
    values = np.array(alphabet, dtype=np.uint64)[codes].astype(f"u{dtype.itemsize}")
    return values.view(f"{dtype.kind}{dtype.itemsize}").astype(dtype)


@BOUNDED
@given(arr=images())
def test_contract_round_trip(arr):
    _check_round_trip(arr)


@pytest.mark.slow
@LONG
@given(arr=images())
def test_contract_round_trip_long(arr):
    _check_round_trip(arr)


def _check_round_trip(arr: np.ndarray) -> None:
    _, rows, columns, samples = arr.shape
    frames = [rle_encode_frame(f if samples == 3 else f[..., 0]) for f in arr]
    bps = arr.dtype.itemsize
    for backend in BACKENDS:
        status, out = decode(backend, frames, rows, columns, samples, bps)
        assert (status == 0).all(), (backend, status)
        np.testing.assert_array_equal(as_pixels(out, rows, columns, samples, bps), unsigned(arr))


def _runs_and_noise(rng: np.random.Generator, shape: tuple[int, ...], bps: int) -> np.ndarray:
    """Little-endian samples of `bps` bytes with runs of equal values, noise and both mixed."""
    levels = rng.integers(0, 2 ** (8 * bps), size=rng.integers(1, 5), dtype=np.uint64)
    values = levels[rng.integers(0, levels.size, size=shape)]
    flat = values.reshape(-1)
    for _ in range(rng.integers(0, 4)):  # long runs, which span several encoded runs
        start = rng.integers(0, flat.size)
        flat[start : start + rng.integers(1, 300)] = levels[0]
    return values.astype(f"<u{bps}")


@st.composite
def mangled(draw) -> tuple[list[bytes], tuple[int, int, int, int]]:
    """Frames that start valid and are then broken, or are random bytes from the start."""
    small = st.integers(1, 6)
    size = st.one_of(small, st.integers(1, 40))
    rows, columns = draw(size), draw(size)
    samples, bps = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 2, 2, 4]))
    geometry = (rows, columns, samples, bps)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frames = []
    for _ in range(draw(st.integers(1, 3))):
        pixels = _runs_and_noise(rng, (rows, columns, samples), bps)
        data = bytearray(rle_encode_frame(pixels if samples == 3 else pixels[..., 0]))
        for _ in range(draw(st.integers(0, 4))):
            how = draw(
                st.sampled_from(
                    ["truncate", "header", "offset", "byte", "insert", "append", "random"]
                )
            )
            if how == "truncate":
                del data[draw(st.integers(0, len(data))) :]
            elif how == "header" and data:
                i = draw(st.integers(0, min(63, len(data) - 1)))
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif how == "offset" and len(data) >= 64:
                slot = draw(st.integers(0, 15))
                value = draw(st.one_of(st.integers(0, len(data) + 8), st.integers(0, 2**32 - 1)))
                struct.pack_into("<I", data, 4 * slot, value)
            elif how == "byte" and len(data) > 64:
                data[draw(st.integers(64, len(data) - 1))] = draw(st.integers(0, 255))
            elif how == "insert":
                at = draw(st.integers(0, len(data)))
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif how == "append":
                data += draw(st.binary(min_size=1, max_size=300))
            elif how == "random":
                data = bytearray(draw(st.binary(max_size=200)))
        frames.append(bytes(data))
    return frames, geometry


@BOUNDED
@given(case=mangled())
def test_contract_mangled_frames(case):
    frames, geometry = case
    assume(geometry[2] * geometry[3] <= 15)
    assert_same_as_reference(frames, *geometry)


@pytest.mark.slow
@LONG
@given(case=mangled())
def test_contract_mangled_frames_long(case):
    frames, geometry = case
    assume(geometry[2] * geometry[3] <= 15)
    assert_same_as_reference(frames, *geometry)
