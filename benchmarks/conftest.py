"""Shared conventions of the benchmark suites.

Each benchmark records in ``benchmark.extra_info``:

- ``role``: "voxelflow", "peer" or "memcpy" (a ``np.copyto`` of the same input bytes);
- ``kernel`` and ``backend`` (voxelflow rows), ``peer`` (the peer's name, peer rows);
- ``nbytes``: bytes read + written by one call; ``nvoxels``: voxels produced by one call.

Rows of one comparison share ``benchmark.group``; ``voxelflow bench`` turns each group into
table rows with the ratio to the peer and the percentage of memcpy bandwidth.

A plain ``pytest`` run has benchmarking disabled (``--benchmark-disable`` in addopts): every
benchmark then runs once, on small inputs, as a smoke test. ``bench_scale`` tells which.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import voxelflow


@pytest.fixture(scope="session")
def bench_scale(pytestconfig: pytest.Config) -> str:
    """"smoke" (plain pytest: run once, small), "quick" (``bench --quick``) or "full"."""
    if pytestconfig.getoption("benchmark_disable") and not pytestconfig.getoption("benchmark_enable"):
        return "smoke"
    return "quick" if os.environ.get("VOXELFLOW_BENCH_QUICK") else "full"


@pytest.fixture
def two_threads() -> Iterator[None]:
    """voxelflow's kernels on 2 threads (the suites' comparisons), restored afterwards."""
    before = voxelflow.get_num_threads()
    voxelflow.set_num_threads(2)
    yield
    voxelflow.set_num_threads(before)
