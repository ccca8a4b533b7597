"""The header index of a scanned tree: one row per DICOM instance, plus what was left out.

:class:`Index` is what :func:`voxelflow.scan` returns. It saves to and loads from a gzip'd
JSON Lines file (``Index.save`` / ``Index.load``): the format needs nothing beyond the standard
library (Parquet would need pyarrow, which the package does not depend on), the rows are few
dozen scalars and short lists that JSON holds exactly (floats round-trip through ``repr``),
it streams line by line, and it stays readable with ``zcat``. SQLite, the other stdlib option,
would add a schema to migrate and still need JSON for the multi-valued attributes, without a
query the grouping stage needs: it reads every row of a tree anyway.

File layout: a header line ``{"format": "voxelflow-index", "version": 1, "fields": [...]}``,
then one JSON array per line: ``["row", <values in "fields" order>]`` or
``["skipped" | "no_pixels" | "error", path, reason, size, mtime_ns]``. Loading maps values by
the header's field names, so an index written with fewer fields still loads (missing: None).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ParameterError

__all__ = ["FileIssue", "Index", "InstanceRow"]

_FORMAT = "voxelflow-index"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """The header of one DICOM instance (file), as :func:`voxelflow.scan` read it.

    Absent attributes are None; numbers are numbers (DS as float, IS / US as int), multi-valued
    ones tuples. Geometry is in the DICOM patient system (LPS), millimetres.

    For an enhanced multi-frame instance, the attributes the standard moves into functional
    groups (orientation, pixel spacing, slice thickness, rescale, windows, gantry tilt, echo
    time) come from the Shared Functional Groups Sequence when they are shared there, and are
    None when they vary by frame; ``image_position_patient`` is then None (frame positions are per
    frame: the grouping stage reads them from the file).

    Attributes
    ----------
    path : str
        Absolute path of the file (as walked: symbolic links are not resolved).
    size, mtime_ns : int
        File size (bytes) and modification time (ns) when scanned; a re-scan reuses the row
        while both are unchanged.
    study_instance_uid, series_instance_uid, sop_instance_uid, sop_class_uid, frame_of_reference_uid : str
        (0020,000D), (0020,000E), (0008,0018), (0008,0016), (0020,0052).
    modality : str
        (0008,0060).
    instance_number, series_number, acquisition_number : int
        (0020,0013), (0020,0011), (0020,0012).
    image_type : tuple of str
        (0008,0008) Image Type values.
    image_orientation_patient : tuple of 6 float
        (0020,0037) row then column direction cosines.
    image_position_patient : tuple of 3 float
        (0020,0032) the first transmitted pixel's centre, mm.
    pixel_spacing : tuple of 2 float
        (0028,0030) spacing between rows, then between columns, mm.
    slice_thickness : float
        (0018,0050), mm. (The stack spacing comes from positions, not from this.)
    rows, columns, bits_allocated, bits_stored, pixel_representation, samples_per_pixel : int
        (0028,0010), (0028,0011), (0028,0100), (0028,0101), (0028,0103), (0028,0002).
    photometric_interpretation : str
        (0028,0004) Photometric Interpretation.
    number_of_frames : int
        (0028,0008); None when absent (one frame, see :attr:`frames`).
    transfer_syntax_uid : str
        (0002,0010), or the encoding pydicom found where the file meta lacks it.
    rescale_slope, rescale_intercept : float
        (0028,1053), (0028,1052).
    rescale_type : str
        (0028,1054).
    window_center, window_width : tuple of float
        (0028,1050), (0028,1051), one value per window.
    window_explanation : tuple of str
        (0028,1055).
    echo_time : float
        (0018,0081) ms; for enhanced MR the shared (0018,9082) Effective Echo Time.
    echo_numbers : tuple of int
        (0018,0086) Echo Number(s).
    temporal_position_identifier : int
        (0020,0100) Temporal Position Identifier.
    trigger_time : float
        (0018,1060) ms.
    gantry_detector_tilt : float
        (0018,1120) Gantry/Detector Tilt, degrees.
    acquisition_time, content_time : str
        (0008,0032), (0008,0033) as written (TM: ``HHMMSS.FFFFFF``).
    manufacturer : str
        (0008,0070).
    philips_scale_slope, philips_scale_intercept : float
        Philips MR Scale Slope / Scale Intercept, (2005,xx0E) / (2005,xx0D) of the block whose
        private creator is "Philips MR Imaging DD 001" (or (2005,100E/100D) where group 2005
        names no creator, as anonymised files have it); the precise values are
        ``(stored * rescale_slope + rescale_intercept) / (rescale_slope * philips_scale_slope)``.
    enhanced : bool
        An enhanced multi-frame instance: an SOP class built on functional groups (Enhanced
        CT / MR / PET / XA ..., Legacy Converted Enhanced, Segmentation ...) or a Per-frame
        Functional Groups Sequence.
    mosaic : bool
        Image Type contains ``MOSAIC`` (Siemens: slices tiled in one frame).
    has_voi_lut, has_modality_lut : bool
        A VOI LUT Sequence (0028,3010) / Modality LUT Sequence (0028,3000) is present.
    invalid : tuple of str
        Names of the fields above that are present in the file but unreadable (malformed
        number, wrong value count): they are None rather than guessed.
    """

    path: str
    size: int
    mtime_ns: int
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    modality: str | None = None
    instance_number: int | None = None
    image_type: tuple[str, ...] | None = None
    image_orientation_patient: tuple[float, ...] | None = None
    image_position_patient: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, ...] | None = None
    slice_thickness: float | None = None
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int | None = None
    samples_per_pixel: int | None = None
    photometric_interpretation: str | None = None
    number_of_frames: int | None = None
    transfer_syntax_uid: str | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    rescale_type: str | None = None
    window_center: tuple[float, ...] | None = None
    window_width: tuple[float, ...] | None = None
    window_explanation: tuple[str, ...] | None = None
    echo_time: float | None = None
    echo_numbers: tuple[int, ...] | None = None
    temporal_position_identifier: int | None = None
    trigger_time: float | None = None
    acquisition_number: int | None = None
    series_number: int | None = None
    frame_of_reference_uid: str | None = None
    gantry_detector_tilt: float | None = None
    acquisition_time: str | None = None
    content_time: str | None = None
    manufacturer: str | None = None
    philips_scale_slope: float | None = None
    philips_scale_intercept: float | None = None
    # what the vendor's private tag says the image is ("M" magnitude, "P" phase, "R" real,
    # "I" imaginary) where Image Type does not say it: GE's (0043,xx2F)
    private_image_kind: str | None = None
    enhanced: bool = False
    mosaic: bool = False
    has_voi_lut: bool = False
    has_modality_lut: bool = False
    invalid: tuple[str, ...] = ()

    @property
    def frames(self) -> int:
        """Number of frames (1 when Number of Frames is absent)."""
        return self.number_of_frames if self.number_of_frames is not None else 1

    def to_dict(self) -> dict[str, Any]:
        """The fields by name (tuples stay tuples)."""
        return {name: getattr(self, name) for name in ROW_FIELDS}


ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(InstanceRow))
# fields whose values are tuples (JSON gives lists back)
_TUPLE_FIELDS = frozenset(
    f.name for f in fields(InstanceRow) if str(f.type).startswith("tuple")
)


@dataclass(frozen=True, slots=True)
class FileIssue:
    """A file that gave no row, and why.

    Attributes
    ----------
    path : str
    reason : str
        Human-readable: what was found and where (tag, offset).
    size, mtime_ns : int or None
        As scanned (None when the file could not be stat'ed); a re-scan reuses an unchanged
        file's ``skipped`` / ``no_pixels`` entry, and reads files with errors again.
    """

    path: str
    reason: str
    size: int | None = None
    mtime_ns: int | None = None


class Index:
    """The rows of a scan, sorted by path, with the files that gave none.

    Attributes
    ----------
    rows : tuple of InstanceRow
        One per DICOM instance with pixel data.
    skipped : tuple of FileIssue
        Files that are not DICOM (no ``DICM`` prefix, empty, not a regular file) and DICOMDIRs.
    no_pixels : tuple of FileIssue
        DICOM files without Pixel Data (structured reports, presentation states, ...); the
        reason names the SOP class.
    errors : tuple of FileIssue
        Unreadable or corrupt files (and paths that do not exist), with the reason.
    """

    __slots__ = ("errors", "no_pixels", "rows", "skipped")

    def __init__(
        self,
        rows: Iterable[InstanceRow] = (),
        *,
        skipped: Iterable[FileIssue] = (),
        no_pixels: Iterable[FileIssue] = (),
        errors: Iterable[FileIssue] = (),
    ):
        self.rows: tuple[InstanceRow, ...] = tuple(sorted(rows, key=_path_key))
        self.skipped: tuple[FileIssue, ...] = tuple(sorted(skipped, key=_path_key))
        self.no_pixels: tuple[FileIssue, ...] = tuple(sorted(no_pixels, key=_path_key))
        self.errors: tuple[FileIssue, ...] = tuple(sorted(errors, key=_path_key))

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[InstanceRow]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return (
            f"Index({len(self.rows)} instances in {len(self.series())} series, "
            f"{len(self.skipped)} skipped, {len(self.no_pixels)} without pixel data, "
            f"{len(self.errors)} errors)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Index):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def series(self) -> dict[str | None, tuple[InstanceRow, ...]]:
        """Rows by Series Instance UID (None: rows without one), each in path order."""
        groups: dict[str | None, list[InstanceRow]] = {}
        for row in self.rows:
            groups.setdefault(row.series_instance_uid, []).append(row)
        return {uid: tuple(rows) for uid, rows in groups.items()}

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as dicts of field name -> value (e.g. for ``pandas.DataFrame``)."""
        return [row.to_dict() for row in self.rows]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to `path` (gzip'd JSON Lines, see the module docstring), atomically.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                header = {"format": _FORMAT, "version": _VERSION, "voxelflow": __version__,
                          "fields": list(ROW_FIELDS)}
                lines = [json.dumps(header)]
                for row in self.rows:
                    lines.append(json.dumps(["row", *(getattr(row, n) for n in ROW_FIELDS)]))
                for kind in ("skipped", "no_pixels", "errors"):
                    tag = "error" if kind == "errors" else kind
                    for issue in getattr(self, kind):
                        lines.append(json.dumps(
                            [tag, issue.path, issue.reason, issue.size, issue.mtime_ns]
                        ))
                gz.write(("\n".join(lines) + "\n").encode("utf-8"))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Index:
        """Read an index written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If `path` does not exist.
        ParameterError
            If `path` is not a voxelflow index (or a newer version of the format); the message
            names the file and the line.
        """
        path = Path(path)
        rows: list[InstanceRow] = []
        issues: dict[str, list[FileIssue]] = {"skipped": [], "no_pixels": [], "error": []}
        known = set(ROW_FIELDS)
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                header = json.loads(f.readline() or "null")
                if not (isinstance(header, dict) and header.get("format") == _FORMAT):
                    raise ParameterError(f"{path}: not a voxelflow index (no index header)")
                if header.get("version") != _VERSION:
                    raise ParameterError(
                        f"{path}: index format version {header.get('version')!r}; this voxelflow "
                        f"reads version {_VERSION}"
                    )
                names = header.get("fields")
                if not isinstance(names, list) or "path" not in names:
                    raise ParameterError(f"{path}: index header has no field list")
                # an index written before a field existed reads with that field None; its rows
                # lose size and mtime, so that a re-scan reads those files again instead of
                # reusing rows that lack what this version would have read
                stale = not known <= set(names)
                for number, line in enumerate(f, start=2):
                    entry = json.loads(line)
                    if not isinstance(entry, list) or not entry:
                        raise ParameterError(f"{path}, line {number}: not an index entry")
                    kind = entry[0]
                    if kind == "row":
                        if len(entry) != len(names) + 1:
                            raise ParameterError(
                                f"{path}, line {number}: {len(entry) - 1} values for "
                                f"{len(names)} fields"
                            )
                        values = {
                            name: (tuple(v) if name in _TUPLE_FIELDS and v is not None else v)
                            for name, v in zip(names, entry[1:])
                            if name in known
                        }
                        if stale:
                            values.update(size=None, mtime_ns=None)
                        rows.append(InstanceRow(**values))
                    elif kind in issues and len(entry) == 5:
                        issues[kind].append(FileIssue(*entry[1:]))
                    else:
                        raise ParameterError(f"{path}, line {number}: unknown entry {kind!r}")
        except (OSError, EOFError, ValueError, TypeError) as exc:
            if isinstance(exc, (FileNotFoundError, ParameterError)):
                raise
            raise ParameterError(f"{path}: not a readable voxelflow index ({exc})") from exc
        return cls(
            rows, skipped=issues["skipped"], no_pixels=issues["no_pixels"], errors=issues["error"]
        )


def _path_key(item: InstanceRow | FileIssue) -> str:
    return item.path
