"""Where a dataset's pixel bytes come from: memory (a pydicom Dataset) or a file range.

For a file we parse the header with pydicom (``stop_before_pixels``), then read the Pixel Data
element header ourselves and keep only its offset: uncompressed frames are then read straight
into the caller's output array (``readinto``), without pydicom materialising a bytes copy.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from ..errors import DecodeError
from .header import HeaderError, HeaderWalk, read_header, walk_header

__all__ = ["PixelSource", "open_source"]

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}
_UNDEFINED = 0xFFFFFFFF
# What a deflated data set may inflate to beyond its header and the pixel bytes its Image Pixel
# module declares (trailing elements, padding) before it is called a deflate bomb.
_INFLATE_SLACK = 1 << 20


@dataclass
class PixelSource:
    """The dataset (header) and random access to its pixel bytes."""

    ds: Any
    name: str
    transfer_syntax: UID
    length: int
    undefined_length: bool = False
    vr: str = ""
    _buffer: bytes | memoryview | None = None
    _file: BinaryIO | None = None
    _offset: int = 0
    _cache: bytes | None = field(default=None, repr=False)

    @property
    def from_file(self) -> bool:
        return self._buffer is None

    def read(self, start: int = 0, size: int | None = None) -> bytes | memoryview:
        """Bytes [start, start+size) of the element value (the whole value by default)."""
        size = self.length - start if size is None else size
        if self._buffer is not None:
            return memoryview(self._buffer)[start : start + size]
        if start == 0 and size == self.length:
            if self._cache is None:
                self._cache = self._read_file(0, size)
            return self._cache
        return self._read_file(start, size)

    def _read_file(self, start: int, size: int) -> bytes:
        assert self._file is not None
        self._file.seek(self._offset + start)
        data = self._file.read(size)
        if len(data) != size:
            raise DecodeError(f"file ends {size - len(data)} bytes into Pixel Data", source=self.name)
        return data

    def read_into(self, dst: np.ndarray, start: int) -> None:
        """Fill the uint8 array `dst` with the value bytes from `start`."""
        if self._buffer is not None:
            dst[...] = np.frombuffer(self._buffer, np.uint8, dst.size, start)
            return
        assert self._file is not None
        self._file.seek(self._offset + start)
        got = self._file.readinto(memoryview(dst).cast("B"))
        if got != dst.size:
            raise DecodeError(f"file ends {dst.size - got} bytes into Pixel Data", source=self.name)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PixelSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _transfer_syntax(ds: Any, name: str) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        # a Dataset built in memory: pydicom records how it was (or will be) encoded
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None:
            raise DecodeError("(0002,0010) Transfer Syntax UID is missing", source=name)
        return UID("1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"))
    text = str(uid)
    if len(text) > 64:
        # garbage read as a UID (a damaged file meta): name it, do not quote all of it
        raise DecodeError(f"(0002,0010) Transfer Syntax UID is not a UID: {text[:64]!r}...", source=name)
    uid = UID(text)
    if uid.is_private:
        # pydicom cannot even tell whether a private syntax is implicit VR: nothing to decode
        raise DecodeError(f"(0002,0010) Transfer Syntax UID {uid} is a private transfer syntax", source=name)
    if not uid.is_transfer_syntax:
        raise DecodeError(f"(0002,0010) Transfer Syntax UID {uid} is not a known transfer syntax", source=name)
    return uid


def _declared_pixel_bytes(walk: HeaderWalk) -> int | None:
    """Bytes the walked Image Pixel module declares (64-bit safe: Python ints), or None."""
    little = walk.little

    def number(tag: int, default: int | None) -> int | None:
        entry = walk.elements.get(tag)
        if entry is None:
            return default
        vr, raw = entry
        if vr == "US" and len(raw) >= 2:
            return struct.unpack("<H" if little else ">H", raw[:2])[0]
        try:
            return int(raw.decode("ascii").strip(" \x00").split("\\")[0])
        except (UnicodeDecodeError, ValueError):
            return None

    values = [number(0x00280010, None), number(0x00280011, None), number(0x00280002, 1),
              number(0x00280100, None), number(0x00280008, 1)]
    if any(v is None or v < 1 for v in values):
        return None
    rows, columns, samples, bits, frames = values  # type: ignore[misc]
    return (rows * columns * samples * bits * frames + 7) // 8


def raw_dataset(f: BinaryIO) -> bool:
    """Whether `f` holds a DICOM data set without the Part 10 preamble and file meta: no 'DICM'
    at 128, and its first element an Identifying group (0008) one, in implicit or explicit
    little endian with a plausible length or VR. (`f` is left at its start.)"""
    f.seek(0)
    head = f.read(132)
    f.seek(0)
    if len(head) < 12 or head[128:132] == b"DICM":
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group != 0x0008 or element > 0x1200:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True  # explicit VR
    (length,) = struct.unpack("<I", head[4:8])
    return length <= 1024  # implicit VR: an Identifying group element is short


def _declares_deflated(f: BinaryIO) -> bool:
    """Whether the file meta names the deflated transfer syntax (read by pydicom, guarded)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    f.seek(0)
    try:
        read_preamble(f, False)
        meta = _read_file_meta_info(f)
        return str(meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian
    except Exception:  # noqa: BLE001 - not readable as file meta: pydicom's dcmread judges
        return False
    finally:
        f.seek(0)


def _check_inflated_size(f: BinaryIO, walk: HeaderWalk, name: str) -> None:
    """Refuse a deflated data set that inflates past what its header declares (a bomb).

    pydicom inflates the whole stream into memory before parsing it; this pass inflates in
    bounded steps, keeping nothing, so memory stays small whatever the stream holds.
    """
    from .pixel_info import limits

    declared = _declared_pixel_bytes(walk)
    pixel_end = walk.pixel_value_offset if walk.pixel_offset is not None else 0
    budget = min(declared if declared is not None else 0, limits.max_output_bytes)
    cap = pixel_end + budget + _INFLATE_SLACK
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    f.seek(walk.dataset_offset)
    total = walk.dataset_offset
    try:
        while not inflater.eof:
            chunk = inflater.unconsumed_tail or f.read(1 << 16)
            if not chunk:
                break
            total += len(inflater.decompress(chunk, 1 << 20))
            if total > cap:
                raise DecodeError(
                    f"the deflated data set inflates past {cap} bytes, more than its header "
                    f"and the {budget} bytes of pixels its Image Pixel module declares "
                    "(a deflate bomb?); not inflated further",
                    source=name,
                )
    except zlib.error as exc:
        raise DecodeError(f"the deflated data set does not inflate: {exc}", source=name) from None


def _from_dataset(ds: Any, name: str) -> PixelSource:
    ts = _transfer_syntax(ds, name)
    keyword = next((k for k in _PIXEL_TAGS.values() if k in ds), None)
    if keyword is None:
        return PixelSource(ds, name, ts, 0)
    elem = ds[keyword]
    value = elem.value
    if value is None:
        value = b""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{keyword} value is {type(value).__name__}, expected bytes", source=name)
    return PixelSource(ds, name, ts, len(value), elem.is_undefined_length, str(elem.VR), _buffer=value)


class _BoundedFile:
    """A file whose reads never ask for more than the bytes left in it.

    pydicom reads an element's declared length in one call, and CPython allocates the whole
    request before it reads: a damaged length of 4 GiB in a 2 KB file the walker had declined
    was a 4 GiB allocation (a MemoryError under a cap; found by voxelflow.testing.fuzz). A
    clamped read comes back short and pydicom reports the element cut off instead.
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self._f.read()
        return self._f.read(max(0, min(n, self._size - self._f.tell())))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def open_source(src: Any) -> PixelSource:
    """Open a path or take a pydicom Dataset; the header is parsed, pixels are not read.

    Raises
    ------
    DecodeError
        When the file is missing, not DICOM, or its header cannot be parsed.
    """
    if isinstance(src, pydicom.Dataset):
        name = str(getattr(src, "filename", None) or "<dataset>")
        return _from_dataset(src, name)
    if not isinstance(src, (str, os.PathLike)):
        raise DecodeError(f"expected a path or a pydicom Dataset, got {type(src).__name__}")
    path = Path(src)
    name = str(path)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DecodeError(f"cannot open: {exc.strerror or exc}", source=name) from exc
    try:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise DecodeError("file is empty (0 bytes)", source=name)
        try:
            fast = read_header(f, size)
            # a file the fast reader declines goes to pydicom: the walker (any syntax) first
            # vouches for its framing, so pydicom never meets a length past the end of the
            # file, a sequence without its delimiter, a bomb or a 1000-deep nest
            walk = walk_header(f, size, keep_groups={0x0028}) if fast is None else None
        except HeaderError as exc:
            raise DecodeError(f"broken DICOM header: {exc}", source=name) from None
        except (struct.error, ValueError):
            walk = None  # odd bytes the walker does not judge: pydicom's (guarded) verdict
        if walk is not None and walk.deflated:
            _check_inflated_size(f, walk, name)
        elif fast is None and walk is None and _declares_deflated(f):
            # pydicom would inflate the whole stream before reading a single element
            raise DecodeError("deflated data set with an encoding the header reader declines; "
                              "not inflated (its size cannot be bounded first)", source=name)
        if fast is not None:
            ds, ts, pos, _, _ = fast
            implicit, little = ts.is_implicit_VR, ts.is_little_endian
        else:
            f.seek(0)
            try:
                # a data set without the Part 10 preamble (ACR-NEMA style, as old archives keep
                # them) is read as one, as dcm2niix and pydicom's force=True read it
                ds = pydicom.dcmread(_BoundedFile(f, size), stop_before_pixels=True, force=raw_dataset(f))
            except InvalidDicomError:
                raise DecodeError("not a DICOM file: no 'DICM' prefix at offset 128, nor a data set "
                                  "starting at byte 0", source=name) from None
            except RecursionError:
                raise DecodeError("cannot parse the DICOM header: sequences nested too deeply", source=name) from None
            except Exception as exc:  # noqa: BLE001 - pydicom raises anything on a damaged file
                # (OSError "no tag to read", MemoryError for a bogus length, ValueError ...)
                raise DecodeError(f"cannot parse the DICOM header: {type(exc).__name__}: {exc}", source=name) from None
            ts = _transfer_syntax(ds, name)
            if ts == DeflatedExplicitVRLittleEndian:
                # the whole dataset is one zlib stream: no byte offsets to seek to
                f.close()
                try:
                    full = pydicom.dcmread(name)
                except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt streams
                    raise DecodeError(f"cannot inflate/parse the deflated dataset: {exc}", source=name) from None
                return _from_dataset(full, name)
            pos = f.tell()
            # pydicom reads files whose VR encoding contradicts their transfer syntax; the
            # encoding it found, not the one declared, frames the Pixel Data element
            implicit, little = getattr(ds, "original_encoding", (ts.is_implicit_VR, ts.is_little_endian))
        f.seek(pos)
        head = f.read(12)
        if len(head) < 8:
            f.close()
            return PixelSource(ds, name, ts, 0)  # no pixel element: pixel_info says so
        group, elem = struct.unpack_from("<HH" if little else ">HH", head)
        tag = group << 16 | elem
        if tag not in _PIXEL_TAGS:
            f.close()
            return PixelSource(ds, name, ts, 0)
        keyword = _PIXEL_TAGS[tag]
        if not implicit and not (head[4:6].isalpha() and head[4:6].isupper()):
            implicit = True  # no VR where one belongs: written implicitly (pydicom does the same)
        if implicit:
            vr = "OW" if keyword == "PixelData" else ("OF" if keyword == "FloatPixelData" else "OD")
            (length,) = struct.unpack_from("<I" if little else ">I", head, 4)
            header = 8
        else:
            vr_bytes = head[4:6]
            vr = vr_bytes.decode("ascii", "replace")
            if vr_bytes in _LONG_VRS:
                if len(head) < 12:
                    raise DecodeError("file ends inside the Pixel Data element header", source=name)
                (length,) = struct.unpack_from("<I" if little else ">I", head, 8)
                header = 12
            else:
                (length,) = struct.unpack_from("<H" if little else ">H", head, 6)
                header = 8
        start = pos + header
        left = size - start
        undefined = length == _UNDEFINED
        if undefined:
            length = left
        elif length > left:
            raise DecodeError(
                f"{keyword} length {length} runs past the end of the file ({left} bytes left)",
                source=name,
            )
        # the header-only dataset must still know which pixel attribute exists
        if isinstance(ds, pydicom.Dataset):
            ds[keyword] = pydicom.DataElement(tag, vr if vr in ("OB", "OW", "OF", "OD") else "OB", b"")
        else:
            ds[keyword] = b""
        return PixelSource(ds, name, ts, length, undefined, vr, _file=f, _offset=start)
    except BaseException:
        f.close()
        raise
