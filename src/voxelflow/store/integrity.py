"""Validating a stored volume's metadata on open: the group's attributes against themselves and
against each level array's ``zarr.json``.

A volume's metadata lives in several files (the group's ``zarr.json`` with voxelflow's and
OME-Zarr's attributes, one ``zarr.json`` per pyramid level) that a failed copy, a hand edit or
a disk error can leave disagreeing. Read unchecked, a disagreement surfaces later and far away:
a ``KeyError`` or ``TypeError`` deep in a renderer, a shape mismatch in dask, or, worst,
silently wrong voxels (a shrunken level array reads its fill value past its new end; a level
whose dtype changed reinterprets the bytes). So :meth:`VolumeStore.open
<voxelflow.store.VolumeStore.open>` checks, before it returns a volume, every field it relies on
(:func:`check_record`) and every level array (:func:`read_layouts`); each problem is a
:class:`~voxelflow.errors.StoreError` naming the volume, the field and, for a level, its file.
Reading the level documents costs a few small files per open, nothing next to a chunk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from .checked_store import ChunkLayout, numeric_dtype, parse_document, positive_ints
from .pyramid import level_affine

__all__ = ["check_record", "read_layouts"]

_LEVEL_PATH = re.compile(r"\d+")

# An affine whose 3 x 3 part is this ill-conditioned maps distinct voxels to (nearly) one point:
# no renderer or resampler can invert it.
_MAX_CONDITION = 1e12


def _affine(value: Any, field: str, where: str) -> np.ndarray:
    """`value` as a finite, invertible 4 x 4 affine with last row (0, 0, 0, 1)."""
    try:
        affine = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StoreError(f"{where}: {field} is not a 4 x 4 matrix of numbers") from None
    if affine.shape != (4, 4):
        raise StoreError(f"{where}: {field} is not a 4 x 4 matrix (shape {affine.shape})")
    if not np.isfinite(affine).all():
        raise StoreError(f"{where}: {field} has non-finite entries")
    if not np.array_equal(affine[3], [0.0, 0.0, 0.0, 1.0]):
        raise StoreError(f"{where}: {field} last row is {affine[3].tolist()}, not [0, 0, 0, 1]")
    if not np.linalg.cond(affine[:3, :3]) < _MAX_CONDITION:
        raise StoreError(f"{where}: {field} is singular (not invertible)")
    return affine


#: The axes a stored volume may have, by number of dimensions (the first is the default).
_AXES = {3: [["z", "y", "x"]], 4: [["t", "z", "y", "x"], ["z", "y", "x", "c"]]}


def check_record(record: Mapping[str, Any], attributes: Mapping[str, Any], where: str) -> None:
    """Check the ``voxelflow`` attributes of a volume group against themselves and the OME ones.

    Parameters
    ----------
    record : mapping
        ``attributes["voxelflow"]`` of a complete volume.
    attributes : mapping
        All the group's attributes (for ``ome``).
    where : str
        Names the volume in messages.

    Raises
    ------
    StoreError
        Naming the first field that is absent, malformed or inconsistent.
    """
    shape = positive_ints(record.get("shape"), "attribute 'shape'", where)
    if len(shape) not in (3, 4):
        raise StoreError(f"{where}: attribute 'shape' {list(shape)} is not 3-D or 4-D")
    dtype = numeric_dtype(record.get("dtype"), "attribute 'dtype'", where)
    # the axes decide how every reader sees the array (a time axis or RGB samples): never guessed
    allowed = _AXES[len(shape)]
    axes = record.get("axes", allowed[0])
    if axes not in allowed:
        raise StoreError(f"{where}: attribute 'axes' {axes!r:.80} does not name the axes of shape {list(shape)}")
    colour = axes[-1] == "c"
    if colour and (shape[-1] != 3 or np.dtype(dtype) != np.uint8):
        raise StoreError(f"{where}: attribute 'axes' names RGB samples, but shape {list(shape)} dtype {dtype} is not (z, y, x, 3) uint8")
    chunks = positive_ints(record.get("chunks"), "attribute 'chunks'", where)
    if len(chunks) != len(shape):
        raise StoreError(f"{where}: attribute 'chunks' {list(chunks)} does not match shape {list(shape)}")
    affine = _affine(record.get("affine"), "attribute 'affine'", where)
    if not isinstance(record.get("meta", {}), Mapping):
        raise StoreError(f"{where}: attribute 'meta' is not a JSON object")
    levels = record.get("levels")
    if not isinstance(levels, Sequence) or isinstance(levels, str) or not levels:
        raise StoreError(f"{where}: attribute 'levels' must be a non-empty list, got {levels!r:.80}")
    paths = set()
    for n, entry in enumerate(levels):
        field = f"attribute 'levels[{n}]'"
        if not isinstance(entry, Mapping):
            raise StoreError(f"{where}: {field} is not a JSON object")
        path = entry.get("path")
        if not isinstance(path, str) or not _LEVEL_PATH.fullmatch(path) or path in paths:
            raise StoreError(f"{where}: {field} path {path!r:.40} is not a new level number")
        paths.add(path)
        level_shape = positive_ints(entry.get("shape"), f"{field} shape", where)
        if len(level_shape) != len(shape) or (n == 0 and level_shape != shape):
            raise StoreError(f"{where}: {field} shape {list(level_shape)} does not match shape {list(shape)}")
        factors = positive_ints(entry.get("factors", [1, 1, 1]), f"{field} factors", where)
        if len(factors) != 3:
            raise StoreError(f"{where}: {field} factors {list(factors)} are not 3 numbers")
        level = _affine(entry.get("affine"), f"{field} affine", where)
        if not np.allclose(level, level_affine(affine, factors), rtol=1e-9, atol=1e-6):
            raise StoreError(f"{where}: {field} affine does not match attribute 'affine' and its factors")
    multiscales = attributes.get("ome", {}).get("multiscales") if isinstance(attributes.get("ome"), Mapping) else None
    if multiscales is not None:
        datasets = multiscales[0].get("datasets") if (
            isinstance(multiscales, Sequence) and multiscales and isinstance(multiscales[0], Mapping)
        ) else None
        if not isinstance(datasets, Sequence) or len(datasets) != len(levels):
            count = len(datasets) if isinstance(datasets, Sequence) else None
            raise StoreError(
                f"{where}: attribute 'ome' multiscales lists {count} datasets for "
                f"{len(levels)} levels"
            )


def read_layouts(folder: Path, record: Mapping[str, Any], where: str) -> dict[str, ChunkLayout]:
    """Read and check every level array's ``zarr.json`` against the (checked) record.

    Returns
    -------
    dict of str to ChunkLayout
        By level path, for :class:`~voxelflow.store.checked_store.ChunkCheckedStore`.

    Raises
    ------
    StoreError
        For a level whose array is missing or unreadable, or whose shape, dtype or chunk shape
        differs from the group's attributes; naming the level, its file and the field.
    """
    dtype = np.dtype(record["dtype"])
    layouts = {}
    for n, entry in enumerate(record["levels"]):
        document = folder / entry["path"] / "zarr.json"
        here = f"{where} level {n}: {document}"
        try:
            data = document.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise StoreError(f"{here}: the level's array is missing") from None
        except OSError as error:
            raise StoreError(f"{here}: cannot be read ({error})") from None
        layout = ChunkLayout.from_document(parse_document(data, here), entry["path"], here)
        shape = tuple(entry["shape"])
        if layout.shape != shape:
            raise StoreError(f"{here}: shape {list(layout.shape)} differs from the attributes' {list(shape)}")
        if layout.dtype.newbyteorder("=") != dtype.newbyteorder("="):
            raise StoreError(f"{here}: data_type {layout.dtype.name} differs from attribute 'dtype' {dtype.name}")
        chunks = tuple(min(c, s) for c, s in zip(record["chunks"], shape))
        if layout.chunks != chunks:
            raise StoreError(f"{here}: chunk_shape {list(layout.chunks)} differs from attribute 'chunks' {list(chunks)}")
        layouts[entry["path"]] = layout
    return layouts
