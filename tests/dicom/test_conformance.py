"""Every file in pydicom's test files and in pydicom-data, decoded by voxelflow and by pydicom.

For each file pydicom (with the pylibjpeg/pyjpegls plugins installed) decodes, voxelflow must
return the same shape, the same dtype up to byte order, and equal values (every syntax here is
decoded bit-exactly: lossless ones by our kernels, lossy ones by the same plugin pydicom uses).
Files voxelflow refuses must raise DecodeError; where pydicom decodes them, they are listed in
REFUSED with the reason. Nothing is silently different.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import voxelflow
from voxelflow.errors import DecodeError

FILES = sorted(p for p in get_testdata_files() if os.path.isfile(p))

# name -> why voxelflow refuses a file that pydicom decodes (checked against the message)
REFUSED: dict[str, str] = {
    # The file ends inside its encapsulated Pixel Data (no Sequence Delimitation Item); pydicom
    # decodes what is there, voxelflow will not guess that nothing was cut (malformed-inputs.md:
    # "undefined-length pixel data without its delimiter before EOF: error").
    "emri_small_jpeg_2k_lossless_too_short.dcm": "Sequence Delimitation Item",
}


def _pydicom_array(path: str) -> np.ndarray | None:
    """pydicom's result, or None where pydicom cannot decode the file either."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pixel_array(path)
        except Exception:
            # pixel_array(path) neither inflates Deflated files nor copes with a dataset that
            # switches to implicit VR mid-file; dcmread does both
            pass
        try:
            return pydicom.dcmread(path).pixel_array
        except Exception:
            pass
        try:
            # a data set without the Part 10 preamble and file meta: pydicom reads it with
            # force=True, and decodes it in the encoding it read it in
            ds = pydicom.dcmread(path, force=True)
            implicit, little = ds.original_encoding
            if "PixelData" not in ds or "TransferSyntaxUID" in ds.file_meta or not little:
                return None
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
            return ds.pixel_array
        except Exception:
            return None


def test_the_corpus_is_there():
    # pydicom's bundled files plus pydicom-data's: a conformance run over a handful is no run
    assert len(FILES) > 200
    assert any("data_store" in p for p in FILES), "pydicom-data is not installed"


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, os.path.dirname(os.path.dirname(p))) for p in FILES])
def test_decode_matches_pydicom(path):
    name = os.path.basename(path)
    expected = _pydicom_array(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            got = voxelflow.decode(path)
        except DecodeError as exc:
            if expected is not None:
                assert name in REFUSED, f"voxelflow refuses a file pydicom decodes: {exc}"
                assert REFUSED[name] in str(exc)
            return
    if expected is None:
        # pydicom refuses, voxelflow decodes: only acceptable where a second oracle agrees
        pytest.fail(f"voxelflow decoded {name} that pydicom cannot decode: add an oracle for it")
    assert got.shape == expected.shape
    # pydicom keeps the file's byte order (e.g. >u2 for Explicit VR Big Endian); voxelflow
    # returns native-order values, which every numpy consumer and kernel expects
    assert got.dtype == expected.dtype.newbyteorder("=")
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, os.path.dirname(os.path.dirname(p))) for p in FILES])
def test_file_path_equals_dataset_path(path):
    """decode(path) walks the header itself (voxelflow.dicom.header); decode(Dataset) starts
    from pydicom's parse. Both must agree on every file, refusals included."""
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for make in (lambda: path, lambda: pydicom.dcmread(path)):
            try:
                results.append(voxelflow.decode(make()))
            except DecodeError:
                results.append(None)
            except Exception:  # pydicom itself cannot read the file: nothing to compare
                return
    if results[0] is None or results[1] is None:
        assert results[0] is None and results[1] is None or os.path.basename(path) in REFUSED
        return
    np.testing.assert_array_equal(results[0], results[1])
