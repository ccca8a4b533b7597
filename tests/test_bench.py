"""voxelflow.bench: the report -> rows -> table path, and `run` end to end on a tiny suite."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from voxelflow.bench import MISSING, Row, format_table, run, summarize
from voxelflow.errors import ParameterError


def _entry(name: str, group: str | None, median: float, **info: Any) -> dict[str, Any]:
    """One benchmark as pytest-benchmark's JSON writes it (only the fields we read + noise)."""
    return {
        "group": group,
        "name": name,
        "fullname": f"benchmarks/bench_x.py::{name}",
        "params": None,
        "param": None,
        "extra_info": info,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5},
        "stats": {"min": median * 0.9, "max": median * 1.5, "mean": median * 1.1,
                  "median": median, "rounds": 10, "iterations": 1},
    }


MB = 1_000_000

REPORT: dict[str, Any] = {
    "machine_info": {"node": "test"},
    "commit_info": {},
    "benchmarks": [
        # Two backends against two peers: the faster peer (numpy, 2 ms) is the one compared.
        _entry("bench_window_cython", "window 512^3 u16", 1e-3, role="voxelflow",
               kernel="window", backend="cython", threads=2, nbytes=8 * MB),
        _entry("bench_window_numba", "window 512^3 u16", 4e-3, role="voxelflow",
               kernel="window", backend="numba", threads=2, nbytes=8 * MB),
        _entry("bench_window_numpy", "window 512^3 u16", 2e-3, role="peer", peer="numpy",
               nbytes=8 * MB),
        _entry("bench_window_sitk", "window 512^3 u16", 5e-3, role="peer", peer="SimpleITK"),
        _entry("bench_window_memcpy", "window 512^3 u16", 0.5e-3, role="memcpy", nbytes=8 * MB),
        # Voxels only, no peer, no memcpy.
        _entry("bench_mip", "mip slab", 0.25, role="voxelflow", kernel="mip", backend="cython",
               nvoxels=50 * MB),
        # A benchmark outside the conventions is ignored.
        _entry("bench_other", "other", 1.0),
    ],
}


def test_summarize_compares_with_fastest_peer_and_memcpy() -> None:
    rows = summarize(REPORT)
    assert [(r.group, r.backend) for r in rows] == [
        ("window 512^3 u16", "cython"),
        ("window 512^3 u16", "numba"),
        ("mip slab", "cython"),
    ]
    cython, numba, mip = rows
    assert cython.peer == "numpy" and numba.peer == "numpy"
    assert cython.threads == 2 and cython.kernel == "window"
    assert cython.unit == "GB/s" and cython.throughput == pytest.approx(8.0)
    assert cython.ratio == pytest.approx(2.0)  # numpy 2 ms / cython 1 ms: voxelflow 2x faster
    assert numba.ratio == pytest.approx(0.5)  # slower than the peer
    assert cython.memcpy_fraction == pytest.approx(0.5)  # 8 GB/s of memcpy's 16 GB/s
    assert numba.memcpy_fraction == pytest.approx(0.125)

    assert mip.unit == "Mvoxel/s" and mip.throughput == pytest.approx(200.0)
    assert mip.peer is None and mip.ratio is None and mip.memcpy_fraction is None
    assert mip.threads is None


def test_summarize_rejects_non_benchmark_json() -> None:
    with pytest.raises(ParameterError, match="benchmarks"):
        summarize({"machine_info": {}})


def test_format_table_columns_and_width() -> None:
    table = format_table(summarize(REPORT))
    lines = table.splitlines()
    assert len(lines) == 2 + 3  # header, rule, three rows
    header = lines[0]
    for column in ("benchmark", "kernel", "backend", "peer", "throughput", "x peer", "% memcpy"):
        assert column in header
    assert set(lines[1]) == {"-"}
    assert "8.00 GB/s" in lines[2] and "2.00x" in lines[2] and "50%" in lines[2]
    assert "1.00 ms" in lines[2]
    assert "0.5x" in lines[3] and "12%" in lines[3]  # 12.5% rounds to even
    assert "200 Mvoxel/s" in lines[4] and lines[4].count(MISSING) == 4  # thr, peer, x, %
    assert all(len(line) <= 100 for line in lines)


def test_format_table_shortens_long_names_to_100_columns() -> None:
    row = Row(group="g" * 80, kernel="k" * 40, backend="cython", threads=16, peer="p" * 40,
              median_s=1.5e-7, throughput=1234.5, unit="Mvoxel/s", ratio=12.345,
              memcpy_fraction=None)
    lines = format_table([row]).splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert "…" in lines[2] and "150 ns" in lines[2] and "12.3x" in lines[2]
    assert format_table([]).splitlines()[0].split()[:2] == ["benchmark", "kernel"]


TINY_SUITE = '''
import os

import numpy as np

N = 1000
GROUP = "tiny add 1000 f64"


def test_voxelflow_add(benchmark, pytestconfig):
    a = np.arange(N, dtype=np.float64)
    out = np.empty_like(a)
    benchmark.group = GROUP
    benchmark.extra_info.update(role="voxelflow", kernel="add", backend="reference",
                                threads=1, nbytes=2 * a.nbytes)
    # what benchmarks/conftest.py's bench_scale reads
    benchmark.extra_info.update(quick=os.environ.get("VOXELFLOW_BENCH_QUICK"),
                                disable=pytestconfig.getoption("benchmark_disable"))
    benchmark(np.add, a, 1.0, out=out)


def test_peer_add(benchmark):
    a = np.arange(N, dtype=np.float64)
    benchmark.group = GROUP
    benchmark.extra_info.update(role="peer", peer="python", nbytes=2 * a.nbytes)
    values = a.tolist()
    benchmark(lambda: [v + 1.0 for v in values])


def test_memcpy(benchmark):
    a = np.arange(N, dtype=np.float64)
    out = np.empty_like(a)
    benchmark.group = GROUP
    benchmark.extra_info.update(role="memcpy", nbytes=2 * a.nbytes)
    benchmark(np.copyto, out, a)
'''


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suites"
    suite.mkdir()
    (suite / "test_tiny.py").write_text(TINY_SUITE)
    # Like the project's pyproject.toml: a plain pytest run only smoke-tests benchmarks.
    (suite / "pytest.ini").write_text("[pytest]\naddopts = --benchmark-disable -ra\n")
    return suite


def test_run_end_to_end(tiny_suite: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    json_path = tmp_path / "report.json"
    code = run(quick=True, json_path=str(json_path), suites_dir=str(tiny_suite), stream=out)
    text = out.getvalue()
    assert code == 0, text
    assert "3 passed" in text  # pytest's progress was streamed
    table = text[text.index("benchmark "):]
    assert "x peer" in table and "% memcpy" in table
    row = next(line for line in table.splitlines() if line.startswith("tiny add"))
    assert "python" in row and "GB/s" in row and row.rstrip().endswith("%")
    assert "x " in row  # the ratio cell, e.g. "35.2x"

    report = json.loads(json_path.read_text())
    roles = {b["extra_info"]["role"] for b in report["benchmarks"]}
    assert roles == {"voxelflow", "peer", "memcpy"}
    # quick mode reached the suites, and --benchmark-disable from addopts did not
    assert all(b["options"]["min_rounds"] == 3 for b in report["benchmarks"])
    info = next(b["extra_info"] for b in report["benchmarks"] if b["name"] == "test_voxelflow_add")
    assert info["quick"] == "1" and info["disable"] is False
    assert not list(tmp_path.glob(".report.json.*"))  # no temporary file left behind


def test_run_reports_failures_and_selection(tiny_suite: Path, tmp_path: Path) -> None:
    (tiny_suite / "test_broken.py").write_text(textwrap.dedent('''
        def test_crashes(benchmark):
            benchmark.extra_info.update(role="voxelflow", kernel="boom", backend="cython")
            benchmark(lambda: 1 / 0)
    '''))
    out = io.StringIO()
    code = run(quick=True, select="voxelflow or memcpy or crashes", suites_dir=str(tiny_suite),
               stream=out)
    text = out.getvalue()
    assert code == 1, text  # pytest's "tests failed"
    assert "ZeroDivisionError" in text
    row = next(line for line in text.splitlines() if line.startswith("tiny add"))
    assert MISSING in row  # the peer was deselected: no ratio, but memcpy is there
    assert row.rstrip().endswith("%")

    out = io.StringIO()
    json_path = tmp_path / "none.json"
    assert run(select="nothing_matches", json_path=str(json_path), suites_dir=str(tiny_suite),
               stream=out) == 5  # pytest: no tests collected
    assert "no voxelflow benchmark results" in out.getvalue()
    assert not json_path.exists()


def test_run_rejects_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="suites_dir"):
        run(suites_dir=str(tmp_path / "missing"), stream=io.StringIO())
    with pytest.raises(ParameterError, match="backend"):
        run(backend="fortran", suites_dir=str(tmp_path), stream=io.StringIO())
    with pytest.raises(ParameterError, match="json_path"):
        run(json_path=str(tmp_path / "no" / "r.json"), suites_dir=str(tmp_path),
            stream=io.StringIO())


def test_run_explains_missing_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import voxelflow.bench as bench

    fake = tmp_path / "site-packages" / "voxelflow" / "bench.py"
    monkeypatch.setattr(bench, "__file__", str(fake))
    with pytest.raises(ParameterError, match="source checkout"):
        run(stream=io.StringIO())
