"""A worker's reported peak memory is its own, not that of the process that spawned it."""

import subprocess
import sys

import numpy as np

from voxelflow.cohort.tasks import peak_rss

_CHILD = "from voxelflow.cohort.tasks import peak_rss; import resource; " \
         "print(peak_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


def test_a_child_of_a_big_parent_reports_its_own_peak():
    big = np.ones(400_000_000 // 8)  # touched: 400 MB resident in this process
    assert peak_rss() >= big.nbytes
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    own, inherited = (int(v) for v in out.stdout.split())
    assert own < 200_000_000, own  # python + numpy + voxelflow's imports
    if sys.platform.startswith("linux"):
        assert inherited >= big.nbytes  # why ru_maxrss is the wrong measure there
    del big
