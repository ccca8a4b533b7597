"""voxelflow.testing.orthanc: a throw-away Orthanc answers DICOMweb for an uploaded phantom series.

Orthanc only starts in a loopback-only network namespace; elsewhere these tests are skipped
with the reason. Run them with::

    unshare -n sh -c 'ip link set lo up && python -m pytest tests/testing/test_orthanc.py -q'
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxelflow.testing import SeriesInfo, write_series
from voxelflow.testing.orthanc import (
    OrthancError,
    OrthancServer,
    _interfaces,
    isolated_network,
    orthanc_available,
    run_orthanc,
)

REASON = orthanc_available()
needs_orthanc = pytest.mark.skipif(REASON is not None, reason=f"Orthanc unavailable: {REASON}")


def test_interfaces_parses_proc_net_dev() -> None:
    text = (
        "Inter-|   Receive    |  Transmit\n"
        " face |bytes    packets|bytes    packets\n"
        "    lo:    3193      29     3193      29\n"
        "  eth0: 147479052  3485   223371    2586\n"
    )
    assert _interfaces(text) == ["lo", "eth0"]
    assert _interfaces("\n".join(text.splitlines()[:3])) == ["lo"]


def test_availability_agrees_with_isolation() -> None:
    # outside a namespace Orthanc is never reported usable, whatever is installed
    if not isolated_network():
        assert REASON is not None and "namespace" in REASON
        with pytest.raises(OrthancError, match="not started"):
            with run_orthanc("/nonexistent-never-created"):
                pass


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> SeriesInfo:
    return write_series(tmp_path_factory.mktemp("series"), shape=(8, 64, 64))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, series: SeriesInfo) -> Iterator[tuple[OrthancServer, list[str]]]:
    if REASON is not None:
        pytest.skip(f"Orthanc unavailable: {REASON}")
    with run_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server, server.upload(series.paths)


def _get(url: str, accept: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers.get_content_type(), response.read()


@needs_orthanc
def test_upload_stores_every_instance(orthanc: tuple[OrthancServer, list[str]], series: SeriesInfo) -> None:
    server, ids = orthanc
    assert len(ids) == len(set(ids)) == len(series.paths)
    stats: dict[str, Any] = server.stats()
    assert stats["CountInstances"] == len(series.paths)
    assert stats["CountSeries"] == 1
    assert stats["rss_bytes"] is None or stats["rss_bytes"] > 0
    # uploading again is idempotent: the same ids come back
    assert server.upload(series.paths[:2]) == ids[:2]


@needs_orthanc
def test_qido_lists_the_study(orthanc: tuple[OrthancServer, list[str]], series: SeriesInfo) -> None:
    server, _ = orthanc
    status, kind, body = _get(server.dicomweb + "/studies", "application/dicom+json")
    assert status == 200 and kind == "application/dicom+json"
    studies = json.loads(body)
    assert [s["0020000D"]["Value"][0] for s in studies] == [series.study_uid]
    _, _, body = _get(f"{server.dicomweb}/studies/{series.study_uid}/series/{series.series_uid}/instances", "application/dicom+json")
    assert {i["00080018"]["Value"][0] for i in json.loads(body)} == set(series.sop_uids)


@needs_orthanc
@pytest.mark.parametrize("accept, kind, magic", [("image/jpeg", "image/jpeg", b"\xff\xd8\xff"), ("image/png", "image/png", b"\x89PNG")])
def test_rendered_instance(orthanc: tuple[OrthancServer, list[str]], series: SeriesInfo, accept: str, kind: str, magic: bytes) -> None:
    server, _ = orthanc
    sop = series.sop_uids[len(series.sop_uids) // 2]
    # Orthanc's plugin wants PS3.18's three window values (center, width, function)
    url = f"{server.dicomweb}/studies/{series.study_uid}/series/{series.series_uid}/instances/{sop}/rendered?window=40,400,linear"
    status, got, body = _get(url, accept)
    assert status == 200 and got == kind and body.startswith(magic)


@needs_orthanc
def test_start_failure_names_the_log(tmp_path: Path, orthanc: tuple[OrthancServer, list[str]]) -> None:
    server, _ = orthanc
    # the running server holds this port, so a second Orthanc cannot bind it and exits
    with pytest.raises(OrthancError) as info:
        with run_orthanc(tmp_path, http_port=server.http_port, start_timeout=10):
            pass
    assert "Orthanc" in str(info.value) and info.value.log_tail


def test_modalities_must_be_loopback(tmp_path: Path) -> None:
    from voxelflow.testing.orthanc import _modalities

    assert _modalities({"VF": ("VOXELFLOW", "127.0.0.1", 11112)}) == {"VF": ["VOXELFLOW", "127.0.0.1", 11112]}
    assert _modalities({"VF": {"aet": "VOXELFLOW", "port": 11112}}) == {"VF": ["VOXELFLOW", "127.0.0.1", 11112]}
    with pytest.raises(OrthancError, match="loopback"):
        _modalities({"PACS": ("PACS", "10.0.0.5", 104)})
