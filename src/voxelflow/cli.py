"""The ``voxelflow`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import VoxelflowError

EXIT_ERROR = 2
#: Some inputs were ingested, others failed (each reported with its reason).
EXIT_PARTIAL = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxelflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"voxelflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="write a phantom CT series, decode it, write a PNG, report timings")
    demo.add_argument("--out", metavar="DIR", help="output folder (default: a new temporary folder)")
    demo.add_argument("--slices", type=int, default=120, help="number of slices (default 120)")
    demo.add_argument("--size", type=int, default=256, help="rows and columns (default 256)")

    bench = sub.add_parser("bench", help="run the benchmark suites and print one comparison table")
    bench.add_argument("--quick", action="store_true", help="small inputs, few rounds")
    bench.add_argument("--json", metavar="FILE", help="also write pytest-benchmark's JSON report here")
    bench.add_argument("-k", metavar="EXPR", help="only benchmarks matching this pytest -k expression")
    bench.add_argument("--backend", help="only this kernel backend (cython, numba, reference)")

    def add_policy(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tilt", choices=("keep", "correct"), default="keep",
                       help="gantry tilt: keep the sheared affine (default) or resample in-plane")
        p.add_argument("--nonuniform", choices=("refuse", "resample"), default="refuse",
                       help="non-uniform slice spacing: refuse the series (default) or resample")
        p.add_argument("--gaps", choices=("split", "fill"), default="split",
                       help="missing slices: split into volumes (default) or interpolate them")

    ingest = sub.add_parser("ingest", help="DICOM files/folders -> volumes in a zarr store")
    ingest.add_argument("sources", nargs="+", metavar="SRC")
    ingest.add_argument("--store", required=True, metavar="DIR")
    ingest.add_argument("--overwrite", action="store_true", help="re-ingest volumes already stored")
    add_policy(ingest)

    info = sub.add_parser("info", help="list the volumes of a store, or describe one")
    info.add_argument("store", metavar="DIR")
    info.add_argument("key", nargs="?")

    convert = sub.add_parser("convert", help="DICOM files/folders -> one NIfTI per volume")
    convert.add_argument("sources", nargs="+", metavar="SRC")
    convert.add_argument("-o", "--out", required=True, metavar="OUTDIR")
    convert.add_argument("--format", choices=("nifti",), default="nifti")
    add_policy(convert)

    decode = sub.add_parser("decode", help="decode one DICOM file and print its array's shape, dtype and range")
    decode.add_argument("file")
    decode.add_argument("--frames", type=int, nargs="*", help="frame numbers (0-based)")
    decode.add_argument("--backend", help="kernel backend")
    decode.add_argument("-o", "--output", metavar="FILE.npy", help="save the array as .npy")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(out=args.out, slices=args.slices, size=args.size)
        if args.command == "bench":
            from .bench import run

            return run(quick=args.quick, json_path=args.json, select=args.k, backend=args.backend)
        if args.command == "decode":
            return _decode(args)
        if args.command in ("ingest", "convert"):
            return _ingest(args)
        if args.command == "info":
            return _info(args)
    except VoxelflowError as exc:
        print(f"voxelflow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR


def _ingest(args: argparse.Namespace) -> int:
    from .dicom.series import GeometryPolicy
    from .ingest import convert, ingest, progress_bar

    policy = GeometryPolicy(tilt=args.tilt, nonuniform=args.nonuniform, gaps=args.gaps)
    bar = progress_bar()
    if args.command == "ingest":
        report = ingest(args.sources, args.store, policy=policy, overwrite=args.overwrite, progress=bar)
        where = f"store {args.store}"
    else:
        report = convert(args.sources, args.out, policy=policy, progress=bar)
        where = f"folder {args.out}"
        for v in report.volumes:
            print(f"wrote {v.output}")
    print(report.table())
    print(f"{args.command}: {len(report.volumes)} volume(s) in {where}")
    if report.partial:
        return EXIT_PARTIAL if report.volumes else EXIT_ERROR
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from .store import VolumeStore

    store = VolumeStore(args.store)
    if args.key is None:
        keys = list(store.keys())
        for key in keys:
            volume = store.open(key)
            codes = [f.get("code") for f in volume.meta.get("findings", [])]
            spacing = "x".join(f"{s:.3g}" for s in volume.spacing)
            print(f"{key}  {'x'.join(map(str, volume.shape))}  {volume.dtype}  {spacing} mm  {', '.join(codes) or '—'}")
        print(f"{len(keys)} volume(s) in {args.store}")
        return 0
    print(json.dumps(store.info(args.key), indent=2, default=str))
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from .dicom.decode import decode

    arr = decode(args.file, frames=args.frames or None, backend=args.backend)
    lo, hi = (arr.min(), arr.max()) if arr.size else (None, None)
    print(f"{args.file}: shape {arr.shape}, dtype {arr.dtype}, values {lo}..{hi}")
    if args.output:
        np.save(args.output, arr)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
