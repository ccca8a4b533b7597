"""Rendered views as image files: PNG (8- or 16-bit grey), JPEG, animated PNG and GIF.

Files are written with Pillow under a temporary name in the target folder, then renamed
(``os.replace``), so a reader never sees a partial image. The format follows the file name's
suffix.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RenderError

__all__ = ["check_animation_path", "frame_duration", "save_animation", "save_image"]

_IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_ANIMATION_FORMATS = {".png": "PNG", ".apng": "PNG", ".gif": "GIF"}


def _target(path: Any, formats: dict[str, str], what: str) -> tuple[Path, str]:
    try:
        target = Path(os.fspath(path))
    except TypeError:
        raise RenderError(f"{what}: path must be a file path, got {type(path).__name__}") from None
    fmt = formats.get(target.suffix.lower())
    if fmt is None:
        raise RenderError(f"{what}: path {str(target)!r} must end with one of {', '.join(formats)}")
    if target.is_dir():
        raise RenderError(f"{what}: path {str(target)!r} is a folder")
    if not target.parent.is_dir():
        raise RenderError(f"{what}: the folder of path {str(target)!r} does not exist")
    return target, fmt


def check_animation_path(path: Any, what: str = "save_animation") -> Path:
    """`path` as a Path if it names an animation file (``.png``, ``.apng``, ``.gif``) in an
    existing folder; else RenderError."""
    return _target(path, _ANIMATION_FORMATS, what)[0]


def frame_duration(fps: Any, what: str = "save_animation") -> int:
    """Milliseconds per frame at `fps` frames per second (0.1 .. 100)."""
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        raise RenderError(
            f"{what}: fps must be a number of frames per second, got {fps!r}"
        ) from None
    if not math.isfinite(rate) or not 0.1 <= rate <= 100.0:
        raise RenderError(f"{what}: fps must be between 0.1 and 100 frames per second, got {fps!r}")
    return max(10, round(1000.0 / rate))


def _write(target: Path, save: Any) -> Path:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise RenderError(f"cannot write {str(target)!r}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _pixels(array: Any, bits: Any, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 2 or arr.size == 0:
        raise RenderError(
            f"{what}: array must be a non-empty 2-D image (rows, columns), got shape {arr.shape}"
        )
    if bits is not None and (isinstance(bits, bool) or bits not in (8, 16)):
        raise RenderError(f"{what}: bits must be None, 8 or 16, got {bits!r}")
    if arr.dtype.kind == "f":
        if bits is None:
            raise RenderError(
                f"{what}: a float image (display values in [0, 1]) needs bits=8 or bits=16"
            )
        if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
            raise RenderError(f"{what}: a float image must hold display values in [0, 1]")
        top = 255 if bits == 8 else 65535
        return np.rint(arr * top).astype(np.uint8 if bits == 8 else np.uint16)
    if arr.dtype not in (np.uint8, np.uint16):
        raise RenderError(
            f"{what}: array must be uint8, uint16 or float in [0, 1], got {arr.dtype}"
        )
    if bits is not None and bits != arr.dtype.itemsize * 8:
        raise RenderError(f"{what}: bits={bits} does not match the array's dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def save_image(array: Any, path: Any, *, quality: int = 90, bits: int | None = None) -> Path:
    """Write a 2-D display image to `path` (atomic); return the path.

    Parameters
    ----------
    array : array-like, (rows, columns)
        uint8 (8-bit grey), uint16 (16-bit grey, PNG only), or float display values in
        [0, 1] (a pipeline with ``bits=None``) scaled to `bits`.
    path : path
        ``.png`` or ``.jpg``/``.jpeg``; its folder must exist.
    quality : int
        JPEG quality, 1 .. 95 (Pillow's advice: above 95 only grows the file).
    bits : {None, 8, 16}
        Output bit depth: needed for float input; otherwise it must match the dtype.

    Raises
    ------
    RenderError
        For a bad array, dtype, bits, quality or path (unknown suffix, missing folder), a
        16-bit JPEG, or a failed write (naming the path).
    """
    from PIL import Image

    what = "save_image"
    target, fmt = _target(path, _IMAGE_FORMATS, what)
    pixels = _pixels(array, bits, what)
    options: dict[str, Any] = {}
    if fmt == "JPEG":
        if pixels.dtype != np.uint8:
            raise RenderError(f"{what}: JPEG holds 8-bit images; got {pixels.dtype} (write a .png)")
        if (
            isinstance(quality, bool)
            or not isinstance(quality, (int, np.integer))
            or not 1 <= quality <= 95
        ):
            raise RenderError(f"{what}: quality must be an integer in 1..95, got {quality!r}")
        options["quality"] = int(quality)
    image = Image.fromarray(pixels) if pixels.dtype == np.uint8 else _image16(pixels)
    return _write(target, lambda tmp: image.save(tmp, format=fmt, **options))


def _image16(pixels: np.ndarray) -> Any:
    from PIL import Image

    # "I;16" is Pillow's native little-endian 16-bit grey, which its PNG writer stores as 16 bits
    return Image.frombytes(
        "I;16", (pixels.shape[1], pixels.shape[0]), pixels.astype("<u2").tobytes()
    )


def save_animation(frames: Any, path: Any, *, fps: float = 10.0) -> Path:
    """Write `frames` as an animation that loops forever (atomic); return the path.

    Parameters
    ----------
    frames : array-like, uint8, (n, rows, columns)
        8-bit grey display values, one image per frame.
    path : path
        ``.png`` or ``.apng`` (animated PNG, lossless) or ``.gif`` (256 grey levels, lossless
        for uint8 grey); its folder must exist.
    fps : float
        Frames per second, 0.1 .. 100 (GIF stores durations in 10 ms steps). Pillow merges
        consecutive identical frames into one frame shown for their total time, so the file
        may hold fewer frames than `frames` while playing the same.

    Raises
    ------
    RenderError
        For frames that are not a non-empty uint8 (n, rows, columns) array, a bad path or fps,
        or a failed write.
    """
    from PIL import Image

    what = "save_animation"
    target, fmt = _target(path, _ANIMATION_FORMATS, what)
    duration = frame_duration(fps, what)
    arr = np.asarray(frames)
    if arr.ndim != 3 or arr.size == 0 or arr.dtype != np.uint8:
        raise RenderError(
            f"{what}: frames must be a non-empty uint8 array (n, rows, columns), "
            f"got {arr.dtype} {arr.shape}"
        )
    images = [Image.fromarray(np.ascontiguousarray(frame)) for frame in arr]
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": images[1:],
        "duration": duration,
        "loop": 0,
    }
    if fmt == "GIF":
        options["optimize"] = False
    return _write(target, lambda tmp: images[0].save(tmp, format=fmt, **options))
