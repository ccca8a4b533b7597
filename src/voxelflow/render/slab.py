"""Slabs: how thick, how sampled, how reduced.

A slab of thickness ``T`` mm centred on a plane is sampled at ``n`` points along the plane's
normal, at the centres of ``n`` equal parts of the thickness (the midpoint rule):

    offset_s = (s - (n - 1) / 2) * T / n      for s = 0 .. n - 1,

so ``T = 20, n = 20`` samples every 1 mm from -9.5 to +9.5 mm, and each sample stands for 1 mm
of the slab. ``n`` is given (``samples=``) or follows from a sampling distance ``d``
(``spacing=``, default: the volume's smallest voxel spacing) as ``ceil(T / d)``, the step
then being ``T / n <= d``. The samples are reduced per pixel by the mode: ``"max"`` (MIP),
``"min"`` (MinIP), ``"mean"`` (average intensity projection) or ``"sum"`` (ray sum, as in a
DRR). Samples that fall outside the volume are left out, as a ray caster does; a pixel none of
whose samples is inside gets the fill value.

VTK's ``vtkImageReslice`` describes the same slab as ``SetSlabNumberOfSlices(n)`` and
``SetSlabSliceSpacingFraction(f)`` (slices ``f`` output-slice spacings apart, centred on the
output slice) with ``SetSlabMode`` MAX / MIN / MEAN / SUM. The voxelflow slab ``(T, n)`` is VTK's
``n`` slices at ``T / n`` mm apart; VTK states no thickness (its first and last slices are
``(n - 1) * T / n`` apart, which is also the distance between voxelflow's outermost samples).
VTK's optional trapezoid integration (half weights at the ends) has no voxelflow equivalent:
the midpoint rule already weights every sample equally. VTK also fills outside samples with
its background level, which changes a MinIP near the volume's edge; voxelflow skips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import RenderError
from .limits import RenderLimits, check_count

__all__ = ["MODES", "Slab", "parse_mode"]

#: mode names (and aliases) -> kernel mode.
MODES = {
    "max": "max",
    "mip": "max",
    "min": "min",
    "minip": "min",
    "mean": "mean",
    "average": "mean",
    "avg": "mean",
    "sum": "sum",
}


def parse_mode(mode: object, what: str) -> str:
    key = str(mode).strip().lower() if isinstance(mode, str) else None
    if key not in MODES:
        raise RenderError(f"{what}: mode must be one of {', '.join(sorted(set(MODES)))}, got {mode!r}")
    return MODES[key]


@dataclass(frozen=True)
class Slab:
    """A thick slab: full `thickness` in mm, reduced by `mode`, sampled by `samples` or
    `spacing` (mm) — see the module docstring for the exact sample positions."""

    thickness: float
    mode: str = "max"
    samples: int | None = None
    spacing: float | None = None

    def __post_init__(self) -> None:
        t = _positive(self.thickness, "thickness")
        object.__setattr__(self, "thickness", t)
        object.__setattr__(self, "mode", parse_mode(self.mode, "Slab"))
        if self.samples is not None and self.spacing is not None:
            raise RenderError("Slab: give samples or spacing, not both")
        if self.spacing is not None:
            object.__setattr__(self, "spacing", _positive(self.spacing, "spacing"))
        if self.samples is not None and (
            isinstance(self.samples, bool) or not hasattr(self.samples, "__index__") or int(self.samples) < 1
        ):
            raise RenderError(f"Slab: samples must be a positive integer, got {self.samples!r}")

    def plan(self, default_spacing: float, limits: RenderLimits) -> tuple[int, float]:
        """(number of samples, step in mm), checked against the limits before any work."""
        if self.samples is not None:
            n = check_count(self.samples, "samples", limits.max_samples, "Slab")
        else:
            d = self.spacing if self.spacing is not None else default_spacing
            # the 1e-9 keeps 20 mm / 1 mm at 20 samples despite float noise
            ratio = self.thickness / d
            if not ratio <= limits.max_samples:  # also an infinite ratio (a tiny spacing)
                raise RenderError(
                    f"Slab: samples (thickness / spacing = {ratio:.6g}) is past the limit of "
                    f"{limits.max_samples}"
                )
            wanted = math.ceil(ratio - 1e-9)
            n = check_count(max(1, wanted), "samples (thickness / spacing)", limits.max_samples, "Slab")
        return n, self.thickness / n

    @staticmethod
    def offsets(n: int, step: float) -> np.ndarray:
        """Sample offsets along the normal, mm."""
        return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * step


def _positive(value: object, name: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RenderError(f"Slab: {name} must be a positive number of mm, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise RenderError(f"Slab: {name} must be a positive number of mm, got {value!r}")
    return v
