"""``voxelflow serve --upstream`` against Orthanc: a series the store lacks, retrieved on demand.

Input: a CT phantom series, 300 x 512 x 512 int16 at (1.0, 0.7, 0.7) mm when timed (40 x 128 x
128 in a plain ``pytest`` smoke run), one uncompressed file per slice, uploaded to a throw-away
Orthanc with its DICOMweb plugin (:mod:`voxelflow.testing.orthanc`). Rows, in one run:

- peer: Orthanc's own WADO-RS retrieval of the series, ``GET {dicomweb}/studies/{st}/series/{se}``
  with ``Accept: multipart/related; type="application/dicom"; transfer-syntax=*`` (the stored
  transfer syntax, as voxelflow asks), the body read to its end in 1 MiB reads over
  ``http.client``. One untimed retrieval first, so Orthanc's storage is in the page cache for
  every timed one (voxelflow's retrievals get the same warm Orthanc);
- voxelflow, first request: a ``python -m voxelflow serve --store EMPTY --upstream {dicomweb}``
  process (one worker, 127.0.0.1, started and waited on at ``/healthz`` outside the timing) on
  an empty store, timed on one ``GET .../instances/{middle sop}/rendered?window=40,400,linear``
  (``Accept: image/jpeg``): QIDO-RS lookup + WADO-RS retrieval of the series until that
  instance has arrived + its render (the server answers from the instance's own file; the rest
  of the series is retrieved and ingested after the answer). Each round has a fresh empty
  store and a fresh server (pedantic's untimed ``setup``). Median over the rounds, and its ratio
  to Orthanc's retrieval median (target <= 2x). Also timed, from the same start: until the
  series is stored (``GET /volumes/{series}`` waits for the retrieval and the ingest);
- voxelflow, second request: on the last round's server, now holding the series, the same URL
  once more (read from the store while the volume cache starts loading the series; timed
  alone), then, once ``/healthz`` reports the cache loaded, passes over 16 instances spread
  through the series on one keep-alive connection: p50 / p95 latency, to set beside
  ``bench_service.py``'s rendered-JPEG figures (steady state too; those are under load on 2
  workers, these one connection on one worker).

Orthanc 1.10 listens on every interface, so it is started only in a loopback-only network
namespace (see :func:`voxelflow.testing.orthanc.orthanc_available`); elsewhere every row skips
with the reason. Run it as::

    unshare -n sh -c 'ip link set lo up && python -m pytest benchmarks/bench_upstream.py --benchmark-enable -s -q'

Rows are ``benchmark.pedantic(iterations=1)``; the times used for medians and ratios are taken
around each request and put in ``extra_info`` (with the ratio and target) and printed. Rows
carry no ``role``: the ratio is computed here, from the two rows' own medians. Only statuses
are asserted, never timings.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _bench import free_port, log_tail

from voxelflow.store import VolumeStore
from voxelflow.testing import SeriesInfo, write_series
from voxelflow.testing.orthanc import OrthancServer, orthanc_available, run_orthanc

SHAPES = {"smoke": (40, 128, 128), "quick": (100, 512, 512), "full": (300, 512, 512)}
SPACING = (1.0, 0.7, 0.7)
ROUNDS = {"smoke": 2, "quick": 3, "full": 7}
SECOND_PASSES = {"smoke": 2, "quick": 5, "full": 5}
SECOND_INSTANCES = 16
WINDOW = "40,400,linear"
ACCEPT_SERIES = 'multipart/related; type="application/dicom"; transfer-syntax=*'
TARGET_RATIO = 2.0
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 300.0
_CHUNK = 1 << 20

# medians measured by earlier rows of this run (the peer row's, for the first-request ratio)
_measured: dict[str, Any] = {}


def _show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    # the numbers are the point of a benchmark run: shown even when pytest captures output
    with capsys.disabled():
        print(f"\n[bench_upstream] {text}", flush=True)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory, bench_scale: str) -> SeriesInfo:
    root = tmp_path_factory.mktemp("upstream-series")
    return write_series(root / "dicom", shape=SHAPES[bench_scale], spacing=SPACING, modality="CT")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, series: SeriesInfo) -> Iterator[OrthancServer]:
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(f"Orthanc unavailable: {reason}")
    with run_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(series.paths)
        os.sync()  # the upload written back: no round of either row shares the disk with it
        yield server


# -- Orthanc's retrieval ---------------------------------------------------------------------


def _retrieve_series(orthanc: OrthancServer, info: SeriesInfo) -> int:
    """Orthanc's WADO-RS retrieval of the whole series, read to its end; returns the bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", orthanc.http_port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}",
                     headers={"Accept": ACCEPT_SERIES})
        response = conn.getresponse()
        total = 0
        while chunk := response.read(_CHUNK):
            total += len(chunk)
        assert response.status == 200, f"Orthanc answered {response.status} to the series retrieval"
        return total
    finally:
        conn.close()


def _orthanc_median(orthanc: OrthancServer, info: SeriesInfo, rounds: int, benchmark: Any = None) -> dict[str, Any]:
    _retrieve_series(orthanc, info)  # warm: Orthanc's files in the page cache
    times: list[float] = []
    sizes: list[int] = []

    def once() -> None:
        t0 = time.perf_counter()
        sizes.append(_retrieve_series(orthanc, info))
        times.append(time.perf_counter() - t0)

    if benchmark is None:
        for _ in range(rounds):
            once()
    else:
        benchmark.pedantic(once, rounds=rounds, iterations=1, warmup_rounds=0)
    median = float(np.median(times))
    result = {"orthanc_times_s": times, "orthanc_median_s": median, "orthanc_mb": sizes[-1] / 1e6,
              "orthanc_mb_per_s": sizes[-1] / 1e6 / median}
    _measured["orthanc"] = result
    return result


# -- voxelflow serve processes ---------------------------------------------------------------


@dataclass
class Serve:
    store: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Servers:
    """Starts `voxelflow serve --upstream` processes on fresh empty stores; stops them all at the end."""

    root: Path
    upstream: str
    started: list[Serve] = field(default_factory=list)

    @property
    def last(self) -> Serve | None:
        return self.started[-1] if self.started else None

    def start(self) -> Serve:
        n = len(self.started)
        store = self.root / f"store-{n}"
        VolumeStore(store)  # an empty store
        port = free_port()
        log_path = self.root / f"serve-{n}.log"
        command = [sys.executable, "-m", "voxelflow", "serve", "--store", str(store), "--upstream", self.upstream,
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        serve = Serve(store, port, process, log_path)
        self.started.append(serve)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return serve
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"voxelflow serve did not answer /healthz in {START_TIMEOUT_S:g} s:\n{log_tail(log_path)}")
            time.sleep(0.1)

    def stop_all(self) -> None:
        for serve in self.started:
            serve.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, orthanc: OrthancServer) -> Iterator[Servers]:
    pool = Servers(tmp_path_factory.mktemp("voxelflow-serve"), orthanc.dicomweb)
    try:
        yield pool
    finally:
        pool.stop_all()


def _rendered_path(info: SeriesInfo, sop: str) -> str:
    return (f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}/instances/{sop}"
            f"/rendered?window={WINDOW}")


def _get(conn: http.client.HTTPConnection, path: str) -> float:
    """One rendered-JPEG GET on `conn`, read fully; returns its seconds (asserts a 200 JPEG)."""
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Accept": "image/jpeg"})
    response = conn.getresponse()
    body = response.read()
    seconds = time.perf_counter() - t0
    assert response.status == 200, f"GET {path} answered {response.status}: {body[:300]!r}"
    assert body[:2] == b"\xff\xd8", f"GET {path} did not answer a JPEG: {body[:40]!r}"
    return seconds


def _first_request(serve: Serve, path: str, series_uid: str) -> tuple[float, float]:
    """(seconds to the first answer, seconds until the series is stored), both from the
    first request's start: the second is when ``GET /volumes/{series}`` answers, which waits
    for the retrieval and the ingest still going on after the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=REQUEST_TIMEOUT_S)
    try:
        t0 = time.perf_counter()
        first = _get(conn, path)
        conn.request("GET", f"/volumes/{series_uid}")
        response = conn.getresponse()
        body = response.read()
        stored = time.perf_counter() - t0
        assert response.status == 200, f"GET /volumes/{series_uid} answered {response.status}: {body[:300]!r}"
        return first, stored
    finally:
        conn.close()


def _cache_loaded(serve: Serve, timeout: float = 60.0) -> float:
    """Seconds until the server's volume cache holds the series (``/healthz`` reports its
    bytes): the passes time the steady state, as bench_service.py's rows do."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        with urllib.request.urlopen(f"http://127.0.0.1:{serve.port}/healthz", timeout=10) as response:
            if json.loads(response.read()).get("cache_bytes", 0) > 0:
                return time.perf_counter() - t0
        time.sleep(0.01)
    raise AssertionError(f"the volume cache did not load the series in {timeout:g} s")


def _middle(info: SeriesInfo) -> str:
    return info.sop_uids[len(info.sop_uids) // 2]


# -- rows ------------------------------------------------------------------------------------


def bench_orthanc_series_retrieval(benchmark: Any, capsys: pytest.CaptureFixture[str], bench_scale: str,
                                   series: SeriesInfo, orthanc: OrthancServer) -> None:
    shape = SHAPES[bench_scale]
    benchmark.group = f"upstream: uncached {shape[0]}x{shape[1]}x{shape[2]} CT series"
    result = _orthanc_median(orthanc, series, ROUNDS[bench_scale], benchmark)
    benchmark.extra_info.update(row="orthanc_retrieval", peer="Orthanc WADO-RS", instances=len(series.sop_uids),
                                **result)
    _show(capsys, f"Orthanc WADO-RS series retrieval: median {result['orthanc_median_s'] * 1e3:.0f} ms over "
                  f"{len(result['orthanc_times_s'])} rounds ({', '.join(f'{t * 1e3:.0f}' for t in result['orthanc_times_s'])} ms), "
                  f"{result['orthanc_mb']:.1f} MB, {result['orthanc_mb_per_s']:.0f} MB/s")


def bench_voxelflow_first_request(benchmark: Any, capsys: pytest.CaptureFixture[str], bench_scale: str,
                                  series: SeriesInfo, orthanc: OrthancServer, servers: Servers) -> None:
    shape = SHAPES[bench_scale]
    rounds = ROUNDS[bench_scale]
    benchmark.group = f"upstream: uncached {shape[0]}x{shape[1]}x{shape[2]} CT series"
    peer = _measured.get("orthanc") or _orthanc_median(orthanc, series, rounds)
    path = _rendered_path(series, _middle(series))
    times: list[float] = []
    stored_times: list[float] = []

    def setup() -> tuple[tuple[Serve], dict[str, Any]]:
        if servers.last is not None:
            servers.last.stop()  # one server at a time: the two cores are the timed one's
        os.sync()  # the last round's store written back before this round starts
        return (servers.start(),), {}

    def once(serve: Serve) -> None:
        first, stored = _first_request(serve, path, series.series_uid)
        times.append(first)
        stored_times.append(stored)

    benchmark.pedantic(once, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    median = float(np.median(times))
    ratio = median / peer["orthanc_median_s"]
    stored_median = float(np.median(stored_times))
    stored = VolumeStore(servers.last.store, read_only=True).keys() if servers.last else []
    benchmark.extra_info.update(row="voxelflow_first_request", instances=len(series.sop_uids), first_times_s=times,
                                first_median_s=median, orthanc_median_s=peer["orthanc_median_s"], ratio=ratio,
                                target_ratio=TARGET_RATIO, stored_times_s=stored_times, stored_median_s=stored_median,
                                stored_ratio=stored_median / peer["orthanc_median_s"])
    met = "met" if ratio <= TARGET_RATIO else "MISSED"
    _show(capsys, f"voxelflow first request (the instance retrieved and rendered to JPEG, empty store): median "
                  f"{median * 1e3:.0f} ms over {len(times)} rounds ({', '.join(f'{t * 1e3:.0f}' for t in times)} ms)")
    best = median / min(peer["orthanc_times_s"])
    benchmark.extra_info.update(ratio_to_orthanc_fastest=best)
    _show(capsys, f"first request / Orthanc retrieval = {ratio:.2f}x (target <= {TARGET_RATIO:g}x: {met}); "
                  f"/ Orthanc's fastest round = {best:.2f}x")
    _show(capsys, f"series stored (whole retrieval + ingest, from the first request's start): median "
                  f"{stored_median * 1e3:.0f} ms = {stored_median / peer['orthanc_median_s']:.2f}x Orthanc's retrieval")
    assert len(stored) == 1, f"the store holds {stored} once the series is retrieved"


def bench_voxelflow_second_request(benchmark: Any, capsys: pytest.CaptureFixture[str], bench_scale: str,
                                   series: SeriesInfo, servers: Servers) -> None:
    shape = SHAPES[bench_scale]
    benchmark.group = f"upstream: {shape[0]}x{shape[1]}x{shape[2]} CT series, from the store"
    info = series
    path = _rendered_path(info, _middle(info))
    serve = servers.last
    if serve is None or serve.process.poll() is not None:  # this row run alone
        serve = servers.start()
        _first_request(serve, path)
    picks = np.linspace(0, len(info.sop_uids) - 1, SECOND_INSTANCES).round().astype(int)
    paths = [_rendered_path(info, info.sop_uids[i]) for i in picks]
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=REQUEST_TIMEOUT_S)
    times: list[float] = []
    try:
        same_url = _get(conn, path)  # the first request's URL, again (this starts the cache's load)
        loaded = _cache_loaded(serve)

        def passes() -> None:
            for _ in range(SECOND_PASSES[bench_scale]):
                for p in paths:
                    times.append(_get(conn, p))

        benchmark.pedantic(passes, rounds=1, iterations=1, warmup_rounds=0)
    finally:
        conn.close()
    ms = np.array(times) * 1e3
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    benchmark.extra_info.update(row="voxelflow_second_request", requests=len(times), instances=len(paths),
                                same_url_ms=same_url * 1e3, cache_loaded_s=loaded, p50_ms=p50, p95_ms=p95, max_ms=float(ms.max()),
                                connections=1, workers=1)
    _show(capsys, f"voxelflow second request (from the store): same URL {same_url * 1e3:.1f} ms; cache loaded "
                  f"{loaded * 1e3:.0f} ms later; then "
                  f"{len(times)} requests over {len(paths)} instances: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                  f"max {ms.max():.1f} ms (1 connection, 1 worker)")
