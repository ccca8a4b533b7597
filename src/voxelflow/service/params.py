"""Request text -> library values: query parameters and Accept negotiation.

Every parser raises :class:`RequestError` naming the parameter (answered 400, or 406 for an
Accept header the resource cannot satisfy); nothing here touches the store or a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..display import Window
from ..errors import ParameterError
from ..render import Viewport

__all__ = [
    "MEDIA",
    "MediaType",
    "RequestError",
    "choose_media",
    "only_known",
    "parse_floats",
    "parse_int",
    "parse_positive",
    "parse_quality",
    "parse_viewport",
    "parse_window",
]


class RequestError(ParameterError):
    """A request the service refuses: `status` (400, 404, 406, 413 ...), the `parameter` named."""

    def __init__(self, message: str, *, status: int = 400, parameter: str | None = None) -> None:
        self.status = status
        self.parameter = parameter
        super().__init__(message)


@dataclass(frozen=True)
class MediaType:
    """An output the service can write: its media type and how to encode it."""

    name: str  # as sent in Content-Type
    kind: str  # "image", "animation", "raw" or "npy"
    fmt: str = ""  # Pillow's format name for images and animations
    bits: int = 8

    @property
    def short(self) -> str:
        return self.name.split(";")[0]


#: What the service writes, by the Accept value that asks for it. 16-bit PNG is asked for with
#: the media-type parameter ``bits=16`` (``Accept: image/png;bits=16``).
MEDIA = {
    "image/jpeg": MediaType("image/jpeg", "image", "JPEG", 8),
    "image/png": MediaType("image/png", "image", "PNG", 8),
    "image/png;bits=16": MediaType("image/png;bits=16", "image", "PNG", 16),
    "image/gif": MediaType("image/gif", "animation", "GIF", 8),
    "image/apng": MediaType("image/apng", "animation", "PNG", 8),
    "application/octet-stream": MediaType("application/octet-stream", "raw"),
    "application/x-npy": MediaType("application/x-npy", "npy"),
}


def _accept_items(header: str) -> list[tuple[float, int, str]]:
    items = []
    for position, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        kind = pieces[0].lower()
        quality = 1.0
        extra = []
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    raise RequestError(f"Accept: bad quality value {value!r}", parameter="Accept") from None
            elif name == "bits":
                extra.append(f"bits={value}")
            elif name == "type" and kind == "multipart/related":
                kind = value.lower()  # multipart/related; type="image/jpeg": parts of that type
        if quality > 0:
            items.append((quality, position, ";".join([kind, *extra])))
    items.sort(key=lambda item: (-item[0], item[1]))
    return items


def choose_media(accept: str | None, offered: Sequence[str], *, query: str | None = None) -> MediaType:
    """The first of `offered` (media type names, the default first) that `accept` (an Accept
    header) or `query` (the ``accept`` query parameter, which wins) admits.

    Raises
    ------
    RequestError
        406 when none is acceptable, naming what the resource offers.
    """
    text = query if query else (accept or "*/*")
    for _, _, wanted in _accept_items(text):
        if wanted in ("*/*", "*"):
            return MEDIA[offered[0]]
        if wanted.endswith("/*"):
            family = wanted[:-1]
            for name in offered:
                if name.startswith(family):
                    return MEDIA[name]
            continue
        if wanted in offered:
            return MEDIA[wanted]
    raise RequestError(
        f"none of the accepted media types ({text[:200]}) can be produced here; "
        f"this resource offers {', '.join(offered)}",
        status=406,
        parameter="accept" if query else "Accept",
    )


def parse_floats(text: str, name: str, count: int | Sequence[int]) -> tuple[float, ...]:
    """Comma-separated finite numbers, `count` of them (or one of several counts)."""
    counts = (count,) if isinstance(count, int) else tuple(count)
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise RequestError(f"{name} must be {_counted(counts)} comma-separated numbers, got {text[:80]!r}", parameter=name) from None
    if len(values) not in counts or not all(math.isfinite(v) for v in values):
        raise RequestError(f"{name} must be {_counted(counts)} comma-separated finite numbers, got {text[:80]!r}", parameter=name)
    return values


def _counted(counts: tuple[int, ...]) -> str:
    return " or ".join(str(c) for c in counts)


def parse_int(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RequestError(f"{name} must be an integer, got {text[:80]!r}", parameter=name) from None
    if not low <= value <= high:
        raise RequestError(f"{name} must be in {low}..{high}, got {value}", parameter=name)
    return value


def parse_positive(text: str, name: str) -> float:
    (value,) = parse_floats(text, name, 1)
    if value <= 0:
        raise RequestError(f"{name} must be a positive number, got {text[:80]!r}", parameter=name)
    return value


_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


def parse_window(text: str, name: str = "window") -> Window:
    """``center,width[,function]`` (PS3.18 8.3.5.1.4): function ``linear`` (default),
    ``linear-exact`` or ``sigmoid``; center and width in modality units (HU for CT)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise RequestError(f"{name} must be center,width[,function], got {text[:80]!r}", parameter=name)
    function = parts[2].lower() if len(parts) == 3 else "linear"
    if function not in _FUNCTIONS:
        raise RequestError(
            f"{name}: function must be one of {', '.join(_FUNCTIONS)}, got {parts[2][:40]!r}", parameter=name
        )
    center, width = parse_floats(",".join(parts[:2]), name, 2)
    if width <= 0 or (function != "linear-exact" and width < 1):
        raise RequestError(f"{name}: width must be {'> 0' if function == 'linear-exact' else '>= 1'}, got {width:g}", parameter=name)
    return Window(center=center, width=width, function=_FUNCTIONS[function])


def parse_viewport(text: str, max_side: int, name: str = "viewport") -> Viewport:
    """``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` (PS3.18 8.3.5.1.3); empty sx, sy default to 0 and
    empty sw, sh to the image's extent; negative sw / sh flip."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise RequestError(f"{name} must be vw,vh or vw,vh,sx,sy,sw,sh, got {text[:80]!r}", parameter=name)
    vw, vh = (parse_int(p, name, 1, max_side) for p in parts[:2])
    if len(parts) == 2:
        return Viewport(vw, vh)
    sx, sy = (parse_int(p, name, 0, 1 << 30) if p else 0 for p in parts[2:4])
    sw, sh = (parse_int(p, name, -(1 << 30), 1 << 30) if p else None for p in parts[4:6])
    if sw == 0 or sh == 0:
        raise RequestError(f"{name}: sw and sh must not be 0, got {text[:80]!r}", parameter=name)
    return Viewport(vw, vh, sx, sy, sw, sh)


def parse_quality(text: str | None, default: int) -> int:
    """``quality`` 1..100 (PS3.18); Pillow's JPEG writer gains nothing above 95, so 96..100
    are encoded at 95."""
    value = default if text is None else parse_int(text, "quality", 1, 100)
    return min(value, 95)


def only_known(query: Mapping[str, str], known: Sequence[str]) -> None:
    """400 for a query parameter the resource does not know (a typo must not pass silently)."""
    for name in query:
        if name not in known:
            raise RequestError(
                f"unknown query parameter {name[:40]!r}; this resource takes {', '.join(sorted(known))}",
                parameter=name[:40],
            )
