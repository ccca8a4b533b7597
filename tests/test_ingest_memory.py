"""Peak memory of ingesting one volume: at most 1.5x the volume's size + 200 MB (issue 3).

Measured in a fresh process (``voxelflow.testing.memory``): the high-water mark of its resident
set during the ingest, above what it held after its imports. The series is a 120-slice
512 x 512 CT (60 MB), so the streaming store writes several slabs of it; the benchmark
(``benchmarks/bench_ingest.py``) reports the same measurement for 300 slices.
"""

from __future__ import annotations

import sys

import pytest

from voxelflow.testing import write_series
from voxelflow.testing.memory import ingest_peak_memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="measures /proc/self/status VmHWM (Linux)"
)

MB = 10**6


@pytest.mark.parametrize("syntax", ["explicit_le", "rle"])
def test_ingest_peak_memory_stays_under_one_and_a_half_volumes(tmp_path, syntax):
    info = write_series(tmp_path / "dicom", shape=(120, 512, 512), spacing=(1.25, 0.7, 0.7), transfer_syntax=syntax)
    memory = ingest_peak_memory([tmp_path / "dicom"], tmp_path / "store")
    assert memory.volume_bytes == info.volume.nbytes
    limit = 1.5 * memory.volume_bytes + 200 * MB
    assert 0 < memory.growth <= limit, (
        f"peak growth {memory.growth / MB:.0f} MB over the limit {limit / MB:.0f} MB "
        f"for a {memory.volume_bytes / MB:.0f} MB volume"
    )
