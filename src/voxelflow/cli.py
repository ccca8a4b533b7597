"""The ``voxelflow`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import VoxelflowError

EXIT_ERROR = 2


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
    except VoxelflowError as exc:
        print(f"voxelflow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR


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
