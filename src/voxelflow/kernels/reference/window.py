"""Display windowing kernels: the oracle, the shared argument checks and the shared formulas.

Two kernels turn values into display values (PS3.3 C.11, the rules in
``shared/reference/display-pipeline.md``):

``lut_apply(src, lut, first, out)``
    ``out[i] = lut[clip(src[i] - first, 0, entries - 1)]``: integer stored values through a
    table that :mod:`voxelflow.display` builds once per pipeline, fusing the Modality LUT (or
    rescale), the VOI window (or VOI LUT), the presentation inversion and the output scaling.
    Values beyond the table take its end entries: the table only spans the stored values where
    the display value can change, so clamping is exact, not an approximation.

``window_apply(src, out, slope, intercept, function, center, width, ymax, inverse)``
    The same chain as arithmetic, for float (and wide-range 32-bit integer) input: rescale,
    a LINEAR / LINEAR_EXACT / SIGMOID window, inversion, output scaling, in one pass.

Every value is computed in float64 by one fixed sequence of IEEE operations (the functions
:func:`window_values` and :func:`finish_values` below, which the display LUT builder also
uses), and rounded once at the end, half up: ``floor(y + 0.5)``. The native backends perform
the same operations in the same order, so all backends agree bit for bit.

Conventions shared by every backend:

- the VOI output ``y`` is clamped to ``[0, ymax]`` before the inversion; NaN counts as below
  the window (``y = 0``), +inf above it;
- ``inverse`` maps ``y`` to ``ymax - y`` (MONOCHROME1, Presentation LUT Shape INVERSE);
- integer ``out`` receives ``floor(y + 0.5)``; float32 ``out`` receives ``y`` unrounded.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ...errors import ParameterError
from ..._threads import parallel_threads
from .unpack import check_array, check_disjoint, check_integer

__all__ = [
    "FUNCTION_CODES",
    "LUT_SRC_DTYPES",
    "OUT_DTYPES",
    "WINDOW_SRC_DTYPES",
    "LutArgs",
    "WindowArgs",
    "check_lut_apply",
    "check_window_apply",
    "finish_values",
    "lut_apply",
    "window_apply",
    "window_edges",
    "window_values",
]

#: VOI LUT Function (0028,1056) values and the integer code the kernels take.
FUNCTION_CODES = {"LINEAR": 0, "LINEAR_EXACT": 1, "SIGMOID": 2}
LINEAR, LINEAR_EXACT, SIGMOID = 0, 1, 2

#: dtypes of the stored values ``lut_apply`` indexes with.
LUT_SRC_DTYPES = tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32"))
#: dtypes ``window_apply`` reads (every one converts to float64 exactly).
WINDOW_SRC_DTYPES = tuple(np.dtype(t) for t in ("float32", "float64", "int32", "uint32"))
#: Display value dtypes: unsigned integers of 1..16 bits, or float32 without quantisation.
OUT_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "float32"))

# Every stored value fits in int32/uint32, so a first value beyond +-2**33 maps every value to
# the same end of the table as the clamped one does; clamping keeps native arithmetic in int64.
_FIRST_LIMIT = 1 << 33


class LutArgs(NamedTuple):
    """The arguments of ``lut_apply`` after :func:`check_lut_apply`.

    ``clamp`` is False when the table covers every value `src`'s dtype can hold, so no index
    can leave it and the native loops skip the clamping.
    """

    src: np.ndarray
    lut: np.ndarray
    first: int
    out: np.ndarray
    clamp: bool
    threads: int


class WindowArgs(NamedTuple):
    """The arguments of ``window_apply`` after :func:`check_window_apply`.

    ``c0``, ``w0``, ``lo`` and ``hi`` are derived once here, in Python floats (IEEE doubles), so
    every backend starts from the same bits: see :func:`window_edges`.
    """

    src: np.ndarray
    out: np.ndarray
    slope: float
    intercept: float
    function: int
    c0: float
    w0: float
    lo: float
    hi: float
    ymax: float
    inverse: bool
    quantise: bool
    threads: int


def check_lut_apply(src: Any, lut: Any, first: Any, out: Any) -> LutArgs:
    """Validate the arguments of ``lut_apply``.

    Raises
    ------
    ParameterError
        If `src` is not a 1-D aligned C-contiguous array of a :data:`LUT_SRC_DTYPES` dtype,
        `lut` not a 1-D C-contiguous uint8/uint16/float32 array with at least one entry,
        `first` not an integer, or `out` not a writeable 1-D C-contiguous array of `lut`'s
        dtype and `src`'s size that overlaps neither input.
    """
    kernel = "lut_apply"
    src = check_array(src, "src", kernel, ndim=1, dtypes=LUT_SRC_DTYPES)
    lut = check_array(lut, "lut", kernel, ndim=1, dtypes=OUT_DTYPES)
    if lut.size < 1:
        raise ParameterError(f"{kernel}: lut must have at least one entry")
    start = check_integer(first, "first", kernel)
    out = check_array(out, "out", kernel, ndim=1, dtypes=(lut.dtype,), writeable=True)
    if out.size != src.size:
        raise ParameterError(f"{kernel}: out has {out.size} elements, src {src.size}")
    check_disjoint(out, {"src": src, "lut": lut}, kernel)
    info = np.iinfo(src.dtype)
    return LutArgs(
        src=src,
        lut=lut,
        first=max(-_FIRST_LIMIT, min(start, _FIRST_LIMIT)),
        out=out,
        clamp=not (start <= info.min and start + lut.size - 1 >= info.max),
        threads=parallel_threads(src.nbytes + out.nbytes),
    )


def _check_real(value: Any, name: str, kernel: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ParameterError(f"{kernel}: {name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ParameterError(f"{kernel}: {name} must be finite, got {result}")
    return result


def window_edges(function: int, center: float, width: float) -> tuple[float, float, float, float]:
    """``(c0, w0, lo, hi)`` of a window: inside ``lo < x <= hi``, ``y = ((x - c0) / w0 + 0.5) * ymax``.

    LINEAR (C.11.2.1.2.1): ``c0 = c - 0.5``, ``w0 = w - 1``; LINEAR_EXACT (C.11.2.1.3.2):
    ``c0 = c``, ``w0 = w``; the edges are ``c0 -+ w0 / 2``. SIGMOID uses ``c0 = c``, ``w0 = w``
    and has no edges (``lo = -inf``, ``hi = inf``).
    """
    if function == LINEAR:
        c0, w0 = center - 0.5, width - 1.0
    else:
        c0, w0 = center, width
    if function == SIGMOID:
        return c0, w0, -math.inf, math.inf
    return c0, w0, c0 - w0 / 2.0, c0 + w0 / 2.0


def check_window_apply(
    src: Any,
    out: Any,
    slope: Any,
    intercept: Any,
    function: Any,
    center: Any,
    width: Any,
    ymax: Any,
    inverse: Any,
) -> WindowArgs:
    """Validate the arguments of ``window_apply`` and derive the window edges.

    Raises
    ------
    ParameterError
        If `src` is not a 1-D aligned C-contiguous array of a :data:`WINDOW_SRC_DTYPES` dtype,
        `out` not a writeable 1-D C-contiguous uint8/uint16/float32 array of `src`'s size
        disjoint from it, `slope`, `intercept`, `center` or `width` not a finite number,
        `function` not a code of :data:`FUNCTION_CODES`, `width` below 1 (LINEAR) or not
        positive (LINEAR_EXACT, SIGMOID), `ymax` not an integer in 1..max of `out`'s dtype
        (integer `out`) or not a positive finite number (float `out`), or `inverse` not a bool.
    """
    kernel = "window_apply"
    src = check_array(src, "src", kernel, ndim=1, dtypes=WINDOW_SRC_DTYPES)
    out = check_array(out, "out", kernel, ndim=1, dtypes=OUT_DTYPES, writeable=True)
    if out.size != src.size:
        raise ParameterError(f"{kernel}: out has {out.size} elements, src {src.size}")
    check_disjoint(out, {"src": src}, kernel)
    s = _check_real(slope, "slope", kernel)
    b = _check_real(intercept, "intercept", kernel)
    code = check_integer(function, "function", kernel)
    if code not in FUNCTION_CODES.values():
        raise ParameterError(
            f"{kernel}: function must be one of {sorted(FUNCTION_CODES.values())} "
            f"({', '.join(FUNCTION_CODES)}), got {code}"
        )
    c = _check_real(center, "center", kernel)
    w = _check_real(width, "width", kernel)
    if code == LINEAR and not w >= 1.0:
        raise ParameterError(f"{kernel}: width must be >= 1 for LINEAR, got {w}")
    if code != LINEAR and not w > 0.0:
        raise ParameterError(f"{kernel}: width must be > 0 for LINEAR_EXACT and SIGMOID, got {w}")
    quantise = out.dtype.kind == "u"
    if quantise:
        top = check_integer(ymax, "ymax", kernel)
        if not 1 <= top <= np.iinfo(out.dtype).max:
            raise ParameterError(
                f"{kernel}: ymax must be in 1..{np.iinfo(out.dtype).max} for {out.dtype} out, "
                f"got {top}"
            )
        y_max = float(top)
    else:
        y_max = _check_real(ymax, "ymax", kernel)
        if not y_max > 0.0:
            raise ParameterError(f"{kernel}: ymax must be > 0, got {y_max}")
    if not isinstance(inverse, (bool, np.bool_)):
        raise ParameterError(f"{kernel}: inverse must be a bool, got {inverse!r}")
    c0, w0, lo, hi = window_edges(code, c, w)
    return WindowArgs(
        src=src,
        out=out,
        slope=s,
        intercept=b,
        function=code,
        c0=c0,
        w0=w0,
        lo=lo,
        hi=hi,
        ymax=y_max,
        inverse=bool(inverse),
        quantise=quantise,
        threads=parallel_threads(src.nbytes + out.nbytes),
    )


def _exp(t: float) -> float:
    try:
        return math.exp(t)
    except OverflowError:  # C's exp returns inf where Python's raises
        return math.inf


_libm_exp = np.frompyfunc(_exp, 1, 1)


def window_values(
    x: np.ndarray, function: int, c0: float, w0: float, lo: float, hi: float, ymax: float
) -> np.ndarray:
    """VOI window output in ``[0, ymax]`` for modality values `x` (float64), NaN -> 0.

    The operation sequence every backend repeats: LINEAR and LINEAR_EXACT
    ``y = ((x - c0) / w0 + 0.5) * ymax`` inside, ``0`` at or below ``lo``, ``ymax`` above
    ``hi``; SIGMOID ``y = ymax / (1 + exp(-4 * (x - c0) / w0))`` (C.11.2.1.3.1); then
    ``y = y if y > 0 else 0`` and ``y = y if y < ymax else ymax``.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        if function == SIGMOID:
            # math.exp is the C library's exp, the one the native backends call; NumPy's own
            # SIMD exp may differ in the last bit, which can move a rounding tie.
            e = _libm_exp(-4.0 * (x - c0) / w0).astype(np.float64)
            y = ymax / (1.0 + e)
        else:
            # w0 == 0 (LINEAR, width 1) divides by zero only where the selection below
            # never looks: lo == hi leaves no value inside.
            y = ((x - c0) / w0 + 0.5) * ymax
            y = np.where(x > hi, ymax, np.where(x > lo, y, 0.0))
        y = np.where(y > 0.0, y, 0.0)
        return np.where(y < ymax, y, ymax)


def finish_values(y: np.ndarray, ymax: float, inverse: bool, out: np.ndarray) -> None:
    """Write VOI outputs `y` (in ``[0, ymax]``) to `out`: inverted if asked, then rounded half up
    (``floor(y + 0.5)``) for integer `out`, or cast to float32 unrounded."""
    if inverse:
        y = ymax - y
    if out.dtype.kind == "f":
        out[...] = y.astype(out.dtype)
    else:
        out[...] = np.floor(y + 0.5).astype(out.dtype)


def lut_apply(src: np.ndarray, lut: np.ndarray, first: int, out: np.ndarray) -> None:
    """Map stored values through a display table: ``out[i] = lut[clip(src[i] - first, 0, n - 1)]``.

    Parameters
    ----------
    src : ndarray, 1-D, C-contiguous, int8/uint8/int16/uint16/int32/uint32
        Stored pixel values.
    lut : ndarray, 1-D, C-contiguous, uint8/uint16/float32
        Display value of the stored values ``first .. first + lut.size - 1``.
    first : int
        The stored value mapped to ``lut[0]``.
    out : ndarray, 1-D, C-contiguous, `lut`'s dtype, `src`'s size
        Receives the display values.

    Raises
    ------
    ParameterError
        See :func:`check_lut_apply`.
    """
    args = check_lut_apply(src, lut, first, out)
    # int64 arithmetic: stored values are at most 32 bits and first is clamped, so no wrap.
    rows = args.src.astype(np.int64) - args.first
    out[...] = args.lut[np.clip(rows, 0, args.lut.size - 1)]


def window_apply(
    src: np.ndarray,
    out: np.ndarray,
    slope: float,
    intercept: float,
    function: int,
    center: float,
    width: float,
    ymax: float,
    inverse: bool,
) -> None:
    """Rescale, window, invert and scale `src` to display values in one pass.

    Parameters
    ----------
    src : ndarray, 1-D, C-contiguous, float32/float64/int32/uint32
        Stored (or modality) values.
    out : ndarray, 1-D, C-contiguous, uint8/uint16/float32, `src`'s size
        Receives the display values: ``floor(y + 0.5)`` for integer `out`, ``y`` for float32.
    slope, intercept : float
        Modality transform ``x = src * slope + intercept`` (1 and 0 for none).
    function : int
        :data:`FUNCTION_CODES` value: 0 LINEAR, 1 LINEAR_EXACT, 2 SIGMOID.
    center, width : float
        Window Center and Width in modality units (width >= 1 for LINEAR, > 0 otherwise).
    ymax : int or float
        Largest display value: ``2**bits - 1`` for integer `out`, typically 1.0 for float.
    inverse : bool
        Invert (``ymax - y``) before the rounding, as MONOCHROME1 / INVERSE ask.

    Raises
    ------
    ParameterError
        See :func:`check_window_apply`.
    """
    args = check_window_apply(src, out, slope, intercept, function, center, width, ymax, inverse)
    with np.errstate(all="ignore"):  # inf * 0 is NaN, as in C
        x = args.src.astype(np.float64) * args.slope + args.intercept
    y = window_values(x, args.function, args.c0, args.w0, args.lo, args.hi, args.ymax)
    finish_values(y, args.ymax, args.inverse, out)
