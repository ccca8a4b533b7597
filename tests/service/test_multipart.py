"""The multipart/related push parser: the same parts however the bytes are split, and clear
errors for bodies that cannot be multipart."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxelflow.service.multipart import MultipartError, MultipartParser, boundary_of


def _body(parts: list[bytes], boundary: bytes, preamble: bytes = b"") -> bytes:
    out = preamble
    for p in parts:
        out += b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\nepilogue"


def _parse(body: bytes, boundary: bytes, cuts: list[int]) -> list[tuple[dict, bytes]]:
    parser = MultipartParser(boundary)
    parts: list[tuple[dict, bytes]] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(body)]:
        for event, value in parser.feed(body[start:cut]):
            if event == "part":
                parts.append((value, b""))
            elif event == "data":
                parts[-1] = (parts[-1][0], parts[-1][1] + value)
        start = max(start, cut)
    parser.close()
    return parts


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=300), max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
    preamble=st.sampled_from([b"", b"ignored preamble\r\n"]),
)
def test_parts_survive_any_split(parts, cuts, preamble):
    boundary = b"b0undary-x"
    # a part may hold anything but the delimiter itself
    parts = [p.replace(b"\r\n--" + boundary, b"") for p in parts]
    got = _parse(_body(parts, boundary, preamble), boundary, cuts)
    assert [data for _, data in got] == parts
    assert all(h == {"content-type": "application/dicom"} for h, _ in got)


def test_parts_that_hold_beginnings_of_the_delimiter_survive_every_cut():
    """A part's bytes pass through whole chunks at a time; what may begin a delimiter at a
    chunk's end is held back until the next bytes decide."""
    boundary = b"b0undary-x"
    parts = [b"a\r", b"\r\n--b0und", b"\r\n-", b"x\r\n--b0undary", b"\r\r\n--b0undary-", b"", b"\r\n"]
    body = _body(parts, boundary)
    for cut in range(len(body) + 1):
        assert [data for _, data in _parse(body, boundary, [cut])] == parts, cut
        assert [data for _, data in _parse(body, boundary, [cut, cut + 3, cut + 11])] == parts, cut


def test_boundary_of_content_type():
    assert boundary_of('multipart/related; type="application/dicom"; boundary="a b"') == b"a b"
    assert boundary_of("multipart/related; boundary=xyz") == b"xyz"
    for bad in ("application/dicom", "multipart/related", "multipart/related; boundary=" + "x" * 71):
        with pytest.raises(MultipartError):
            boundary_of(bad)


@pytest.mark.parametrize("body,match", [
    (b"--B\r\nContent-Type: a\r\n\r\nabc", "ends inside part 1"),
    (b"--B\r\nno header name here\r\n\r\nabc\r\n--B--", "without a name"),
    (b"nothing but preamble", "before its closing delimiter"),
    (b"--Bjunk\r\n", "text after a multipart delimiter"),
])
def test_broken_bodies(body, match):
    parser = MultipartParser(b"B")
    with pytest.raises(MultipartError, match=match):
        parser.feed(body)
        parser.close()


def test_oversized_part_headers_are_refused():
    parser = MultipartParser(b"B")
    with pytest.raises(MultipartError, match="exceed"):
        parser.feed(b"--B\r\n" + b"X-Long: " + b"y" * 20000)
