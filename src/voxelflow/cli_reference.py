"""The ``voxelflow`` command-line reference (``docs/cli.md``), generated from the argparse parser.

    python -m voxelflow.cli_reference > docs/cli.md

:func:`markdown` walks :func:`voxelflow.cli._parser` and every subparser below it (commands,
and the views of ``render``), so a command added to the parser appears here without an edit;
``tests/test_docs.py`` fails while ``docs/cli.md`` differs from what this prints.

argparse has no public API for walking a parser: the subparsers, their one-line help and the
arguments are read from ``_actions``, ``_SubParsersAction`` and ``_choices_actions``, as
argparse's own help formatter reads them. Usage lines are argparse's own, formatted at a fixed
width (not the terminal's) and without colour, so the output is the same wherever it runs.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys

__all__ = ["markdown"]

#: Columns the usage lines are wrapped at (argparse would take the terminal's width).
WIDTH = 100

_REGENERATE = "python -m voxelflow.cli_reference > docs/cli.md"

# an epilog line "  <code>  <meaning>": an exit code and what it means
_EXIT_CODE = re.compile(r"\s+(\d+)\s{2,}(\S.*)")


def markdown() -> str:
    """The reference for every command of ``voxelflow`` as Markdown text (ends with a newline).

    For each command (and subcommand, such as ``render plane``): its one-line help, its usage
    as argparse prints it, its description, every argument with its help (choices and defaults
    added where the help does not state them), and the exit codes of the top-level epilog.

    Returns
    -------
    str
        The text of ``docs/cli.md``.
    """
    from .cli import _parser

    parser = _parser()
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `voxelflow` argument parser; do not edit by hand. Regenerate it with",
        "",
        f"    {_REGENERATE}",
        "",
        "Every command also takes `-h` / `--help`, which prints its usage and arguments.",
        "",
    ]
    lines += _section(parser, parser.prog, None, level=2)
    return "\n".join(lines).rstrip("\n") + "\n"


def _fixed_width(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` formatting at :data:`WIDTH` columns without colour, whatever the terminal.

    argparse's formatters take their width from ``COLUMNS`` (the terminal) unless given one;
    Python 3.14's parsers colour their help on a terminal unless ``color`` is false.
    """
    parser.formatter_class = functools.partial(parser.formatter_class, width=WIDTH)  # type: ignore[assignment]
    if hasattr(parser, "color"):
        parser.color = False
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand of `parser`, in the order added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias names a parser already listed
                    continue
                seen.add(id(sub))
                found.append((name, helps.get(name), sub))
    return found


def _section(
    parser: argparse.ArgumentParser, title: str, summary: str | None, *, level: int
) -> list[str]:
    parser = _fixed_width(parser)
    lines = [f"{'#' * level} `{title}`", ""]
    if summary:
        lines += [_sentence(summary), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += _description(parser.description)
    arguments = [a for a in parser._actions if _documented(a)]
    if arguments:
        lines += ["Arguments:", ""]
        lines += [_argument(parser, a) for a in arguments]
        lines += [""]
    subcommands = _subcommands(parser)
    if subcommands:
        heading = "Commands" if level == 2 else "Subcommands"
        lines += [f"{heading}:", ""]
        for name, help_text, _ in subcommands:
            anchor = _anchor(f"{title} {name}")
            lines.append(f"- [`{name}`](#{anchor}): {_text(help_text or '')}".rstrip(": "))
        lines += [""]
    if parser.epilog:
        lines += _epilog(parser.epilog)
    for name, help_text, sub in subcommands:
        lines += _section(sub, f"{title} {name}", help_text, level=min(level + 1, 6))
    return lines


def _documented(action: argparse.Action) -> bool:
    """Arguments listed: all but -h (on every command) and the subcommand choice itself."""
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return False
    return action.help is not argparse.SUPPRESS


def _argument(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    if action.option_strings:
        metavar = formatter._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
        spelled = ", ".join(action.option_strings) + (f" {metavar}" if metavar else "")
    else:
        spelled = formatter._format_args(action, action.dest)
    help_text = _expand(parser, action)
    notes = []
    # a metavar hides the choices the usage would otherwise show as {a,b}
    hidden = list(action.choices) if action.choices is not None and action.metavar is not None else []
    if hidden and not all(str(c) in help_text for c in hidden):
        notes.append("one of " + ", ".join(f"`{c}`" for c in hidden))
    default = action.default
    if (
        action.option_strings
        and default not in (None, False, [], argparse.SUPPRESS)
        and action.nargs != 0
        and "default" not in help_text
    ):
        notes.append(f"default `{default}`")
    text = _text(help_text)
    if notes:
        text = f"{text} ({'; '.join(notes)})" if text else "; ".join(notes)
    required = action.required and action.option_strings and "required" not in help_text
    entry = f"- `{spelled}`" + (" (required)" if required else "")
    return entry + (f": {text}" if text else "")


def _expand(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text with argparse's ``%(default)s``-style fields filled in, as --help shows it."""
    if not action.help:
        return ""
    return parser._get_formatter()._expand_help(action)


def _description(text: str) -> list[str]:
    """Paragraphs as Markdown; a paragraph with indented lines (a list argparse prints as
    written) stays preformatted."""
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip("\n")):
        rows = paragraph.split("\n")
        if any(row.startswith((" ", "\t")) for row in rows):
            lines += ["```text", *(row.rstrip() for row in rows), "```", ""]
        else:
            lines += [_text(_unwrap(rows)), ""]
    return lines


def _unwrap(rows: list[str]) -> str:
    """Lines of one paragraph joined back into one line; a word the wrapper split after its
    hyphen ("one-" / "slice") is joined without a space."""
    text = ""
    for row in (r.strip() for r in rows):
        glue = "" if not text or re.search(r"[A-Za-z]-$", text) else " "
        text += glue + row
    return text


def _epilog(text: str) -> list[str]:
    """The epilog; its exit-code lines as a table."""
    lines: list[str] = []
    codes = [m for m in (_EXIT_CODE.fullmatch(row) for row in text.split("\n")) if m]
    rest = [row.strip() for row in text.split("\n") if not _EXIT_CODE.fullmatch(row)]
    rest = [row for row in rest if row and row.lower() != "exit codes:"]
    if codes:
        lines += ["Exit codes:", "", "| code | meaning |", "|---:|---|"]
        lines += [f"| {m[1]} | {_cell(m[2])} |" for m in codes]
        lines += [""]
    if rest:
        lines += [_text(" ".join(rest)), ""]
    return lines


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|")


def _sentence(text: str) -> str:
    text = _text(text.strip())
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", ")")) else ".")


def _text(text: str) -> str:
    """Help text as Markdown: ``<`` and ``>`` that could open HTML escaped, the rest as is."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, spaces to hyphens, punctuation dropped."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def main() -> int:
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
