"""voxelflow.scan: the header index of a folder tree.

- A tree with a classic and an enhanced phantom series, nested folders, non-DICOM files, a
  DICOMDIR, a report without pixels and a corrupt file: rows equal the written ground truth,
  everything else is accounted for with its reason.
- The fast header walker and pydicom give the same rows, on the phantoms in every walkable
  transfer syntax and on pydicom's test corpus; the value converters agree with pydicom's.
- Save / load round trip; ``previous=`` reuses unchanged files without reading them.
- Hostile files (empty, random, truncated at every offset, huge lengths, deep nesting, FIFOs,
  link loops) never crash, hang or allocate big.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

import voxelflow
from voxelflow.dicom import scan as scan_module
from voxelflow.dicom.index import ROW_FIELDS, FileIssue, Index, InstanceRow
from voxelflow.errors import ParameterError
from voxelflow.testing import write_series

SMALL = {"shape": (6, 24, 32), "spacing": (2.5, 0.8, 0.6), "noise": False}


def _read(path: str, *, fallback: bool = True):
    return scan_module._read_file(path, os.path.getsize(path), 0, fallback=fallback)


def _read_pydicom(path: str):
    with open(path, "rb") as f:
        return scan_module._read_with_pydicom(f, path, os.path.getsize(path), 0)


def _truncated_copy(src, dst, size):
    with open(src, "rb") as f:
        data = f.read(size)
    with open(dst, "wb") as f:
        f.write(data)


def _pixel_offset(path) -> int:
    with open(path, "rb") as f:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(f, stop_before_pixels=True)
        return f.tell()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    ct = write_series(root / "study" / "ct", orientation="oblique", shuffle_instance_numbers=True,
                      **SMALL)
    mr = write_series(root / "study" / "nested" / "deeper" / "mr", modality="MR", enhanced=True,
                      orientation="sagittal", seed=3, **SMALL)
    (root / "notes.txt").write_text("not an image\n")
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "study" / "thumb.png")
    (root / "empty.dat").write_bytes(b"")
    shutil.copy(get_testdata_file("DICOMDIR"), root / "DICOMDIR")
    shutil.copy(get_testdata_file("reportsi.dcm"), root / "study" / "report.dcm")
    # cut inside the Image Orientation (Patient) value: the header itself is broken
    src = ct.paths[0]
    cut = src.read_bytes().index(b"\x20\x00\x37\x00") + 12
    _truncated_copy(src, root / "study" / "corrupt.dcm", cut)
    return root, ct, mr


@pytest.fixture(scope="module")
def index(tree):
    return voxelflow.scan(tree[0], workers=1)


def _names(issues):
    return {os.path.basename(i.path): i.reason for i in issues}


def test_tree_is_accounted_for(tree, index):
    _, ct, mr = tree
    assert len(index) == len(ct.paths) + 1
    assert set(index.series()) == {ct.series_uid, mr.series_uid}
    assert len(index.series()[ct.series_uid]) == len(ct.paths)
    assert [r.path for r in index.rows] == sorted(r.path for r in index.rows)
    skipped = _names(index.skipped)
    assert set(skipped) == {"notes.txt", "thumb.png", "empty.dat", "DICOMDIR"}
    assert "not DICOM" in skipped["notes.txt"] and "not DICOM" in skipped["thumb.png"]
    assert "empty" in skipped["empty.dat"]
    assert "DICOMDIR" in skipped["DICOMDIR"]
    no_pixels = _names(index.no_pixels)
    assert set(no_pixels) == {"report.dcm"} and "Basic Text SR" in no_pixels["report.dcm"]
    errors = _names(index.errors)
    assert set(errors) == {"corrupt.dcm"}
    assert "(0020,0037)" in errors["corrupt.dcm"] and "past the end" in errors["corrupt.dcm"]
    assert "2 series" in repr(index)


def test_classic_rows_equal_ground_truth(tree, index):
    _, ct, _ = tree
    rows = {r.sop_instance_uid: r for r in index.series()[ct.series_uid]}
    assert set(rows) == set(ct.sop_uids)
    for k, uid in enumerate(ct.sop_uids):
        row = rows[uid]
        assert row.image_position_patient == tuple(ct.positions[k])
        assert row.image_orientation_patient == tuple(ct.orientation)
        assert row.pixel_spacing == ct.spacing[1:]
        assert row.slice_thickness == 2.5
        assert row.instance_number == ct.instance_numbers[k]
        assert row.study_instance_uid == ct.study_uid
        assert row.frame_of_reference_uid == ct.frame_of_reference_uid
        assert row.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
        assert (row.modality, row.rows, row.columns) == ("CT", 24, 32)
        assert (row.bits_allocated, row.bits_stored, row.pixel_representation) == (16, 12, 0)
        assert (row.samples_per_pixel, row.photometric_interpretation) == (1, "MONOCHROME2")
        assert row.number_of_frames is None and row.frames == 1
        assert row.transfer_syntax_uid == str(ct.transfer_syntax)
        assert (row.rescale_slope, row.rescale_intercept) == tuple(ct.rescale[k])
        assert row.rescale_type == "HU"
        assert row.window_center == tuple(w[0] for w in ct.windows)
        assert row.window_width == tuple(w[1] for w in ct.windows)
        assert row.window_explanation == tuple(w[2] for w in ct.windows)
        assert row.image_type == ("ORIGINAL", "PRIMARY", "AXIAL")
        assert (row.series_number, row.acquisition_number, row.gantry_detector_tilt) == (1, 1, 0.0)
        assert row.content_time == "101500" and row.acquisition_time is None
        assert row.echo_time is None and row.echo_numbers is None
        assert not (row.enhanced or row.mosaic or row.has_voi_lut or row.has_modality_lut)
        assert row.invalid == ()
        assert row.size == os.path.getsize(row.path)
        assert row.mtime_ns == os.stat(row.path).st_mtime_ns
        assert isinstance(row.instance_number, int) and isinstance(row.slice_thickness, float)


def test_enhanced_row_takes_shared_functional_groups(tree, index):
    _, _, mr = tree
    (row,) = index.series()[mr.series_uid]
    assert row.enhanced and row.number_of_frames == row.frames == len(mr.positions)
    assert row.sop_instance_uid == mr.sop_uids[0]
    assert row.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4.1"
    assert row.image_orientation_patient == tuple(mr.orientation)
    assert row.pixel_spacing == mr.spacing[1:]
    assert row.slice_thickness == 2.5
    assert row.image_position_patient is None  # per frame
    assert (row.rescale_slope, row.rescale_intercept) == tuple(mr.rescale[0])
    assert row.window_center == tuple(w[0] for w in mr.windows)
    assert row.image_type == ("ORIGINAL", "PRIMARY", "VOLUME", "NONE")
    assert row.invalid == ()


def test_flags(tmp_path):
    info = write_series(tmp_path / "voi", voi_lut=True, **SMALL)
    row = _read(str(info.paths[0]))[1]
    assert dict(zip(ROW_FIELDS, row))["has_voi_lut"]
    ds = pydicom.dcmread(info.paths[0])
    ds.ImageType = ["DERIVED", "PRIMARY", "M", "ND", "MOSAIC"]
    lut = pydicom.Dataset()
    lut.LUTDescriptor = [4, 0, 16]
    lut.ModalityLUTType = "HU"
    lut.LUTData = struct.pack("<4H", 0, 1, 2, 3)
    ds.ModalityLUTSequence = [lut]
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(tmp_path / "mosaic.dcm")
    row = InstanceRow(*_read(str(tmp_path / "mosaic.dcm"))[1])
    assert row.mosaic and row.has_modality_lut and row.has_voi_lut and not row.enhanced
    assert row.rescale_slope is None


# --------------------------------------------------------------------------------------------
# fast walker == pydicom


@pytest.mark.parametrize("syntax", ["explicit_le", "implicit_le", "explicit_be", "rle", "deflated"])
@pytest.mark.parametrize("enhanced", [False, True])
def test_walker_rows_equal_pydicom_rows_on_phantoms(tmp_path, syntax, enhanced):
    info = write_series(tmp_path, transfer_syntax=syntax, enhanced=enhanced, modality="MR",
                        per_slice_rescale=enhanced, shape=(3, 16, 16), noise=False)
    for path in map(str, info.paths):
        fast = _read(path, fallback=False)
        assert fast is not None and fast[0] == "row", fast
        if syntax != "deflated":  # pydicom gives no file offsets in a deflated data set
            assert fast == _read_pydicom(path)
        row = InstanceRow(*fast[1])
        assert row.transfer_syntax_uid == str(info.transfer_syntax)
        assert row.image_orientation_patient == tuple(info.orientation)
        if enhanced:
            assert row.rescale_slope is None  # varies by frame: not in the shared groups


CORPUS = sorted(p for p in get_testdata_files() if os.path.isfile(p))
# where the two paths disagree on purpose: name -> (walker's kind, pydicom path's kind)
DIFFERENT = {
    # cut inside an RT element: pydicom silently reads what is there as a plan without pixels
    "rtplan_truncated.dcm": ("error", "no_pixels"),
    # the walker inflates a deflated data set itself; pydicom gives no offsets to check
    "image_dfl.dcm": ("row", "error"),
}


def _corpus_id(path):
    return os.path.relpath(path, os.path.dirname(os.path.dirname(path)))


def test_the_corpus_is_mostly_walked():
    walked = sum(_read(p, fallback=False) is not None for p in CORPUS)
    assert len(CORPUS) > 200 and walked > 0.85 * len(CORPUS)


# files the walker declines are read by pydicom: nothing of the walker's to compare there
WALKED = [p for p in CORPUS if _read(p, fallback=False) is not None]


@pytest.mark.parametrize("path", WALKED, ids=[_corpus_id(p) for p in WALKED])
def test_walker_equals_pydicom_on_the_corpus(path):
    fast = _read(path, fallback=False)
    slow = _read_pydicom(path)
    name = os.path.basename(path)
    if name in DIFFERENT:
        assert (fast[0], slow[0]) == DIFFERENT[name]
        return
    assert fast == slow


def _pydicom_value(ds, keyword):
    """pydicom's value of `keyword` in the row's conventions, or KeyError if unreadable."""
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise KeyError(keyword) from exc
    if value is None or value == "":
        return None
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        if not len(value):
            return None
        kind = type(value[0])
    else:
        kind = type(value)
    convert = (float if issubclass(kind, float) else int if issubclass(kind, int) else
               lambda v: str(v).strip())
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return tuple(convert(v) for v in value)
    return convert(value)


_KEYWORDS = {name: pydicom.datadict.keyword_for_tag(tag)
             for name, (tag, _, _) in scan_module._FIELDS.items()}
_MULTI = {"image_type", "image_orientation_patient", "image_position_patient", "pixel_spacing", "window_center",
          "window_width", "window_explanation", "echo_numbers"}


def _corpus_rows() -> list[str]:
    """Corpus files that scan reads as image rows (the others are errors / no-pixel files,
    checked by the classification tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [p for p in CORPUS if _read(p)[0] == "row"]


CORPUS_ROWS = _corpus_rows()


@pytest.mark.parametrize("path", CORPUS_ROWS, ids=[_corpus_id(p) for p in CORPUS_ROWS])
def test_converted_values_equal_pydicoms(path):
    result = _read(path)
    row = InstanceRow(*result[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)  # a data set without file meta too
        for name, keyword in _KEYWORDS.items():
            ours = getattr(row, name)
            if name in row.invalid:
                assert ours is None
                continue
            try:
                theirs = _pydicom_value(ds, keyword)
            except KeyError:
                continue  # pydicom cannot convert it either
            if row.enhanced and theirs is None:
                continue  # ours may come from the shared functional groups
            if name in _MULTI and theirs is not None and not isinstance(theirs, tuple):
                theirs = (theirs,)
            assert ours == theirs, (name, ours, theirs)


# --------------------------------------------------------------------------------------------
# save, load, reuse, parallel, progress


def test_save_load_round_trip(tmp_path, index):
    path = index.save(tmp_path / "index.jsonl.gz")
    loaded = Index.load(path)
    assert loaded == index
    assert loaded.rows == index.rows and loaded.errors == index.errors
    assert all(isinstance(r.image_orientation_patient, tuple) for r in loaded.rows)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert loaded.to_records()[0]["path"] == index.rows[0].path


def test_load_refuses_other_files(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(ParameterError, match="x.gz"):
        Index.load(tmp_path / "x.gz")
    with pytest.raises(FileNotFoundError):
        Index.load(tmp_path / "missing.gz")


def test_previous_reuses_unchanged_files(tmp_path, tree, monkeypatch):
    root = tmp_path / "copy"
    shutil.copytree(tree[0], root)
    reads = []
    real = scan_module._read_file

    def counting(path, size, mtime_ns, **kw):
        reads.append(path)
        return real(path, size, mtime_ns, **kw)

    monkeypatch.setattr(scan_module, "_read_file", counting)
    first = voxelflow.scan(root, workers=1)
    total = len(first.rows) + len(first.skipped) + len(first.no_pixels) + len(first.errors)
    assert len(reads) == total
    saved = first.save(tmp_path / "index.jsonl.gz")

    reads.clear()
    again = voxelflow.scan(root, workers=1, previous=saved)
    # only the file with an error is read again
    assert reads == [e.path for e in first.errors]
    assert again == first

    reads.clear()
    changed = first.rows[0].path
    os.utime(changed, ns=(0, first.rows[0].mtime_ns + 1))
    os.remove(first.rows[1].path)
    third = voxelflow.scan(root, workers=1, previous=first)
    assert sorted(reads) == sorted([changed, *(e.path for e in first.errors)])
    assert len(third) == len(first) - 1
    assert third.rows[0].mtime_ns == first.rows[0].mtime_ns + 1


def test_previous_path_that_does_not_exist_yet(tmp_path, tree):
    assert voxelflow.scan(tree[0], workers=1, previous=tmp_path / "new.gz") == \
        voxelflow.scan(tree[0], workers=1)


def test_process_pool_gives_the_same_index_and_progress(tree, index):
    calls = []
    pooled = voxelflow.scan([tree[0]], workers=2, progress=lambda d, t: calls.append((d, t)))
    assert pooled == index
    total = len(index.rows) + len(index.skipped) + len(index.no_pixels) + len(index.errors)
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_progress_inline(tree):
    calls = []
    voxelflow.scan(tree[0], workers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] > 0


def test_parameters_are_checked(tree):
    with pytest.raises(ParameterError, match="workers"):
        voxelflow.scan(tree[0], workers=0)
    with pytest.raises(ParameterError, match="previous"):
        voxelflow.scan(tree[0], previous=42)
    with pytest.raises(ParameterError, match="progress"):
        voxelflow.scan(tree[0], progress=3)


def test_single_file_and_duplicate_paths(tree):
    _, ct, _ = tree
    index = voxelflow.scan([ct.paths[0], str(ct.paths[0]), ct.paths[0].parent], workers=1)
    assert len(index) == len(ct.paths)


# --------------------------------------------------------------------------------------------
# hostile files


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    info = write_series(tmp_path_factory.mktemp("one"), shape=(1, 8, 8), noise=False)
    return str(info.paths[0])


def test_empty_and_random_files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "random").write_bytes(rng.bytes(4096))
    (tmp_path / "random_dicm").write_bytes(rng.bytes(128) + b"DICM" + rng.bytes(4096))
    (tmp_path / "short").write_bytes(b"DICM")
    index = voxelflow.scan(tmp_path, workers=1)
    assert len(index) == 0
    kinds = {os.path.basename(i.path): k for k in ("skipped", "errors")
             for i in getattr(index, k)}
    assert kinds == {"empty": "skipped", "random": "skipped", "random_dicm": "errors",
                     "short": "skipped"}
    assert all(i.reason for i in (*index.skipped, *index.errors))


def test_truncated_at_every_offset(tmp_path, ct_file):
    data = Path(ct_file).read_bytes()
    pixels = _pixel_offset(ct_file)
    path = str(tmp_path / "cut.dcm")
    for size in range(pixels + 24):
        with open(path, "wb") as f:
            f.write(data[:size])
        result = scan_module._read_file(path, size, 0)
        assert result[0] in ("skipped", "error"), (size, result)
        assert result[2]
        if size > 132:
            assert result[0] == "error", (size, result)
    # the pixel data cut anywhere
    for size in range(pixels + 24, len(data), 17):
        with open(path, "wb") as f:
            f.write(data[:size])
        result = scan_module._read_file(path, size, 0)
        assert result[0] == "error" and "Pixel Data length" in result[2]


def _with_element(data: bytes, offset: int, element: bytes) -> bytes:
    return data[:offset] + element + data[offset:]


def test_huge_declared_lengths_allocate_nothing_big(tmp_path, ct_file):
    data = Path(ct_file).read_bytes()
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    start = data.index(b"\x08\x00\x05\x00")  # the first data set element
    huge = 0xFFFFFFF0
    cases = {
        # a UN element claiming 4 GiB before the rest of the header
        "element": _with_element(data, start, struct.pack("<HH2sHI", 0x0008, 0x0001, b"UN", 0,
                                                          huge)),
        # the Pixel Data element claiming 4 GiB
        "pixels": data[: _pixel_offset(ct_file) + 8] + struct.pack("<I", huge)
        + data[_pixel_offset(ct_file) + 12 :],
        # the file meta group length element claiming 4 GiB (UL is short: use an OB element)
        "meta": _with_element(data, 132, struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, huge)),
    }
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    for name, body in cases.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(body)
        tracemalloc.start()
        try:
            result = _read(str(path))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result[0] == "error", (name, result)
        assert str(huge) in result[2]
        assert peak < 4 << 20, (name, peak)


def test_implicit_vr_huge_length(tmp_path):
    info = write_series(tmp_path / "s", shape=(1, 8, 8), transfer_syntax="implicit_le")
    data = info.paths[0].read_bytes()
    at = data.index(b"\x20\x00\x32\x00")  # Image Position (Patient)
    body = data[: at + 4] + struct.pack("<I", 0xFFFFFFF0) + data[at + 8 :]
    (tmp_path / "bad.dcm").write_bytes(body)
    result = _read(str(tmp_path / "bad.dcm"))
    assert result[0] == "error" and "(0020,0032)" in result[2]


def _nested(depth: int) -> bytes:
    sq = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sq + item) * depth + (item_end + sq_end) * depth


@pytest.mark.parametrize("depth", [8, 100, 100_000])
def test_deeply_nested_sequences(tmp_path, ct_file, depth):
    data = Path(ct_file).read_bytes()
    pixels = _pixel_offset(ct_file)
    path = tmp_path / "deep.dcm"
    path.write_bytes(data[:pixels] + _nested(depth) + data[pixels:])
    result = _read(str(path))
    if depth <= 100:
        assert result[0] == "row"  # legal, if deep: the walker or pydicom reads it
    else:
        assert result[0] == "error" and "nested" in result[2]
    # an unterminated nest: the sequence runs to the end of the file
    path.write_bytes(data[:pixels] + _nested(depth)[: 20 * depth])
    result = _read(str(path))
    assert result[0] == "error", result


def test_deflate_bomb_is_not_inflated(tmp_path, ct_file):
    import zlib

    ds = pydicom.dcmread(ct_file)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "ok.dcm", enforce_file_format=True)
    assert _read(str(tmp_path / "ok.dcm"))[0] == "row"
    # a data set whose first element claims 1 GiB of zeros, deflated to ~1 MB
    raw = (tmp_path / "ok.dcm").read_bytes()
    head = raw[: _meta_end(raw)]
    body = struct.pack("<HH2sHI", 0x0008, 0x0001, b"UN", 0, 1 << 30)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [compressor.compress(body)]
    zeros = bytes(1 << 20)
    for _ in range(1024):
        chunks.append(compressor.compress(zeros))
    chunks.append(compressor.flush())
    (tmp_path / "bomb.dcm").write_bytes(head + b"".join(chunks))
    tracemalloc.start()
    try:
        result = _read(str(tmp_path / "bomb.dcm"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result[0] == "error" and "MiB" in result[2]
    assert peak < 200 << 20


def _meta_end(raw: bytes) -> int:
    pos = 132
    while struct.unpack_from("<H", raw, pos)[0] == 0x0002:
        vr = raw[pos + 4 : pos + 6]
        if vr in (b"OB", b"UN", b"UT", b"SQ"):
            pos += 12 + struct.unpack_from("<I", raw, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", raw, pos + 6)[0]
    return pos


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_not_read(tmp_path, ct_file):
    os.mkfifo(tmp_path / "pipe")
    shutil.copy(ct_file, tmp_path / "a.dcm")
    done = []
    worker = threading.Thread(target=lambda: done.append(voxelflow.scan(tmp_path, workers=1)),
                              daemon=True)
    worker.start()
    worker.join(30)
    assert done, "scan blocked on a FIFO"
    (index,) = done
    assert len(index) == 1
    assert _names(index.skipped) == {"pipe": "not a regular file"}


def test_symlink_loops_and_broken_links(tmp_path, ct_file):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(ct_file, tmp_path / "a" / "b" / "x.dcm")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    os.symlink(tmp_path / "nowhere", tmp_path / "a" / "dangling")
    index = voxelflow.scan(tmp_path, workers=1)
    assert len(index) == 1
    assert _names(index.errors) == {"dangling": "broken symbolic link"}


def test_missing_path_is_an_error(tmp_path):
    index = voxelflow.scan([tmp_path / "nope"], workers=1)
    assert index.errors == (FileIssue(str(tmp_path / "nope"), "no such file or folder"),)


def test_hostile_files_in_the_pool(tmp_path, ct_file):
    rng = np.random.default_rng(1)
    data = Path(ct_file).read_bytes()
    for k in range(40):
        shutil.copy(ct_file, tmp_path / f"ok{k}.dcm")
        (tmp_path / f"cut{k}.dcm").write_bytes(data[: 140 + 13 * k])
        (tmp_path / f"rnd{k}.bin").write_bytes(rng.bytes(200 + k))
    index = voxelflow.scan(tmp_path, workers=2)
    assert len(index) == 40 and len(index.errors) == 40 and len(index.skipped) == 40
    assert index == voxelflow.scan(tmp_path, workers=1)


def _without_path(index: Index) -> tuple:
    rows = [dataclasses.replace(r, path="", mtime_ns=0) for r in index.rows]
    issues = [[(i.reason, i.size) for i in getattr(index, k)] for k in ("skipped", "no_pixels", "errors")]
    return rows, issues


@pytest.mark.parametrize("path", CORPUS[::7], ids=[_corpus_id(p) for p in CORPUS[::7]])
def test_scan_bytes_indexes_as_scan_indexes_the_file(path):
    """A retrieved instance is checked from memory (before it is written) as its file would be."""
    data = Path(path).read_bytes()
    got = scan_module.scan_bytes(data, "<part>")
    assert _without_path(got) == _without_path(voxelflow.scan(path, workers=1))
    assert all(r.path == "<part>" for r in got.rows)


def test_scan_bytes_of_broken_bytes_names_the_reason(ct_file):
    data = Path(ct_file).read_bytes()
    for broken, kind in ((b"", "skipped"), (data[:200], "errors"), (data[:-100], "errors"),
                         (b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4, "errors")):
        index = scan_module.scan_bytes(broken, "<part>")
        assert len(index) == 0 and len(getattr(index, kind)) == 1 and getattr(index, kind)[0].reason
