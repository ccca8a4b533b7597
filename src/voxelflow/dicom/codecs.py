"""The JPEG family (and any other compressed syntax) through pydicom's pixel backends.

pydicom keeps one decoder per transfer syntax with an ordered list of plugins (pylibjpeg,
pyjpegls, GDCM, Pillow); we ask it whether one is installed and name the package otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import get_decoder
from pydicom.pixels import pixel_array as pydicom_pixel_array
from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from ..errors import DecodeError, MissingPluginError
from .pixel_info import PixelInfo
from .source import PixelSource

__all__ = ["decode_with_plugin", "plugin_package"]


def plugin_package(transfer_syntax: Any) -> str:
    """The pip package that decodes `transfer_syntax` (what to tell a user to install)."""
    if transfer_syntax in JPEGLSTransferSyntaxes:
        return "pyjpegls (or pylibjpeg-libjpeg)"
    if transfer_syntax in JPEG2000TransferSyntaxes:
        return "pylibjpeg-openjpeg"
    if transfer_syntax in JPEGTransferSyntaxes:
        return "pylibjpeg-libjpeg"
    return "a pydicom pixel data plugin (pylibjpeg, python-gdcm)"


def decode_with_plugin(
    source: PixelSource,
    info: PixelInfo,
    indices: list[int],
    buf: bytes | memoryview,
    out: np.ndarray,
) -> None:
    """Decode frames `indices` of a compressed dataset into `out` (frames, values)."""
    ts = info.transfer_syntax
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise DecodeError(f"transfer syntax {ts} ({ts.name}) is not supported", source=source.name) from None
    if not decoder.is_available:
        raise MissingPluginError(
            f"decoding {ts.name} needs a plugin: pip install {plugin_package(ts)}",
            source=source.name,
        )
    ds = source.ds
    if not isinstance(ds, pydicom.Dataset):
        ds = pydicom.dcmread(source.name, stop_before_pixels=True)
    if source.from_file:
        # the header-only dataset from a file: give pydicom the value we already framed
        ds = ds.copy()
        ds[info.keyword].value = bytes(buf)
        ds[info.keyword].is_undefined_length = True
    for pos, f in enumerate(indices):
        try:
            arr = pydicom_pixel_array(ds, index=f)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - plugins raise anything on corrupt streams
            raise DecodeError(f"{ts.name} decoding failed: {exc}", source=source.name, frame=f) from exc
        if arr.size != out.shape[1] or arr.dtype != out.dtype:
            raise DecodeError(
                f"the codestream decodes to {arr.shape} {arr.dtype}; the dataset declares "
                f"{info.frame_shape} {info.dtype}",
                source=source.name,
                frame=f,
            )
        out[pos] = arr.reshape(-1)
