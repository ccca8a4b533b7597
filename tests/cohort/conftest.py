"""A real dask.distributed cluster of worker processes (not threads, not a mock) on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="package")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    from distributed import Client

    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield client
