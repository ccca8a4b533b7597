"""multipart/related (RFC 2387), the body of DICOMweb's STOW-RS requests and WADO-RS answers.

A push parser: bytes go in as they arrive (a request body, a streamed answer), parts come out
as events, so neither a STOW-RS body nor a retrieved series is ever held whole in memory and
each instance is written to disk as it streams. Starlette parses only multipart/form-data and
the DICOMweb client libraries decode every part into a pydicom Dataset (re-encoding it to
store it costs 1.5 ms an instance, and changes the bytes); here the parts' bytes go to their
files unchanged.
"""

from __future__ import annotations

from email.message import Message
from typing import Any

from ..errors import VoxelflowError

__all__ = ["MultipartError", "MultipartParser", "boundary_of", "media_type"]

_MAX_HEADER_BYTES = 16 << 10


class MultipartError(VoxelflowError, ValueError):
    """A multipart body that does not parse: no boundary, a broken part, a body cut short."""


def _parsed(content_type: str) -> Message:
    message = Message()
    message["content-type"] = content_type
    return message


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lower case, without parameters."""
    return _parsed(content_type).get_content_type()


def content_param(content_type: str, name: str) -> str | None:
    value = _parsed(content_type).get_param(name)
    return None if value is None else str(value)


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/related`` Content-Type value.

    Raises
    ------
    MultipartError
        For another media type or a missing / malformed boundary.
    """
    message = _parsed(content_type)
    if message.get_content_maintype() != "multipart":
        raise MultipartError(f"Content-Type {content_type[:120]!r} is not multipart")
    boundary = message.get_boundary()
    if not boundary or len(boundary) > 70:
        raise MultipartError(f"Content-Type {content_type[:120]!r} has no valid boundary (1..70 characters)")
    return boundary.encode("latin-1")


_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)


def _unfinished(data: bytes | bytearray, delimiter: bytes) -> int:
    """Where the delimiter may have begun in `data` without ending in it (so the next bytes
    decide): the start of the longest end of `data` that begins the delimiter, or len(data).
    Every delimiter begins with CR."""
    start = max(0, len(data) - len(delimiter) + 1)
    while (r := data.find(b"\r", start)) >= 0:
        if delimiter.startswith(data[r:]):
            return r
        start = r + 1
    return len(data)


class MultipartParser:
    """Parts of one multipart body, as events from :meth:`feed`.

    Events are ``("part", headers)`` (a dict, lower-case names), then ``("data", bytes)`` any
    number of times, then ``("end", None)``, for each part in order.
    """

    def __init__(self, boundary: bytes) -> None:
        # the first delimiter may open the body without a CRLF before it
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self.parts = 0

    @property
    def done(self) -> bool:
        """The closing delimiter was seen."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        """Parse `data` (the next bytes of the body); returns the events they complete.

        Raises
        ------
        MultipartError
            When the bytes cannot be a multipart body.
        """
        if self._state == _DONE:
            return []  # the epilogue, ignored
        buf = self._buf
        events: list[tuple[str, Any]] = []
        delimiter = self._delimiter
        keep = len(delimiter) - 1
        if self._state == _BODY and not buf:
            # inside a part, nothing held back: the chunk's bytes go out as they are (a
            # series' data passes through here, and each copy of it costs)
            data = bytes(data)
            i = data.find(delimiter)
            if i < 0:
                cut = _unfinished(data, delimiter)
                events.append(("data", data if cut == len(data) else data[:cut]))
                buf += data[cut:]
                return events
            if i:
                events.append(("data", data[:i]))
            events.append(("end", None))
            self._state = _AFTER_DELIMITER
            data = memoryview(data)[i + len(delimiter):]
        buf += data
        while True:
            if self._state == _PREAMBLE:
                i = buf.find(delimiter)
                if i < 0:
                    del buf[:-keep]
                    break
                del buf[: i + len(delimiter)]
                self._state = _AFTER_DELIMITER
            elif self._state == _AFTER_DELIMITER:
                if len(buf) < 2:
                    break
                if buf[:2] == b"--":
                    self._state = _DONE
                    buf.clear()
                    break
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise MultipartError("a multipart delimiter line does not end")
                    break
                if buf[:end].strip(b" \t"):
                    raise MultipartError("text after a multipart delimiter")
                del buf[: end + 2]
                self._state = _HEADERS
            elif self._state == _HEADERS:
                if buf[:2] == b"\r\n":
                    headers: dict[str, str] = {}
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > _MAX_HEADER_BYTES:
                            raise MultipartError(f"the headers of part {self.parts + 1} exceed {_MAX_HEADER_BYTES} bytes")
                        break
                    headers = self._headers(bytes(buf[:end]))
                    del buf[: end + 4]
                self.parts += 1
                events.append(("part", headers))
                self._state = _BODY
            elif self._state == _BODY:
                i = buf.find(delimiter)
                if i < 0:
                    cut = _unfinished(buf, delimiter)
                    if cut:
                        events.append(("data", bytes(buf[:cut])))
                        del buf[:cut]
                    break
                if i:
                    events.append(("data", bytes(buf[:i])))
                del buf[: i + len(delimiter)]
                events.append(("end", None))
                self._state = _AFTER_DELIMITER
        return events

    def close(self) -> None:
        """The body ended: raises MultipartError unless its closing delimiter was seen."""
        if self._state != _DONE:
            where = f"inside part {self.parts}" if self._state in (_HEADERS, _BODY) else "before its closing delimiter"
            raise MultipartError(f"the multipart body ends {where}")

    def _headers(self, raw: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in raw.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise MultipartError(f"part {self.parts + 1}: a header line without a name: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        return headers
