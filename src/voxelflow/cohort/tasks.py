"""One cohort task: one volume from its plan to its outputs, run on a worker.

A task is given a :class:`Job` (the volume's plan: headers and file paths, never pixels) and
returns its manifest row (a small dict): the scheduler never holds pixel data. Everything the
task writes appears complete or not at all: the store entry is published by an atomic rename
(:meth:`voxelflow.store.VolumeStore.write`), the NIfTI, thumbnail and QA record are written
under temporary names and renamed, and the client marks the volume done only after the task
has returned.

Faults, as the task sees them:

- bad input (a :class:`~voxelflow.errors.VoxelflowError`): the row says ``failed`` with the
  error's class and message; nothing is retried (the same bytes fail the same way).
- a transient I/O error (:func:`transient`): retried ``faults.io_retries`` times with
  exponential backoff, then ``failed``.
- a crash of the worker process (a segfault in a decoder, an out-of-memory kill): each task
  leaves a marker file while it runs (:func:`attempts_folder`); a task that starts and finds
  ``faults.max_tries`` markers of earlier runs that never finished returns ``quarantined``
  without touching the data. The count survives the client too: a resumed run remembers.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError, VoxelflowError
from .pipeline import Crop, Pipeline

__all__ = ["COHORT_DIR", "Job", "StepContext", "StepError", "process_volume", "transient"]

#: The folder of the store that holds the manifest, thumbnails, NIfTI files and QA records.
COHORT_DIR = "cohort"

#: errno values of I/O errors that may pass when tried again (network filesystems, busy devices).
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EIO", "EAGAIN", "EBUSY", "ETIMEDOUT", "ESTALE", "ECONNRESET",
                                      "ECONNABORTED", "ENETUNREACH", "EHOSTUNREACH", "EINTR", "ENOLCK")
    if hasattr(errno, name)
)


class StepError(ParameterError):
    """A pipeline step of your own returned something that is not a Volume."""


@dataclass(frozen=True)
class Job:
    """Everything one task needs, sent to a worker (a few kB: the plan's headers and paths)."""

    key: str
    plan: Any  # voxelflow.dicom.series.VolumePlan
    store: str
    pipeline: Pipeline
    source_digest: str
    files: int
    bytes: int
    threads: int = 1


@dataclass(frozen=True)
class StepContext:
    """What a step of your own is told besides the volume."""

    key: str
    meta: Mapping[str, Any]
    files: tuple[str, ...]
    out: Path  # the store's cohort folder
    io_try: int = 0  # 0, then 1, 2 ... when a transient I/O error made the task start over
    extra: dict[str, Any] = field(default_factory=dict)


def transient(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is an I/O error that may pass."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, (TimeoutError, ConnectionError)):
            return True
        if isinstance(current, OSError) and current.errno in TRANSIENT_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def attempts_folder(store: str | Path, key: str) -> Path:
    from ..store.layout import key_digest

    return Path(store) / COHORT_DIR / "attempts" / key_digest(key)


def output_path(store: str | Path, kind: str, key: str, suffix: str) -> Path:
    """Where the volume `key` puts its output of `kind` (thumbnails, qa, nifti)."""
    return Path(store) / COHORT_DIR / kind / f"{key}{suffix}"


def process_volume(job: Job) -> dict[str, Any]:
    """Run `job` (on a worker); return its manifest row."""
    started = time.time()
    clock = time.perf_counter()
    row: dict[str, Any] = {
        "key": job.key,
        "study_uid": job.plan.meta.get("study_instance_uid"),
        "series_uid": job.plan.series_instance_uid,
        "files": job.files,
        "slices": len(job.plan.geometry.slices),
        "source_digest": job.source_digest,
        "pipeline": job.pipeline.digest(),
        "bytes": job.bytes,
        "started": started,
        "worker": os.environ.get("DASK_WORKER_NAME") or f"pid {os.getpid()}",
    }
    faults = job.pipeline.faults
    attempts = attempts_folder(job.store, job.key)
    attempts.mkdir(parents=True, exist_ok=True)
    ended = sum(1 for _ in attempts.iterdir())
    row["tries"] = ended
    if ended >= faults.max_tries:
        return _finish(row, clock, "quarantined", "WorkerDied",
                       f"its task ended the worker process {ended} time(s) (a crash in a decoder, or a kill "
                       f"for memory); quarantined at faults.max_tries = {faults.max_tries}")
    marker = attempts / f"{uuid.uuid4().hex}.running"
    marker.touch()
    try:
        return _run(job, row, clock)
    finally:
        marker.unlink(missing_ok=True)
        try:
            attempts.rmdir()  # empty unless a crash is being counted
        except OSError:
            pass


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Undo, for this worker process, the allocator setting dask's nanny starts workers with.

    The nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` so that idle workers give memory back.
    An explicit trim threshold also freezes glibc's mmap threshold at 128 kB, so every array
    above that is a fresh mmap, page-faulted in and unmapped when freed. A task allocates
    megabyte slabs by the hundred. With the setting, the same 40 volumes took 1.3x as long
    in one process as without it (3.7 s against 2.8 s, the best of 4 runs each). Raising both
    thresholds to glibc's maximum keeps slabs in the heap; peak memory stays bounded by the
    largest slab."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: glibc's largest on 64-bit
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass


def _run(job: Job, row: dict[str, Any], clock: float) -> dict[str, Any]:
    from .._threads import set_num_threads

    _tune_malloc()
    set_num_threads(job.threads)
    faults = job.pipeline.faults
    for io_try in range(faults.io_retries + 1):
        row["io_retries"] = io_try
        try:
            row.update(_make(job, io_try))
            return _finish(row, clock, "done")
        except Exception as exc:  # noqa: BLE001 - every error becomes the row: the run goes on
            if transient(exc) and io_try < faults.io_retries:
                time.sleep(faults.io_backoff_s * 2**io_try)
                continue
            kind = type(exc).__name__
            message = str(exc) if isinstance(exc, VoxelflowError) else f"{kind}: {exc}"
            return _finish(row, clock, "failed", kind, message)
    raise AssertionError("unreachable")  # pragma: no cover


def _finish(row: dict[str, Any], clock: float, status: str, kind: str | None = None, message: str | None = None) -> dict[str, Any]:
    row.update(status=status, error_class=kind, error_message=message,
               seconds=time.perf_counter() - clock, finished=time.time(),
               peak_rss=peak_rss())
    return row


def peak_rss() -> int:
    """This process's peak resident bytes since it started.

    Linux keeps ``ru_maxrss`` across ``execve``, so a worker spawned from a big parent (a test
    runner that has grown to gigabytes) would report the parent's peak; ``VmHWM`` belongs to the
    process's own address space and starts afresh at exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _make(job: Job, io_try: int) -> dict[str, Any]:
    from ..dicom.series import build_volume
    from ..store import VolumeStore

    pipeline = job.pipeline
    plan = job.plan
    in_memory = pipeline.resample is not None or pipeline.reorient or pipeline.crop or pipeline.steps
    # lazy unless a step needs the whole array: the store decodes and writes slab by slab
    volume = build_volume(plan, lazy=not in_memory)
    notes: list[dict[str, Any]] = []
    if pipeline.resample is not None:
        from ..resampling import resample

        r = pipeline.resample
        volume = resample(volume, spacing=r.spacing, interp=r.interp, anti_alias=r.anti_alias)
    if pipeline.reorient:
        from ..resampling import reorient

        volume = reorient(volume, pipeline.reorient)
    if pipeline.crop is not None:
        volume, note = crop(volume, pipeline.crop)
        if note is not None:
            notes.append(note)
    if pipeline.steps:
        context = StepContext(job.key, dict(plan.meta), tuple(sorted({s.path for s in plan.geometry.slices})),
                              Path(job.store) / COHORT_DIR, io_try)
        for step in pipeline.steps:
            result = step.resolve()(volume, context, **step.arguments)
            if not _is_volume(result):
                raise StepError(f"step {step.call}: returned {type(result).__name__}, not a Volume")
            volume = result
    stamp = {"pipeline": pipeline.digest(), "source_digest": job.source_digest}
    meta = dict(volume.meta)
    if notes:
        meta["findings"] = [*meta.get("findings", []), *notes]
    meta["cohort"] = stamp
    volume = type(volume)(volume.array, volume.affine, meta)

    store = VolumeStore(job.store)
    # an earlier try of this volume may have published it and died before reporting: reuse it
    if not (job.key in store and store.open(job.key).meta.get("cohort") == stamp):
        store.write(job.key, volume, overwrite=True, compressor=pipeline.ingest.compressor,
                    pyramid=pipeline.ingest.pyramid)
    stored = store.open(job.key)
    outputs: dict[str, str] = {"store": job.key}
    root = Path(job.store)
    if pipeline.outputs.thumbnail:
        path = write_thumbnail(stored, output_path(root, "thumbnails", job.key, ".png"), pipeline.outputs.thumbnail_size)
        outputs["thumbnail"] = str(path.relative_to(root))
    if pipeline.outputs.nifti:
        outputs["nifti"] = str(_write_nifti(stored, plan, root).relative_to(root))
    findings = list(stored.meta.get("findings", []))
    qa = qa_record(job, stored, findings)
    outputs["qa"] = str(_write_json(output_path(root, "qa", job.key, ".json"), qa).relative_to(root))
    return {"shape": list(stored.shape), "findings": findings, "outputs": outputs}


def _is_volume(value: Any) -> bool:
    from ..volume import Volume

    return isinstance(value, Volume)


def crop(volume: Any, spec: Crop) -> tuple[Any, dict[str, Any] | None]:
    """`volume` cut to `spec`'s box (its affine moved with it), and a finding when the
    threshold kept the whole volume."""
    shape = volume.spatial_shape
    note = None
    if spec.box is not None:
        box = [(min(a, n), min(b, n)) for (a, b), n in zip(spec.box, shape)]
        empty = [i for i, (a, b) in enumerate(box) if a >= b]
        if empty:
            raise ParameterError(f"crop: box {list(spec.box)} lies outside the volume's shape {tuple(shape)} "
                                 f"on axis {'zyx'[empty[0]]}")
    else:
        box, note = _foreground_box(volume, spec)
    region = tuple(slice(a, b) for a, b in box)
    lead = (slice(None),) * (len(volume.shape) - 3 - int(volume.is_colour))
    array = np.asarray(volume.to_numpy()[lead + region])  # colour samples follow, whole
    shift = np.eye(4)
    shift[:3, 3] = [a for a, _ in box]
    from ..volume import Volume

    return Volume(array, volume.affine @ shift, dict(volume.meta)), note


def _foreground_box(volume: Any, spec: Crop) -> tuple[list[tuple[int, int]], dict[str, Any] | None]:
    data = volume.to_numpy()
    meta = volume.meta
    threshold = float(spec.threshold)  # type: ignore[arg-type]
    rescale = meta.get("rescale")
    if rescale and meta.get("values", "stored") == "stored":
        slope, intercept = float(rescale.get("slope", 1.0)), float(rescale.get("intercept", 0.0))
        above = (data.astype(np.float64) * slope + intercept) > threshold
    else:
        above = data > threshold
    if volume.is_colour:
        above = above.any(axis=-1)  # a voxel is foreground where a sample is
    if above.ndim > 3:
        above = above.reshape((-1, *above.shape[-3:])).any(axis=0)
    shape = above.shape
    if not above.any():
        note = {"code": "crop_kept_all", "threshold": threshold,
                "message": f"crop: no voxel above {threshold:g}; the whole volume is kept"}
        return [(0, n) for n in shape], note
    spacing = volume.spacing
    box = []
    for axis in range(3):
        hit = np.flatnonzero(above.any(axis=tuple(a for a in range(3) if a != axis)))
        grow = int(np.ceil(spec.margin_mm / spacing[axis])) if spec.margin_mm else 0
        box.append((max(0, int(hit[0]) - grow), min(shape[axis], int(hit[-1]) + 1 + grow)))
    return box, None


def _view_axes(affine: np.ndarray) -> tuple[int, int, int, bool, bool]:
    """For the anterior view of a volume with `affine`: the array axis the rays run along (the
    one nearest anterior-posterior), the axis shown as rows (nearest superior-inferior), the
    one shown as columns, and whether rows and columns must be flipped so that superior is up
    and the patient's right on the image's left (LPS: +z superior, +x left)."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    ray = int(np.argmax(np.abs(directions[1])))
    rest = [a for a in range(3) if a != ray]
    rows = max(rest, key=lambda a: abs(directions[2, a]))
    cols = next(a for a in rest if a != rows)
    return ray, rows, cols, bool(directions[2, rows] > 0), bool(directions[0, cols] < 0)


def write_thumbnail(volume: Any, path: Path, size: int) -> Path:
    """The anterior MIP of `volume` (its first time point) as an 8-bit PNG of at most `size`
    pixels a side, in square pixels, auto-windowed (1st to 99th percentile) through the volume's display pipeline.
    A colour volume is shown by its middle slice across the same view, in its own RGB (a
    maximum of colours, or a window of them, means nothing).

    The rays run along the array axis nearest anterior-posterior (exact for axial, coronal and
    sagittal acquisitions; an oblique one is shown along its nearest axis), from the coarsest
    pyramid level that still has `size` voxels across: a thumbnail costs a fraction of the
    volume's write."""
    from PIL import Image

    from ..display import AutoWindow, DisplayPipeline, pipeline_for, window
    from ..render import save_image
    from ..render.images import write_file

    ray, rows, cols, flip_rows, flip_cols = _view_axes(np.asarray(volume.affine))
    source = getattr(volume, "source", None)
    chosen = volume
    if source is not None:
        for level in range(1, source.levels):
            coarser = source.open(level)
            if max(coarser.shape[-3:][rows], coarser.shape[-3:][cols]) < size:
                break
            chosen = coarser
    kept = [a for a in range(3) if a != ray]
    if volume.is_colour:
        middle = (slice(None),) * ray + (volume.spatial_shape[ray] // 2,)
        mip = np.asarray(chosen.array[middle], dtype=np.uint8)  # (rows or cols, ..., 3)
        if kept.index(rows) == 1:
            mip = mip.transpose(1, 0, 2)
    else:
        data = np.asarray(chosen.array[(0,) * (len(chosen.shape) - 3)])
        pipeline = pipeline_for(volume) or DisplayPipeline()
        # the MIP of modality values: stored values under a negative rescale slope reverse order
        slope = getattr(pipeline.modality, "slope", 1.0)
        mip = data.min(axis=ray) if slope < 0 else data.max(axis=ray)
        if kept.index(rows) == 1:
            mip = mip.T
    mip = mip[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]
    image = mip if volume.is_colour else window(mip, pipeline.with_voi(AutoWindow(method="percentile")), bits=8)
    spacing = chosen.spacing
    extent = np.array([mip.shape[0] * spacing[rows], mip.shape[1] * spacing[cols]])
    # square pixels, never finer than the finer of the two axes (a thumbnail does not enlarge)
    pixel = max(float(extent.max()) / size, min(spacing[rows], spacing[cols]))
    shape = np.clip(np.rint(extent / pixel), 1, size).astype(int)
    if tuple(shape) != image.shape[:2]:
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
            (int(shape[1]), int(shape[0])), Image.Resampling.BOX if shape.max() <= max(image.shape) else Image.Resampling.BILINEAR))
    path.parent.mkdir(parents=True, exist_ok=True)
    if volume.is_colour:
        return write_file(path, lambda tmp: Image.fromarray(np.ascontiguousarray(image), "RGB").save(tmp, format="PNG"))
    return save_image(image, path, bits=8)  # type: ignore[no-any-return]


def _write_nifti(volume: Any, plan: Any, root: Path) -> Path:
    from ..ingest import nifti_name, write_sidecars

    folder = root / COHORT_DIR / "nifti"
    folder.mkdir(parents=True, exist_ok=True)
    path = volume.to_nifti(folder / nifti_name(plan))
    write_sidecars(path, plan, volume)
    return path  # type: ignore[no-any-return]


def qa_record(job: Job, volume: Any, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The QA record of one volume: identity, geometry and the findings with their numbers."""
    from .._version import __version__
    from ..geometry import affine_spacing

    meta = job.plan.meta
    return {
        "key": job.key,
        "study_instance_uid": meta.get("study_instance_uid"),
        "series_instance_uid": job.plan.series_instance_uid,
        "series_number": meta.get("series_number"),
        "modality": meta.get("modality"),
        "files": job.files,
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "spacing_mm": list(affine_spacing(volume.affine)),
        "affine": np.asarray(volume.affine).tolist(),
        "findings": findings,
        "pipeline": job.pipeline.digest(),
        "source_digest": job.source_digest,
        "voxelflow": __version__,
    }


def _write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=1, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
