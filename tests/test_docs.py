"""docs/: the CLI reference is the parser's, and every link in README.md and docs/*.md resolves
to a file inside the repository."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from voxelflow.cli_reference import markdown

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "python -m voxelflow.cli_reference > docs/cli.md"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) and [text](target "title"), images too; <...> targets may hold spaces
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target  (reference definitions)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
_WEB = ("http", "https", "mailto")


def test_cli_reference_is_generated_from_the_parser() -> None:
    path = ROOT / "docs" / "cli.md"
    assert path.is_file(), f"docs/cli.md is missing; generate it with: {REGENERATE}"
    assert path.read_text(encoding="utf-8") == markdown(), (
        f"docs/cli.md differs from the voxelflow parser's reference; regenerate it with: {REGENERATE}"
    )


def test_cli_reference_covers_every_command() -> None:
    from voxelflow.cli import _parser

    text = markdown()
    actions = [a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    commands = [name for action in actions for name in action.choices]
    assert commands
    for name in commands:
        assert f"## `voxelflow {name}`" in text, name
    assert "| 141 |" in text  # the exit codes of the epilog


def links(text: str) -> list[str]:
    """The link targets of a Markdown text, outside code blocks and code spans."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    found = [m.group(1) for m in _INLINE.finditer(prose)] + [m.group(1) for m in _REFERENCE.finditer(prose)]
    return [t[1:-1] if t.startswith("<") else t for t in found]


def test_link_extraction() -> None:
    text = (
        "[a](docs/a.md) ![b](img/b.png \"title\") [c][ref] `[d](nowhere.md)`\n"
        "```\n[e](in/code.md)\n```\n[ref]: docs/c.md\n[f](#anchor) [g](https://example.org)"
    )
    assert links(text) == ["docs/a.md", "img/b.png", "#anchor", "https://example.org", "docs/c.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_links_point_to_files_inside_the_repository(document: Path) -> None:
    problems = []
    for target in links(document.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme in _WEB:
            continue  # a web page, not a path
        if parts.scheme or parts.netloc:
            problems.append(f"{target}: not a relative path (scheme {parts.scheme or '//'})")
            continue
        path = unquote(parts.path)
        if not path:
            continue  # "#anchor": within the document
        if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", path):
            problems.append(f"{target}: an absolute path; link relative to {document.name}")
            continue
        resolved = (document.parent / path).resolve()
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository ({resolved})")
        elif not resolved.exists():
            problems.append(f"{target}: no such file in the repository")
    where = document.relative_to(ROOT)
    assert not problems, f"{where}: bad links:\n" + "\n".join(problems)
