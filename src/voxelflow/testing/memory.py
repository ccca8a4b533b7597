"""Peak memory of an ingest, measured in a fresh Python process (Linux).

The child imports voxelflow and everything an ingest loads (zarr, numcodecs, pydicom, the
native kernels), reads its resident set size, resets the kernel's high-water mark
(``echo 5 > /proc/self/clear_refs``, Linux 4.0+), ingests, and reads the high-water mark
(``VmHWM``) back: the growth is what the ingest itself held at its peak, page-exact, with no
sampling to miss a short spike and nothing of the imports or of the parent's heap counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IngestMemory", "ingest_peak_memory"]

_CHILD = r"""
import json, sys

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

import numpy, zarr, numcodecs, pydicom
import voxelflow
from voxelflow import kernels
from voxelflow.ingest import ingest
from voxelflow.store import VolumeStore
kernels.get("rle_decode"), kernels.get("unpack_words"), kernels.get("downsample_mean2")

sources, store_path = json.loads(sys.argv[1]), sys.argv[2]
store = VolumeStore(store_path)
before = status()["VmRSS"]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
report = ingest(sources, store)
peak = status()["VmHWM"]
volumes = [store.open(v.key) for v in report.volumes]
print(json.dumps({
    "baseline": before,
    "peak": peak,
    "volume_bytes": sum(int(v.array.nbytes) for v in volumes),
    "failures": [list(f) for f in report.failures],
}))
"""


@dataclass(frozen=True)
class IngestMemory:
    """What an ingest held at its peak.

    Attributes
    ----------
    baseline : int
        Resident bytes after the imports, before the ingest.
    peak : int
        The process's peak resident bytes during the ingest.
    volume_bytes : int
        Bytes of the volumes written (level 0, uncompressed).
    """

    baseline: int
    peak: int
    volume_bytes: int

    @property
    def growth(self) -> int:
        """Peak resident bytes above the baseline: the ingest's own peak memory."""
        return self.peak - self.baseline


def ingest_peak_memory(sources: list[str | os.PathLike[str]], store: str | os.PathLike[str]) -> IngestMemory:
    """Ingest `sources` into the store at `store` in a fresh process; return its peak memory.

    Raises
    ------
    RuntimeError
        If the child fails or its ingest reports failures.
    """
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([str(s) for s in sources]), str(Path(store))],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ingest child failed ({result.returncode}): {result.stderr[-2000:]}")
    values = json.loads(result.stdout.strip().splitlines()[-1])
    if values["failures"]:
        raise RuntimeError(f"ingest reported failures: {values['failures']}")
    return IngestMemory(values["baseline"], values["peak"], values["volume_bytes"])
