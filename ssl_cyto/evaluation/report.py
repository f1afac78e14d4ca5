"""Markdown reports that say how they were made.

Every report the project writes (probe, UMAP, benchmarks, the demo) goes through
:func:`write_report`, so they all start the same way: the exact command line, the data, the
hardware and the date, then their sections and figures. A number without the command that produced
it cannot be checked; putting the command first makes every report reproducible by copy and paste.
The hardware line is :func:`ssl_cyto.formats.provenance.hardware_summary`.
"""

from __future__ import annotations

import datetime as _dt
import numbers
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ssl_cyto.formats.provenance import hardware_summary

__all__ = ["command_line", "markdown_table", "write_report"]


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command line of this process as a shell-quoted string (``ssl-cyto ...`` for the CLI).

    Args:
        argv: the arguments to quote; defaults to ``sys.argv``. A first element ending in
            ``ssl-cyto`` or ``cli.py`` is shown as ``ssl-cyto``.
    """
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    first = Path(args[0]).name
    if first in ("ssl-cyto", "cli.py", "__main__.py"):
        args[0] = "ssl-cyto"
    elif args[0] == "-c":  # python -c '...': the code itself is not in argv
        return " ".join(["python -c <code>", *(shlex.quote(a) for a in args[1:])])
    return " ".join(shlex.quote(a) for a in args)


def _fmt_cell(value: object, float_fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return format(value, float_fmt)
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):  # numpy scalars
        return format(float(value), float_fmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Iterable[dict], columns: Sequence[str] | None = None, float_fmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        rows: one dict per row; missing keys give empty cells, ``None`` and NaN print empty.
        columns: column order (default: the keys of the first row, then new keys in order seen).
        float_fmt: format spec for floats.

    Returns:
        The table text ending in a newline ("" for no rows and no columns).
    """
    rows = list(rows)
    if columns is None:
        cols: list[str] = []
        for row in rows:
            cols.extend(k for k in row if k not in cols)
        columns = cols
    if not columns:
        return ""
    lines = [
        "| " + " | ".join(str(c) for c in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt_cell(row.get(c), float_fmt) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    path: str | Path,
    title: str,
    command: str | Sequence[str] | None,
    data: str,
    sections: Sequence[tuple[str, str]],
    figures: Sequence[str | Path] | None = None,
) -> Path:
    """Write a Markdown report that starts with the command, data, hardware and date.

    Args:
        path: the ``report.md`` to write, or a folder (then ``<folder>/report.md``). Parents are created.
        title: the report's ``#`` heading (it comes right after the command block).
        command: the exact command line (string or argv list; ``None``: this process's ``sys.argv``).
        data: what was evaluated (paths, counts, sources).
        sections: ``(heading, markdown body)`` pairs, written in order as ``##`` sections.
        figures: PNG paths to embed at the end; paths inside the report's folder are written relative.

    Returns:
        The path of the written report.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() != ".md":
        path = path / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    if command is None or not isinstance(command, str):
        command = command_line(command)
    now = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    out = [
        "```",
        command,
        "```",
        "",
        f"- **Data:** {data}",
        f"- **Hardware:** {hardware_summary()}",
        f"- **Date:** {now}",
        "",
        f"# {title}",
        "",
    ]
    for heading, body in sections:
        out += [f"## {heading}", "", body.rstrip(), ""]
    if figures:
        out += ["## Figures", ""]
        for fig in figures:
            fig = Path(fig)
            try:
                rel = fig.resolve().relative_to(path.parent.resolve()).as_posix()
            except ValueError:
                rel = fig.as_posix()
            out += [f"![{fig.stem}]({rel})", ""]
    path.write_text("\n".join(out), encoding="utf-8")
    return path
