"""Damaged stores: the store half of :mod:`voxelflow.testing.malformed`.

:func:`write_pristine` writes a small store with two volumes, ``v`` (int16, a level 1) and
``w`` (float32, the same chunk shape: a donor of chunks whose checksums are valid). Each
:class:`StoreDamage` then damages a copy of it on disk, in volume ``v``: one chunk file
(:data:`CHUNK_FILE`, chunk :data:`CHUNK` of level 0) deleted, truncated, bit-flipped,
overwritten; or its metadata truncated, not JSON, edited against itself. Each case says the
:class:`~voxelflow.errors.StoreError` subclass a read must raise and what its message must
name (a regular expression). Chunk damages are found on the first read of the chunk, metadata
damages on :meth:`VolumeStore.open <voxelflow.store.VolumeStore.open>`.

Examples
--------
>>> from voxelflow.testing.malformed import STORE_CASES, write_pristine  # doctest: +SKIP
>>> root = write_pristine("/tmp/store")                                 # doctest: +SKIP
>>> STORE_CASES[0].damage(root)                                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptChunkError, MissingChunkError, StoreError

__all__ = ["CHUNK", "CHUNKS", "CHUNK_FILE", "SHAPE", "STORE_CASES", "StoreDamage", "pristine_affine",
           "pristine_data", "strip_checksums", "write_pristine"]

SHAPE = (24, 80, 96)  # level 0 of 3 x 5 x 6 chunks, and a level 1 (96 > 64)
CHUNKS = (8, 16, 16)
CHUNK = (1, 0, 1)  # the damaged chunk: z 8..15, y 0..15, x 16..31
CHUNK_FILE = "v/0/c/1/0/1"
_CHUNK_NAMED = r"chunk \(1, 0, 1\).*c/1/0/1"


@dataclass(frozen=True)
class StoreDamage:
    """One class of damaged store.

    Attributes
    ----------
    name : str
        Stable identifier.
    klass : str
        ``store-chunk`` (found when the chunk is read) or ``store-metadata`` (found on open).
    damage : callable
        ``damage(root)`` damages the store at `root` (a copy of :func:`write_pristine`'s).
    error : type
        The :class:`~voxelflow.errors.StoreError` subclass a read must raise.
    match : str
        A regular expression the message must match: the chunk and its file, or the field.
    """

    name: str
    klass: str
    damage: Callable[[Path], None] = field(repr=False)
    error: type[StoreError]
    match: str


def pristine_affine() -> np.ndarray:
    a = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2], a[3, 3] = 2.0, 0.8, 0.8, 1.0  # k superior, j posterior, i left
    return a


def pristine_data() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(0.0, 300.0, SHAPE) + 40.0).astype(np.int16)


def write_pristine(root: str | os.PathLike[str], *, checksums: bool = True) -> Path:
    """The undamaged store at `root`: ``v`` (:func:`pristine_data`) and ``w`` (a chunk donor).
    ``checksums=False``: as written before stores had a crc32c codec."""
    from ..store import VolumeStore
    from ..volume import Volume

    root = Path(root)
    store = VolumeStore(root)
    store.write("v", Volume(pristine_data(), pristine_affine(), {"modality": "CT"}), chunks=CHUNKS)
    donor = np.random.default_rng(4).normal(size=SHAPE).astype(np.float32)
    store.write("w", Volume(donor, pristine_affine()), chunks=CHUNKS, pyramid=False)
    if not checksums:
        strip_checksums(root)
    return root


def strip_checksums(root: Path) -> None:
    """Turn a store into one written before checksums: no crc32c codec, no trailing 4 bytes."""
    for document in root.glob("*/[0-9]*/zarr.json"):
        body = json.loads(document.read_text())
        if body["codecs"][-1]["name"] != "crc32c":
            raise ValueError(f"{document}: no crc32c codec to strip")
        body["codecs"] = body["codecs"][:-1]
        document.write_text(json.dumps(body))
        for chunk in (document.parent / "c").rglob("*"):
            if chunk.is_file():
                chunk.write_bytes(chunk.read_bytes()[:-4])


# -- chunks ---------------------------------------------------------------------------------


def _flip(path: Path, at: int, bit: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[at % len(raw)] ^= 1 << bit
    path.write_bytes(bytes(raw))


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(9).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())


def _on_chunk(change: Callable[[Path], Any]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        change(Path(root) / CHUNK_FILE)
    return damage


_CHUNK_DAMAGE: dict[str, Callable[[Path], Any]] = {
    "deleted": lambda p: p.unlink(),
    "truncated to 0 bytes": lambda p: p.write_bytes(b""),
    "truncated to 1 byte": lambda p: p.write_bytes(p.read_bytes()[:1]),
    "truncated inside the blosc header": lambda p: p.write_bytes(p.read_bytes()[:9]),
    "truncated to half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "one byte short": lambda p: p.write_bytes(p.read_bytes()[:-1]),
    "payload bit flipped": lambda p: _flip(p, 200, 3),
    "header bit flipped": lambda p: _flip(p, 5, 1),  # the decoded size
    "garbage": _garbage,
    "another array's chunk": lambda p: shutil.copyfile(p.parents[5] / "w/0/c/1/0/1", p),
}


# -- metadata -------------------------------------------------------------------------------


def _edit(path: Path, change: Callable[[Any], Any]) -> None:
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


def _record(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    return lambda root: _edit(root / "v" / "zarr.json", lambda b: change(b["attributes"]["voxelflow"]))


def _level0(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    return lambda root: _edit(root / "v" / "0" / "zarr.json", change)


def _set_affine(value: Callable[[np.ndarray], Any]) -> Callable[[Path], None]:
    def change(record: dict[str, Any]) -> None:
        affine = np.array(record["affine"])
        value(affine)
        record["affine"] = affine.tolist()
    return _record(change)


def _cut(relative: str, length: int) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_bytes((root / relative).read_bytes()[:length])


_METADATA_DAMAGE: dict[str, tuple[Callable[[Path], Any], str]] = {
    "group zarr.json truncated": (_cut("v/zarr.json", 100), r"v/zarr\.json.*not JSON"),
    "group zarr.json not UTF-8": (lambda root: (root / "v/zarr.json").write_bytes(b"\xff\xfe\x00garbage"),
                                  r"v/zarr\.json.*not JSON"),
    "level zarr.json truncated": (_cut("v/0/zarr.json", 50), r"level 0.*v/0/zarr\.json.*not JSON"),
    "level zarr.json not JSON": (lambda root: (root / "v/0/zarr.json").write_text("[1, 2"),
                                 r"level 0.*v/0/zarr\.json.*not JSON"),
    "level shape shrunk": (_level0(lambda b: b.update(shape=[16, 80, 96])), r"level 0.*shape \[16, 80, 96\] differs"),
    "level dtype changed": (_level0(lambda b: b.update(data_type="int32")),
                            r"level 0.*data_type int32 differs from attribute 'dtype' int16"),
    "level dtype not a type": (_level0(lambda b: b.update(data_type={"name": 7})), r"level 0.*data_type"),
    "level chunk shape changed": (_level0(lambda b: b["chunk_grid"]["configuration"].update(chunk_shape=[8, 8, 8])),
                                  r"level 0.*chunk_shape \[8, 8, 8\] differs from attribute 'chunks'"),
    "level codecs garbled": (_level0(lambda b: b.update(codecs="blosc")), r"level 0.*codecs"),
    "attribute shape changed": (_record(lambda r: r.update(shape=[24, 80, 95])),
                                r"'levels\[0\]' shape \[24, 80, 96\] does not match shape \[24, 80, 95\]"),
    "attribute shape missing": (_record(lambda r: r.pop("shape")), r"attribute 'shape'"),
    "attribute dtype missing": (_record(lambda r: r.pop("dtype")), r"attribute 'dtype'"),
    "attribute levels missing": (_record(lambda r: r.pop("levels")), r"attribute 'levels'"),
    "attribute chunks text": (_record(lambda r: r.update(chunks="8,16,16")), r"attribute 'chunks'"),
    "attribute affine missing": (_record(lambda r: r.pop("affine")), r"attribute 'affine'"),
    "attribute meta not an object": (_record(lambda r: r.update(meta="CT")), r"attribute 'meta'"),
    "level path not a number": (_record(lambda r: r["levels"][1].update(path="../w/0")),
                                r"'levels\[1\]' path '\.\./w/0' is not a new level number"),
    "affine not finite": (_set_affine(lambda a: a.__setitem__((0, 2), math.nan)),
                          r"attribute 'affine' has non-finite entries"),
    "affine infinite": (_set_affine(lambda a: a.__setitem__((1, 3), math.inf)),
                        r"attribute 'affine' has non-finite entries"),
    "affine singular": (_set_affine(lambda a: a.__setitem__((slice(None), 1), 0.0)),
                        r"attribute 'affine' is singular"),
    "affine 3 x 3": (_record(lambda r: r.update(affine=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])),
                     r"attribute 'affine' is not a 4 x 4"),
    "level affine disagrees": (_record(lambda r: r["levels"][1]["affine"][0].__setitem__(3, 5.0)),
                               r"'levels\[1\]' affine does not match"),
    "a level missing": (lambda root: shutil.rmtree(root / "v" / "1"), r"level 1.*v/1/zarr\.json.*missing"),
    "levels and OME datasets differ": (_record(lambda r: r["levels"].pop()),
                                       r"'ome' multiscales lists 2 datasets for 1 levels"),
}


#: Every damaged-store class (a list of :class:`StoreDamage`): chunks, then metadata.
STORE_CASES: list[StoreDamage] = [
    StoreDamage(name, "store-chunk", _on_chunk(change),
                MissingChunkError if name == "deleted" else CorruptChunkError, _CHUNK_NAMED)
    for name, change in _CHUNK_DAMAGE.items()
] + [
    StoreDamage(name, "store-metadata", damage, StoreError, match)
    for name, (damage, match) in _METADATA_DAMAGE.items()
]
