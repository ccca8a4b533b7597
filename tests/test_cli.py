"""The ``voxelflow`` command as a user runs it: exit codes, one-line errors, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxelflow.testing import write_series


def run(*args: str, cwd: Path | None = None, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxelflow", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, stdin=stdin,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


def test_help_documents_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0
    for code in ("0 ", "2 ", "3 ", "130", "141"):
        assert f"  {code}" in result.stdout
    assert "--debug" in result.stdout


def test_info_on_a_missing_folder_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "store"
    result = run("info", str(missing))
    assert result.returncode == 2
    one_line_error(result, str(missing), "no such folder")
    assert not (tmp_path / "nowhere").exists()


def test_info_on_a_folder_that_is_no_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a store")
    result = run("info", str(tmp_path))
    assert result.returncode == 2
    one_line_error(result, "not a voxelflow store")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("command", ["ingest", "convert"])
def test_no_dicom_found_is_an_error_and_leaves_nothing(tmp_path: Path, command: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "readme.txt").write_text("no DICOM here")
    target = tmp_path / "out"
    option = "--store" if command == "ingest" else "-o"
    result = run(command, str(source), option, str(target))
    assert result.returncode == 2
    one_line_error(result, "no DICOM image found", str(source), "1 non-DICOM")
    assert not target.exists()


@pytest.mark.parametrize("command", ["ingest", "convert"])
def test_missing_source_is_named(tmp_path: Path, command: str) -> None:
    option = "--store" if command == "ingest" else "-o"
    result = run(command, str(tmp_path / "absent"), option, str(tmp_path / "out"))
    assert result.returncode == 2
    one_line_error(result, str(tmp_path / "absent"), "no such file or folder")
    assert not (tmp_path / "out").exists()


def test_convert_onto_an_existing_file(tmp_path: Path) -> None:
    write_series(tmp_path / "src", shape=(4, 16, 16))
    (tmp_path / "taken").write_text("a file")
    result = run("convert", str(tmp_path / "src"), "-o", str(tmp_path / "taken"))
    assert result.returncode == 2
    one_line_error(result, str(tmp_path / "taken"), "not a folder")
    assert (tmp_path / "taken").read_text() == "a file"


def test_store_under_a_path_that_cannot_exist(tmp_path: Path) -> None:
    write_series(tmp_path / "src", shape=(4, 16, 16))
    (tmp_path / "file").write_text("x")
    result = run("ingest", str(tmp_path / "src"), "--store", str(tmp_path / "file" / "store"))
    assert result.returncode == 2
    one_line_error(result, str(tmp_path / "file"))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run("--debug", "info", str(tmp_path / "absent"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    """``voxelflow info STORE | head``: the reader is gone before the table is written."""
    write_series(tmp_path / "src", shape=(4, 16, 16))
    store = tmp_path / "store"
    assert run("ingest", str(tmp_path / "src"), "--store", str(store)).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "voxelflow", "info", str(store)], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == "", result.stderr


def test_ingest_that_works_exits_0(tmp_path: Path) -> None:
    write_series(tmp_path / "src", shape=(4, 16, 16))
    result = run("ingest", str(tmp_path / "src"), "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr
    listed = run("info", str(tmp_path / "store"))
    assert listed.returncode == 0
    assert "1 volume(s)" in listed.stdout
