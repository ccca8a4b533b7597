"""The viewer's test rig: `voxelflow serve` as a real process on a loopback port, and Debian's
headless Chromium driven by Playwright (tests/service/test_viewer.py, benchmarks/bench_viewer.py).

Playwright for Python is a test dependency; it drives the system browser (``/usr/bin/chromium``,
Debian package ``chromium``) and downloads none of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_ARGS", "ServeProcess", "chromium_path", "launch_chromium"]

# Chromium as root in a container, headless, and kept off the network: without the last three
# it calls Google's services at every start, which a closed network refuses many times over
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update")


def chromium_path() -> str | None:
    """The system Chromium (``VOXELFLOW_CHROMIUM`` overrides), or None."""
    given = os.environ.get("VOXELFLOW_CHROMIUM")
    if given:
        return given
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from a ``sync_playwright()`` context."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium on this machine (Debian package chromium)")
    return playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``python -m voxelflow serve --store STORE`` on 127.0.0.1, started and waited for.

    `url` is its base; `headers` carry the bearer token when one is given; `extra` are more
    command-line options. Use as a context manager, or call :meth:`stop`."""

    def __init__(self, store: str | os.PathLike[str], folder: str | os.PathLike[str], *,
                 token: str | None = None, extra: tuple[str, ...] = ("--render-threads", "2"),
                 timeout: float = 60.0) -> None:
        import httpx

        folder = Path(folder)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}
        command = [sys.executable, "-m", "voxelflow", "serve", "--store", os.fspath(store), "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "warning", *extra]
        if token:
            token_file = folder / f"token-{self.port}"
            token_file.write_text(token + "\n")
            command += ["--token-file", str(token_file)]
            self.headers = {"Authorization": f"Bearer {token}"}
        self.log_path = folder / f"serve-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (the server's log, open while it runs)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"voxelflow serve did not start: {self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def get(self, path: str, **headers: str) -> Any:
        import httpx

        return httpx.get(self.url + path, headers={**self.headers, **headers}, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
