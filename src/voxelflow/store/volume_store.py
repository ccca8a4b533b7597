"""VolumeStore: volumes in a zarr v3 folder, one OME-Zarr image group per key, atomic writes."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore

from .._threads import get_num_threads
from .._version import __version__
from ..errors import (
    IncompleteVolumeError,
    KeyConflictError,
    MissingChunkError,
    ParameterError,
    StoreError,
    VolumeChangedError,
    VolumeNotFoundError,
)
from ..progress import Progress, dask_progress
from ..volume import StoredSource, Volume
from . import atomic
from .checked_store import ChunkCheckedStore, ChunkLayout, folder_identity
from .chunkwise import chunk_regions, copy_into, is_dask
from .integrity import check_record, read_layouts
from .layout import parse_key, read_node_attributes, volume_path
from .metadata import FORMAT, axes_names, json_safe, volume_attributes
from .pyramid import PYRAMID_TARGET, PyramidLevel, build_level, plan_pyramid, write_pyramid

__all__ = ["COMPRESSORS", "DEFAULT_CHUNKS", "VolumeStore", "WriteResult"]

#: Default chunk shape (z, y, x), capped by the volume's shape; 4-D volumes chunk t by 1.
#: 64 x 256 x 256 is 8 MiB of int16 (2-4 MiB compressed): large enough that per-chunk costs
#: (a file, a codec call, a dask task) stay small against the data, small enough that a
#: 512 x 512 slice spans 4 chunks and an MPR or MIP through a 300-slice CT touches a few dozen;
#: 64 slices deep so sagittal/coronal reads do not open one file per slice. A 512 x 512 x 300
#: CT is 20 chunks at level 0.
DEFAULT_CHUNKS = (64, 256, 256)


def _blosc() -> BytesBytesCodec:
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def _blosc_zstd() -> BytesBytesCodec:
    return BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")


def _zstd() -> BytesBytesCodec:
    return ZstdCodec(level=3)


#: Named compressors. Measured through zarr on an int16 CT phantom with noise, 64 x 256 x 256
#: chunks, 2 cores: "blosc" (the default: LZ4 after bit-shuffle) shrinks it 2.9x writing at
#: ~0.85 GB/s, as fast as an uncompressed write; "blosc-zstd" (level 1, bit-shuffle) 3.0x at
#: ~0.55 GB/s; "zstd" (level 3, no shuffle, for readers without blosc) 2.7x at ~0.13 GB/s.
COMPRESSORS = {"blosc": _blosc, "blosc-zstd": _blosc_zstd, "zstd": _zstd, "none": None}


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`VolumeStore.write` did.

    Attributes
    ----------
    key : str
        The volume's key.
    skipped : bool
        True when a complete volume was already stored under the key and ``overwrite`` was
        False: nothing was written.
    path : pathlib.Path
        The volume's group folder.
    shapes : tuple of tuple of int
        The shape of each stored pyramid level, level 0 first.
    """

    key: str
    skipped: bool
    path: Path
    shapes: tuple[tuple[int, ...], ...]


class VolumeStore(Mapping[str, Volume]):
    """Volumes in a zarr v3 folder, one OME-Zarr 0.5 image group per key.

    ``store[key]`` (or :meth:`open`) gives a lazy, zarr-backed :class:`~voxelflow.Volume`;
    ``key in store``, ``len(store)`` and iteration see only complete volumes. See
    :mod:`voxelflow.store.layout` for the folder layout and :mod:`voxelflow.store.metadata` for
    the attributes.

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder; created (with its root group) unless `read_only`.
    read_only : bool
        Open an existing store for reading only: :meth:`write` and :meth:`delete` raise.

    Raises
    ------
    StoreError
        If `path` is a file, holds a zarr array, or (read-only) does not exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path).absolute()
        self.read_only = read_only
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"volume store {self.path}: is not a folder")
        if read_only:
            if not self.path.is_dir():
                raise StoreError(f"volume store {self.path}: does not exist")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._ensure_group(self.path, {"voxelflow": {"type": "store", "format": FORMAT}})

    def __repr__(self) -> str:
        return f"VolumeStore({str(self.path)!r}{', read_only=True' if self.read_only else ''})"

    # Mapping's __eq__ would open and compare every volume; two stores are equal when they are
    # the same folder opened the same way (and hashable, for caches keyed by store)
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VolumeStore):
            return NotImplemented
        return (self.path, self.read_only) == (other.path, other.read_only)

    def __hash__(self) -> int:
        return hash((VolumeStore, self.path, self.read_only))

    # -- writing ------------------------------------------------------------------------------

    def write(
        self,
        key: str,
        volume: Volume,
        *,
        chunks: tuple[int, ...] | None = None,
        overwrite: bool = False,
        pyramid: bool = True,
        compressor: str | BytesBytesCodec | None = "blosc",
        progress: Progress | None = None,
    ) -> WriteResult:
        """Store `volume` under `key`, atomically, with its pyramid and metadata.

        The volume appears under `key` only once complete: it is written into a staging folder
        of the store and renamed into place. A write killed part way leaves nothing under the
        key; the next write of the key removes its leftovers. Writers of one key (threads or
        processes) take turns on a lock, so two concurrent writes never mix: the second sees
        the first's volume and skips (or, with `overwrite`, replaces it).

        Parameters
        ----------
        key : str
            ``"/"``-separated, path-safe name (see :func:`voxelflow.store.layout.parse_key`),
            e.g. ``"<study uid>/<series uid>/<n>"``.
        volume : Volume
            3-D (z, y, x) or 4-D (t, z, y, x); its array numpy, zarr, dask or any sliceable
            array: dask sources are stored block by block; the others are read once, one row
            of chunks along z at a time (a lazy source such as a
            :class:`~voxelflow.dicom.slices.SliceStack` decodes the next row while the last
            is compressed), and the pyramid is built from each row while it is in memory
            (:func:`voxelflow.store.pyramid.write_pyramid`): never held whole.
            Values keep their dtype (in native byte order); ``meta`` must be JSON-able (see
            :func:`voxelflow.store.metadata.json_safe`).
        chunks : tuple of int, optional
            Chunk shape, (z, y, x) or one entry per axis; capped by the shape. Default
            :data:`DEFAULT_CHUNKS` (t chunked by 1).
        overwrite : bool
            Replace a volume already stored under `key` (atomically: the new one is written
            beside it and the two swapped). Default: skip, and say so in the result.
        pyramid : bool
            Also store the multiscale levels 1, 2, ... (2x box means, down to 64 voxels on
            the largest axis; see :mod:`voxelflow.store.pyramid`).
        compressor : str, zarr bytes-to-bytes codec or None
            A name from :data:`COMPRESSORS` ("blosc", "blosc-zstd", "zstd", "none"), a zarr
            codec such as ``zarr.codecs.BloscCodec(...)``, or None for no compression.
        progress : callable, optional
            ``progress(done, total)`` in level-0 slices (z, times t for 4-D) as they are
            written (:mod:`voxelflow.progress`).

        Returns
        -------
        WriteResult
            ``skipped=True`` when the key was already stored and `overwrite` is False.

        Raises
        ------
        InvalidKeyError
            For a key that is not path-safe.
        KeyConflictError
            When the key's folder holds something that is not a voxelflow volume (such as
            volumes stored under longer keys), or the key lies inside another volume.
        ParameterError
            For a bad volume (not 3-D/4-D, empty, non-numeric dtype, meta that is not JSON-able),
            chunks or compressor.
        StoreError
            When the store is read-only.
        """
        self._check_writable()
        key = parse_key(key)
        if not isinstance(volume, Volume):
            raise ParameterError(
                f"write: volume must be a voxelflow Volume, got {type(volume).__name__}"
            )
        shape = volume.shape
        colour = volume.is_colour
        axes_names(len(shape), colour)  # 3-D or 4-D, or (z, y, x, c)
        if colour and (shape[-1] != 3 or volume.dtype != np.uint8):
            raise ParameterError(
                f"write: colour volume {key!r} must be (z, y, x, 3) uint8 RGB, got {shape} {volume.dtype}"
            )
        if min(shape) < 1:
            raise ParameterError(f"write: volume {key!r} has an empty axis, shape {shape}")
        dtype = volume.dtype
        if dtype.kind not in "biuf":
            raise ParameterError(
                f"write: volume {key!r} has dtype {dtype}; store numeric or bool voxels"
            )
        dtype = dtype.newbyteorder("=")
        chunk_shape = _parse_chunks(chunks, shape, colour)
        compressor_name, codecs = _parse_compressor(compressor)
        meta = json_safe(volume.meta)
        if colour:  # box means are grayscale arithmetic: colour keeps level 0 only
            levels = [PyramidLevel("0", tuple(shape), (1, 1, 1), (1, 1, 1))]
        else:
            levels = plan_pyramid(shape, volume.spacing, target=PYRAMID_TARGET)
        if not pyramid:
            levels = levels[:1]
        target = volume_path(self.path, key)

        with atomic.key_lock(self.path, key):
            with atomic.namespace_lock(self.path):
                state = self._state(key, target)
            if state == "complete" and not overwrite:
                return WriteResult(key, True, target, self._stored_shapes(key))
            atomic.remove_stale(self.path, key)
            staging = atomic.new_staging(self.path, key)
            try:
                attributes = volume_attributes(
                    key=key,
                    affine=volume.affine,
                    shape=shape,
                    dtype=dtype,
                    levels=levels,
                    chunks=chunk_shape,
                    compressor=compressor_name,
                    meta=meta,
                    version=__version__,
                    complete=False,
                    colour=colour,
                )
                self._write_group(
                    staging, key, volume, attributes, levels, dtype, chunk_shape, codecs, progress
                )
                with atomic.namespace_lock(self.path):
                    state = self._state(key, target)  # unchanged unless edited behind our back
                    self._ensure_parents(key)
                    old = atomic.publish(staging, target, replace=state != "absent")
            except BaseException:
                atomic.discard(staging)
                raise
            if old is not None:
                atomic.discard(old)
        return WriteResult(key, False, target, tuple(level.shape for level in levels))

    def _write_group(
        self,
        folder: Path,
        key: str,
        volume: Volume,
        attributes: dict[str, Any],
        levels: list[PyramidLevel],
        dtype: np.dtype,
        chunk_shape: tuple[int, ...],
        codecs: list[BytesBytesCodec] | None,
        progress: Progress | None,
    ) -> None:
        group = zarr.open_group(LocalStore(folder), mode="w", attributes=attributes)
        colour = volume.is_colour
        axes = axes_names(len(volume.shape), colour)
        arrays = [
            group.create_array(
                level.path,
                shape=level.shape,
                dtype=dtype,
                chunks=tuple(min(c, n) for c, n in zip(chunk_shape, level.shape)),
                compressors=codecs,
                fill_value=0,
                dimension_names=axes,
                # every chunk gets a file, even all-zero ones, so a missing file means damage
                config={"write_empty_chunks": True},
            )
            for level in levels
        ]
        threads = get_num_threads()
        if colour:
            _copy_slabs(volume.array, arrays[0], progress)
        elif is_dask(volume.array):
            # dask computes its blocks in parallel itself; the levels then read level 0 back
            with dask_progress(progress, int(np.prod(volume.shape[:-2]))):
                copy_into(volume.array, arrays[0], threads=threads)
            for n in range(1, len(levels)):
                finer = self._checked_array(folder, key, levels[n - 1].path)
                build_level(finer, arrays[n], levels[n].step, threads=threads)
        else:
            write_pyramid(volume.array, arrays, levels, threads=threads, progress=progress)
        done = dict(attributes["voxelflow"], complete=True)
        group.update_attributes({"voxelflow": done})

    def delete(self, key: str) -> None:
        """Remove the volume stored under `key` (complete or left incomplete).

        Raises
        ------
        VolumeNotFoundError
            If nothing is stored under `key`.
        KeyConflictError
            If the key's folder is not a voxelflow volume (e.g. a group of volumes).
        """
        self._check_writable()
        key = parse_key(key)
        target = volume_path(self.path, key)
        with atomic.key_lock(self.path, key):
            with atomic.namespace_lock(self.path):
                state = self._state(key, target)
                if state == "absent":
                    raise VolumeNotFoundError(f"volume store {self.path}: no volume {key!r}")
                if state == "empty group":
                    raise KeyConflictError(
                        f"volume store {self.path}: {key!r} is a group, not a volume"
                    )
                trash = atomic.trash_path(self.path, key)
                os.rename(target, trash)
            atomic.discard(trash)

    def remove_partials(self) -> int:
        """Remove what writers that died left in the store's staging area; returns the count.

        Safe while other writers run: entries of a key being written are left alone.
        """
        self._check_writable()
        return atomic.remove_abandoned(self.path)

    # -- reading ------------------------------------------------------------------------------

    def open(self, key: str, *, level: int = 0) -> Volume:
        """The volume stored under `key`, lazily: its array is the level's zarr array.

        Parameters
        ----------
        key : str
        level : int
            Pyramid level; level ``n`` has the affine of its coarser grid (voxel centres at the
            means of the level-0 blocks they summarise, see :mod:`voxelflow.store.pyramid`).
            ``meta`` is the volume's at every level (per-slice lists describe level 0).

        Returns
        -------
        Volume
            Its chunks are read through the checked chunk reader
            (:mod:`voxelflow.store.checked_store`), whatever reads them (``to_numpy``,
            ``to_dask``, slicing, resampling, renderers): a chunk whose file is missing raises
            :class:`MissingChunkError`; one that is truncated, altered (its crc32c checksum)
            or not one chunk of this array raises :class:`CorruptChunkError`, each naming the
            volume, level, chunk and file.

        Raises
        ------
        VolumeNotFoundError
            If no volume is stored under `key`.
        StoreError
            If its metadata is damaged: a ``zarr.json`` unreadable or not JSON, an attribute
            missing or malformed, a level array missing, or the group's attributes and a level
            array disagreeing (shape, dtype, chunk shape, number of levels, an affine not
            finite or not invertible); the message names the file and the field
            (:mod:`voxelflow.store.integrity`).
        IncompleteVolumeError
            If its group exists but its write never completed.
        ParameterError
            If the level does not exist.
        """
        key = parse_key(key)
        folder = volume_path(self.path, key)
        for _ in range(10):
            # the folder's identity before and after reading its metadata: equal means the
            # metadata and every later chunk read (checked against it) are of one version
            identity = folder_identity(folder)
            record = self._record(key)
            levels = record["levels"]
            if (
                isinstance(level, bool)
                or not isinstance(level, (int, np.integer))
                or not 0 <= level < len(levels)
            ):
                raise ParameterError(
                    f"open: volume {key!r} has levels 0..{len(levels) - 1}, got level={level!r}"
                )
            entry = levels[int(level)]
            where = f"volume store {self.path}: volume {key!r}"
            layouts = read_layouts(folder, record, where)
            array = self._checked_array(
                folder, key, entry["path"], identity=identity, layouts=layouts
            )
            if identity is not None and folder_identity(folder) == identity:
                meta = record.get("meta", {})
                # whether the array holds RGB samples is the group's axes' word (checked against
                # its shape), never that of meta, which callers write freely
                axes = record.get("axes", axes_names(len(record["shape"])))
                said = meta.get("axes")
                if axes[-1] == "c" or (isinstance(said, list) and said[-1:] == ["c"]):
                    meta = {**meta, "axes": axes}
                return Volume(
                    array,
                    np.asarray(entry["affine"], dtype=np.float64),
                    meta,
                    source=StoredSource(self, key, int(level), len(levels)),
                )
        raise VolumeChangedError(
            f"volume store {self.path}: volume {key!r} keeps changing while opened"
        )

    def __getitem__(self, key: str) -> Volume:
        return self.open(key)

    def info(self, key: str) -> dict[str, Any]:
        """The attributes of the volume stored under `key`: ``{"ome": ..., "voxelflow": ...}``.

        Raises as :meth:`open` does.
        """
        key = parse_key(key)
        self._record(key)
        attributes = read_node_attributes(volume_path(self.path, key))
        assert attributes is not None
        return attributes

    def keys(self) -> list[str]:  # type: ignore[override]
        """The keys of every complete volume, sorted."""
        return sorted(self._walk())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        try:
            self._record(parse_key(key))
        except StoreError:
            return False
        return True

    def verify(self, key: str) -> None:
        """Check that every chunk file of every level of the volume under `key` exists.

        Cheap (a listing, no decoding); :meth:`open` finds a missing chunk only when it is read.

        Raises
        ------
        MissingChunkError
            Naming the first missing chunk and how many are missing.
        """
        key = parse_key(key)
        record = self._record(key)
        folder = volume_path(self.path, key)
        for n, entry in enumerate(record["levels"]):
            shape = entry["shape"]
            chunks = [min(c, s) for c, s in zip(record["chunks"], shape)]
            missing = []
            for region in chunk_regions(shape, chunks):
                index = [r.start // c for r, c in zip(region, chunks)]
                chunk_file = folder.joinpath(entry["path"], "c", *map(str, index))
                if not chunk_file.is_file():
                    missing.append(tuple(index))
            if missing:
                raise MissingChunkError(
                    f"volume store {self.path}: volume {key!r} level {n} is missing "
                    f"{len(missing)} chunk(s), first {missing[0]}; "
                    "write it again with overwrite=True",
                    key=key,
                    level=n,
                    chunk=missing[0],
                )

    # -- internals ----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"volume store {self.path}: opened read-only")

    def _checked_array(
        self,
        folder: Path,
        key: str,
        path: str,
        *,
        identity: tuple[int, int] | None = None,
        layouts: dict[str, ChunkLayout] | None = None,
    ) -> Any:
        """A level array of the volume group in `folder`, every chunk read through the checked
        reader (:mod:`voxelflow.store.checked_store`)."""
        store = ChunkCheckedStore(
            LocalStore(folder, read_only=True),
            volume_key=key,
            where=str(self.path),
            identity=identity,
            layouts=layouts,
        )
        try:
            return zarr.open_array(store, path=path, mode="r")
        except StoreError:
            raise
        except (ValueError, TypeError, KeyError, FileNotFoundError) as error:
            # zarr's own metadata parsing, past the checks of ChunkLayout.from_document
            raise StoreError(
                f"volume store {self.path}: volume {key!r} level array {path!r} cannot be "
                f"opened: {type(error).__name__}: {error}"
            ) from None

    def _record(self, key: str) -> dict[str, Any]:
        """The ``voxelflow`` attributes of the complete volume under `key` (a valid key)."""
        folder = volume_path(self.path, key)
        attributes = read_node_attributes(folder)
        if attributes is None:
            _check_group_document(folder / "zarr.json", f"volume store {self.path}: {key!r}")
            raise VolumeNotFoundError(f"volume store {self.path}: no volume {key!r}")
        record = attributes.get("voxelflow")
        if not isinstance(record, dict) or record.get("type") != "volume":
            raise VolumeNotFoundError(f"volume store {self.path}: {key!r} is a group, not a volume")
        if not isinstance(record.get("format"), int) or record["format"] > FORMAT:
            raise StoreError(
                f"volume store {self.path}: volume {key!r} has layout format "
                f"{record.get('format')!r}; this voxelflow ({__version__}) reads up to {FORMAT}"
            )
        if record.get("complete") is not True:
            raise IncompleteVolumeError(
                f"volume store {self.path}: volume {key!r} was never completed "
                "(an interrupted write); write it again"
            )
        check_record(record, attributes, f"volume store {self.path}: volume {key!r}")
        return record

    def _stored_shapes(self, key: str) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(level["shape"]) for level in self._record(key)["levels"])

    def _state(self, key: str, target: Path) -> str:
        """What the key's folder holds: "absent", "complete", "incomplete" or "empty group".

        Raises KeyConflictError where writing the key would nest it in, or over, other data.
        Call while holding the namespace lock.
        """
        parts = key.split("/")
        for depth in range(1, len(parts)):
            ancestor = volume_path(self.path, "/".join(parts[:depth]))
            if not ancestor.exists():
                break
            if not ancestor.is_dir():
                raise KeyConflictError(f"volume store {self.path}: {key!r}: {ancestor} is a file")
            if _is_volume(read_node_attributes(ancestor)):
                raise KeyConflictError(
                    f"volume store {self.path}: {key!r} would lie inside the volume "
                    f"{'/'.join(parts[:depth])!r}"
                )
        if not os.path.lexists(target):
            return "absent"
        attributes = read_node_attributes(target) if target.is_dir() else None
        if _is_volume(attributes):
            complete = attributes["voxelflow"].get("complete") is True  # type: ignore[index]
            return "complete" if complete else "incomplete"
        if attributes is not None and [p.name for p in target.iterdir()] == ["zarr.json"]:
            return "empty group"  # left by deleting the volumes below it: may become a volume
        raise KeyConflictError(
            f"volume store {self.path}: {key!r} holds something that is not a voxelflow volume "
            "(volumes stored under longer keys, or foreign files)"
        )

    def _ensure_parents(self, key: str) -> None:
        """Create the groups above `key`'s folder. Call while holding the namespace lock."""
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folder = volume_path(self.path, "/".join(parts[:depth]))
            folder.mkdir(exist_ok=True)
            self._ensure_group(folder, {})

    @staticmethod
    def _ensure_group(folder: Path, attributes: dict[str, Any]) -> None:
        """Write a zarr v3 group ``zarr.json`` in `folder` unless one is there (atomically)."""
        document = folder / "zarr.json"
        if document.exists():
            if read_node_attributes(folder) is None:
                raise StoreError(f"volume store: {document} is not a zarr v3 group")
            return
        body = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
        temporary = folder / f".zarr.json.{uuid.uuid4().hex}.partial"
        temporary.write_text(json.dumps(body, indent=2))
        os.replace(temporary, document)

    def _walk(self) -> Iterator[str]:
        pending = [(self.path, "")]
        while pending:
            folder, prefix = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                attributes = read_node_attributes(Path(entry.path))
                if attributes is None:
                    continue
                key = prefix + entry.name
                if _is_volume(attributes):
                    if attributes["voxelflow"].get("complete") is True:
                        yield key
                else:
                    pending.append((Path(entry.path), key + "/"))


def _check_group_document(document: Path, where: str) -> None:
    """Raise StoreError where a group's ``zarr.json`` exists but is not a readable zarr v3
    group (truncated, not JSON, not UTF-8): damage, not an absent volume."""
    try:
        data = document.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return
    except OSError as error:
        raise StoreError(f"{where}: {document} cannot be read ({error})") from None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise StoreError(f"{where}: {document} is unreadable metadata, not JSON ({error})") from None
    raise StoreError(
        f"{where}: {document} is not a zarr v3 group document "
        f"(node_type {body.get('node_type') if isinstance(body, dict) else None!r})"
    )


def _is_volume(attributes: dict[str, Any] | None) -> bool:
    record = (attributes or {}).get("voxelflow")
    return isinstance(record, dict) and record.get("type") == "volume"


def _copy_slabs(source: Any, target: Any, progress: Progress | None) -> None:
    """Level 0 of a colour volume, one row of chunks along z at a time (never held whole)."""
    depth, total = target.chunks[0], target.shape[0]
    for z0 in range(0, total, depth):
        z1 = min(total, z0 + depth)
        target[z0:z1] = np.asarray(source[z0:z1], dtype=np.uint8)
        if progress is not None:
            progress(z1, total)


def _parse_chunks(chunks: Any, shape: tuple[int, ...], colour: bool = False) -> tuple[int, ...]:
    # a colour volume's chunks hold whole voxels: all of their samples
    lead, trail = (0, (shape[-1],)) if colour else (len(shape) - 3, ())
    if chunks is None:
        full: tuple[Any, ...] = (1,) * lead + DEFAULT_CHUNKS + trail
    else:
        try:
            full = tuple(chunks)
        except TypeError:
            raise ParameterError(f"write: chunks must be a tuple of ints, got {chunks!r}") from None
        if len(full) == 3 and (lead or trail):
            full = (1,) * lead + full + trail
        if len(full) != len(shape):
            raise ParameterError(f"write: chunks {chunks!r} do not match a volume of shape {shape}")
        for c in full:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
                raise ParameterError(f"write: chunks must be positive integers, got {chunks!r}")
    return tuple(int(min(c, n)) for c, n in zip(full, shape))


def _parse_compressor(compressor: Any) -> tuple[str, list[BytesBytesCodec] | None]:
    # every chain ends in a crc32c checksum of the chunk's stored bytes: a flipped bit anywhere
    # then raises CorruptChunkError on read (voxelflow.store.checked_store) rather than
    # decoding to wrong voxels. 4 bytes a chunk; google-crc32c checks several GB/s.
    if compressor is None:
        return "none", [Crc32cCodec()]
    if isinstance(compressor, str):
        if compressor not in COMPRESSORS:
            raise ParameterError(
                f"write: unknown compressor {compressor!r}; use one of {sorted(COMPRESSORS)} "
                "or a zarr bytes-to-bytes codec"
            )
        make = COMPRESSORS[compressor]
        return compressor, [Crc32cCodec()] if make is None else [make(), Crc32cCodec()]
    if isinstance(compressor, Crc32cCodec):
        return "none", [compressor]
    if isinstance(compressor, BytesBytesCodec):
        name = str(compressor.to_dict().get("name", type(compressor).__name__))
        return name, [compressor, Crc32cCodec()]
    raise ParameterError(
        f"write: compressor must be a name, a zarr bytes-to-bytes codec or None, got {compressor!r}"
    )
