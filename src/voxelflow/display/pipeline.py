"""The grayscale display pipeline as frozen values: Modality LUT -> VOI LUT -> Presentation LUT.

PS3.3 C.11 (condensed in ``shared/reference/display-pipeline.md``): a stored value passes
through the Modality LUT (:class:`Rescale` or a Modality LUT Sequence :class:`LUT`), then one
VOI transformation (a :class:`Window`, a VOI LUT Sequence :class:`LUT`, or an
:class:`AutoWindow` computed from the pixels), then the presentation inversion, and comes out
as an unsigned integer of ``bits`` bits (``0 .. 2**bits - 1``) or, with ``bits=None``, as a
float32 in ``[0, 1]`` without quantisation. :class:`DisplayPipeline` holds the four choices;
:meth:`DisplayPipeline.from_dataset` reads them from a DICOM dataset (top level or an enhanced
object's functional groups), :meth:`DisplayPipeline.to_dict` / :meth:`~DisplayPipeline.from_dict`
carry them as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import DisplayError

__all__ = [
    "AUTO_METHODS",
    "FUNCTIONS",
    "LUT",
    "PRESETS",
    "VOI",
    "AutoWindow",
    "DisplayPipeline",
    "Rescale",
    "Window",
    "parse_function",
    "preset",
    "voi_options",
]

#: VOI LUT Function (0028,1056) values (C.11.2.1.2, C.11.2.1.3).
FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

#: Automatic window methods (see :func:`voxelflow.display.auto_window`).
AUTO_METHODS = ("minmax", "minmax_no_extremes", "percentile", "histogram")

_MAX_LUT_ENTRIES = 65536


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def parse_function(value: Any) -> str:
    """The VOI LUT Function named by `value` ("linear", "LINEAR_EXACT", "linear-exact" ...).

    Raises
    ------
    DisplayError
        If `value` names none of :data:`FUNCTIONS`.
    """
    if isinstance(value, str):
        name = value.strip().upper().replace("-", "_")
        if name in FUNCTIONS:
            return name
    raise DisplayError(
        f"VOI LUT function {value!r} is unknown; expected one of {', '.join(FUNCTIONS)}"
    )


def _finite(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise DisplayError(f"{name} must be a number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise DisplayError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise DisplayError(f"{name} must be finite, got {result}")
    return result


def _integer(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DisplayError(f"{name} must be an integer, got {value!r}")
    return int(value)


def check_bits(bits: Any) -> int | None:
    """`bits` if it is None (float output) or an integer in 1..16, else DisplayError."""
    if bits is None:
        return None
    value = _integer(bits, "bits")
    if not 1 <= value <= 16:
        raise DisplayError(f"bits must be in 1..16 (or None for float output), got {value}")
    return value


@dataclass(frozen=True, kw_only=True)
class Rescale:
    """The Modality LUT as Rescale Slope (0028,1053) and Intercept (0028,1052):
    ``x = slope * stored + intercept`` (C.11.1)."""

    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "slope", _finite(self.slope, "rescale slope"))
        object.__setattr__(self, "intercept", _finite(self.intercept, "rescale intercept"))

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0

    def apply(self, stored: Any) -> np.ndarray:
        """Modality values (float64) of `stored`."""
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in the kernels
            return np.asarray(stored).astype(np.float64) * self.slope + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"type": "rescale", "slope": self.slope, "intercept": self.intercept}


@dataclass(frozen=True, kw_only=True)
class LUT:
    """A Modality LUT or VOI LUT Sequence item (C.11.1.1, C.11.2.1.1).

    Input values below `first_mapped` take the first entry, values at or above
    ``first_mapped + entries`` the last. Entries are unsigned integers of `bits` bits: a
    Modality LUT's entries are modality values; a VOI LUT's are scaled from
    ``0 .. 2**bits - 1`` to the output range.

    `data` accepts any sequence or array of integers; it is kept as little-endian uint16 bytes
    (so pipelines hash and compare quickly); :attr:`table` gives it back as an array.
    """

    first_mapped: int
    bits: int
    data: bytes
    explanation: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_mapped", _integer(self.first_mapped, "LUT first mapped"))
        bits = _integer(self.bits, "LUT bits per entry")
        if not 1 <= bits <= 16:
            raise DisplayError(f"LUT bits per entry must be in 1..16, got {bits}")
        if isinstance(self.data, (bytes, bytearray, memoryview)):
            raw = bytes(self.data)
            if len(raw) % 2:
                raise DisplayError(
                    f"LUT data as bytes must hold uint16 entries, got {len(raw)} bytes"
                )
            table = np.frombuffer(raw, "<u2")
        else:
            values = np.asarray(self.data)
            if values.size == 0:
                raise DisplayError("LUT must have 1..65536 entries, got 0")
            if values.ndim != 1 or values.dtype.kind not in "iu":
                raise DisplayError(
                    f"LUT data must be a 1-D sequence of integers, got {values.dtype} {values.shape}"
                )
            if values.size and (values.min() < 0 or values.max() > 0xFFFF):
                raise DisplayError("LUT data entries must be in 0..65535")
            table = values.astype("<u2")
        if not 1 <= table.size <= _MAX_LUT_ENTRIES:
            raise DisplayError(f"LUT must have 1..65536 entries, got {table.size}")
        top = int(table.max())
        if top > (1 << bits) - 1:
            raise DisplayError(
                f"LUT data holds {top}, more than its {bits} bits per entry allow "
                "(the descriptor is inconsistent with the data)"
            )
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "data", table.tobytes())
        object.__setattr__(self, "explanation", str(self.explanation))

    @property
    def table(self) -> np.ndarray:
        """The entries, a read-only uint16 array."""
        return np.frombuffer(self.data, "<u2").astype(np.uint16, copy=False)

    @property
    def entries(self) -> int:
        return len(self.data) // 2

    @property
    def last_mapped(self) -> int:
        return self.first_mapped + self.entries - 1

    def lookup(self, values: Any) -> np.ndarray:
        """Entries (float64) for input `values`: integers index directly; other values are
        rounded half up first; NaN counts as below the table."""
        values = np.asarray(values)
        if values.dtype.kind in "iub":
            index = values.astype(np.int64) - self.first_mapped
        else:
            with np.errstate(invalid="ignore"):
                rounded = np.floor(values.astype(np.float64) + 0.5)
            rounded = np.where(np.isnan(rounded), -np.inf, rounded)
            index = np.clip(rounded - self.first_mapped, 0, self.entries - 1).astype(np.int64)
        return self.table[np.clip(index, 0, self.entries - 1)].astype(np.float64)

    def apply(self, stored: Any) -> np.ndarray:
        """Modality values (float64) of `stored` through this table as a Modality LUT."""
        return self.lookup(stored)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "lut",
            "first_mapped": self.first_mapped,
            "bits": self.bits,
            "data": self.table.tolist(),
            "explanation": self.explanation,
        }


@dataclass(frozen=True, kw_only=True)
class Window:
    """Window Center (0028,1050) and Width (0028,1051), in modality units (HU for CT), with a
    VOI LUT Function: LINEAR (width >= 1), LINEAR_EXACT or SIGMOID (width > 0)."""

    center: float
    width: float
    function: str = "LINEAR"
    explanation: str = ""

    def __post_init__(self) -> None:
        function = parse_function(self.function)
        center = _finite(self.center, "window center")
        width = _finite(self.width, "window width")
        if function == "LINEAR" and not width >= 1.0:
            raise DisplayError(f"window width must be >= 1 for LINEAR, got {width}")
        if function != "LINEAR" and not width > 0.0:
            raise DisplayError(f"window width must be > 0 for {function}, got {width}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "explanation", str(self.explanation))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "window",
            "center": self.center,
            "width": self.width,
            "function": self.function,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, kw_only=True)
class AutoWindow:
    """A window computed from the pixels' modality values (see
    :func:`voxelflow.display.auto_window`): `method` one of :data:`AUTO_METHODS`, `fraction`
    of the pixels ignored at each end by "histogram", `percentiles` for "percentile"."""

    method: str = "minmax"
    fraction: float = 0.05
    percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self) -> None:
        method = str(self.method).strip().lower().replace("-", "_")
        if method not in AUTO_METHODS:
            raise DisplayError(
                f"automatic window method {self.method!r} is unknown; "
                f"expected one of {', '.join(AUTO_METHODS)}"
            )
        fraction = _finite(self.fraction, "auto window fraction")
        if not 0.0 <= fraction < 0.5:
            raise DisplayError(f"auto window fraction must be in [0, 0.5), got {fraction}")
        try:
            low, high = (_finite(p, "auto window percentiles") for p in self.percentiles)
        except (TypeError, ValueError):
            raise DisplayError(
                f"auto window percentiles must be two numbers, got {self.percentiles!r}"
            ) from None
        if not 0.0 <= low < high <= 100.0:
            raise DisplayError(
                f"auto window percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}"
            )
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "percentiles", (low, high))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "auto",
            "method": self.method,
            "fraction": self.fraction,
            "percentiles": list(self.percentiles),
        }


VOI = Window | LUT | AutoWindow

# Common CT windows, Hounsfield units (center, width): the values radiology references teach
# (e.g. Radiopaedia, "Windowing (CT)").
_PRESET_VALUES: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "temporal_bone": (600.0, 2800.0),
    "soft_tissue": (40.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "abdomen": (50.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
    "spine": (50.0, 250.0),
}

#: Named CT windows in HU, LINEAR: brain, subdural, stroke, temporal_bone, soft_tissue,
#: mediastinum, lung, abdomen, liver, bone, spine.
PRESETS: Mapping[str, Window] = {
    name: Window(center=c, width=w, explanation=name) for name, (c, w) in _PRESET_VALUES.items()
}


def preset(name: str) -> Window:
    """The named CT window of :data:`PRESETS` ("lung", "soft tissue", "Soft-Tissue" ...).

    Raises
    ------
    DisplayError
        If no preset has that name.
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return PRESETS[key]
    except KeyError:
        raise DisplayError(
            f"window preset {name!r} is unknown; known presets: {', '.join(PRESETS)}"
        ) from None


def _modality_from_dict(d: Mapping[str, Any]) -> Rescale | LUT:
    kind = d.get("type")
    if kind == "rescale":
        return Rescale(slope=d.get("slope", 1.0), intercept=d.get("intercept", 0.0))
    if kind == "lut":
        return _lut_from_dict(d)
    raise DisplayError(f"modality type {kind!r} is unknown; expected 'rescale' or 'lut'")


def _lut_from_dict(d: Mapping[str, Any]) -> LUT:
    try:
        return LUT(
            first_mapped=d["first_mapped"],
            bits=d["bits"],
            data=list(d["data"]),
            explanation=d.get("explanation", ""),
        )
    except KeyError as exc:
        raise DisplayError(f"LUT dict is missing {exc.args[0]!r}") from None


def _voi_from_dict(d: Mapping[str, Any]) -> VOI:
    kind = d.get("type")
    if kind == "window":
        try:
            return Window(
                center=d["center"],
                width=d["width"],
                function=d.get("function", "LINEAR"),
                explanation=d.get("explanation", ""),
            )
        except KeyError as exc:
            raise DisplayError(f"window dict is missing {exc.args[0]!r}") from None
    if kind == "lut":
        return _lut_from_dict(d)
    if kind == "auto":
        return AutoWindow(
            method=d.get("method", "minmax"),
            fraction=d.get("fraction", 0.05),
            percentiles=tuple(d.get("percentiles", (1.0, 99.0))),
        )
    raise DisplayError(f"VOI type {kind!r} is unknown; expected 'window', 'lut' or 'auto'")


@dataclass(frozen=True, kw_only=True)
class DisplayPipeline:
    """Stored values to display values: Modality LUT, VOI, presentation, output depth.

    Attributes
    ----------
    modality : Rescale or LUT
        Stored -> modality values (default: identity).
    voi : Window, LUT or AutoWindow
        Modality -> display values; a window and a VOI LUT are alternatives, never both
        (default: ``AutoWindow()``, min/max of the pixels at hand).
    inverse : bool
        Invert after the VOI (``ymax - y``): MONOCHROME1, or Presentation LUT Shape INVERSE.
    bits : int or None
        Output depth 1..16: values ``0 .. 2**bits - 1`` as uint8 (bits <= 8) or uint16;
        None: float32 in ``[0, 1]``, unquantised.

    Integer output is rounded once, at the end, half up: ``floor(y + 0.5)``.
    """

    modality: Rescale | LUT = field(default_factory=Rescale)
    voi: VOI = field(default_factory=AutoWindow)
    inverse: bool = False
    bits: int | None = 8

    def __post_init__(self) -> None:
        if not isinstance(self.modality, (Rescale, LUT)):
            raise DisplayError(
                f"modality must be a Rescale or a LUT, got {type(self.modality).__name__}"
            )
        if not isinstance(self.voi, (Window, LUT, AutoWindow)):
            raise DisplayError(
                f"voi must be a Window, a LUT or an AutoWindow, got {type(self.voi).__name__}"
            )
        if not isinstance(self.inverse, (bool, np.bool_)):
            raise DisplayError(f"inverse must be a bool, got {self.inverse!r}")
        object.__setattr__(self, "inverse", bool(self.inverse))
        object.__setattr__(self, "bits", check_bits(self.bits))

    @property
    def ymax(self) -> float:
        """Largest display value: ``2**bits - 1``, or 1.0 for float output."""
        return 1.0 if self.bits is None else float((1 << self.bits) - 1)

    @property
    def out_dtype(self) -> np.dtype:
        """uint8 (bits <= 8), uint16 (bits <= 16) or float32 (bits None)."""
        if self.bits is None:
            return np.dtype(np.float32)
        return np.dtype(np.uint8 if self.bits <= 8 else np.uint16)

    @property
    def is_resolved(self) -> bool:
        """Whether the VOI is fixed (not an AutoWindow that depends on the pixels)."""
        return not isinstance(self.voi, AutoWindow)

    def resolve(self, data: Any) -> DisplayPipeline:
        """This pipeline with an AutoWindow replaced by the window it computes on `data`
        (see :func:`voxelflow.display.auto_window`); unchanged if the VOI is fixed."""
        from .auto import resolve

        return resolve(self, data)

    def with_voi(self, voi: VOI) -> DisplayPipeline:
        """This pipeline with another VOI transformation."""
        return replace(self, voi=voi)

    def with_bits(self, bits: int | None) -> DisplayPipeline:
        """This pipeline with another output depth."""
        return replace(self, bits=bits)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :meth:`from_dict` reads it back."""
        return {
            "modality": self.modality.to_dict(),
            "voi": self.voi.to_dict(),
            "inverse": self.inverse,
            "bits": self.bits,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DisplayPipeline:
        """The pipeline described by `d` (as :meth:`to_dict` writes it; every key optional).

        Raises
        ------
        DisplayError
            On an unknown type or an invalid value.
        """
        if not isinstance(d, Mapping):
            raise DisplayError(f"a display pipeline dict is needed, got {type(d).__name__}")
        unknown = set(d) - {"modality", "voi", "inverse", "bits"}
        if unknown:
            raise DisplayError(f"unknown display pipeline keys: {', '.join(sorted(unknown))}")
        return cls(
            modality=_modality_from_dict(d["modality"]) if "modality" in d else Rescale(),
            voi=_voi_from_dict(d["voi"]) if "voi" in d else AutoWindow(),
            inverse=d.get("inverse", False),
            bits=d.get("bits", 8),
        )

    @classmethod
    def from_dataset(
        cls, ds: Any, *, frame: int = 0, voi_index: int = 0, bits: int | None = 8
    ) -> DisplayPipeline:
        """The pipeline a DICOM dataset asks for, for one frame.

        Parameters
        ----------
        ds : pydicom.Dataset or mapping
            The dataset (or any mapping of DICOM keywords to values, e.g. volume metadata).
            Read: Rescale Slope / Intercept or the Modality LUT Sequence (top level, or the
            frame's Pixel Value Transformation Sequence in an enhanced object); the VOI
            choices of :func:`voi_options`; Presentation LUT Shape, else MONOCHROME1 ->
            inverse.
        frame : int
            0-based frame, for per-frame functional groups.
        voi_index : int
            Which VOI choice (see :func:`voi_options`: VOI LUTs first, then windows). A
            dataset without any gets ``AutoWindow()`` (index 0).
        bits : int or None
            Output depth.

        Raises
        ------
        DisplayError
            Naming the file and attribute: an invalid window, a LUT inconsistent with its
            descriptor, an unknown Presentation LUT Shape, a colour image, `voi_index` or
            `frame` out of range.
        """
        source = _source_name(ds)
        photometric = str(_get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise DisplayError(
                f"{_where(source)}(0028,0004) Photometric Interpretation {photometric} is not "
                "grayscale: colour images have no grayscale display pipeline"
            )
        frame = _frame_index(ds, frame, source)
        modality = _modality(ds, frame, source)
        options = voi_options(ds, frame=frame)
        index = _integer(voi_index, "voi_index")
        if options:
            if not 0 <= index < len(options):
                raise DisplayError(
                    f"{_where(source)}voi_index {index} out of range: the dataset has "
                    f"{len(options)} VOI choice(s) ({_describe_options(options)})"
                )
            voi: VOI = options[index]
        else:
            if index != 0:
                raise DisplayError(
                    f"{_where(source)}voi_index {index} out of range: the dataset has no "
                    "window and no VOI LUT (index 0 is the automatic window)"
                )
            voi = AutoWindow()
        return cls(
            modality=modality,
            voi=voi,
            inverse=_presentation_inverse(ds, photometric, source),
            bits=bits,
        )


# -- reading datasets ------------------------------------------------------------------------


def _source_name(ds: Any) -> str | None:
    name = getattr(ds, "filename", None)
    return str(name) if isinstance(name, (str, bytes)) or hasattr(name, "__fspath__") else None


def _get(ds: Any, keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except (ValueError, TypeError, OverflowError, KeyError) as exc:
        raise DisplayError(f"{_where(_source_name(ds))}{keyword} cannot be read: {exc}") from None


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _first_item(seq: Any) -> Any:
    items = _values(seq)
    return items[0] if items else None


def _frame_index(ds: Any, frame: Any, source: str | None) -> int:
    index = _integer(frame, "frame")
    try:
        nframes = int(_get(ds, "NumberOfFrames") or 1)
    except (TypeError, ValueError):
        nframes = 1
    if not 0 <= index < max(nframes, 1):
        raise DisplayError(f"{_where(source)}frame {index} out of range: the dataset has {nframes}")
    return index


def _group_items(ds: Any, frame: int, keyword: str) -> list[Any]:
    """The `keyword` sequence's first item from the frame's per-frame functional group, then
    from the shared functional group (PS3.3 C.7.6.16: per-frame overrides shared)."""
    found = []
    per_frame = _values(_get(ds, "PerFrameFunctionalGroupsSequence"))
    if frame < len(per_frame):
        item = _first_item(per_frame[frame].get(keyword))
        if item is not None:
            found.append(item)
    shared = _first_item(_get(ds, "SharedFunctionalGroupsSequence"))
    if shared is not None:
        item = _first_item(shared.get(keyword))
        if item is not None:
            found.append(item)
    return found


def _stored_range(ds: Any) -> tuple[int, int]:
    try:
        bits = int(_get(ds, "BitsStored") or _get(ds, "BitsAllocated") or 16)
        signed = int(_get(ds, "PixelRepresentation") or 0) == 1
    except (TypeError, ValueError):
        bits, signed = 16, False
    bits = min(max(bits, 1), 32)
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _modality(ds: Any, frame: int, source: str | None) -> Rescale | LUT:
    items = _group_items(ds, frame, "PixelValueTransformationSequence")
    holder = items[0] if items else ds
    lut_item = _first_item(_get(ds, "ModalityLUTSequence"))
    if lut_item is not None and not items:
        signed = int(_get(ds, "PixelRepresentation") or 0) == 1
        return _lut_from_item(
            ds,
            lut_item,
            signed_input=signed,
            voi=False,
            source=source,
            where="(0028,3000) Modality LUT Sequence",
        )
    slope = holder.get("RescaleSlope")
    intercept = holder.get("RescaleIntercept")
    if slope is None and intercept is None:
        return Rescale()
    try:
        return Rescale(
            slope=1.0 if slope in (None, "") else slope,
            intercept=0.0 if intercept in (None, "") else intercept,
        )
    except DisplayError as exc:
        raise DisplayError(
            f"{_where(source)}(0028,1052/1053) Rescale Intercept/Slope: {exc}"
        ) from None


def _little_endian(ds: Any) -> bool:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is not None:
        from pydicom.uid import UID

        return bool(UID(str(uid)).is_little_endian)
    encoding = getattr(ds, "original_encoding", (None, None))
    return encoding[1] is not False


def _lut_from_item(
    ds: Any, item: Any, *, signed_input: bool, voi: bool, source: str | None, where: str
) -> LUT:
    """Parse one Modality / VOI LUT Sequence item (C.11.1.1, C.11.2.1.1)."""
    descriptor = _values(item.get("LUTDescriptor"))
    if len(descriptor) != 3:
        raise DisplayError(
            f"{_where(source)}{where}: (0028,3002) LUT Descriptor must hold 3 values, "
            f"got {descriptor!r}"
        )
    try:
        raw = [int(v) & 0xFFFF for v in descriptor]
    except (TypeError, ValueError):
        raise DisplayError(
            f"{_where(source)}{where}: (0028,3002) LUT Descriptor is not numeric: {descriptor!r}"
        ) from None
    entries = raw[0] or _MAX_LUT_ENTRIES  # 0 means 2**16
    # The first mapped value is US or SS by context: signed when the LUT's input may be.
    first = raw[1] - 65536 if signed_input and raw[1] >= 32768 else raw[1]
    bits = raw[2]
    if not 1 <= bits <= 16:
        raise DisplayError(
            f"{_where(source)}{where}: (0028,3002) LUT Descriptor declares {bits} bits per "
            "entry, must be 1..16"
        )
    data = item.get("LUTData")
    if data is None:
        raise DisplayError(f"{_where(source)}{where}: (0028,3006) LUT Data is missing")
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
        if bits <= 8 and len(buf) in (entries, entries + 1) and len(buf) != 2 * entries:
            table = np.frombuffer(buf[:entries], np.uint8)  # 8-bit entries packed in OW
        elif len(buf) in (2 * entries, 2 * entries + 2):
            order = "<" if _little_endian(ds) else ">"
            table = np.frombuffer(buf[: 2 * entries], f"{order}u2")
        else:
            raise DisplayError(
                f"{_where(source)}{where}: (0028,3006) LUT Data holds {len(buf)} bytes; "
                f"(0028,3002) LUT Descriptor says {entries} entries of {bits} bits"
            )
    else:
        values = _values(data)
        if len(values) != entries:
            raise DisplayError(
                f"{_where(source)}{where}: (0028,3006) LUT Data holds {len(values)} entries; "
                f"(0028,3002) LUT Descriptor says {entries}"
            )
        table = np.asarray([int(v) & 0xFFFF for v in values], np.uint16)
    top = int(table.max())
    if voi and bits == 16 and top < 256:
        # Many files declare 16 bits per entry and hold 8 (dcmtk makes the same correction):
        # scaled as 16-bit they would render almost black.
        bits = 8
    if top > (1 << bits) - 1:
        raise DisplayError(
            f"{_where(source)}{where}: (0028,3006) LUT Data holds {top}, more than the {bits} "
            "bits per entry of (0028,3002) LUT Descriptor"
        )
    return LUT(
        first_mapped=first,
        bits=bits,
        data=table.astype(np.uint16),
        explanation=str(item.get("LUTExplanation") or ""),
    )


def _windows_from(holder: Any, source: str | None, where: str) -> list[Window]:
    centers = _values(holder.get("WindowCenter"))
    widths = _values(holder.get("WindowWidth"))
    if not centers or not widths:
        return []
    function = holder.get("VOILUTFunction") or "LINEAR"
    explanations = _values(holder.get("WindowCenterWidthExplanation"))
    windows = []
    # Centers and widths pair by position (C.11.2.1.2); a count mismatch keeps the pairs.
    for k, (c, w) in enumerate(zip(centers, widths)):
        try:
            windows.append(
                Window(
                    center=c,
                    width=w,
                    function=str(function),
                    explanation=str(explanations[k]) if k < len(explanations) else "",
                )
            )
        except DisplayError as exc:
            raise DisplayError(
                f"{_where(source)}{where} (0028,1050/1051) Window Center/Width value {k + 1}: {exc}"
            ) from None
    return windows


def voi_options(ds: Any, *, frame: int = 0) -> list[Window | LUT]:
    """The VOI choices a dataset offers for one frame, in index order: the VOI LUT Sequence
    items first (when a file has both, its windows usually approximate the LUT), then the
    Window Center/Width pairs. An enhanced object's Frame VOI LUT Sequence (per-frame, else
    shared) takes the place of the top-level attributes.

    Raises
    ------
    DisplayError
        Naming the file and attribute of an invalid window or LUT.
    """
    source = _source_name(ds)
    frame = _frame_index(ds, frame, source)
    groups = _group_items(ds, frame, "FrameVOILUTSequence")
    holder = groups[0] if groups else ds
    where = "(0028,9132) Frame VOI LUT Sequence" if groups else ""
    modality = _modality(ds, frame, source)
    if isinstance(modality, LUT):
        signed = False  # Modality LUT output is unsigned (C.11.1.1.1)
    else:
        lo, hi = _stored_range(ds)
        signed = min(modality.slope * lo, modality.slope * hi) + modality.intercept < 0
    luts = [
        _lut_from_item(
            ds,
            item,
            signed_input=signed,
            voi=True,
            source=source,
            where=f"(0028,3010) VOI LUT Sequence item {k + 1}",
        )
        for k, item in enumerate(_values(holder.get("VOILUTSequence")))
    ]
    return [*luts, *_windows_from(holder, source, where)]


def _describe_options(options: Sequence[Window | LUT]) -> str:
    parts = []
    for k, option in enumerate(options):
        if isinstance(option, LUT):
            parts.append(f"{k}: VOI LUT {option.explanation!r}".rstrip())
        else:
            parts.append(
                f"{k}: window C{option.center:g}/W{option.width:g} {option.explanation}".rstrip()
            )
    return "; ".join(parts)


def _presentation_inverse(ds: Any, photometric: str, source: str | None) -> bool:
    shape = _get(ds, "PresentationLUTShape")
    if shape not in (None, ""):
        value = str(shape).strip().upper()
        if value not in ("IDENTITY", "INVERSE"):
            raise DisplayError(
                f"{_where(source)}(2050,0020) Presentation LUT Shape {shape!r} is unknown; "
                "expected IDENTITY or INVERSE"
            )
        return value == "INVERSE"
    # C.11.4 / C.7.6.3.1.2: MONOCHROME1 shows the minimum value as white.
    return photometric == "MONOCHROME1"
