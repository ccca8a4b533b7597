"""``voxelflow.scan``: walk folders, read DICOM headers (never pixel data), index the instances.

Each file's header is read by the fast walker (:mod:`.header`), which covers Part 10 files in
every standard transfer syntax; the rest (no file meta transfer syntax, private syntaxes, VR
encodings that contradict the declared syntax, very deep nesting) go to pydicom
(``stop_before_pixels``, large values deferred so nothing big is read). Both paths hand the same
raw element bytes to one set of converters, so a row does not depend on which path read it.

Files are parsed in a process pool: parsing is pure Python, bound by the GIL, so threads would
not help. Results come back as plain tuples in chunks; the pool starts by ``fork`` where that is
safe (a single-threaded parent on a platform that has it), else by the platform's default
method. Measured on 2 cores (benchmarks/bench_scan.py, 10,000 small CT files, page cache warm):
~14,000 files/s with two processes, ~10,000 inline, against ~6,000 for pydicom's ``dcmread``
(``stop_before_pixels``, no value accessed) in the same two-process pool. Starting and feeding
the pool costs ~10 ms, so small scans stay inline.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import stat
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, BinaryIO

from ..errors import ParameterError
from .header import HeaderError, walk_header, walk_items
from .index import ROW_FIELDS, FileIssue, Index, InstanceRow
from .pixel_info import limits

__all__ = ["scan", "scan_bytes"]

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_UNDEFINED = 0xFFFFFFFF
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
# pydicom reads values above this size lazily (never, here): no big allocation on odd files
_DEFER_SIZE = 65536

# SOP classes built on the Multi-frame Functional Groups module (PS3.3 C.7.6.16)
ENHANCED_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET Image Storage
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image Storage
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
    "1.2.840.10008.5.1.4.1.1.6.3",  # Photoacoustic Image Storage
    "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA Image Storage
    "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF Image Storage
    "1.2.840.10008.5.1.4.1.1.13.1.1",  # X-Ray 3D Angiographic Image Storage
    "1.2.840.10008.5.1.4.1.1.13.1.2",  # X-Ray 3D Craniofacial Image Storage
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image Storage
    "1.2.840.10008.5.1.4.1.1.13.1.4",  # Breast Projection X-Ray Image Storage - Presentation
    "1.2.840.10008.5.1.4.1.1.13.1.5",  # Breast Projection X-Ray Image Storage - Processing
    "1.2.840.10008.5.1.4.1.1.14.1",  # Intravascular OCT Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.14.2",  # Intravascular OCT Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map Storage
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.77.1.5.4",  # Ophthalmic Tomography Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.5.7",  # Ophthalmic OCT En Face Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.5.8",  # Ophthalmic OCT B-scan Volume Analysis Storage
})

# field -> (tag, kind, value count or 0 for any)
_STR, _STRS, _INT, _INTS, _FLOAT, _FLOATS = range(6)
_FIELDS: dict[str, tuple[int, int, int]] = {
    "study_instance_uid": (0x0020000D, _STR, 0),
    "series_instance_uid": (0x0020000E, _STR, 0),
    "sop_instance_uid": (0x00080018, _STR, 0),
    "sop_class_uid": (0x00080016, _STR, 0),
    "modality": (0x00080060, _STR, 0),
    "instance_number": (0x00200013, _INT, 0),
    "image_type": (0x00080008, _STRS, 0),
    "image_orientation_patient": (0x00200037, _FLOATS, 6),
    "image_position_patient": (0x00200032, _FLOATS, 3),
    "pixel_spacing": (0x00280030, _FLOATS, 2),
    "slice_thickness": (0x00180050, _FLOAT, 0),
    "rows": (0x00280010, _INT, 0),
    "columns": (0x00280011, _INT, 0),
    "bits_allocated": (0x00280100, _INT, 0),
    "bits_stored": (0x00280101, _INT, 0),
    "pixel_representation": (0x00280103, _INT, 0),
    "samples_per_pixel": (0x00280002, _INT, 0),
    "photometric_interpretation": (0x00280004, _STR, 0),
    "number_of_frames": (0x00280008, _INT, 0),
    "rescale_slope": (0x00281053, _FLOAT, 0),
    "rescale_intercept": (0x00281052, _FLOAT, 0),
    "rescale_type": (0x00281054, _STR, 0),
    "window_center": (0x00281050, _FLOATS, 0),
    "window_width": (0x00281051, _FLOATS, 0),
    "window_explanation": (0x00281055, _STRS, 0),
    "echo_time": (0x00180081, _FLOAT, 0),
    "echo_numbers": (0x00180086, _INTS, 0),
    "temporal_position_identifier": (0x00200100, _INT, 0),
    "trigger_time": (0x00181060, _FLOAT, 0),
    "acquisition_number": (0x00200012, _INT, 0),
    "series_number": (0x00200011, _INT, 0),
    "frame_of_reference_uid": (0x00200052, _STR, 0),
    "gantry_detector_tilt": (0x00181120, _FLOAT, 0),
    "acquisition_time": (0x00080032, _STR, 0),
    "content_time": (0x00080033, _STR, 0),
    "manufacturer": (0x00080070, _STR, 0),
}
_CHARSET = 0x00080005
_MODALITY_LUT_SQ = 0x00283000
_VOI_LUT_SQ = 0x00283010
# Philips MR Scale Slope / Intercept: element 0x0E / 0x0D of the block of this private creator
PHILIPS_CREATOR = "Philips MR Imaging DD 001"
_PHILIPS_GROUP = 0x2005
_PHILIPS_CREATORS = tuple((_PHILIPS_GROUP << 16) | block for block in range(0x10, 0x100))
_PHILIPS_SCALE = (("philips_scale_slope", 0x0E), ("philips_scale_intercept", 0x0D))
# GE's private image type (0043,xx2F, SS) in the block of this creator: 0 magnitude, 1 phase,
# 2 real, 3 imaginary (dcm2niix reads it, and writes phase as a NIfTI of its own)
GE_CREATOR = "GEMS_PARM_01"
_GE_GROUP = 0x0043
_GE_CREATORS = tuple((_GE_GROUP << 16) | block for block in range(0x10, 0x100))
_GE_KINDS = {0: "M", 1: "P", 2: "R", 3: "I"}
_SHARED_FG_SQ = 0x52009229
_PER_FRAME_FG_SQ = 0x52009230
# Shared Functional Groups: (group sequence, attribute, field); PS3.3 C.7.6.16.2
_SHARED: tuple[tuple[int, int, str], ...] = (
    (0x00289110, 0x00280030, "pixel_spacing"),  # Pixel Measures
    (0x00289110, 0x00180050, "slice_thickness"),
    (0x00209116, 0x00200037, "image_orientation_patient"),  # Plane Orientation
    (0x00209113, 0x00200032, "image_position_patient"),  # Plane Position (shared: one position)
    (0x00289145, 0x00281053, "rescale_slope"),  # Pixel Value Transformation
    (0x00289145, 0x00281052, "rescale_intercept"),
    (0x00289145, 0x00281054, "rescale_type"),
    (0x00289132, 0x00281050, "window_center"),  # Frame VOI LUT
    (0x00289132, 0x00281051, "window_width"),
    (0x00289132, 0x00281055, "window_explanation"),
    (0x00189304, 0x00181120, "gantry_detector_tilt"),  # CT Acquisition Details
    (0x00189114, 0x00189082, "echo_time"),  # MR Echo: Effective Echo Time (FD)
)
_KEEP = frozenset(
    {tag for tag, _, _ in _FIELDS.values()}
    | {_CHARSET, _MODALITY_LUT_SQ, _VOI_LUT_SQ, _SHARED_FG_SQ, _PER_FRAME_FG_SQ}
    | set(_PHILIPS_CREATORS)
    | {(_PHILIPS_GROUP << 16) | (block << 8) | element for block in range(0x10, 0x100)
       for _, element in _PHILIPS_SCALE}
    | set(_GE_CREATORS)
    | {(_GE_GROUP << 16) | (block << 8) | 0x2F for block in range(0x10, 0x100)}
)
_FIELD_INDEX = {name: i for i, name in enumerate(ROW_FIELDS)}
_SPECS = tuple(
    (_FIELD_INDEX[name], tag, kind, count, name) for name, (tag, kind, count) in _FIELDS.items()
)
_SHARED_VALUES: dict[Any, Any] = {}

_INT_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q"}
_FLOAT_VRS = {"FL": "f", "FD": "d"}
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
     "UR", "UT"}
)

# Result entries exchanged with worker processes: ("row", values) or (kind, path, reason,
# size, mtime_ns) with kind "skipped" | "no_pixels" | "error".
_Result = tuple[Any, ...]

# Below this many files per worker a pool costs more to start than it saves (measured on a
# 2-core machine: ~10 ms to fork and feed two workers, then ~40 us a file saved).
_MIN_FILES_PER_WORKER = 300
_MAX_CHUNK = 256


# --------------------------------------------------------------------------------------------
# element access: the walker's raw bytes or pydicom's raw elements, one interface


class _Elements:
    """Raw top-level elements of a data set (or of a sequence item)."""

    __slots__ = ("implicit", "little")

    def __init__(self, little: bool, implicit: bool):
        self.little = little
        self.implicit = implicit

    def get(self, tag: int) -> tuple[str, bytes | None] | None:
        """(VR, raw value) of `tag`; None when absent, value None when not read (deferred)."""
        raise NotImplementedError

    def has(self, tag: int) -> bool:
        raise NotImplementedError

    def items(self, tag: int) -> list[_Elements] | None:
        """The items of sequence `tag`; None when absent or unreadable."""
        raise NotImplementedError


class _WalkedElements(_Elements):
    __slots__ = ("elements",)

    def __init__(self, elements: dict[int, tuple[str, bytes]], little: bool, implicit: bool):
        super().__init__(little, implicit)
        self.elements = elements

    def get(self, tag: int) -> tuple[str, bytes | None] | None:
        return self.elements.get(tag)

    def has(self, tag: int) -> bool:
        return tag in self.elements

    def items(self, tag: int) -> list[_Elements] | None:
        entry = self.elements.get(tag)
        if entry is None:
            return None
        items = walk_items(entry[1], implicit=self.implicit, little=self.little)
        if items is None:
            raise _NeedsPydicom
        return [_WalkedElements(item, self.little, self.implicit) for item in items]


class _DatasetElements(_Elements):
    __slots__ = ("ds",)

    def __init__(self, ds: Any):
        implicit, little = getattr(ds, "original_encoding", (False, True))
        super().__init__(True if little is None else little, bool(implicit))
        self.ds = ds

    def get(self, tag: int) -> tuple[str, bytes | None] | None:
        try:
            elem = self.ds.get_item(tag, keep_deferred=True)
        except (KeyError, ValueError):
            return None
        if elem is None:
            return None
        if getattr(elem, "is_raw", False):
            vr = elem.VR
            if vr is None:
                vr = _dictionary_vr(tag)
            value = elem.value
            if value is None and not elem.length:
                value = b""  # empty (None would mean: deferred, not read)
            return str(vr), value
        # an element pydicom already converted: back to text the converters read
        value = elem.value
        if isinstance(value, (bytes, bytearray)):
            return str(elem.VR), bytes(value)
        if value is None:
            return "LO", b""
        values = list(value) if isinstance(value, (list, tuple, MutableSequence)) else [value]
        if all(isinstance(v, int) for v in values):
            vr = "IS"
        elif all(isinstance(v, (int, float)) for v in values):
            vr = "DS"
        else:
            vr = "LO"
        return vr, "\\".join(str(v) for v in values).encode("utf-8")

    def has(self, tag: int) -> bool:
        return tag in self.ds

    def items(self, tag: int) -> list[_Elements] | None:
        if tag not in self.ds:
            return None
        try:
            value = self.ds[tag].value
        except Exception:  # noqa: BLE001 - pydicom raises many types on a corrupt sequence
            return None
        if not isinstance(value, Sequence):
            return None
        return [_DatasetElements(item) for item in value]


class _NeedsPydicom(Exception):
    """The fast walker cannot read part of this file; read it with pydicom."""


def _dictionary_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)[:2]
    except KeyError:
        return "UN"


# --------------------------------------------------------------------------------------------
# value conversion


def _text(raw: bytes, vr: str, charset: Callable[[], list[str]]) -> str:
    if raw.isascii():
        return raw.decode("ascii")
    if vr in ("LO", "SH", "ST", "LT", "UC", "UT", "PN"):
        from pydicom.charset import decode_bytes

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return decode_bytes(raw, charset(), {0x5C})
    return raw.decode("latin-1")


def _convert(
    kind: int, count: int, vr: str, raw: bytes, little: bool, charset: Callable[[], list[str]]
) -> Any:
    """The field value of raw element bytes; raises ValueError when unreadable."""
    if vr in _TEXT_VRS or vr == "UN":
        text = raw.decode("ascii") if raw.isascii() else _text(raw, vr, charset)
        if kind == _STR:
            text = text.strip(" \x00")
            return text or None
        if "\\" in text:
            parts = [p.strip(" \x00") for p in text.split("\\")]
        else:
            text = text.strip(" \x00")
            if not text:
                return None
            parts = [text]
        if kind == _STRS:
            return tuple(parts)
        if kind == _FLOAT:
            if len(parts) != 1:
                raise ValueError(f"{len(parts)} values")
            return _float(parts[0])
        if kind == _INT:
            if len(parts) != 1:
                raise ValueError(f"{len(parts)} values")
            return _int(parts[0])
        values = tuple(map(_int if kind == _INTS else _float, parts))
        if count and len(values) != count:
            raise ValueError(f"{len(values)} values, expected {count}")
        return values
    binary = _INT_VRS.get(vr) or _FLOAT_VRS.get(vr)
    if binary is None:
        raise ValueError(f"VR {vr}")
    if kind in (_STR, _STRS):
        raise ValueError("binary value for a text attribute")
    width = struct.calcsize(binary)
    n = len(raw) // width
    if n * width != len(raw):
        raise ValueError("length is not a whole number of values")
    numbers: tuple[Any, ...] = struct.unpack(f"{'<' if little else '>'}{n}{binary}", raw)
    if kind in (_INT, _INTS) and vr in _FLOAT_VRS:
        if not all(math.isfinite(v) and v == int(v) for v in numbers):
            raise ValueError("not an integer")
        numbers = tuple(int(v) for v in numbers)
    if kind in (_FLOAT, _FLOATS):
        numbers = tuple(float(v) for v in numbers)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError("not a finite number")
    return _shape(kind, count, numbers)


def _shape(kind: int, count: int, values: tuple[Any, ...]) -> Any:
    if not values:
        return None
    if kind in (_INT, _FLOAT):
        if len(values) != 1:
            raise ValueError(f"{len(values)} values")
        return values[0]
    if count and len(values) != count:
        raise ValueError(f"{len(values)} values, expected {count}")
    return values


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # IS written as "12.0" by some writers: pydicom accepts it too
        if not value.is_integer():
            raise
        return int(value)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _row_values(
    elements: _Elements,
    path: str,
    size: int,
    mtime_ns: int,
    transfer_syntax: str | None,
) -> tuple[Any, ...]:
    """The InstanceRow field values (in ROW_FIELDS order) from the raw elements."""
    values: list[Any] = [None] * len(ROW_FIELDS)
    values[_FIELD_INDEX["path"]] = path
    values[_FIELD_INDEX["size"]] = size
    values[_FIELD_INDEX["mtime_ns"]] = mtime_ns
    values[_FIELD_INDEX["transfer_syntax_uid"]] = transfer_syntax
    invalid: list[str] = []
    encodings: list[list[str]] = []

    def charset() -> list[str]:
        if not encodings:
            from pydicom.charset import convert_encodings

            entry = elements.get(_CHARSET)
            names: Any = None
            if entry is not None and entry[1]:
                names = [p.strip(" \x00") for p in entry[1].decode("latin-1").split("\\")]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                encodings.append(convert_encodings(names))
        return encodings[0]

    def put(index: int, tag: int, kind: int, count: int, name: str, source: _Elements) -> None:
        entry = source.get(tag)
        if entry is None:
            return
        vr, raw = entry
        if raw is None:
            invalid.append(name)  # deferred by pydicom: too long to be a real value
            return
        if vr == "UN":
            vr = _dictionary_vr(tag)  # as pydicom does for known tags
        try:
            value = _convert(kind, count, vr, raw, source.little, charset)
        except (ValueError, OverflowError, struct.error, UnicodeDecodeError, LookupError):
            invalid.append(name)
            return
        if kind == _STR or kind == _STRS:
            # repeated texts (UIDs of the series, modality ...) become one object: smaller
            # pickles from the workers and a smaller index in memory
            value = _SHARED_VALUES.setdefault(value, value)
        values[index] = value

    for spec in _SPECS:
        put(*spec, elements)
    for name, value in philips_scale(elements).items():
        if value is _INVALID:
            invalid.append(name)
        else:
            values[_FIELD_INDEX[name]] = value
    values[_FIELD_INDEX["private_image_kind"]] = ge_image_kind(elements)

    sop_class = values[_FIELD_INDEX["sop_class_uid"]]
    enhanced = sop_class in ENHANCED_SOP_CLASSES or elements.has(_PER_FRAME_FG_SQ)
    if enhanced:
        shared = elements.items(_SHARED_FG_SQ)
        if shared:
            groups: dict[int, list[_Elements] | None] = {}
            for sequence, tag, name in _SHARED:
                if values[_FIELD_INDEX[name]] is not None or name in invalid:
                    continue
                if sequence not in groups:
                    groups[sequence] = shared[0].items(sequence)
                items = groups[sequence]
                if items:
                    _, kind, count = _FIELDS[name]
                    put(_FIELD_INDEX[name], tag, kind, count, name, items[0])
    frames = values[_FIELD_INDEX["number_of_frames"]]
    if frames is not None and not 1 <= frames <= limits.max_frames:
        # a count no decoder accepts (0, negative, 2**31): planning 2**31 frame references
        # would exhaust memory before decode could refuse the file
        invalid.append("number_of_frames")
        values[_FIELD_INDEX["number_of_frames"]] = None
    image_type = values[_FIELD_INDEX["image_type"]] or ()
    values[_FIELD_INDEX["enhanced"]] = bool(enhanced)
    values[_FIELD_INDEX["mosaic"]] = any(v.upper() == "MOSAIC" for v in image_type)
    values[_FIELD_INDEX["has_voi_lut"]] = elements.has(_VOI_LUT_SQ)
    values[_FIELD_INDEX["has_modality_lut"]] = elements.has(_MODALITY_LUT_SQ)
    values[_FIELD_INDEX["invalid"]] = tuple(invalid)
    return tuple(values)


_INVALID = object()


def _creator_block(elements: Any, creators: Sequence[int], creator: str) -> tuple[int | None, bool]:
    """(the block, xx of (gggg,xx00), that `creator` reserves among the private creator tags
    `creators`, or None; whether any creator is named there at all)."""
    named = False
    for tag in creators:
        entry = elements.get(tag)
        if entry is None:
            continue
        named = True
        if (entry[1] or b"").decode("latin-1").strip(" \x00") == creator:
            return tag & 0xFF, True
    return None, named


def _philips_block(elements: Any) -> int | None:
    """The block (xx of (2005,xx00)) reserved by the Philips MR Imaging DD 001 creator; 0x10
    where group 2005 names no creator at all (anonymisers strip creators and keep the values,
    and dcm2niix reads (2005,100E) then); None where the creators name others only."""
    block, named = _creator_block(elements, _PHILIPS_CREATORS, PHILIPS_CREATOR)
    return block if named else 0x10


def philips_scale(elements: Any) -> dict[str, Any]:
    """Philips MR Scale Slope / Intercept of a data set or sequence item: {field: float}, or
    the module's invalid marker for a value present but not one finite FL/FD number (text
    where the VR says FL, a wrong length). `elements` is an :class:`_Elements` or a pydicom
    Dataset."""
    ds = None
    if not isinstance(elements, _Elements):
        ds, elements = elements, _DatasetElements(elements)
    block = _philips_block(elements)
    out: dict[str, Any] = {}
    if block is None:
        return out
    for name, element in _PHILIPS_SCALE:
        tag = (_PHILIPS_GROUP << 16) | (block << 8) | element
        entry = elements.get(tag)
        if entry is None:
            continue
        vr, raw = entry
        if ds is not None and not getattr(ds.get_item(tag), "is_raw", False):
            # pydicom converted it already: its number, where the VR is FL / FD
            elem = ds[tag]
            number = elem.value
            ok = elem.VR in ("FL", "FD") and isinstance(number, (int, float)) and math.isfinite(number)
            out[name] = float(number) if ok else _INVALID
            continue
        fmt = {"FL": "f", "FD": "d"}.get(vr)
        if vr in ("UN", "OB") and raw is not None:
            # implicit VR, or a converter that lost the private dictionary: the FL's 4 bytes
            fmt = {4: "f", 8: "d"}.get(len(raw))
        if raw is None or fmt is None or len(raw) != struct.calcsize(fmt):
            out[name] = _INVALID
            continue
        (number,) = struct.unpack(("<" if elements.little else ">") + fmt, raw)
        out[name] = float(number) if math.isfinite(number) else _INVALID
    return out


def ge_image_kind(elements: Any) -> str | None:
    """GE's private image type (0043,xx2F) as "M", "P", "R" or "I", or None (absent, another
    creator, or a value that is not one of the four). `elements` as for :func:`philips_scale`."""
    if not isinstance(elements, _Elements):
        elements = _DatasetElements(elements)
    block, _ = _creator_block(elements, _GE_CREATORS, GE_CREATOR)
    if block is None:
        return None
    tag = (_GE_GROUP << 16) | (block << 8) | 0x2F
    if isinstance(elements, _DatasetElements):
        try:
            item = elements.ds.get_item(tag)
            if item is not None and not getattr(item, "is_raw", False):
                value = elements.ds[tag].value  # pydicom converted it already
                return _GE_KINDS.get(value) if isinstance(value, int) else None
        except Exception:  # noqa: BLE001 - pydicom converts lazily; a damaged value names no kind
            return None
    entry = elements.get(tag)
    if entry is None or entry[1] is None or entry[0] not in ("SS", "US", "UN", "OB") or len(entry[1]) != 2:
        return None
    (number,) = struct.unpack(("<" if elements.little else ">") + "h", entry[1])
    return _GE_KINDS.get(number)


# --------------------------------------------------------------------------------------------
# one file


def _read_file(path: str, size: int, mtime_ns: int, *, fallback: bool = True,
               data: bytes | None = None) -> _Result | None:
    """Read one file's header (or, with `data`, the header of those bytes, named `path`): a
    row, or why there is none. Never raises.

    With ``fallback=False``, None where the fast walker declines the file (tests use this).
    """
    try:
        return _read_file_checked(path, size, mtime_ns, fallback, data)
    except RecursionError:
        return ("error", path, "sequences nested too deeply to read", size, mtime_ns)
    except MemoryError:
        return ("error", path, "out of memory reading the header", size, mtime_ns)
    except Exception as exc:  # noqa: BLE001 - one bad file never stops a scan
        return ("error", path, f"unexpected {type(exc).__name__}: {exc}", size, mtime_ns)


def _read_file_checked(path: str, size: int, mtime_ns: int, fallback: bool,
                       data: bytes | None = None) -> _Result | None:
    if size == 0:
        return ("skipped", path, "empty file (0 bytes)", size, mtime_ns)
    try:
        f = open(path, "rb") if data is None else io.BytesIO(data)  # noqa: SIM115 - closed below on every path
    except OSError as exc:
        return ("error", path, f"cannot open: {exc.strerror or exc}", size, mtime_ns)
    with f:
        try:
            walk = walk_header(f, size, keep=_KEEP)
        except HeaderError as exc:
            return ("error", path, str(exc), size, mtime_ns)
        except OSError as exc:
            return ("error", path, f"cannot read: {exc.strerror or exc}", size, mtime_ns)
        if walk is not None:
            meta_class = walk.meta.get(0x00020002, b"").decode("ascii", "replace").strip(" \x00")
            if meta_class == _DICOMDIR_CLASS:
                return ("skipped", path, "DICOMDIR (media storage directory)", size, mtime_ns)
            elements = _WalkedElements(walk.elements, walk.little, walk.implicit)
            if walk.pixel_offset is None:
                return _no_pixels(elements, path, size, mtime_ns)
            if not walk.deflated and walk.pixel_length != _UNDEFINED:
                left = size - walk.pixel_value_offset
                if walk.pixel_length > left:
                    return ("error", path, _pixel_past_end(walk.pixel_length, left), size,
                            mtime_ns)
            try:
                return _row_result(_row_values(elements, path, size, mtime_ns,
                                               str(walk.transfer_syntax)))
            except (_NeedsPydicom, HeaderError):
                pass  # a functional group the walker declines: pydicom reads the whole file
        return _read_with_pydicom(f, path, size, mtime_ns) if fallback else None


def _pixel_past_end(length: int, left: int) -> str:
    return f"Pixel Data length {length} runs past the end of the file ({left} bytes left)"


def _no_pixels(elements: _Elements, path: str, size: int, mtime_ns: int) -> _Result:
    """No Pixel Data: fine for a report or a plan, an error for an image (cut short?)."""
    entry = elements.get(0x00080016)
    sop_class = (entry[1] or b"").decode("ascii", "replace").strip(" \x00") if entry else ""
    if not sop_class:
        # SOP Class UID is Type 1 in every IOD: what is left is a fragment or noise after "DICM"
        reason = "neither Pixel Data nor a SOP Class UID: not a usable DICOM instance"
        return ("error", path, reason, size, mtime_ns)
    from pydicom.uid import UID

    name = UID(sop_class).name
    what = f"{name} ({sop_class})" if name != sop_class else sop_class
    if "Image Storage" in name or sop_class in ENHANCED_SOP_CLASSES:
        # an image IOD without its pixels: most likely a file cut at an element boundary
        return ("error", path, f"no Pixel Data, which {what} requires (file cut short?)",
                size, mtime_ns)
    return ("no_pixels", path, f"no Pixel Data: {what}", size, mtime_ns)


def _read_with_pydicom(f: BinaryIO, path: str, size: int, mtime_ns: int) -> _Result:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from .source import _BoundedFile, _declares_deflated, raw_dataset

    if _declares_deflated(f):
        # the walker inflates deflated data sets in bounded steps; pydicom would inflate all of
        # one it declined (a bomb, perhaps) before reading a single element
        return ("error", path, "deflated data set with an encoding the header reader declines",
                size, mtime_ns)
    f.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # bounded: a damaged length is read as asked, allocated in full (see _BoundedFile)
            # a data set without the preamble and file meta (ACR-NEMA style) is read as one
            ds = pydicom.dcmread(_BoundedFile(f, size), stop_before_pixels=True,
                                 defer_size=_DEFER_SIZE, force=raw_dataset(f))
        except InvalidDicomError as exc:
            f.seek(128)
            reason = ("no 'DICM' prefix at offset 128" if f.read(4) != b"DICM"
                      else _first_line(exc))
            return ("skipped", path, f"not DICOM ({reason})", size, mtime_ns)
        except (RecursionError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt files
            return ("error", path, f"cannot parse the DICOM header: {_first_line(exc)}", size,
                    mtime_ns)
    meta = getattr(ds, "file_meta", None)
    meta_class = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    if meta_class == _DICOMDIR_CLASS:
        return ("skipped", path, "DICOMDIR (media storage directory)", size, mtime_ns)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        implicit, little = bool(getattr(ds, "is_implicit_VR", True)), True
    if ts is None:
        ts = ("1.2.840.10008.1.2" if implicit else
              ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"))
    ts = str(ts)
    elements = _DatasetElements(ds)
    from pydicom.uid import UID

    uid = UID(ts)
    # pydicom reads the header of any syntax, but a private or unknown one leaves the pixel
    # data's encoding unknown (and UID's properties raise ValueError for it)
    if uid.is_private:
        reason = f"(0002,0010) Transfer Syntax UID {ts[:70]} is a private transfer syntax"
        return ("error", path, reason, size, mtime_ns)
    if not uid.is_transfer_syntax:
        reason = f"(0002,0010) Transfer Syntax UID {ts[:70]!r} is not a known transfer syntax"
        return ("error", path, reason, size, mtime_ns)
    if uid.is_deflated:
        # the walker inflates deflated data sets itself; one it declined has no offsets here
        return ("error", path, "deflated data set with an encoding the header reader declines",
                size, mtime_ns)
    pos = f.tell()
    head = f.read(12)
    found = _pixel_element(head, implicit, little)
    if found is None:
        return _no_pixels(elements, path, size, mtime_ns)
    length, header = found
    if length != _UNDEFINED and length > size - pos - header:
        return ("error", path, _pixel_past_end(length, size - pos - header), size, mtime_ns)
    return _row_result(_row_values(elements, path, size, mtime_ns, ts))


_ROWS_AT = _FIELD_INDEX["rows"]
_COLUMNS_AT = _FIELD_INDEX["columns"]
_INVALID_AT = _FIELD_INDEX["invalid"]


def _row_result(values: tuple[Any, ...]) -> _Result:
    """A row, or an error for pixel data without a usable Rows / Columns.

    Such pixel data can never be laid out, and a row without them would reach the series
    planner, which needs both: the file is reported here, with the attribute named.
    """
    for at, tag, name in ((_ROWS_AT, "(0028,0010) Rows", "rows"),
                          (_COLUMNS_AT, "(0028,0011) Columns", "columns")):
        if values[at] is None:
            state = "unreadable" if name in values[_INVALID_AT] else "missing"
            reason = f"{tag} is {state}: the Pixel Data cannot be laid out"
            return ("error", values[_FIELD_INDEX["path"]], reason,
                    values[_FIELD_INDEX["size"]], values[_FIELD_INDEX["mtime_ns"]])
    return ("row", values)


def _pixel_element(head: bytes, implicit: bool, little: bool) -> tuple[int, int] | None:
    """(value length, header length) of the pixel element whose header is `head`, or None."""
    if len(head) < 8:
        return None
    end = "<" if little else ">"
    group, elem = struct.unpack_from(f"{end}HH", head)
    if (group << 16 | elem) not in _PIXEL_TAGS:
        return None
    if not implicit and head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"):
        if len(head) < 12:
            return None
        return struct.unpack_from(f"{end}I", head, 8)[0], 12
    if not implicit and head[4:6].isalpha():
        return struct.unpack_from(f"{end}H", head, 6)[0], 8
    return struct.unpack_from(f"{end}I", head, 4)[0], 8


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_chunk(chunk: Sequence[tuple[str, int, int]]) -> list[_Result]:
    """Worker entry point: read the files of one chunk."""
    if len(_SHARED_VALUES) > 100_000:
        _SHARED_VALUES.clear()  # bounded: only repeats within a chunk matter much
    results = []
    for path, size, mtime_ns in chunk:
        result = _read_file(path, size, mtime_ns)
        assert result is not None  # with fallback, every file gets an answer
        results.append(result)
    return results


# --------------------------------------------------------------------------------------------
# finding files


def _find_files(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[tuple[str, int, int]], list[FileIssue], list[FileIssue]]:
    """(regular files as (path, size, mtime_ns), skipped, errors) under `paths`.

    Directories are walked recursively, following symbolic links; a directory already visited
    (a link loop, or two roots that overlap) is not walked again.
    """
    files: dict[str, tuple[str, int, int]] = {}
    skipped: list[FileIssue] = []
    errors: list[FileIssue] = []
    visited: set[tuple[int, int]] = set()
    stack: list[str] = []

    def visit(path: str, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            files.setdefault(path, (path, st.st_size, st.st_mtime_ns))
        elif stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key not in visited:
                visited.add(key)
                stack.append(path)
        else:
            # FIFOs, sockets, devices: reading one could block or never end
            skipped.append(FileIssue(path, "not a regular file"))

    for root in paths:
        path = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(path)
        except OSError as exc:
            errors.append(FileIssue(path, _os_reason(exc)))
            continue
        visit(path, st)
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    children = list(entries)
            except OSError as exc:
                errors.append(FileIssue(folder, f"cannot list folder: {_os_reason(exc)}"))
                continue
            for entry in children:
                try:
                    st = entry.stat()  # follows links
                except OSError as exc:
                    reason = ("broken symbolic link" if entry.is_symlink() and
                              isinstance(exc, FileNotFoundError) else _os_reason(exc))
                    errors.append(FileIssue(entry.path, reason))
                    continue
                visit(entry.path, st)
    return list(files.values()), skipped, errors


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


# --------------------------------------------------------------------------------------------
# the scan


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    # fork starts workers in milliseconds with pydicom already imported; it is only safe when
    # no other thread could hold a lock at the moment of the fork
    if "fork" in methods and threading.active_count() == 1 and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _load_previous(previous: Index | str | os.PathLike[str] | None) -> Index | None:
    if previous is None or isinstance(previous, Index):
        return previous
    if isinstance(previous, (str, os.PathLike)):
        if not os.path.exists(previous):
            return None  # no index yet: everything is read
        return Index.load(previous)
    raise ParameterError(
        f"previous={type(previous).__name__}; expected an Index or the path of a saved one"
    )


def scan(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    previous: Index | str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    executor: Executor | None = None,
) -> Index:
    """Index the DICOM instances under `paths`, reading headers only.

    Folders are walked recursively (symbolic links followed, loops walked once). Every regular
    file is read up to its Pixel Data, never into it.

    Parameters
    ----------
    paths : path or iterable of paths
        Files and folders.
    workers : int, optional
        Processes that read headers. Default: the CPUs available, or 1 (read here, no pool) for
        fewer than a few hundred files per CPU. ``workers=1`` always reads in this process.
    previous : Index or path, optional
        An earlier index (or the path it was saved to; a path that does not exist yet means
        none): files with the same path, size and modification time are taken from it without
        being read again (their rows, and their skipped / no-pixel entries; files that had
        errors are read again).
    progress : callable, optional
        Called as ``progress(done, total)`` (files) as reading advances, last with
        ``done == total``.
    executor : concurrent.futures.Executor, optional
        Read the headers there rather than in a pool of this machine's processes, e.g. a
        cluster's workers (``distributed.Client.get_executor()``), `workers` chunks at a time
        (default: 8 per CPU here). It is not shut down. A chunk whose task fails (its worker
        died) reports each of its files as an error.

    Returns
    -------
    Index
        One row per instance with pixel data, sorted by path; non-DICOM files and DICOMDIRs in
        ``skipped``, DICOM files without pixel data in ``no_pixels``, unreadable or corrupt
        files (and paths that do not exist) in ``errors`` with the reason.

    Raises
    ------
    ParameterError
        For a bad `workers`, `previous` or `progress`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ParameterError(f"workers={workers!r}; expected a positive int or None")
    if progress is not None and not callable(progress):
        raise ParameterError("progress must be callable as progress(done, total)")
    old = _load_previous(previous)

    found, skipped, errors = _find_files(paths)
    rows: list[InstanceRow] = []
    no_pixels: list[FileIssue] = []
    todo: list[tuple[str, int, int]] = []
    if old is not None:
        reusable: dict[str, tuple[str, Any]] = {row.path: ("row", row) for row in old.rows}
        reusable.update((i.path, ("skipped", i)) for i in old.skipped)
        reusable.update((i.path, ("no_pixels", i)) for i in old.no_pixels)
        for item in found:
            path, size, mtime_ns = item
            hit = reusable.get(path)
            if hit is not None and hit[1].size == size and hit[1].mtime_ns == mtime_ns:
                kind, entry = hit
                (rows if kind == "row" else skipped if kind == "skipped" else no_pixels).append(
                    entry
                )
            else:
                todo.append(item)
    else:
        todo = found
    total = len(found)
    done = total - len(todo)
    if progress is not None:
        progress(done, total)

    def collect(results: list[_Result]) -> None:
        _collect(results, rows, skipped, no_pixels, errors)

    if executor is not None:
        # chunks small enough that every worker of a cluster gets several
        chunks = [todo[i : i + _MAX_CHUNK] for i in range(0, len(todo), _MAX_CHUNK)]
        in_flight = workers or 8 * _available_cpus()
        done = _run_pool(chunks, executor, in_flight, collect, errors, done, total, progress)
        return Index(rows, skipped=skipped, no_pixels=no_pixels, errors=errors)
    if workers is None:
        cpus = _available_cpus()
        workers = max(1, min(cpus, len(todo) // _MIN_FILES_PER_WORKER))
    workers = min(workers, max(1, len(todo)))
    if multiprocessing.current_process().daemon:
        workers = 1  # a daemonic process (a pool worker itself) may not start children
    if workers == 1:
        step = max(1, min(_MAX_CHUNK, len(todo) // 100 or 1))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            collect(_read_chunk(chunk))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    else:
        # several chunks per worker keep both busy to the end and the progress bar moving
        size = max(16, min(_MAX_CHUNK, math.ceil(len(todo) / (workers * 8))))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
        try:
            done = _run_pool(chunks, pool, len(chunks), collect, errors, done, total, progress)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return Index(rows, skipped=skipped, no_pixels=no_pixels, errors=errors)


def scan_bytes(data: bytes, name: str) -> Index:
    """Index one instance given as its bytes (a part of a DICOMweb answer not yet written to a
    file), as :func:`scan` indexes a file: `name` stands for its path in the index."""
    rows: list[InstanceRow] = []
    skipped: list[FileIssue] = []
    no_pixels: list[FileIssue] = []
    errors: list[FileIssue] = []
    result = _read_file(name, len(data), 0, data=data)
    assert result is not None  # with the pydicom fallback, every file gets a result
    _collect([result], rows, skipped, no_pixels, errors)
    return Index(rows, skipped=skipped, no_pixels=no_pixels, errors=errors)


def _collect(results: list[_Result], rows: list[InstanceRow], skipped: list[FileIssue],
             no_pixels: list[FileIssue], errors: list[FileIssue]) -> None:
    for result in results:
        kind = result[0]
        if kind == "row":
            rows.append(InstanceRow(*result[1]))
        else:
            issue = FileIssue(*result[1:])
            (skipped if kind == "skipped" else no_pixels if kind == "no_pixels"
             else errors).append(issue)


def _run_pool(
    chunks: list[list[tuple[str, int, int]]],
    executor: Executor,
    in_flight: int,
    collect: Callable[[list[_Result]], None],
    errors: list[FileIssue],
    done: int,
    total: int,
    progress: Callable[[int, int], Any] | None,
) -> int:
    """Read `chunks` on `executor`, at most `in_flight` at a time; returns files done."""
    waiting = list(reversed(chunks))
    pending: dict[Future[list[_Result]], list[tuple[str, int, int]]] = {}

    def submit() -> None:
        while waiting and len(pending) < in_flight:
            chunk = waiting.pop()
            pending[executor.submit(_read_chunk, chunk)] = chunk

    try:
        submit()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                chunk = pending.pop(future)
                try:
                    collect(future.result())
                except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, KilledWorker ...
                    # a worker died (killed, out of memory): its files are reported, not lost
                    reason = "the process reading this file died"
                    if not isinstance(exc, BrokenProcessPool):
                        reason += f" ({type(exc).__name__})"
                    errors.extend(FileIssue(p, reason, s, m) for p, s, m in chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            submit()
    finally:
        for future in pending:
            future.cancel()
    return done
