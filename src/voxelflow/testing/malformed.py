"""Crafted and damaged DICOM files: a corpus of malformed inputs, each with the verdict it must get.

Every case starts from a small valid phantom (:func:`voxelflow.testing.write_series`, one
16 x 16 slice) and damages it: a header value, a length, the encapsulation framing, an RLE
header, a JPEG codestream, or simply where the file ends. The classes follow
``malformed-inputs.md`` (pydicom's tests, pylibjpeg-rle's checks, Orthanc / GDCM / DCMTK CVEs).

Each :class:`MalformedCase` says what :func:`voxelflow.decode` must raise (a
:class:`~voxelflow.errors.VoxelflowError` subclass whose message names the offending tag,
frame or offset), or that it must decode with a warning, and what :func:`voxelflow.scan` must
do with the file (an entry in ``errors`` or ``skipped``, or a row when the damage lies in the
pixels, which a header-only scan does not read). Nothing here allocates more than a few MiB.

Damaged stores (chunks and metadata, :class:`StoreDamage` in :data:`STORE_CASES`, applied to a
copy of :func:`write_pristine`'s store) live in :mod:`.damaged_store` and are exported here.

Examples
--------
>>> from voxelflow.testing.malformed import CASES
>>> path = CASES[0].make("/tmp/corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames

from ..errors import DecodeError, DecodeWarning, VoxelflowError
from .damaged_store import STORE_CASES, StoreDamage, write_pristine
from .datasets import deterministic_uid
from .series import write_series

__all__ = ["CASES", "STORE_CASES", "Expect", "MalformedCase", "StoreDamage", "cases", "make_all",
           "write_pristine"]


@dataclass(frozen=True)
class Expect:
    """The verdict a malformed file must get.

    Attributes
    ----------
    error : type or None
        The exact :class:`~voxelflow.errors.VoxelflowError` subclass ``decode`` raises; None:
        the file decodes (with `warning`, if given).
    match : str
        A regular expression (case-insensitive) the error message must match: the tag, frame
        or offset it names.
    scan : {"error", "skipped", "row"}
        Where ``scan`` puts the file: ``index.errors``, ``index.skipped`` or a row (damage in
        the pixel data or the Image Pixel module, which a header scan does not judge).
    scan_match : str
        A regular expression the scan reason must match (``error`` / ``skipped`` only).
    warning : type, optional
        A warning ``decode`` must issue (with ``error=None``).
    scan_invalid : str, optional
        For a row: the field the scan must have marked invalid (``InstanceRow.invalid``).
    """

    error: type[VoxelflowError] | None
    match: str = ""
    scan: str = "row"
    scan_match: str = ""
    warning: type[Warning] | None = None
    scan_invalid: str | None = None


@dataclass(frozen=True)
class MalformedCase:
    """One class of malformed file.

    Attributes
    ----------
    name : str
        Stable identifier (also the file name, ``<name>.dcm``).
    klass : str
        Group: ``container``, ``truncation``, ``sequences-lengths``, ``pixel-module``,
        ``pixel-data``, ``encapsulation``, ``rle``, ``jpeg``, ``deflate``, ``lut-rescale``,
        ``geometry``.
    description : str
        What is wrong with the file.
    expect : Expect
        What decode and scan must do with it.
    decode_kwargs : mapping
        Keyword arguments for ``decode`` (e.g. ``apply_palette=True``).
    """

    name: str
    klass: str
    description: str
    build: Callable[[Path], bytes] = field(repr=False)
    expect: Expect
    decode_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def make(self, folder: str | os.PathLike[str]) -> Path:
        """Write the file to `folder` (created if missing) and return its path.

        Parameters
        ----------
        folder : path
            Where ``<name>.dcm`` is written.

        Returns
        -------
        pathlib.Path
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # the work folder's name carries the case's name: its phantom's UIDs derive from it,
        # so every case is its own series and writes the same bytes every time
        work = folder / f".work-{self.name}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            data = self.build(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        path = folder / f"{self.name}.dcm"
        path.write_bytes(data)
        return path


# --------------------------------------------------------------------------------------------
# building blocks


def _phantom(work: Path, name: str, **kwargs: Any) -> Dataset:
    """One 16 x 16 phantom slice with its own study and series (so files never mix)."""
    name = f"{work.name}/{name}"  # the case's name (see MalformedCase.make)
    kwargs.setdefault("modality", "CT")
    write_series(
        work, shape=(1, 16, 16), noise=False,
        study_uid=str(deterministic_uid("malformed-study", name)),
        series_uid=str(deterministic_uid("malformed-series", name)), **kwargs,
    )
    (path,) = sorted(work.glob("*.dcm"))
    ds = pydicom.dcmread(path)
    path.unlink()
    return ds


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _tag_bytes(tag: int) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF)


def _find(data: bytes, tag: int, start: int = 132) -> int:
    """Offset of the Explicit VR Little Endian element `tag` (its first occurrence)."""
    key = _tag_bytes(tag)
    pos = data.find(key, start)
    while pos >= 0:
        if data[pos + 4 : pos + 6].isalpha():
            return pos
        pos = data.find(key, pos + 1)
    raise LookupError(f"tag {tag:08X} not found")


_LONG = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}


def _element_span(data: bytes, pos: int) -> tuple[int, int, int]:
    """(value offset, value length, end) of the explicit VR LE element at `pos`."""
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG:
        (length,) = struct.unpack_from("<I", data, pos + 8)
        return pos + 12, length, pos + 12 + length
    (length,) = struct.unpack_from("<H", data, pos + 6)
    return pos + 8, length, pos + 8 + length


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in _LONG:
        return _tag_bytes(tag) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return _tag_bytes(tag) + vr + struct.pack("<H", len(value)) + value


def _replace(data: bytes, tag: int, vr: bytes, value: bytes) -> bytes:
    """Replace element `tag` by one with `vr` and `value` (any encoding, even a wrong one)."""
    pos = _find(data, tag)
    _, _, end = _element_span(data, pos)
    return data[:pos] + _element(tag, vr, value) + data[end:]


def _set_length(data: bytes, tag: int, length: int) -> bytes:
    """Overwrite the length field of element `tag`, leaving its value bytes where they are."""
    pos = _find(data, tag)
    out = bytearray(data)
    if data[pos + 4 : pos + 6] in _LONG:
        struct.pack_into("<I", out, pos + 8, length)
    else:
        struct.pack_into("<H", out, pos + 6, length)
    return bytes(out)


def _pixel_pos(data: bytes) -> int:
    return _find(data, 0x7FE00010)


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def _attr(keyword: str, value: Any, **kwargs: Any) -> Callable[[Path], bytes]:
    """A phantom whose attribute `keyword` is set to `value` (None deletes it)."""
    def build(work: Path) -> bytes:
        ds = _phantom(work, f"{keyword}-{value!r}", **kwargs)
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
        return _encode(ds)
    return build


def _raw(tag: int, vr: bytes, value: bytes, **kwargs: Any) -> Callable[[Path], bytes]:
    """A phantom whose element `tag` is re-encoded as `vr` / `value` (bytes as given)."""
    def build(work: Path) -> bytes:
        ds = _phantom(work, f"raw-{tag:08X}-{value!r}", **kwargs)
        if tag == 0x00280008:
            ds.NumberOfFrames = 1  # a placeholder for the raw value
        return _replace(_encode(ds), tag, vr, value)
    return build


def _with_meta_ts(data: bytes, uid: bytes) -> bytes:
    """`data` with its Transfer Syntax UID value replaced by `uid` (same even length)."""
    pos = _find(data, 0x00020010, 132)
    value, length, _ = _element_span(data, pos)
    assert len(uid) == length, (uid, length)
    return data[:value] + uid + data[value + length :]


def _rle_case(mutate: Callable[[bytearray], object], frames: int = 1) -> Callable[[Path], bytes]:
    """An RLE phantom whose frame bytes (RLE header included) `mutate` damages in place."""
    def build(work: Path) -> bytes:
        ds = _phantom(work, f"rle-{id(mutate)}", transfer_syntax="rle")
        (frame,) = [bytearray(f) for f in generate_frames(ds.PixelData, number_of_frames=1)]
        mutate(frame)
        ds.PixelData = encapsulate([bytes(frame)] * frames, has_bot=True)
        ds["PixelData"].is_undefined_length = True
        return _encode(ds)
    return build


def _pixel_value(data: bytes) -> tuple[int, int]:
    """(start, end) of the value of the encapsulated Pixel Data, delimiter included."""
    pos = _pixel_pos(data)
    return pos + 12, len(data)


def _encapsulated_case(damage: Callable[[bytearray], bytes | bytearray],
                       transfer_syntax: str = "rle") -> Callable[[Path], bytes]:
    """A compressed phantom whose encapsulated Pixel Data value `damage` rewrites."""
    def build(work: Path) -> bytes:
        data = _encode(_phantom(work, f"encaps-{id(damage)}", transfer_syntax=transfer_syntax))
        start, _ = _pixel_value(data)
        return data[:start] + bytes(damage(bytearray(data[start:])))
    return build


def _jpeg_case(damage: Callable[[bytes], bytes], transfer_syntax: str, modality: str,
               **attrs: Any) -> Callable[[Path], bytes]:
    """A JPEG phantom whose single codestream `damage` rewrites (attributes set after)."""
    def build(work: Path) -> bytes:
        ds = _phantom(work, f"jpeg-{transfer_syntax}-{id(damage)}", transfer_syntax=transfer_syntax,
                      modality=modality)
        (stream,) = list(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = encapsulate([damage(bytes(stream).rstrip(b"\0"))], has_bot=True)
        ds["PixelData"].is_undefined_length = True
        for keyword, value in attrs.items():
            setattr(ds, keyword, value)
        return _encode(ds)
    return build



def _damaged_header(vr: bytes, value: bytes) -> Callable[[Path], bytes]:
    """A JPEG phantom whose (0008,0070), an element no decoder reads, has `vr` and `value`."""
    build = _jpeg_case(_unchanged, "jpeg_baseline", "MR")
    return lambda work: _replace(build(work), 0x00080070, vr, value)


def _private_fd_4_bytes(work: Path) -> bytes:
    data = _jpeg_case(_unchanged, "jpeg_baseline", "MR")(work)
    pos = _find(data, 0x00100010)
    block = _element(0x00090010, b"LO", b"VOXELFLOW ") + _element(0x00091001, b"FD", b"\1\0\0\0")
    return data[:pos] + block + data[pos:]

def _not_dicom(work: Path) -> bytes:
    return b"This is a text file, not DICOM.\n" * 40


def _empty(work: Path) -> bytes:
    return b""


def _no_preamble_garbage(work: Path) -> bytes:
    # 'DICM' at 128 but nothing after it that is a file meta element
    return b"\0" * 128 + b"DICM" + b"\xff" * 300


def _truncate(where: Callable[[bytes], int], **kwargs: Any) -> Callable[[Path], bytes]:
    def build(work: Path) -> bytes:
        data = _encode(_phantom(work, f"cut-{id(where)}", **kwargs))
        return data[: where(data)]
    return build


def _meta_garbage_vr(work: Path) -> bytes:
    data = bytearray(_encode(_phantom(work, "meta-vr")))
    pos = _find(bytes(data), 0x00020010, 132)  # Transfer Syntax UID
    data[pos + 4 : pos + 6] = b"\x01\x02"
    return bytes(data)


def _meta_private_ts(work: Path) -> bytes:
    ds = _phantom(work, "private-ts")
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"
    return _encode(ds)


def _meta_unknown_ts(work: Path) -> bytes:
    # a DICOM-rooted UID that names no transfer syntax (pydicom refuses to write one)
    return _with_meta_ts(_encode(_phantom(work, "unknown-ts")), b"1.2.840.10008.1.2.9\0")


def _element_past_eof(work: Path) -> bytes:
    # Manufacturer (LO) claims 65280 bytes in a ~1 KiB file
    return _set_length(_encode(_phantom(work, "past-eof")), 0x00080070, 0xFF00)


def _huge_length(work: Path) -> bytes:
    ds = _phantom(work, "huge-length")
    ds.add_new(0x0040A160, "UT", "report text")  # Text Value, a long-length VR
    return _set_length(_encode(ds), 0x0040A160, 0xFFFFFFF0)


def _sequence_item(ds_value: bytes) -> bytes:
    return b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + ds_value + b"\xfe\xff\x0d\xe0\0\0\0\0"


_SQ_END = b"\xfe\xff\xdd\xe0\0\0\0\0"


def _with_sequence(work: Path, name: str, value: bytes) -> bytes:
    """A phantom with an undefined-length Referenced Image Sequence (0008,1140) of `value`."""
    data = _encode(_phantom(work, name))
    pos = _find(data, 0x00081090)  # after Manufacturer's Model Name: order stays ascending
    _, _, end = _element_span(data, pos)
    sq = _tag_bytes(0x00081140) + b"SQ\0\0" + b"\xff\xff\xff\xff" + value
    return data[:end] + sq + data[end:]


def _item_content() -> bytes:
    return _element(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0")


def _sequence_no_delimiter(work: Path) -> bytes:
    # the sequence's delimiter is missing: what follows (the rest of the data set, Pixel Data
    # included) would be read as the sequence's content
    return _with_sequence(work, "sq-no-delim", _sequence_item(_item_content()))


def _item_no_delimiter(work: Path) -> bytes:
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + _item_content()
    return _with_sequence(work, "item-no-delim", item + _SQ_END)


def _deep_nesting(work: Path, depth: int = 1000) -> bytes:
    # 1000 nested undefined-length sequences, each in an undefined-length item
    head = b""
    tail = b""
    for _ in range(depth - 1):
        head += b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + _tag_bytes(0x00081140) + b"SQ\0\0\xff\xff\xff\xff"
        tail = _SQ_END + b"\xfe\xff\x0d\xe0\0\0\0\0" + tail
    return _with_sequence(work, "deep", head + tail + _SQ_END)


def _unknown_vr(work: Path) -> bytes:
    data = bytearray(_encode(_phantom(work, "unknown-vr")))
    pos = _find(bytes(data), 0x00080070)
    data[pos + 4 : pos + 6] = b"ZZ"
    return bytes(data)


def _native_undefined_length(work: Path) -> bytes:
    # native (uncompressed) Pixel Data wrapped in items with an undefined length: the item
    # headers must never be returned as pixels
    data = _encode(_phantom(work, "native-undefined"))
    pos = _pixel_pos(data)
    value, _, end = _element_span(data, pos)
    pixels = data[value:end]
    wrapped = (b"\xfe\xff\x00\xe0\0\0\0\0" + b"\xfe\xff\x00\xe0" + struct.pack("<I", len(pixels))
               + pixels + _SQ_END)
    return data[:pos] + _tag_bytes(0x7FE00010) + b"OW\0\0\xff\xff\xff\xff" + wrapped


def _pixel_short(work: Path) -> bytes:
    data = _encode(_phantom(work, "pixel-short"))
    pos = _pixel_pos(data)
    _, length, end = _element_span(data, pos)
    return _set_length(data[: end - 100], 0x7FE00010, length - 100)


def _pixel_long(work: Path) -> bytes:
    data = _encode(_phantom(work, "pixel-long"))
    pos = _pixel_pos(data)
    _, length, _ = _element_span(data, pos)
    return _set_length(data + b"\0" * 64, 0x7FE00010, length + 64)


def _pixel_length_past_eof(work: Path) -> bytes:
    return _set_length(_encode(_phantom(work, "pixel-past-eof")), 0x7FE00010, 0xFFFFFFF0)


def _rgb_planar_2(work: Path) -> bytes:
    ds = _phantom(work, "planar-2")
    rgb = bytes(b for b in ds.PixelData for _ in range(3))
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 2
    ds.PixelData = rgb
    return _encode(ds)


def _deflate_bomb(work: Path) -> bytes:
    # a deflated data set whose 16 x 16 image is followed by 64 MiB of zeros in its Pixel
    # Data: about 64 KiB on disk, far more than the image needs once inflated
    ds = _phantom(work, "deflate-bomb")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    del ds.PixelData
    plain = pydicom.filebase.DicomBytesIO()
    plain.is_little_endian, plain.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(plain, ds)
    body = plain.getvalue()
    bomb = 64 << 20
    body += _tag_bytes(0x7FE00010) + b"OW\0\0" + struct.pack("<I", bomb)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [comp.compress(body)]
    zeros = bytes(1 << 20)
    for _ in range(bomb >> 20):
        parts.append(comp.compress(zeros))
    parts.append(comp.flush())
    meta = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(parts)


def _deflate_bomb_declined(work: Path) -> bytes:
    # a deflated data set starting with an item tag at the top level (which the fast header
    # reader leaves to pydicom) followed by 16 MiB of zeros: pydicom would inflate it all
    data = _deflate_bomb(work)
    (group_length,) = struct.unpack_from("<I", data, 140)
    meta_end = 144 + group_length
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + bytes(16 << 20)
    return data[:meta_end] + comp.compress(body) + comp.flush()


def _jpeg_truncated(stream: bytes) -> bytes:
    return stream[: len(stream) // 2]  # ends inside entropy-coded data, no EOI


def _jpeg_no_eoi(stream: bytes) -> bytes:
    return stream[:-2] + b"\0\0"  # all data, but the EOI marker is gone


def _jpeg_sof_dims(stream: bytes) -> bytes:
    out = bytearray(stream)
    pos = out.find(b"\xff\xc0")
    struct.pack_into(">HH", out, pos + 5, 64, 64)  # SOF0 height, width: 64 x 64
    return bytes(out)


def _jpeg_sof_zero_lines(stream: bytes) -> bytes:
    # Y = 0: the height comes from a DNL marker after the scan, which the plugins meet by
    # growing their output without bound (found by voxelflow.testing.fuzz)
    out = bytearray(stream)
    pos = out.find(b"\xff\xc0")
    struct.pack_into(">H", out, pos + 5, 0)
    return bytes(out)


def _unchanged(stream: bytes) -> bytes:
    return stream


def _bot_bad_tag(value: bytearray) -> bytearray:
    value[0:4] = b"\xfe\xff\x10\xe0"
    return value


def _bot_length_not_4(value: bytearray) -> bytearray:
    (length,) = struct.unpack_from("<I", value, 4)
    struct.pack_into("<I", value, 4, 2)
    return value[:8] + b"\0\0" + value[8 + length :]


def _no_bot_item(value: bytearray) -> bytearray:
    (length,) = struct.unpack_from("<I", value, 4)
    return value[8 + length :]


def _fragment_bad_tag(value: bytearray) -> bytearray:
    (length,) = struct.unpack_from("<I", value, 4)
    value[8 + length : 12 + length] = b"\xfe\xff\x00\xe1"
    return value


def _fragment_past_end(value: bytearray) -> bytearray:
    (length,) = struct.unpack_from("<I", value, 4)
    struct.pack_into("<I", value, 12 + length, 0x7FFFFFF0)
    return value


def _zero_fragments(value: bytearray) -> bytearray:
    return bytearray(b"\xfe\xff\x00\xe0\0\0\0\0" + _SQ_END)


def _no_sequence_delimiter(value: bytearray) -> bytearray:
    return value[:-8]


def _rle_defined_length(work: Path) -> bytes:
    # uncompressed pixels under the RLE Lossless UID (pydicom refuses to write one)
    return _with_meta_ts(_encode(_phantom(work, "rle-native")), b"1.2.840.10008.1.2.5\0")


def _rle_huge_frame(work: Path) -> bytes:
    # 65535 x 65535 x 16 bit (8 GiB) announced; the fragment holds about 300 bytes
    ds = _phantom(work, "rle-huge", transfer_syntax="rle")
    ds.Rows = ds.Columns = 65535
    return _encode(ds)


def _rle_huge_frame_8bit(work: Path) -> bytes:
    # 65535 x 65535 x 8 bit: just under the 4 GiB output limit; only the RLE bound refuses it
    ds = _phantom(work, "rle-huge-8", transfer_syntax="rle", modality="MR")
    ds.Rows = ds.Columns = 65535
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    return _encode(ds)


def _pack(offset: int, value: int) -> Callable[[bytearray], None]:
    def mutate(frame: bytearray) -> None:
        struct.pack_into("<I", frame, offset, value)
    return mutate


def _rle_run_overflow(frame: bytearray) -> None:
    # segment 1 (high bytes): one replicate run of 128 bytes, then more runs past the frame
    (first, second) = struct.unpack_from("<II", frame, 4)
    runs = bytes([0x81, 0x00]) * 40  # 40 x 128 bytes of replicate runs for a 256-byte segment
    frame[first:second] = runs
    struct.pack_into("<I", frame, 8, first + len(runs))
    del frame[first + len(runs) :]
    frame += bytes([0x81, 0x00]) * 40


def _rle_literal_past_input(frame: bytearray) -> None:
    (count,) = struct.unpack_from("<I", frame, 0)
    offsets = struct.unpack_from(f"<{count}I", frame, 4)
    del frame[offsets[-1] + 1 :]
    frame[offsets[-1]] = 0x7F  # a 128-byte literal run with no bytes after it


def _palette_bad_descriptor(work: Path) -> bytes:
    ds = _phantom(work, "palette", modality="MR")
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.PixelData = bytes(range(256))
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        ds.pop(keyword, None)
    for channel in ("Red", "Green", "Blue"):
        # 256 entries announced, 100 given
        setattr(ds, f"{channel}PaletteColorLookupTableDescriptor", [256, 0, 16])
        ds[f"{channel}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{channel}PaletteColorLookupTableData", b"\0\1" * 100)
    return _encode(ds)


def _rescale_text(work: Path) -> bytes:
    return _replace(_encode(_phantom(work, "rescale-text")), 0x00281053, b"DS", b"abc ")


def _rescale_nan(work: Path) -> bytes:
    return _replace(_encode(_phantom(work, "rescale-nan")), 0x00281053, b"DS", b"NaN ")


def _implicit_huge_length(work: Path) -> bytes:
    # Implicit VR Little Endian: Image Position (Patient) claims 0xFFFFFFF0 bytes
    data = _encode(_phantom(work, "implicit-huge", transfer_syntax="implicit_le"))
    at = data.index(_tag_bytes(0x00200032), 132)
    return data[: at + 4] + struct.pack("<I", 0xFFFFFFF0) + data[at + 8 :]


def _ybr422_full_size(work: Path) -> bytes:
    # uncompressed YBR_FULL_422 must hold 2 bytes per pixel; this holds the 3 of YBR_FULL
    ds = _phantom(work, "ybr422", modality="MR")
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = bytes(ds.Rows * ds.Columns * 3)
    return _encode(ds)


def _rle_under_64(frame: bytearray) -> None:
    del frame[40:]  # shorter than the 64-byte RLE header


# ---- multi-frame offset tables (PS3.5 A.4, PS3.3 C.7.6.3.1.8) ------------------------------


def _item(fragment: bytes) -> bytes:
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(fragment)) + fragment


def _halves(stream: bytes) -> list[bytes]:
    """A codestream cut into two even-length fragments (the second padded if need be)."""
    cut = (len(stream) // 2) & ~1
    tail = stream[cut:]
    return [stream[:cut], tail + b"\0" * (len(tail) % 2)]


def _positions(fragments: list[bytes]) -> list[int]:
    """Offset of each fragment's item tag from the first item after the Basic Offset Table."""
    out, pos = [], 0
    for fragment in fragments:
        out.append(pos)
        pos += 8 + len(fragment)
    return out


#: a layout: (the codestream of one frame) -> (Number of Frames, fragments, Basic Offset Table
#: entries, Extended Offset Table (offsets, lengths) or None); tables as lists of ints or raw bytes
_Layout = Callable[[bytes], tuple[int, list[bytes], list[int], Any]]


def _frames_case(layout: _Layout, transfer_syntax: str = "rle",
                 modality: str = "CT") -> Callable[[Path], bytes]:
    """A multi-frame phantom whose frames are one slice's codestream, framed by `layout`."""
    def build(work: Path) -> bytes:
        ds = _phantom(work, f"frames-{transfer_syntax}-{layout.__name__}",
                      transfer_syntax=transfer_syntax, modality=modality)
        (stream,) = list(generate_frames(ds.PixelData, number_of_frames=1))
        stream = bytes(stream)
        if transfer_syntax != "rle":
            stream = stream.rstrip(b"\0")
            stream += b"\0" * (len(stream) % 2)
        nframes, fragments, bot, eot = layout(stream)
        ds.NumberOfFrames = nframes
        ds.PixelData = _item(struct.pack(f"<{len(bot)}I", *bot)) + b"".join(map(_item, fragments))
        ds["PixelData"].is_undefined_length = True
        if eot is not None:
            offsets, lengths = (t if isinstance(t, bytes) else struct.pack(f"<{len(t)}Q", *t)
                                for t in eot)
            ds.ExtendedOffsetTable = offsets
            ds.ExtendedOffsetTableLengths = lengths
        return _encode(ds)
    return build


def _one_per_frame(stream: bytes, n: int = 2) -> list[bytes]:
    return [stream] * n


def _bot_past_end(stream: bytes) -> tuple:
    frags = _one_per_frame(stream)
    return 2, frags, [0, 0x00100000], None


def _bot_not_increasing(stream: bytes) -> tuple:
    frags = _halves(stream) * 3  # three frames of two fragments
    pos = _positions(frags)
    return 3, frags, [0, pos[4], pos[2]], None


def _bot_too_few_entries(stream: bytes) -> tuple:
    return 2, _halves(stream) * 2, [0], None


def _bot_inside_fragment(stream: bytes) -> tuple:
    frags = _halves(stream) * 2
    return 2, frags, [0, _positions(frags)[2] + 8], None


def _bot_two_fragment_rle_frame(stream: bytes) -> tuple:
    # RLE: PS3.5 G.2 allows one fragment per frame; the BOT gives frame 0 two
    frags = [stream[:64], stream[64:] + b"\0" * (len(stream) % 2), stream]
    return 2, frags, [0, _positions(frags)[2]], None


def _eot(frags: list[bytes]) -> tuple[list[int], list[int]]:
    return _positions(frags), [len(f) for f in frags]


def _eot_lengths_count(stream: bytes) -> tuple:
    frags = _one_per_frame(stream)
    offsets, lengths = _eot(frags)
    return 2, frags, [], (offsets, lengths[:1])


def _eot_entries_vs_frames(stream: bytes) -> tuple:
    frags = _one_per_frame(stream, 3)
    return 2, frags, [], _eot(frags)


def _eot_offset_past_end(stream: bytes) -> tuple:
    frags = _one_per_frame(stream)
    _, lengths = _eot(frags)
    return 2, frags, [], ([0, 1 << 40], lengths)


def _eot_length_past_data(stream: bytes) -> tuple:
    frags = _one_per_frame(stream)
    offsets, lengths = _eot(frags)
    return 2, frags, [], (offsets, [lengths[0], 1 << 33])


def _eot_offsets_swapped(stream: bytes) -> tuple:
    # pydicom reads frames in the table's order: frame 0 would get frame 1's pixels
    frags = _one_per_frame(stream)
    offsets, lengths = _eot(frags)
    return 2, frags, [], (offsets[::-1], lengths[::-1])


def _eot_not_multiple_of_8(stream: bytes) -> tuple:
    frags = _one_per_frame(stream)
    offsets, lengths = _eot(frags)
    return 2, frags, [], (struct.pack("<QI", 0, offsets[1]), struct.pack("<2Q", *lengths))


def _eot_split_frames(stream: bytes) -> tuple:
    # PS3.3 C.7.6.3.1.8: the Extended Offset Table is for one fragment per frame
    frags = _halves(stream) * 2
    pos = _positions(frags)
    return 2, frags, [], ([0, pos[2]], [len(frags[0]), len(frags[2])])


def _jpeg_split_no_eoi(stream: bytes) -> tuple:
    # frame 0 lost its end marker: the markers end one frame in four fragments, not two
    first = _halves(stream[:-2] + b"\0\0")
    return 2, first + _halves(stream), [], None


def _jpeg_extra_fragment(stream: bytes) -> tuple:
    return 2, [stream, stream, bytes(64)], [], None


def _rle_split_no_bot(stream: bytes) -> tuple:
    return 2, [stream[:64], stream[64:] + b"\0" * (len(stream) % 2), stream], [], None


def _frames_beyond_fragments(stream: bytes) -> tuple:
    return 3, _halves(stream) * 2, [], None


# recoverable exactly: the pixels are asserted in tests/dicom/test_malformed.py


def _no_bot_one_per_frame(stream: bytes) -> tuple:
    return 2, _one_per_frame(stream), [], None


def _no_bot_split_frames(stream: bytes) -> tuple:
    return 2, _halves(stream) * 2, [], None


def _bot_split_frames(stream: bytes) -> tuple:
    frags = _halves(stream) * 2
    return 2, frags, [0, _positions(frags)[2]], None


def _eot_one_per_frame(stream: bytes) -> tuple:
    frags = _one_per_frame(stream)
    return 2, frags, [], _eot(frags)


def _mid(data: bytes) -> int:
    return _pixel_pos(data) // 2 + 1


def cases() -> list[MalformedCase]:
    """Every malformed-file class, in a stable order (see :data:`CASES`)."""
    dec = DecodeError
    row, err = "row", "error"
    c = MalformedCase
    return [
        # ---- container --------------------------------------------------------------------
        c("not-dicom", "container", "a text file", _not_dicom,
          Expect(dec, "not a DICOM file", "skipped", "not DICOM")),
        c("empty-file", "container", "zero bytes", _empty,
          Expect(dec, "empty", "skipped", "empty")),
        c("dicm-then-garbage", "container", "preamble and DICM, then 0xFF bytes", _no_preamble_garbage,
          Expect(dec, "file meta|not a DICOM|header|no Pixel Data", err, "")),
        c("meta-garbage-vr", "container", "Transfer Syntax UID element with VR bytes 01 02",
          _meta_garbage_vr, Expect(dec, r"\(0002,0010\)|VR|header|transfer syntax", err, "")),
        c("private-transfer-syntax", "container", "a private transfer syntax UID", _meta_private_ts,
          Expect(dec, r"\(0002,0010\)", err, r"\(0002,0010\)")),
        c("unknown-transfer-syntax", "container", "an unknown DICOM transfer syntax UID",
          _meta_unknown_ts, Expect(dec, r"\(0002,0010\)", err, r"\(0002,0010\)")),
        # ---- truncation -------------------------------------------------------------------
        c("cut-in-meta", "truncation", "file ends inside the file meta", _truncate(lambda d: 150),
          Expect(dec, "file meta|offset", err, "file meta")),
        c("cut-in-header", "truncation", "file ends in the middle of the data set",
          _truncate(_mid), Expect(dec, "offset|element|ends", err, "")),
        c("cut-in-pixel-header", "truncation", "file ends inside the Pixel Data element header",
          _truncate(lambda d: _pixel_pos(d) + 6), Expect(dec, "Pixel Data|offset|element", err, "")),
        c("cut-in-pixel-data", "truncation", "file ends 100 bytes before the Pixel Data does",
          _truncate(lambda d: len(d) - 100), Expect(dec, "PixelData|Pixel Data", err, "Pixel Data")),
        c("big-endian-cut-in-pixel-data", "truncation",
          "Explicit VR Big Endian file ending 64 bytes early", _truncate(lambda d: len(d) - 64,
                                                                      transfer_syntax="explicit_be"),
          Expect(dec, "PixelData|Pixel Data", err, "Pixel Data")),
        c("cut-in-fragments", "truncation", "RLE file ends inside its fragments",
          _truncate(lambda d: len(d) - 40, transfer_syntax="rle"),
          Expect(dec, "fragment|Delimitation|Pixel Data", row)),
        # ---- sequences and lengths ------------------------------------------------------
        c("element-length-past-eof", "sequences-lengths", "(0008,0070) length 65280 in a 1 KiB file",
          _element_past_eof, Expect(dec, r"\(0008,0070\)", err, r"\(0008,0070\)")),
        c("huge-length", "sequences-lengths", "(0040,A160) UT length 0xFFFFFFF0",
          _huge_length, Expect(dec, r"\(0040,A160\)", err, r"\(0040,A160\)")),
        c("implicit-huge-length", "sequences-lengths",
          "Implicit VR: (0020,0032) length 0xFFFFFFF0", _implicit_huge_length,
          Expect(dec, r"\(0020,0032\)", err, r"\(0020,0032\)")),
        c("sequence-no-delimiter", "sequences-lengths",
          "undefined-length sequence without its delimiter", _sequence_no_delimiter,
          Expect(dec, r"\(0008,1140\)|sequence|delimit", err, "")),
        c("item-no-delimiter", "sequences-lengths", "undefined-length item without its delimiter",
          _item_no_delimiter, Expect(dec, r"\(0008,1140\)|item|delimit", err, "")),
        c("nesting-1000-deep", "sequences-lengths", "1000 nested sequences", _deep_nesting,
          Expect(dec, "nest|deep", err, "nest|deep")),
        c("unknown-vr", "sequences-lengths", "(0008,0070) with VR bytes 'ZZ'", _unknown_vr,
          Expect(dec, r"\(0008,0070\)|VR", err, "")),
        # ---- Image Pixel module ------------------------------------------------------
        c("rows-0", "pixel-module", "Rows 0", _attr("Rows", 0), Expect(dec, r"\(0028,0010\)")),
        c("columns-missing", "pixel-module", "no Columns", _attr("Columns", None),
          Expect(dec, r"\(0028,0011\)", err, r"\(0028,0011\)")),
        # pydicom converts these lazily, raising NotImplementedError and its own
        # BytesLengthException (found by voxelflow.testing.fuzz)
        c("pixel-representation-unknown-vr", "pixel-module",
          "(0028,0103) with VR bytes 55 13", _raw(0x00280103, b"\x55\x13", _us(0)),
          Expect(dec, r"\(0028,0103\)")),
        c("samples-per-pixel-as-fl", "pixel-module", "(0028,0002) as FL with 2 bytes",
          _raw(0x00280002, b"FL", _us(1)), Expect(dec, r"\(0028,0002\)")),
        c("rows-text", "pixel-module", "Rows written as IS 'abc'", _raw(0x00280010, b"IS", b"abc "),
          Expect(dec, r"\(0028,0010\)", err, r"\(0028,0010\) Rows is unreadable")),
        c("rows-ul-70000", "pixel-module", "Rows written as UL 70000",
          _raw(0x00280010, b"UL", struct.pack("<I", 70000)), Expect(dec, r"\(0028,0010\)")),
        c("dims-65535-16bit", "pixel-module", "65535 x 65535 x 16 bit with 512 bytes of data",
          _attr("Columns", 65535, ), Expect(dec, r"\(0028,0011\) Columns|PixelData")),
        c("dims-65535-both", "pixel-module", "Rows and Columns 65535 with 512 bytes of data",
          _raw(0x00280010, b"US", _us(65535)), Expect(dec, r"\(0028,0010\)|PixelData")),
        *[c(f"bits-allocated-{n}", "pixel-module", f"Bits Allocated {n}", _attr("BitsAllocated", n),
            Expect(dec, r"\(0028,0100\)")) for n in (0, 7, 33, 64)],
        c("bits-stored-over-allocated", "pixel-module", "Bits Stored 17 > Bits Allocated 16",
          _attr("BitsStored", 17), Expect(dec, r"\(0028,0101\)")),
        c("high-bit-inconsistent", "pixel-module", "High Bit 15 with Bits Stored 12",
          _attr("HighBit", 15), Expect(None, r"\(0028,0102\)", row, warning=DecodeWarning)),
        *[c(f"samples-{n}", "pixel-module", f"Samples per Pixel {n}", _attr("SamplesPerPixel", n),
            Expect(dec, r"\(0028,0002\)")) for n in (0, 2, 4)],
        c("planar-configuration-2", "pixel-module", "RGB with Planar Configuration 2", _rgb_planar_2,
          Expect(dec, r"\(0028,0006\)")),
        c("pixel-representation-2", "pixel-module", "Pixel Representation 2",
          _attr("PixelRepresentation", 2), Expect(dec, r"\(0028,0103\)")),
        *[c(f"frames-{label}", "pixel-module", f"Number of Frames {value!r}",
            _raw(0x00280008, b"IS", value), Expect(dec, r"\(0028,0008\)", row, **extra))
          for label, value, extra in ((label, value, {"scan_invalid": "number_of_frames"})
                                      for label, value in (("0", b"0 "), ("negative", b"-1"),
                                                           ("text", b"lots"),
                                                           ("2-31", b"2147483648")))],
        c("photometric-unknown", "pixel-module", "Photometric Interpretation 'CMYKX'",
          _attr("PhotometricInterpretation", "CMYKX"), Expect(dec, r"\(0028,0004\)")),
        c("photometric-samples-mismatch", "pixel-module", "RGB with 1 sample per pixel",
          _attr("PhotometricInterpretation", "RGB"), Expect(dec, r"\(0028,0004\)")),
        # ---- native Pixel Data ----------------------------------------------------------
        c("pixel-data-short", "pixel-data", "Pixel Data 100 bytes short of Rows x Columns",
          _pixel_short, Expect(dec, "PixelData holds")),
        c("pixel-data-long", "pixel-data", "64 bytes of Pixel Data beyond the frame", _pixel_long,
          Expect(None, "PixelData has 64 bytes beyond", row, warning=DecodeWarning)),
        c("ybr-full-422-full-size", "pixel-data",
          "uncompressed YBR_FULL_422 holding full-size (3 samples per pixel) data",
          _ybr422_full_size, Expect(dec, "YBR_FULL_422")),
        c("pixel-length-past-eof", "pixel-data", "Pixel Data length 0xFFFFFFF0",
          _pixel_length_past_eof, Expect(dec, "PixelData length", err, "Pixel Data length")),
        c("native-undefined-length", "pixel-data",
          "uncompressed Pixel Data with an undefined length (items inside)", _native_undefined_length,
          Expect(dec, "undefined length", row)),
        # ---- encapsulation -----------------------------------------------------------
        c("bot-bad-tag", "encapsulation", "Basic Offset Table item tag (FFFE,E010)",
          _encapsulated_case(_bot_bad_tag), Expect(dec, r"Basic Offset Table|\(FFFE,E010\)")),
        c("bot-length-not-4", "encapsulation", "Basic Offset Table length 2",
          _encapsulated_case(_bot_length_not_4), Expect(dec, "multiple of 4")),
        c("no-bot-item", "encapsulation", "fragments without the Basic Offset Table item",
          _encapsulated_case(_no_bot_item), Expect(dec, "fragment|Basic Offset Table|frame")),
        c("fragment-bad-tag", "encapsulation", "fragment item tag (FFFE,E100)",
          _encapsulated_case(_fragment_bad_tag), Expect(dec, r"fragment 0 .*\(FFFE,E100\)")),
        c("fragment-past-end", "encapsulation", "fragment length past the end of Pixel Data",
          _encapsulated_case(_fragment_past_end), Expect(dec, "fragment 0 length")),
        c("zero-fragments", "encapsulation", "Basic Offset Table and delimiter, no fragment",
          _encapsulated_case(_zero_fragments), Expect(dec, "no fragment")),
        c("encapsulated-no-delimiter", "encapsulation", "no Sequence Delimitation Item",
          _encapsulated_case(_no_sequence_delimiter), Expect(dec, r"\(FFFE,E0DD\)")),
        c("encapsulated-defined-length", "encapsulation", "RLE transfer syntax, native Pixel Data",
          _rle_defined_length, Expect(dec, "needs encapsulated")),
        c("fewer-fragments-than-frames", "encapsulation", "Number of Frames 3, one fragment",
          _attr("NumberOfFrames", 3, transfer_syntax="rle"), Expect(dec, "1 fragments for 3 frames")),
        # multi-frame offset tables: a table that disagrees with the fragments, or frames that
        # cannot be told apart without one, are refused; exact framings decode
        c("bot-offset-past-end", "encapsulation", "2 RLE frames, Basic Offset Table [0, 1 MiB]",
          _frames_case(_bot_past_end),
          Expect(dec, r"frame 1: \(7FE0,0010\) Basic Offset Table offset 1048576 points past the end")),
        c("bot-offsets-not-increasing", "encapsulation",
          "3 JPEG frames of 2 fragments, Basic Offset Table offsets of frames 1 and 2 swapped",
          _frames_case(_bot_not_increasing, "jpeg_baseline", "MR"),
          Expect(dec, r"frame 2: \(7FE0,0010\) Basic Offset Table offset \d+ is not greater")),
        c("bot-entries-vs-frames", "encapsulation",
          "2 JPEG frames of 2 fragments, a Basic Offset Table of 1 entry",
          _frames_case(_bot_too_few_entries, "jpeg_baseline", "MR"),
          Expect(dec, r"\(7FE0,0010\) Basic Offset Table has 1 entries for \(0028,0008\) Number of Frames 2")),
        c("bot-offset-inside-fragment", "encapsulation",
          "2 JPEG frames of 2 fragments, frame 1's offset 8 bytes into its first item",
          _frames_case(_bot_inside_fragment, "jpeg_baseline", "MR"),
          Expect(dec, r"frame 1: \(7FE0,0010\) .* lands inside fragment 2")),
        c("bot-rle-frame-of-2-fragments", "encapsulation",
          "2 RLE frames in 3 fragments, the Basic Offset Table giving frame 0 two",
          _frames_case(_bot_two_fragment_rle_frame),
          Expect(dec, r"frame 0: \(7FE0,0010\) .*2 fragments.*one fragment per frame")),
        c("eot-lengths-count", "encapsulation",
          "Extended Offset Table of 2 entries, Extended Offset Table Lengths of 1",
          _frames_case(_eot_lengths_count),
          Expect(dec, r"\(7FE0,0001\) .* 2 entries, \(7FE0,0002\) .* 1")),
        c("eot-entries-vs-frames", "encapsulation",
          "3 fragments and 3 Extended Offset Table entries for Number of Frames 2",
          _frames_case(_eot_entries_vs_frames),
          Expect(dec, r"\(7FE0,0001\) Extended Offset Table has 3 entries for \(0028,0008\) Number of Frames 2")),
        c("eot-offset-past-end", "encapsulation", "Extended Offset Table offset 2**40 for frame 1",
          _frames_case(_eot_offset_past_end),
          Expect(dec, r"frame 1: \(7FE0,0001\) .*past the end")),
        c("eot-length-past-data", "encapsulation", "Extended Offset Table Lengths 2**33 for frame 1",
          _frames_case(_eot_length_past_data),
          Expect(dec, r"frame 1: \(7FE0,0002\) .*8589934592 bytes.*runs past the data")),
        c("eot-offsets-swapped", "encapsulation",
          "Extended Offset Table listing frame 1's fragment first",
          _frames_case(_eot_offsets_swapped), Expect(dec, r"frame 0: \(7FE0,0001\) .*starts at 0")),
        c("eot-not-multiple-of-8", "encapsulation", "a 12-byte Extended Offset Table",
          _frames_case(_eot_not_multiple_of_8), Expect(dec, r"\(7FE0,0001\) .*multiple of 8")),
        c("eot-split-frames", "encapsulation",
          "Extended Offset Table over JPEG frames of 2 fragments each",
          _frames_case(_eot_split_frames, "jpeg_baseline", "MR"),
          Expect(dec, r"\(7FE0,0001\) .*one fragment per frame")),
        c("jpeg-fragments-no-eoi-no-bot", "encapsulation",
          "2 JPEG frames in 4 fragments, no offset table, frame 0 without its EOI",
          _frames_case(_jpeg_split_no_eoi, "jpeg_baseline", "MR"),
          Expect(dec, r"4 fragments for 2 frames and no offset table.*cannot be derived")),
        c("jpeg-extra-fragment-no-bot", "encapsulation",
          "2 JPEG frames and a third fragment of zeros, no offset table",
          _frames_case(_jpeg_extra_fragment, "jpeg_baseline", "MR"),
          Expect(dec, r"3 fragments for 2 frames and no offset table.*cannot be derived")),
        c("rle-fragments-no-bot", "encapsulation", "2 RLE frames in 3 fragments, no offset table",
          _frames_case(_rle_split_no_bot), Expect(dec, r"3 fragments for 2 RLE frames.*offset table")),
        c("frames-beyond-jpeg-fragments", "encapsulation",
          "Number of Frames 3, 2 JPEG frames in 4 fragments, no offset table",
          _frames_case(_frames_beyond_fragments, "jpeg_baseline", "MR"),
          Expect(dec, r"markers \(FFD9\) end 2 frames, not \(0028,0008\) Number of Frames 3")),
        c("no-bot-one-fragment-per-frame", "encapsulation",
          "2 RLE frames, one fragment each, empty Basic Offset Table (legal: decodes)",
          _frames_case(_no_bot_one_per_frame), Expect(None, "", row)),
        c("no-bot-split-jpeg-frames", "encapsulation",
          "2 JPEG frames of 2 fragments, empty Basic Offset Table (legal: framed by SOI / EOI)",
          _frames_case(_no_bot_split_frames, "jpeg_baseline", "MR"), Expect(None, "", row)),
        c("bot-split-jpeg-frames", "encapsulation",
          "2 JPEG frames of 2 fragments with a correct Basic Offset Table (legal: decodes)",
          _frames_case(_bot_split_frames, "jpeg_baseline", "MR"), Expect(None, "", row)),
        c("eot-one-fragment-per-frame", "encapsulation",
          "2 RLE frames with a correct Extended Offset Table (legal: decodes)",
          _frames_case(_eot_one_per_frame), Expect(None, "", row)),
        # ---- RLE -----------------------------------------------------------------------
        c("rle-16-segments", "rle", "RLE header with 16 segments", _rle_case(_pack(0, 16)),
          Expect(dec, "frame 0.*segment")),
        c("rle-0-segments", "rle", "RLE header with 0 segments", _rle_case(_pack(0, 0)),
          Expect(dec, "frame 0.*segment")),
        c("rle-segment-count-mismatch", "rle", "3 segments for 16-bit monochrome",
          _rle_case(_pack(0, 3)), Expect(dec, "frame 0.*segment")),
        c("rle-first-offset", "rle", "first segment offset 60, not 64", _rle_case(_pack(4, 60)),
          Expect(dec, "frame 0.*64")),
        c("rle-offset-past-end", "rle", "second segment offset past the frame",
          _rle_case(_pack(8, 0x7FFFFFFF)), Expect(dec, "frame 0.*(offset|beyond|past)")),
        c("rle-offsets-decreasing", "rle", "second segment offset 64 (not increasing)",
          _rle_case(_pack(8, 64)), Expect(dec, "frame 0.*(increas|offset)")),
        # malformed-inputs.md: a segment that decodes long is trimmed with a warning; the
        # kernel never writes past the frame
        c("rle-run-overflow", "rle", "replicate runs decoding far past the segment",
          _rle_case(_rle_run_overflow), Expect(None, "frame 0", row, warning=DecodeWarning)),
        c("rle-literal-past-input", "rle", "a literal run past the end of the segment data",
          _rle_case(_rle_literal_past_input), Expect(dec, "frame 0")),
        c("rle-frame-under-64-bytes", "rle", "a 40-byte RLE frame (the header alone is 64)",
          _rle_case(_rle_under_64), Expect(dec, "frame 0")),
        c("rle-huge-frame-16bit", "rle", "65535 x 65535 x 16 bit from a 300-byte fragment",
          _rle_huge_frame, Expect(dec, "Rows|decoded size|cannot decode")),
        c("rle-huge-frame-8bit", "rle", "65535 x 65535 x 8 bit from a 300-byte fragment",
          _rle_huge_frame_8bit, Expect(dec, "frame 0.*cannot decode")),
        # ---- JPEG family ------------------------------------------------------------------
        c("jpeg-truncated", "jpeg", "baseline codestream cut in half (no EOI)",
          _jpeg_case(_jpeg_truncated, "jpeg_baseline", "MR"), Expect(dec, "frame 0.*(EOI|end)")),
        c("jpeg-no-eoi", "jpeg", "baseline codestream without its EOI marker",
          _jpeg_case(_jpeg_no_eoi, "jpeg_baseline", "MR"), Expect(dec, "frame 0.*(EOI|end)")),
        c("jpeg-sof-dimensions", "jpeg", "SOF says 64 x 64, the data set 16 x 16",
          _jpeg_case(_jpeg_sof_dims, "jpeg_baseline", "MR"), Expect(dec, r"frame 0.*(64|\(0028,0010\))")),
        c("jpeg-sof-zero-lines", "jpeg", "SOF says 0 lines (height from a DNL marker)",
          _jpeg_case(_jpeg_sof_zero_lines, "jpeg_baseline", "MR"),
          Expect(dec, r"frame 0.*0 lines.*\(0028,0010\)")),
        c("jpeg-precision-vs-bits-stored", "jpeg", "lossless codestream precision 12, Bits Stored 14",
          _jpeg_case(_unchanged, "jpeg_lossless", "CT", BitsStored=14, HighBit=13),
          Expect(dec, r"frame 0.*precision.*\(0028,0101\)")),
        c("jpeg-values-beyond-bits-stored", "jpeg",
          "lossless codestream (precision 12) whose values exceed Bits Stored 8",
          _jpeg_case(_unchanged, "jpeg_lossless", "CT", BitsStored=8, HighBit=7),
          Expect(dec, r"frame 0.*values up to .*\(0028,0101\)")),
        c("jpeg-huge-rows", "jpeg", "data set claims 65535 x 65535 for a 16 x 16 codestream",
          _jpeg_case(_unchanged, "jpeg_baseline", "MR", Rows=65535, Columns=65535),
          Expect(dec, r"frame 0.*\(0028,0010\)")),
        # the plugin gets the header's elements raw: one it never reads may be damaged (found by
        # voxelflow.testing.fuzz: pydicom's NotImplementedError and BytesLengthException)
        c("jpeg-empty-element-unknown-vr", "jpeg", "an empty (0008,0070) with VR bytes 'L\\0'",
          _damaged_header(b"L\0", b""), Expect(None, "", row)),
        c("jpeg-private-fd-wrong-length", "jpeg", "a private FD element (0009,1001) of 4 bytes",
          _private_fd_4_bytes, Expect(None, "", row)),
        # ---- deflate ------------------------------------------------------------------
        c("deflate-bomb", "deflate", "64 MiB of zeros deflated into a 16 x 16 image's Pixel Data",
          _deflate_bomb, Expect(dec, "inflat", row)),
        c("deflate-bomb-declined", "deflate",
          "a deflated data set the header reader declines, inflating to 16 MiB of zeros",
          _deflate_bomb_declined, Expect(dec, "deflated.*not inflated", err, "deflated")),
        # ---- LUTs and rescale -----------------------------------------------------------
        c("palette-descriptor-inconsistent", "lut-rescale",
          "palette descriptor 256 entries, data 100", _palette_bad_descriptor,
          Expect(dec, "holds 200 bytes|descriptor"), {"apply_palette": True}),
        # decodes; ingest once raised ParameterError from the geometry (found by
        # voxelflow.testing.fuzz): the batch test ingests it among the others
        c("orientation-degenerate", "geometry", "Image Orientation (Patient) 0\\0\\0\\0\\1\\0",
          _attr("ImageOrientationPatient", [0, 0, 0, 0, 1, 0]), Expect(None, "", row)),
        c("rescale-slope-text", "lut-rescale", "Rescale Slope 'abc'", _rescale_text,
          Expect(None, "", row, scan_invalid="rescale_slope")),
        c("rescale-slope-nan", "lut-rescale", "Rescale Slope 'NaN'", _rescale_nan,
          Expect(None, "", row, scan_invalid="rescale_slope")),
    ]


#: Every malformed-file class (a list of :class:`MalformedCase`).
CASES: list[MalformedCase] = cases()


def make_all(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every case's file to `folder`; returns ``{name: path}``."""
    return {case.name: case.make(folder) for case in CASES}
