"""voxelflow.service.dimse: series sent by C-STORE are staged, then ingested equal to a local ingest.

A pynetdicom SCU in the test sends the files as they are on disk (no re-encoding); the Orthanc
test (Orthanc pushes a series itself) only runs in a loopback-only network namespace::

    unshare -n sh -c 'ip link set lo up && python -m pytest tests/service/test_dimse.py -q'
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification

from voxelflow.errors import ParameterError
from voxelflow.ingest import ingest
from voxelflow.service.dimse import StorageListener, transfer_syntaxes
from voxelflow.store import VolumeStore
from voxelflow.testing import SeriesInfo, write_series
from voxelflow.testing.orthanc import orthanc_available, run_orthanc

IDLE_S = 0.5
WAIT_S = 30.0


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> SeriesInfo:
    return write_series(tmp_path_factory.mktemp("series"), shape=(8, 32, 32), seed=21)


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, series: SeriesInfo) -> VolumeStore:
    """The series ingested straight from its files: what every received copy must equal."""
    path = tmp_path_factory.mktemp("expected")
    report = ingest([Path(series.paths[0]).parent], path)
    assert not report.failures
    return VolumeStore(path)


@pytest.fixture
def raw_send(monkeypatch: pytest.MonkeyPatch) -> None:
    # the SCU sends each file's bytes after its meta as they are, so a corrupt one stays corrupt
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


class Ingested:
    """``on_ingested`` that the test waits on."""

    def __init__(self) -> None:
        self.results: queue.Queue[tuple[str, object]] = queue.Queue()

    def __call__(self, series: str, result: object) -> None:
        self.results.put((series, result))

    def wait(self) -> tuple[str, object]:
        return self.results.get(timeout=WAIT_S)


def _send(port: int, paths: list[str | Path], *, aet: str = "VOXELFLOW") -> tuple[int, list[int]]:
    """(C-ECHO status, C-STORE statuses) of one association to the listener."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    assert assoc.is_established
    try:
        echo = assoc.send_c_echo().Status
        stores = [assoc.send_c_store(Path(p)).Status for p in paths]
    finally:
        assoc.release()
    return echo, stores


def _assert_equal(store: VolumeStore, expected: VolumeStore) -> None:
    keys = sorted(expected.keys())
    assert sorted(store.keys()) == keys
    for key in keys:
        got, want = store.open(key), expected.open(key)
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
        np.testing.assert_array_equal(got.affine, want.affine)


def test_transfer_syntaxes_include_uncompressed_and_rle() -> None:
    offered = transfer_syntaxes()
    for uid in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5"):
        assert uid in offered


@pytest.mark.parametrize("kwargs", [
    {"aet": ""}, {"aet": "    "}, {"aet": "A" * 17}, {"aet": "VOX\\FLOW"}, {"aet": "VOX\nFLOW"}, {"aet": "VÖXEL"},
    {"port": -1}, {"port": 65536}, {"port": "11112"}, {"host": ""}, {"idle_s": 0}, {"idle_s": float("nan")},
])
def test_invalid_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ParameterError):
        StorageListener(tmp_path / "store", **kwargs)


def test_series_received_and_ingested(tmp_path: Path, series: SeriesInfo, raw_send: None) -> None:
    # instance 3 cut inside its Pixel Data: refused, the other 7 are kept and ingested
    bad = tmp_path / "cut.dcm"
    data = Path(series.paths[3]).read_bytes()
    bad.write_bytes(data[: len(data) - 500])
    paths = [*series.paths[:3], bad, *series.paths[4:]]
    done = Ingested()
    store = VolumeStore(tmp_path / "store")
    with StorageListener(store, port=0, idle_s=IDLE_S, on_ingested=done) as listener:
        assert listener.port != 0
        echo, stores = _send(listener.port, paths)
        assert echo == 0x0000
        assert stores[3] == 0xC000
        assert stores[:3] + stores[4:] == [0x0000] * 7
        got_series, report = done.wait()
    assert got_series == series.series_uid
    assert not isinstance(report, Exception)
    assert listener.staging.sops(series.series_uid) == set(series.sop_uids) - {series.sop_uids[3]}
    # the kept instances make what an ingest of the same 7 files makes
    good = tmp_path / "good"
    good.mkdir()
    for p in paths[:3] + paths[4:]:
        (good / Path(p).name).write_bytes(Path(p).read_bytes())
    assert not ingest([good], tmp_path / "direct").failures
    _assert_equal(store, VolumeStore(tmp_path / "direct"))


def test_wrong_called_aet_is_rejected(tmp_path: Path) -> None:
    with StorageListener(tmp_path / "store", port=0, idle_s=IDLE_S) as listener:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="SOMEONEELSE")
        assert assoc.is_rejected


def test_staged_instances_survive_a_stop(tmp_path: Path, series: SeriesInfo, expected: VolumeStore, raw_send: None) -> None:
    store = VolumeStore(tmp_path / "store")
    with StorageListener(store, port=0, idle_s=3600) as listener:
        assert _send(listener.port, series.paths)[1] == [0x0000] * len(series.paths)
    # stopped before the idle time: nothing ingested, everything acknowledged is on disk
    assert not list(store.keys())
    assert listener.staging.sops(series.series_uid) == set(series.sop_uids)
    done = Ingested()
    with StorageListener(store, port=0, idle_s=IDLE_S, on_ingested=done):
        assert done.wait()[0] == series.series_uid
    _assert_equal(store, expected)


@pytest.fixture
def orthanc_reason() -> Iterator[None]:
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(f"Orthanc unavailable: {reason}")
    yield


def test_orthanc_pushes_a_series(tmp_path: Path, series: SeriesInfo, expected: VolumeStore, orthanc_reason: None) -> None:
    done = Ingested()
    store = VolumeStore(tmp_path / "store")
    with StorageListener(store, port=0, idle_s=IDLE_S, on_ingested=done) as listener:
        modalities = {"VOXELFLOW": ("VOXELFLOW", "127.0.0.1", listener.port)}
        with run_orthanc(tmp_path / "orthanc", modalities=modalities) as orthanc:
            orthanc.upload(series.paths)
            (series_id,) = orthanc.get_json("/series")
            body = json.dumps({"Resources": [series_id], "Synchronous": True}).encode()
            request = urllib.request.Request(f"{orthanc.url}/modalities/VOXELFLOW/store", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=WAIT_S) as response:
                answer = json.loads(response.read())
            assert (answer["InstancesCount"], answer["FailedInstancesCount"]) == (len(series.paths), 0), answer
            echo = urllib.request.Request(f"{orthanc.url}/modalities/VOXELFLOW/echo", data=b"{}", method="POST")
            with urllib.request.urlopen(echo, timeout=WAIT_S) as response:
                assert response.status == 200
            got_series, report = done.wait()
    assert got_series == series.series_uid and not isinstance(report, Exception)
    _assert_equal(store, expected)


def test_concurrent_senders(tmp_path: Path, series: SeriesInfo, expected: VolumeStore, raw_send: None) -> None:
    # two associations at once, each with half the series: one ingest of the whole
    done = Ingested()
    store = VolumeStore(tmp_path / "store")
    with StorageListener(store, port=0, idle_s=IDLE_S, on_ingested=done) as listener:
        halves = [series.paths[0::2], series.paths[1::2]]
        results: list[list[int]] = []
        threads = [threading.Thread(target=lambda h=h: results.append(_send(listener.port, h)[1])) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        assert sorted(map(len, results)) == [4, 4] and all(s == 0 for r in results for s in r)
        assert done.wait()[0] == series.series_uid
    _assert_equal(store, expected)


def test_listen_runs_until_sigterm(tmp_path: Path, series: SeriesInfo, raw_send: None) -> None:
    # `voxelflow listen` in a child process: it answers, ingests, and exits 0 on SIGTERM
    port = _free_port()
    code = (f"from voxelflow.service.dimse import listen; "
            f"listen({str(tmp_path / 'store')!r}, aet='VOXELFLOW', host='127.0.0.1', port={port}, idle_s={IDLE_S})")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                statuses = _send(port, series.paths[:2])
                break
            except AssertionError:
                assert child.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert statuses == (0x0000, [0x0000, 0x0000])
        store = VolumeStore(tmp_path / "store")
        while not list(store.keys()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=WAIT_S) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
