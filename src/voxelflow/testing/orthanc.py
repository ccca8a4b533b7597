"""A throw-away Orthanc server, the DICOMweb peer of the service tests and benchmarks.

Orthanc 1.10 binds every network interface whatever its configuration says
(``RemoteAccessAllowed: false`` only refuses non-loopback clients after accepting them), so it
is only ever started inside a private network namespace that holds nothing but loopback:

.. code-block:: sh

    unshare -n sh -c 'ip link set lo up && python -m pytest tests/testing/test_orthanc.py'

:func:`isolated_network` tells whether the current process is in such a namespace,
:func:`orthanc_available` says why Orthanc cannot be used here (or None), and
:func:`run_orthanc` starts one with its storage in a given folder, waits until it answers, and
stops it on exit::

    from voxelflow.testing.orthanc import orthanc_available, run_orthanc

    if (reason := orthanc_available()) is None:
        with run_orthanc(tmp_path) as orthanc:
            ids = orthanc.upload(info.paths)
            # orthanc.url, orthanc.dicomweb, orthanc.dicom_port, orthanc.aet, orthanc.stats()

Only the standard library is used: the module must import on a machine without the service's
HTTP stack. Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "ORTHANC_BINARY",
    "DICOMWEB_PLUGIN",
    "OrthancError",
    "OrthancServer",
    "isolated_network",
    "orthanc_available",
    "run_orthanc",
]

#: Where the Debian package ``orthanc`` installs the server.
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
#: Where the Debian package ``orthanc-dicomweb`` installs the DICOMweb plugin.
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

_LOOPBACK = "127.0.0.1"
_LOG_TAIL_LINES = 40


class OrthancError(RuntimeError):
    """Orthanc could not be started, did not answer, or refused a request.

    The message names what failed and ends with the tail of Orthanc's log, which is where
    Orthanc says why (a bad configuration key, a port in use, a plugin that did not load).

    Attributes
    ----------
    log_tail : str
        The last lines of Orthanc's log when the error was raised ("" if there was none).
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(f"{message}\n--- Orthanc log (tail) ---\n{log_tail}" if log_tail else message)


def _interfaces(text: str) -> list[str]:
    # /proc/net/dev: two header lines, then "  name: counters..." per interface
    names = []
    for line in text.splitlines()[2:]:
        name, sep, _ = line.partition(":")
        if sep:
            names.append(name.strip())
    return names


def isolated_network() -> bool:
    """Whether this process runs in a network namespace that holds only the loopback interface.

    ``/proc/net/dev`` is read because it is per network namespace (``/sys/class/net`` shows the
    namespace sysfs was mounted in, which ``unshare -n`` does not change).

    Returns
    -------
    bool
        True iff ``/proc/net/dev`` lists exactly one interface, ``lo``; False if it lists any
        other interface or cannot be read.
    """
    try:
        text = Path("/proc/net/dev").read_text()
    except OSError:
        return False
    return _interfaces(text) == ["lo"]


def orthanc_available() -> str | None:
    """Why Orthanc cannot be started here, or None if it can.

    Returns
    -------
    str or None
        None when the Orthanc binary and the DICOMweb plugin are installed and the process is
        network-isolated (see :func:`isolated_network`); otherwise a sentence giving the first
        reason that fails, fit for ``pytest.skip``.
    """
    if not (ORTHANC_BINARY.is_file() and os.access(ORTHANC_BINARY, os.X_OK)):
        return f"Orthanc is not installed ({ORTHANC_BINARY} missing; Debian package 'orthanc')"
    if not DICOMWEB_PLUGIN.exists():
        return f"the Orthanc DICOMweb plugin is not installed ({DICOMWEB_PLUGIN} missing; Debian package 'orthanc-dicomweb')"
    if not isolated_network():
        return (
            "not in a loopback-only network namespace (/proc/net/dev lists more than 'lo'): Orthanc 1.10 "
            "listens on every interface, so it is only started under "
            "`unshare -n sh -c 'ip link set lo up && ...'`"
        )
    return None


def _free_port() -> int:
    # the kernel picks a free port; it is released at once and Orthanc binds it just after (a
    # neighbour could take it in between: then Orthanc fails to start and says so in its log)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOOPBACK, 0))
        return int(s.getsockname()[1])


def _check_loopback(host: str, name: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise OrthancError(f"modality {name!r}: host {host!r} is not a loopback address; Orthanc only talks to 127.0.0.0/8 here")


def _modalities(modalities: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, spec in (modalities or {}).items():
        if isinstance(spec, Mapping):
            aet, host, port = spec["aet"], spec.get("host", _LOOPBACK), spec["port"]
        else:
            aet, host, port = spec
        _check_loopback(str(host), name)
        out[str(name)] = [str(aet), str(host), int(port)]
    return out


def _config(
    workdir: Path, name: str, http_port: int, dicom_port: int, aet: str, modalities: Mapping[str, Any] | None, dicomweb: bool
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "Name": name,
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        # refused for non-loopback clients; the namespace is what keeps the port off the network
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        # nothing of the host's /etc/orthanc: no Lua, no writes outside workdir, no jobs saved
        "LuaScripts": [],
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "SaveJobs": False,
        # a peer in benchmarks: keep-alive and no Nagle delay, as the voxelflow service has;
        # no gzip of responses (wrk never asks for it, and the images are compressed already)
        "KeepAlive": True,
        "TcpNoDelay": True,
        "HttpCompressionEnabled": False,
        "StorageCompression": False,
        # C-STORE pushes and other jobs run one at a time: tests then see them in order
        "ConcurrentJobs": 1,
        # "stable series" events a second after the last instance, not Orthanc's default 60 s
        "StableAge": 1,
        "DicomModalities": _modalities(modalities),
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
    }
    if dicomweb:
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False}
    return config


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class OrthancServer:
    """A running Orthanc, as :func:`run_orthanc` yields it.

    Attributes
    ----------
    url : str
        HTTP base, ``http://127.0.0.1:PORT`` (no trailing slash).
    dicomweb : str
        DICOMweb root, ``url + "/dicom-web"``.
    http_port, dicom_port : int
    aet : str
        Orthanc's own AE title.
    name : str
        The configuration's ``Name``, unique to this run (``/system`` answers it).
    workdir : Path
        Holds ``orthanc.json`` (the configuration), ``orthanc.log`` and the storage.
    process : subprocess.Popen
    """

    def __init__(
        self, process: subprocess.Popen[bytes], workdir: Path, name: str, http_port: int, dicom_port: int, aet: str, dicomweb: bool
    ):
        self.process = process
        self.name = name
        self.workdir = workdir
        self.http_port = http_port
        self.dicom_port = dicom_port
        self.aet = aet
        self.url = f"http://{_LOOPBACK}:{http_port}"
        self.dicomweb = self.url + "/dicom-web" if dicomweb else ""
        self.log_path = workdir / "orthanc.log"

    def __repr__(self) -> str:
        return f"OrthancServer(url={self.url!r}, dicom_port={self.dicom_port}, aet={self.aet!r}, pid={self.process.pid})"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of Orthanc's log."""
        return _tail(self.log_path, lines)

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        """GET ``url + path`` and decode the JSON answer.

        Raises
        ------
        OrthancError
            On a non-2xx answer or a connection failure, with the log tail.
        """
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OrthancError(f"GET {self.url}{path} failed: {exc}", self.log_tail()) from exc

    def upload(self, paths: Iterable[str | os.PathLike[str]], timeout: float = 60.0) -> list[str]:
        """POST each DICOM file to ``/instances``, over one keep-alive connection.

        Parameters
        ----------
        paths : iterable of path
            DICOM Part 10 files.
        timeout : float
            Seconds one request may take.

        Returns
        -------
        list of str
            Orthanc's instance id of each file, in the order given (a file already stored gives
            the id of the stored instance).

        Raises
        ------
        OrthancError
            When Orthanc refuses a file (names the file) or the connection fails.
        """
        ids: list[str] = []
        conn = http.client.HTTPConnection(_LOOPBACK, self.http_port, timeout=timeout)
        try:
            for path in paths:
                data = Path(path).read_bytes()
                try:
                    conn.request("POST", "/instances", body=data, headers={"Content-Type": "application/dicom"})
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    raise OrthancError(f"upload of {path} to {self.url}/instances failed: {exc}", self.log_tail()) from exc
                if not 200 <= response.status < 300:
                    raise OrthancError(
                        f"Orthanc refused {path}: HTTP {response.status} {body[:300]!r}", self.log_tail()
                    )
                answer = json.loads(body)
                if answer.get("Status") not in ("Success", "AlreadyStored"):
                    raise OrthancError(f"Orthanc did not store {path}: {answer}", self.log_tail())
                ids.append(str(answer["ID"]))
        finally:
            conn.close()
        return ids

    def stats(self) -> dict[str, Any]:
        """Orthanc's ``/statistics`` (counts of patients ... instances, disk sizes), plus
        ``rss_bytes``: the server process's resident memory (``VmRSS``), or None if unknown."""
        stats = dict(self.get_json("/statistics"))
        stats["rss_bytes"] = _rss_bytes(self.process.pid)
        return stats

    def _stop(self, timeout: float) -> None:
        if self.process.poll() is not None:
            return
        # SIGTERM: Orthanc closes its index cleanly (about 2-3 s); SIGKILL only if it hangs
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_ready(server: OrthancServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise OrthancError(
                f"Orthanc exited with code {server.process.returncode} before answering on {server.url}",
                server.log_tail(),
            )
        try:
            with urllib.request.urlopen(server.url + "/system", timeout=2.0) as response:
                system = json.loads(response.read())
            # the port may be held by another server (another Orthanc, a port reused): only
            # this run's own name says that the answer comes from the process just started
            if isinstance(system, dict) and system.get("Name") == server.name:
                return
            other = system.get("Name") if isinstance(system, dict) else system
            last = OrthancError(f"{server.url} is answered by another server (/system Name {other!r})")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise OrthancError(f"Orthanc did not answer GET {server.url}/system within {timeout:g} s (last error: {last})", server.log_tail())


@contextmanager
def run_orthanc(
    workdir: str | os.PathLike[str],
    *,
    http_port: int | None = None,
    dicom_port: int | None = None,
    aet: str = "ORTHANC",
    modalities: Mapping[str, Sequence[Any] | Mapping[str, Any]] | None = None,
    dicomweb: bool = True,
    lua: str | None = None,
    start_timeout: float = 60.0,
    stop_timeout: float = 20.0,
) -> Iterator[OrthancServer]:
    """Start Orthanc with its storage under `workdir`, yield it once it answers, stop it on exit.

    Parameters
    ----------
    workdir : path
        Created if missing; receives ``orthanc.json``, ``orthanc.log``, ``storage/`` and
        ``index/``. A folder used before keeps its instances.
    http_port, dicom_port : int, optional
        Ports to listen on; default: free ports chosen on 127.0.0.1.
    aet : str
        Orthanc's AE title.
    modalities : mapping, optional
        ``DicomModalities``: name -> ``(aet, host, port)`` or ``{"aet", "host", "port"}``, the
        DICOM peers Orthanc may C-STORE / C-ECHO to (``POST /modalities/{name}/store``). Hosts
        must be loopback addresses.
    dicomweb : bool
        Load the DICOMweb plugin under ``/dicom-web/``.
    lua : str, optional
        A Lua script Orthanc runs (its callbacks, e.g. ``IncomingHttpRequestFilter``, see the
        Orthanc book); written to ``workdir/script.lua``.
    start_timeout : float
        Seconds to wait for ``GET /system`` to answer.
    stop_timeout : float
        Seconds to wait after SIGTERM before SIGKILL.

    Yields
    ------
    OrthancServer

    Raises
    ------
    OrthancError
        If Orthanc cannot be used here (see :func:`orthanc_available`; it is never started
        outside a loopback-only network namespace), a modality host is not loopback, or Orthanc
        exits or does not answer in time; the message ends with the log tail.
    """
    reason = orthanc_available()
    if reason is not None:
        raise OrthancError(f"Orthanc not started: {reason}")
    root = Path(workdir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    http_port = _free_port() if http_port is None else int(http_port)
    dicom_port = _free_port() if dicom_port is None else int(dicom_port)
    if http_port == dicom_port:
        raise OrthancError(f"http_port and dicom_port are both {http_port}")
    name = f"voxelflow-test-{uuid.uuid4().hex[:12]}"
    config = _config(root, name, http_port, dicom_port, aet, modalities, dicomweb)
    if lua is not None:
        (root / "script.lua").write_text(lua)
        config["LuaScripts"] = [str(root / "script.lua")]
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = root / "orthanc.log"
    with open(log_path, "ab") as log:
        # a session of its own: a Ctrl-C meant for the caller does not kill Orthanc mid-write,
        # and the context manager's exit still stops it
        process = subprocess.Popen(
            [str(ORTHANC_BINARY), str(config_path)],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = OrthancServer(process, root, name, http_port, dicom_port, aet, dicomweb)
    try:
        _wait_ready(server, start_timeout)
        yield server
    finally:
        server._stop(stop_timeout)
