"""Helpers of the suites that time voxelflow against a peer (see conftest.py's conventions)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["describe", "timed"]


def describe(benchmark: Any, group: str, role: str, nbytes: int, nvoxels: int, **info: Any) -> None:
    """Put the row in `group` and record its role, bytes moved and voxels produced."""
    benchmark.group = group
    benchmark.extra_info.update(role=role, nbytes=nbytes, nvoxels=nvoxels, **info)


def timed(benchmark: Any, fn: Callable[[], Any], bench_scale: str, rounds: int = 5) -> Any:
    """Time `fn`: `rounds` rounds at full scale (5 by default: on a shared 2-core machine a
    neighbour's burst can double one round), pytest-benchmark's own calibration otherwise. No
    warm-up round: every benchmark has called `fn` once before (its output is checked or
    described), which compiles and caches what a first call would."""
    if bench_scale == "full":
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark(fn)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the servers the benchmarks start bind it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a server's log, for an error message ("" if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
