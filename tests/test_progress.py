"""Progress output: a bar redrawn in place on a terminal, plain rate-limited lines in logs,
nothing with --quiet; and the library's long steps report through it."""

from __future__ import annotations

import io
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest

from voxelflow import Volume, VolumeStore, rotating_projection
from voxelflow import progress as vp
from voxelflow.testing import write_series


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_are_plain_and_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    bar = vp.terminal_reporter(out)("scanning", "files")
    for done in range(0, 1001):
        bar(done, 1000)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # the first call, then nothing until LINE_S has passed, then the final line
    assert lines[0].startswith("scanning: 0/1000 files")
    assert lines[-1].startswith("scanning: 1000/1000 files") and " in " in lines[-1]
    assert len(lines) <= 3


def test_terminal_bar_redraws_in_place() -> None:
    out = Terminal()
    bar = vp.terminal_reporter(out)("writing k", "slices")
    bar(0, 10)
    bar(10, 10)
    bar(10, 10)  # after the end: nothing more
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "[" + "#" * vp.BAR_WIDTH + "]" in text and "10/10 slices" in text


def test_quiet_has_no_reporter() -> None:
    assert vp.terminal_reporter(io.StringIO(), quiet=True) is None


def test_a_closed_stream_never_raises() -> None:
    out = io.StringIO()
    bar = vp.terminal_reporter(out)("x", "files")
    out.close()
    bar(1, 1)


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_store_write_reports_slices(tmp_path, lazy: bool) -> None:
    array = np.arange(70 * 16 * 16, dtype=np.int16).reshape(70, 16, 16)
    volume = Volume(da.from_array(array, chunks=(8, 16, 16)) if lazy else array, np.eye(4))
    calls: list[tuple[int, int]] = []
    VolumeStore(tmp_path / "s").write("a/b", volume, chunks=(16, 16, 16), progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 70) and calls[-1] == (70, 70)
    assert all(t == 70 for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) >= 3  # it advanced in between


def test_rotating_projection_reports_each_view() -> None:
    volume = Volume(np.zeros((8, 8, 8), np.int16), np.eye(4))
    calls: list[tuple[int, int]] = []
    rotating_projection(volume, 5, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, 5) for k in range(1, 6)]


def _ingest(args: list[str], tmp_path) -> subprocess.CompletedProcess[str]:
    write_series(tmp_path / "dicom", shape=(6, 16, 16))
    return subprocess.run([sys.executable, "-m", "voxelflow", *args, "ingest", str(tmp_path / "dicom"),
                           "--store", str(tmp_path / "store")], capture_output=True, text=True, timeout=300)


def test_cli_ingest_shows_scan_and_write_progress_as_lines(tmp_path) -> None:
    result = _ingest([], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr  # not a terminal: lines, not redraws
    assert "scanning: 6/6 files" in result.stderr
    assert "writing " in result.stderr and "6/6 slices" in result.stderr


def test_cli_quiet_shows_no_progress(tmp_path) -> None:
    result = _ingest(["--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "1 volume(s)" in result.stdout
