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


class VoxelflowWarning(UserWarning):
    """Input that was handled, with an oddity worth knowing."""


class DecodeWarning(VoxelflowWarning):
    """Pixel data that decodes, with an oddity (excess bytes, High Bit, trimmed RLE segment)."""
