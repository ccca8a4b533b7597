"""A zarr store that refuses to read a missing chunk as fill values, or a replaced volume.

zarr reads an absent chunk key as an all-fill-value chunk: right for sparse arrays, silently
wrong for a volume whose chunk file was lost (a failed copy, a cleaned cache). voxelflow writes
every chunk (``write_empty_chunks``), so for a stored volume a missing chunk is damage, and
:class:`ChunkCheckedStore` turns it into a :class:`~voxelflow.errors.MissingChunkError` naming
the volume, the level and the chunk.

A lazy volume reads its chunks by path. If its key is overwritten (a new folder swapped in) or
deleted after it was opened, later reads would come from the new volume: a silent mix of two
versions. So the store remembers the identity of the volume folder at open (inode and change
time: a new folder, or the same one renamed, differs) and checks it after every chunk
read, raising :class:`~voxelflow.errors.VolumeChangedError`. Checking after the read is what
makes it sound: a read that reached the new folder began after the swap, so the check after it
sees the new identity. One ``stat`` per chunk is negligible next to decoding the chunk.
"""

from __future__ import annotations

import os
import re
from typing import Any

from zarr.storage import LocalStore, WrapperStore

from ..errors import MissingChunkError, VolumeChangedError

__all__ = ["ChunkCheckedStore", "folder_identity", "parse_chunk_key"]

# zarr v3 "default" chunk key encoding with "/" separators: "<array>/c/<i>/<j>/<k>"; voxelflow's
# level arrays are named by their level number.
_CHUNK_KEY = re.compile(r"(?P<level>\d+)/c(?P<index>(?:/\d+)*)")


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


class ChunkCheckedStore(WrapperStore[LocalStore]):
    """A volume group's :class:`zarr.storage.LocalStore` whose missing chunks raise.

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
    """

    def __init__(
        self,
        store: LocalStore,
        *,
        volume_key: str = "",
        where: str = "",
        identity: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(store)
        self.volume_key = volume_key
        self.where = where
        self.identity = identity

    def _with_store(self, store: LocalStore) -> ChunkCheckedStore:
        return type(self)(
            store, volume_key=self.volume_key, where=self.where, identity=self.identity
        )

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        value = await self._store.get(key, prototype, byte_range)
        self._check(key, value is None)
        return value

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
        key_ranges = list(key_ranges)
        values = await self._store.get_partial_values(prototype, key_ranges)
        for (key, _), value in zip(key_ranges, values):
            self._check(key, value is None)
        return values

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
