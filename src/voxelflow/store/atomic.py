"""Atomic publication of volume folders: key locks, staging folders, rename and exchange.

A volume is written in full into a staging folder on the same filesystem, then renamed into
place: ``rename(2)`` of a folder is atomic on POSIX, so a reader sees either no volume or a
complete one, and a process killed mid-write leaves only its staging folder, which the next
writer of the same key removes. Replacing a stored volume swaps the two folders in one
``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere (or on filesystems without it) it is two
renames, with a moment in which the key reads as absent, never as a mix.

Atomic here means against process death (and exceptions). Files are not fsync'ed, so a power
loss in the seconds after a write may lose the volume or leave chunk files truncated, which
then fail to decode rather than read as zeros; fsync per chunk would cost more than the write.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from .layout import BOOKKEEPING, key_digest

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: locks are process-local
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "discard",
    "file_lock",
    "key_lock",
    "namespace_lock",
    "new_staging",
    "publish",
    "remove_abandoned",
    "remove_stale",
    "trash_path",
]

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextmanager
def file_lock(path: Path, *, blocking: bool = True, shared: bool = False) -> Iterator[bool]:
    """Hold an exclusive (or, with `shared`, a shared) lock on `path` (created if missing)
    across threads and processes.

    Yields whether the lock is held (always True when `blocking`). ``flock`` locks belong to
    the open file description, so two threads of one process that each open the file exclude
    each other as two processes do; the kernel drops the lock when its holder dies, so a
    killed writer never leaves its key locked.
    """
    if fcntl is None:  # pragma: no cover
        with _PROCESS_LOCKS_GUARD:
            lock = _PROCESS_LOCKS.setdefault(str(path), threading.Lock())
        acquired = lock.acquire(blocking)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # releases the lock


def _locks_dir(root: Path) -> Path:
    path = root / BOOKKEEPING / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _staging_dir(root: Path) -> Path:
    path = root / BOOKKEEPING / "staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def key_lock(root: Path, key: str) -> AbstractContextManager[bool]:
    """Exclusive lock on one key of the store at `root`: held for a whole write or delete."""
    return file_lock(_locks_dir(root) / f"{key_digest(key)}.lock")


def namespace_lock(root: Path) -> AbstractContextManager[bool]:
    """Exclusive lock on the store's folder tree: held only to check, create and rename folders.

    Without it, writing ``"a"`` and ``"a/b"`` at once could nest one volume inside the other.
    Always taken after a key lock, never before, so the two cannot deadlock.
    """
    return file_lock(_locks_dir(root) / "namespace.lock")


def new_staging(root: Path, key: str) -> Path:
    """A fresh, empty staging folder for a write of `key` (same filesystem as the store)."""
    path = _staging_dir(root) / f"{key_digest(key)}.{uuid.uuid4().hex}.partial"
    path.mkdir()
    return path


def trash_path(root: Path, key: str) -> Path:
    """A fresh staging name to move a volume of `key` to before deleting it."""
    return _staging_dir(root) / f"{key_digest(key)}.{uuid.uuid4().hex}.trash"


def remove_stale(root: Path, key: str) -> int:
    """Remove what dead writers of `key` left in staging; call only while holding its key lock.

    Returns the number of entries removed.
    """
    prefix = key_digest(key) + "."
    removed = 0
    for entry in _staging_dir(root).iterdir():
        if entry.name.startswith(prefix):
            discard(entry)
            removed += 1
    return removed


def remove_abandoned(root: Path) -> int:
    """Remove the staging entries of keys nobody holds locked (writers gone); returns the count."""
    removed = 0
    for entry in sorted(_staging_dir(root).iterdir()):
        digest = entry.name.split(".", 1)[0]
        with file_lock(_locks_dir(root) / f"{digest}.lock", blocking=False) as acquired:
            if acquired and entry.exists():
                discard(entry)
                removed += 1
    return removed


def publish(staging: Path, target: Path, *, replace: bool) -> Path | None:
    """Move the complete volume folder `staging` to `target`.

    With ``replace=False`` the target must not exist. With ``replace=True`` it must, and the two
    are swapped; the old volume is returned (now under a staging name) for the caller to
    :func:`discard`. Call while holding the key lock and the namespace lock.
    """
    if not replace:
        # rename(2) silently replaces an empty target folder: refuse anything already there
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "target exists", str(target))
        os.rename(staging, target)
        return None
    if _exchange(staging, target):
        return staging
    trash = staging.with_suffix(".trash")
    os.rename(target, trash)
    os.rename(staging, target)
    return trash


def discard(path: Path) -> None:
    """Delete a staging or trash folder (or file), ignoring what is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2``; False where that is unavailable."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # kernel or filesystem without RENAME_EXCHANGE: fall back to two renames
    raise OSError(err, os.strerror(err), str(a), None, str(b))


_RENAMEAT2: list[Any] = []


def _renameat2() -> Any:
    """libc's renameat2 (glibc >= 2.28), looked up once; None where there is none."""
    if not _RENAMEAT2:
        function: Any = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            function = libc.renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p] * 2 + [ctypes.c_uint]
            function.restype = ctypes.c_int
        except (OSError, AttributeError, TypeError):
            function = None
        _RENAMEAT2.append(function)
    return _RENAMEAT2[0]
