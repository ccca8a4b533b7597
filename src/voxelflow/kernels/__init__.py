"""The kernel registry: one dispatch point per kernel, three interchangeable backends.

Every kernel has a NumPy ``reference`` (the oracle: simple and obviously right), a ``cython``
implementation (compiled from csrc/, GIL released, the default) and a ``numba`` one. All
backends of a kernel share one signature: arrays and numbers in, results written to ``out``.
Kernels trust their arguments' shapes and dtypes (callers validate), but every kernel that
parses untrusted bytes (RLE) bounds-checks each read and write and reports problems through
its return value instead of raising inside native code.

Choose the backend per call (``backend=``), or for the process with the ``VOXELFLOW_BACKEND``
environment variable; ``voxelflow.set_num_threads(n)`` sets the threads of both native backends.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from .._threads import get_num_threads, set_num_threads
from ..errors import BackendError

__all__ = [
    "BACKENDS",
    "KERNELS",
    "available",
    "default_backend",
    "get",
    "get_num_threads",
    "set_num_threads",
]

BACKENDS = ("reference", "cython", "numba")

# kernel -> backend -> "module:function". Modules load on first use, so importing voxelflow
# never pays for Numba's start-up or a compiled module it does not need.
KERNELS: dict[str, dict[str, str]] = {
    "unpack_words": {
        "reference": "voxelflow.kernels.reference.unpack:unpack_words",
        "cython": "voxelflow._native.unpack:unpack_words",
        "numba": "voxelflow.kernels.numba.unpack:unpack_words",
    },
    "unpack_bits": {
        "reference": "voxelflow.kernels.reference.unpack:unpack_bits",
        "cython": "voxelflow._native.unpack:unpack_bits",
        "numba": "voxelflow.kernels.numba.unpack:unpack_bits",
    },
    "palette_lookup": {
        "reference": "voxelflow.kernels.reference.palette:palette_lookup",
        "cython": "voxelflow._native.palette:palette_lookup",
        "numba": "voxelflow.kernels.numba.palette:palette_lookup",
    },
    "rle_decode": {
        "reference": "voxelflow.kernels.reference.rle:rle_decode",
        "cython": "voxelflow._native.rle:rle_decode",
        "numba": "voxelflow.kernels.numba.rle:rle_decode",
    },
    "downsample_mean2": {
        "reference": "voxelflow.kernels.reference.downsample:downsample_mean2",
        "cython": "voxelflow._native.downsample:downsample_mean2",
        "numba": "voxelflow.kernels.numba.downsample:downsample_mean2",
    },
    "sample_affine": {
        "reference": "voxelflow.kernels.reference.resample:sample_affine",
        "cython": "voxelflow._native.resample:sample_affine",
        "numba": "voxelflow.kernels.numba.resample:sample_affine",
    },
    "sample_axis": {
        "reference": "voxelflow.kernels.reference.resample:sample_axis",
        "cython": "voxelflow._native.resample:sample_axis",
        "numba": "voxelflow.kernels.numba.resample:sample_axis",
    },
    "lut_apply": {
        "reference": "voxelflow.kernels.reference.window:lut_apply",
        "cython": "voxelflow._native.window:lut_apply",
        "numba": "voxelflow.kernels.numba.window:lut_apply",
    },
    "window_apply": {
        "reference": "voxelflow.kernels.reference.window:window_apply",
        "cython": "voxelflow._native.window:window_apply",
        "numba": "voxelflow.kernels.numba.window:window_apply",
    },
    "sample_slab": {
        "reference": "voxelflow.kernels.reference.render:sample_slab",
        "cython": "voxelflow._native.render:sample_slab",
        "numba": "voxelflow.kernels.numba.render:sample_slab",
    },
    "project_axis": {
        "reference": "voxelflow.kernels.reference.render:project_axis",
        "cython": "voxelflow._native.render:project_axis",
        "numba": "voxelflow.kernels.numba.render:project_axis",
    },
    "sample_points": {
        "reference": "voxelflow.kernels.reference.render:sample_points",
        "cython": "voxelflow._native.render:sample_points",
        "numba": "voxelflow.kernels.numba.render:sample_points",
    },
}

_cache: dict[tuple[str, str], Callable[..., Any]] = {}


def default_backend() -> str:
    """The backend used when a call does not name one (``VOXELFLOW_BACKEND``, else cython)."""
    name = os.environ.get("VOXELFLOW_BACKEND", "cython").strip().lower() or "cython"
    if name not in BACKENDS:
        raise BackendError(
            f"VOXELFLOW_BACKEND={name!r} is not a backend; choose one of {', '.join(BACKENDS)}"
        )
    return name


def get(kernel: str, backend: str | None = None) -> Callable[..., Any]:
    """The implementation of `kernel` in `backend` (default: :func:`default_backend`).

    Raises
    ------
    BackendError
        If the kernel or backend is unknown, or the backend cannot be loaded here
        (e.g. the extension was not compiled).
    """
    backend = default_backend() if backend is None else backend
    key = (kernel, backend)
    fn = _cache.get(key)
    if fn is not None:
        return fn
    if kernel not in KERNELS:
        raise BackendError(f"unknown kernel {kernel!r}; known: {', '.join(sorted(KERNELS))}")
    if backend not in KERNELS[kernel]:
        raise BackendError(
            f"kernel {kernel!r} has no backend {backend!r}; it has {', '.join(KERNELS[kernel])}"
        )
    module_name, _, attr = KERNELS[kernel][backend].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {backend!r} of kernel {kernel!r} cannot be loaded ({exc}); "
            "for cython, build the extension with `pip install -e .`"
        ) from exc
    fn = _cache[key] = getattr(module, attr)
    return fn


def available() -> dict[str, list[str]]:
    """Each kernel with the backends that load on this machine, e.g. ``{"rle_decode": [...]}``."""
    result: dict[str, list[str]] = {}
    for kernel, backends in KERNELS.items():
        result[kernel] = []
        for backend in backends:
            try:
                get(kernel, backend)
            except BackendError:
                continue
            result[kernel].append(backend)
    return result
