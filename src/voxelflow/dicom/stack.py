"""One stack of slices: order along the normal, spacing, and geometry findings.

A *slice* here is one 2-D image with its own geometry: a classic single-frame instance or one
frame of a multi-frame instance. Slices are ordered by their Image Position (Patient)
projected on the slice normal, never by Instance Number; the affine's slice column is the
mean step between consecutive positions (so a gantry tilt is a shear, as the data really is).
Findings carry a stable ``code`` and magnitudes, so a cohort pipeline can filter on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..geometry import affine_from_dicom, slice_normal

__all__ = ["Finding", "SliceRef", "StackGeometry", "analyse_stack", "POSITION_TOLERANCE_MM"]

#: Positions closer than this along the normal are the same position (DICOM DS values are
#: written with limited precision; scanners jitter by micrometres).
POSITION_TOLERANCE_MM = 0.01
#: Steps may differ by this fraction of the typical step before spacing counts as non-uniform.
SPACING_TOLERANCE = 0.01
#: Tilt below this many degrees is rounding noise, not a tilted gantry.
TILT_TOLERANCE_DEG = 0.01


#: What each component of :attr:`SliceRef.temporal_key` means, in order.
TEMPORAL_KEY_NAMES = ("temporal_position", "trigger_time", "acquisition_number", "acquisition_time", "instance_number")


@dataclass(frozen=True)
class Finding:
    """A machine-readable geometry/value finding: a stable code plus its magnitudes."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


@dataclass(frozen=True)
class SliceRef:
    """Where one 2-D image comes from and its geometry (the planner's unit of work)."""

    path: str
    frame: int | None  # None: a single-frame instance; else the 0-based frame
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    sop_instance_uid: str = ""
    instance_number: int | None = None
    rescale: tuple[float, float] = (1.0, 0.0)  # stored -> the volume's values
    # the public Rescale Slope / Intercept where `rescale` is another transform of the stored
    # values (Philips precise values); None where `rescale` is the public one
    display_rescale: tuple[float, float] | None = None
    temporal_key: tuple[Any, ...] = ()  # what distinguishes repeats of a position (time, b-value ...)
    dimension_index: tuple[int, ...] = ()
    thickness: float | None = None  # Slice Thickness, mm: the step of a one-slice stack
    # a tile of a Siemens MOSAIC frame: (first row, first column, rows, columns); rows and
    # columns above are then the tile's
    tile: tuple[int, int, int, int] | None = None


@dataclass
class StackGeometry:
    """The result of :func:`analyse_stack`: slices in volume order and what was found."""

    slices: list[SliceRef]  # volume order; for 4-D, t-major then z
    affine: np.ndarray
    shape: tuple[int, ...]  # (z,) or (t, z)
    findings: list[Finding]
    positions_mm: np.ndarray  # distance along the normal of each z position
    grid_index: np.ndarray  # each z position's slot on the uniform grid (gaps skip slots)
    fourth_axis: dict[str, Any] | None = None


def _normal_distance(s: SliceRef, normal: np.ndarray) -> float:
    return float(np.asarray(s.position) @ normal)


def _repeat_order(slices: Sequence[SliceRef], groups: list[list[int]]) -> Any:
    """The sort key of the repeats of one position, as dcm2niix orders classic files (measured
    with its v1.0.20260724 wheel).

    Instance Numbers that run through one volume before the next (time-major, as most
    scanners number them) order the volumes, whatever the Temporal Position Identifier,
    Acquisition Number or Time say. Instance Numbers that run through the repeats of a slice
    first (slice-major: consecutive at every position, as Philips numbers them) say nothing
    about time: the temporal key orders those, and the frames of one file."""
    numbers = [[slices[i].instance_number for i in g] for g in groups]
    slice_major = all(
        None not in n and len(set(n)) == len(n) and max(n) - min(n) == len(n) - 1  # type: ignore[type-var,operator]
        for n in numbers
    )
    if slice_major or any(None in n for n in numbers):
        return lambda i: slices[i].temporal_key
    return lambda i: (slices[i].instance_number, slices[i].temporal_key)


def analyse_stack(slices: list[SliceRef]) -> StackGeometry:
    """Order `slices` along their normal and describe the stack's geometry.

    Slices must share orientation, rows, columns and pixel spacing (the grouping step splits
    on those). Repeated positions form a 4-D stack (t, z) when every position repeats the same
    number of times with distinct temporal keys (instance numbers alone included: the planner
    tells copies from time points by their pixels); otherwise they are reported as
    ``duplicate_position`` and the first occurrence is kept here — the planner never writes
    such a stack (it drops exact copies, splits by acquisition, or refuses the series).
    """
    ref = slices[0]
    normal = slice_normal(ref.orientation)
    findings: list[Finding] = []

    dist = np.array([_normal_distance(s, normal) for s in slices])
    order = sorted(range(len(slices)), key=lambda i: (dist[i], slices[i].temporal_key, slices[i].instance_number or 0))
    # cluster equal positions
    groups: list[list[int]] = []
    for i in order:
        if groups and abs(dist[i] - dist[groups[-1][0]]) < POSITION_TOLERANCE_MM:
            groups[-1].append(i)
        else:
            groups.append([i])

    fourth_axis = None
    counts = {len(g) for g in groups}
    if len(counts) == 1 and counts != {1}:
        # every position repeats equally often and the repeats are told apart by their
        # temporal key (time point, trigger time, echo, b-value, acquisition ...): one 4-D
        # stack, t ranked by that key at each position
        repeats = counts.pop()
        order = _repeat_order(slices, groups)
        groups = [sorted(g, key=order) for g in groups]
        distinct = all(len({slices[i].temporal_key for i in g}) == repeats for g in groups)
        if distinct:
            first = [slices[i].temporal_key for i in groups[0]]
            varying = [c for c in range(len(first[0])) if len({k[c] for k in first}) > 1]
            if varying:
                fourth_axis = {
                    "size": repeats,
                    "meaning": TEMPORAL_KEY_NAMES[varying[0]],
                    "values": [k[varying[0]] for k in first],
                }
    if fourth_axis is None and any(len(g) > 1 for g in groups):
        dups = [g for g in groups if len(g) > 1]
        findings.append(
            Finding(
                "duplicate_position",
                f"{sum(len(g) - 1 for g in dups)} slice(s) repeat a position already in the stack; "
                "the first of each is kept",
                {
                    "positions_mm": [round(float(dist[g[0]]), 4) for g in dups],
                    "dropped": [slices[i].path for g in dups for i in g[1:]],
                },
            )
        )
        groups = [[g[0]] for g in groups]

    z_first = [slices[g[0]] for g in groups]
    pos = np.array([dist[g[0]] for g in groups])
    nz = len(groups)
    if nz > 1:
        p0 = np.asarray(z_first[0].position, dtype=np.float64)
        p1 = np.asarray(z_first[-1].position, dtype=np.float64)
        steps = np.diff(pos)
        typical = float(np.median(steps))
        smallest = float(steps.min())
        # gaps: steps that are (close to) whole multiples >= 2 of the smallest step
        ratios = steps / smallest
        gap_at = [int(k) for k in np.nonzero(ratios > 1.5)[0]]
        missing: list[int] = []
        if gap_at and all(abs(r - round(r)) < 0.05 for r in ratios[gap_at]):
            missing = [int(round(r)) - 1 for r in ratios[gap_at]]
            findings.append(
                Finding(
                    "missing_slices",
                    f"{sum(missing)} slice(s) missing in {len(gap_at)} gap(s)",
                    {"after_index": gap_at, "count": missing, "step_mm": round(smallest, 6)},
                )
            )
        elif steps.max() - steps.min() > SPACING_TOLERANCE * max(abs(typical), 1e-6):
            findings.append(
                Finding(
                    "nonuniform_spacing",
                    f"slice steps vary from {steps.min():.4f} to {steps.max():.4f} mm",
                    {"min_step_mm": round(float(steps.min()), 6), "max_step_mm": round(float(steps.max()), 6)},
                )
            )
        # the affine's step is one grid slot: the span over every slot, gaps included
        slots = nz - 1 + sum(missing)
        step = (p1 - p0) / slots
        cos = abs(float(step @ normal)) / max(float(np.linalg.norm(step)), 1e-12)
        tilt = float(np.degrees(np.arccos(min(1.0, cos))))
        if tilt > TILT_TOLERANCE_DEG:
            findings.append(
                Finding("gantry_tilt", f"slices are sheared by {tilt:.3f} degrees (gantry tilt)", {"degrees": round(tilt, 6)})
            )
        grid = np.concatenate([[0], np.cumsum(np.rint(steps / smallest).astype(int))]) if missing else np.arange(nz)
    else:
        # one slice: no step between positions; its thickness, as dcm2niix takes it (1 mm
        # when the file gives none)
        thickness = z_first[0].thickness
        step = normal * (thickness if thickness is not None and math.isfinite(thickness) and thickness > 0 else 1.0)
        grid = np.arange(nz)
    affine = affine_from_dicom(ref.orientation, z_first[0].position, ref.pixel_spacing, step)

    rescales = {slices[i].rescale for g in groups for i in g}
    if len(rescales) > 1:
        slopes = sorted({r[0] for r in rescales})
        intercepts = sorted({r[1] for r in rescales})
        findings.append(
            Finding(
                "varying_rescale",
                "Rescale Slope/Intercept differ between slices; values are stored as modality values",
                {"slopes": slopes[:8], "intercepts": intercepts[:8], "distinct": len(rescales)},
            )
        )

    if fourth_axis:
        ordered = [slices[g[t]] for t in range(fourth_axis["size"]) for g in groups]
        shape: tuple[int, ...] = (fourth_axis["size"], nz)
    else:
        ordered = [slices[g[0]] for g in groups]
        shape = (nz,)
    return StackGeometry(ordered, affine, shape, findings, pos, grid, fourth_axis)
