"""``voxelflow bench``: run the benchmark suites and print one comparison table.

The suites (``benchmarks/`` in the source checkout) are pytest-benchmark files. Every
comparison is one benchmark ``group`` holding a voxelflow row, its peer(s) and a memcpy
baseline (``np.copyto`` of the same bytes), all timed in the same run; each benchmark
describes itself in ``extra_info`` (see ``benchmarks/conftest.py``). :func:`run` runs the
suites in a pytest subprocess, :func:`summarize` turns pytest-benchmark's JSON report into
:class:`Row` objects and :func:`format_table` lays them out.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import ParameterError, VoxelflowError

__all__ = ["Row", "format_table", "run", "summarize"]

MISSING = "—"

# The table must stay readable in a 100-column terminal; the free-text columns give way first.
_TABLE_WIDTH = 100

# pytest-benchmark options for `--quick`: a few rounds each, no warm-up, a short time budget.
_QUICK_OPTIONS = ("--benchmark-min-rounds=3", "--benchmark-max-time=0.2", "--benchmark-warmup=off")

LEGEND = (
    "x peer: median time of the group's fastest peer / voxelflow's (>1: voxelflow is faster)\n"
    "% memcpy: throughput / that of np.copyto on the same bytes, timed in the same run"
)


@dataclass(frozen=True, kw_only=True)
class Row:
    """One voxelflow benchmark compared with its group's fastest peer and memcpy baseline.

    Attributes
    ----------
    group, kernel, backend
        The benchmark group (the comparison), the kernel and the voxelflow backend.
    threads
        Threads the kernel ran with, when the benchmark recorded it.
    peer
        The fastest peer of the group (``None``: the group has no peer row).
    median_s
        Median time of one call, seconds.
    throughput, unit
        ``nbytes / median`` in ``"GB/s"`` or, when the benchmark records only voxels,
        ``nvoxels / median`` in ``"Mvoxel/s"``; ``None`` when it records neither.
    ratio
        Peer median / voxelflow median: above 1, voxelflow is faster. ``None`` without a peer.
    memcpy_fraction
        Throughput as a fraction of the group's memcpy bandwidth (1.0 = memcpy speed);
        ``None`` without a memcpy row or without ``nbytes``.
    """

    group: str
    kernel: str
    backend: str
    threads: int | None
    peer: str | None
    median_s: float
    throughput: float | None
    unit: str
    ratio: float | None
    memcpy_fraction: float | None


@dataclass(frozen=True)
class _Timing:
    """The parts of one pytest-benchmark entry the table needs."""

    name: str
    role: str
    median_s: float
    info: Mapping[str, Any]

    def bandwidth(self) -> float | None:
        """Bytes per second, or None when the benchmark did not record ``nbytes``."""
        nbytes = self.info.get("nbytes")
        if not _positive(nbytes) or self.median_s <= 0:
            return None
        return float(nbytes) / self.median_s


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _timings(report: Mapping[str, Any]) -> dict[str | None, list[_Timing]]:
    """Benchmarks with a role and a median, by group, in report order."""
    benchmarks = report.get("benchmarks") if isinstance(report, Mapping) else None
    if not isinstance(benchmarks, list):
        raise ParameterError(
            "summarize: report has no 'benchmarks' list (not pytest-benchmark JSON)"
        )
    groups: dict[str | None, list[_Timing]] = {}
    for entry in benchmarks:
        info = entry.get("extra_info") or {}
        median = (entry.get("stats") or {}).get("median")
        role = info.get("role")
        if role not in ("voxelflow", "peer", "memcpy") or not _positive(median):
            continue
        timing = _Timing(
            name=str(entry.get("name", "?")), role=role, median_s=float(median), info=info
        )
        groups.setdefault(entry.get("group"), []).append(timing)
    return groups


def summarize(report: Mapping[str, Any]) -> list[Row]:
    """Table rows from a pytest-benchmark JSON report: one per voxelflow benchmark.

    Within each ``group`` a benchmark whose ``extra_info["role"]`` is ``"voxelflow"`` is
    compared with the group's fastest ``"peer"`` (smallest median) and its ``"memcpy"`` row
    (the fastest, if several). Benchmarks without a role or a median are ignored.

    Parameters
    ----------
    report
        The parsed ``--benchmark-json`` file.

    Raises
    ------
    ParameterError
        If `report` has no ``benchmarks`` list.
    """
    rows: list[Row] = []
    for group, timings in _timings(report).items():
        peers = [t for t in timings if t.role == "peer"]
        fastest_peer = min(peers, key=lambda t: t.median_s) if peers else None
        memcpy_rates = [r for t in timings if t.role == "memcpy" and (r := t.bandwidth())]
        memcpy_rate = max(memcpy_rates) if memcpy_rates else None
        for t in (t for t in timings if t.role == "voxelflow"):
            rate = t.bandwidth()
            nvoxels = t.info.get("nvoxels")
            if rate is not None:
                throughput, unit = rate / 1e9, "GB/s"
            elif _positive(nvoxels):
                throughput, unit = float(nvoxels) / t.median_s / 1e6, "Mvoxel/s"
            else:
                throughput, unit = None, ""
            threads = t.info.get("threads")
            rows.append(
                Row(
                    group=group if group is not None else t.name,
                    kernel=str(t.info.get("kernel", t.name)),
                    backend=str(t.info.get("backend", MISSING)),
                    threads=threads if isinstance(threads, int) else None,
                    peer=(
                        str(fastest_peer.info.get("peer", fastest_peer.name))
                        if fastest_peer
                        else None
                    ),
                    median_s=t.median_s,
                    throughput=throughput,
                    unit=unit,
                    ratio=fastest_peer.median_s / t.median_s if fastest_peer else None,
                    memcpy_fraction=rate / memcpy_rate if rate and memcpy_rate else None,
                )
            )
    return rows


def _significant(value: float) -> str:
    """Three significant digits, never in exponent form."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def _format_seconds(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= scale:
            return f"{_significant(seconds / scale)} {unit}"
    return f"{_significant(seconds / 1e-9)} ns"


def _cells(row: Row) -> list[str]:
    return [
        row.group,
        row.kernel,
        row.backend,
        str(row.threads) if row.threads is not None else MISSING,
        row.peer or MISSING,
        _format_seconds(row.median_s),
        f"{_significant(row.throughput)} {row.unit}" if row.throughput is not None else MISSING,
        f"{_significant(row.ratio)}x" if row.ratio is not None else MISSING,
        f"{row.memcpy_fraction * 100:.0f}%" if row.memcpy_fraction is not None else MISSING,
    ]


_HEADERS = (
    "benchmark", "kernel", "backend", "thr", "peer", "median", "throughput", "x peer", "% memcpy",
)
_RIGHT_ALIGNED = frozenset({3, 5, 6, 7, 8})
# Columns that are truncated, in this order, when the table would exceed _TABLE_WIDTH.
_SHRINKABLE = (4, 0, 1)  # peer first: the case name says what was measured
_MIN_WIDTH = 10


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rows: Iterable[Row]) -> str:
    """A fixed-width text table of `rows`: one header line, a rule, one line per row.

    Columns are sized to their content; when the table would be wider than 100 characters
    the benchmark, peer and kernel names are shortened (ending in "…").
    """
    body = [_cells(row) for row in rows]
    widths = [max([len(h), *(len(cells[i]) for cells in body)]) for i, h in enumerate(_HEADERS)]
    separator = "  "
    excess = sum(widths) + len(separator) * (len(widths) - 1) - _TABLE_WIDTH
    for column in _SHRINKABLE:
        if excess <= 0:
            break
        cut = min(excess, max(0, widths[column] - max(_MIN_WIDTH, len(_HEADERS[column]))))
        widths[column] -= cut
        excess -= cut

    def line(cells: Sequence[str]) -> str:
        parts = [
            _clip(text, w).rjust(w) if i in _RIGHT_ALIGNED else _clip(text, w).ljust(w)
            for i, (text, w) in enumerate(zip(cells, widths))
        ]
        return separator.join(parts).rstrip()

    header = line(_HEADERS)
    lines = [header, "-" * len(header)]
    lines.extend(line(cells) for cells in body)
    return "\n".join(lines)


def _locate_suites(suites_dir: str | os.PathLike[str] | None) -> Path:
    """The benchmarks folder: `suites_dir`, or the source checkout's ``benchmarks/``."""
    if suites_dir is not None:
        path = Path(suites_dir).resolve()
        if not path.is_dir():
            raise ParameterError(f"voxelflow bench: suites_dir {str(path)!r} is not a directory")
        return path
    # src/voxelflow/bench.py -> the checkout root holds pyproject.toml and benchmarks/.
    root = Path(__file__).resolve().parents[2]
    path = root / "benchmarks"
    if not (path.is_dir() and (root / "pyproject.toml").is_file()):
        raise ParameterError(
            "voxelflow bench: no benchmarks/ folder next to this installation "
            f"({str(path)!r}); the benchmark suites ship with the source checkout only: "
            "install it with `pip install -e .[test]` from a clone"
        )
    return path


def _pytest_command(suites: Path, json_out: str, *, quick: bool, select: str | None,
                    color: bool) -> list[str]:
    command = [
        sys.executable, "-m", "pytest", str(suites),
        # The project's addopts hold --benchmark-disable (plain pytest runs benchmarks once as
        # smoke tests). Clearing it, rather than outvoting it with --benchmark-enable, also
        # keeps `config.getoption("benchmark_disable")` (which the suites read to pick their
        # input sizes) False.
        "-o", "addopts=",
        "-ra", "--strict-markers",
        "--benchmark-enable", "--benchmark-quiet", f"--benchmark-json={json_out}",
        "-q", "-p", "no:cacheprovider",
        f"--color={'yes' if color else 'no'}",
    ]
    if quick:
        command.extend(_QUICK_OPTIONS)
    if select:
        command.extend(["-k", select])
    return command


def _stream_output(process: subprocess.Popen[bytes], stream: TextIO) -> None:
    """Copy the child's output to `stream` as it arrives (pytest's progress dots included)."""
    assert process.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := process.stdout.read1(65536):
        stream.write(decoder.decode(chunk))
        stream.flush()
    stream.write(decoder.decode(b"", final=True))


def _read_report(path: str) -> dict[str, Any] | None:
    """The JSON report, or None when pytest-benchmark wrote nothing (no benchmark ran)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    report = json.loads(text)
    return report if isinstance(report, dict) else None


def run(
    *,
    quick: bool = False,
    json_path: str | os.PathLike[str] | None = None,
    select: str | None = None,
    backend: str | None = None,
    suites_dir: str | os.PathLike[str] | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run the benchmark suites in a pytest subprocess and print the comparison table.

    pytest's progress is streamed to `stream` while the suites run; the table follows.
    A crashing benchmark fails its test in the subprocess and never takes the caller down.

    Parameters
    ----------
    quick
        A short run (3 rounds, 0.2 s per benchmark, no warm-up; the suites see
        ``VOXELFLOW_BENCH_QUICK=1`` and pick smaller inputs).
    json_path
        Also keep pytest-benchmark's full JSON report there (written atomically, only when
        some benchmark ran).
    select
        A pytest ``-k`` expression choosing the benchmarks.
    backend
        Only report this voxelflow backend (one of ``voxelflow.kernels.BACKENDS``); the
        suites also see it as ``VOXELFLOW_BACKEND``.
    suites_dir
        The suites folder; default: ``benchmarks/`` of the source checkout.
    stream
        Where the progress and the table go (default ``sys.stdout``).

    Returns
    -------
    int
        0 when every selected benchmark ran; otherwise pytest's exit code (1: some failed,
        5: none selected, ...).

    Raises
    ------
    ParameterError
        If there is no benchmarks folder (the suites ship with the source checkout only),
        `backend` is unknown, or `json_path`'s folder does not exist.
    VoxelflowError
        If pytest or pytest-benchmark is not installed.
    """
    from .kernels import BACKENDS

    out = sys.stdout if stream is None else stream
    suites = _locate_suites(suites_dir)
    if backend is not None and backend not in BACKENDS:
        raise ParameterError(
            f"voxelflow bench: backend {backend!r} is not one of {', '.join(BACKENDS)}"
        )
    for module, package in (("pytest", "pytest"), ("pytest_benchmark", "pytest-benchmark")):
        if importlib.util.find_spec(module) is None:
            raise VoxelflowError(
                f"voxelflow bench needs {package}: pip install 'voxelflow[test]'"
            )
    target = Path(json_path).resolve() if json_path is not None else None
    if target is not None and not target.parent.is_dir():
        raise ParameterError(
            f"voxelflow bench: json_path {str(json_path)!r}: folder {str(target.parent)!r} "
            "does not exist"
        )

    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.pop("VOXELFLOW_BENCH_QUICK", None)
    if quick:
        env["VOXELFLOW_BENCH_QUICK"] = "1"
    if backend is not None:
        env["VOXELFLOW_BACKEND"] = backend

    # The report goes to a temporary file beside its destination, then is renamed into
    # place, so an interrupted run never leaves a partial JSON file under `json_path`.
    fd, json_out = tempfile.mkstemp(
        prefix=f".{target.name}." if target else "voxelflow-bench-",
        suffix=".tmp",
        dir=target.parent if target else None,
    )
    os.close(fd)
    try:
        is_tty = getattr(out, "isatty", None)
        command = _pytest_command(
            suites, json_out, quick=quick, select=select, color=bool(is_tty and is_tty())
        )
        out.write(f"voxelflow bench: {suites}{' (quick)' if quick else ''}\n")
        out.flush()
        with subprocess.Popen(
            command, cwd=suites.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as process:
            try:
                _stream_output(process, out)
            finally:
                if process.poll() is None:
                    process.terminate()
            code = process.wait()

        report = _read_report(json_out)
        rows = summarize(report) if report is not None else []
        if backend is not None:
            rows = [row for row in rows if row.backend == backend]
        out.write("\n")
        if rows:
            out.write(format_table(rows) + "\n" + LEGEND + "\n")
        else:
            out.write("voxelflow bench: no voxelflow benchmark results to report\n")
        if target is not None:
            if report is not None:
                os.replace(json_out, target)
                out.write(f"voxelflow bench: wrote {target}\n")
            else:
                out.write(f"voxelflow bench: no benchmark ran; {target} not written\n")
        out.flush()
        return code
    finally:
        if os.path.exists(json_out):
            os.unlink(json_out)
