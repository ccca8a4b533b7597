"""Where things live in a volume store: keys, volume folders and the hidden bookkeeping folder.

A store is a folder that is itself a zarr v3 group. A volume stored under the key
``"study/series/1"`` is the zarr group ``<root>/study/series/1`` (an OME-Zarr image: arrays
``0``, ``1``, ... are its pyramid levels); the folders above it are plain zarr groups, so
``zarr.open_group(root)`` can walk the hierarchy. Everything voxelflow needs to make writes
atomic lives in ``<root>/.voxelflow/`` (no ``zarr.json``: outside the zarr hierarchy):

- ``staging/``: volumes being written, and old copies being deleted, named
  ``<key digest>.<random>.partial`` / ``.trash``; only a writer holding the key's lock touches
  the entries of its key, so whatever it finds there was left by a writer that died;
- ``locks/``: one lock file per key, and ``namespace.lock`` held while folders are created,
  renamed into place or removed.

Listing the root group's members with zarr (``zarr.open_group(root).members()``) warns once
that ``.voxelflow`` is not a zarr node; opening volumes, or groups below the root, does not.
Keeping the bookkeeping inside the store keeps a rename within one filesystem and every
process of every user agreeing on where the locks are.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ..errors import InvalidKeyError

__all__ = [
    "BOOKKEEPING",
    "key_digest",
    "parse_key",
    "read_node_attributes",
    "volume_path",
]

#: The hidden folder under the store root that holds staging areas and locks.
BOOKKEEPING = ".voxelflow"

# A key part starts with a letter, digit or underscore (never "." — hidden, and "." / ".." —
# nor "__", which zarr v3 reserves), then letters, digits, ".", "_", "-". DICOM UIDs
# ("1.2.840.10008...") fit as they are.
_PART = re.compile(r"(?!__)[A-Za-z0-9_][A-Za-z0-9._-]*")
_MAX_PART = 255  # a file name on every common filesystem


def parse_key(key: object) -> str:
    """Validate a volume key and return it.

    A key is one or more ``/``-separated parts, e.g. ``"<study uid>/<series uid>/<n>"`` or a
    flat name; each part matches ``[A-Za-z0-9_][A-Za-z0-9._-]*``, is at most 255 characters and
    does not start with ``__``. So no absolute paths, no ``..`` or ``.``, no empty parts (leading,
    trailing or doubled ``/``), no backslashes and no hidden names.

    Raises
    ------
    InvalidKeyError
        Naming the key and what is wrong with it.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"volume key must be a string, got {type(key).__name__} {key!r}")
    if not key:
        raise InvalidKeyError("volume key is empty")
    if key.startswith("/"):
        raise InvalidKeyError(f"volume key {key!r} is absolute; keys are relative to the store")
    for part in key.split("/"):
        if not part:
            raise InvalidKeyError(
                f"volume key {key!r} has an empty part (leading, trailing or '//')"
            )
        if part in (".", ".."):
            raise InvalidKeyError(f"volume key {key!r} contains {part!r}")
        if len(part) > _MAX_PART:
            raise InvalidKeyError(
                f"volume key {key!r}: part {part[:20]!r}... is over {_MAX_PART} characters"
            )
        if not _PART.fullmatch(part):
            raise InvalidKeyError(
                f"volume key {key!r}: part {part!r} must match [A-Za-z0-9_][A-Za-z0-9._-]* "
                "and not start with '__'"
            )
    return key


def volume_path(root: Path, key: str) -> Path:
    """The folder of the volume stored under `key` (an already validated key)."""
    return root.joinpath(*key.split("/"))


def key_digest(key: str) -> str:
    """A fixed-length, filesystem-safe name for the key's lock and staging entries."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def read_node_attributes(folder: Path) -> dict[str, Any] | None:
    """The attributes of the zarr v3 node in `folder`, or None where there is no readable group.

    Reads ``zarr.json`` directly: cheaper than opening the group through zarr, which matters
    when listing a store of thousands of volumes.
    """
    try:
        document = json.loads((folder / "zarr.json").read_bytes())
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("node_type") != "group":
        return None
    attributes = document.get("attributes", {})
    return attributes if isinstance(attributes, dict) else None
