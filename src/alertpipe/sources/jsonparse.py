"""Strict JSON intake: the parser every HTTP source runs on a request body.

:func:`parse_json_object` turns raw bytes into a ``dict`` or raises
:class:`~alertpipe.errors.MalformedInput` with a message that says what was wrong and, where it
can, where (line and column). It refuses what ``json.loads`` lets through:

* bytes that are not UTF-8 (a leading UTF-8 byte-order mark is tolerated and dropped);
* an empty body, or a top level that is not an object;
* ``NaN``, ``Infinity`` and ``-Infinity`` literals;
* a key repeated within one object (``duplicate key 'amount'``);
* nesting deeper than ``max_depth`` containers (counted by a linear pre-scan, so a
  10,000-level array fails at once, never with ``RecursionError``);
* number literals longer than 4300 digits (Python's integer conversion limit);
* strings holding a lone UTF-16 surrogate escape (``"\\ud800"``), which no UTF-8 sink can store.

Integers come back as ``int``; numbers with a fraction or an exponent as ``decimal.Decimal``,
never ``float``. The hot path is stdlib ``json.loads`` with C-level hooks.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NoReturn

from alertpipe.errors import MalformedInput, UsageError

MAX_NUMBER_DIGITS = 4300
"""The longest number literal accepted (Python's default ``int`` string-conversion limit)."""

_BOM = "\ufeff"
_WHITESPACE = " \t\r\n"
# One token of the depth pre-scan: a whole string (possibly unterminated) or one bracket.
# The optional closing quote keeps the scan linear on malformed input.
_SCAN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_NON_FINITE = re.compile(r"-?Infinity|NaN")
_LONG_NUMBER = re.compile(rf"[-+.\deE]{{{MAX_NUMBER_DIGITS + 1},}}")


class _Reject(Exception):
    """Raised inside a ``json.loads`` hook; turned into :class:`MalformedInput` by the caller."""

    def __init__(self, reason: str, pattern: re.Pattern[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pattern = pattern


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return f"line {line} column {column}"


def _locate(text: str, pattern: re.Pattern[str]) -> int | None:
    """Offset of the first match of ``pattern`` outside string literals, if any."""
    scanner = re.compile(r'"(?:[^"\\]|\\.)*"?|' + pattern.pattern, re.DOTALL)
    for match in scanner.finditer(text):
        if not match.group().startswith('"'):
            return match.start()
    return None


def _check_depth(text: str, max_depth: int) -> None:
    # Fast path: there cannot be more levels than opening brackets (even counting those in strings).
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for match in _SCAN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise MalformedInput(
                    f"JSON nested deeper than {max_depth} levels at {_where(text, match.start())}"
                )
        elif token in "]}":
            depth -= 1


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {key!r} in a JSON object")
            seen.add(key)
    return obj


def _constant(name: str) -> NoReturn:
    raise _Reject(f"{name} is not allowed in JSON (numbers must be finite)", _NON_FINITE)


def _decimal(literal: str) -> Decimal:
    if len(literal) > MAX_NUMBER_DIGITS:
        raise _Reject(f"number longer than {MAX_NUMBER_DIGITS} characters", _LONG_NUMBER)
    return Decimal(literal)


def _check_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedInput(
                    "JSON string contains a lone UTF-16 surrogate escape (\\ud800-\\udfff)"
                ) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _decode(raw: bytes | bytearray | memoryview) -> str:
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1].hex()
        raise MalformedInput(
            f"body is not valid UTF-8: byte 0x{bad} at offset {exc.start} ({exc.reason})"
        ) from None
    return text[1:] if text.startswith(_BOM) else text


def parse_json_object(
    raw: bytes | bytearray | memoryview | str, *, max_depth: int = 64
) -> dict[str, Any]:
    """Parse a request body that must hold one JSON object; see the module docstring for rules.

    Raises :class:`MalformedInput` for anything refused, :class:`UsageError` for a bad
    ``max_depth``.
    """
    if max_depth < 1:
        raise UsageError(f"max_depth must be at least 1, got {max_depth}")
    text = raw.removeprefix(_BOM) if isinstance(raw, str) else _decode(raw)
    if not text.strip(_WHITESPACE):
        raise MalformedInput("empty body: expected a JSON object")
    _check_depth(text, max_depth)
    try:
        value = json.loads(
            text, parse_float=_decimal, parse_constant=_constant, object_pairs_hook=_pairs
        )
    except json.JSONDecodeError as exc:
        raise MalformedInput(
            f"invalid JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
        ) from None
    except _Reject as exc:
        pos = _locate(text, exc.pattern) if exc.pattern is not None else None
        where = f" at {_where(text, pos)}" if pos is not None else ""
        raise MalformedInput(f"invalid JSON: {exc.reason}{where}") from None
    except RecursionError:  # only reachable if the pre-scan was fooled by malformed input
        raise MalformedInput(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # int() refusing a literal over the digit limit
        pos = _locate(text, _LONG_NUMBER)
        where = f" at {_where(text, pos)}" if pos is not None else ""
        raise MalformedInput(
            f"invalid JSON: integer longer than {MAX_NUMBER_DIGITS} digits{where}"
        ) from exc
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        raise MalformedInput(f"expected a JSON object at the top level, got {kind}")
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value)
    return value


__all__ = ["MAX_NUMBER_DIGITS", "parse_json_object"]
