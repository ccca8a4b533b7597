"""The one checked chunk reader of a volume store: missing, damaged and replaced chunks raise.

Every read of a stored volume's voxels goes through :class:`ChunkCheckedStore`:
``Volume.to_numpy`` (``array[...]``), ``Volume.to_dask`` (``dask.array.from_array`` over the
zarr array, also on distributed workers, which unpickle the store with it), out-of-core
resampling, pyramid levels, and the renderer's chunk reads (:mod:`voxelflow.render.chunks`,
through :func:`chunk_reader`).

Why a store wrapper, and why it decodes. zarr reads a chunk in two steps: the store fetches its
bytes, then the array's codec pipeline decodes them. The store is the one place every read path
passes through, without replacing zarr's array class; a codec wrapper would not do, because a
codec is not told which chunk it decodes and so could not name it. So for an array whose codec
chain it knows (``bytes``, then blosc, zstd or nothing, then an optional ``crc32c``: every chain
voxelflow writes) the wrapper presents zarr that array's metadata with the ``bytes`` codec
alone and answers each chunk request with the chunk's *decoded* bytes
(:meth:`ChunkLayout.decode`); zarr then only reinterprets them as an array (same work as
before: one decode, one copy into the output). The decoder checks, before any codec runs:

- the crc32c checksum, which new stores write on every chunk, so a flipped bit anywhere (blosc
  header or payload) is caught;
- a blosc header: its compressed size equal to the bytes present (blosc 1 decodes without being
  told its buffer's length, so a truncated chunk would be read past its end: a SIGSEGV once in
  a few runs), its decoded size equal to one chunk, its type size, block size and block offsets
  inside the buffer;
- a zstd frame header: its declared content size equal to one chunk (zstd never reads past its
  input, and decodes into a chunk-sized buffer, so nothing inflates beyond one chunk);
- an uncompressed chunk's byte count;

and turns any error of the codec itself into :class:`~voxelflow.errors.CorruptChunkError`
naming the volume, level, chunk index and file. Stores written before checksums still read;
in them a flipped payload bit that still decodes cannot be told from data. Chains it does not
know (sharding, user codecs such as gzip) are decoded by zarr, after the missing-chunk check and,
where the chain ends in ``crc32c``, the checksum check made here.

An array's ``zarr.json`` read through the wrapper is validated (:meth:`ChunkLayout.from_document`):
unreadable or garbled metadata raises :class:`~voxelflow.errors.StoreError` naming the file and
the field, never a JSON, Unicode, key or type error from zarr.

zarr reads an absent chunk key as an all-fill-value chunk: right for sparse arrays, silently
wrong for a volume whose chunk file was lost (a failed copy, a cleaned cache). voxelflow writes
every chunk (``write_empty_chunks``), so for a stored volume a missing chunk is damage, and
turns into a :class:`~voxelflow.errors.MissingChunkError` naming the volume, the level and the
chunk.

A lazy volume reads its chunks by path. If its key is overwritten (a new folder swapped in) or
deleted after it was opened, later reads would come from the new volume: a silent mix of two
versions. So the store remembers the identity of the volume folder at open (inode and change
time: a new folder, or the same one renamed, differs) and checks it after every chunk
read, raising :class:`~voxelflow.errors.VolumeChangedError`. Checking after the read is what
makes it sound: a read that reached the new folder began after the swap, so the check after it
sees the new identity. One ``stat`` per chunk is negligible next to decoding the chunk.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.storage import LocalStore, WrapperStore

from ..errors import CorruptChunkError, MissingChunkError, StoreError, VolumeChangedError

__all__ = [
    "ChunkCheckedStore",
    "ChunkLayout",
    "ChunkReader",
    "chunk_reader",
    "folder_identity",
    "parse_chunk_key",
]

# zarr v3 "default" chunk key encoding with "/" separators: "<array>/c/<i>/<j>/<k>"; voxelflow's
# level arrays are named by their level number.
_CHUNK_KEY = re.compile(r"(?P<level>\d+)/c(?P<index>(?:/\d+)*)")
_ARRAY_DOCUMENT = re.compile(r"(?P<level>\d+)/zarr\.json")

# The blosc (1.x) chunk header: version, codec version, flags, type size, then the decoded size,
# the block size and the compressed size including this header (uint32, little-endian).
_BLOSC_HEADER = struct.Struct("<4B3I")
_BLOSC_MEMCPYED = 0x02  # flag: the blocks are stored uncompressed after the header
_BLOSC_MAX_VERSION = 2  # the header format of every blosc 1.x (numcodecs bundles 1.21)

_COMPRESSORS = ("blosc", "zstd")


def parse_chunk_key(key: str) -> tuple[int, tuple[int, ...]] | None:
    """(level, chunk index) of a level-array chunk key of a volume group, else None."""
    match = _CHUNK_KEY.fullmatch(key)
    if match is None:
        return None
    index = tuple(int(v) for v in match["index"].split("/")[1:])
    return int(match["level"]), index


def folder_identity(folder: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(inode, change time in ns) of a folder; None when it is gone.

    Not the device number: it differs between machines mounting one network filesystem,
    where a volume opened on a client is read by dask workers elsewhere.
    """
    try:
        st = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_ctime_ns)


def positive_ints(value: Any, name: str, where: str, *, zero: bool = False) -> tuple[int, ...]:
    """`value` as a tuple of ints (each >= 1, or >= 0 with `zero`), else StoreError naming it."""
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise StoreError(f"{where}: {name} must be a list of integers, got {value!r:.80}")
    low = 0 if zero else 1
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise StoreError(f"{where}: {name} must hold integers >= {low}, got {value!r:.80}")
    return tuple(value)


def numeric_dtype(name: Any, field: str, where: str) -> np.dtype:
    """The numeric (or bool) dtype `name` names, else StoreError naming `field`."""
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise StoreError(f"{where}: {field} {name!r:.40} is not a numeric or bool type")
    return dtype


def _zstd_content_size(raw: np.ndarray) -> int | None:
    """The decoded size a zstd frame's header declares (RFC 8878, 3.1.1.1), None if absent."""
    if raw.size < 6 or int.from_bytes(raw[:4].tobytes(), "little") != 0xFD2FB528:
        raise ValueError("not a zstd frame")
    descriptor = int(raw[4])
    single_segment = (descriptor >> 5) & 1
    at = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    width = (single_segment, 2, 4, 8)[descriptor >> 6]
    if width == 0:
        return None
    if raw.size < at + width:
        raise ValueError("its zstd frame header is cut short")
    return int.from_bytes(raw[at : at + width].tobytes(), "little") + (256 if width == 2 else 0)


@dataclass(frozen=True)
class ChunkLayout:
    """How the chunks of one zarr v3 array are encoded, from its ``zarr.json``; decodes them.

    Attributes
    ----------
    path : str
        The array's path in its group (a volume's level number).
    shape, chunks : tuple of int
        The array's shape and its (regular) chunk shape.
    dtype : numpy.dtype
        The stored dtype, in the byte order of the ``bytes`` codec.
    compressor : str or None
        "blosc", "zstd", None (uncompressed) or "other" (a chain zarr decodes).
    typesize : int or None
        The blosc type size the metadata declares.
    crc32c : bool
        Whether the chain ends in a crc32c checksum (stores written by voxelflow since its
        checksums; absent from older ones).
    decodes : bool
        Whether :meth:`decode` decodes the whole chain (else it checks the checksum only and
        zarr decodes).
    document : dict
        The ``zarr.json`` as read.
    """

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    compressor: str | None
    typesize: int | None
    crc32c: bool
    decodes: bool
    document: Mapping[str, Any]

    @property
    def nbytes(self) -> int:
        """Bytes of one decoded chunk (zarr v3 stores edge chunks whole)."""
        return math.prod(self.chunks) * self.dtype.itemsize

    @classmethod
    def from_document(cls, document: Any, path: str, where: str) -> ChunkLayout:
        """The layout of the array whose ``zarr.json`` is `document`.

        Raises
        ------
        StoreError
            Naming `where` (the file) and the field, for a document that is not a zarr v3
            array of a numeric dtype on a regular chunk grid.
        """
        if not isinstance(document, Mapping):
            raise StoreError(f"{where}: not a JSON object")
        if document.get("zarr_format") != 3 or document.get("node_type") != "array":
            raise StoreError(
                f"{where}: not a zarr v3 array (zarr_format {document.get('zarr_format')!r}, "
                f"node_type {document.get('node_type')!r})"
            )
        shape = positive_ints(document.get("shape"), "shape", where)
        grid = document.get("chunk_grid")
        configuration = grid.get("configuration") if isinstance(grid, Mapping) else None
        if not isinstance(grid, Mapping) or grid.get("name") != "regular" or not isinstance(
            configuration, Mapping
        ):
            raise StoreError(f"{where}: chunk_grid must be a regular grid, got {grid!r:.80}")
        chunks = positive_ints(configuration.get("chunk_shape"), "chunk_grid chunk_shape", where)
        if len(chunks) != len(shape):
            raise StoreError(f"{where}: chunk_shape {chunks} does not match shape {shape}")
        dtype = numeric_dtype(document.get("data_type"), "data_type", where)
        encoding = document.get("chunk_key_encoding")
        if not isinstance(encoding, Mapping) or encoding.get("name") != "default":
            raise StoreError(f"{where}: chunk_key_encoding {encoding!r:.80} is not the default")
        codecs = document.get("codecs")
        if (
            not isinstance(codecs, Sequence)
            or not codecs
            or not all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in codecs)
        ):
            raise StoreError(f"{where}: codecs must be a list of named codecs, got {codecs!r:.80}")
        names = [c["name"] for c in codecs]
        crc = names[0] == "bytes" and names[-1] == "crc32c" and len(names) > 1
        middle = names[1 : len(names) - crc]
        decodes = names[0] == "bytes" and len(middle) <= 1 and all(n in _COMPRESSORS for n in middle)
        compressor = (middle[0] if middle else None) if decodes else "other"
        endian = (codecs[0].get("configuration") or {}).get("endian", "little")
        if dtype.itemsize > 1:
            dtype = dtype.newbyteorder(">" if endian == "big" else "<")
        typesize = None
        if compressor == "blosc":
            typesize = (codecs[1].get("configuration") or {}).get("typesize")
            if typesize is not None and (isinstance(typesize, bool) or not isinstance(typesize, int)):
                raise StoreError(f"{where}: blosc typesize {typesize!r:.20} is not an integer")
        return cls(
            path, shape, chunks, dtype, compressor, typesize, crc, decodes, dict(document)
        )

    def presented(self) -> bytes:
        """The ``zarr.json`` zarr is shown: the ``bytes`` codec alone where :meth:`decode`
        decodes the chain (zarr then receives decoded chunks), else the document as stored."""
        document = dict(self.document)
        if self.decodes:
            document["codecs"] = [document["codecs"][0]]
        return json.dumps(document).encode()

    def decode(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The decoded bytes (flat uint8, :attr:`nbytes` long) of one chunk's stored bytes.

        `raw` is the chunk file's bytes (uint8); `out`, if given, a uint8 buffer of
        :attr:`nbytes` to decode into. Where the chain is not one this decodes
        (:attr:`decodes` false) the checksum is checked and `raw` returned as it is.

        Raises
        ------
        ValueError
            Saying why the bytes are not one chunk (the caller names the chunk).
        """
        raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
        if self.crc32c:
            body = _check_crc32c(raw)
            if not self.decodes:
                return raw  # zarr's own chain checks it again and strips it
            raw = body
        if not self.decodes:
            return raw
        nbytes = self.nbytes
        if out is None:
            if self.compressor is None:
                if raw.size != nbytes:
                    raise ValueError(f"{raw.size} bytes, expected {nbytes}")
                return raw
            out = np.empty(nbytes, np.uint8)
        if self.compressor is None:
            if raw.size != nbytes:
                raise ValueError(f"{raw.size} bytes, expected {nbytes}")
            out[:] = raw
            return out
        if self.compressor == "blosc":
            self._check_blosc(raw, nbytes)
            import numcodecs.blosc

            try:
                numcodecs.blosc.decompress(raw, out)
            except Exception as error:  # any codec failure means a damaged chunk
                raise ValueError(f"blosc cannot decode it ({error})") from error
            return out
        size = _zstd_content_size(raw)
        if size is not None and size != nbytes:
            raise ValueError(f"its zstd frame decodes to {size} bytes, expected {nbytes}")
        import numcodecs.zstd

        try:
            # into a chunk-sized buffer: a frame without a declared size must decode to
            # exactly that, and can never inflate beyond it
            numcodecs.zstd.decompress(raw, out)
        except Exception as error:  # any codec failure means a damaged chunk
            raise ValueError(f"zstd cannot decode it ({error})") from error
        return out

    def _check_blosc(self, raw: np.ndarray, nbytes: int) -> None:
        """Raise ValueError unless `raw` is a blosc 1 buffer of `nbytes` decoded bytes whose
        header and block offsets all lie inside it: blosc 1 trusts them."""
        if raw.size < _BLOSC_HEADER.size:
            raise ValueError(f"{raw.size} bytes, shorter than a blosc header")
        version, _, flags, typesize, decoded, blocksize, cbytes = _BLOSC_HEADER.unpack_from(raw)
        if cbytes != raw.size or decoded != nbytes:
            raise ValueError(
                f"{raw.size} bytes; its blosc header says {cbytes} bytes decoding to {decoded}, "
                f"expected {nbytes}"
            )
        if not 1 <= version <= _BLOSC_MAX_VERSION:
            raise ValueError(f"blosc header version {version} is not blosc 1's")
        expected = self.typesize or self.dtype.itemsize
        if typesize != expected and not (self.typesize is None and typesize == 1):
            raise ValueError(f"blosc type size {typesize}, expected {expected}")
        if blocksize < 1 or blocksize > max(nbytes, 1):
            raise ValueError(f"blosc block size {blocksize} outside 1..{nbytes}")
        if flags & _BLOSC_MEMCPYED:
            if cbytes != nbytes + _BLOSC_HEADER.size:
                raise ValueError(f"an uncompressed blosc buffer of {cbytes} bytes for {nbytes}")
            return
        blocks = -(-nbytes // blocksize)
        first = _BLOSC_HEADER.size + 4 * blocks
        if cbytes < first:
            raise ValueError(f"{cbytes} bytes cannot hold {blocks} blosc block offsets")
        starts = raw[_BLOSC_HEADER.size : first].view("<u4")
        if blocks and (int(starts.min()) < first or int(starts.max()) >= cbytes):
            raise ValueError("a blosc block offset points outside the chunk")


def _check_crc32c(raw: np.ndarray) -> np.ndarray:
    """`raw` less its trailing crc32c (little-endian uint32, as zarr's codec writes it);
    ValueError when it does not match."""
    import google_crc32c

    if raw.size < 4:
        raise ValueError(f"{raw.size} bytes, shorter than its crc32c checksum")
    body = raw[:-4]
    stored = int.from_bytes(raw[-4:].tobytes(), "little")
    computed = google_crc32c.value(body)
    if stored != computed:
        raise ValueError(f"crc32c checksum mismatch (stored {stored:08x}, computed {computed:08x})")
    return body


class ChunkCheckedStore(WrapperStore[LocalStore]):
    """A volume group's :class:`zarr.storage.LocalStore` through which every chunk read is
    checked and decoded (see the module docstring).

    Parameters
    ----------
    store : zarr.storage.LocalStore
        Rooted at the volume's group folder.
    volume_key : str
        The volume's key in its :class:`~voxelflow.store.VolumeStore`, for error messages.
    where : str
        The volume store's location, for error messages.
    identity : tuple, optional
        :func:`folder_identity` of the volume folder when it was opened; chunk reads raise
        :class:`VolumeChangedError` once it differs. None: not checked.
    layouts : mapping of str to ChunkLayout, optional
        Layouts of the group's arrays by path, already read and validated (by
        :meth:`VolumeStore.open <voxelflow.store.VolumeStore.open>`); the others are read from
        their ``zarr.json`` when zarr first asks for it.
    """

    def __init__(
        self,
        store: LocalStore,
        *,
        volume_key: str = "",
        where: str = "",
        identity: tuple[int, int] | None = None,
        layouts: Mapping[str, ChunkLayout] | None = None,
    ) -> None:
        super().__init__(store)
        self.volume_key = volume_key
        self.where = where
        self.identity = identity
        # plain data (pickled with the store to dask workers, which never re-read zarr.json)
        self.layouts: dict[str, ChunkLayout] = dict(layouts or {})

    def _with_store(self, store: LocalStore) -> ChunkCheckedStore:
        return type(self)(
            store,
            volume_key=self.volume_key,
            where=self.where,
            identity=self.identity,
            layouts=self.layouts,
        )

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        parsed = parse_chunk_key(key)
        if parsed is None:
            document = _ARRAY_DOCUMENT.fullmatch(key)
            if document is not None and byte_range is None:
                layout = await self._layout(document["level"], prototype)
                return None if layout is None else prototype.buffer.from_bytes(layout.presented())
            return await self._store.get(key, prototype, byte_range)
        value = await self.get_encoded(key, prototype, byte_range)
        layout = self.layouts.get(str(parsed[0]))
        if value is None or layout is None:
            return value
        if byte_range is not None:
            if not layout.decodes:
                return value
            raise StoreError(
                f"volume store {self.where}: volume {self.volume_key!r}: partial chunk reads "
                f"({key!r}) are not supported"
            )
        raw = value.as_numpy_array()
        if layout.compressor is None and not layout.crc32c:
            decoded = self.decode_chunk(key, raw)  # a size check: no thread needed
        else:
            # codecs release the GIL: decode off zarr's event loop, as zarr's own codecs do
            decoded = await asyncio.to_thread(self.decode_chunk, key, raw)
        return prototype.buffer.from_array_like(decoded)

    async def get_encoded(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        """A chunk's bytes as stored, after the missing-chunk and volume-identity checks."""
        value = await self._store.get(key, prototype, byte_range)
        self._check(key, value is None)
        return value

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
        return list(
            await asyncio.gather(
                *(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)
            )
        )

    async def _layout(self, path: str, prototype: Any) -> ChunkLayout | None:
        """The layout of the array at `path`, read and validated on first use."""
        layout = self.layouts.get(path)
        if layout is not None:
            return layout
        value = await self._store.get(f"{path}/zarr.json", prototype)
        if value is None:
            return None
        where = f"volume store {self.where}: volume {self.volume_key!r} level {path}: " + str(
            self._store.root / path / "zarr.json"
        )
        layout = ChunkLayout.from_document(parse_document(value.to_bytes(), where), path, where)
        self.layouts[path] = layout
        return layout

    def decode_chunk(self, key: str, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The decoded bytes of chunk `key` (see :meth:`ChunkLayout.decode`).

        Raises
        ------
        CorruptChunkError
            Naming the volume, level, chunk index and file, and why it does not decode.
        """
        parsed = parse_chunk_key(key)
        assert parsed is not None
        level, index = parsed
        layout = self.layouts[str(level)]
        try:
            return layout.decode(raw, out)
        except ValueError as error:
            raise CorruptChunkError(
                f"volume store {self.where}: volume {self.volume_key!r} level {level} chunk "
                f"{index} (file {self._store.root / key}) is damaged: {error}; "
                "write the volume again with overwrite=True",
                path=str(self._store.root / key),
                chunk=index,
                array=str(level),
                key=self.volume_key,
                level=level,
            ) from error

    def _check(self, key: str, missing: bool) -> None:
        parsed = parse_chunk_key(key)
        if parsed is None:
            return  # metadata probes (zarr.json, v2 names) are allowed to be absent
        if self.identity is not None and folder_identity(self._store.root) != self.identity:
            raise VolumeChangedError(
                f"volume store {self.where}: volume {self.volume_key!r} was replaced or deleted "
                "after it was opened; open it again"
            )
        if not missing:
            return
        level, index = parsed
        raise MissingChunkError(
            f"volume store {self.where}: volume {self.volume_key!r} level {level} is missing "
            f"chunk {index} (file {key!r} under {self._store.root}); the volume is damaged, "
            "write it again with overwrite=True",
            key=self.volume_key,
            level=level,
            chunk=index,
        )

    def __repr__(self) -> str:
        return f"ChunkCheckedStore({self._store.root}, volume_key={self.volume_key!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChunkCheckedStore)
            and self._store == other._store
            and self.volume_key == other.volume_key
        )

    def __hash__(self) -> int:
        return hash((type(self), str(self._store.root), self.volume_key))


def parse_document(data: bytes, where: str) -> Any:
    """A ``zarr.json``'s bytes as JSON; StoreError naming `where` when they are not."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise StoreError(f"{where}: unreadable metadata, not JSON ({error})") from None


@dataclass(frozen=True)
class ChunkReader:
    """Chunks of one zarr v3 array fetched as stored and decoded by :class:`ChunkLayout`, for
    readers that decode into their own buffers (:mod:`voxelflow.render.chunks`).

    Attributes
    ----------
    array : zarr.Array
    layout : ChunkLayout
    store : ChunkCheckedStore or None
        Set for a stored volume's array: fetches and decodes go through its checks.
    """

    array: Any
    layout: ChunkLayout
    store: ChunkCheckedStore | None

    def key(self, index: tuple[int, ...]) -> str:
        """The chunk's key relative to the array."""
        return str(self.array.metadata.encode_chunk_key(index))

    async def fetch(self, index: tuple[int, ...], prototype: Any) -> np.ndarray | None:
        """The chunk's stored bytes (uint8), None when absent from a plain zarr array."""
        if self.store is not None:
            key = f"{self.layout.path}/{self.key(index)}"
            value = await self.store.get_encoded(key, prototype)
        else:
            value = await (self.array.store_path / self.key(index)).get(prototype=prototype)
        return None if value is None else value.as_numpy_array()

    def decode(self, index: tuple[int, ...], raw: np.ndarray, out: np.ndarray) -> None:
        """Decode the chunk's bytes into `out` (the flat chunk buffer, of ``layout.dtype``).

        Raises
        ------
        CorruptChunkError
            Naming the chunk and its file.
        """
        target = out.view(np.uint8)
        if self.store is not None:
            decoded = self.store.decode_chunk(f"{self.layout.path}/{self.key(index)}", raw, target)
        else:
            try:
                decoded = self.layout.decode(raw, target)
            except ValueError as error:
                raise CorruptChunkError(
                    f"{self.array.store_path}: chunk {index} (key {self.key(index)!r}) does not "
                    f"decode to {self.layout.chunks} {self.layout.dtype.name}: {error}",
                    path=f"{self.array.store_path}/{self.key(index)}",
                    chunk=index,
                    array=str(self.array.store_path),
                ) from error
        if decoded is not target:
            target[:] = decoded


def chunk_reader(array: Any) -> ChunkReader | None:
    """A :class:`ChunkReader` for a zarr v3 array whose codec chain :class:`ChunkLayout`
    decodes (every chain voxelflow writes), else None (read it through zarr)."""
    metadata = getattr(array, "metadata", None)
    store_path = getattr(array, "store_path", None)
    if getattr(metadata, "zarr_format", None) != 3 or store_path is None:
        return None
    store = store_path.store
    if isinstance(store, ChunkCheckedStore):
        layout = store.layouts.get(store_path.path)
        if layout is None or not layout.decodes:
            return None
        return ChunkReader(array, layout, store)
    try:
        layout = ChunkLayout.from_document(metadata.to_dict(), store_path.path, str(store_path))
    except StoreError:
        return None
    return ChunkReader(array, layout, None) if layout.decodes else None
