"""What every store's message search shares: the text a message is found by, how a search
string becomes words, what a message's state is, and the page cursor.

The searchable text of a message is every scalar value of its body (strings, numbers, booleans),
nested objects and lists included, joined by spaces: the order id, the customer's name, the
phone, the amount, the SKUs. A search string is split on white space; every word must occur in
that text as the start of one of its words, ignoring case (``jan`` finds ``Jane``, ``a-100``
finds ``A-1001``). Words keep ``- _ . @ +`` inside them, so an order id, an e-mail address, an
amount and a phone number are one word each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from alertpipe.errors import UsageError
from alertpipe.store.base import MESSAGE_STATES

_WORD = re.compile(r"[\w\-.@+]+", re.UNICODE)
MAX_WORDS = 16


def _scalars(value: Any, out: list[str]) -> None:
    """Append the scalar values in ``value`` to ``out``, depth first. The common JSON types are
    told apart by their exact type first (an ``isinstance`` against the abstract Mapping is
    several times slower), every other value the general way."""
    kind = type(value)
    if kind is str:
        out.append(value)
    elif kind is dict:
        for v in value.values():
            _scalars(v, out)
    elif kind is list:
        for v in value:
            _scalars(v, out)
    elif value is None:
        pass
    elif kind is Decimal or kind is int or kind is bool or kind is float:
        out.append(str(value))
    elif isinstance(value, str):
        out.append(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            _scalars(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _scalars(v, out)
    elif isinstance(value, set | frozenset):
        _scalars(sorted(value), out)
    elif isinstance(value, datetime | date):
        out.append(value.isoformat())  # as the store writes it
    else:
        out.append(str(value))


def search_text(body: Mapping[str, Any]) -> str:
    """The text a message is found by. The same for a body and for that body written to the
    store and read back (Decimal digits, ISO dates), so an index entry made at intake can be
    taken out again from the stored body."""
    out: list[str] = []
    _scalars(body, out)
    return " ".join(out)


def words(text: str) -> list[str]:
    """The words of a search string, lower-cased; UsageError when there are too many."""
    found = [w.casefold() for w in _WORD.findall(text)]
    if len(found) > MAX_WORDS:
        raise UsageError(f"a search has at most {MAX_WORDS} words, this one has {len(found)}")
    return found


def matches(body: Mapping[str, Any], wanted: list[str]) -> bool:
    """The reference semantics of a text search (the in-memory store uses it directly)."""
    have = [w.casefold() for w in _WORD.findall(search_text(body))]
    return all(any(h.startswith(w) for h in have) for w in wanted)


def fts_query(wanted: list[str]) -> str:
    """An SQLite FTS5 query: every word as a quoted prefix ("a-100"* AND "jane"*)."""
    return " AND ".join('"' + w.replace('"', '""') + '"*' for w in wanted)


def message_state(statuses: Iterable[str]) -> str:
    """The one-word state of a message from its deliveries' statuses (see MessageQuery)."""
    states = set(statuses)
    if not states:
        return "filtered"
    if "dead" in states:
        return "dead"
    if states & {"pending", "in_flight"}:
        return "pending"
    if states == {"delivered"}:
        return "delivered"
    if states == {"discarded"}:
        return "discarded"
    return "partial"


def check_state(state: str | None) -> None:
    if state is not None and state not in MESSAGE_STATES:
        raise UsageError(f"unknown message state {state!r}; expected one of: "
                         + ", ".join(MESSAGE_STATES))


def given(conditions: Iterable[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """The SQL conditions whose value is given (not None), and those values, in order: the
    optional filters of a query, in either store's placeholder style."""
    sql: list[str] = []
    args: list[Any] = []
    for cond, value in conditions:
        if value is not None:
            sql.append(cond)
            args.append(value)
    return sql, args


def encode_cursor(position: int) -> str:
    return f"p{position}"


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not (cursor.startswith("p") and cursor[1:].isdigit()):
        raise UsageError(f"not a valid cursor: {cursor[:40]!r}")
    return int(cursor[1:])
