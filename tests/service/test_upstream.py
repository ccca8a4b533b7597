"""``serve --upstream`` and ``voxelflow pull`` against a real Orthanc (its DICOMweb plugin).

Orthanc only starts in a loopback-only network namespace; elsewhere these tests skip with the
reason. Retrievals are counted at Orthanc, by a Lua ``IncomingHttpRequestFilter`` that logs
every request it receives. Run them with::

    unshare -n sh -c 'ip link set lo up && python -m pytest tests/service/test_upstream.py -q'
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import Client, image, problem

from voxelflow.cli import main
from voxelflow.ingest import ingest
from voxelflow.service import create_app
from voxelflow.store import VolumeStore
from voxelflow.testing import SeriesInfo, write_series
from voxelflow.testing.orthanc import OrthancServer, orthanc_available, run_orthanc

REASON = orthanc_available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"Orthanc unavailable: {REASON}")

PNG = {"Accept": "image/png"}


def _lua(log: Path) -> str:
    return f"""
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  local f = io.open("{log}", "a")
  f:write(method .. " " .. uri .. "\\n")
  f:close()
  return true
end
"""


@dataclass
class Archive:
    orthanc: OrthancServer
    root: Path
    series: dict[str, SeriesInfo]
    log: Path

    def retrievals(self, name: str) -> tuple[int, int]:
        """WADO-RS requests Orthanc received for a series: (whole series, single instances)."""
        info = self.series[name]
        base = f"GET /dicom-web/studies/{info.study_uid}/series/{info.series_uid}"
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        whole = sum(line == base for line in lines)
        single = sum(line.startswith(base + "/instances/") for line in lines)
        return whole, single

    def local(self, name: str) -> VolumeStore:
        """The series ingested straight from its files: the oracle."""
        folder = self.root / "local" / name
        if not folder.exists():
            ingest(self.root / "dicom" / name, VolumeStore(folder))
        return VolumeStore(folder, read_only=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    series = {
        "ct": write_series(root / "dicom" / "ct", shape=(16, 48, 48), seed=31, series_number=2),
        "big": write_series(root / "dicom" / "big", shape=(96, 256, 256), seed=33, series_number=4),
    }
    series["mr"] = write_series(root / "dicom" / "mr", shape=(10, 40, 44), modality="MR", seed=32, series_number=3,
                                study_uid=series["ct"].study_uid)
    log = root / "requests.log"
    with run_orthanc(root / "orthanc", lua=_lua(log)) as orthanc:
        orthanc.upload([p for info in series.values() for p in info.paths])
        yield Archive(orthanc, root, series, log)


def _client(store: Path, archive: Archive, **settings) -> Client:
    VolumeStore(store)  # an empty store
    return Client(create_app(store, upstream=archive.orthanc.dicomweb, refresh_s=0.05, **settings))


def _same_volume(store: Path, local: VolumeStore) -> None:
    got = VolumeStore(store, read_only=True)
    assert got.keys() == local.keys()
    for key in local.keys():
        a, b = got.open(key), local.open(key)
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
        np.testing.assert_allclose(a.affine, b.affine)
        assert [f["code"] for f in a.meta.get("findings", [])] == [f["code"] for f in b.meta.get("findings", [])]


def test_renders_a_series_it_did_not_hold_like_the_local_files(archive, tmp_path):
    info = archive.series["ct"]
    local = Client(create_app(archive.local("ct").path))
    client = _client(tmp_path / "store", archive)
    try:
        url = f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}/instances/{info.sop_uids[5]}/rendered"
        got = client.get(url, headers=PNG)
        assert got.status_code == 200, got.text
        np.testing.assert_array_equal(image(got.content), image(local.get(url, headers=PNG).content))
        mpr = f"/volumes/{info.series_uid}/mpr?orientation=coronal&slab=6&mode=mip"
        got = client.get(mpr, headers=PNG)
        assert got.status_code == 200, got.text
        np.testing.assert_array_equal(image(got.content), image(local.get(mpr, headers=PNG).content))
    finally:
        client.close()
        local.close()
    assert archive.retrievals("ct") == (1, 0)
    _same_volume(tmp_path / "store", archive.local("ct"))
    # nothing is left staged once the series is stored
    assert not any((tmp_path / "store" / ".voxelflow" / "pulls").glob("*/*.dcm"))


@pytest.mark.parametrize("query, accept", [("window=40,400", "image/png"), ("viewport=24,24", "image/png"),
                                           ("", "image/png;bits=16"), ("window=-600,1500,sigmoid", "image/png")])
def test_a_first_instance_request_answered_from_its_instance_equals_the_store(archive, tmp_path, query, accept):
    """The first request for an instance of a series the store lacks is answered from that
    instance's own file as soon as the retrieval has it (not after the whole series and its
    ingest): the same pixels as once the series is stored."""
    info = archive.series["ct"]
    local = Client(create_app(archive.local("ct").path))
    client = _client(tmp_path / "store", archive)
    try:
        for index in (0, 9):
            url = f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}/instances/{info.sop_uids[index]}"
            for path in (f"{url}/rendered?{query}", f"{url}/frames/1/rendered?{query}"):
                first = client.get(path, headers={"Accept": accept})
                assert first.status_code == 200, first.text
                expected = local.get(path, headers={"Accept": accept})
                assert first.headers["content-type"] == expected.headers["content-type"]
                np.testing.assert_array_equal(image(first.content), image(expected.content))
        assert client.get(f"/volumes/{info.series_uid}").status_code == 200  # stored in the end
    finally:
        client.close()
        local.close()
    _same_volume(tmp_path / "store", archive.local("ct"))


def test_eight_concurrent_first_requests_make_one_retrieval(archive, tmp_path):
    info = archive.series["mr"]
    before = archive.retrievals("mr")
    client = _client(tmp_path / "store", archive)
    urls = [f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}/instances/{info.sop_uids[n]}/rendered"
            for n in range(8)]

    async def together():
        return await asyncio.gather(*(client._client.get(u, headers=PNG) for u in urls))

    try:
        answers = client._call(together())
        # each was answered from its own instance as soon as it arrived; the series is stored
        # once the one retrieval and its ingest are done, which a volume request waits for
        stored = client.get(f"/volumes/{info.series_uid}")
    finally:
        client.close()
    assert [a.status_code for a in answers] == [200] * 8
    assert stored.status_code == 200, stored.text
    whole, single = archive.retrievals("mr")
    assert (whole - before[0], single - before[1]) == (1, 0)
    _same_volume(tmp_path / "store", archive.local("mr"))


def test_a_study_request_retrieves_each_of_its_series(archive, tmp_path):
    info = archive.series["ct"]
    client = _client(tmp_path / "store", archive)
    try:
        got = client.get(f"/dicom-web/studies/{info.study_uid}/series")
        assert got.status_code == 200, got.text
        assert {s["0020000E"]["Value"][0] for s in got.json()} == {info.series_uid, archive.series["mr"].series_uid}
    finally:
        client.close()


def test_what_the_upstream_lacks_is_404_and_a_dead_upstream_502(archive, tmp_path):
    info = archive.series["ct"]
    client = _client(tmp_path / "store", archive)
    try:
        unknown = "1.2.3.4.5.6.7.8.9"
        body = problem(client.get(f"/dicom-web/studies/{unknown}/series/{unknown}/instances/{unknown}/rendered"), 404)
        assert "upstream" in body["detail"]
    finally:
        client.close()
    VolumeStore(tmp_path / "other")
    port = archive.orthanc.http_port
    dead = Client(create_app(tmp_path / "other", upstream=f"http://127.0.0.1:{port + 1 if port < 65535 else 1}/dicom-web",
                             upstream_connect_timeout_s=1.0))
    try:
        body = problem(dead.get(f"/volumes/{info.series_uid}/mpr?orientation=axial", headers=PNG), 502)
        assert "upstream" in body["detail"]
    finally:
        dead.close()
    assert VolumeStore(tmp_path / "other", read_only=True).keys() == []


def test_orthanc_stopped_mid_retrieval_is_502_then_resumes_after_restart(archive, tmp_path):
    info = archive.series["big"]
    workdir = tmp_path / "orthanc"
    log = tmp_path / "requests.log"
    store = tmp_path / "store"
    staged = store / ".voxelflow" / "pulls" / info.series_uid
    # an MPR needs the whole series (an instance's rendering is answered as soon as that
    # instance arrives, which may be before the upstream stops)
    url = f"/volumes/{info.series_uid}/mpr?orientation=axial"
    with run_orthanc(workdir, lua=_lua(log)) as first:
        first.upload(info.paths)
        port = first.http_port
        VolumeStore(store)
        client = Client(create_app(store, upstream=first.dicomweb, upstream_read_timeout_s=1.0, refresh_s=0.05))
        answers = []
        request = threading.Thread(target=lambda: answers.append(client.get(url, headers=PNG)))
        request.start()
        deadline = time.monotonic() + 30
        while not (staged.is_dir() and any(staged.glob("*.dcm"))):
            assert time.monotonic() < deadline, "the retrieval never began"
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGSTOP)  # Orthanc hangs mid-answer: the read times out
        request.join(60)
        os.kill(first.pid, signal.SIGCONT)
        body = problem(answers[0], 502)
        assert "timed out" in body["detail"]
        kept = len(list(staged.glob("*.dcm")))
        assert 0 < kept < len(info.paths)
        # nothing half-stored: the series is not in the store, and not answered
        assert VolumeStore(store, read_only=True).keys() == []
        first.process.kill()
    with run_orthanc(workdir, http_port=port, lua=_lua(log)):
        got = client.get(url, headers=PNG)
        assert got.status_code == 200, got.text
    client.close()
    # after the restart: the rest, one instance at a time when most was fetched already, else
    # the whole series again (one request rather than hundreds)
    lines = log.read_text().splitlines()
    base = f"GET /dicom-web/studies/{info.study_uid}/series/{info.series_uid}"
    single = sum(line.startswith(base + "/instances/") for line in lines)
    whole = sum(line == base for line in lines)
    missing = len(info.paths) - kept
    assert (whole, single) == ((2, 0) if missing * 2 >= len(info.paths) else (1, missing))
    _same_volume(store, archive.local("big"))


def test_pull_cli_retrieves_resumes_and_skips_what_is_stored(archive, tmp_path, capsys):
    info = archive.series["ct"]
    store = tmp_path / "store"
    # three quarters of the series as a stopped pull left them: staged, named by SOP UID
    staged = store / ".voxelflow" / "pulls" / info.series_uid
    staged.mkdir(parents=True)
    for n, (path, sop) in enumerate(zip(info.paths, info.sop_uids)):
        if n % 4:
            shutil.copy(path, staged / f"{sop}.dcm")
    missing = len(info.paths) // 4
    before = archive.retrievals("ct")
    argv = ["pull", archive.orthanc.dicomweb, "--study", info.study_uid, "--series", info.series_uid,
            "--store", str(store)]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert f"series {info.series_uid}: {missing} instance(s)" in out.out
    assert "retrieving" in out.err and "instances" in out.err and "MB" in out.err
    whole, single = archive.retrievals("ct")
    assert (whole - before[0], single - before[1]) == (0, missing)
    _same_volume(store, archive.local("ct"))
    assert main(argv) == 0
    assert "already stored" in capsys.readouterr().out
    # a whole study: its other series is retrieved, the stored one skipped
    assert main(argv[:4] + ["--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 series" in out and "already stored" in out


def test_pull_cli_errors_are_one_line(archive, tmp_path, capsys):
    unknown = "1.2.3.4.5.6.7.8.9"
    assert main(["pull", archive.orthanc.dicomweb, "--study", unknown, "--store", str(tmp_path / "s")]) == 2
    assert "holds no study" in capsys.readouterr().err
    assert main(["pull", archive.orthanc.dicomweb, "--study", "not-a-uid", "--store", str(tmp_path / "s")]) == 2
    assert "not a DICOM UID" in capsys.readouterr().err
    assert main(["pull", "ftp://x", "--study", unknown, "--store", str(tmp_path / "s")]) == 2
    assert "http(s)" in capsys.readouterr().err


def test_cache_size_evicts_the_least_recently_used_never_one_being_read(archive, tmp_path):
    from voxelflow.service.disk_cache import DiskCache

    names = ("ct", "mr", "big")
    infos = [archive.series[n] for n in names]
    # each series' size on disk, as the cache counts it
    sizes = {n: DiskCache(archive.local(n), 1).series_bytes(archive.series[n].series_uid) for n in names}
    budget = sizes["ct"] + sizes["big"] + sizes["mr"] // 2  # all three never fit; ct + big do
    client = _client(tmp_path / "store", archive, cache_size=budget)
    cache = client.app.state.service.disk_cache

    def render(info):
        got = client.get(f"/volumes/{info.series_uid}/mpr?orientation=axial", headers=PNG)
        assert got.status_code == 200, got.text

    def held():
        return {k.split("/")[0] for k in VolumeStore(tmp_path / "store", read_only=True).keys()}

    try:
        render(infos[0])
        render(infos[1])
        time.sleep(1.1)  # past the per-process throttle of last-use updates
        render(infos[0])  # ct is now used more recently than mr
        render(infos[2])  # over the bound: mr leaves, the least recently used
        assert held() == {infos[0].series_uid, infos[2].series_uid}
        # a series being read (by a request of any worker: the shared lock) is never removed
        with cache.reading(infos[0].series_uid):
            render(infos[1])  # over again: ct is the least recently used, but held; big goes
        assert held() == {infos[0].series_uid, infos[1].series_uid}
        # once free, the least recently used goes first
        render(infos[2])
        assert held() == {infos[1].series_uid, infos[2].series_uid}
    finally:
        client.close()


def test_cache_size_never_removes_volumes_not_retrieved(archive, tmp_path):
    store = tmp_path / "store"
    ingest(archive.root / "dicom" / "mr", VolumeStore(store))  # local: no other copy here
    local_keys = VolumeStore(store, read_only=True).keys()
    client = _client(store, archive, cache_size=1)
    try:
        got = client.get(f"/volumes/{archive.series['ct'].series_uid}/mpr?orientation=axial", headers=PNG)
        assert got.status_code == 200, got.text
    finally:
        client.close()
    keys = VolumeStore(store, read_only=True).keys()
    assert set(local_keys) < set(keys)  # the retrieved one is kept too: it is being answered


def test_two_worker_processes_make_one_retrieval(archive, tmp_path):
    """`voxelflow serve --workers 2`: the series' file lock, not an in-process future, is what
    keeps two processes from retrieving one series twice."""
    import socket
    import subprocess
    import sys

    import httpx

    info = archive.series["ct"]
    store = tmp_path / "store"
    VolumeStore(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "voxelflow", "serve", "--store", str(store), "--port", str(port), "--workers", "2",
         "--upstream", archive.orthanc.dicomweb, "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "voxelflow serve did not answer within 60 s"
            time.sleep(0.1)
        before = archive.retrievals("ct")
        url = f"{base}/volumes/{info.series_uid}/mpr?orientation=sagittal"

        def one(_: int) -> int:
            # a connection each: the kernel spreads them over both workers
            return httpx.get(url, headers=PNG, timeout=60).status_code

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(8)))
        assert statuses == [200] * 8
        whole, single = archive.retrievals("ct")
        assert (whole - before[0], single - before[1]) == (1, 0)
    finally:
        server.terminate()
        server.wait(20)
        log.close()
