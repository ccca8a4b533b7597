"""`voxelflow serve` as a real process on a loopback port: it answers over TCP (token and all),
serves concurrent clients, stops on SIGTERM; and it refuses a non-loopback address without a
token (checked with uvicorn stubbed out, so that nothing but loopback is ever bound)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn

import voxelflow
from voxelflow import Plane, mpr
from voxelflow.cli import main as cli_main
from voxelflow.display import pipeline_for

from svc_helpers import image, problem

TOKEN = "s3cret-token-" + "t" * 20


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
            raise AssertionError("voxelflow serve did not stop within 10 s of SIGTERM") from None
    return process.returncode


@pytest.fixture(scope="module")
def server(phantoms, tmp_path_factory):
    """`python -m voxelflow serve` on 127.0.0.1 with a token file: (base URL, process)."""
    folder = tmp_path_factory.mktemp("server")
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    port = _free_port()
    log = open(folder / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "voxelflow", "serve", "--store", str(phantoms.store), "--host", "127.0.0.1",
         "--port", str(port), "--token-file", str(token_file), "--log-level", "warning", "--render-threads", "2"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"voxelflow serve exited with {process.returncode}: "
                                     f"{(folder / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("voxelflow serve did not answer within 30 s")
            time.sleep(0.1)
        yield base, process
    finally:
        _stop(process)
        log.close()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_server_needs_the_token(server, phantoms):
    base, _ = server
    problem(httpx.get(f"{base}/dicom-web/studies", timeout=10), 401)
    problem(httpx.get(f"{base}/dicom-web/studies", headers={"Authorization": "Bearer " + "n" * 33}, timeout=10), 403)
    r = httpx.get(f"{base}/dicom-web/studies", headers={"Accept": "application/dicom+json", **_auth()}, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    assert {i["0020000D"]["Value"][0] for i in r.json()} == {s.study_uid for s in phantoms.series.values()}
    for path in ("/openapi.json", "/docs", "/healthz"):
        assert httpx.get(f"{base}{path}", timeout=10).status_code == 200


def test_server_renders_like_the_library(server, phantoms, store_volumes):
    base, _ = server
    url, path = phantoms.instance("ct", 7)
    r = httpx.get(f"{base}{url}/rendered?window=40,400", headers={"Accept": "image/png", **_auth()}, timeout=30)
    assert r.status_code == 200
    assert np.array_equal(image(r.content), voxelflow.render_frame(path, window=(40, 400)))
    key = phantoms.key("ct")
    r = httpx.get(f"{base}/volumes/{key}/mpr?orientation=coronal", headers={"Accept": "image/png", **_auth()},
                  timeout=30)
    assert r.status_code == 200
    volume = store_volumes.open(key)
    assert np.array_equal(image(r.content), mpr(volume, Plane.coronal(volume), display=pipeline_for(volume)))


def test_server_serves_concurrent_clients(server, phantoms):
    base, _ = server
    requests = []
    for i in range(0, 24, 4):
        url, _ = phantoms.instance("ct", i)
        requests += [(f"{url}/rendered", "image/png"), (f"{url}/thumbnail", "image/jpeg")]
    key = phantoms.key("mr")
    requests += [(f"/volumes/{key}/mpr?orientation=axial&position={z}", "image/png") for z in (-130, -125, -120, -115)]
    requests += [(f"/volumes/{key}/mpr?orientation=sagittal&slab=6&mode=mip", "image/jpeg"),
                 ("/dicom-web/series", "application/dicom+json")]

    with httpx.Client(base_url=base, headers=_auth(), timeout=60) as c:
        serial = {req: c.get(req[0], headers={"Accept": req[1]}).content for req in requests}

    def one_client(n: int) -> list[tuple[tuple[str, str], int, bytes]]:
        with httpx.Client(base_url=base, headers=_auth(), timeout=60) as c:
            out = []
            for k in range(10):
                req = requests[(n * 3 + k) % len(requests)]
                r = c.get(req[0], headers={"Accept": req[1]})
                out.append((req, r.status_code, r.content))
            return out

    with ThreadPoolExecutor(8) as pool:
        results = [item for chunk in pool.map(one_client, range(8)) for item in chunk]
    assert len(results) == 80
    for req, status, content in results:
        assert status == 200, req
        assert content == serial[req], req


def test_server_stops_on_sigterm(phantoms, tmp_path):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "voxelflow", "serve", "--store", str(phantoms.store), "--port", str(port),
         "--log-level", "warning"],  # default host: 127.0.0.1
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.returncode
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies", timeout=1)  # no token needed
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "voxelflow serve did not answer within 30 s"
                time.sleep(0.1)
        assert r.status_code == 200
    finally:
        t0 = time.monotonic()
        _stop(process)
    assert time.monotonic() - t0 < 10
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


# -- the address check: uvicorn is stubbed, nothing is bound -------------------------------------

@pytest.fixture
def no_uvicorn(monkeypatch):
    """cli main() as `voxelflow serve` runs it, with uvicorn.run recorded instead of run."""
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    for name in ("VOXELFLOW_SERVICE_STORE", "VOXELFLOW_SERVICE_SETTINGS", "VOXELFLOW_SERVICE_TOKEN_FILE"):
        monkeypatch.setenv(name, "")  # restored (or removed) after the test

    def run(*argv: str) -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli_main(["serve", *argv])
        return code, err.getvalue()

    return run, calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.10.20", "[::]", "viewer.example.org"])
def test_non_loopback_host_needs_a_token_file(no_uvicorn, phantoms, host):
    run, calls = no_uvicorn
    code, err = run("--store", str(phantoms.store), "--host", host, "--port", "9")
    assert code != 0
    assert "--token-file" in err
    assert calls == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_host_needs_no_token(no_uvicorn, phantoms, host):
    run, calls = no_uvicorn
    code, err = run("--store", str(phantoms.store), "--host", host, "--port", "9")
    assert code == 0, err
    assert [c["host"] for c in calls] == [host]


def test_non_loopback_host_with_token_file_is_allowed(no_uvicorn, phantoms, tmp_path):
    run, calls = no_uvicorn
    token = tmp_path / "token"
    token.write_text(TOKEN)
    code, err = run("--store", str(phantoms.store), "--host", "0.0.0.0", "--port", "9", "--token-file", str(token))
    assert code == 0, err
    assert [c["host"] for c in calls] == ["0.0.0.0"]
    assert TOKEN not in os.environ.get("VOXELFLOW_SERVICE_SETTINGS", "")  # the token travels as its file only


@pytest.mark.parametrize("case", ["short-token", "missing-token-file", "missing-store"])
def test_serve_refuses_bad_setup(no_uvicorn, phantoms, tmp_path, case):
    run, calls = no_uvicorn
    token = tmp_path / "token"
    token.write_text("short")
    argv = {
        "short-token": ["--store", str(phantoms.store), "--token-file", str(token)],
        "missing-token-file": ["--store", str(phantoms.store), "--token-file", str(tmp_path / "nope")],
        "missing-store": ["--store", str(tmp_path / "nope")],
    }[case]
    code, err = run(*argv, "--port", "9")
    assert code != 0
    assert "error" in err and "Traceback" not in err
    assert calls == []


def test_voxelflow_serve_process_refuses_non_loopback(phantoms, tmp_path):
    """The real entry point (`python -m voxelflow serve`), with uvicorn.run replaced at start-up
    (sitecustomize) so that even a broken check binds nothing."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        "import uvicorn, sys\n"
        "def _refuse(*a, **k):\n"
        "    print('UVICORN-REACHED', k.get('host'))\n"
        "    sys.exit(97)\n"
        "uvicorn.run = _refuse\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "voxelflow", "serve", "--store", str(phantoms.store), "--host", "0.0.0.0",
         "--port", str(_free_port())],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode not in (0, 97), (done.returncode, done.stdout, done.stderr)
    assert "UVICORN-REACHED" not in done.stdout
    assert "--token-file" in done.stderr
    assert "Traceback" not in done.stderr
    # the guard works: a loopback address reaches (stubbed) uvicorn
    done = subprocess.run(
        [sys.executable, "-m", "voxelflow", "serve", "--store", str(phantoms.store), "--host", "127.0.0.1",
         "--port", str(_free_port())],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 97 and "UVICORN-REACHED 127.0.0.1" in done.stdout, (done.stdout, done.stderr)
