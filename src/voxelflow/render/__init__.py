"""Rendering views of volumes: MPR, thick slabs, projections, curved reformats, image files.

- :func:`mpr`: a plane (:class:`voxelflow.Plane`) or a thick :class:`Slab` around it (MIP,
  MinIP, mean, sum), in modality values or through a display pipeline.
- :mod:`.chunks`: stored volumes are read only in the chunks a view touches, from the pyramid
  level that the output spacing needs.
- :func:`project`, :func:`rotating_projection`: whole-volume projections from any direction,
  and a turntable of them (animated PNG / GIF).
- :func:`curved_mpr`: curved planar reformation along a centerline (straightened, stretched).
- :func:`save_image`, :func:`save_animation`: PNG (8/16-bit), JPEG, animated PNG and GIF files;
  :func:`encode_image`, :func:`encode_animation` the same as bytes; :func:`apply_viewport`.
- :class:`RenderLimits`: requests past these fail before allocating.
"""

from __future__ import annotations

from ..geometry import Plane
from .curved import CURVED_MODES, curved_mpr
from .images import (
    Viewport,
    apply_viewport,
    encode_animation,
    encode_image,
    save_animation,
    save_image,
)
from .limits import DEFAULT_LIMITS, RenderLimits
from .mpr import INTERPOLATIONS, choose_level, mpr, render_grid, slab_grid
from .project import project, rotating_projection, view_direction, voxel_step
from .slab import MODES, Slab

__all__ = [
    "CURVED_MODES",
    "DEFAULT_LIMITS",
    "INTERPOLATIONS",
    "MODES",
    "Plane",
    "RenderLimits",
    "Slab",
    "Viewport",
    "apply_viewport",
    "choose_level",
    "curved_mpr",
    "encode_animation",
    "encode_image",
    "mpr",
    "project",
    "render_grid",
    "rotating_projection",
    "save_animation",
    "save_image",
    "slab_grid",
    "view_direction",
    "voxel_step",
]
