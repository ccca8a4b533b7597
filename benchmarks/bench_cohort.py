"""A cohort: voxelflow cohort on 2 worker processes against voxelflow ingest in one process and
against dcm2niix run two at a time.

The cohort (``voxelflow.testing.cohort.write_synthetic_cohort``): 200 series at full scale
(40 quick, 6 tiny smoke), CT and MR of mixed sizes (24 x 128 x 128 to 96 x 256 x 256, ~4.7 MB
a series, ~9,000 slices, ~0.9 GB), one in four RLE Lossless. Targets (issue 16), same run,
2 cores:

- voxelflow cohort (2 workers) >= 1.8x voxelflow ingest in one process;
- voxelflow cohort >= 1.5x dcm2niix's slices/s (``xargs -P 2``, uncompressed NIfTI), while it
  also writes the compressed store, its pyramid, thumbnails, QA records and the manifest;
- peak resident memory per worker <= 2x the largest volume + 300 MB (asserted below, outside
  the timing: it is a bound, not a speed).

Rows, all in group "cohort ...", each round into a fresh output folder, the files in the page
cache (this measures the work, not the disk):

- voxelflow: ``voxelflow.cohort.run(src, fresh, client=client)`` on a LocalCluster of 2 worker
  processes with 1 thread each, started once before the rounds (a cohort cluster lives for the
  run; its start-up, ~2 s, is in ``extra_info["cluster_start_s"]``). The whole job: header scan
  (its index is new each round), planning, one task per volume (decode, compressed zarr chunks
  and pyramid, thumbnail, QA record), manifest rows.
- peer "voxelflow ingest (one process)": ``voxelflow.ingest(src, fresh)`` here, kernels on the
  default threads.
- peer "dcm2niix -z n, xargs -P 2": one dcm2niix per series folder, two at a time, as users
  script it; ``-f %j`` names each output by its Series Instance UID.
- floor (``role="floor"``, in the JSON report): the files read whole and the decoded volumes'
  level-0 chunks compressed with the store's default codec and written, on 2 threads: what any
  store ingest pays at least.

``voxelflow bench``'s table gives the ratio to the faster peer; the other ratio is the two
medians of the JSON report. ``slices`` in ``extra_info``: slices/s = slices / median.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import voxelflow
from voxelflow.ingest import ingest
from voxelflow.store import VolumeStore
from voxelflow.store.volume_store import COMPRESSORS, DEFAULT_CHUNKS
from voxelflow.testing.cohort import SYNTHETIC_SIZES, CohortInfo, write_synthetic_cohort

COUNTS = {"smoke": 6, "quick": 40, "full": 200}
ROUNDS = {"smoke": 1, "quick": 2, "full": 3}
SMOKE_SIZES = ((4, 32, 32, "CT"), (3, 24, 24, "MR"))
# the bound on a worker's peak resident memory: 2x the largest volume + 300 MB
MEMORY_FACTOR, MEMORY_SLACK = 2.0, 300 * 10**6


class Cohort:
    def __init__(self, info: CohortInfo, work: Path, nbytes: int) -> None:
        self.info = info
        self.folders = sorted({p.parent for p in info.root.rglob("*.dcm")})
        self.nbytes = nbytes
        self._work = work
        self._count = itertools.count()

    @property
    def group(self) -> str:
        return f"cohort {len(self.info.good)} series, {self.info.slices} slices, 2 cores"

    def fresh(self) -> Path:
        path = self._work / f"out{next(self._count)}"
        path.mkdir()
        return path

    def clean(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)
        self._work.mkdir()


@pytest.fixture(scope="module")
def cohort(bench_scale: str, tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    root = tmp_path_factory.mktemp("cohort")
    sizes = SMOKE_SIZES if bench_scale == "smoke" else SYNTHETIC_SIZES
    info = write_synthetic_cohort(root / "src", COUNTS[bench_scale], sizes=sizes)
    nbytes = sum(p.stat().st_size for p in info.root.rglob("*.dcm"))
    (root / "work").mkdir()
    return Cohort(info, root / "work", nbytes)


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    client.wait_for_workers(2)
    client.cluster_start_s = time.perf_counter() - start
    yield client
    client.close()
    cluster.close()


def _describe(benchmark: Any, cohort: Cohort, role: str, **info: Any) -> None:
    benchmark.group = cohort.group
    benchmark.extra_info.update(role=role, nbytes=cohort.nbytes, nvoxels=0, slices=cohort.info.slices,
                                series=len(cohort.info.good), **info)


def _rounds(benchmark: Any, bench_scale: str, run: Any, cohort: Cohort) -> None:
    benchmark.pedantic(run, setup=lambda: ((cohort.fresh(),), {}), rounds=ROUNDS[bench_scale],
                       iterations=1, warmup_rounds=0)


def bench_cohort_voxelflow(benchmark: Any, cohort: Cohort, client: Any, bench_scale: str) -> None:
    from voxelflow.cohort import run

    reports = []

    def once(out: Path) -> None:
        reports.append(run(cohort.info.root, out / "store", client=client))

    once(cohort.fresh())  # workers import voxelflow and compile nothing twice: warm, as in a run
    peak = reports[-1].peak_rss
    largest = max(int(np.prod(s)) * 2 for s in cohort.info.good.values())
    limit = MEMORY_FACTOR * largest + MEMORY_SLACK
    _describe(benchmark, cohort, "voxelflow", kernel="cohort.run, 2 worker processes",
              backend=voxelflow.kernels.default_backend(), threads=2,
              cluster_start_s=round(client.cluster_start_s, 2), worker_peak_rss_mb=round(peak / 1e6, 1),
              largest_volume_mb=round(largest / 1e6, 1), memory_limit_mb=round(limit / 1e6, 1))
    assert peak <= limit, (peak, limit)
    _rounds(benchmark, bench_scale, once, cohort)
    report = reports[-1]
    assert report.counts["done"] == len(cohort.info.good) and not report.failures, report.table()
    cohort.clean()


def bench_cohort_ingest_one_process(benchmark: Any, cohort: Cohort, bench_scale: str) -> None:
    _describe(benchmark, cohort, "peer", peer="voxelflow ingest (one process)",
              threads=voxelflow.get_num_threads())
    reports = []

    def once(out: Path) -> None:
        reports.append(ingest(cohort.info.root, VolumeStore(out / "store")))

    _rounds(benchmark, bench_scale, once, cohort)
    assert len(reports[-1].volumes) == len(cohort.info.good) and not reports[-1].failures
    cohort.clean()


def bench_cohort_dcm2niix(benchmark: Any, cohort: Cohort, bench_scale: str) -> None:
    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        pytest.skip("the peer needs dcm2niix (pip install dcm2niix)")
    _describe(benchmark, cohort, "peer", peer="dcm2niix -z n, xargs -P 2")
    listing = "\0".join(str(f) for f in cohort.folders).encode()
    outputs = []

    def once(out: Path) -> None:
        subprocess.run(["xargs", "-0", "-P", "2", "-n", "1", dcm2niix, "-z", "n", "-b", "n", "-f", "%j",
                        "-o", str(out)], input=listing, check=True, capture_output=True)
        outputs.append(out)

    _rounds(benchmark, bench_scale, once, cohort)
    assert len(list(outputs[-1].glob("*.nii"))) == len(cohort.info.good)
    cohort.clean()


def bench_cohort_floor(benchmark: Any, cohort: Cohort, bench_scale: str) -> None:
    """Read the files whole, compress each volume's level-0 chunks with the store's codec, write."""
    import pydicom
    from numcodecs import Blosc

    config = COMPRESSORS["blosc"]().to_dict()["configuration"]  # type: ignore[union-attr]
    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
    codec = Blosc(cname=config["cname"], clevel=config["clevel"], shuffle=shuffle[config["shuffle"]])
    paths = sorted(cohort.info.root.rglob("*.dcm"))
    volumes = []  # decoded outside the timing: the floor has no decoding
    for folder in cohort.folders:
        files = sorted(folder.glob("*.dcm"))
        volumes.append(np.stack([pydicom.dcmread(f).pixel_array for f in files]))
    jobs = []
    for n, volume in enumerate(volumes):
        chunks = tuple(min(c, s) for c, s in zip(DEFAULT_CHUNKS, volume.shape))
        for start in itertools.product(*(range(0, s, c) for s, c in zip(volume.shape, chunks))):
            jobs.append((n, tuple(slice(a, a + c) for a, c in zip(start, chunks))))
    _describe(benchmark, cohort, "floor", kernel="floor: read files + blosc level-0 chunks + write, 2 threads",
              threads=2)

    def read(path: Path) -> int:
        with open(path, "rb", buffering=0) as f:
            return len(f.read())

    def write(out: Path, i: int, job: tuple[int, tuple[slice, ...]]) -> None:
        n, region = job
        (out / f"{n}-{i}").write_bytes(codec.encode(np.ascontiguousarray(volumes[n][region])))

    outputs = []

    def once(out: Path) -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(read, paths))
            list(pool.map(write, itertools.repeat(out), itertools.count(), jobs))
        outputs.append(out)

    _rounds(benchmark, bench_scale, once, cohort)
    assert len(os.listdir(outputs[-1])) == len(jobs)
    cohort.clean()
