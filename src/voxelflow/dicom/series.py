"""From an index of instances to volume plans, and from a plan to a Volume.

Grouping follows what makes a stack impossible to hold as one volume: instances group by
Series Instance UID, then split on orientation, rows/columns, pixel spacing, image type and
echo; repeated positions become a 4-D axis when the repeats are regular (time points, echoes,
diffusion directions), else they split by acquisition. Every split records its reason.
Geometry findings come from :mod:`.stack`; the policies for tilt, non-uniform spacing and
gaps are explicit arguments, never silent.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ParameterError, VoxelflowError
from ..geometry import slice_normal
from ..volume import Volume
from .decode import decode
from .stack import Finding, SliceRef, StackGeometry, analyse_stack

__all__ = ["PHILIPS_SCALINGS", "GeometryPolicy", "SeriesError", "VolumePlan", "build_volume", "plan_volumes"]

#: Values of Philips MR images: "precise" (the private MR Scale Slope applied, dcm2niix's
#: default ``-p y``) or "display" (the public Rescale only, dcm2niix ``-p n``).
PHILIPS_SCALINGS = ("precise", "display")
TILT_POLICIES = ("keep", "correct")
NONUNIFORM_POLICIES = ("refuse", "resample")
GAP_POLICIES = ("split", "fill")


class SeriesError(VoxelflowError, ValueError):
    """A series cannot become a volume under the chosen policies; names the series and why."""


@dataclass(frozen=True)
class GeometryPolicy:
    """What to do with tilted, non-uniform and gapped stacks.

    tilt : "keep" keeps the sheared affine (exact, but not every tool handles shear);
        "correct" resamples each slice in-plane onto an orthogonal grid.
    nonuniform : "refuse" reports the series as failed; "resample" interpolates linearly onto
        a uniform grid at the smallest step.
    gaps : "split" writes each contiguous run as its own volume; "fill" keeps one volume and
        interpolates the missing slices linearly (recorded in ``meta["filled_slices"]``).
    """

    tilt: str = "keep"
    nonuniform: str = "refuse"
    gaps: str = "split"

    def __post_init__(self) -> None:
        for name, allowed in (("tilt", TILT_POLICIES), ("nonuniform", NONUNIFORM_POLICIES), ("gaps", GAP_POLICIES)):
            if getattr(self, name) not in allowed:
                raise ParameterError(f"{name} policy must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass
class VolumePlan:
    """One volume to build: its slices in order, geometry, metadata and findings."""

    key: str
    series_instance_uid: str
    geometry: StackGeometry
    meta: dict[str, Any]
    split_reason: str | None = None
    findings: list[Finding] = field(default_factory=list)
    # whether build_volume has read the first slice's display pipeline into meta["display"]
    _display_read: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        ref = self.geometry.slices[0]
        return (*self.geometry.shape, ref.rows, ref.columns)


def _get(row: Any, name: str, default: Any = None) -> Any:
    # a misnamed field must fail loudly, so only a missing *value* takes the default
    value = getattr(row, name)
    return default if value is None else value


def _rescale(slope: Any, intercept: Any, invalid: Any, where: str) -> tuple[float, float]:
    """Rescale Slope / Intercept as numbers (1, 0 when absent). A value that is present but 0,
    NaN, infinite or not a number refuses the series: any stand-in would be a silent guess at
    every modality value (HU) of it."""
    out = []
    for name, tag, value, default in (("Rescale Slope", "(0028,1053)", slope, 1.0),
                                      ("Rescale Intercept", "(0028,1052)", intercept, 0.0)):
        field = name.lower().replace(" ", "_")
        if field in (invalid or ()):
            raise SeriesError(f"invalid_rescale: {where}: {name} {tag} is not a number")
        if value is None:
            out.append(default)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SeriesError(f"invalid_rescale: {where}: {name} {tag} is {str(value)[:40]!r}, not a number") from None
        if not math.isfinite(number) or (field == "rescale_slope" and number == 0.0):
            raise SeriesError(f"invalid_rescale: {where}: {name} {tag} is {number!r}"
                              + (" (a zero slope maps every value to the intercept)" if number == 0.0 else ""))
        out.append(number)
    return out[0], out[1]


def _is_philips(row: Any) -> bool:
    return "PHILIPS" in str(_get(row, "manufacturer", "")).upper()


def _philips_precise(rescale: tuple[float, float], scale_slope: Any, invalid: Any, where: str,
                     scaling: str) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """The transform of the stored values and the display rescale it replaces (None: it is the
    display rescale). Precise values are ``(SV * RS + RI) / (RS * SS)`` (Chenevert et al. 2014,
    PMC3998685), computed in float32 as dcm2niix's PhilipsPrecise computes them so that the
    NIfTI scl_slope / scl_inter agree to the bit; dcm2niix ignores Scale Intercept (2005,100D),
    which Philips writes as -RI/RS, so does this. A Scale Slope present but 0, NaN, infinite or
    not a number refuses the series: dcm2niix then silently writes display values, a thousand
    times off the precise ones of the neighbouring series."""
    if scaling != "precise":
        return rescale, None
    if "philips_scale_slope" in (invalid or ()):
        raise SeriesError(f"invalid_rescale: {where}: Philips MR Scale Slope (2005,100E) is not a number "
                          "(use philips_scaling='display' to keep the display values)")
    if scale_slope is None:
        return rescale, None
    ss = np.float32(scale_slope)
    if not np.isfinite(ss) or ss == 0:
        raise SeriesError(f"invalid_rescale: {where}: Philips MR Scale Slope (2005,100E) is {float(scale_slope)!r}"
                          + (" (a zero slope has no precise values)" if ss == 0 else ""))
    rs, ri = np.float32(rescale[0]), np.float32(rescale[1])
    with np.errstate(all="ignore"):
        l0 = ri / (rs * ss)
        l1 = (rs + ri) / (rs * ss)
    slope, intercept = float(np.float32(l1 - l0)), float(l0)
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0.0:
        raise SeriesError(f"invalid_rescale: {where}: Philips MR Scale Slope (2005,100E) {float(ss)!r} with Rescale "
                          f"Slope {rescale[0]!r} gives no finite precise values")
    if (slope, intercept) == rescale:
        return rescale, None
    return (slope, intercept), rescale


def _values(row: Any, slope: Any, intercept: Any, invalid: Any, where: str, scaling: str,
            scale_slope: Any = None) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """A slice's (transform of its stored values, display rescale replaced or None)."""
    rescale = _rescale(slope, intercept, invalid, where)
    if not _is_philips(row):
        return rescale, None
    return _philips_precise(rescale, scale_slope if scale_slope is not None else _get(row, "philips_scale_slope"),
                            invalid, where, scaling)


def _stacking(path: str) -> tuple[float | None, list[float] | None]:
    """Spacing Between Slices and Grid Frame Offset Vector of a file, in one read; None for
    what is absent or unreadable. The scan keeps neither: only the few stacks that need them
    (one slice, plain multi-frame files, images without a position) read them here."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SpacingBetweenSlices", "GridFrameOffsetVector"])
    except Exception:  # noqa: BLE001 - unreadable values leave the thickness as the step
        return None, None
    spacing = offsets = None
    try:
        value = float(ds.SpacingBetweenSlices) if "SpacingBetweenSlices" in ds else None
        spacing = value if value is not None and math.isfinite(value) and value > 0 else None
    except Exception:  # noqa: BLE001, S110 - pydicom converts lazily: an unknown VR raises
        pass  # NotImplementedError, a wrong length its own exception (voxelflow.testing.fuzz)
    try:
        vector = ds.get("GridFrameOffsetVector")
        if vector is not None:
            values = [float(v) for v in vector]
            offsets = values if all(math.isfinite(v) for v in values) else None
    except Exception:  # noqa: BLE001, S110 - as above
        pass
    return spacing, offsets


def _thickness(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _rounded(values: Any, ndigits: int) -> tuple[float, ...]:
    return tuple(round(float(v), ndigits) for v in (values or ()))


def _num(value: Any) -> float:
    # NaN never equals itself, which would make two absent keys "distinct": use -inf
    try:
        return float(value) if value is not None else -math.inf
    except (TypeError, ValueError):
        return -math.inf


def _temporal_key(row: Any) -> tuple[Any, ...]:
    """Orders repeats of one position; names in :data:`.stack.TEMPORAL_KEY_NAMES`."""
    return (
        _num(_get(row, "temporal_position_identifier")),
        _num(_get(row, "trigger_time")),
        _num(_get(row, "acquisition_number")),
        str(_get(row, "acquisition_time", "")),
        _num(_get(row, "instance_number")),
    )


def _slice_ref(row: Any, scaling: str) -> SliceRef:
    values, display = _values(row, row.rescale_slope, row.rescale_intercept, row.invalid, str(row.path), scaling)
    return SliceRef(
        path=str(row.path),
        frame=None,
        position=tuple(float(v) for v in row.image_position_patient),  # type: ignore[arg-type]
        orientation=tuple(float(v) for v in row.image_orientation_patient),
        pixel_spacing=tuple(float(v) for v in (row.pixel_spacing or (1.0, 1.0))),  # type: ignore[arg-type]
        rows=int(row.rows),
        columns=int(row.columns),
        sop_instance_uid=str(_get(row, "sop_instance_uid", "")),
        instance_number=_get(row, "instance_number"),
        rescale=values,
        display_rescale=display,
        thickness=row.slice_thickness,
        temporal_key=_temporal_key(row),
    )


def _frame_step(row: Any, spacing: float | None) -> float:
    """The step between frames or files placed without positions: Spacing Between Slices,
    else Slice Thickness, else 1 mm (as dcm2niix)."""
    if spacing is None and row.slice_thickness is not None and math.isfinite(row.slice_thickness) and row.slice_thickness > 0:
        spacing = float(row.slice_thickness)
    return spacing or 1.0


def _classic_refs(row: Any, notes: list[str], scaling: str) -> list[tuple[Any, SliceRef]]:
    """(row, SliceRef) of each slice of an instance with a position and orientation: its
    frames, its MOSAIC tiles (what had to be assumed goes to `notes`), or itself."""
    if (row.number_of_frames or 1) > 1:
        return [(row, ref) for ref in _frame_refs(row, scaling)]
    if row.mosaic:
        from .mosaic import mosaic_slice_refs  # imports this module

        return [(row, ref) for ref in mosaic_slice_refs(_slice_ref(row, scaling), notes)]
    return [(row, _slice_ref(row, scaling))]


def _frame_refs(row: Any, scaling: str) -> list[SliceRef]:
    """The frames of a plain multi-frame instance that has a position and orientation (RT
    Dose, NM, a US or XA volume): frame f lies at its Grid Frame Offset Vector entry along the
    normal where the file lists one per frame (PS3.3 C.8.8.3.2), else f slice steps along."""
    base = _slice_ref(row, scaling)
    frames = int(row.number_of_frames)
    spacing, offsets = _stacking(str(row.path))
    if offsets is None or len(offsets) != frames:
        step = _frame_step(row, spacing)
        offsets = [f * step for f in range(frames)]
    normal = slice_normal(base.orientation)
    origin = np.asarray(base.position, dtype=np.float64)
    return [
        replace(base, frame=f, instance_number=f, position=tuple(float(v) for v in origin + offsets[f] * normal))
        for f in range(frames)
    ]


def _assumed_refs(rows: list[Any], scaling: str) -> list[tuple[Any, SliceRef]]:
    """Images without Image Position / Orientation (Patient) (secondary captures, ultrasound,
    anonymised files), placed as dcm2niix places them: axial (or their own orientation),
    the stack centred on the origin, files in Instance Number order and each file's frames in
    turn, one slice step (Spacing Between Slices, Slice Thickness, else 1 mm) apart."""
    ordered = sorted(rows, key=lambda r: (r.instance_number if r.instance_number is not None else 0, str(r.path)))
    first = ordered[0]
    if first.image_orientation_patient is not None:
        orientation = tuple(float(v) for v in first.image_orientation_patient)
        normal = slice_normal(orientation)
    else:  # axial, as dcm2niix takes such images
        orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        normal = slice_normal(orientation)
    spacing = tuple(float(v) for v in (first.pixel_spacing or (1.0, 1.0)))
    if not all(math.isfinite(v) and v > 0 for v in spacing) or len(spacing) != 2:
        spacing = (1.0, 1.0)  # a Pixel Spacing of 0 (seen in the wild) says nothing: 1 mm, as dcm2niix
    step = _frame_step(first, _stacking(str(first.path))[0])
    slices = [(row, f if (row.number_of_frames or 1) > 1 else None) for row in ordered
              for f in range(int(row.number_of_frames or 1))]
    iop = np.asarray(orientation)
    row_dir, col_dir = iop[:3], iop[3:]
    out = []
    for k, (row, frame) in enumerate(slices):
        if row.rows is None or row.columns is None:
            raise SeriesError(f"{row.path}: no Rows / Columns")
        values, display = _values(row, row.rescale_slope, row.rescale_intercept, row.invalid, str(row.path), scaling)
        centre = (-(row.columns - 1) / 2 * spacing[1] * row_dir - (row.rows - 1) / 2 * spacing[0] * col_dir
                  + (k - (len(slices) - 1) / 2) * step * normal)
        ref = SliceRef(
            path=str(row.path), frame=frame, position=tuple(float(v) for v in centre), orientation=orientation,  # type: ignore[arg-type]
            pixel_spacing=spacing,  # type: ignore[arg-type]
            rows=int(row.rows), columns=int(row.columns), sop_instance_uid=str(_get(row, "sop_instance_uid", "")),
            instance_number=k, rescale=values, display_rescale=display,
            temporal_key=(-math.inf, -math.inf, -math.inf, "", float(k)), thickness=step,
        )
        out.append((row, ref))
    return out


def _first_item(ds: Any, keyword: str) -> Any:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _frame_value(shared: Any, frame: Any, group: str, attribute: str) -> Any:
    """A functional-group attribute: the per-frame value, else the shared one (PS3.3 C.7.6.16)."""
    for source in (frame, shared):
        item = _first_item(source, group) if source is not None else None
        if item is not None and attribute in item:
            return item.get(attribute)
    return None


_FRAME_TYPE_GROUPS = ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "XAXRFFrameCharacteristicsSequence",
                      "PETFrameTypeSequence", "MRSpectroscopyFrameTypeSequence")


def _frame_kind(shared: Any, frame: Any) -> tuple[str, ...] | None:
    """A frame's Frame Type (plus its Complex Image Component where given), or None."""
    for group in _FRAME_TYPE_GROUPS:
        frame_type = _frame_value(shared, frame, group, "FrameType")
        if frame_type is not None:
            component = _frame_value(shared, frame, group, "ComplexImageComponent")
            kind = tuple(str(v) for v in _as_list(frame_type))
            return kind + ((str(component),) if component else ())
    return None


def _frame_windows(frame: Any) -> tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...]] | None:
    """A frame's own Window Center / Width / Explanation from its per-frame Frame VOI LUT
    Sequence (None when it has none: the shared values, which the scan read, apply).

    The precedence of :meth:`voxelflow.display.DisplayPipeline.from_dataset`: a per-frame
    item replaces the shared one whole (no mix of per-frame centers and shared widths).
    """
    item = _first_item(frame, "FrameVOILUTSequence")
    if item is None:
        return None
    try:
        centers = tuple(float(v) for v in _as_list(item.get("WindowCenter")))
        widths = tuple(float(v) for v in _as_list(item.get("WindowWidth")))
        names = tuple(str(v) for v in _as_list(item.get("WindowCenterWidthExplanation")))
    except (TypeError, ValueError):
        return None  # the display pipeline reports a malformed window when it is rendered
    return centers, widths, names


def _private_frame_item(frame: Any) -> Any:
    """The first item of a frame's Philips private per-frame sequence (2005,140F), or None;
    Philips writes the frame's rescale and MR Scale Slope there (and some files, after a PACS
    or an anonymiser, only there)."""
    try:
        seq = frame.get(0x2005140F) if frame is not None else None
        items = seq.value if seq is not None else None
        return items[0] if items and isinstance(items[0], type(frame)) else None
    except Exception:  # noqa: BLE001 - an unreadable private sequence is no sequence
        return None


def _enhanced_refs(row: Any, scaling: str) -> list[tuple[Any, SliceRef]] | None:
    """(row, SliceRef) per frame of an Enhanced multi-frame instance (functional groups); None
    when it has no per-frame groups (some writers label a plain multi-frame file with an
    enhanced SOP class: it is then placed as one).

    The row is the instance's, or a copy with the frame's own windows where the frame has a
    per-frame Frame VOI LUT Sequence (MR scanners window each frame).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(row.path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt files
        raise SeriesError(f"{row.path}: cannot read the functional groups: {exc}") from exc
    from .scan import philips_scale

    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    philips = _is_philips(row)
    if not frames:
        return None
    if len(frames) != int(row.number_of_frames or 1):
        raise SeriesError(
            f"{row.path}: {len(frames)} per-frame functional groups for {row.number_of_frames} frames"
        )
    pairs = []
    for f, item in enumerate(frames):
        position = _frame_value(shared, item, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _frame_value(shared, item, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _frame_value(shared, item, "PixelMeasuresSequence", "PixelSpacing")
        thickness = _frame_value(shared, item, "PixelMeasuresSequence", "SliceThickness")
        if position is None or orientation is None:
            raise SeriesError(f"{row.path}: frame {f} has no plane position/orientation")
        # the geometry multiplies these as 3- and 6-vectors: another count raised numpy's
        # ValueError out of the planner (found by voxelflow.testing.fuzz)
        for keyword, value, count in (("ImagePositionPatient", position, 3),
                                      ("ImageOrientationPatient", orientation, 6)):
            given = _as_list(value)
            if len(given) != count:
                raise SeriesError(f"{row.path}: frame {f} {keyword} has {len(given)} values, "
                                  f"not {count}")
        slope = _frame_value(shared, item, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _frame_value(shared, item, "PixelValueTransformationSequence", "RescaleIntercept")
        private = _private_frame_item(item) if philips else None
        scale_slope = None
        frame_invalid: tuple[str, ...] = ()
        if private is not None:
            if slope is None and intercept is None:
                slope, intercept = private.get("RescaleSlope"), private.get("RescaleIntercept")
            found = philips_scale(private)
            scale_slope = found.get("philips_scale_slope")
            if scale_slope is not None and not isinstance(scale_slope, float):
                frame_invalid, scale_slope = ("philips_scale_slope",), None
        values, display = _values(row, slope, intercept, frame_invalid, f"{row.path} frame {f}", scaling, scale_slope)
        content = _first_item(item, "FrameContentSequence")
        temporal = content.get("TemporalPositionIndex") if content is not None else None
        echo = _frame_value(shared, item, "MREchoSequence", "EffectiveEchoTime")
        bvalue = _frame_value(shared, item, "MRDiffusionSequence", "DiffusionBValue")
        windows = _frame_windows(item)
        frame_row = row
        if scale_slope is not None and scaling == "display":
            # left unapplied: the frame's row keeps it so the volume's finding can say so
            frame_row = replace(frame_row, philips_scale_slope=scale_slope)
        if windows is not None and windows != (
            tuple(_as_list(row.window_center)), tuple(_as_list(row.window_width)), tuple(_as_list(row.window_explanation))
        ):
            frame_row = replace(
                frame_row, window_center=windows[0], window_width=windows[1], window_explanation=windows[2]
            )
        # the frame's own kind (magnitude / phase / real / imaginary, a B0 map) and echo: frames
        # of different kinds or echoes become separate volumes, as dcm2niix writes them, never
        # one volume mixing them
        kind = _frame_kind(shared, item)
        if kind is not None and kind != tuple(_as_list(row.image_type)):
            frame_row = replace(frame_row, image_type=kind)
        if echo is not None and not row.echo_numbers:
            try:
                frame_row = replace(frame_row, echo_time=float(echo))
            except (TypeError, ValueError):
                pass
        pairs.append((
            frame_row,
            SliceRef(
                path=str(row.path),
                frame=f,
                position=tuple(float(v) for v in position),  # type: ignore[arg-type]
                orientation=tuple(float(v) for v in orientation),
                pixel_spacing=tuple(float(v) for v in (spacing or (1.0, 1.0))),  # type: ignore[arg-type]
                rows=int(row.rows),
                columns=int(row.columns),
                sop_instance_uid=str(row.sop_instance_uid),
                instance_number=f,
                rescale=values,
                display_rescale=display,
                thickness=_thickness(thickness),
                # (temporal position, trigger time, acquisition, acquisition time, instance) as for
                # classic files; echo and b-value repeats of a position sort by the spare slots
                temporal_key=(_num(temporal), _num(echo), _num(bvalue), "", float(f)),
                dimension_index=tuple(int(v) for v in (content.get("DimensionIndexValues") or ())) if content is not None else (),
            ),
        ))
    return pairs


def _split_key(row: Any, ref: SliceRef) -> tuple[tuple[str, Any], ...]:
    return (
        ("orientation", _rounded(ref.orientation, 4)),
        ("rows/columns", (ref.rows, ref.columns)),
        ("pixel spacing", _rounded(ref.pixel_spacing, 4)),
        ("image type", tuple(_as_list(_get(row, "image_type")))),
        # GE says magnitude / phase / real / imaginary in a private tag only (0043,xx2F)
        ("private image type", _get(row, "private_image_kind")),
        ("echo", (tuple(row.echo_numbers or ()), row.echo_time)),
        # a colour map among grayscale images (a Siemens colour FA map in a DWI series) is a
        # volume of its own: never one array mixing one- and three-sample slices
        ("samples per pixel", _get(row, "samples_per_pixel", 1) or 1),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


def _windows(row: Any) -> list[dict[str, Any]]:
    """A row's Window Center / Width pairs as meta["windows"] holds them."""
    centers = _as_list(_get(row, "window_center", ()))
    widths = _as_list(_get(row, "window_width", ()))
    names = _as_list(_get(row, "window_explanation", ()))
    return [
        {"center": float(c), "width": float(w), "explanation": str(names[i]) if i < len(names) else ""}
        for i, (c, w) in enumerate(zip(centers, widths))
    ]


def _value_factor(ref: SliceRef) -> float:
    """Precise over display value of a slice: ``1 / (RS * SS)`` (1 where no other transform
    replaced the display rescale). Precise values are display values times it, with no offset."""
    if ref.display_rescale is None:
        return 1.0
    return ref.rescale[0] / ref.display_rescale[0]


def _scaled_windows(windows: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """Window Center / Width (PS3.3 C.11.2.1.2: in Modality LUT output units, the display
    values) in the units of values that are the display values times `factor`."""
    if factor == 1.0:
        return windows
    return [{**w, "center": w["center"] * factor, "width": w["width"] * abs(factor)} for w in windows]


def _meta(pairs: Sequence[tuple[Any, SliceRef]], geometry: StackGeometry) -> dict[str, Any]:
    first = pairs[0][0]
    # the files' windows are in display units: in the units of the volume's values here
    windows = _scaled_windows(_windows(first), _value_factor(geometry.slices[0]))
    rescales = {s.rescale for s in geometry.slices}
    uniform = len(rescales) == 1
    slope, intercept = next(iter(rescales)) if uniform else (None, None)
    # geometry.slices holds the planner's SliceRef objects (a subset, reordered)
    row_of = {id(ref): row for row, ref in pairs}
    by_path = {str(row.path): row for row, _ in pairs}
    slice_windows = [
        _scaled_windows(_windows(row_of[id(s)] if id(s) in row_of else by_path.get(s.path, first)), _value_factor(s))
        for s in geometry.slices
    ]
    meta = {
        "modality": _get(first, "modality", ""),
        "study_instance_uid": _get(first, "study_instance_uid", ""),
        "series_instance_uid": _get(first, "series_instance_uid", ""),
        "series_number": _get(first, "series_number"),
        "frame_of_reference_uid": _get(first, "frame_of_reference_uid", ""),
        "sop_instance_uids": [s.sop_instance_uid for s in geometry.slices],
        "rescale": {"slope": slope, "intercept": intercept} if uniform else None,
        "values": "stored" if uniform else "modality",
        "windows": windows,
        "photometric": _get(first, "photometric_interpretation", ""),
        # what kind of image (ORIGINAL/DERIVED, M/P/R/I, a B0 map ...): volumes of one series
        # split by kind are told apart by it
        "image_type": [str(v) for v in _as_list(_get(first, "image_type"))],
        "findings": [f.to_dict() for f in geometry.findings],
        "axes": ["t", "z", "y", "x"] if geometry.fourth_axis else ["z", "y", "x"],
        "fourth_axis": geometry.fourth_axis,
    }
    displays = [s.display_rescale for s in geometry.slices]
    if any(d is not None for d in displays):
        # the public rescale, kept so that the display pipeline still shows display values
        # (the store keeps both transforms; "rescale" is the one the values went through)
        distinct = {d or s.rescale for d, s in zip(displays, geometry.slices)}
        display = next(iter(distinct)) if len(distinct) == 1 else None
        meta["philips_scaling"] = {
            "values": "precise",
            "display_rescale": None if display is None else {"slope": display[0], "intercept": display[1]},
            "scale_slopes": sorted({round(1.0 / (_value_factor(s) * (s.display_rescale or s.rescale)[0]), 9)
                                    for s in geometry.slices})[:8],
        }
    # per-slice windows (MR scanners window each slice), in volume order: only where they vary
    if any(w != slice_windows[0] for w in slice_windows):
        meta["slice_windows"] = slice_windows
    # the frame of each slice within its instance, where some slice is one frame of several
    if any(s.frame is not None for s in geometry.slices):
        meta["frames"] = [int(s.frame or 0) for s in geometry.slices]
    return meta


def plan_volumes(
    rows: Iterable[Any], policy: GeometryPolicy | None = None, *, philips_scaling: str = "precise"
) -> tuple[list[VolumePlan], list[tuple[str, str]]]:
    """Group index rows into volume plans.

    `philips_scaling` chooses the values of Philips images that carry an MR Scale Slope
    (2005,100E): "precise" (default, as dcm2niix writes them) or "display" (the public
    Rescale only, as dcm2niix ``-p n``); see :data:`PHILIPS_SCALINGS`.

    Returns
    -------
    plans, failures
        failures: (series instance UID, reason) for series that cannot become a volume under
        `policy` (e.g. non-uniform spacing with ``nonuniform="refuse"``).
    """
    policy = policy or GeometryPolicy()
    if philips_scaling not in PHILIPS_SCALINGS:
        raise ParameterError(f"philips_scaling must be one of {PHILIPS_SCALINGS}, got {philips_scaling!r}")
    by_series: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_series[str(_get(row, "series_instance_uid", ""))].append(row)

    plans: list[VolumePlan] = []
    failures: list[tuple[str, str]] = []
    for series_uid in sorted(by_series):
        series_rows = by_series[series_uid]
        stacks: dict[tuple[Any, ...], list[tuple[Any, SliceRef]]] = defaultdict(list)
        refused: SeriesError | None = None
        notes: list[str] = []
        unplaced: list[Any] = []  # images without a position: placed once the series is known
        for row in series_rows:
            try:
                row_refs = _enhanced_refs(row, philips_scaling) if row.enhanced else None
                if row_refs is None:
                    if row.image_position_patient is None or row.image_orientation_patient is None:
                        unplaced.append(row)
                        continue
                    row_refs = _classic_refs(row, notes, philips_scaling)
            except SeriesError as exc:
                if str(exc).startswith("invalid_rescale"):
                    refused = exc  # the file cannot be left out: the whole series is refused
                    break
                failures.append((series_uid, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - one file must not end the batch
                # pydicom converts a damaged file's values lazily, raising anything (a
                # struct.error inside a functional group, a ValueError for a position that
                # is not a number: found by voxelflow.testing.fuzz)
                reason = f"{row.path}: cannot read the frames' geometry: {type(exc).__name__}: {exc}"
                failures.append((series_uid, reason))
                continue
            for frame_row, ref in row_refs:
                stacks[_split_key(frame_row, ref)].append((frame_row, ref))
        # what had to be assumed about some files: a finding on every volume of the series
        assumed: list[Finding] = []
        if unplaced and refused is None:
            try:
                placed = _assumed_refs(unplaced, philips_scaling)
            except VoxelflowError as exc:  # the geometry's ParameterError too (fuzz-found)
                failures.append((series_uid, str(exc)))
                placed = []
            for frame_row, ref in placed:
                stacks[_split_key(frame_row, ref)].append((frame_row, ref))
            if placed:
                assumed.append(Finding(
                    "assumed_geometry",
                    f"{len(unplaced)} file(s) without Image Position/Orientation (Patient): placed as dcm2niix places "
                    "them (axial, centred on the origin, in Instance Number order, one slice thickness or 1 mm apart)",
                    {"files": sorted(str(r.path) for r in unplaced)},
                ))
        if notes:
            assumed.append(Finding("mosaic_assumed", f"{len(notes)} MOSAIC file(s) read without their CSA Image "
                                   f"Header Info ({notes[0].split(': ', 1)[-1]})",
                                   {"files": sorted({x.split(': ')[0] for x in notes})}))
        if refused is not None:
            failures.append((series_uid, f"series refused: {refused}"))
            continue
        keys = list(stacks)
        reasons = []
        if len(keys) > 1:
            for name_index, (name, _) in enumerate(keys[0]):
                if len({k[name_index][1] for k in keys}) > 1:
                    reasons.append(name)
        for n, key in enumerate(keys):
            pairs = sorted(stacks[key], key=lambda p: (str(p[0].path), p[1].frame or 0))
            try:
                made = _plan_stack(series_uid, n, pairs, policy, ", ".join(reasons) or None)
                for plan in made:
                    _check_affine(plan, pairs[0][1].path)
            except VoxelflowError as exc:
                # SeriesError, and the geometry's ParameterError for an orientation that is
                # not two orthogonal unit vectors (found by voxelflow.testing.fuzz)
                failures.append((series_uid, str(exc)))
                continue
            for plan in made:
                _philips_finding(plan, [r for r, _ in pairs], philips_scaling)
                plan.findings.extend(assumed)
                plan.meta["findings"].extend(f.to_dict() for f in assumed)
            plans.extend(made)
    return plans, failures


def _check_affine(plan: VolumePlan, path: str) -> None:
    """Refuse a plan whose affine is not finite and invertible: a slice step of 1e308 mm made
    one that the store met only when it wrote the OME-Zarr transform (a LinAlgError; found
    by voxelflow.testing.fuzz)."""
    affine = np.asarray(plan.geometry.affine, dtype=float)
    with np.errstate(all="ignore"):
        # the store solves for the origin in the unit axis directions: a 1e308 mm slice step
        # is finite but its norm is not, and huge steps hide axes that are nearly parallel
        norms = np.linalg.norm(affine[:3, :3], axis=0)
        directions = affine[:3, :3] / norms
        det = np.linalg.det(directions) if np.isfinite(directions).all() else np.nan
    if not np.isfinite(affine).all() or not np.isfinite(det) or abs(det) < 1e-6:
        raise SeriesError(
            f"{path}: the volume's affine {affine[:3, :3].round(6).tolist()} is not finite and "
            "invertible ((0028,0030) Pixel Spacing, the slice spacing or thickness, or (0020,0037) "
            "Image Orientation (Patient) is zero, huge or degenerate)"
        )


def _pixels(ref: SliceRef) -> bytes | None:
    """The slice's stored values, to tell a copy from a time point (None: not comparable)."""
    if ref.tile is not None:
        return None
    try:
        return decode(ref.path, frames=None if ref.frame is None else [ref.frame]).tobytes()
    except VoxelflowError:
        return None


def _without_copies(pairs: list[tuple[Any, SliceRef]]) -> tuple[list[tuple[Any, SliceRef]], list[str]]:
    """`pairs` less the exact copies of a slice: the same SOP Instance UID and frame, or, at the
    same position and time point (temporal key but for the Instance Number), the same stored
    values. Returns the kept pairs and the paths dropped."""
    kept: list[tuple[Any, SliceRef]] = []
    dropped: list[str] = []
    seen_uids: set[tuple[str, int | None]] = set()
    by_place: dict[tuple[Any, ...], list[tuple[SliceRef, bytes | None]]] = defaultdict(list)
    normal = None
    for row, ref in pairs:
        name = (ref.sop_instance_uid, ref.frame)
        if ref.sop_instance_uid and name in seen_uids:
            dropped.append(ref.path)
            continue
        seen_uids.add(name)
        if normal is None:
            normal = slice_normal(ref.orientation)
        place = (round(float(np.asarray(ref.position) @ normal), 3), ref.temporal_key[:-1])
        others = by_place[place]
        if others:
            mine = _pixels(ref)
            for other, theirs in others:
                if theirs is None:
                    theirs = _pixels(other)
                if mine is not None and mine == theirs:
                    dropped.append(ref.path)
                    break
            else:
                others.append((ref, mine))
                kept.append((row, ref))
            continue
        others.append((ref, None))
        kept.append((row, ref))
    return kept, dropped


def _repeats(geometry: StackGeometry) -> str:
    """Where a stack's positions repeat, for a refusal naming them."""
    finding = next(f for f in geometry.findings if f.code == "duplicate_position")
    positions = finding.details.get("positions_mm", [])
    shown = ", ".join(f"{p:g}" for p in positions[:8]) + (" ..." if len(positions) > 8 else "")
    return f"{len(positions)} position(s) repeat unevenly or with equal time keys (at {shown} mm along the normal)"


def _plan_stack(
    series_uid: str, n: int, pairs: list[tuple[Any, SliceRef]], policy: GeometryPolicy, split_reason: str | None
) -> list[VolumePlan]:
    # repeated positions are a 4-D axis, an acquisition split, or exact copies; never slices
    # silently dropped: anything else refuses the series
    if len(pairs) == 1 and pairs[0][1].frame is None and pairs[0][1].tile is None:
        # one slice: its step is Spacing Between Slices where given (as dcm2niix takes it),
        # else its thickness; the scan keeps no spacing, so it is read here, for this file only
        spacing = _stacking(pairs[0][1].path)[0]
        if spacing is not None:
            pairs = [(pairs[0][0], replace(pairs[0][1], thickness=spacing))]
    geometry = analyse_stack([ref for _, ref in pairs])
    codes = {f.code for f in geometry.findings}
    copies: list[str] = []
    if "duplicate_position" in codes or (geometry.fourth_axis or {}).get("meaning") == "instance_number":
        # repeats told apart by nothing, or by the Instance Number alone: copies of one slice
        # (a file sent twice, a copy under a new UID) are dropped, and counted
        unique, copies = _without_copies(pairs)
        if copies:
            pairs = unique
            geometry = analyse_stack([ref for _, ref in pairs])
            codes = {f.code for f in geometry.findings}
    if copies:
        geometry.findings.insert(0, Finding(
            "duplicate_instances",
            f"{len(copies)} instance(s) dropped as exact copies of another (same SOP Instance UID, or the "
            "same position, time point and stored values)",
            {"count": len(copies), "dropped": copies},
        ))
    if "duplicate_position" in codes:
        # repeats that are not a regular 4-D axis: try splitting by acquisition
        acquisitions: dict[Any, list[tuple[Any, SliceRef]]] = defaultdict(list)
        for row, ref in pairs:
            acquisitions[row.acquisition_number].append((row, ref))
        if len(acquisitions) > 1:
            parts = []
            for acq, acq_pairs in sorted(acquisitions.items(), key=lambda kv: str(kv[0])):
                sub = analyse_stack([ref for _, ref in acq_pairs])
                if "duplicate_position" in {f.code for f in sub.findings}:
                    break
                parts.append((acq_pairs, sub))
            else:
                return [
                    _make_plan(series_uid, f"{n}.{a}", acq_pairs, sub, policy, _join(split_reason, "acquisition"))
                    for a, (acq_pairs, sub) in enumerate(parts)
                ]
        raise SeriesError(f"series {series_uid}: {_repeats(geometry)}; refused rather than drop slices "
                          "(neither a 4-D series with the same number of time points at every position, "
                          "nor copies of one instance)")
    if "nonuniform_spacing" in codes and policy.nonuniform == "refuse":
        finding = next(f for f in geometry.findings if f.code == "nonuniform_spacing")
        raise SeriesError(f"series {series_uid}: {finding.message} (nonuniform='refuse'; use 'resample')")
    if "missing_slices" in codes and policy.gaps == "split":
        if geometry.fourth_axis:
            raise SeriesError(f"series {series_uid}: gaps in a 4-D stack cannot be split; use gaps='fill'")
        runs: list[list[int]] = [[0]]
        for z in range(1, len(geometry.grid_index)):
            if geometry.grid_index[z] - geometry.grid_index[z - 1] > 1:
                runs.append([])
            runs[-1].append(z)
        row_of = {id(ref): row for row, ref in pairs}
        gap = next(f for f in geometry.findings if f.code == "missing_slices")
        plans = []
        for part, run in enumerate(runs):
            refs = [geometry.slices[z] for z in run]
            sub = analyse_stack(refs)
            sub.findings.insert(0, gap)
            run_pairs = [(row_of[id(ref)], ref) for ref in refs]
            plans.append(_make_plan(series_uid, f"{n}.{part}", run_pairs, sub, policy, _join(split_reason, "missing slices")))
        return plans
    return [_make_plan(series_uid, str(n), pairs, geometry, policy, split_reason)]


def _philips_finding(plan: VolumePlan, rows: Sequence[Any], scaling: str) -> None:
    """Name the Philips values a volume holds, where its files carry an MR Scale Slope."""
    scaled = plan.meta.get("philips_scaling")
    if scaled is not None:
        finding = Finding(
            "philips_precise",
            "Philips MR Scale Slope (2005,100E) applied: the values are precise floating-point values "
            "(SV*RS+RI)/(RS*SS), as dcm2niix writes by default (-p y); the display pipeline keeps the "
            "display rescale, windows are converted",
            {"scale_slopes": scaled["scale_slopes"], "display_rescale": scaled["display_rescale"]},
        )
    elif scaling == "display" and any(_is_philips(r) and r.philips_scale_slope is not None for r in rows):
        plan.meta["philips_scaling"] = {"values": "display"}
        finding = Finding(
            "philips_display",
            "Philips MR Scale Slope (2005,100E) not applied (philips_scaling='display'): the values are display "
            "values SV*RS+RI, as dcm2niix -p n writes them",
            {},
        )
    else:
        return
    plan.findings.append(finding)
    plan.meta["findings"].append(finding.to_dict())


_UID_KEY = re.compile(r"[0-9]+(\.[0-9]+)*")


def _key_part(series_uid: str) -> str:
    """The series' part of its volume keys: the UID itself when it is one (the service finds
    a series' volumes by it), else a path-safe name made from it plus a digest (so that "a/b",
    "..", NUL bytes or 64 dots never become folders, and two odd UIDs never share a key)."""
    if len(series_uid) <= 64 and _UID_KEY.fullmatch(series_uid):
        return series_uid
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]", "_", series_uid)).strip("._-")[:64].lstrip("_") or "series"
    return f"{cleaned}_{hashlib.sha1(series_uid.encode('utf-8', 'replace')).hexdigest()[:12]}"


def _join(a: str | None, b: str) -> str:
    return f"{a}, {b}" if a else b


def _make_plan(
    series_uid: str,
    suffix: str,
    pairs: list[tuple[Any, SliceRef]],
    geometry: StackGeometry,
    policy: GeometryPolicy,
    split_reason: str | None,
) -> VolumePlan:
    meta = _meta(pairs, geometry)
    meta["split_reason"] = split_reason
    meta["policy"] = {"tilt": policy.tilt, "nonuniform": policy.nonuniform, "gaps": policy.gaps}
    key = f"{_key_part(series_uid)}/{suffix}"
    return VolumePlan(key, series_uid, geometry, meta, split_reason, list(geometry.findings))


def _display(plan: VolumePlan) -> dict[str, Any] | None:
    """The display pipeline of the plan's first slice, as a dict (see
    :meth:`~voxelflow.display.DisplayPipeline.from_dataset`), from its header: Modality LUT
    (Sequence or rescale; the identity where the volume holds modality values), VOI (VOI LUT
    Sequence, else windows with their VOI LUT Function), Presentation LUT Shape / MONOCHROME1.
    None where the header cannot be read or has no grayscale pipeline: the volume then keeps
    only "rescale", "windows" and "photometric"."""
    import pydicom

    from ..display import DisplayPipeline, Rescale, Window

    ref = plan.geometry.slices[0]
    try:
        ds = pydicom.dcmread(ref.path, stop_before_pixels=True)
        pipeline = DisplayPipeline.from_dataset(ds, frame=ref.frame or 0)
    except Exception:  # noqa: BLE001 - a display header never fails an ingest
        return None
    if plan.meta.get("values") == "modality":
        # the volume holds slope * stored + intercept already: never rescale twice
        pipeline = replace(pipeline, modality=Rescale())
    elif ref.display_rescale is not None:
        pipeline = replace(pipeline, modality=Rescale(slope=ref.rescale[0], intercept=ref.rescale[1]))
    factor = _value_factor(ref)
    if factor != 1.0 and isinstance(pipeline.voi, Window):
        # the file's window is in display units (the Modality LUT's output, C.11.2.1.2): the
        # pipeline works in the volume's units (Philips precise values, display times factor),
        # so that every reader of the metadata (rescale, windows, display) agrees with it; the
        # display rescale stays in meta["philips_scaling"]. LINEAR's width-1 term means nothing
        # below a width of 1: LINEAR_EXACT there
        width = pipeline.voi.width * abs(factor)
        function = "LINEAR_EXACT" if pipeline.voi.function == "LINEAR" and width < 1.0 else pipeline.voi.function
        pipeline = replace(pipeline, voi=replace(pipeline.voi, center=pipeline.voi.center * factor,
                                                 width=width, function=function))
    return pipeline.to_dict()


def build_volume(plan: VolumePlan, *, backend: str | None = None, lazy: bool = False) -> Volume:
    """Decode the plan's slices into one in-memory Volume (stored or modality values).

    With ``lazy=True`` the volume's array is a :class:`~voxelflow.dicom.slices.SliceStack`
    that decodes slices when indexed (a store writes it slab by slab, never holding it whole)
    wherever the stored values are the volume's; a volume that needs them all at once
    (modality values, filled gaps, resampling, tilt correction) is decoded in memory anyway.
    """
    from .decode import decode
    from .slices import SliceStack, decode_slices

    geometry = plan.geometry
    ref = geometry.slices[0]
    first = decode(ref.path, frames=ref.frame, backend=backend)
    if first.ndim == 3 and first.shape[-1] == 3:
        return _build_colour(plan, first, backend)
    if first.ndim != 2:
        raise SeriesError(f"{ref.path}: volumes need one- or three-sample images, got shape {first.shape}")
    if not plan._display_read:  # once per plan (one header read), kept in the plan's meta
        display = _display(plan)
        if display is not None:
            plan.meta["display"] = display
        plan._display_read = True
    modality = plan.meta["values"] == "modality"
    fill, resample, correct = _policies_that_apply(plan)
    if lazy and not (modality or fill or resample or correct):
        shape = (*geometry.shape, ref.rows, ref.columns)
        return Volume(SliceStack(geometry.slices, shape, first.dtype, backend=backend), geometry.affine, dict(plan.meta))
    n = len(geometry.slices)
    stored = np.empty((n, ref.rows, ref.columns), first.dtype)
    decode_slices(geometry.slices, stored, backend=backend, first=first)
    if modality:
        slopes = np.array([s.rescale[0] for s in geometry.slices])
        intercepts = np.array([s.rescale[1] for s in geometry.slices])
        # int32 when every slope and intercept is a whole number: exact and half the size
        exact = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
        dtype = np.int32 if exact else np.float32
        values = np.empty(stored.shape, dtype)
        for k in range(n):
            np.multiply(stored[k], slopes[k], out=values[k], casting="unsafe")
            values[k] += dtype(intercepts[k]) if exact else np.float32(intercepts[k])
        stored = values
    meta = dict(plan.meta)
    array, affine = _apply_policies(plan, stored.reshape(*geometry.shape, ref.rows, ref.columns), meta)
    return Volume(array, affine, meta)


def _apply_policies(plan: VolumePlan, array: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """`array` (``(..., z, y, x)``) and its affine after the plan's gap, spacing and tilt
    policies (what applies: :func:`_policies_that_apply`); filled slices noted in `meta`."""
    geometry = plan.geometry
    fill, resample, correct = _policies_that_apply(plan)
    affine = geometry.affine
    if fill:
        array, filled = _fill_gaps(array, geometry.grid_index)
        meta["filled_slices"] = filled
    if resample:
        array, affine = _resample_uniform(array, geometry)
    if correct:
        array, affine = _correct_tilt(array, affine)
    return array, affine


def _build_colour(plan: VolumePlan, first: np.ndarray, backend: str | None) -> Volume:
    """A colour series as a (z, y, x, 3) uint8 RGB volume (YBR decoded to RGB): the layout
    dcm2niix's RGB24 NIfTI has, with the sample axis last and named "c" in the metadata.

    Colour images have no Modality LUT (PS3.3 C.11.1 applies to grayscale): the samples are
    kept as they are. Gaps, spacing and tilt policies interpolate each sample plane as they
    would a grayscale volume."""
    from .slices import decode_slices

    geometry = plan.geometry
    ref = geometry.slices[0]
    if first.dtype != np.uint8:
        raise SeriesError(
            f"{ref.path}: a colour volume holds 8-bit RGB samples; this series has {first.dtype} "
            f"samples (Bits Allocated {8 * first.dtype.itemsize}), which neither voxelflow nor NIfTI's RGB24 stores"
        )
    if geometry.fourth_axis:
        axis = geometry.fourth_axis
        raise SeriesError(f"{ref.path}: a 4-D colour series ({axis.get('size')} volumes by {axis.get('meaning')}) "
                          "is not supported: colour volumes are 3-D (z, y, x, c)")
    n = len(geometry.slices)
    stored = np.empty((n, ref.rows, ref.columns, 3), np.uint8)
    decode_slices(geometry.slices, stored, backend=backend, first=first)
    meta = dict(plan.meta, axes=["z", "y", "x", "c"], samples_per_pixel=3, photometric="RGB",
                source_photometric=plan.meta.get("photometric", ""), rescale=None, values="stored")
    # no "display" in meta: the grayscale display pipeline does not apply to RGB (nor is it
    # read); the samples are the policies' leading axis, (c, z, y, x), as time is
    planes, affine = _apply_policies(plan, np.moveaxis(stored, -1, 0), meta)
    return Volume(np.ascontiguousarray(np.moveaxis(planes, 0, -1)), affine, meta)


def _policies_that_apply(plan: VolumePlan) -> tuple[bool, bool, bool]:
    """Whether the plan's gaps are filled, its spacing resampled, its tilt corrected."""
    codes = {f.code for f in plan.geometry.findings}
    policy = plan.meta.get("policy", {})
    return (
        "missing_slices" in codes and policy.get("gaps") == "fill",
        "nonuniform_spacing" in codes and policy.get("nonuniform") == "resample",
        "gantry_tilt" in codes and policy.get("tilt") == "correct",
    )


def _interpolate_z(array: np.ndarray, z_from: np.ndarray, z_to: np.ndarray) -> np.ndarray:
    """Linear interpolation along the z axis (axis -3) from sample positions to new ones."""
    out = np.empty((*array.shape[:-3], len(z_to), *array.shape[-2:]), array.dtype if array.dtype.kind == "f" else np.float32)
    for n, z in enumerate(z_to):
        hi = int(np.clip(np.searchsorted(z_from, z), 1, len(z_from) - 1))
        lo = hi - 1
        w = 0.0 if z_from[hi] == z_from[lo] else (z - z_from[lo]) / (z_from[hi] - z_from[lo])
        w = float(np.clip(w, 0.0, 1.0))
        out[..., n, :, :] = array[..., lo, :, :] * (1 - w) + array[..., hi, :, :] * w
    if array.dtype.kind != "f":
        out = np.rint(out).astype(array.dtype)
    return out


def _fill_gaps(array: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, list[int]]:
    full = np.arange(int(grid[-1]) + 1)
    filled = sorted(set(full.tolist()) - set(grid.tolist()))
    return _interpolate_z(array, grid.astype(np.float64), full.astype(np.float64)), filled


def _resample_uniform(array: np.ndarray, geometry: StackGeometry) -> tuple[np.ndarray, np.ndarray]:
    pos = geometry.positions_mm
    step = float(np.min(np.diff(pos)))
    count = int(np.floor((pos[-1] - pos[0]) / step + 1e-6)) + 1
    targets = pos[0] + step * np.arange(count)
    affine = geometry.affine.copy()
    direction = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
    affine[:3, 0] = direction * step / max(abs(float(direction @ _normal(affine))), 1e-12)
    return _interpolate_z(array, pos, targets), affine


def _normal(affine: np.ndarray) -> np.ndarray:
    n = np.cross(affine[:3, 2], affine[:3, 1])
    return n / np.linalg.norm(n)


def _correct_tilt(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift each slice in-plane so the slice axis becomes the normal (linear interpolation).

    The grid grows along the drift so that every slice keeps all of its pixels (as dcm2niix's
    tilt correction does): a slice shifted by k rows needs k rows more, never a cropped image.
    """
    normal = -_normal(affine) if float(_normal(affine) @ affine[:3, 0]) < 0 else _normal(affine)
    step = affine[:3, 0]
    along = float(step @ normal)
    shear = step - along * normal  # in-plane drift per slice, mm
    col_axis = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    row_axis = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    dj = float(shear @ col_axis) / np.linalg.norm(affine[:3, 1])  # rows of drift per slice
    di = float(shear @ row_axis) / np.linalg.norm(affine[:3, 2])
    nz, ny, nx = array.shape[-3:]
    # a pixel (k, j, i) lies at origin + k*step + j*col + i*row = origin + k*along*normal +
    # (j + k*dj)*col + (i + k*di)*row: on the orthogonal grid it is at (k, j + k*dj, i + k*di),
    # so output (k, J, I) samples input (k, J - k*dj, I - k*di), and slice k covers J in
    # [k*dj, ny-1 + k*dj]: the grid spans the union over k
    spans = []
    for drift, n in ((dj, ny), (di, nx)):
        total = (nz - 1) * drift
        lo = math.floor(min(0.0, total) + 1e-6)
        hi = math.ceil(max(n - 1.0, n - 1.0 + total) - 1e-6)
        spans.append((lo, hi - lo + 1))
    (j0, ny_out), (i0, nx_out) = spans
    out = np.empty((*array.shape[:-2], ny_out, nx_out), np.float32)
    jj, ii = np.meshgrid(np.arange(j0, j0 + ny_out, dtype=np.float64), np.arange(i0, i0 + nx_out, dtype=np.float64),
                         indexing="ij")
    fill = float(array.min()) if array.size else 0.0
    for k in range(nz):
        out[..., k, :, :] = _bilinear(array[..., k, :, :], jj - k * dj, ii - k * di, fill)
    fixed = affine.copy()
    fixed[:3, 0] = along * normal
    fixed[:3, 3] = affine[:3, 3] + j0 * affine[:3, 1] + i0 * affine[:3, 2]
    if array.dtype.kind != "f":
        out = np.rint(out).astype(array.dtype)
    return out, fixed


def _bilinear(img: np.ndarray, j: np.ndarray, i: np.ndarray, fill: float) -> np.ndarray:
    ny, nx = img.shape[-2:]
    j0 = np.clip(np.floor(j).astype(int), 0, ny - 1)
    i0 = np.clip(np.floor(i).astype(int), 0, nx - 1)
    j1 = np.clip(j0 + 1, 0, ny - 1)
    i1 = np.clip(i0 + 1, 0, nx - 1)
    wj = np.clip(j - j0, 0, 1)
    wi = np.clip(i - i0, 0, 1)
    inside = (j >= 0) & (j <= ny - 1) & (i >= 0) & (i <= nx - 1)
    value = (img[..., j0, i0] * (1 - wj) * (1 - wi) + img[..., j0, i1] * (1 - wj) * wi
             + img[..., j1, i0] * wj * (1 - wi) + img[..., j1, i1] * wj * wi)
    # outside the slice: the series' lowest value (air), the same for every slice
    return np.where(inside, value, fill)
