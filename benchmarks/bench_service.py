"""The HTTP service under load: `voxelflow serve` against Orthanc (DICOMweb plugin), with wrk.

Input: a CT phantom series, 300 x 512 x 512 int16 at (1.0, 0.7, 0.7) mm when timed (16 x 512 x
512 in a plain ``pytest`` smoke run: full-size frames, fewer of them to warm up), ingested into
a voxelflow store (served by ``python -m voxelflow serve --workers 2``: one process per core,
as deployed, with its access log off as Orthanc's is) and uploaded to a throw-away Orthanc
(:mod:`voxelflow.testing.orthanc`). Both servers answer the same DICOMweb paths under
``/dicom-web``; each is warmed with a pass over a row's URLs on each of 8 connections (so that every worker
process has read the volume) before that row's wrk run.

The load generator is ``wrk`` (keep-alive connections) with a Lua script that cycles through a
list of URLs, so no connection asks for the same instance twice in a row (each wrk thread starts
at its own offset), and whose ``done()`` prints requests/s, errors (non-2xx answers + socket
errors and timeouts) and latency percentiles as one JSON line. Rows:

- rendered JPEG: ``.../instances/{sop}/rendered?window=40,400,linear``, ``Accept: image/jpeg``,
  4 connections on 2 wrk threads; voxelflow / Orthanc req/s (target >= 1.5x);
- rendered PNG: the same with ``Accept: image/png`` (target >= 3x);
- oblique slab MIP: ``/volumes/{key}/mpr`` (20 mm MIP sampled every 1 mm, 512 x 512 at 0.7 mm, normal
  (0.3, -0.5, 0.8), JPEG), one connection; voxelflow only (Orthanc has no MPR); p50 target < 30 ms.
  The centre steps along patient x through 25 positions so that no two consecutive requests match;
- soak: 8 connections on a mix of the three voxelflow requests, 60 s (a few s in a smoke run):
  zero errors, and the growth of the server's resident memory (its process tree's ``VmRSS``,
  after a warm-up run against the end) reported against a 50 MB target.

``window=40,400,linear``: PS3.18 gives the window as center, width and function; Orthanc's plugin
refuses the two-value form (400), voxelflow takes both.

Orthanc 1.10 listens on every interface, so it is started only in a loopback-only network
namespace (see :func:`voxelflow.testing.orthanc.orthanc_available`); elsewhere the rows print
why and measure voxelflow alone. CI runs the suite under ``unshare -n``.

Each timed row is ``benchmark.pedantic(rounds=1, iterations=1)`` around one wrk run (voxelflow's;
Orthanc's when voxelflow cannot be started), so its time is just wrk's duration: the numbers are
in ``extra_info`` (req/s, p50 / p95 / p99 ms, errors, ratio, target) and printed, and the rows
carry no ``role``, which keeps ``voxelflow bench`` from turning equal durations into a ratio.
The only assertions are on errors: targets are reported, never asserted on timings.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
from _bench import free_port, log_tail

from voxelflow.ingest import ingest
from voxelflow.store import VolumeStore
from voxelflow.testing import SeriesInfo, write_series
from voxelflow.testing.orthanc import OrthancServer, orthanc_available, run_orthanc

SHAPES = {"smoke": (16, 512, 512), "quick": (100, 512, 512), "full": (300, 512, 512)}
SPACING = (1.0, 0.7, 0.7)
DURATION_S = {"smoke": 2, "quick": 5, "full": 10}
SOAK_S = {"smoke": 4, "quick": 20, "full": 60}
WARMUP_S = {"smoke": 1, "quick": 3, "full": 5}
# the pause after a warm-up pass, for the workers' background volume loads to finish before a
# timed run; a smoke run's numbers are not measurements, so it only waits a little
SETTLE_S = {"smoke": 0.5, "quick": 2.0, "full": 2.0}
WINDOW = "40,400,linear"
# 20 samples 1 mm apart (the series' slice spacing), as benchmarks/bench_render.py's slab row
MPR_QUERY = "normal=0.3,-0.5,0.8&size=512&spacing=0.7&slab=20&slab_spacing=1&mode=mip&window=" + WINDOW
WORKERS = 2
# connections of the warm-up pass: with 8, the chance that one of 2 workers gets none is 1 in 128
WARM_CONNECTIONS = 8
MPR_SHIFTS_MM = np.arange(-24.0, 24.1, 2.0)  # 25 centres along patient x
RESULT_KEYS = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors", "requests", "kb_per_response")
TARGETS = {"jpeg": 1.5, "png": 3.0, "mpr_p50_ms": 30.0, "rss_growth_mb": 50.0}
START_TIMEOUT_S = 120.0

# (Accept, path) pairs; the script reads them as "ACCEPT<TAB>PATH" lines
Request = tuple[str, str]

WRK_SCRIPT = r"""
-- Cycles through the requests of the file named by the first argument ("ACCEPT<TAB>PATH" per
-- line); each thread starts at its own offset (second argument: the thread count), so no
-- connection asks for the same URL twice in a row. done() prints one "WRK_JSON {...}" line.
local requests = {}
local counter = 0
non2xx = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local accept, path = line:match("^([^\t]*)\t(.+)$")
    if path then
      table.insert(requests, wrk.format("GET", path, {["Accept"] = accept}))
    end
  end
  file:close()
  local nthreads = tonumber(args[2]) or 1
  counter = math.floor(#requests * (id or 0) / nthreads)
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("non2xx") or 0) end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.6f, "rps": %.3f, "bytes": %d, "non2xx": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "errors": %d, ' ..
    '"p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes, bad,
    e.connect, e.read, e.write, e.timeout, bad + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000))
end
"""


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A running server under test: its name, HTTP base and process id (for its memory)."""

    name: str
    url: str
    pid: int


@dataclass(frozen=True)
class Dataset:
    info: SeriesInfo
    store: Path
    key: str
    centre: np.ndarray  # LPS mm of the volume's middle


def _show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    # the numbers are the point of a benchmark run: shown even when pytest captures output
    with capsys.disabled():
        print(f"\n[bench_service] {text}", flush=True)


@pytest.fixture(scope="module")
def wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        pytest.skip("wrk is not installed (Debian package 'wrk'): no load generator")
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, bench_scale: str) -> Dataset:
    root = tmp_path_factory.mktemp("service")
    info = write_series(root / "dicom", shape=SHAPES[bench_scale], spacing=SPACING, modality="CT")
    report = ingest(root / "dicom", root / "store")
    assert not report.failures and len(report.volumes) == 1, report.table()
    key = report.volumes[0].key
    volume = VolumeStore(root / "store").open(key)
    centre = (volume.affine @ np.append((np.array(volume.shape[-3:]) - 1) / 2.0, 1.0))[:3]
    return Dataset(info, root / "store", key, centre)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Iterator[OrthancServer | str]:
    """The Orthanc peer, or the reason it cannot run here (a string)."""
    reason = orthanc_available()
    if reason is not None:
        yield reason
        return
    with run_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(dataset.info.paths)
        yield server


@pytest.fixture(scope="module")
def voxelflow_server(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Iterator[Server]:
    """`voxelflow serve` on the store."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("voxelflow-serve") / "serve.log"
    command = [sys.executable, "-m", "voxelflow", "serve", "--store", str(dataset.store),
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
               "--log-level", "warning"]
    with open(log_path, "wb") as log:
        # its own process group: worker processes it may fork are stopped with it
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                with urllib.request.urlopen(url + "/dicom-web/studies", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"voxelflow serve did not answer /dicom-web/studies in {START_TIMEOUT_S:g} s:\n{log_tail(log_path)}")
            time.sleep(0.2)
        yield Server("voxelflow", url, process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def servers(orthanc: OrthancServer | str, voxelflow_server: Server) -> dict[str, Server | str]:
    """Both servers by name; a string in place of Orthanc says why it is missing."""
    return {
        "orthanc": Server("orthanc", orthanc.url, orthanc.pid) if isinstance(orthanc, OrthancServer) else orthanc,
        "voxelflow": voxelflow_server,
    }


# -- requests and wrk ------------------------------------------------------------------------


def _rendered(dataset: Dataset, accept: str) -> list[Request]:
    info = dataset.info
    base = f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}/instances"
    return [(accept, f"{base}/{sop}/rendered?window={WINDOW}") for sop in info.sop_uids]


def _mpr(dataset: Dataset) -> list[Request]:
    key = quote(dataset.key, safe="")
    out = []
    for dx in MPR_SHIFTS_MM:
        x, y, z = dataset.centre + (dx, 0.0, 0.0)
        out.append(("image/jpeg", f"/volumes/{key}/mpr?center={x:.3f},{y:.3f},{z:.3f}&{MPR_QUERY}"))
    return out


def _warm(server: Server, requests: Sequence[Request], settle_s: float) -> None:
    """A pass over `requests` on each of WARM_CONNECTIONS keep-alive connections; every answer
    must be 2xx. Several connections: each one is served by one worker process, and every
    worker must have read the volume into its cache before the timed run (or the run measures
    a cold worker's first read)."""
    split = urlsplit(server.url)
    for _ in range(WARM_CONNECTIONS):
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
        try:
            for accept, path in requests:
                conn.request("GET", path, headers={"Accept": accept})
                response = conn.getresponse()
                body = response.read()
                assert 200 <= response.status < 300, f"{server.name}: GET {path} ({accept}) answered {response.status}: {body[:300]!r}"
        finally:
            conn.close()
    # voxelflow's workers read a volume into memory on a thread of their own while its first
    # requests render from the store: the loads (~0.5 s for this CT) finish before any timing
    time.sleep(settle_s)


def _run_wrk(wrk: str, workdir: Path, server: Server, requests: Sequence[Request], *, connections: int,
             threads: int, seconds: int) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)
    listing = workdir / f"{server.name}-requests.txt"
    listing.write_text("".join(f"{accept}\t{path}\n" for accept, path in requests))
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
               "-s", str(script), server.url, "--", str(listing), str(threads)]
    # bounded twice: wrk stops itself after `seconds`; the subprocess timeout catches a hang
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    assert done.returncode == 0 and lines, f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1][len("WRK_JSON "):])
    # mean answer size (headers included): shows both servers send comparable images
    result["kb_per_response"] = result["bytes"] / max(1, result["requests"]) / 1e3
    return result


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants (worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _summary(result: dict[str, Any]) -> str:
    return (f"{result['rps']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, {result['errors']} errors ({result['requests']} requests, "
            f"{result['kb_per_response']:.1f} kB each)")


# -- rows ------------------------------------------------------------------------------------


def _compare(benchmark: Any, capsys: pytest.CaptureFixture[str], wrk: str, tmp_path: Path, bench_scale: str,
             servers: dict[str, Server | str], row: str, requests: list[Request]) -> None:
    """One row: a wrk run per available server (Orthanc first, voxelflow under pedantic)."""
    seconds = DURATION_S[bench_scale]
    benchmark.group = f"service: rendered {row.upper()} 512x512, 4 connections, {seconds} s"
    info: dict[str, Any] = {"row": row, "connections": 4, "threads": 2, "seconds": seconds,
                            "instances": len(requests), "target_ratio": TARGETS[row]}
    results: dict[str, dict[str, Any]] = {}
    present = [name for name in ("orthanc", "voxelflow") if isinstance(servers[name], Server)]
    for name in ("orthanc", "voxelflow"):
        if not isinstance(servers[name], Server):
            info[f"{name}_missing"] = servers[name]
            _show(capsys, f"{row}: {name} not measured: {servers[name]}")

    def measure(name: str) -> dict[str, Any]:
        server = servers[name]
        assert isinstance(server, Server)
        results[name] = _run_wrk(wrk, tmp_path, server, requests, connections=4, threads=2, seconds=seconds)
        return results[name]

    for name in present:
        _warm(servers[name], requests, SETTLE_S[bench_scale])  # type: ignore[arg-type]
    for name in present[:-1]:
        measure(name)
    benchmark.pedantic(measure, args=(present[-1],), rounds=1, iterations=1)

    for name, result in results.items():
        info.update({f"{name}_{k}": result[k] for k in RESULT_KEYS})
        _show(capsys, f"{row} {name}: {_summary(result)}")
    if len(results) == 2:
        ratio = results["voxelflow"]["rps"] / results["orthanc"]["rps"]
        info["ratio"] = ratio
        _show(capsys, f"{row}: voxelflow / Orthanc = {ratio:.2f}x req/s (target >= {TARGETS[row]}x)")
    benchmark.extra_info.update(info)
    for name, result in results.items():
        assert result["errors"] == 0, f"{name} answered {result['errors']} errors on rendered {row}: {result}"


def bench_rendered_jpeg(benchmark: Any, capsys: pytest.CaptureFixture[str], wrk: str, tmp_path: Path,
                        bench_scale: str, servers: dict[str, Server | str], dataset: Dataset) -> None:
    _compare(benchmark, capsys, wrk, tmp_path, bench_scale, servers, "jpeg", _rendered(dataset, "image/jpeg"))


def bench_rendered_png(benchmark: Any, capsys: pytest.CaptureFixture[str], wrk: str, tmp_path: Path,
                       bench_scale: str, servers: dict[str, Server | str], dataset: Dataset) -> None:
    _compare(benchmark, capsys, wrk, tmp_path, bench_scale, servers, "png", _rendered(dataset, "image/png"))


def _voxelflow(servers: dict[str, Server | str]) -> Server:
    server = servers["voxelflow"]
    assert isinstance(server, Server)  # always started; only Orthanc may be missing
    return server


def bench_mpr_slab_mip(benchmark: Any, capsys: pytest.CaptureFixture[str], wrk: str, tmp_path: Path,
                       bench_scale: str, servers: dict[str, Server | str], dataset: Dataset) -> None:
    server = _voxelflow(servers)
    requests = _mpr(dataset)
    seconds = DURATION_S[bench_scale]
    benchmark.group = f"service: oblique 20 mm slab MIP 512x512 JPEG, 1 connection, {seconds} s"
    _warm(server, requests, SETTLE_S[bench_scale])
    result = benchmark.pedantic(
        lambda: _run_wrk(wrk, tmp_path, server, requests, connections=1, threads=1, seconds=seconds),
        rounds=1, iterations=1)
    benchmark.extra_info.update(row="mpr", connections=1, threads=1, seconds=seconds, target_p50_ms=TARGETS["mpr_p50_ms"],
                                **{f"voxelflow_{k}": result[k] for k in RESULT_KEYS})
    _show(capsys, f"mpr voxelflow: {_summary(result)} (p50 target < {TARGETS['mpr_p50_ms']:g} ms)")
    assert result["errors"] == 0, f"voxelflow answered {result['errors']} errors on mpr: {result}"


def bench_soak(benchmark: Any, capsys: pytest.CaptureFixture[str], wrk: str, tmp_path: Path,
               bench_scale: str, servers: dict[str, Server | str], dataset: Dataset) -> None:
    server = _voxelflow(servers)
    jpeg, png, mpr = _rendered(dataset, "image/jpeg"), _rendered(dataset, "image/png"), _mpr(dataset)
    # interleaved: every connection keeps switching between frame renders and slab MIPs
    mix = [r for i in range(len(jpeg)) for r in (jpeg[i], png[(i + len(png) // 2) % len(png)], mpr[i % len(mpr)])]
    seconds = SOAK_S[bench_scale]
    benchmark.group = f"service: soak, 8 connections, {seconds} s, rendered JPEG + PNG + slab MIP"
    _warm(server, mix, SETTLE_S[bench_scale])
    # memory is measured from after a loaded warm-up: caches and thread pools have filled by then
    warm = _run_wrk(wrk, tmp_path / "warm", server, mix, connections=8, threads=2, seconds=WARMUP_S[bench_scale])
    before = _tree_rss_bytes(server.pid)
    result = benchmark.pedantic(
        lambda: _run_wrk(wrk, tmp_path, server, mix, connections=8, threads=2, seconds=seconds),
        rounds=1, iterations=1)
    after = _tree_rss_bytes(server.pid)
    growth_mb = (after - before) / 1e6
    benchmark.extra_info.update(
        row="soak", connections=8, threads=2, seconds=seconds, rss_before_mb=before / 1e6, rss_after_mb=after / 1e6,
        rss_growth_mb=growth_mb, target_rss_growth_mb=TARGETS["rss_growth_mb"],
        **{f"voxelflow_{k}": result[k] for k in RESULT_KEYS})
    met = "met" if growth_mb < TARGETS["rss_growth_mb"] else "MISSED"
    _show(capsys, f"soak voxelflow: {_summary(result)}; RSS {before / 1e6:.0f} -> {after / 1e6:.0f} MB "
                  f"({growth_mb:+.1f} MB, target < {TARGETS['rss_growth_mb']:g} MB: {met})")
    assert warm["errors"] == 0, f"voxelflow answered {warm['errors']} errors in the soak's warm-up: {warm}"
    assert result["errors"] == 0, f"voxelflow answered {result['errors']} errors in the soak: {result}"
