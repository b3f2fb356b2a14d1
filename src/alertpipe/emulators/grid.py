"""A1 notation and the in-memory cell grid behind the emulated Sheets API.

Ranges are parsed like Google does: ``Sheet1``, ``'My Orders'`` (quotes doubled inside),
``Sheet1!A:G``, ``Sheet1!A1:G``, ``Sheet1!A1``, ``A1:G10`` (first sheet). Cells keep their JSON
types; ``None`` is an empty cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from alertpipe.destinations._a1 import column_index, column_letters

__all__ = ["A1Range", "RangeError", "Sheet", "column_letters", "parse_range", "quote_sheet"]

_CELL = re.compile(r"^([A-Za-z]{0,3})([0-9]{0,7})$")
_BARE_TITLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Cell = str | int | float | bool | None


class RangeError(ValueError):
    """The range cannot be parsed or names no sheet of the spreadsheet."""


def quote_sheet(title: str) -> str:
    """Quote a sheet title for A1 notation when Google would (spaces, punctuation, cell-like)."""
    if _BARE_TITLE.match(title) and not _CELL.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class A1Range:
    """A parsed range: 0-based inclusive bounds, ``None`` where A1 leaves a side open."""

    sheet: str
    start_col: int | None = None
    start_row: int | None = None
    end_col: int | None = None
    end_row: int | None = None

    def format(self, row_count: int, col_count: int) -> str:
        """Render as Google echoes a requested range, open sides closed at the grid's edge."""
        c0 = self.start_col or 0
        r0 = self.start_row or 0
        if self.start_col is not None and self.end_col is None and self.end_row is None \
                and self.start_row is not None:
            return f"{quote_sheet(self.sheet)}!{column_letters(c0)}{r0 + 1}"
        c1 = col_count - 1 if self.end_col is None else self.end_col
        r1 = row_count - 1 if self.end_row is None else self.end_row
        return (f"{quote_sheet(self.sheet)}!{column_letters(c0)}{r0 + 1}:"
                f"{column_letters(c1)}{r1 + 1}")


def _parse_cell(text: str) -> tuple[int | None, int | None]:
    match = _CELL.match(text)
    if not match or not text:
        raise RangeError(text)
    letters, digits = match.groups()
    if digits and int(digits) == 0:
        raise RangeError(text)
    return (column_index(letters) if letters else None, int(digits) - 1 if digits else None)


def _parse_cells(sheet: str, cells: str) -> A1Range:
    first, _, second = cells.partition(":")
    c0, r0 = _parse_cell(first)
    if not second:
        if c0 is None or r0 is None:
            raise RangeError(cells)
        return A1Range(sheet, c0, r0)
    c1, r1 = _parse_cell(second)
    if (c0 is None) != (c1 is None) and r0 is None:
        raise RangeError(cells)
    return A1Range(sheet, c0, r0, c1, r1)


def _match_title(name: str, titles: list[str]) -> str | None:
    if name in titles:
        return name
    folded = [t for t in titles if t.casefold() == name.casefold()]
    return folded[0] if folded else None


def parse_range(text: str, titles: list[str]) -> A1Range:
    """Parse ``text`` against a spreadsheet's sheet ``titles``; raise ``RangeError`` if unusable."""
    try:
        if text.startswith("'"):
            end, name = 1, []
            while True:
                quote = text.index("'", end)
                name.append(text[end:quote])
                if text[quote + 1:quote + 2] == "'":
                    name.append("'")
                    end = quote + 2
                    continue
                break
            sheet_name, rest = "".join(name), text[quote + 1:]
            if rest and not rest.startswith("!"):
                raise RangeError(text)
            cells = rest[1:]
        elif "!" in text:
            sheet_name, cells = text.rsplit("!", 1)
        else:
            title = _match_title(text, titles)
            if title is not None:
                return A1Range(title)
            return _parse_cells(titles[0], text)
        title = _match_title(sheet_name, titles)
        if title is None:
            raise RangeError(text)
        return _parse_cells(title, cells) if cells else A1Range(title)
    except (RangeError, ValueError) as exc:
        raise RangeError(text) from exc


@dataclass(slots=True)
class Sheet:
    """One tab of a spreadsheet: its properties and its rows of cells."""

    title: str
    sheet_id: int
    index: int
    rows: list[list[Cell]] = field(default_factory=list)
    row_count: int = 1000
    col_count: int = 26

    def properties(self) -> dict[str, Any]:
        """The ``sheets[].properties`` object of a spreadsheet resource."""
        return {"sheetId": self.sheet_id, "title": self.title, "index": self.index,
                "sheetType": "GRID",
                "gridProperties": {"rowCount": self.row_count, "columnCount": self.col_count}}

    def _row_has_data(self, row: list[Cell], c0: int, c1: int | None) -> bool:
        return any(cell not in (None, "") for cell in row[c0:None if c1 is None else c1 + 1])

    def append(self, rng: A1Range, values: list[list[Cell]], insert: bool
               ) -> tuple[str | None, str, int, int]:
        """Append ``values`` below the table in ``rng``.

        Returns ``(tableRange or None, updatedRange, updatedColumns, updatedCells)``.
        """
        c0, top = rng.start_col or 0, rng.start_row or 0
        data_rows = [i for i in range(top, len(self.rows))
                     if self._row_has_data(self.rows[i], c0, rng.end_col)]
        table: str | None = None
        if data_rows:
            width = max(len(self.rows[i]) for i in data_rows)
            table = (f"{quote_sheet(self.title)}!{column_letters(c0)}{data_rows[0] + 1}:"
                     f"{column_letters(max(width - 1, c0))}{data_rows[-1] + 1}")
        start = data_rows[-1] + 1 if data_rows else top
        while len(self.rows) < start:
            self.rows.append([])
        new_rows = [[None] * c0 + list(row) for row in values]
        if insert:
            self.rows[start:start] = new_rows
        else:
            for offset, row in enumerate(new_rows):
                if start + offset < len(self.rows):
                    old = self.rows[start + offset]
                    merged = old + [None] * max(0, len(row) - len(old))
                    for col, cell in enumerate(row):
                        if col >= c0 and cell is not None:
                            merged[col] = cell
                    self.rows[start + offset] = merged
                else:
                    self.rows.append(row)
        width = max((len(row) for row in values), default=0)
        self.row_count = max(self.row_count, len(self.rows))
        self.col_count = max(self.col_count, c0 + width)
        end_col = column_letters(c0 + max(width, 1) - 1)
        updated = (f"{quote_sheet(self.title)}!{column_letters(c0)}{start + 1}:"
                   f"{end_col}{start + len(values)}")
        return table, updated, width, sum(len(row) for row in values)

    def read(self, rng: A1Range) -> list[list[Cell]]:
        """The cells inside ``rng``, trailing empty cells and rows trimmed (like Google)."""
        c0, r0 = rng.start_col or 0, rng.start_row or 0
        c1: int | None = rng.end_col
        r1 = rng.end_row if rng.end_row is not None else len(self.rows) - 1
        if rng.start_row is not None and rng.end_row is None and rng.end_col is None \
                and rng.start_col is not None:
            c1, r1 = c0, r0
        out: list[list[Cell]] = []
        for row in self.rows[r0:r1 + 1]:
            cells = list(row[c0:None if c1 is None else c1 + 1])
            while cells and cells[-1] is None:
                cells.pop()
            out.append(cells)
        while out and not out[-1]:
            out.pop()
        return out
