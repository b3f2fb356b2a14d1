"""A1 notation for the Google Sheets destination: where its ``message_id`` column lives.

:func:`id_column` reads the configured range (``Orders!A:G``, ``'My Orders'!C5:I``, ``Orders``,
``A1:G``) and the configured columns, and gives the :class:`IdColumn` that the read-back after an
ambiguous failure fetches (``Orders!B:B``). :func:`row_of` names one row inside the range that a
``values.append`` answer echoes. A range that cannot be understood is a ``ConfigError`` on
``range``, raised at start-up by the destination's ``check``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from alertpipe.errors import ConfigError

#: A range as Google echoes it: always ``sheet!A1`` or ``sheet!A1:G9``.
RANGE = re.compile(r"^(?P<sheet>.+)!(?P<c1>[A-Z]+)(?P<r1>\d+)(?::(?P<c2>[A-Z]+)(?P<r2>\d+))?$")
_CELLS = re.compile(r"^(?P<c1>[A-Za-z]{0,3})(?P<r1>\d*)(?::(?P<c2>[A-Za-z]{0,3})(?P<r2>\d*))?$")


@dataclass(frozen=True, slots=True)
class IdColumn:
    """The message-id column of a configured range.

    ``sheet`` is the sheet part as written ("" when the range names none); columns are 0-based;
    ``first_row`` is 1-based, or None when the range has no row bound.
    """

    sheet: str
    first_col: int
    first_row: int | None
    col: int
    width: int

    @property
    def a1(self) -> str:
        """The column as an A1 range, open-ended downwards: ``Orders!B:B``, ``Orders!B5:B``."""
        letters = column_letters(self.col)
        top = "" if self.first_row is None else str(self.first_row)
        return f"{self.sheet}!{letters}{top}:{letters}" if self.sheet else \
            f"{letters}{top}:{letters}"

    def row_range(self, sheet: str, row: int) -> str:
        """The configured columns of one row: ``Orders!A7:G7``."""
        cells = (f"{column_letters(self.first_col)}{row}:"
                 f"{column_letters(self.first_col + self.width - 1)}{row}")
        return f"{sheet}!{cells}" if sheet else cells


def id_column(range_: str, columns: Sequence[str]) -> IdColumn | None:
    """Where the ``message_id`` column lives in ``range_`` (None: not among ``columns``).

    Raises ``ConfigError`` when the range cannot be understood.
    """
    if "message_id" not in columns:
        return None
    sheet, first_col, first_row = parse_range(range_)
    return IdColumn(sheet, first_col, first_row, first_col + list(columns).index("message_id"),
                    len(columns))


def parse_range(text: str) -> tuple[str, int, int | None]:
    """``(sheet part as written, first column 0-based, first row 1-based or None)``.

    ``Orders`` and ``'My Orders'`` are whole sheets; ``A:G``/``A1:G`` without ``!`` are cells of
    the first sheet. A bare word without digits or a colon (``Log``) is taken as a sheet name.
    """
    text = text.strip()
    bad = ConfigError(f"google_sheets: cannot understand range {text!r} (expected A1 notation "
                      "such as Sheet1!A:G)", key="range")
    if text.startswith("'"):
        i = 1
        while True:
            q = text.find("'", i)
            if q < 0:
                raise bad
            if text[q + 1:q + 2] != "'":
                break
            i = q + 2
        sheet, rest = text[:q + 1], text[q + 1:]
        if rest and not rest.startswith("!"):
            raise bad
        cells = rest[1:]
    elif "!" in text:
        sheet, cells = text.rsplit("!", 1)
    elif _CELLS.match(text) and (":" in text or any(c.isdigit() for c in text)):
        sheet, cells = "", text
    else:
        sheet, cells = text, ""
    if not cells:
        return sheet, 0, None
    match = _CELLS.match(cells)
    if match is None or not (match["c1"] or match["r1"]):
        raise bad
    return (sheet, column_index(match["c1"]) if match["c1"] else 0,
            int(match["r1"]) if match["r1"] else None)


def row_of(updated: str | None, index: int, count: int) -> str:
    """The one-row range of row ``index`` inside ``updated`` ("Sheet1!A7:G9" -> "Sheet1!A8:G8")."""
    match = RANGE.match(updated or "")
    if not match:
        return f"row {index + 1} of {count}"
    row = int(match["r1"]) + index
    return f"{match['sheet']}!{match['c1']}{row}:{match['c2'] or match['c1']}{row}"


def column_letters(index: int) -> str:
    """0 -> ``A``, 25 -> ``Z``, 26 -> ``AA``."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def column_index(letters: str) -> int:
    """``A`` -> 0, ``Z`` -> 25, ``AA`` -> 26 (case-insensitive)."""
    value = 0
    for char in letters.upper():
        value = value * 26 + ord(char) - 64
    return value - 1


__all__ = ["RANGE", "IdColumn", "column_index", "column_letters", "id_column", "parse_range",
           "row_of"]
