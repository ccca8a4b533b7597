"""The header scan on a cluster's workers (scan(executor=...)), as cohort runs read headers."""

from __future__ import annotations

from concurrent.futures import Future

from voxelflow.dicom.scan import scan
from voxelflow.testing.cohort import write_cohort


def test_a_scan_on_the_cluster_equals_a_scan_here(tmp_path, client):
    info = write_cohort(tmp_path / "src", good=3)
    here = scan(tmp_path / "src", workers=1)
    there = scan(tmp_path / "src", executor=client.get_executor(pure=False), workers=3)
    assert there == here
    assert {i.path for i in there.errors} == {str(p) for p in info.corrupt}


class _DyingExecutor:
    """An executor whose every task's worker dies (as a KilledWorker would say)."""

    def submit(self, fn, *args):
        future = Future()
        future.set_exception(RuntimeError("worker died"))
        return future


def test_files_of_a_chunk_whose_worker_died_are_errors_not_lost(tmp_path):
    write_cohort(tmp_path / "src", good=1)
    index = scan(tmp_path / "src", executor=_DyingExecutor())
    assert not index.rows
    assert index.errors and all("the process reading this file died (RuntimeError)" in i.reason
                                or "cut" in i.path for i in index.errors)
