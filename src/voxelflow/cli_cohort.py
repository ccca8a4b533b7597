"""The ``voxelflow cohort`` command: a cohort on dask.distributed, a local cluster by default.

Thin: it connects to the scheduler given (or starts a local cluster of worker processes on
127.0.0.1), calls :func:`voxelflow.cohort.run`, and prints the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .errors import ParameterError

__all__ = ["COMMANDS", "add_parsers", "run"]

#: The commands this module adds to ``voxelflow``.
COMMANDS = ("cohort",)


def add_parsers(sub: Any) -> None:
    cohort = sub.add_parser(
        "cohort",
        help="process a cohort (thousands of series) on dask.distributed, resumable",
        description="Scan the sources once, then process every volume on a dask.distributed cluster: "
        "ingest into the store, the pipeline's optional resampling / reorientation / cropping, a MIP "
        "thumbnail, a QA record and optionally NIfTI. Every volume's outcome is a row of the manifest "
        "STORE/cohort/manifest.sqlite; running the command again does only what is not done, also after "
        "a kill. A corrupt file fails alone; a volume whose task crashes its worker is retried, then "
        "quarantined. Exit code 3 when some volume or file failed.",
    )
    cohort.add_argument("sources", nargs="+", metavar="SRC",
                        help="DICOM files or folders (searched recursively; non-DICOM files are skipped)")
    cohort.add_argument("--store", required=True, metavar="OUT", help="the output store (created if missing)")
    where = cohort.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running dask scheduler (tcp://HOST:8786, or a scheduler file's path); "
                       "default: start a local cluster")
    where.add_argument("--workers", type=int, metavar="N",
                       help="worker processes of the local cluster (default: the CPUs available)")
    cohort.add_argument("--threads-per-worker", type=int, default=1, metavar="N",
                        help="tasks each local worker runs at once (default 1: a crash takes one volume with it)")
    cohort.add_argument("--memory-limit", default="auto", metavar="BYTES",
                        help="memory per local worker before it is restarted, e.g. 4GiB "
                        "(default auto: the machine's memory shared among the workers)")
    cohort.add_argument("--pipeline", metavar="FILE",
                        help="a YAML or JSON pipeline (see docs/scaling.md; default: ingest, thumbnails, QA records)")
    cohort.add_argument("--retry-quarantined", action="store_true",
                        help="run the quarantined volumes again (default: they stay quarantined until their files change)")
    cohort.add_argument("--dashboard", default="127.0.0.1:8787", metavar="HOST:PORT",
                        help="where the local cluster's dashboard listens (default 127.0.0.1:8787; "
                        "another port if that one is taken)")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run(args: argparse.Namespace) -> int:
    """Run ``voxelflow cohort``; returns the exit code."""
    import logging

    from distributed import Client, LocalCluster

    from .cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, _remove_if_unused
    from .cohort import load_pipeline
    from .cohort import run as run_cohort
    from .progress import terminal_reporter

    for source in args.sources:
        if not os.path.exists(source):
            raise FileNotFoundError(2, "no such file or folder", source)
    if os.path.exists(args.store) and not os.path.isdir(args.store):
        raise FileExistsError(17, "exists and is not a folder", args.store)
    pipeline = load_pipeline(args.pipeline)  # a bad file fails here, before any cluster starts
    pipeline.check_steps()
    for name in ("workers", "threads_per_worker"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    reporter = terminal_reporter(quiet=args.quiet)
    created = not os.path.exists(args.store)
    cluster = None
    if args.scheduler:
        if os.path.isfile(args.scheduler):
            client = Client(scheduler_file=args.scheduler, timeout="30s")
        else:
            client = Client(args.scheduler, timeout="30s")
        threads = 1
    else:
        workers = args.workers or _cpus()
        # 127.0.0.1 only: the scheduler, the workers and the dashboard listen on loopback
        cluster = LocalCluster(n_workers=workers, threads_per_worker=args.threads_per_worker, processes=True,
                               host="127.0.0.1", dashboard_address=args.dashboard, memory_limit=args.memory_limit,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        # the cores not taken by tasks go to each task's kernels (compression, decoding)
        threads = max(1, _cpus() // (workers * args.threads_per_worker))
    try:
        if not args.quiet:
            print(f"cohort: scheduler {client.scheduler.address}, dashboard {client.dashboard_link}", file=sys.stderr)
        report = run_cohort(args.sources, args.store, pipeline, client, reporter=reporter,
                            retry_quarantined=args.retry_quarantined, threads_per_task=threads)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(report.table())
    if report.counts.get("done", 0) == 0 and not report.failures:
        _remove_if_unused(args.store, created, "ingest")  # a run that found nothing leaves nothing
        print(f"voxelflow cohort: error: no DICOM image found in {', '.join(args.sources)}", file=sys.stderr)
        return EXIT_ERROR
    if report.partial:
        return EXIT_PARTIAL if report.counts.get("done", 0) else EXIT_ERROR
    return EXIT_OK
