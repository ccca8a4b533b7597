"""Rendering DICOM frames to display values, and preset previews as PNG files.

:func:`render_frame` is the core of a DICOMweb ``/rendered`` resource: one frame, through the
file's own display pipeline unless the caller overrides the window. :func:`write_preset_pngs`
writes one slice under named CT windows (the demo's pictures).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DecodeError, DisplayError
from .apply import apply_pipeline, window
from .pipeline import (
    AUTO_METHODS,
    LUT,
    VOI,
    AutoWindow,
    DisplayPipeline,
    Rescale,
    Window,
    _voi_from_dict,
    check_bits,
    preset,
)

__all__ = ["parse_window", "render_frame", "write_preset_pngs"]

_COLOUR = (
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
    "YBR_PARTIAL_420",
    "PALETTE COLOR",
)


def parse_window(value: Any) -> VOI:
    """A VOI from the ways callers name one.

    Accepted: a :class:`Window`, :class:`LUT` or :class:`AutoWindow`; ``(center, width)`` or
    ``(center, width, function)``; a preset name ("lung") or an automatic method ("minmax");
    a dict as :meth:`DisplayPipeline.to_dict` writes its ``"voi"``.

    Raises
    ------
    DisplayError
        If `value` is none of these, or names an unknown preset, method or function.
    """
    if isinstance(value, (Window, LUT, AutoWindow)):
        return value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        if key in AUTO_METHODS:
            return AutoWindow(method=key)
        return preset(value)
    if isinstance(value, Mapping):
        return _voi_from_dict(value)
    if isinstance(value, Sequence) and len(value) in (2, 3):
        function = value[2] if len(value) == 3 else "LINEAR"
        return Window(center=value[0], width=value[1], function=function)
    raise DisplayError(
        f"window must be a Window, (center, width[, function]), a preset or auto method name, "
        f"or a VOI dict; got {value!r}"
    )


def _header(src: Any) -> Any:
    import pydicom

    if isinstance(src, pydicom.Dataset):
        return src
    if not isinstance(src, (str, os.PathLike)):
        raise DecodeError(f"expected a path or a pydicom Dataset, got {type(src).__name__}")
    try:
        return pydicom.dcmread(src, stop_before_pixels=True)
    except FileNotFoundError as exc:
        raise DecodeError(f"cannot open: {exc.strerror or exc}", source=str(src)) from exc
    except Exception as exc:
        raise DecodeError(f"cannot parse the DICOM header: {exc}", source=str(src)) from exc


def _scale_colour(rgb: np.ndarray, in_bits: int, bits: int | None) -> np.ndarray:
    top = float((1 << in_bits) - 1)
    if bits is None:
        return (rgb.astype(np.float64) / top).astype(np.float32)
    dtype = np.uint8 if bits <= 8 else np.uint16
    if in_bits == bits:
        return rgb.astype(dtype)
    # The same rounding as the grayscale path: once, half up.
    scaled = np.floor(rgb.astype(np.float64) / top * ((1 << bits) - 1) + 0.5)
    return np.minimum(scaled, (1 << bits) - 1).astype(dtype)


def render_frame(
    src: Any,
    *,
    frame: int = 0,
    window: Any = None,
    voi_index: int = 0,
    bits: int | None = 8,
    backend: str | None = None,
) -> np.ndarray:
    """One DICOM frame as display values, through the file's own display pipeline.

    Parameters
    ----------
    src : str, os.PathLike or pydicom.Dataset
        The DICOM file or dataset.
    frame : int
        0-based frame index.
    window : optional
        Overrides the file's VOI (see :func:`parse_window`): a Window, ``(center, width)``,
        a preset name, an automatic method, ... in modality units. Default: the file's VOI
        choice `voi_index`, or an automatic min/max window over the frame if it has none.
    voi_index : int
        Which of the file's VOI choices (:func:`voi_options`: VOI LUTs, then windows).
    bits : int or None
        Output depth 1..16, or None for float32 in ``[0, 1]``.
    backend : str, optional
        Kernel backend.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` display values for grayscale (MONOCHROME1 inverted, Presentation
        LUT Shape honoured); ``(rows, columns, 3)`` RGB for colour frames, which pass
        through (YBR converted, palettes applied, scaled to `bits`; `window` does not apply).

    Raises
    ------
    DecodeError
        If the file cannot be read or decoded (naming file and frame).
    DisplayError
        For a bad window, VOI index or depth, or a pipeline inconsistent in the file.
    """
    from ..dicom.decode import decode

    bits = check_bits(bits)
    ds = _header(src)
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric in _COLOUR:
        rgb = decode(src, frames=frame, apply_palette=True, backend=backend)
        if photometric == "PALETTE COLOR":
            # The descriptor's bits per entry (decode returns 8-bit entries widened to 16).
            descriptor = ds.get("RedPaletteColorLookupTableDescriptor") or (0, 0, 16)
            in_bits = 8 if int(descriptor[2]) == 8 and rgb.max(initial=0) < 256 else 16
        elif photometric.startswith("YBR"):
            in_bits = 8 * rgb.dtype.itemsize  # converted to RGB at the allocated depth
        else:
            in_bits = int(ds.get("BitsStored") or 8 * rgb.dtype.itemsize)
        return _scale_colour(rgb, in_bits, bits)
    stored = decode(src, frames=frame, backend=backend)
    pipeline = DisplayPipeline.from_dataset(ds, frame=frame, voi_index=voi_index, bits=bits)
    if window is not None:
        pipeline = pipeline.with_voi(parse_window(window))
    return apply_pipeline(stored, pipeline, backend=backend)


def write_preset_pngs(
    image: Any,
    out_dir: str | os.PathLike[str],
    *,
    presets: Sequence[str] = ("lung", "soft_tissue", "bone"),
    rescale: Rescale | LUT | tuple[float, float] = (1.0, 0.0),
    prefix: str = "middle_slice",
) -> list[Path]:
    """Write one slice as 8-bit PNGs, one per CT window preset; return their paths.

    Parameters
    ----------
    image : array-like
        A 2-D slice, or a 3-D (z, y, x) volume whose middle slice is used; stored values.
    out_dir : path
        Created if missing. Files are ``<prefix>_<preset>.png``, written atomically
        (temporary name, then rename).
    presets : sequence of str
        Names from :data:`PRESETS`.
    rescale : Rescale, LUT or (slope, intercept)
        The slice's Modality LUT (to HU for CT).
    prefix : str
        File name prefix.

    Raises
    ------
    DisplayError
        For an unknown preset, or an image that is not 2-D or 3-D.
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[arr.shape[0] // 2]
    if arr.ndim != 2:
        raise DisplayError(f"image must be a 2-D slice or a 3-D volume, got shape {arr.shape}")
    modality = (
        rescale
        if isinstance(rescale, (Rescale, LUT))
        else Rescale(slope=rescale[0], intercept=rescale[1])
    )
    windows = [(name, preset(name)) for name in presets]  # unknown names fail before any write
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, voi in windows:
        pixels = window(arr, DisplayPipeline(modality=modality, voi=voi, bits=8))
        path = folder / f"{prefix}_{voi.explanation or name}.png"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            Image.fromarray(pixels).save(tmp, format="PNG")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths
