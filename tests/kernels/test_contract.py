"""The kernel-backend contract for unpack_words, unpack_bits and palette_lookup.

Every native backend must equal the NumPy reference bit for bit on any valid call, raise the
same ParameterError on any bad call, and give the same result on one thread as on two. Each
backend is a subclass of one base class (the shape of zarr-python's store test suites), and
the inputs come from the strategies shipped in ``voxelflow.testing.strategies``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from voxelflow import kernels
from voxelflow._threads import PARALLEL_MIN_BYTES
from voxelflow.errors import ParameterError
from voxelflow.kernels.reference.palette import INDEX_DTYPES, LUT_DTYPES
from voxelflow.kernels.reference.unpack import WORD_DTYPES, check_unpack_words
from voxelflow.testing import strategies as vst
from voxelflow.testing.contract import KernelBackendContract

KERNEL_NAMES = ("unpack_words", "unpack_bits", "palette_lookup")

# Each backend class runs the same inherited @given tests (hypothesis calls that "differing
# executors"): harmless here, a failing example saved by one backend is simply replayed on
# the other. Big arrays are drawn from seeds, so data size is not a concern either.
_HEALTH = [HealthCheck.differing_executors, HealthCheck.too_slow, HealthCheck.data_too_large]
# The default run stays bounded (well under a minute for all backends); `-m slow` goes deep.
BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=_HEALTH)
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=_HEALTH)


def reference(name: str) -> Callable[..., None]:
    return kernels.get(name, "reference")




# -- bad calls: each is (kernel, parameter named in the message, arguments) -------------------

_u8 = np.zeros(64, np.uint8)
_i16 = np.zeros(16, np.int16)
_lut = np.zeros((4, 3), np.uint8)
_rgb = np.zeros((16, 3), np.uint8)
_idx = np.zeros(16, np.uint8)
_shared = np.zeros(64, np.uint8)  # indices and out, or lut and out, in one buffer


def _misaligned_i16(n: int) -> np.ndarray:
    return np.frombuffer(bytearray(2 * n + 1), np.uint8)[1:].view(np.int16)


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


BAD_CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    # unpack_words
    ("unpack_words", "src", (bytes(64), _i16.copy(), 16, False)),
    ("unpack_words", "src", (_u8.view(np.int8), _i16.copy(), 16, False)),
    ("unpack_words", "src", (_u8.reshape(8, 8), _i16.copy(), 16, False)),
    ("unpack_words", "src", (np.zeros(128, np.uint8)[::2], _i16.copy(), 16, False)),
    ("unpack_words", "src", (np.zeros(31, np.uint8), _i16.copy(), 16, False)),
    ("unpack_words", "out", (_u8, np.zeros(32, np.int16)[::2], 16, False)),
    ("unpack_words", "out", (_u8, np.zeros(4, np.int64), 16, False)),
    ("unpack_words", "out", (_u8, np.zeros(4, np.complex64), 16, False)),
    ("unpack_words", "out", (_u8, np.zeros((4, 4), np.int16), 16, False)),
    ("unpack_words", "out", (_u8, _read_only(_i16), 16, False)),
    ("unpack_words", "out", (_u8, [0] * 16, 16, False)),
    ("unpack_words", "out", (_u8, _misaligned_i16(16), 16, False)),
    ("unpack_words", "out", (_u8[1:], _u8[:-1], 8, False)),  # overlapping, not in place
    ("unpack_words", "out", (_u8, np.zeros(16, ">i2"), 16, False)),  # byte order is byteswap's
    ("unpack_words", "bits_stored", (_u8, _i16.copy(), 0, False)),
    ("unpack_words", "bits_stored", (_u8, _i16.copy(), 17, False)),
    ("unpack_words", "bits_stored", (_u8, np.zeros(8, np.uint8), 9, False)),
    ("unpack_words", "bits_stored", (_u8, _i16.copy(), 12.0, False)),
    ("unpack_words", "bits_stored", (_u8, _i16.copy(), True, False)),
    ("unpack_words", "byteswap", (_u8, _i16.copy(), 12, "yes")),
    # unpack_bits
    ("unpack_bits", "src", (bytes(8), np.zeros(8, np.uint8), 0)),
    ("unpack_bits", "src", (np.zeros(16, np.uint8)[::2], np.zeros(8, np.uint8), 0)),
    ("unpack_bits", "src", (np.zeros(2, np.uint8), np.zeros(16, np.uint8), 1)),
    ("unpack_bits", "out", (_u8, np.zeros(16, np.uint8)[::2], 0)),
    ("unpack_bits", "out", (_u8, np.zeros(8, np.int16), 0)),
    ("unpack_bits", "out", (_u8, _read_only(np.zeros(8, np.uint8)), 0)),
    ("unpack_bits", "out", (_u8, _u8[:8], 0)),  # out overlaps src
    ("unpack_bits", "bit_offset", (_u8, np.zeros(8, np.uint8), -1)),
    ("unpack_bits", "bit_offset", (_u8, np.zeros(8, np.uint8), 1.5)),
    # palette_lookup
    ("palette_lookup", "indices", (np.zeros(16, np.float32), _lut, 0, _rgb.copy())),
    ("palette_lookup", "indices", (np.zeros(16, np.int64), _lut, 0, _rgb.copy())),
    ("palette_lookup", "indices", (np.zeros(32, np.uint8)[::2], _lut, 0, _rgb.copy())),
    ("palette_lookup", "indices", (np.zeros((4, 4), np.uint8), _lut, 0, _rgb.copy())),
    ("palette_lookup", "indices", (_misaligned_i16(16), _lut, 0, _rgb.copy())),
    ("palette_lookup", "indices", (np.zeros(16, ">u2"), _lut, 0, _rgb.copy())),
    ("palette_lookup", "lut", (_idx, np.zeros((0, 3), np.uint8), 0, _rgb.copy())),
    ("palette_lookup", "lut", (_idx, np.zeros((4, 4), np.uint8), 0, _rgb.copy())),
    ("palette_lookup", "lut", (_idx, np.zeros(12, np.uint8), 0, _rgb.copy())),
    ("palette_lookup", "lut", (_idx, np.zeros((8, 3), np.uint8)[::2], 0, _rgb.copy())),
    ("palette_lookup", "lut", (_idx, np.zeros((4, 3), np.float32), 0, _rgb.copy())),
    (
        "palette_lookup",
        "lut",
        (_idx, np.asfortranarray(np.zeros((4, 3), np.uint8)), 0, _rgb.copy()),
    ),
    ("palette_lookup", "first_mapped", (_idx, _lut, 1.0, _rgb.copy())),
    ("palette_lookup", "first_mapped", (_idx, _lut, None, _rgb.copy())),
    ("palette_lookup", "out", (_idx, _lut, 0, np.zeros((16, 3), np.uint16))),
    ("palette_lookup", "out", (_idx, _lut, 0, np.zeros((15, 3), np.uint8))),
    ("palette_lookup", "out", (_idx, _lut, 0, np.zeros(48, np.uint8))),
    ("palette_lookup", "out", (_idx, _lut, 0, np.asfortranarray(np.zeros((16, 3), np.uint8)))),
    ("palette_lookup", "out", (_idx, _lut, 0, np.zeros((16, 6), np.uint8)[:, ::2])),
    ("palette_lookup", "out", (_idx, _lut, 0, _read_only(_rgb))),
    ("palette_lookup", "out", (_shared[8:24], _lut, 0, _shared[16:].reshape(16, 3))),
    ("palette_lookup", "out", (_idx, _shared[:12].reshape(4, 3), 0, _shared[4:52].reshape(16, 3))),
]


def _bad_call_id(case: tuple[str, str, tuple[Any, ...]]) -> str:
    return f"{case[0]}-{case[1]}"


class BackendContract(KernelBackendContract):
    """What every backend, the reference included, must do. Subclasses set ``backend``."""

    kernel_names = KERNEL_NAMES

    @pytest.mark.parametrize("case", BAD_CALLS, ids=[_bad_call_id(c) for c in BAD_CALLS])
    def test_rejects_bad_call(self, case: tuple[str, str, tuple[Any, ...]]) -> None:
        name, parameter, args = case
        with pytest.raises(ParameterError, match=rf"\b{parameter}\b"):
            self.kernel(name)(*args)

    def test_rejects_partial_overlap_but_unpacks_in_place(self) -> None:
        words = np.arange(16, dtype=np.uint16) | 0xF000
        inplace = words.copy()
        self.kernel("unpack_words")(inplace.view(np.uint8), inplace, 12, False)
        np.testing.assert_array_equal(inplace, words & 0x0FFF)
        with pytest.raises(ParameterError, match="overlaps"):
            self.kernel("unpack_words")(inplace.view(np.uint8)[2:], inplace[:15], 12, False)

    def test_empty_calls_return_quietly(self) -> None:
        empty = np.zeros(0, np.uint8)
        self.kernel("unpack_words")(empty, np.zeros(0, np.int16), 12, True)
        self.kernel("unpack_bits")(empty, np.zeros(0, np.uint8), 0)
        self.kernel("unpack_bits")(np.zeros(1, np.uint8), np.zeros(0, np.uint8), 8)
        self.kernel("palette_lookup")(np.zeros(0, np.uint16), _lut, 0, np.zeros((0, 3), np.uint8))

    def test_known_values(self) -> None:
        # 12 of 16 bits stored, signed: High Bit 11 is the sign (PS3.5 8.1.1); bits 12-15 are not
        # pixel data, whatever they hold.
        raw = np.array([0x0FFF, 0xF7FF, 0x0800, 0xA001, 0x0000], "<u2").view(np.uint8)
        out = np.empty(5, np.int16)
        self.kernel("unpack_words")(raw, out, 12, False)
        assert out.tolist() == [-1, 2047, -2048, 1, 0]
        self.kernel("unpack_words")(raw.view(">u2").byteswap().view(np.uint8).copy(), out, 12, True)
        assert out.tolist() == [-1, 2047, -2048, 1, 0]
        # 1-bit pixels, least significant bit first, a frame starting at bit 3.
        bits = np.empty(6, np.uint8)
        self.kernel("unpack_bits")(np.array([0b1010_1000, 0b0000_0001], np.uint8), bits, 3)
        assert bits.tolist() == [1, 0, 1, 0, 1, 1]
        # Values below the first mapped one take entry 0; above the last, the last entry.
        lut = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint16)
        rgb = np.empty((5, 3), np.uint16)
        self.kernel("palette_lookup")(np.array([-5, 9, 10, 11, 300], np.int16), lut, 10, rgb)
        assert rgb.tolist() == [[1, 2, 3], [1, 2, 3], [1, 2, 3], [4, 5, 6], [7, 8, 9]]


class NativeContract(BackendContract):
    """A native backend: equal to the reference, bit for bit, on any valid call."""

    def check_words(self, case: vst.WordsCase) -> None:
        expected = case.new_out()
        reference("unpack_words")(*case.call_args(expected))
        got = case.new_out()
        self.kernel("unpack_words")(*case.call_args(got))
        # Bytes, not values: NaN payloads of float pixels must survive too.
        assert got.tobytes() == expected.tobytes()

    def check_bits(self, case: vst.BitsCase) -> None:
        expected = case.new_out()
        reference("unpack_bits")(*case.call_args(expected))
        got = case.new_out()
        self.kernel("unpack_bits")(*case.call_args(got))
        np.testing.assert_array_equal(got, expected)

    def check_palette(self, case: vst.PaletteCase) -> None:
        expected = case.new_out()
        reference("palette_lookup")(*case.call_args(expected))
        got = case.new_out()
        self.kernel("palette_lookup")(*case.call_args(got))
        np.testing.assert_array_equal(got, expected)

    @BOUNDED
    @given(case=vst.unpack_words_cases())
    def test_unpack_words_equals_reference(self, case: vst.WordsCase) -> None:
        self.check_words(case)

    @BOUNDED
    @given(case=vst.unpack_bits_cases())
    def test_unpack_bits_equals_reference(self, case: vst.BitsCase) -> None:
        self.check_bits(case)

    @BOUNDED
    @given(case=vst.palette_cases())
    def test_palette_lookup_equals_reference(self, case: vst.PaletteCase) -> None:
        self.check_palette(case)

    @pytest.mark.slow
    @LONG
    @given(case=vst.unpack_words_cases(max_size=40_000))
    def test_unpack_words_equals_reference_long(self, case: vst.WordsCase) -> None:
        self.check_words(case)

    @pytest.mark.slow
    @LONG
    @given(case=vst.unpack_bits_cases(max_size=80_000))
    def test_unpack_bits_equals_reference_long(self, case: vst.BitsCase) -> None:
        self.check_bits(case)

    @pytest.mark.slow
    @LONG
    @given(case=vst.palette_cases(max_size=40_000))
    def test_palette_lookup_equals_reference_long(self, case: vst.PaletteCase) -> None:
        self.check_palette(case)

    # -- the parallel path: inputs above PARALLEL_MIN_BYTES, sizes off every block boundary --

    @pytest.mark.parametrize("dtype", WORD_DTYPES, ids=str)
    @pytest.mark.parametrize("byteswap", [False, True])
    def test_unpack_words_threads(
        self, dtype: np.dtype, byteswap: bool, threads: Callable[[int], None]
    ) -> None:
        n = PARALLEL_MIN_BYTES // dtype.itemsize + 4099
        rng = np.random.default_rng(n)
        src = rng.integers(0, 256, n * dtype.itemsize + 3, dtype=np.uint8)[1:]
        bits = max(1, 8 * dtype.itemsize - 5)
        expected = np.empty(n, dtype)
        reference("unpack_words")(src, expected, bits, byteswap)
        results = []
        for count in (1, 2):
            threads(count)
            assert check_unpack_words(src, expected, bits, byteswap).threads == count
            out = np.full(n, 1, dtype)
            self.kernel("unpack_words")(src, out, bits, byteswap)
            results.append(out.tobytes())
            inplace = np.frombuffer(src[: n * dtype.itemsize].tobytes(), dtype).copy()
            self.kernel("unpack_words")(inplace.view(np.uint8), inplace, bits, byteswap)
            results.append(inplace.tobytes())
        assert all(r == expected.tobytes() for r in results)

    @pytest.mark.parametrize("bit_offset", [0, 3, 8 * 1000 + 7])
    def test_unpack_bits_threads(self, bit_offset: int, threads: Callable[[int], None]) -> None:
        n = PARALLEL_MIN_BYTES + 77
        src = np.random.default_rng(bit_offset).integers(0, 256, n // 8 + 1002, dtype=np.uint8)
        expected = np.empty(n, np.uint8)
        reference("unpack_bits")(src, expected, bit_offset)
        for count in (1, 2):
            threads(count)
            out = np.full(n, 7, np.uint8)
            self.kernel("unpack_bits")(src, out, bit_offset)
            np.testing.assert_array_equal(out, expected)

    @pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
    @pytest.mark.parametrize("lut_dtype", LUT_DTYPES, ids=str)
    def test_palette_lookup_threads(
        self, index_dtype: np.dtype, lut_dtype: np.dtype, threads: Callable[[int], None]
    ) -> None:
        n = PARALLEL_MIN_BYTES // 3 + 1001
        rng = np.random.default_rng(n)
        info = np.iinfo(index_dtype)
        indices = rng.integers(info.min, info.max, n, dtype=index_dtype, endpoint=True)
        lut = rng.integers(0, np.iinfo(lut_dtype).max, (4096, 3), dtype=lut_dtype)
        expected = np.empty((n, 3), lut_dtype)
        reference("palette_lookup")(indices, lut, -7, expected)
        for count in (1, 2):
            threads(count)
            out = np.zeros((n, 3), lut_dtype)
            self.kernel("palette_lookup")(indices, lut, -7, out)
            np.testing.assert_array_equal(out, expected)


class TestReference(BackendContract):
    """The oracle itself, checked against independent statements of the same rules."""

    backend = "reference"

    @BOUNDED
    @given(case=vst.unpack_words_cases())
    def test_unpack_words_equals_pydicom_shift(self, case: vst.WordsCase) -> None:
        # pydicom's correction: view the words in their byte order, shift the unused high bits
        # out to the left, shift back (arithmetic for signed), i.e. PS3.5 8.1.1.
        out = case.new_out()
        src = case.call_args(out)[0][: out.nbytes].copy()
        reference("unpack_words")(*case.call_args(out))
        order = ">" if case.byteswap else "<"
        kind = case.dtype.kind
        expected = src.view(f"{order}{kind}{case.dtype.itemsize}").astype(case.dtype)
        if kind != "f":
            shift = 8 * case.dtype.itemsize - case.bits_stored
            expected = (expected << shift) >> shift
        assert out.tobytes() == expected.tobytes()

    @BOUNDED
    @given(case=vst.unpack_bits_cases())
    def test_unpack_bits_equals_pydicom(self, case: vst.BitsCase) -> None:
        from pydicom.pixels.utils import unpack_bits

        out = case.new_out()
        reference("unpack_bits")(*case.call_args(out))
        every = unpack_bits(case.src.tobytes(), as_array=True)  # little endian: LSB first
        np.testing.assert_array_equal(out, every[case.bit_offset : case.bit_offset + case.size])


class TestCython(NativeContract):
    backend = "cython"


class TestNumba(NativeContract):
    backend = "numba"


@BOUNDED
@given(
    words=vst.unpack_words_cases(max_size=300),
    bits=vst.unpack_bits_cases(max_size=300),
    palette=vst.palette_cases(max_size=300),
)
def test_available_backends_agree(
    words: vst.WordsCase, bits: vst.BitsCase, palette: vst.PaletteCase
) -> None:
    # Through the registry, as callers reach the kernels: every backend that loads agrees.
    cases: dict[str, Any] = {"unpack_words": words, "unpack_bits": bits, "palette_lookup": palette}
    for name, backends in kernels.available().items():
        if name not in cases:
            continue
        results = set()
        for backend in backends:
            out = cases[name].new_out()
            kernels.get(name, backend)(*cases[name].call_args(out))
            results.add(out.tobytes())
        assert len(results) == 1, f"{name}: backends {backends} disagree"


def test_every_registered_backend_is_tested() -> None:
    tested = {cls.backend for cls in (TestReference, TestCython, TestNumba)}
    for name in KERNEL_NAMES:
        assert set(kernels.KERNELS[name]) == tested
