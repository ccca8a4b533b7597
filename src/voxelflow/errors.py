"""The exception hierarchy: everything voxelflow raises on bad input derives from VoxelflowError.

Each subclass also derives from the matching builtin so callers that already catch
``ValueError`` or ``ImportError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "VoxelflowError",
    "ParameterError",
    "BackendError",
    "DecodeError",
    "MissingPluginError",
    "DisplayError",
    "ResampleError",
    "RenderError",
    "StoreError",
    "InvalidKeyError",
    "VolumeNotFoundError",
    "IncompleteVolumeError",
    "KeyConflictError",
    "MissingChunkError",
    "CorruptChunkError",
    "VolumeChangedError",
    "InstanceError",
    "UpstreamError",
    "VoxelflowWarning",
    "DecodeWarning",
]


class VoxelflowError(Exception):
    """Root of every error voxelflow raises on bad input or bad requests."""


class ParameterError(VoxelflowError, ValueError):
    """A caller-supplied parameter is invalid; the message names the parameter."""


class BackendError(VoxelflowError, LookupError):
    """An unknown kernel or backend was requested, or a backend is not available here."""


class DecodeError(VoxelflowError, ValueError):
    """DICOM pixel data could not be decoded; the message names the file, frame and reason."""

    def __init__(self, reason: str, *, source: object = None, frame: int | None = None):
        self.reason = reason
        self.source = source
        self.frame = frame
        where = [str(source)] if source is not None else []
        if frame is not None:
            where.append(f"frame {frame}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


class MissingPluginError(DecodeError, ImportError):
    """The transfer syntax needs a codec plugin that is not installed; names the package."""


class StoreError(VoxelflowError):
    """A volume store could not do what was asked; the message names the store and the key."""


class InvalidKeyError(StoreError, ValueError):
    """A volume key is not a relative, path-safe name (empty part, ``..``, absolute path ...)."""


class VolumeNotFoundError(StoreError, KeyError):
    """No complete volume is stored under the key."""

    def __str__(self) -> str:
        # KeyError quotes its argument; the message is a sentence, not a key
        return str(self.args[0]) if self.args else ""


class IncompleteVolumeError(StoreError):
    """A volume group exists under the key but was never completed (an interrupted write)."""


class KeyConflictError(StoreError, FileExistsError):
    """The key's path is taken by something that is not a voxelflow volume, or nests in a volume."""


class MissingChunkError(StoreError):
    """A chunk of a stored volume is gone: reading it would have returned fill values.

    Attributes ``key`` (volume key), ``level`` (pyramid level) and ``chunk`` (chunk grid index)
    name what is missing.
    """

    def __init__(self, message: str, *, key: str, level: int, chunk: tuple[int, ...]):
        self.key = key
        self.level = level
        self.chunk = chunk
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only fields: the default reduce (cls(*args)) would lose them (dask ships
        # worker exceptions pickled)
        return (_missing_chunk_error, (str(self), self.key, self.level, self.chunk))


def _missing_chunk_error(
    message: str, key: str, level: int, chunk: tuple[int, ...]
) -> MissingChunkError:
    return MissingChunkError(message, key=key, level=level, chunk=chunk)


class CorruptChunkError(StoreError):
    """A stored chunk's bytes do not decode to one chunk of the array's shape and type (a
    truncated or overwritten file); the message names the chunk and its file.

    Attributes ``path`` (the chunk's file), ``chunk`` (chunk grid index), ``array`` (the
    array's path: the pyramid level in a stored volume), ``key`` (volume key) and ``level``
    (pyramid level) name the place, where known (None otherwise).
    """

    def __init__(self, message: str, *, path: str | None = None,
                 chunk: tuple[int, ...] | None = None, array: str | None = None,
                 key: str | None = None, level: int | None = None):
        self.path = path
        self.chunk = chunk
        self.array = array
        self.key = key
        self.level = level
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only fields, as MissingChunkError: dask ships worker exceptions pickled
        return (_corrupt_chunk_error,
                (str(self), self.path, self.chunk, self.array, self.key, self.level))


def _corrupt_chunk_error(
    message: str, path: str | None, chunk: tuple[int, ...] | None, array: str | None,
    key: str | None, level: int | None,
) -> CorruptChunkError:
    return CorruptChunkError(message, path=path, chunk=chunk, array=array, key=key, level=level)


class VolumeChangedError(StoreError):
    """A stored volume was replaced or deleted after it was opened; open it again."""


class DisplayError(VoxelflowError, ValueError):
    """A display pipeline parameter is invalid: a window (center, width, function), a preset,
    an output depth, a VOI or Modality LUT inconsistent with its descriptor, a VOI index out of
    range. The message names the parameter, and the file and attribute it came from."""


class ResampleError(VoxelflowError, ValueError):
    """A resampling request is invalid: an output grid over- or under-specified, a spacing or
    shape that is not positive, an unknown interpolation or orientation code. The message names
    the parameter and the value."""


class RenderError(VoxelflowError, ValueError):
    """An MPR, MIP or projection request is invalid: a plane whose vectors are not unit,
    orthogonal or finite, a size, spacing, slab thickness or sample count that is not positive
    or past the configured limits (:class:`voxelflow.render.RenderLimits`), an unknown mode or
    interpolation. Raised before anything is allocated; the message names the parameter."""


class InstanceError(VoxelflowError, ValueError):
    """A received DICOM instance (STOW-RS, C-STORE, WADO-RS) that cannot be stored: not DICOM,
    damaged, without pixel data or without its UIDs. ``failure`` is the PS3.4 / PS3.18 failure
    status the sender is answered with (0xC000 "cannot understand", 0xA900 "data set does not
    match SOP class", 0x0122 "SOP class not supported"); ``sop_class`` and ``sop_instance`` are
    its UIDs where they could be read."""

    def __init__(self, reason: str, *, failure: int = 0xC000, sop_class: str | None = None,
                 sop_instance: str | None = None) -> None:
        super().__init__(reason)
        self.failure = failure
        self.sop_class = sop_class
        self.sop_instance = sop_instance


class UpstreamError(VoxelflowError):
    """The upstream archive (DICOMweb) refused, failed or timed out. ``status`` is its HTTP
    status (None: no answer: refused connection, timeout, a broken multipart body)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VoxelflowWarning(UserWarning):
    """Input that was handled, with an oddity worth knowing."""


class DecodeWarning(VoxelflowWarning):
    """Pixel data that decodes, with an oddity (excess bytes, High Bit, trimmed RLE segment)."""
