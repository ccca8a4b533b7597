"""A mutation fuzzer over :func:`voxelflow.decode`, :func:`voxelflow.scan` and
:func:`voxelflow.ingest.ingest` (issue 13).

Seeds are small valid files: phantoms from :func:`voxelflow.testing.write_series` in every
transfer syntax family this machine encodes (native in three byte orders / VR encodings,
deflate, RLE, the JPEG family, encapsulated multi-frame, enhanced multi-frame) and a few of
pydicom's test files. Each case takes one seed and damages it: bit flips, interesting values,
truncations, insertions, deletions, and mutations that know the DICOM structure (element
lengths, VRs, the Transfer Syntax UID, Image Pixel module attributes, deleted and duplicated
elements, Basic Offset Table entries, fragment items, RLE headers, JPEG / JPEG 2000 marker
fields). A case is a pure function of ``(seed, index)``: any case can be rebuilt from its two
numbers (``--replay``).

Cases run in worker processes capped at 4 GiB of address space. The right outcome of decode
is a clean result or a :class:`~voxelflow.errors.VoxelflowError`; scan and ingest must not
raise at all, since they record a bad file with its reason and go on with the batch (ingest
runs on one case in ``--ingest-every``, 64 by default: it writes a store, ~25 ms). Anything
else is a failure: another exception type (recorded with its traceback), a crash or a signal
(the worker is re-spawned and goes on after the culprit), a case that runs past the timeout
(the worker is killed and re-spawned), an allocation past the cap (a MemoryError). Each
failure's file is saved to the output folder with a JSON line in ``failures.jsonl``.

Usage::

    python -m voxelflow.testing.fuzz --count 100000 --seed 1 --jobs 2
    python -m voxelflow.testing.fuzz --seed 1 --replay 4711     # one case, in this process

The exit code is 1 when any case failed, else 0.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Element", "FuzzReport", "Seed", "build_seeds", "load_seeds", "mutate", "run"]

ADDRESS_SPACE = 4 << 30  # issue 13: no input may need more
CASE_TIMEOUT = 30.0  # seconds one case may take before its worker is called hung
STARTUP_TIMEOUT = 180.0  # imports and seed loading of a fresh worker, on a loaded machine
BATCH = 500  # cases handed to a worker at a time
INGEST_EVERY = 64  # ingest (a store write: ~25 ms) runs on this share of the cases

UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
        b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
        b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
        b"\0\0", b"ZZ", b"  ", b"ob", b"\xff\xff"]

_IMPLICIT = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_TRANSFER_SYNTAXES = [
    _IMPLICIT, "1.2.840.10008.1.2.1", _DEFLATED, _EXPLICIT_BE, "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.1.98",
    "1.2.3.4.5.6.7", "1.2.840.10008.1.2.4", "", "\0" * 8, "not a uid", "9" * 64,
]

# Image Pixel module and the attributes scan / ingest plan with (tag: kind of value)
_PIXEL_ATTRS = {
    0x00280002: "us", 0x00280004: "cs", 0x00280006: "us", 0x00280008: "is",
    0x00280010: "us", 0x00280011: "us", 0x00280100: "us", 0x00280101: "us",
    0x00280102: "us", 0x00280103: "us", 0x00281052: "ds", 0x00281053: "ds",
    0x00281050: "ds", 0x00281051: "ds", 0x00280030: "ds", 0x00200032: "ds",
    0x00200037: "ds", 0x00180050: "ds", 0x00200013: "is", 0x00281101: "us3",
    0x00281201: "ow", 0x00080060: "cs", 0x00020010: "ui", 0x0020000E: "ui",
    0x00080016: "ui", 0x00280034: "is", 0x00083002: "ui", 0x00281054: "cs",
}
_US_VALUES = [0, 1, 2, 3, 4, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 63, 64, 65, 128, 255,
              256, 4095, 32767, 32768, 46341, 65535]
_STRINGS = {
    "is": ["0", "-1", "1", "2", "3", "1000", "2147483647", "2147483648", "-2147483648",
           "99999999999", "abc", "1.5", "1e9", "", " ", "\0", "NaN", "1\\2"],
    "ds": ["0", "-0", "1", "-1", "NaN", "nan", "inf", "-inf", "1e308", "1e-308", "abc", "",
           "1\\0\\0\\0\\1\\0", "0\\0\\0\\0\\0\\0", "1\\1", "1e999", "\0\0", "0.5\\0.5\\"],
    "cs": ["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422",
           "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "HSV", "CMYK", "", "\0", "CT", "MR",
           "OT", "XXXXXXXXXXXXXXXX"],
    "ui": ["1.2.3", "", "\0", "1..2", "x" * 64, "1.2.840.10008.1.2.4.50", "1." * 32],
    "us3": [],
    "ow": [],
}
_INTERESTING32 = [0, 1, 2, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                  0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFE, UNDEFINED]


@dataclass(frozen=True)
class Element:
    """Where one data element (or item / delimiter) lies in a file.

    Attributes
    ----------
    tag : int
    pos : int
        Offset of its tag.
    vr_pos : int
        Offset of its VR, -1 when it has none (implicit VR, items, delimiters).
    len_pos, len_size : int
        Offset and size (2 or 4) of its length field.
    value_pos : int
        Offset of its value.
    length : int
        Its declared length (``0xFFFFFFFF``: undefined).
    little : bool
        Little endian.
    fragment : bool
        An item of encapsulated Pixel Data (a Basic Offset Table or a frame fragment).
    """

    tag: int
    pos: int
    vr_pos: int
    len_pos: int
    len_size: int
    value_pos: int
    length: int
    little: bool = True
    fragment: bool = False

    @property
    def end(self) -> int:
        """Offset past its value (its value offset when the length is undefined)."""
        return self.value_pos + (0 if self.length == UNDEFINED else self.length)


@dataclass
class Seed:
    """A valid file and the map of its elements.

    Attributes
    ----------
    name : str
    data : bytes
        The file.
    elements : list of Element
        The elements of `data` (for a deflated file: only its file meta group).
    body_at : int or None
        For Deflated Explicit VR Little Endian: where the deflated data set starts in `data`.
    body : bytes
        The inflated data set (deflated files only), which structure-aware mutations edit
        before deflating it again.
    body_elements : list of Element
    """

    name: str
    data: bytes
    elements: list[Element]
    body_at: int | None = None
    body: bytes = b""
    body_elements: list[Element] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# the element map


def _walk(data: bytes, pos: int, end: int, *, explicit: bool, little: bool, depth: int,
          out: list[Element]) -> int:
    """Append the elements of the data set in ``data[pos:end]`` to `out`; return where it
    stopped (at a delimiter, the end, or the first element that does not parse)."""
    u16, u32 = ("<H", "<I") if little else (">H", ">I")
    while pos + 8 <= end:
        group, elem = struct.unpack_from(u16 + u16[1], data, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:  # an item delimiter ends a nested data set
            (length,) = struct.unpack_from(u32, data, pos + 4)
            out.append(Element(tag, pos, -1, pos + 4, 4, pos + 8, length, little))
            return pos + 8
        is_meta = group == 0x0002
        exp, lit = (True, True) if is_meta else (explicit, little)
        if lit != little:
            return pos
        vr = data[pos + 4 : pos + 6]
        if exp:
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return pos
                (length,) = struct.unpack_from(u32, data, pos + 8)
                element = Element(tag, pos, pos + 4, pos + 8, 4, pos + 12, length, little)
            elif vr.isalpha():
                (length,) = struct.unpack_from(u16, data, pos + 6)
                element = Element(tag, pos, pos + 4, pos + 6, 2, pos + 8, length, little)
            else:
                return pos
        else:
            (length,) = struct.unpack_from(u32, data, pos + 4)
            element = Element(tag, pos, -1, pos + 4, 4, pos + 8, length, little)
        out.append(element)
        pos = element.value_pos
        if tag in (0x7FE00010, 0x7FE00008, 0x7FE00009) and length == UNDEFINED:
            pos = _walk_fragments(data, pos, end, little, out)
        elif length == UNDEFINED or (exp and vr == b"SQ"):
            stop = end if length == UNDEFINED else min(end, pos + length)
            pos = _walk_items(data, pos, stop, explicit=exp, little=little, depth=depth, out=out)
            if length != UNDEFINED:
                pos = stop
        else:
            pos += length
        if pos > end:
            return end
    return pos


def _walk_items(data: bytes, pos: int, end: int, *, explicit: bool, little: bool, depth: int,
                out: list[Element]) -> int:
    u32 = "<I" if little else ">I"
    u16 = "<H" if little else ">H"
    while pos + 8 <= end and depth < 16:
        group, elem = struct.unpack_from(u16 + u16[1], data, pos)
        (length,) = struct.unpack_from(u32, data, pos + 4)
        tag = group << 16 | elem
        out.append(Element(tag, pos, -1, pos + 4, 4, pos + 8, length, little))
        pos += 8
        if tag == 0xFFFEE0DD:
            return pos
        if tag != 0xFFFEE000:
            return pos
        stop = end if length == UNDEFINED else min(end, pos + length)
        after = _walk(data, pos, stop, explicit=explicit, little=little, depth=depth + 1, out=out)
        pos = after if length == UNDEFINED else stop
    return pos


def _walk_fragments(data: bytes, pos: int, end: int, little: bool, out: list[Element]) -> int:
    u32 = "<I" if little else ">I"
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH" if little else ">HH", data, pos)
        (length,) = struct.unpack_from(u32, data, pos + 4)
        tag = group << 16 | elem
        out.append(Element(tag, pos, -1, pos + 4, 4, pos + 8, length, little, fragment=True))
        pos += 8
        if tag != 0xFFFEE000 or length == UNDEFINED:
            return pos
        pos += length
    return min(pos, end)


def _transfer_syntax(data: bytes, elements: Sequence[Element]) -> str:
    for e in elements:
        if e.tag == 0x00020010:
            return data[e.value_pos : e.end].rstrip(b"\0 ").decode("ascii", "replace")
    return ""


def _map_seed(name: str, data: bytes) -> Seed:
    """A seed and the map of its elements (meta group explicit LE; the rest as its TS says)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    meta: list[Element] = []
    pos = _walk(data, pos, len(data), explicit=True, little=True, depth=0, out=meta)
    # the meta walk stops at the first element of another byte order, or runs on through an
    # explicit LE body: keep the meta group only and walk the body as its transfer syntax says
    ts = _transfer_syntax(data, meta)
    body_at = max((e.end for e in meta if e.tag >> 16 == 0x0002), default=pos)
    meta = [e for e in meta if e.pos < body_at]
    if ts == _DEFLATED:
        try:
            body = zlib.decompress(data[body_at:], -15)
        except zlib.error:
            body = b""
        body_elements: list[Element] = []
        _walk(body, 0, len(body), explicit=True, little=True, depth=0, out=body_elements)
        return Seed(name, data, meta, body_at, body, body_elements)
    elements = list(meta)
    _walk(data, body_at, len(data), explicit=ts != _IMPLICIT, little=ts != _EXPLICIT_BE,
          depth=0, out=elements)
    return Seed(name, data, elements)


# --------------------------------------------------------------------------------------------
# seeds

# (name, write_series keyword arguments); each must decode cleanly
_PHANTOMS: list[tuple[str, dict]] = [
    ("ct-explicit-le", {"transfer_syntax": "explicit_le"}),
    ("mr-implicit-le", {"transfer_syntax": "implicit_le", "modality": "MR"}),
    ("ct-explicit-be", {"transfer_syntax": "explicit_be"}),
    ("ct-deflated", {"transfer_syntax": "deflated"}),
    ("ct-rle", {"transfer_syntax": "rle"}),
    ("mr-voi-lut", {"transfer_syntax": "explicit_le", "modality": "MR", "voi_lut": True}),
    ("ct-enhanced", {"transfer_syntax": "explicit_le", "enhanced": True, "shape": (3, 16, 16)}),
    ("ct-enhanced-rle", {"transfer_syntax": "rle", "enhanced": True, "shape": (3, 16, 16)}),
    ("mr-jpeg-baseline", {"transfer_syntax": "jpeg_baseline", "modality": "MR"}),
    ("ct-jpeg-lossless", {"transfer_syntax": "jpeg_lossless"}),
    ("ct-enhanced-jpeg-lossless", {"transfer_syntax": "jpeg_lossless", "enhanced": True,
                                   "shape": (3, 16, 16)}),
    ("ct-jpeg-ls", {"transfer_syntax": "jpeg_ls"}),
    # the JPEG 2000 encoder wants 32 x 32 at least
    ("ct-jpeg2000-lossless", {"transfer_syntax": "jpeg2000_lossless", "shape": (1, 32, 32)}),
    ("ct-htj2k-lossless", {"transfer_syntax": "htj2k_lossless", "shape": (1, 32, 32)}),
]
# small files of pydicom's own test data, other writers' encodings
_PYDICOM_FILES = ["CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm",
                  "MR_small_bigendian.dcm", "rtdose_1frame.dcm", "image_dfl.dcm",
                  "SC_rgb_small_odd_jpeg.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm"]


def build_seeds(folder: str | os.PathLike[str]) -> list[Path]:
    """Write the seed files to `folder`; return their paths (sorted by name).

    Phantoms of transfer syntaxes this machine cannot encode, and pydicom files that are
    absent or that do not decode cleanly here, are left out.
    """
    import warnings

    import pydicom

    from ..dicom.decode import decode
    from .datasets import available_transfer_syntaxes, deterministic_uid
    from .series import write_series

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    available = available_transfer_syntaxes()
    paths = []
    for name, kwargs in _PHANTOMS:
        kwargs = dict(kwargs)
        if kwargs["transfer_syntax"] not in available:
            continue
        work = folder / f".work-{name}"
        shutil.rmtree(work, ignore_errors=True)
        kwargs.setdefault("shape", (1, 16, 16))
        write_series(work, noise=False, study_uid=str(deterministic_uid("fuzz-study", name)),
                     series_uid=str(deterministic_uid("fuzz-series", name)), **kwargs)
        (path,) = sorted(work.glob("*.dcm"))
        paths.append(path.replace(folder / f"{name}.dcm"))
        shutil.rmtree(work)
    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in _PYDICOM_FILES:
        source = test_files / name
        if source.is_file():
            target = folder / f"pydicom-{name}"
            shutil.copyfile(source, target)
            paths.append(target)
    kept = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                decode(path)
            except Exception:
                if not path.name.startswith("pydicom-"):
                    raise  # a phantom that does not decode: a bug, not a seed to drop
                path.unlink()  # another writer's file this build does not decode
                continue
        kept.append(path)
    return sorted(kept)


def load_seeds(folder: str | os.PathLike[str]) -> list[Seed]:
    """The seeds in `folder` (see :func:`build_seeds`), mapped, in name order."""
    return [_map_seed(p.name, p.read_bytes()) for p in sorted(Path(folder).glob("*.dcm"))]


# --------------------------------------------------------------------------------------------
# mutations: each takes (rng, bytes, elements) and returns new bytes


def _pack_length(e: Element, value: int) -> bytes:
    fmt = ("<" if e.little else ">") + ("I" if e.len_size == 4 else "H")
    return struct.pack(fmt, value & (0xFFFFFFFF if e.len_size == 4 else 0xFFFF))


def _splice(data: bytes, at: int, size: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + size :]


def _length_value(rng: random.Random, e: Element, total: int) -> int:
    remaining = max(0, total - e.value_pos)
    choices = [0, 1, 2, 3, e.length + 1, e.length - 1, e.length + 2, e.length - 2,
               e.length * 2, e.length // 2, remaining, remaining + 1, remaining - 1,
               rng.getrandbits(8 * e.len_size)]
    if e.len_size == 4:
        choices += [UNDEFINED, 0xFFFFFFF0, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0x10000]
    else:
        choices += [0xFFFF, 0xFFFE, 0x8000]
    return rng.choice(choices)


def _mut_length(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    # lengths of the pixel data, of sequences, items and fragments matter most: weight them
    heavy = [e for e in elements if e.tag >> 16 in (0x7FE0, 0xFFFE) or e.length == UNDEFINED]
    pool = heavy if heavy and rng.random() < 0.5 else elements
    e = rng.choice(pool)
    return _splice(data, e.len_pos, e.len_size, _pack_length(e, _length_value(rng, e, len(data))))


def _mut_vr(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    explicit = [e for e in elements if e.vr_pos >= 0]
    if not explicit:
        return _mut_length(rng, data, elements)
    e = rng.choice(explicit)
    return _splice(data, e.vr_pos, 2, rng.choice(_VRS))


def _rewrite_value(data: bytes, e: Element, value: bytes) -> bytes:
    """`data` with element `e`'s value replaced by `value` and its length set to match."""
    if e.length == UNDEFINED:
        return data
    if e.len_size == 2 and len(value) > 0xFFFF:
        value = value[:0xFFFF]
    head = data[e.pos : e.len_pos] + _pack_length(e, len(value))  # tag (VR, reserved), length
    return data[: e.pos] + head + value + data[e.end :]


def _fix_group_length(data: bytes, elements: Sequence[Element], delta: int) -> bytes:
    for e in elements:
        if e.tag == 0x00020000 and e.length == 4:
            (value,) = struct.unpack_from("<I", data, e.value_pos)
            return _splice(data, e.value_pos, 4, struct.pack("<I", (value + delta) & 0xFFFFFFFF))
    return data


def _mut_transfer_syntax(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    for e in elements:
        if e.tag == 0x00020010:
            uid = rng.choice(_TRANSFER_SYNTAXES).encode("latin-1")
            if len(uid) % 2 and rng.random() < 0.8:
                uid += b"\0"
            out = _rewrite_value(data, e, uid)
            if rng.random() < 0.7:  # the group length agreeing, as a writer would leave it
                out = _fix_group_length(out, elements, len(uid) - e.length)
            return out
    return _mut_length(rng, data, elements)


def _attr_value(rng: random.Random, kind: str, e: Element, data: bytes) -> bytes:
    fmt = "<" if e.little else ">"
    if kind in ("us", "us3"):
        if kind == "us3" and e.length == 6 and rng.random() < 0.7:  # a LUT descriptor
            values = list(struct.unpack_from(fmt + "3H", data, e.value_pos))
            values[rng.randrange(3)] = rng.choice(_US_VALUES)
            return struct.pack(fmt + "3H", *values)
        if rng.random() < 0.1:
            return struct.pack(fmt + "I", rng.choice(_INTERESTING32))  # as UL, 4 bytes
        if rng.random() < 0.05:
            return b""
        return struct.pack(fmt + "H", rng.choice(_US_VALUES))
    if kind == "ow":
        cut = rng.randrange(max(1, e.length + 1))
        return data[e.value_pos : e.value_pos + cut]
    text = rng.choice(_STRINGS[kind]).encode("latin-1")
    return text + (b" " if len(text) % 2 and rng.random() < 0.8 else b"")


def _mut_pixel_attr(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    present = [e for e in elements if e.tag in _PIXEL_ATTRS and e.length != UNDEFINED]
    if not present:
        return _mut_length(rng, data, elements)
    e = rng.choice(present)
    kind = _PIXEL_ATTRS[e.tag]
    if kind == "us" and e.length == 2 and rng.random() < 0.6:  # in place: nothing moves
        value = struct.pack(("<" if e.little else ">") + "H", rng.choice(_US_VALUES))
        return _splice(data, e.value_pos, 2, value)
    return _rewrite_value(data, e, _attr_value(rng, kind, e, data))


def _mut_delete(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    pool = [e for e in elements if e.length != UNDEFINED and e.tag >> 16 != 0xFFFE]
    if not pool:
        return data
    attrs = [e for e in pool if e.tag in _PIXEL_ATTRS]
    e = rng.choice(attrs if attrs and rng.random() < 0.6 else pool)
    return data[: e.pos] + data[e.end :]


def _mut_duplicate(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    pool = [e for e in elements if e.length != UNDEFINED and e.tag >> 16 != 0xFFFE]
    if not pool:
        return data
    e = rng.choice(pool)
    span = data[e.pos : e.end]
    at = rng.choice([e.end, e.pos, rng.choice(pool).pos])
    return data[:at] + span + data[at:]


def _mut_native_pixels(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    """Pixel Data short or long by a few bytes, its length agreeing with what is there."""
    pixels = [e for e in elements if e.tag == 0x7FE00010 and e.length != UNDEFINED]
    if not pixels:
        return _mut_fragments(rng, data, elements)
    e = pixels[-1]
    delta = rng.choice([-1, 1, -2, 2, -e.length // 2, -e.length, 7, 64, e.length])
    value = data[e.value_pos : e.end]
    value = value[: len(value) + delta] if delta < 0 else value + bytes(rng.getrandbits(8)
                                                                        for _ in range(delta))
    return _rewrite_value(data, e, value)


def _codec_header_mutation(rng: random.Random, frag: bytearray) -> None:
    """Damage the codec's own header inside a fragment, in place (sizes kept)."""
    if len(frag) >= 64 and struct.unpack_from("<I", frag, 0)[0] <= 15:  # an RLE header
        slot = rng.randrange(16)
        value = rng.choice([0, 1, 2, 3, 15, 16, 60, 63, 64, 65, len(frag), len(frag) + 1,
                            0x7FFFFFFF, UNDEFINED, rng.getrandbits(32)])
        struct.pack_into("<I", frag, 4 * slot, value)
        return
    if frag[:2] == b"\xff\xd8":  # JPEG: a SOF field, the SOS, the EOI
        sof = [i for i in range(2, len(frag) - 9) if frag[i] == 0xFF
               and 0xC0 <= frag[i + 1] <= 0xCF and frag[i + 1] not in (0xC4, 0xC8, 0xCC)]
        if sof:
            i = sof[0] + 4  # Lf(2) P(1) Y(2) X(2) Nf(1)
            which = rng.choice(["P", "Y", "X", "Nf", "Lf"])
            if which == "P":
                frag[i] = rng.choice([0, 1, 2, 7, 8, 12, 16, 17, 255])
            elif which in ("Y", "X"):
                at = i + (1 if which == "Y" else 3)
                struct.pack_into(">H", frag, at, rng.choice([0, 1, 15, 17, 255, 4096, 65535]))
            elif which == "Nf":
                frag[i + 5] = rng.choice([0, 1, 2, 3, 4, 255])
            else:
                struct.pack_into(">H", frag, i - 2, rng.choice([0, 1, 2, 8, 11, 0xFFFF]))
            return
    if frag[:4] == b"\xff\x4f\xff\x51" and len(frag) > 42:  # J2K SIZ: Xsiz Ysiz .. Csiz Ssiz
        at = rng.choice([8, 12, 16, 20, 24, 28, 32, 36, 38, 40])
        size = 2 if at in (38,) else (1 if at == 40 else 4)
        value = rng.choice([0, 1, 15, 16, 17, 0xFF, 0xFFFF, 0x7FFFFFFF, UNDEFINED])
        frag[at : at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")
        return
    if frag:
        frag[rng.randrange(len(frag))] ^= 1 << rng.randrange(8)


def _mut_fragments(rng: random.Random, data: bytes, elements: Sequence[Element]) -> bytes:
    """Damage encapsulated Pixel Data: offsets, item tags and lengths, fragments, codec headers."""
    items = [e for e in elements if e.fragment]
    if not items:
        return _mut_native_pixels(rng, data, elements) if rng.random() < 0.5 else \
            _mut_length(rng, data, elements)
    bot = items[0] if items[0].tag == 0xFFFEE000 else None
    frames = [e for e in items[1:] if e.tag == 0xFFFEE000 and e.length != UNDEFINED
              and e.end <= len(data)]
    what = rng.choice(["bot", "truncate", "tag", "delimiter", "extra", "codec", "codec", "length",
                       "drop"])
    if what == "bot" and bot is not None and bot.length >= 4 and bot.end <= len(data):
        k = rng.randrange(bot.length // 4)
        (current,) = struct.unpack_from("<I", data, bot.value_pos + 4 * k)
        value = rng.choice([0, 1, 2, 4, current + 1, current - 1, current + 8, len(data),
                            0x7FFFFFFF, UNDEFINED])
        return _splice(data, bot.value_pos + 4 * k, 4, struct.pack("<I", value & UNDEFINED))
    if what == "truncate" and frames:
        e = rng.choice(frames)
        cut = rng.choice([1, 2, 3, 4, 8, e.length // 2, e.length - 2, rng.randrange(e.length + 1)])
        cut = max(0, min(cut, e.length))
        new = _pack_length(e, e.length - cut)
        return data[: e.len_pos] + new + data[e.value_pos : e.end - cut] + data[e.end :]
    if what == "tag":
        e = rng.choice(items)
        tag = rng.choice([b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0",
                          b"\xe0\x7f\x10\x00", b"\x00\x00\x00\x00", b"\xff\xfe\xe0\x00"])
        return _splice(data, e.pos, 4, tag)
    if what == "delimiter":
        last = items[-1]
        if last.tag == 0xFFFEE0DD:
            return data[: last.pos] + data[last.pos + 8 :]
    if what == "extra" and frames:
        e = rng.choice(frames)
        extra = rng.choice([b"\xfe\xff\x00\xe0\0\0\0\0", data[e.pos : e.end]])
        return data[: e.end] + extra + data[e.end :]
    if what == "drop" and frames:
        e = rng.choice(frames)
        return data[: e.pos] + data[e.end :]
    if what == "codec" and frames:
        e = rng.choice(frames)
        frag = bytearray(data[e.value_pos : e.end])
        _codec_header_mutation(rng, frag)
        return data[: e.value_pos] + bytes(frag) + data[e.end :]
    e = rng.choice(items)
    return _splice(data, e.len_pos, 4, _pack_length(e, _length_value(rng, e, len(data))))


_STRUCTURED: list[tuple[Callable[[random.Random, bytes, Sequence[Element]], bytes], int]] = [
    (_mut_length, 5), (_mut_vr, 2), (_mut_transfer_syntax, 1), (_mut_pixel_attr, 6),
    (_mut_delete, 2), (_mut_duplicate, 1), (_mut_native_pixels, 2), (_mut_fragments, 5),
]
_STRUCTURED_FNS = [f for f, w in _STRUCTURED for _ in range(w)]


def _bytes_mutation(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
    n = len(data)
    # half the positions in the first KiB: the header, where the parsers live
    pos = rng.randrange(min(n, 1024)) if rng.random() < 0.5 else rng.randrange(n)
    what = rng.randrange(8)
    if what == 0:
        b = bytearray(data)
        b[pos] ^= 1 << rng.randrange(8)
        return bytes(b)
    if what == 1:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 9)):
            b[rng.randrange(n)] = rng.getrandbits(8)
        return bytes(b)
    if what == 2:
        size = rng.choice([1, 2, 4])
        value = rng.choice(_INTERESTING32) & ((1 << (8 * size)) - 1)
        return _splice(data, pos, size, value.to_bytes(size, rng.choice(["little", "big"])))
    if what == 3:  # truncation, often inside the last KiBs
        at = n - rng.randrange(min(n, 4096) + 1) if rng.random() < 0.6 else rng.randrange(n)
        return data[:at]
    if what == 4:
        return data[:pos] + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 17))) + data[pos:]
    if what == 5:
        return data[:pos] + data[pos + rng.randrange(1, 65) :]
    if what == 6:
        start = rng.randrange(n)
        return data[:pos] + data[start : start + rng.randrange(1, 257)] + data[pos:]
    return data[:pos] + b"\0" * rng.randrange(1, 33) + data[pos:]


def case_rng(seed: int, index: int) -> random.Random:
    """The random generator of case `index` of run `seed` (independent of every other case)."""
    return random.Random((seed & 0xFFFFFFFF) << 40 | (index & ((1 << 40) - 1)))


def mutate(seeds: Sequence[Seed], seed: int, index: int) -> tuple[bytes, str]:
    """The file of case `index` of run `seed`, and which seed and mutations made it.

    Deterministic: the same seeds, `seed` and `index` give the same bytes.
    """
    rng = case_rng(seed, index)
    s = seeds[rng.randrange(len(seeds))]
    steps = [s.name]
    data = s.data
    plan = rng.random()
    if plan < 0.65:  # structure-aware first, while the element map still holds
        fn = rng.choice(_STRUCTURED_FNS)
        if s.body_at is not None and s.body_elements and rng.random() < 0.7:
            body = fn(rng, s.body, s.body_elements)
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = data[: s.body_at] + compressor.compress(body) + compressor.flush()
            steps.append(f"{fn.__name__[5:]}@body")
        else:
            data = fn(rng, data, s.elements)
            steps.append(fn.__name__[5:])
        extra = 0 if rng.random() < 0.6 else rng.randrange(1, 3)
    else:
        extra = rng.randrange(1, 5)
    for _ in range(extra):
        data = _bytes_mutation(rng, data)
    steps.append(f"bytes x{extra}")
    return data, " + ".join(steps)


# --------------------------------------------------------------------------------------------
# the worker (a child process)

# the progress slot of a worker, int64s: current case, cases started, cases finished,
# decoded, decode errors (VoxelflowError), scanned as instance rows, ingests, failures
_SLOT = 8
_SLOT_BYTES = 8 * _SLOT

_WORKER = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (%(cap)d, %(cap)d))
from voxelflow.testing.fuzz import _worker_main
_worker_main(sys.argv[1:])
"""


def _name_of(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _check_case(path: str, store: str, *, ingest: bool, palette: bool) -> tuple[list, bool, bool]:
    """Run decode, scan (and ingest) on `path`; ([failures], decoded, scanned as a row)."""
    import voxelflow
    from voxelflow.errors import VoxelflowError
    from voxelflow.ingest import ingest as ingest_files

    failures = []
    decoded = False
    try:
        voxelflow.decode(path, apply_palette=palette)
        decoded = True
    except VoxelflowError:
        pass
    except Exception as exc:  # noqa: BLE001 - the failure the fuzzer exists to find
        failures.append(["decode", _name_of(exc), str(exc)[:500], traceback.format_exc()[-3000:]])
    row = False
    try:
        index = voxelflow.scan(path, workers=1)
        row = bool(index.rows)
    except Exception as exc:  # noqa: BLE001 - scan records bad files, never raises for them
        failures.append(["scan", _name_of(exc), str(exc)[:500], traceback.format_exc()[-3000:]])
    if ingest:
        try:
            ingest_files([path], store, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - ingest reports bad files, never raises
            failures.append(["ingest", _name_of(exc), str(exc)[:500],
                             traceback.format_exc()[-3000:]])
        finally:
            shutil.rmtree(store, ignore_errors=True)
    return failures, decoded, row


def _worker_main(argv: list[str]) -> None:
    import warnings

    seed_folder, work, slot_path, slot, seed, ingest_every = argv
    slot, seed, ingest_every = int(slot), int(seed), int(ingest_every)
    warnings.simplefilter("ignore")
    seeds = load_seeds(seed_folder)
    path = os.path.join(work, f"case-{slot}.dcm")
    store = os.path.join(work, f"store-{slot}")
    with open(slot_path, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 0)
    counts = [-1, 0, 0, 0, 0, 0, 0, 0]
    base = slot * _SLOT_BYTES
    shared[base : base + _SLOT_BYTES] = struct.pack("<8q", *counts)
    out = sys.stdout
    for line in sys.stdin:
        start, stop = (int(v) for v in line.split())
        for index in range(start, stop):
            counts[0] = index
            counts[1] += 1
            struct.pack_into("<2q", shared, base, index, counts[1])
            data, _ = mutate(seeds, seed, index)
            with open(path, "wb") as f:
                f.write(data)
            rng = case_rng(seed ^ 0x5EED, index)
            ingest = ingest_every > 0 and rng.randrange(ingest_every) == 0
            failures, decoded, row = _check_case(path, store, ingest=ingest,
                                                 palette=rng.random() < 0.125)
            counts[2] += 1
            counts[3 if decoded else 4] += 1
            counts[5] += row
            counts[6] += ingest
            if failures:
                counts[7] += 1
                out.write(json.dumps({"index": index, "failures": failures}) + "\n")
                out.flush()
            struct.pack_into("<8q", shared, base, *counts)
        out.write(json.dumps({"done": [start, stop]}) + "\n")
        out.flush()


# --------------------------------------------------------------------------------------------
# the pool (the parent)


@dataclass
class FuzzReport:
    """What a run did.

    Attributes
    ----------
    count, seed : int
    seconds : float
        Wall time of the cases (seeds and start-up excluded).
    finished : int
        Cases run to the end.
    decoded, decode_errors, rows : int
        Cases that decoded, whose decode raised a VoxelflowError, that scan indexed as a row.
    failures : list of dict
        One per failed case: ``index``, ``kind`` ("exception", "crash", "timeout"), details and
        ``file`` (its saved copy).
    respawns : int
        Workers started again after one died or hung.
    """

    count: int
    seed: int
    seconds: float = 0.0
    finished: int = 0
    decoded: int = 0
    decode_errors: int = 0
    rows: int = 0
    failures: list[dict] = field(default_factory=list)
    respawns: int = 0

    @property
    def rate(self) -> float:
        """Cases per second."""
        return self.finished / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for f in self.failures:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"
        return (f"fuzz: seed {self.seed}: {self.finished} of {self.count} cases in "
                f"{self.seconds:.1f} s ({self.rate:.0f} cases/s); decoded {self.decoded}, "
                f"decode errors {self.decode_errors}, scanned as rows {self.rows}; "
                f"failures {len(self.failures)} ({detail}); workers re-spawned {self.respawns}")


class _Pool:
    def __init__(self, *, seeds: list[Seed], seed_folder: Path, work: Path, out: Path, seed: int,
                 jobs: int, timeout: float, ingest_every: int, report: FuzzReport,
                 log: Callable[[str], None]) -> None:
        self.seeds, self.seed_folder, self.work, self.out = seeds, seed_folder, work, out
        self.seed, self.jobs, self.timeout, self.ingest_every = seed, jobs, timeout, ingest_every
        self.report, self.log = report, log
        self.lock = threading.Lock()
        self.slot_path = work / "slots"
        self.slot_path.write_bytes(b"\0" * (_SLOT_BYTES * jobs))
        with open(self.slot_path, "r+b") as f:
            self.shared = mmap.mmap(f.fileno(), 0)
        self.totals = [0] * _SLOT  # of the workers that have ended
        self.live: dict[int, list[int]] = {}

    def slot(self, k: int) -> list[int]:
        return list(struct.unpack_from("<8q", self.shared, k * _SLOT_BYTES))

    def _spawn(self, k: int) -> subprocess.Popen:
        self.shared[k * _SLOT_BYTES : (k + 1) * _SLOT_BYTES] = struct.pack("<8q", -1, *[0] * 7)
        err = open(self.work / f"stderr-{k}.txt", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER % {"cap": ADDRESS_SPACE}, str(self.seed_folder),
             str(self.work), str(self.slot_path), str(k), str(self.seed), str(self.ingest_every)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0,
        )
        err.close()
        return proc

    def _retire(self, k: int) -> None:
        """Add an ended worker's counts to the totals."""
        counts = self.slot(k)
        with self.lock:
            for i in range(1, _SLOT):
                self.totals[i] += counts[i]
        self.shared[k * _SLOT_BYTES : (k + 1) * _SLOT_BYTES] = b"\0" * _SLOT_BYTES

    def counts(self) -> list[int]:
        with self.lock:
            totals = list(self.totals)
        for k in range(self.jobs):
            for i, v in enumerate(self.slot(k)[1:], 1):
                totals[i] += v
        return totals

    def record(self, index: int, kind: str, **details: object) -> None:
        data, how = mutate(self.seeds, self.seed, index)
        name = f"{kind}-seed{self.seed}-case{index}.dcm"
        (self.out / name).write_bytes(data)
        entry = {"index": index, "seed": self.seed, "kind": kind, "mutation": how,
                 "file": str(self.out / name), **details,
                 "replay": f"python -m voxelflow.testing.fuzz --seed {self.seed} --replay {index}"}
        with self.lock:
            self.report.failures.append(entry)
            with (self.out / "failures.jsonl").open("a") as f:
                f.write(json.dumps(entry) + "\n")
        first = details.get("failures") or [[details.get("why", "")]]
        self.log(f"fuzz: FAILURE case {index} ({kind}, {how}): {first[0][:3]} -> {self.out / name}")

    def drive(self, k: int, batches: Iterator[tuple[int, int]]) -> None:
        """Worker `k`'s thread: feed it batches, re-spawn it when it dies or hangs."""
        proc = None
        try:
            while True:
                with self.lock:
                    batch = next(batches, None)
                if batch is None:
                    break
                start, stop = batch
                while start < stop:
                    if proc is None:
                        proc = self._spawn(k)
                        spawned = time.monotonic()
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(f"{start} {stop}\n".encode())
                    start, proc = self._wait(k, proc, start, stop, spawned)
        finally:
            if proc is not None:
                proc.stdin.close()
                proc.wait()
                self._retire(k)

    def _wait(self, k: int, proc: subprocess.Popen, start: int, stop: int,
              spawned: float) -> tuple[int, subprocess.Popen | None]:
        """Wait for batch [start, stop); return (where to go on, the worker or None if it
        ended)."""
        import select

        assert proc.stdout is not None
        # the pipe is read raw, every line of a read handled at once: a buffered reader could
        # hold a second line (the batch's "done") where select() no longer sees it, and the
        # idle worker would be killed as hung
        fd, unread = proc.stdout.fileno(), b""
        last, changed = self.slot(k)[1], time.monotonic()
        first = last == 0
        while True:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    *lines, unread = (unread + chunk).split(b"\n")
                    for line in lines:
                        message = json.loads(line)
                        if "done" in message:
                            return stop, proc
                        self.record(message["index"], "exception", failures=message["failures"])
                    continue
                proc.wait()
                why = f"worker exited {proc.returncode}"
                hung = False
            else:
                current = self.slot(k)[1]
                if current != last:
                    last, changed, first = current, time.monotonic(), False
                    continue
                limit = STARTUP_TIMEOUT if first else self.timeout
                if time.monotonic() - (spawned if first else changed) <= limit:
                    continue
                proc.kill()
                proc.wait()
                why = f"no progress for {limit:.0f} s"
                hung = True
            counts = self.slot(k)
            stderr = (self.work / f"stderr-{k}.txt").read_text(errors="replace")[-3000:]
            self._retire(k)
            with self.lock:
                self.report.respawns += 1
            if counts[1] == 0 and not hung:  # died before its first case: nothing to blame
                raise RuntimeError(f"fuzz worker {k} failed to start ({why}):\n{stderr}")
            if counts[1] > counts[2]:  # a case started and never finished: the culprit
                culprit = counts[0]
                self.record(culprit, "timeout" if hung else "crash", why=why, stderr=stderr)
                with self.lock:
                    self.totals[2] += 1  # it ran, to its end
                return culprit + 1, None
            return max(start, counts[0] + 1), None


def run(count: int, seed: int = 0, *, jobs: int = 1, out: str | os.PathLike[str] = "fuzz-out",
        timeout: float = CASE_TIMEOUT, ingest_every: int = INGEST_EVERY, start: int = 0,
        log: Callable[[str], None] | None = None, progress_every: float = 60.0) -> FuzzReport:
    """Fuzz `count` cases (indices ``start .. start + count - 1``) of run `seed` in `jobs`
    worker processes; failed cases' files go to `out`.

    Returns
    -------
    FuzzReport
    """
    log = log or (lambda text: print(text, flush=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = FuzzReport(count=count, seed=seed)
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="voxelflow-fuzz-",
                                     dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None) as tmp:
        work = Path(tmp)
        seed_folder = work / "seeds"
        build_seeds(seed_folder)
        seeds = load_seeds(seed_folder)
        log(f"fuzz: {len(seeds)} seeds: {', '.join(s.name for s in seeds)}")
        pool = _Pool(seeds=seeds, seed_folder=seed_folder, work=work, out=out, seed=seed,
                     jobs=jobs, timeout=timeout, ingest_every=ingest_every, report=report,
                     log=log)
        batches = ((i, min(i + BATCH, start + count)) for i in range(start, start + count, BATCH))
        errors: list[BaseException] = []

        def drive(k: int) -> None:
            try:
                pool.drive(k, batches)
            except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
                errors.append(exc)

        began = time.monotonic()
        threads = [threading.Thread(target=drive, args=(k,), daemon=True) for k in range(jobs)]
        for t in threads:
            t.start()
        next_log = began + progress_every
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
            if time.monotonic() >= next_log:
                next_log += progress_every
                done = pool.counts()[2]
                elapsed = time.monotonic() - began
                log(f"fuzz: {done} of {count} cases, {elapsed:.0f} s, {done / elapsed:.0f} cases/s, "
                    f"{len(report.failures)} failures")
        report.seconds = time.monotonic() - began
        if errors:
            raise errors[0]
        totals = pool.counts()
        report.finished, report.decoded, report.decode_errors, report.rows = totals[2:6]
    return report


def replay(seed: int, index: int, out: str | os.PathLike[str] | None = None) -> int:
    """Rebuild case `index` of run `seed`, run it here (tracebacks shown); 1 if it fails."""
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="voxelflow-fuzz-") as tmp:
        build_seeds(Path(tmp) / "seeds")
        seeds = load_seeds(Path(tmp) / "seeds")
        data, how = mutate(seeds, seed, index)
        path = Path(out) if out else Path(tmp) / f"case-{index}.dcm"
        path.write_bytes(data)
        print(f"case {index} of seed {seed}: {how}, {len(data)} bytes -> {path}")
        failures, decoded, row = _check_case(str(path), str(Path(tmp) / "store"), ingest=True,
                                             palette=False)
        failures += _check_case(str(path), str(Path(tmp) / "store"), ingest=False,
                                palette=True)[0]
    for where, name, message, tb in failures:
        print(f"{where}: {name}: {message}\n{tb}")
    print(f"decoded: {decoded}, scanned as a row: {row}, failures: {len(failures)}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxelflow.testing.fuzz",
                                     description="Fuzz voxelflow's decode, scan and ingest.")
    parser.add_argument("--count", type=int, default=10000, help="cases to run")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--start", type=int, default=0, help="first case index")
    parser.add_argument("--out", default="fuzz-out", help="folder for failed cases' files")
    parser.add_argument("--timeout", type=float, default=CASE_TIMEOUT,
                        help="seconds a case may take (default %(default)s)")
    parser.add_argument("--ingest-every", type=int, default=INGEST_EVERY,
                        help="ingest one case in N (0: never; default %(default)s)")
    parser.add_argument("--replay", type=int, metavar="INDEX",
                        help="rebuild and run one case in this process")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.seed, args.replay)
    if args.count < 0 or args.jobs < 1:
        parser.error("--count must be >= 0 and --jobs >= 1")
    report = run(args.count, args.seed, jobs=args.jobs, out=args.out, timeout=args.timeout,
                 ingest_every=args.ingest_every, start=args.start)
    print(report.summary(), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
