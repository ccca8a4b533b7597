"""Limits on render requests, checked before anything is allocated.

A service renders what clients ask for; a request for a 10^6 x 10^6 image or a slab of 10^9
samples must fail at once with a clear error, not after allocating gigabytes. The defaults are
generous for diagnostic use (a 16k x 16k image, 64 Mpixel, 8192 samples per ray) and can be
changed per call (``limits=``) or for the process (assign :data:`DEFAULT_LIMITS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RenderError

__all__ = ["DEFAULT_LIMITS", "RenderLimits", "check_count", "check_image"]


@dataclass(frozen=True)
class RenderLimits:
    """Largest request a render function accepts.

    Attributes
    ----------
    max_side : int
        Pixels along either side of an output image.
    max_pixels : int
        Pixels of one output image (rows x columns).
    max_samples : int
        Samples along one ray (a slab or a projection).
    max_views : int
        Views of a rotating projection.
    """

    max_side: int = 16384
    max_pixels: int = 1 << 26
    max_samples: int = 8192
    max_views: int = 3600

    def __post_init__(self) -> None:
        for name in ("max_side", "max_pixels", "max_samples", "max_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RenderError(f"RenderLimits: {name} must be a positive integer, got {value!r}")


#: the limits used when a call passes none.
DEFAULT_LIMITS = RenderLimits()


def resolve(limits: RenderLimits | None) -> RenderLimits:
    if limits is None:
        # looked up at call time, so assigning DEFAULT_LIMITS changes the process default
        return globals()["DEFAULT_LIMITS"]  # type: ignore[no-any-return]
    if not isinstance(limits, RenderLimits):
        raise RenderError(f"limits must be a RenderLimits, got {type(limits).__name__}")
    return limits


def check_image(size: tuple[int, int], limits: RenderLimits, what: str) -> None:
    """Refuse an output image past the limits."""
    rows, cols = size
    if max(rows, cols) > limits.max_side or rows * cols > limits.max_pixels:
        raise RenderError(
            f"{what}: a {rows} x {cols} image is past the limits (side <= {limits.max_side}, "
            f"pixels <= {limits.max_pixels}); see voxelflow.render.RenderLimits"
        )


def check_count(value: Any, name: str, limit: int, what: str) -> int:
    """A positive integer no larger than `limit`, else RenderError naming `name`."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise RenderError(f"{what}: {name} must be a positive integer, got {value!r}")
    n = int(value)
    if n < 1:
        raise RenderError(f"{what}: {name} must be at least 1, got {n}")
    if n > limit:
        raise RenderError(f"{what}: {name}={n} is past the limit {limit}; see voxelflow.render.RenderLimits")
    return n
