"""Header scan: ``voxelflow.scan`` over a tree of files against pydicom's ``dcmread``.

The tree: one 50-slice 64 x 64 CT phantom series (voxelflow.testing), hard-linked (copied where
links are not possible) into folders of 500 files until it holds 10,000 files (full scale;
2,000 quick, 200 smoke). Every file is read up to its Pixel Data; the page cache holds them, so
this measures parsing, not the disk. Target (issue 3): >= 5,000 files/s on 2 cores.

Rows, all timed in one run with the same number of processes (the CPUs available, at most 2):

- voxelflow: ``scan(root)``: walking the tree, the process pool, one row per file with ~40
  attributes converted to numbers, and the Index, all in the timing;
- peer "pydicom dcmread": ``dcmread(path, stop_before_pixels=True)`` on every file of a list
  made outside the timing, in a process pool of the same size, nothing accessed (pydicom
  converts values lazily, so this is the least any pydicom-based scan pays);
- peer "pydicom dcmread + attributes": the same, then reading the attributes of an index row.

``nvoxels`` and ``nfiles`` both count files, so the table's "Mvoxel/s" column reads M files/s.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest

import voxelflow
from voxelflow.testing import write_series

NFILES = {"smoke": 200, "quick": 2000, "full": 10_000}
PER_FOLDER = 500
WORKERS = max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else (os.cpu_count() or 1)))

KEYWORDS = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
    "InstanceNumber", "ImageType", "ImageOrientationPatient", "ImagePositionPatient",
    "PixelSpacing", "SliceThickness", "Rows", "Columns", "BitsAllocated", "BitsStored",
    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "WindowCenterWidthExplanation", "EchoTime", "EchoNumbers", "TemporalPositionIdentifier",
    "TriggerTime", "AcquisitionNumber", "SeriesNumber", "FrameOfReferenceUID",
    "GantryDetectorTilt", "AcquisitionTime", "ContentTime",
)


class Tree:
    def __init__(self, root: Path, files: list[str]):
        self.root = root
        self.files = files
        self.nfiles = len(files)


@pytest.fixture(scope="module")
def tree(bench_scale: str, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("scan")
    series = write_series(base / "series", shape=(50, 64, 64), noise=False)
    root = base / "tree"
    files = []
    for k in range(NFILES[bench_scale]):
        folder = root / f"d{k // PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"IM{k:05d}.dcm"
        source = series.paths[k % len(series.paths)]
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        files.append(str(target))
    return Tree(root, sorted(files))


def _context() -> Any:
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _dcmread_chunk(paths: Sequence[str]) -> int:
    for path in paths:
        pydicom.dcmread(path, stop_before_pixels=True)
    return len(paths)


def _dcmread_attributes_chunk(paths: Sequence[str]) -> list[tuple[Any, ...]]:
    rows = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows.append(tuple(ds.get(k) for k in KEYWORDS))
    return rows


def _pooled(fn: Any, files: list[str]) -> list[Any]:
    """`fn` over chunks of `files` in a fresh pool of WORKERS processes (as scan does)."""
    if WORKERS == 1:
        return [fn(files)]
    size = max(16, min(256, -(-len(files) // (WORKERS * 8))))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    with ProcessPoolExecutor(WORKERS, mp_context=_context()) as pool:
        return list(pool.map(fn, chunks))


def _describe(benchmark: Any, tree: Tree, role: str, **info: Any) -> None:
    benchmark.group = f"header scan, {tree.nfiles} files (64x64 CT), {WORKERS} processes"
    benchmark.extra_info.update(
        role=role, nvoxels=tree.nfiles, nfiles=tree.nfiles, threads=WORKERS, **info
    )


def bench_scan_voxelflow(benchmark: Any, tree: Tree) -> None:
    _describe(benchmark, tree, "voxelflow", kernel="scan", backend="header walker")
    index = benchmark(voxelflow.scan, tree.root, workers=WORKERS)
    assert len(index) == tree.nfiles and not index.errors
    seconds = benchmark.stats.stats.median if benchmark.stats else None
    if seconds:
        benchmark.extra_info["files_per_s"] = tree.nfiles / seconds


def bench_scan_pydicom(benchmark: Any, tree: Tree) -> None:
    _describe(benchmark, tree, "peer", peer="pydicom dcmread")
    counts = benchmark(_pooled, _dcmread_chunk, tree.files)
    assert sum(counts) == tree.nfiles


def bench_scan_pydicom_attributes(benchmark: Any, tree: Tree) -> None:
    _describe(benchmark, tree, "peer", peer="pydicom dcmread + attributes")
    chunks = benchmark(_pooled, _dcmread_attributes_chunk, tree.files)
    assert sum(map(len, chunks)) == tree.nfiles
