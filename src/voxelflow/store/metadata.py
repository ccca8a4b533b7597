"""What a stored volume's group attributes hold: OME-Zarr 0.5 ``multiscales`` and voxelflow's own.

The group's ``zarr.json`` ``attributes``::

    "ome": {                              # OME-Zarr 0.5, read by OME-Zarr viewers and libraries
      "version": "0.5",
      "multiscales": [{
        "name": <key>,
        "axes": [{"name": "t", "type": "time"},            # 4-D volumes only
                 {"name": "z", "type": "space", "unit": "millimeter"}, ... "y", "x",
                 {"name": "c", "type": "channel"}],        # colour volumes only (see below)
        "datasets": [{"path": "0", "coordinateTransformations": [
                        {"type": "scale", "scale": [<mm per voxel along z, y, x>]},
                        {"type": "translation", "translation": [<see below>]}]}, ...],
        "type": "mean",
        "metadata": {"description": ..., "method": ..., "version": <voxelflow version>}}]}
    "voxelflow": {
      "type": "volume", "format": 1, "version": <voxelflow version>, "key": <key>,
      "complete": true,                   # written last; a group without it is not a volume yet
      "shape": [...], "dtype": "int16", "axes": ["z", "y", "x"] (or ["t", "z", "y", "x"],
                                          # or ["z", "y", "x", "c"] for RGB),
      "affine": [[4 x 4]],                # level 0, (k, j, i, 1) -> LPS mm: authoritative
      "levels": [{"path": "0", "shape": [...], "factors": [1, 1, 1], "affine": [[4 x 4]]}, ...],
      "chunks": [...], "compressor": "blosc",
      "meta": {...}}                      # Volume.meta as JSON: modality, rescale, windows,
                                          # sop_instance_uids, findings, ...

OME-Zarr holds only a per-axis scale and translation, no rotation or shear. The scale is the
voxel spacing (mm) along z, y, x. The translation is the position of voxel (0, 0, 0) in the
volume's own axes: ``R⁻¹ · origin``, with ``R`` the affine's 3 x 3 part with unit columns (the
directions of increasing k, j, i) and ``origin`` its LPS translation. So the OME physical
coordinates of a voxel are its patient coordinates expressed along the volume's axes
(``LPS = R · (z, y, x)``): distances and positions within the volume are right in mm, and for an
axial volume with identity directions they are the LPS (z, y, x) coordinates themselves. For an
oblique, flipped or sheared volume, only voxelflow's ``affine`` places it in the patient.

Colour volumes (RGB, 8 bits a sample) are stored (z, y, x, c) with c = 3, level 0 only, in
chunks that hold all three samples of a voxel: the layout of dcm2niix's RGB24 NIfTI and of
pydicom's arrays, so a slice is one contiguous read. This departs from OME-Zarr 0.5, which
puts a channel axis before the space axes; readers find the sample axis by its name "c" (type
"channel") in both ``axes`` lists. The pyramid's box means are defined on grayscale values and
are not built for colour.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError
from .pyramid import PyramidLevel, level_affine

__all__ = [
    "FORMAT",
    "axes_names",
    "frame_translation",
    "json_safe",
    "ome_multiscales",
    "volume_attributes",
]

#: Version of the attribute layout above; readers refuse a newer one.
FORMAT = 1

OME_VERSION = "0.5"


def axes_names(ndim: int, colour: bool = False) -> list[str]:
    """Axis names of a volume: ``z, y, x``, with ``t`` first for 4-D volumes, or ``c`` (the
    RGB samples) last for a colour volume."""
    if colour:
        if ndim == 4:
            return ["z", "y", "x", "c"]
        raise ParameterError(f"a stored colour volume has 4 (z, y, x, c) axes, got {ndim}")
    if ndim == 3:
        return ["z", "y", "x"]
    if ndim == 4:
        return ["t", "z", "y", "x"]
    raise ParameterError(f"a stored volume has 3 (z, y, x) or 4 (t, z, y, x) axes, got {ndim}")


def frame_translation(affine: np.ndarray) -> np.ndarray:
    """The OME-Zarr translation (z, y, x) of voxel (0, 0, 0): the origin in the volume's axes."""
    affine = np.asarray(affine, dtype=np.float64)
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return np.linalg.solve(directions, affine[:3, 3])


def ome_multiscales(
    name: str, affine: np.ndarray, ndim: int, levels: Sequence[PyramidLevel], version: str,
    colour: bool = False,
) -> dict[str, Any]:
    """The ``ome`` attribute (OME-Zarr 0.5 image) of a volume group."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    origin = frame_translation(affine)
    lead = ndim - 3 - int(colour)
    trail = int(colour)
    axes: list[dict[str, str]] = [{"name": "t", "type": "time"}] if lead else []
    axes += [{"name": n, "type": "space", "unit": "millimeter"} for n in ("z", "y", "x")]
    axes += [{"name": "c", "type": "channel"}] if colour else []
    datasets = []
    for level in levels:
        f = np.asarray(level.factors, dtype=np.float64)
        scale = [1.0] * lead + [float(v) for v in spacing * f] + [1.0] * trail
        translation = [0.0] * lead + [float(v) for v in origin + spacing * (f - 1) / 2] + [0.0] * trail
        datasets.append(
            {
                "path": level.path,
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }
        )
    return {
        "version": OME_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": datasets,
                "type": "mean",
                "metadata": {
                    "description": (
                        "2x box mean per level over the spatial axes whose spacing is within "
                        "sqrt(2) of the finest; integers rounded half to even; odd edges "
                        "replicate the last voxel. Translation: voxel (0,0,0) in the volume's "
                        "own axes; attributes.voxelflow.affine places the volume in LPS."
                    ),
                    "method": "voxelflow.store.pyramid.downsample_mean",
                    "version": version,
                },
            }
        ],
    }


def volume_attributes(
    *,
    key: str,
    affine: np.ndarray,
    shape: Sequence[int],
    dtype: np.dtype,
    levels: Sequence[PyramidLevel],
    chunks: Sequence[int],
    compressor: str,
    meta: Mapping[str, Any],
    version: str,
    complete: bool,
    colour: bool = False,
) -> dict[str, Any]:
    """All attributes of a volume group (`meta` already passed through :func:`json_safe`)."""
    ndim = len(shape)
    return {
        "ome": ome_multiscales(key, affine, ndim, levels, version, colour),
        "voxelflow": {
            "type": "volume",
            "format": FORMAT,
            "version": version,
            "key": key,
            "complete": complete,
            "shape": [int(n) for n in shape],
            "dtype": np.dtype(dtype).str.lstrip("<>=|"),
            "axes": axes_names(ndim, colour),
            "affine": _matrix(affine),
            "levels": [
                {
                    "path": level.path,
                    "shape": list(level.shape),
                    "factors": list(level.factors),
                    "affine": _matrix(level_affine(affine, level.factors)),
                }
                for level in levels
            ],
            "chunks": [int(c) for c in chunks],
            "compressor": compressor,
            "meta": dict(meta),
        },
    }


def _matrix(affine: np.ndarray) -> list[list[float]]:
    # Python floats print with repr precision (17 significant digits): JSON round trips exactly
    return [[float(v) for v in row] for row in np.asarray(affine, dtype=np.float64)]


_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def json_safe(value: Any, where: str = "meta") -> Any:
    """`value` as plain JSON types, for storing ``Volume.meta`` in zarr attributes.

    numpy scalars and arrays become Python numbers and lists; tuples, sets and other sequences
    lists (sets sorted); mappings dicts (int keys as strings); dataclasses and objects with a
    ``to_dict()`` their dict; enums their value; dates and times ISO 8601 strings; paths
    strings; str subclasses (pydicom's UID, PersonName ...) plain strings. JSON has no NaN or
    infinity, so non-finite floats become the strings "NaN", "Infinity", "-Infinity" (as zarr
    writes fill values).

    Raises
    ------
    ParameterError
        For anything else (bytes, arbitrary objects), naming where in `value` it is.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, where)
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return "NaN"
        return _NONFINITE.get(number, number)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist(), where)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
                k = str(int(k))
            if not isinstance(k, str):
                raise ParameterError(
                    f"{where}: key {k!r} is not a string; meta keys must be strings"
                )
            out[str(k)] = json_safe(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (set, frozenset)):
        items = [json_safe(v, f"{where}{{...}}") for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), where)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return json_safe(to_dict(), where)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray, memoryview)):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ParameterError(
        f"{where}: {type(value).__name__} value {value!r:.60} cannot be stored as JSON "
        "(store it as a string, number, list or dict)"
    )
