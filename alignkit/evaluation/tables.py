"""Tables for the terminal (rich on a TTY, plain aligned text when piped) and for Markdown files."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["fmt", "fmt_pct", "markdown_table", "plain_table", "print_table"]


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers to short text (4 significant digits); None/NaN to an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–" if math.isnan(value) else str(value)
        return f"{value:.{digits}g}"
    return str(value)


def fmt_pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * value:.1f}%"


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: Any) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
                file: TextIO | None = None) -> None:
    """Print with rich when ``file`` (default stdout) is a terminal, else as plain aligned text."""
    file = file or sys.stdout
    is_tty = getattr(file, "isatty", lambda: False)()
    if is_tty:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:  # pragma: no cover - rich is a dependency
            is_tty = False
    if is_tty:
        table = Table(title=title)
        for i, h in enumerate(headers):
            table.add_column(str(h), justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*map(str, r))
        Console(file=file).print(table)
        return
    if title:
        print(title, file=file)
    print(plain_table(headers, rows), file=file)
