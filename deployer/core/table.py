"""Rows of text as aligned columns, for the tables the commands print."""

from __future__ import annotations

from typing import Sequence

GAP = "  "


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """Each column padded to its widest cell (the header's included) and two spaces between.
    The last column is not padded: it holds free text (a URL, a detail) whose length varies
    most, and the columns before it stay narrow."""
    lines = [header, *rows] if header is not None else list(rows)
    if not lines:
        return ""
    columns = len(lines[0])
    widths = [max(len(line[i]) for line in lines) for i in range(columns - 1)]
    return "\n".join(
        GAP.join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]])
        for line in lines
    )
