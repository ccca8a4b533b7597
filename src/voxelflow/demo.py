"""``voxelflow demo``: the main job on embedded defaults, end to end, with timings.

Writes a phantom CT series with pydicom, decodes it file by file into one preallocated
volume, checks it against pydicom, times pydicom on the same files, writes a PNG of the
middle slice under three CT presets so a person can look at the result, and ingests the series
into a local zarr store, printing the summary table, resamples the stored volume to
isotropic spacing, reporting the grids before and after, and renders the stored volume (axial,
coronal and sagittal MPRs, an oblique 20 mm slab MIP and a rotating MIP) into image files,
timing each render.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

__all__ = ["run_demo"]

#: views of the rotating MIP the demo writes (one every 15 degrees).
DEMO_VIEWS = 24


def run_demo(*, out: str | None = None, slices: int = 120, size: int = 256) -> int:
    """Run the demo; return the process exit code."""
    import pydicom

    from . import get_num_threads
    from .dicom.decode import decode
    from .testing import write_series

    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="voxelflow-demo-"))
    series_dir = root / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    print(f"voxelflow demo: output folder {root}")

    t0 = time.perf_counter()
    info = write_series(series_dir, shape=(slices, size, size), spacing=(1.25, 0.7, 0.7), modality="CT")
    t_write = time.perf_counter() - t0
    print(f"  wrote a {slices}-slice {size}x{size} CT phantom series ({len(info.paths)} files) in {t_write:.2f} s")

    t0 = time.perf_counter()
    volume = np.empty((len(info.paths), size, size), info.volume.dtype)
    for k, path in enumerate(info.paths):
        decode(path, out=volume[k])
    t_vf = time.perf_counter() - t0

    t0 = time.perf_counter()
    reference = np.stack([pydicom.dcmread(p).pixel_array for p in info.paths])
    t_pd = time.perf_counter() - t0

    same = np.array_equal(volume, reference)
    mib = volume.nbytes / 2**20
    print(
        f"  decoded {len(info.paths)} files into one {volume.shape} {volume.dtype} volume "
        f"({mib:.1f} MiB) in {t_vf:.3f} s with {get_num_threads()} thread(s); "
        f"pydicom dcmread+pixel_array+stack: {t_pd:.3f} s ({t_pd / t_vf:.1f}x slower)"
    )
    print(f"  voxels identical to pydicom's: {'yes' if same else 'NO'}")

    from .display import write_preset_pngs

    # the slice Plane.axial(stored) shows too: the voxel centre at or below the middle
    mid = (len(info.paths) - 1) // 2
    t0 = time.perf_counter()
    pngs = write_preset_pngs(volume[mid], root, rescale=tuple(info.rescale[mid]))
    t_png = time.perf_counter() - t0
    print(f"  windowed slice {mid} with the lung, soft tissue and bone presets in {t_png:.3f} s:")
    for png in pngs:
        print(f"    {png}")

    from .ingest import ingest

    store_dir = root / "store"
    report = ingest(series_dir, store_dir)
    print(f"  ingested the series into the zarr store {store_dir} in {report.seconds:.2f} s:")
    print("    " + report.table().replace("\n", "\n    "))

    from .resampling import resample
    from .store import VolumeStore
    from .volume import Volume

    if report.volumes:
        stored = VolumeStore(store_dir).open(report.volumes[0].key)
        t0 = time.perf_counter()
        # a stored input resamples lazily (dask, chunk by chunk): computed here, so the time
        # is the resampling's, not the building of its task graph
        iso = resample(stored, spacing=min(stored.spacing))
        iso = Volume(iso.to_numpy(), iso.affine, iso.meta)
        t_iso = time.perf_counter() - t0

        def grid(v: Volume) -> str:
            shape = "x".join(str(n) for n in v.shape)
            spacing = "x".join(f"{s:.3g}" for s in v.spacing)
            return f"{shape} voxels at {spacing} mm"

        print(f"  resampled to isotropic spacing in {t_iso:.2f} s (the stored volume, computed: "
              f"{iso.array.nbytes / 2**20:.1f} MiB): {grid(stored)} -> {grid(iso)}")
        _render_views(stored, root)
    print(f"done: series in {series_dir}, images in {root}, store in {store_dir}")
    if out is None:
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        print(f"  {size / 2**20:.1f} MiB in a temporary folder; remove it with: rm -r {root} "
              "(or give --out DIR next time)")
    if report.volumes:
        key = report.volumes[0].key
        print("serve the store over HTTP (DICOMweb, MPR / MIP; API at /docs):")
        print(f"  voxelflow serve --store {store_dir}")
        print("  open http://127.0.0.1:8042/viewer in a browser (3-up MPR, oblique slab MIP)")
        print(f"  curl -o mip.jpg 'http://127.0.0.1:8042/volumes/{quote(key, safe='')}/mpr?normal=0,0.87,0.5&slab=20&mode=mip'")
    return 0 if same and not report.partial else 1


def _render_views(stored: Any, root: Path) -> None:
    """Render the stored volume (read chunk by chunk from the store) as image files: the three
    standard MPRs and an oblique 20 mm slab MIP windowed by the series' own first window, and a
    rotating MIP in the bone window (a MIP's brightest voxels are bone and contrast)."""
    from .display import DisplayPipeline, preset
    from .render import Plane, Slab, mpr, rotating_projection, save_image

    views = {
        "mpr_axial": (Plane.axial(stored), None),
        "mpr_coronal": (Plane.coronal(stored), None),
        "mpr_sagittal": (Plane.sagittal(stored), None),
        # tilted 30 degrees from coronal about the left-right axis, through the volume's centre
        "slab_mip_oblique_20mm": (
            Plane.oblique(stored, (0.0, np.cos(np.radians(30.0)), np.sin(np.radians(30.0)))),
            Slab(20.0, "max"),
        ),
    }
    print("  rendered the stored volume with its own window:")
    for name, (plane, slab) in views.items():
        t0 = time.perf_counter()
        image = mpr(stored, plane, slab=slab, display=True)
        t_render = time.perf_counter() - t0
        path = save_image(image, root / f"{name}.png")
        rows, cols = image.shape
        print(f"    {path} ({rows}x{cols}) in {t_render * 1000:.1f} ms")
    bone = DisplayPipeline(voi=preset("bone"), bits=8)
    path = root / "rotating_mip.gif"
    # 2 mm pixels: a preview turntable, rendered from a coarser pyramid level where there is one
    t0 = time.perf_counter()
    frames = rotating_projection(stored, DEMO_VIEWS, spacing=2.0, display=bone, path=path, fps=12)
    t_render = time.perf_counter() - t0
    n, rows, cols = frames.shape
    print(f"  rotating MIP, {n} views of {rows}x{cols} in the bone window, in {t_render:.2f} s:")
    print(f"    {path}")
