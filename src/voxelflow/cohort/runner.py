"""Run a cohort on a dask.distributed cluster: scan once, then one task per volume.

The client (this process) scans the sources' headers (one index, saved in the store and reused
by the next run), plans the volumes, and submits one :func:`~voxelflow.cohort.tasks.process_volume`
task per volume that the manifest does not already hold as done. It keeps a bounded number of
tasks in flight (so a 100,000-volume cohort costs the scheduler a few dozen task states, not
100,000), largest volumes first (the last tasks to finish are the small ones), and records each
result in the manifest the moment it arrives. Tasks receive headers and paths and return a
manifest row: no pixel data passes through the scheduler.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..progress import Reporter
from .manifest import Manifest
from .pipeline import Pipeline, load_pipeline
from .tasks import COHORT_DIR, Job, attempts_folder, process_volume

__all__ = ["CohortReport", "run"]

#: Tasks kept in flight per worker thread: enough that no worker waits for the client.
IN_FLIGHT_PER_THREAD = 2


@dataclass
class CohortReport:
    """What a cohort run did, and the manifest's state after it."""

    store: Path
    manifest: Path
    counts: dict[str, int] = field(default_factory=dict)  # the manifest's rows by status
    processed: int = 0  # volumes this run sent to workers
    skipped: int = 0  # volumes already done by an earlier run (same sources, same pipeline)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (key or file, class, message)
    slices: int = 0  # slices of the volumes done by this run
    bytes: int = 0  # source bytes of the volumes done by this run
    seconds: float = 0.0
    peak_rss: int = 0  # the largest peak resident bytes a worker reported

    @property
    def partial(self) -> bool:
        """Some volume or file failed or was quarantined (the CLI exits with 3)."""
        return bool(self.failures)

    def table(self) -> str:
        seconds = max(self.seconds, 1e-9)
        done = self.counts.get("done", 0)
        lines = [
            (f"cohort: {done} done, {self.counts.get('failed', 0)} failed, "
             f"{self.counts.get('quarantined', 0)} quarantined, {self.counts.get('pending', 0)} pending "
             f"({self.processed} processed now, {self.skipped} already done) in {self.seconds:.1f} s"),
            (f"throughput: {self.processed / seconds:.2f} volumes/s, {self.slices / seconds:.0f} slices/s, "
             f"{self.bytes / seconds / 1e6:.1f} MB/s; largest worker peak memory {self.peak_rss / 2**20:.0f} MiB"),
        ]
        lines += [f"FAILED {what}: {kind}: {message}" for what, kind, message in self.failures]
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store), "manifest": str(self.manifest), "counts": self.counts,
            "processed": self.processed, "skipped": self.skipped, "slices": self.slices,
            "bytes": self.bytes, "seconds": self.seconds, "peak_rss": self.peak_rss,
            "failures": [{"what": w, "error_class": k, "message": m} for w, k, m in self.failures],
        }


def _default_client() -> Any:
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        raise ParameterError(
            "cohort.run: no dask.distributed client: pass client=Client(...) (a LocalCluster of worker "
            "processes, or the scheduler's address); `voxelflow cohort` starts a local cluster itself"
        ) from None


def source_digest(paths: Iterable[str]) -> tuple[str, int, int]:
    """(digest of the files' paths, sizes and modification times, file count, total bytes)."""
    h = hashlib.sha256()
    files = total = 0
    for path in sorted(set(paths)):
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # gone since the scan: the task reports it
        h.update(f"{path}\0{size}\0{mtime}\n".encode())
        files += 1
        total += max(size, 0)
    return h.hexdigest()[:24], files, total


def _outputs_present(store: Any, row: dict[str, Any]) -> bool:
    outputs = row.get("outputs") or {}
    if outputs.get("store") not in store:
        return False
    return all((store.path / path).is_file() for kind, path in outputs.items() if kind != "store")


def _remove_leftovers(out: Path) -> None:
    """Temporary files of outputs whose writer died: never visible as outputs, removed here."""
    for kind in ("thumbnails", "qa", "nifti"):
        folder = out / kind
        if not folder.is_dir():
            continue
        for path in folder.rglob(".*"):
            if path.is_file() and (path.name.endswith(".tmp") or ".partial" in path.name):
                path.unlink(missing_ok=True)


def run(
    sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    store: Any,
    pipeline: Pipeline | dict[str, Any] | str | os.PathLike[str] | None = None,
    client: Any = None,
    *,
    reporter: Reporter | None = None,
    retry_quarantined: bool = False,
    threads_per_task: int = 1,
) -> CohortReport:
    """Process every volume under `sources` into `store` on the dask.distributed `client`.

    Parameters
    ----------
    sources : path or paths
        DICOM files and folders (searched recursively).
    store : VolumeStore or path
        The output: the volumes, and ``cohort/`` beside them (manifest, thumbnails, QA records,
        NIfTI files; see :mod:`voxelflow.cohort`).
    pipeline : Pipeline, dict or path, optional
        See :mod:`voxelflow.cohort.pipeline` (default: ingest with thumbnails and QA records).
    client : distributed.Client, optional
        The cluster to run on. Default: the current client (``distributed.default_client()``);
        this function never starts a cluster.
    reporter : optional
        :mod:`voxelflow.progress` reporter: the scan ("scanning", files), then the volumes
        ("cohort", volumes; its note shows failures and MB/s).
    retry_quarantined : bool
        Run the quarantined volumes again (default: they stay quarantined until their files
        change).
    threads_per_task : int
        Kernel threads each task uses (:func:`voxelflow.set_num_threads`).

    Returns
    -------
    CohortReport
        Counts by status, this run's failures, throughput. The manifest holds every row.
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError

    from ..dicom.scan import scan
    from ..dicom.series import plan_volumes
    from ..ingest import SCAN_INDEX
    from ..store import VolumeStore
    from ..store.layout import key_digest

    start = time.perf_counter()
    pipeline = load_pipeline(pipeline)
    pipeline.check_steps()
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if isinstance(threads_per_task, bool) or not isinstance(threads_per_task, int) or threads_per_task < 1:
        raise ParameterError(f"cohort.run: threads_per_task must be an integer >= 1, got {threads_per_task!r}")
    client = client if client is not None else _default_client()
    store = store if isinstance(store, VolumeStore) else VolumeStore(store)
    out = store.path / COHORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    store.remove_partials()
    manifest = Manifest(out / "manifest.sqlite")
    report = CohortReport(store.path, manifest.path)
    try:
        run_id = manifest.begin_run([str(s) for s in sources], pipeline.to_dict())
        index_path = store.path / ".voxelflow" / SCAN_INDEX
        # the headers are read on the cluster's workers: on 100 nodes the scan scales with them
        executor = client.get_executor(pure=False)
        index = scan([str(s) for s in sources], previous=index_path, executor=executor,
                     workers=max(2, 4 * sum(client.nthreads().values())),
                     progress=None if reporter is None else reporter("scanning", "files"))
        index_path.parent.mkdir(parents=True, exist_ok=True)
        index.save(index_path)
        file_errors = [(issue.path, issue.reason) for issue in index.errors]
        manifest.set_file_errors(file_errors)
        report.failures += [(path, "FileError", reason) for path, reason in file_errors]
        plans, refused = plan_volumes(index.rows, pipeline.ingest.policy(),
                                      philips_scaling=pipeline.ingest.philips_scaling)
        digest = pipeline.digest()
        for series_uid, reason in refused:
            manifest.put({"key": series_uid, "series_uid": series_uid, "status": "failed",
                          "error_class": "SeriesError", "error_message": reason, "pipeline": digest,
                          "finished": time.time()})
            report.failures.append((series_uid, "SeriesError", reason))

        with manifest.batch():  # one commit for the plan, not one per volume
            jobs = _plan_jobs(plans, manifest, store, pipeline, digest, report, retry_quarantined,
                              threads_per_task)
        jobs.sort(key=lambda j: -j.bytes)  # largest first: the tail of the run is short tasks

        progress = None if reporter is None else reporter("cohort", "volumes")
        total = len(jobs)
        if progress is not None:
            progress(0, total)
        pending = list(reversed(jobs))
        submitted: dict[str, tuple[Job, int]] = {}
        started = time.perf_counter()
        finished = 0
        counts = {"failed": 0, "quarantined": 0}

        def submit(job: Job, resubmits: int = 0) -> Any:
            name = f"voxelflow-cohort-{key_digest(job.key)}-{job.source_digest[:8]}-{resubmits}"
            future = client.submit(process_volume, job, key=name, pure=False, retries=0)
            submitted[future.key] = (job, resubmits)
            return future

        capacity = {"at": 0.0, "slots": 2}

        def slots() -> int:
            # the cluster may grow or shrink during the run: asked again every few seconds
            now = time.monotonic()
            if now - capacity["at"] > 5.0:
                threads = sum(client.nthreads().values()) or 1
                capacity.update(at=now, slots=max(2, IN_FLIGHT_PER_THREAD * threads))
            return int(capacity["slots"])

        queue = as_completed([submit(pending.pop()) for _ in range(min(len(pending), slots()))])
        for future in queue:
            job, resubmits = submitted.pop(future.key)
            try:
                row = future.result()
            except FutureCancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the cluster's errors become the volume's row
                row = _row_for_task_error(job, exc, resubmits, pipeline)
                if row is None:  # the worker died under it: run it again (it counts its tries)
                    queue.add(submit(job, resubmits + 1))
                    continue
            finally:
                future.release()
            manifest.put(row)
            finished += 1
            if row["status"] == "done":
                report.slices += int(row.get("slices") or 0)
                report.bytes += int(row.get("bytes") or 0)
            else:
                counts[row["status"]] += 1
                report.failures.append((job.key, row["error_class"], row["error_message"]))
            report.peak_rss = max(report.peak_rss, int(row.get("peak_rss") or 0))
            while pending and queue.count() < slots():
                queue.add(submit(pending.pop()))
            if progress is not None:
                elapsed = time.perf_counter() - started
                note = f"{counts['failed']} failed, {counts['quarantined']} quarantined, {report.bytes / max(elapsed, 1e-9) / 1e6:.3g} MB/s"
                if hasattr(progress, "note"):
                    progress.note = note
                progress(finished, total)
        report.processed = finished
        report.counts = manifest.counts()
        report.seconds = time.perf_counter() - start
        manifest.end_run(run_id)
        _write_report(out / "report.json", report)
    finally:
        manifest.close()
    return report


def _plan_jobs(plans: list[Any], manifest: Manifest, store: Any, pipeline: Pipeline, digest: str,
               report: CohortReport, retry_quarantined: bool, threads: int) -> list[Job]:
    """The jobs of the volumes the manifest does not hold as done (or as quarantined, unless
    `retry_quarantined`), each recorded as pending."""
    jobs = []
    for plan in plans:
        sources_digest, files, size = source_digest(s.path for s in plan.geometry.slices)
        previous = manifest.get(plan.key)
        if previous is not None and previous["source_digest"] == sources_digest and previous["pipeline"] == digest:
            if previous["status"] == "done" and _outputs_present(store, previous):
                report.skipped += 1
                continue
            if previous["status"] == "quarantined" and not retry_quarantined:
                report.failures.append((plan.key, previous["error_class"], previous["error_message"]))
                continue
        if previous is None or previous["status"] != "pending" or previous["source_digest"] != sources_digest:
            # new files, a new pipeline or an explicit retry: earlier crashes no longer count
            for marker in attempts_folder(store.path, plan.key).glob("*"):
                marker.unlink(missing_ok=True)
        manifest.put({"key": plan.key, "study_uid": plan.meta.get("study_instance_uid"),
                      "series_uid": plan.series_instance_uid, "files": files,
                      "slices": len(plan.geometry.slices), "status": "pending",
                      "source_digest": sources_digest, "pipeline": digest, "bytes": size})
        jobs.append(Job(plan.key, plan, str(store.path), pipeline, sources_digest, files, size, threads))
    return jobs


def _row_for_task_error(job: Job, exc: BaseException, resubmits: int, pipeline: Pipeline) -> dict[str, Any] | None:
    """The row of a task that raised instead of returning one, or None to run it again.

    Tasks catch every error of their own; what reaches here is the cluster's: ``KilledWorker``
    (the scheduler gave up on a task whose workers died), or the task's result failing to
    travel. A task that keeps killing workers past every retry is quarantined here too, in case
    its own count could not be kept (a store it cannot write to)."""
    from distributed.scheduler import KilledWorker

    kind = type(exc).__name__
    if isinstance(exc, KilledWorker):
        if resubmits < 2 * pipeline.faults.max_tries:
            return None
        status, message = "quarantined", f"its task ended {resubmits + 1} worker(s) in a row: {exc}"
    else:
        status, message = "failed", f"{kind}: {exc}"
    return {"key": job.key, "study_uid": job.plan.meta.get("study_instance_uid"),
            "series_uid": job.plan.series_instance_uid, "files": job.files,
            "slices": len(job.plan.geometry.slices), "status": status, "error_class": kind,
            "error_message": message, "source_digest": job.source_digest,
            "pipeline": pipeline.digest(), "bytes": job.bytes, "finished": time.time(),
            "tries": resubmits + 1}


def _write_report(path: Path, report: CohortReport) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

