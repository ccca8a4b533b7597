"""``voxelflow serve``: the app under uvicorn, in one or several worker processes.

Workers are separate processes (uvicorn's supervisor), each with its own catalog, volume cache
and render threads over the same read-only store; their settings travel as JSON in the
environment, the token as the path of its file (never the token itself).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ParameterError, StoreError
from .settings import ServiceSettings

__all__ = ["check_host", "read_token", "serve"]

_ENV_STORE = "VOXELFLOW_SERVICE_STORE"
_ENV_SETTINGS = "VOXELFLOW_SERVICE_SETTINGS"
_ENV_TOKEN_FILE = "VOXELFLOW_SERVICE_TOKEN_FILE"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token: an open renderer of patient images."""
    if not is_loopback(host) and not token:
        raise ParameterError(
            f"--host {host} is not a loopback address: give --token-file so that only clients with "
            "the token are answered (or keep the default 127.0.0.1 behind a reverse proxy)"
        )


def read_token(path: str | os.PathLike[str]) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ParameterError(f"--token-file {os.fspath(path)!r}: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise ParameterError(f"--token-file {os.fspath(path)!r}: the token must be at least 16 characters")
    return token


def app_from_environment() -> Any:
    """The app a worker process builds from what :func:`serve` put in the environment."""
    from .app import create_app

    settings = ServiceSettings.from_json(os.environ[_ENV_SETTINGS])
    token_file = os.environ.get(_ENV_TOKEN_FILE)
    if token_file:
        settings = dataclasses.replace(settings, token=read_token(token_file))
    return create_app(os.environ[_ENV_STORE], settings)


def serve(
    store: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8042,
    workers: int = 1,
    token_file: str | None = None,
    cors: tuple[str, ...] = (),
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Run the service until interrupted (Ctrl-C / SIGTERM).

    Raises
    ------
    ParameterError
        For a non-loopback `host` without `token_file`, an unreadable or short token, or a bad
        setting. StoreError if `store` is not a folder.
    """
    import uvicorn

    token = read_token(token_file) if token_file else None
    check_host(host, token)
    if not os.path.isdir(store):
        raise StoreError(f"no volume store at {os.fspath(store)!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"--workers must be a positive integer, got {workers!r}")
    checked = ServiceSettings(cors_origins=tuple(cors), **settings)  # fail here, not in a worker
    if checked.upstream:
        from .upstream import Upstream, read_auth

        if checked.upstream_auth_file:
            read_auth(checked.upstream_auth_file)
        Upstream(checked.upstream).close()
    os.environ[_ENV_STORE] = os.path.abspath(store)
    os.environ[_ENV_SETTINGS] = checked.to_json()
    if token_file:
        os.environ[_ENV_TOKEN_FILE] = os.path.abspath(token_file)
    else:
        os.environ.pop(_ENV_TOKEN_FILE, None)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # the upstream client's own line per request would double every retrieval's log
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    # uvicorn's access log carries paths (UIDs) only, never patient names or IDs
    uvicorn.run(
        "voxelflow.service.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
