"""The ``voxelflow`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import VoxelflowError

#: The requested work was done.
EXIT_OK = 0
#: Nothing was done: bad input, a missing store, no DICOM found, an OS error (named).
EXIT_ERROR = 2
#: Some inputs were ingested, others failed (each reported with its reason).
EXIT_PARTIAL = 3
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130
#: The reader of the output went away (``voxelflow info ... | head``), as a shell reports SIGPIPE.
EXIT_BROKEN_PIPE = 141

_EPILOG = """exit codes:
  0    the requested work was done
  2    nothing was done: bad input or parameters, a missing store, no DICOM found, an OS error
  3    partial: some inputs were done, the others are reported with their reasons
  130  interrupted
  141  the output's reader went away (a closed pipe)
Errors are one line naming the path or parameter and the cause; --debug shows the traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxelflow",
        description="DICOM decoding, ingest into zarr stores, NIfTI export, rendering and an HTTP service.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voxelflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress output (results and errors are still printed)")
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
        p.add_argument("--philips-scaling", choices=("precise", "display"), default="precise",
                       help="Philips MR values: precise floating-point values from the MR Scale Slope "
                            "(2005,100E) (default, as dcm2niix -p y) or display values (as dcm2niix -p n)")

    ingest = sub.add_parser("ingest", help="DICOM files/folders -> volumes in a zarr store")
    ingest.add_argument("sources", nargs="+", metavar="SRC",
                        help="DICOM files or folders (searched recursively; non-DICOM files are skipped)")
    ingest.add_argument("--store", required=True, metavar="DIR",
                        help="the zarr volume store to write into (created if missing)")
    ingest.add_argument("--overwrite", action="store_true", help="re-ingest volumes already stored")
    add_policy(ingest)

    info = sub.add_parser("info", help="list the volumes of a store, or describe one")
    info.add_argument("store", metavar="DIR", help="a volume store")
    info.add_argument("key", nargs="?", help="a volume's key: print its stored attributes as JSON")

    convert = sub.add_parser("convert", help="DICOM files/folders -> one NIfTI per volume")
    convert.add_argument("sources", nargs="+", metavar="SRC",
                         help="DICOM files or folders (searched recursively; non-DICOM files are skipped)")
    convert.add_argument("-o", "--out", required=True, metavar="OUTDIR",
                         help="folder for the NIfTI files (.nii.gz, RAS as NIfTI readers expect; created if missing)")
    convert.add_argument("--no-sidecar", dest="sidecar", action="store_false",
                         help="no BIDS side-car JSON beside each NIfTI (default: one, as dcm2niix writes)")
    convert.add_argument("--format", choices=("nifti",), default="nifti",
                         help="output format (default nifti: .nii.gz, stored values with the rescale as scl_slope/scl_inter)")
    add_policy(convert)

    serve = sub.add_parser(
        "serve",
        help="serve a store over HTTP: DICOMweb rendered resources, MPR / MIP, OpenAPI at /docs",
        description="Serve a volume store over HTTP (DICOMweb under /dicom-web, volume views under "
        "/volumes, the API document at /openapi.json and /docs). Binds 127.0.0.1 by default; any "
        "other address needs --token-file.",
    )
    serve.add_argument("--store", required=True, metavar="DIR",
                       help="the volume store (read-only, except for series retrieved from --upstream or received by STOW-RS)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8042, help="TCP port (default 8042)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument("--token-file", metavar="FILE",
                       help="file holding the bearer token clients must send (at least 16 characters)")
    serve.add_argument("--cors", metavar="ORIGIN", action="append", default=[],
                       help="allow this origin by CORS (repeatable; default: no CORS)")
    serve.add_argument("--cache-bytes", type=int, default=2 << 30,
                       help="volume data kept decoded in memory per process (default 2 GiB)")
    serve.add_argument("--render-threads", type=int, default=0,
                       help="renders running at once per process (default: the cores)")
    serve.add_argument("--queue", type=int, default=64,
                       help="renders waiting before requests are answered 503 (default 64)")
    serve.add_argument("--deadline", type=float, default=30.0,
                       help="seconds before a request is answered 504 (default 30)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                       help="server log detail (default info: one line per request)")
    serve.add_argument("--upstream", metavar="URL",
                       help="DICOMweb base URL of an archive (http://host:8042/dicom-web): a study or series "
                       "the store does not hold is retrieved from it, ingested, then answered")
    serve.add_argument("--upstream-auth-file", metavar="FILE",
                       help="file holding the upstream's token (sent as Bearer) or a whole Authorization value")
    serve.add_argument("--upstream-connect-timeout", type=float, default=5.0, metavar="S",
                       help="seconds to connect to the upstream (default 5)")
    serve.add_argument("--upstream-read-timeout", type=float, default=60.0, metavar="S",
                       help="seconds the upstream may stay silent during an answer (default 60)")
    serve.add_argument("--cache-size", type=int, default=0, metavar="BYTES",
                       help="bytes on disk the series retrieved from --upstream may hold; past it the least "
                       "recently used are removed (never one being read; retrieved again on demand). Default 0: no bound")
    serve.add_argument("--receive-idle", type=float, default=10.0, metavar="S",
                       help="seconds after the last STOW-RS instance of a series before it is ingested (default 10)")

    decode = sub.add_parser("decode", help="decode one DICOM file and print its array's shape, dtype and range")
    decode.add_argument("file", help="a DICOM file")
    decode.add_argument("--frames", type=int, nargs="*", help="frame numbers (0-based)")
    decode.add_argument("--backend", help="kernel backend")
    decode.add_argument("-o", "--output", metavar="FILE.npy", help="save the array as .npy")
    from . import cli_cohort, cli_pacs, cli_views

    cli_views.add_parsers(sub)  # window, resample, render
    cli_pacs.add_parsers(sub)  # pull, listen
    cli_cohort.add_parsers(sub)  # cohort
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except VoxelflowError as exc:
        if args.debug:
            raise
        print(f"voxelflow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader closed the pipe: nothing more can be shown, and Python's exit flush would
        # fail again on the closed stream
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"voxelflow {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if args.debug:
            raise
        print(f"voxelflow {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _os_error(exc: OSError) -> str:
    """`exc` as one line: the path(s) and the cause, as a shell tool says it."""
    where = exc.filename if exc.filename is not None else None
    cause = exc.strerror or str(exc)
    if where is None:
        return cause
    if exc.filename2 is not None:
        return f"{where} -> {exc.filename2}: {cause}"
    return f"{where}: {cause}"


def _run(args: argparse.Namespace) -> int:
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
    if args.command == "serve":
        return _serve(args)
    from . import cli_cohort, cli_pacs, cli_views

    if args.command in cli_views.COMMANDS:
        return cli_views.run(args)
    if args.command in cli_pacs.COMMANDS:
        return cli_pacs.run(args)
    if args.command in cli_cohort.COMMANDS:
        return cli_cohort.run(args)
    return EXIT_ERROR


def _ingest(args: argparse.Namespace) -> int:
    from .dicom.series import GeometryPolicy
    from .ingest import convert, ingest
    from .progress import terminal_reporter

    policy = GeometryPolicy(tilt=args.tilt, nonuniform=args.nonuniform, gaps=args.gaps)
    for source in args.sources:
        if not os.path.exists(source):
            raise FileNotFoundError(2, "no such file or folder", source)
    target = args.store if args.command == "ingest" else args.out
    if os.path.exists(target) and not os.path.isdir(target):
        raise FileExistsError(17, "exists and is not a folder", target)
    created = not os.path.exists(target)
    reporter = terminal_reporter(quiet=args.quiet)
    try:
        if args.command == "ingest":
            report = ingest(args.sources, args.store, policy=policy, overwrite=args.overwrite, reporter=reporter,
                            philips_scaling=args.philips_scaling)
            where = f"store {args.store}"
        else:
            report = convert(args.sources, args.out, policy=policy, reporter=reporter, sidecar=args.sidecar,
                             philips_scaling=args.philips_scaling)
            where = f"folder {args.out}"
            for v in report.volumes:
                print(f"wrote {v.output}")
    except BaseException:
        _remove_if_unused(target, created, args.command)
        raise
    if not report.volumes:
        _remove_if_unused(target, created, args.command)
    print(report.table())
    if not report.volumes and not report.failures:
        skipped = f" ({report.non_dicom} non-DICOM file(s) skipped)" if report.non_dicom else ""
        print(f"voxelflow {args.command}: error: no DICOM image found in {', '.join(args.sources)}{skipped}",
              file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.command}: {len(report.volumes)} volume(s) in {where}")
    if report.partial:
        return EXIT_PARTIAL if report.volumes else EXIT_ERROR
    return EXIT_OK


def _remove_if_unused(target: str, created: bool, command: str) -> None:
    """Remove the store or output folder this run created when it holds no volume: a failed
    command leaves nothing behind."""
    import shutil

    if not created or not os.path.isdir(target):
        return
    if command == "ingest":
        from .store import VolumeStore

        try:
            if VolumeStore(target, read_only=True).keys():
                return
        except VoxelflowError:
            return
    elif any(os.scandir(target)):
        return
    shutil.rmtree(target, ignore_errors=True)


def _info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .errors import StoreError
    from .store import VolumeStore

    if not os.path.isdir(args.store):
        raise FileNotFoundError(2, "no such folder", args.store)
    store = VolumeStore(args.store, read_only=True)
    if not (Path(args.store) / "zarr.json").is_file():
        raise StoreError(f"{args.store} is not a voxelflow store (no zarr.json)")
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


def _serve(args: argparse.Namespace) -> int:
    from .service import serve

    serve(
        args.store,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token_file=args.token_file,
        cors=tuple(args.cors),
        log_level=args.log_level,
        cache_bytes=args.cache_bytes,
        render_threads=args.render_threads,
        queue_size=args.queue,
        deadline_s=args.deadline,
        upstream=args.upstream,
        upstream_auth_file=os.path.abspath(args.upstream_auth_file) if args.upstream_auth_file else None,
        upstream_connect_timeout_s=args.upstream_connect_timeout,
        upstream_read_timeout_s=args.upstream_read_timeout,
        receive_idle_s=args.receive_idle,
        cache_size=args.cache_size,
    )
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
