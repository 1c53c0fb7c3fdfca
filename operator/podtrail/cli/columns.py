"""Aligned columns, kubectl style: upper-case headers, three spaces between columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podtrail.cli.style import Style

GUTTER = "   "


@dataclass(frozen=True, slots=True)
class Cell:
    """A cell's text and its colour role."""

    text: str
    role: str | None = None


def cell(text: object, role: str | None = None) -> Cell:
    """A cell; None shows as a dash."""
    return Cell("-" if text is None or text == "" else str(text), role)


def render(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style, *, indent: str = ""
) -> list[str]:
    """The header line and one line per row, each column as wide as its widest cell.

    The last column is not padded, so lines carry no trailing blanks.
    """
    widths = [len(header) for header in headers]
    for row in rows:
        for index, item in enumerate(row):
            widths[index] = max(widths[index], len(item.text))
    last = len(headers) - 1
    lines = [indent + _line([Cell(h, "head") for h in headers], widths, last, style)]
    lines.extend(indent + _line(row, widths, last, style) for row in rows)
    return lines


def _line(row: Sequence[Cell], widths: Sequence[int], last: int, style: Style) -> str:
    parts = []
    for index, item in enumerate(row):
        padded = item.text if index == last else item.text.ljust(widths[index])
        # Paint the text, then pad: trailing blanks stay uncoloured.
        parts.append(style.paint(item.text, item.role) + padded[len(item.text) :])
    return GUTTER.join(parts).rstrip()
