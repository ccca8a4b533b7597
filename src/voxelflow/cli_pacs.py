"""The ``voxelflow`` commands that talk to an archive: ``pull`` (DICOMweb) and ``listen`` (DIMSE).

Both are thin: ``pull`` calls :func:`voxelflow.service.upstream.fetch_series` for each series
asked for, ``listen`` runs :func:`voxelflow.service.dimse.listen` until interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import ParameterError, VoxelflowError

__all__ = ["COMMANDS", "add_parsers", "run"]

#: The commands this module adds to ``voxelflow``.
COMMANDS = ("pull", "listen")


def add_parsers(sub: Any) -> None:
    pull = sub.add_parser(
        "pull",
        help="retrieve a study or series from a DICOMweb archive into a store",
        description="Retrieve a study (every series) or one series from a DICOMweb archive "
        "(QIDO-RS to list it, WADO-RS to fetch it in its stored transfer syntax) and ingest it "
        "into a store. An interrupted pull keeps the instances it fetched and fetches only the "
        "rest when run again; a series is ingested only once complete.",
    )
    pull.add_argument("url", help="DICOMweb base URL (http://host:8042/dicom-web)")
    pull.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    pull.add_argument("--series", metavar="UID", help="Series Instance UID (default: every series of the study)")
    pull.add_argument("--store", required=True, metavar="DIR", help="the volume store (created if missing)")
    pull.add_argument("--auth-file", metavar="FILE",
                      help="file holding the archive's token (sent as Bearer) or a whole Authorization value")
    pull.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                      help="seconds to connect to the archive (default 5)")
    pull.add_argument("--read-timeout", type=float, default=60.0, metavar="S",
                      help="seconds the archive may stay silent during an answer (default 60)")

    listen = sub.add_parser(
        "listen",
        help="receive series by DICOM C-STORE (a storage SCP) into a store",
        description="Run a DICOM storage SCP (C-STORE and C-ECHO): an archive routes series to it; "
        "each instance is on disk before it is acknowledged, and each series is ingested once no "
        "instance of it has arrived for --idle seconds. A malformed instance is refused with a "
        "failure status; the rest are kept. Runs until Ctrl-C / SIGTERM.",
    )
    listen.add_argument("--store", required=True, metavar="DIR", help="the volume store (created if missing)")
    listen.add_argument("--aet", default="VOXELFLOW", help="this node's AE title (default VOXELFLOW)")
    listen.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    listen.add_argument("--port", type=int, default=11112, help="TCP port (default 11112)")
    listen.add_argument("--idle", type=float, default=10.0, metavar="S",
                        help="seconds after a series' last instance before it is ingested (default 10)")


def run(args: argparse.Namespace) -> int:
    """Run the command `args` names (one of :data:`COMMANDS`); returns the exit code."""
    if args.command == "pull":
        return _pull(args)
    import logging

    from .service.dimse import listen

    # what was received and ingested is the listener's only output: the log on standard error
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"listen: C-STORE / C-ECHO as {args.aet} on {args.host}:{args.port}, into store {args.store}; "
          f"each series ingested {args.idle:g} s after its last instance (Ctrl-C stops)", file=sys.stderr)
    listen(args.store, aet=args.aet, host=args.host, port=args.port, idle_s=args.idle)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from .cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
    from .progress import terminal_reporter
    from .service.catalog import check_uid
    from .service.params import RequestError
    from .service.upstream import Upstream, fetch_series, read_auth
    from .store import VolumeStore

    try:
        check_uid(args.study, "--study")
        if args.series:
            check_uid(args.series, "--series")
    except RequestError as exc:
        raise ParameterError(str(exc)) from None
    headers = read_auth(args.auth_file) if args.auth_file else None
    reporter = terminal_reporter(quiet=args.quiet)
    with Upstream(args.url, headers=headers, connect_timeout=args.connect_timeout,
                  read_timeout=args.read_timeout) as upstream:
        found = upstream.find_series(study=args.study, series=args.series)
        if not found:
            what = f"series {args.series} of study {args.study}" if args.series else f"study {args.study}"
            print(f"voxelflow pull: error: {args.url} holds no {what}", file=sys.stderr)
            return EXIT_ERROR
        store = VolumeStore(args.store)
        failed = 0
        for study, series, count in found:
            try:
                result = fetch_series(upstream, store, study, series, expected=count, reporter=reporter)
            except VoxelflowError as exc:
                failed += 1
                print(f"FAILED series {series}: {exc}", file=sys.stderr)
                continue
            if not result.retrieved:
                print(f"series {series}: already stored as {', '.join(result.keys)}")
                continue
            rate = result.bytes / 1e6 / result.seconds if result.seconds > 0 else 0.0
            print(f"series {series}: {result.instances} instance(s), {result.bytes / 1e6:.1f} MB retrieved "
                  f"({rate:.0f} MB/s with the ingest), stored as {', '.join(result.keys)}")
            if result.report is not None and result.report.failures:
                for what, reason in result.report.failures:
                    print(f"FAILED {what}: {reason}", file=sys.stderr)
    print(f"pull: {len(found) - failed} of {len(found)} series in store {args.store}")
    if failed:
        return EXIT_PARTIAL if failed < len(found) else EXIT_ERROR
    return EXIT_OK
