"""The README's examples run as written against the outputs of ``voxelflow demo --out demo``.

The demo runs once (the README's own ``voxelflow demo --out demo`` line). Then every Python
block runs in a fresh interpreter, and every ``bash`` block's ``voxelflow`` lines run in
order in one shell per block, each block in a fresh folder holding a copy of the demo's
outputs: blocks stay independent (no block sees another's files) and a failure names the
README line it came from. Files a block writes (string literals with an image, NIfTI, .npy
or .gz suffix in a Python block; ``-o`` / ``--out`` / ``--output`` / ``--store`` targets of a
command) must exist afterwards.

Shell lines that are not run are listed in :data:`NOT_RUN` with the reason; any other line
that is not a ``voxelflow`` command fails the test, so nothing is skipped silently.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: The README line that makes the examples' inputs; the fixture runs it as written.
DEMO_LINE = "voxelflow demo --out demo"

#: Shell lines not run here, by how they start, with the reason.
NOT_RUN = {
    "pip install": "installs packages; the test runs against the installed tree",
    "pytest": "runs the whole test suite, of which this test is a part",
    "voxelflow serve": "starts an HTTP server that runs until stopped (tests/service/ drive it)",
    "voxelflow bench": "runs the benchmark suites, minutes long (tests/test_bench.py covers it)",
    "curl": "asks a running `voxelflow serve` (tests/service/ drive the service over HTTP)",
    "B=": "sets the service address the curl lines use",
    "voxelflow pull": "needs a DICOMweb archive (tests/service/test_upstream.py drives a real Orthanc)",
    "voxelflow listen": "runs a DICOM listener until stopped (tests/service/test_dimse.py drives it)",
}

#: Suffixes of the files a Python block writes, as string literals name them.
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".apng", ".npy", ".nii", ".nii.gz", ".gz")

#: Options whose value is a file or folder a command writes.
OUTPUT_OPTIONS = ("-o", "--out", "--output", "--store")

TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # 1-based README line of the block's first code line
    section: str
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"{self.language}-line{self.line}-{slug}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of `text`, with their language and the heading above them."""
    blocks = []
    section = ""
    lines = text.split("\n")
    n = 0
    while n < len(lines):
        line = lines[n]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        fence = re.match(r"(`{3,})\s*(\S*)", line)
        if fence:
            marker, language = fence.groups()
            start = n + 1
            n += 1
            while n < len(lines) and not lines[n].startswith(marker):
                n += 1
            if n == len(lines):
                raise AssertionError(f"README.md:{start}: code block never closed")
            blocks.append(Block(language, start + 1, section, "\n".join(lines[start:n]) + "\n"))
        n += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.language == "python"]
SHELL = [b for b in BLOCKS if b.language in ("bash", "sh", "shell", "console")]


def shell_lines(block: Block) -> list[tuple[int, str]]:
    """(README line, command) of each command line of a shell block."""
    found = []
    for offset, line in enumerate(block.code.split("\n")):
        command = line.strip()
        if command and not command.startswith("#"):
            found.append((block.line + offset, command))
    return found


def not_run_reason(command: str) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if command == prefix or command.startswith(prefix if prefix.endswith("=") else prefix + " "):
            return reason
    return None


def _run(args: list[str] | str, cwd: Path, *, shell: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, shell=shell, executable="/bin/bash" if shell else None,
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder in which the README's ``voxelflow demo --out demo`` ran: it holds ``demo/``."""
    root = tmp_path_factory.mktemp("readme")
    args = shlex.split(DEMO_LINE)
    result = _run([sys.executable, "-m", "voxelflow", *args[1:]], root)
    assert result.returncode == 0, f"{DEMO_LINE} failed:\n{result.stdout}\n{result.stderr}"
    for part in ("series", "store/zarr.json"):
        assert (root / "demo" / part).exists(), f"{DEMO_LINE} wrote no demo/{part}"
    return root / "demo"


@pytest.fixture
def workdir(demo: Path, tmp_path: Path) -> Path:
    """A fresh folder holding a copy of the demo's outputs as ``demo/``."""
    shutil.copytree(demo, tmp_path / "demo", symlinks=True)
    return tmp_path


def test_readme_makes_its_inputs_with_the_demo() -> None:
    commands = [command for block in SHELL for _, command in shell_lines(block)]
    assert DEMO_LINE in commands, f"README.md should tell the reader to run `{DEMO_LINE}`"
    assert PYTHON and SHELL_RUN, "README.md has no python blocks or no voxelflow command lines"


def test_every_shell_line_is_run_or_listed_with_a_reason() -> None:
    unknown = [
        f"README.md:{line}: {command}"
        for block in SHELL
        for line, command in shell_lines(block)
        if not command.startswith("voxelflow ") and not_run_reason(command) is None
    ]
    assert not unknown, (
        "shell lines that are neither `voxelflow` commands nor listed in NOT_RUN "
        "(tests/test_readme.py) with a reason:\n" + "\n".join(unknown)
    )


def python_outputs(code: str) -> list[str]:
    """Relative paths with an output suffix that a block names (its inputs live under demo/)."""
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if (
                value.endswith(OUTPUT_SUFFIXES)
                and re.fullmatch(r"[\w.-][\w./-]*", value)
                and not value.startswith("demo/")
            ):
                names.append(value)
    return names


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block: Block, workdir: Path) -> None:
    script = workdir / "block.py"
    script.write_text(block.code, encoding="utf-8")
    result = _run([sys.executable, str(script)], workdir)
    assert result.returncode == 0, (
        f"README.md:{block.line} ({block.section}): the Python block failed:\n"
        f"{block.code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    for name in python_outputs(block.code):
        made = workdir / name
        assert made.is_file() and made.stat().st_size > 0, (
            f"README.md:{block.line} ({block.section}): the block names {name!r} but wrote no such file"
        )


def command_outputs(command: str) -> list[str]:
    """The files and folders a ``voxelflow`` command line writes (its output options' values)."""
    words = shlex.split(command, comments=True)
    outputs = []
    for n, word in enumerate(words[:-1]):
        if word in OUTPUT_OPTIONS:
            outputs.append(words[n + 1])
    for word in words:
        name, _, value = word.partition("=")
        if value and name in OUTPUT_OPTIONS:
            outputs.append(value)
    return outputs


def runnable(block: Block) -> list[tuple[int, str]]:
    """The lines of a shell block this test runs: all but the demo (the fixture runs it) and
    the lines NOT_RUN gives a reason for."""
    return [
        (line, command)
        for line, command in shell_lines(block)
        if command != DEMO_LINE and not_run_reason(command) is None
    ]


#: Shell blocks with a line to run; the others are all accounted for by
#: test_every_shell_line_is_run_or_listed_with_a_reason.
SHELL_RUN = [b for b in SHELL if runnable(b)]


@pytest.mark.parametrize("block", SHELL_RUN, ids=[b.id for b in SHELL_RUN])
def test_shell_block_runs(block: Block, workdir: Path) -> None:
    for line, command in runnable(block):
        assert command.startswith("voxelflow "), f"README.md:{line}: not a voxelflow command: {command}"
        # the voxelflow of this interpreter, whatever `voxelflow` on PATH is
        shell = f"{shlex.quote(sys.executable)} -m voxelflow {command[len('voxelflow '):]}"
        result = _run(shell, workdir, shell=True)
        assert result.returncode == 0, (
            f"README.md:{line} ({block.section}) exited {result.returncode}: {command}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        for output in command_outputs(command):
            assert (workdir / output).exists(), f"README.md:{line}: {command}\nwrote no {output}"
