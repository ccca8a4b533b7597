"""Fixtures shared by tests/ and benchmarks/."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


def _thread_setter() -> Iterator[Callable[[int], None]]:
    import voxelflow

    before = voxelflow.get_num_threads()
    yield voxelflow.set_num_threads
    voxelflow.set_num_threads(before)


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """``voxelflow.set_num_threads`` for one test; the previous count comes back afterwards."""
    yield from _thread_setter()


@pytest.fixture
def threads_set() -> Iterator[Callable[[int], None]]:
    """The same, for benchmarks, whose parameter named ``threads`` is the count itself."""
    yield from _thread_setter()
