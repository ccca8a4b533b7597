"""Cohorts for the cohort runner's tests and benchmark, and pipeline steps that misbehave.

:func:`write_cohort` writes a small cohort with every kind of input a cohort run meets: good CT
and MR series (RLE among them), corrupt files, a duplicated series folder, a 4-D series and,
optionally, a series marked for :func:`crash_if_marked`. :func:`write_synthetic_cohort` writes
the benchmark's mixed cohort. The steps (``"voxelflow.testing.cohort:crash_if_marked"`` in a
pipeline) run on the workers: they crash the worker process, fail with transient I/O errors, or
slow a task down, on the series whose Series Description holds a marker.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .series import write_series

__all__ = [
    "CRASH_MARKER",
    "SYNTHETIC_SIZES",
    "CohortInfo",
    "crash_if_marked",
    "fail_io_first",
    "slow_down",
    "write_cohort",
    "write_synthetic_cohort",
]

#: The Series Description of a series whose task :func:`crash_if_marked` kills.
CRASH_MARKER = "VOXELFLOW-CRASH"


@dataclass
class CohortInfo:
    """What :func:`write_cohort` wrote: the good series (their Series Instance UIDs and the
    volumes each makes), the corrupt files, and the marked series."""

    root: Path
    good: dict[str, tuple[int, ...]] = field(default_factory=dict)  # series uid -> volume shape
    corrupt: list[Path] = field(default_factory=list)
    duplicate: str = ""  # the series uid written twice
    four_d: str = ""
    marked: dict[str, str] = field(default_factory=dict)  # series uid -> marker
    # the series one of whose files is cut short: that file fails, the others make a volume
    short: str = ""
    slices: int = 0


def _describe(paths: Sequence[Path], description: str) -> None:
    import pydicom

    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = description
        ds.save_as(path)


def write_cohort(
    folder: str | os.PathLike[str],
    *,
    good: int = 4,
    shape: tuple[int, int, int] = (12, 48, 48),
    marked: Sequence[str] = (),
    seed: int = 0,
) -> CohortInfo:
    """`good` plain series (CT and MR alternating, every third RLE), two corrupt files, one of
    the series copied to a second folder (a duplicate), one 4-D series (three time points), and
    one series per marker in `marked` (its Series Description is the marker)."""
    import pydicom

    from .datasets import deterministic_uid

    root = Path(folder)
    info = CohortInfo(root)
    study = str(deterministic_uid("cohort", seed, "study"))
    for n in range(good):
        uid = str(deterministic_uid("cohort", seed, "series", n))
        series = write_series(
            root / f"patient{n % 2}" / f"series{n}", shape=shape, modality="CT" if n % 2 == 0 else "MR",
            transfer_syntax="rle" if n % 3 == 2 else "explicit_le", series_number=n + 1,
            study_uid=study, series_uid=uid, seed=seed * 100 + n,
        )
        info.good[uid] = tuple(series.volume.shape)
        info.slices += len(series.paths)
    first = next(iter(info.good))
    info.duplicate = first
    shutil.copytree(root / "patient0" / "series0", root / "copy-of-series0")

    uid = str(deterministic_uid("cohort", seed, "4d"))
    for t in range(3):
        series = write_series(root / "dynamic" / str(t), shape=(6, shape[1], shape[2]), modality="MR",
                              series_number=90, study_uid=study, series_uid=uid, seed=seed * 100 + 50 + t)
        for path in series.paths:
            ds = pydicom.dcmread(path)
            ds.TemporalPositionIdentifier = t + 1
            ds.InstanceNumber = ds.InstanceNumber + 100 * t
            ds.save_as(path)
        info.slices += len(series.paths)
    info.four_d = uid
    info.good[uid] = (3, 6, shape[1], shape[2])

    for i, marker in enumerate(marked):
        uid = str(deterministic_uid("cohort", seed, "marked", i))
        series = write_series(root / f"marked{i}", shape=shape, series_number=70 + i, study_uid=study,
                              series_uid=uid, seed=seed * 100 + 70 + i)
        _describe(series.paths, marker)
        info.marked[uid] = marker

    # corrupt: a file cut inside its header, and a series member with a destroyed Pixel Data
    (root / "broken").mkdir(parents=True, exist_ok=True)
    donor = write_series(root / "broken" / "donor", shape=(2, 16, 16), series_number=99, seed=seed * 100 + 99)
    cut = root / "broken" / "cut-in-header.dcm"
    cut.write_bytes(donor.paths[0].read_bytes()[:300])
    shutil.rmtree(root / "broken" / "donor")
    # and a series whose last file lost the end of its Pixel Data
    info.short = str(deterministic_uid("cohort", seed, "short"))
    bad = write_series(root / "broken" / "short", shape=(4, 16, 16), series_number=98, study_uid=study,
                       series_uid=info.short, seed=seed * 100 + 98)
    last = bad.paths[-1]
    last.write_bytes(last.read_bytes()[:-100])
    info.corrupt = [cut, last]
    return info


#: The benchmark cohort's series, in turn: (slices, rows, columns, modality).
SYNTHETIC_SIZES = ((24, 128, 128, "MR"), (48, 256, 256, "CT"), (24, 128, 128, "MR"),
                   (32, 192, 192, "MR"), (48, 256, 256, "CT"), (96, 256, 256, "CT"))


def write_synthetic_cohort(
    folder: str | os.PathLike[str],
    count: int = 200,
    *,
    sizes: Sequence[tuple[int, int, int, str]] = SYNTHETIC_SIZES,
    seed: int = 0,
) -> CohortInfo:
    """`count` series of mixed sizes, CT and MR, one in four RLE: the benchmark's cohort.

    The series take their shape and modality from `sizes` in turn (default
    :data:`SYNTHETIC_SIZES`: small MR, mid CT, a few larger CT; ~4.7 MB a series)."""
    from .datasets import deterministic_uid

    root = Path(folder)
    info = CohortInfo(root)
    study = str(deterministic_uid("synthetic", seed, "study"))
    for n in range(count):
        z, y, x, modality = sizes[n % len(sizes)]
        uid = str(deterministic_uid("synthetic", seed, "series", n))
        series = write_series(
            root / f"subject{n // 4:03d}" / f"series{n:03d}", shape=(z, y, x), modality=modality,
            transfer_syntax="rle" if n % 4 == 3 else "explicit_le", series_number=n + 1,
            study_uid=study, series_uid=uid, seed=seed * 1000 + n, noise=True,
        )
        info.good[uid] = tuple(series.volume.shape)
        info.slices += len(series.paths)
    return info


def _description(context: Any) -> str:
    import pydicom

    if not context.files:
        return ""
    ds = pydicom.dcmread(context.files[0], stop_before_pixels=True, specific_tags=["SeriesDescription"])
    return str(ds.get("SeriesDescription", ""))


def crash_if_marked(volume: Any, context: Any, marker: str = CRASH_MARKER) -> Any:
    """Kill this worker process with SIGSEGV (as a crashing decoder would) when the volume's
    series is described as `marker`; otherwise pass the volume on."""
    if _description(context) == marker:
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(60)  # the signal arrives asynchronously
    return volume


def fail_io_first(volume: Any, context: Any, marker: str, times: int = 2) -> Any:
    """Raise EIO (an I/O error that may pass) on the first `times` tries of the series
    described as `marker`."""
    if context.io_try < times and _description(context) == marker:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(context.files[0]))
    return volume


def slow_down(volume: Any, context: Any, seconds: float = 0.5) -> Any:
    """Sleep `seconds` (a test that kills something mid-run needs a run that lasts)."""
    time.sleep(seconds)
    return volume
