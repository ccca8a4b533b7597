"""Ingest: DICOM files and folders -> geometry-checked volumes in a VolumeStore.

scan (headers only) -> plan (group, order, findings, policies) -> decode each volume into
memory -> write it atomically into the store. Every bad file and every series that cannot
become a volume is reported with its reason; good series are ingested regardless.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dicom.series import GeometryPolicy, build_volume, plan_volumes
from .errors import VoxelflowError
from .progress import Reporter

__all__ = ["IngestReport", "VolumeResult", "ingest", "convert"]

#: The scan index kept in a store's bookkeeping folder, reused by the next ingest into it.
SCAN_INDEX = "scan-index.jsonl.gz"


@dataclass(frozen=True)
class VolumeResult:
    """One volume of an ingest or convert run."""

    key: str
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]
    findings: list[str]
    status: str  # "written", "skipped" (already stored) or the output path for convert
    output: str = ""


@dataclass
class IngestReport:
    """What a run did: volumes written, files skipped, failures with reasons."""

    volumes: list[VolumeResult] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file or series, reason)
    non_dicom: int = 0
    seconds: float = 0.0

    @property
    def partial(self) -> bool:
        """Some input could not be ingested (the CLI exits with EXIT_PARTIAL)."""
        return bool(self.failures)

    def table(self) -> str:
        """The closing summary: one line per volume, then the failures."""
        # keys in full, however long (UIDs run to 64 characters): they are copied from here
        width = max([44, *(len(v.key) for v in self.volumes)])
        lines = [f"{'volume':<{width}} {'shape':<18} {'spacing (mm)':<20} {'status':<8} findings"]
        for v in self.volumes:
            shape = "x".join(str(n) for n in v.shape)
            spacing = "x".join(f"{s:.3g}" for s in v.spacing)
            lines.append(f"{v.key:<{width}} {shape:<18} {spacing:<20} {v.status:<8} {', '.join(v.findings) or '—'}")
        lines.append(
            f"{len(self.volumes)} volume(s), {len(self.failures)} failure(s), "
            f"{self.non_dicom} non-DICOM file(s) skipped, {self.seconds:.2f} s"
        )
        for what, reason in self.failures:
            lines.append(f"FAILED {what}: {reason}")
        return "\n".join(lines)


def _plans(
    sources: Sequence[str | Path],
    policy: GeometryPolicy | None,
    reporter: Reporter | None,
    report: IngestReport,
    index_path: Path | None = None,
    philips_scaling: str = "precise",
) -> list[Any]:
    from .dicom.scan import scan

    # a saved index lets a re-run over a large tree skip re-parsing unchanged files
    progress = None if reporter is None else reporter("scanning", "files")
    index = scan([str(s) for s in sources], progress=progress, previous=index_path)
    if index_path is not None:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        index.save(index_path)
    report.non_dicom = len(index.skipped)
    report.failures.extend((issue.path, issue.reason) for issue in index.errors)
    plans, failures = plan_volumes(index.rows, policy, philips_scaling=philips_scaling)
    report.failures.extend(failures)
    return plans


def ingest(
    sources: Sequence[str | Path] | str | Path,
    store: Any,
    *,
    policy: GeometryPolicy | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    backend: str | None = None,
    philips_scaling: str = "precise",
) -> IngestReport:
    """Ingest DICOM files/folders into `store` (a VolumeStore or a path to one).

    `reporter` (see :mod:`voxelflow.progress`) is given the scan ("scanning", files) and each
    volume's decode and write ("writing <key>", slices).

    `philips_scaling`: the values of Philips images with an MR Scale Slope (2005,100E):
    "precise" (default, dcm2niix's ``-p y``) or "display" (dcm2niix's ``-p n``); the volume's
    ``meta["philips_scaling"]`` and a finding say which.

    Returns
    -------
    IngestReport
        Volumes written or skipped (already stored), failures with reasons.
    """
    from .store import VolumeStore

    start = time.perf_counter()
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not isinstance(store, VolumeStore):
        store = VolumeStore(store)
    report = IngestReport()
    index_path = store.path / ".voxelflow" / SCAN_INDEX
    for plan in _plans(sources, policy, reporter, report, index_path, philips_scaling):
        if not overwrite and plan.key in store:
            report.volumes.append(_result(plan.key, plan.shape, plan.geometry.affine, plan.meta, "skipped"))
            continue
        try:
            # lazy: the store decodes the slices slab by slab while it compresses the last slab
            volume = build_volume(plan, backend=backend, lazy=True)
            progress = None if reporter is None else reporter(f"writing {plan.key}", "slices")
            store.write(plan.key, volume, overwrite=overwrite, progress=progress)
        except VoxelflowError as exc:
            report.failures.append((plan.key, str(exc)))
            continue
        report.volumes.append(_result(plan.key, volume.shape, volume.affine, volume.meta, "written"))
    report.seconds = time.perf_counter() - start
    return report


def convert(
    sources: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    policy: GeometryPolicy | None = None,
    reporter: Reporter | None = None,
    backend: str | None = None,
    sidecar: bool = True,
    philips_scaling: str = "precise",
) -> IngestReport:
    """Write one NIfTI file per volume into `out_dir` (4-D volumes as 4-D NIfTI), as dcm2niix does,
    each with its BIDS side-car JSON (same name, ``.json``; see :mod:`voxelflow.bids`) unless
    `sidecar` is False.

    `reporter` (see :mod:`voxelflow.progress`) is given the scan and each volume's write;
    `philips_scaling` is as for :func:`ingest`."""
    start = time.perf_counter()
    if isinstance(sources, (str, Path)):
        sources = [sources]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = IngestReport()
    for plan in _plans(sources, policy, reporter, report, philips_scaling=philips_scaling):
        try:
            name = nifti_name(plan)
            progress = None if reporter is None else reporter(f"writing {name}", "volumes")
            if progress is not None:
                progress(0, 1)
            volume = build_volume(plan, backend=backend)
            path = volume.to_nifti(out / name)
            if sidecar:
                write_sidecars(out / name, plan, volume)
            if progress is not None:
                progress(1, 1)
        except VoxelflowError as exc:
            report.failures.append((plan.key, str(exc)))
            continue
        report.volumes.append(_result(plan.key, volume.shape, volume.affine, volume.meta, "written", str(path)))
    report.seconds = time.perf_counter() - start
    return report


def write_sidecars(nifti: Path, plan: Any, volume: Any) -> None:
    """The BIDS JSON beside `nifti`, and for a diffusion series its .bval / .bvec."""
    from .bids import (
        diffusion_table,
        read_header,
        sidecar,
        slice_timing,
        write_bval_bvec,
        write_sidecar,
    )
    from .dicom.mosaic import tile_index
    from .dicom.stack import TEMPORAL_KEY_NAMES

    stem = str(nifti)[: -len(".nii.gz")]
    slices = plan.geometry.slices
    header = read_header(slices[0].path)  # once, for the side-car and its slice timing
    data = sidecar(header)
    if not volume.is_colour:
        nz = volume.shape[-3]
        at = TEMPORAL_KEY_NAMES.index("acquisition_time")
        times = [str(s.temporal_key[at]) if len(s.temporal_key) > at else "" for s in slices[:nz]]
        timing = slice_timing(header, [tile_index(s.tile, nz) for s in slices[:nz]], times)
        if timing is not None:
            data["SliceTiming"] = timing
    write_sidecar(stem + ".json", data)
    if len(volume.shape) == 4 and not volume.is_colour:
        nz = volume.shape[1]
        table = diffusion_table([(s.path, s.frame) for s in slices[::nz]])
        if table is not None:
            import nibabel as nib

            write_bval_bvec(stem, table, nib.load(nifti).affine)


def nifti_name(plan: Any) -> str:
    number = plan.meta.get("series_number")
    stem = f"series{int(number):03d}" if isinstance(number, (int, float)) and number == number else "series"
    return f"{stem}_{plan.key.replace('/', '_').replace('.', '-')}.nii.gz"


def _result(key: str, shape: tuple[int, ...], affine: Any, meta: dict[str, Any], status: str, output: str = "") -> VolumeResult:
    from .geometry import affine_spacing

    codes = [f["code"] for f in meta.get("findings", [])]
    return VolumeResult(key, tuple(shape), affine_spacing(affine), codes, status, output)  # type: ignore[arg-type]
