"""Cohort processing on dask.distributed: thousands of series, resumable, surviving bad data
and dead workers.

:func:`run` scans the sources once, then runs one task per volume on the caller's cluster
(:mod:`.runner`): the :class:`Pipeline` (:mod:`.pipeline`) of ingest, optional resampling,
reorientation, cropping and steps of your own, then the outputs. Each volume's outcome is a
row of the durable manifest (:mod:`.manifest`); a re-run, or a run resumed after a kill, does
only what is not done. What a task does on its worker, and how it meets bad data and crashes,
is in :mod:`.tasks`.

Layout of the output store::

    OUT/<study>/<series>/<n>/        the volumes (OME-Zarr image groups, see voxelflow.store)
    OUT/cohort/manifest.sqlite       one row per volume and per unreadable file
    OUT/cohort/report.json           the last run's report
    OUT/cohort/thumbnails/<key>.png  anterior MIP, auto-windowed
    OUT/cohort/qa/<key>.json         the QA record: geometry and findings with their numbers
    OUT/cohort/nifti/*.nii.gz        with outputs.nifti, beside their BIDS side-cars
"""

from __future__ import annotations

from .manifest import Manifest
from .pipeline import (
    Crop,
    Faults,
    IngestOptions,
    Outputs,
    Pipeline,
    PipelineError,
    Resample,
    Step,
    load_pipeline,
)
from .runner import CohortReport, run

__all__ = [
    "CohortReport",
    "Crop",
    "Faults",
    "IngestOptions",
    "Manifest",
    "Outputs",
    "Pipeline",
    "PipelineError",
    "Resample",
    "Step",
    "load_pipeline",
    "run",
]
