"""One sheet row per message for the Google Sheets destination.

A configured column names a message field: ``message_id``, ``received_at`` (ISO 8601 UTC) and
``channel`` come from the envelope; anything else is looked up in the body, first as a key, then
as a dotted path through mappings and list indices (``items.0.sku``); ``customer`` falls back to
``customer_name``. A missing field is an empty cell; containers become compact JSON text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from alertpipe import jsoncodec
from alertpipe.message import Message

_MISSING = object()


def row(message: Message, columns: Sequence[str]) -> list[Any]:
    """The sheet row for ``message``, one JSON-ready cell per column."""
    return [cell(column_value(message, column)) for column in columns]


def column_value(message: Message, column: str) -> Any:
    """The raw value of one column for ``message`` (None when it has none)."""
    if column == "message_id":
        return message.id
    if column == "received_at":
        at = message.received_at
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if column == "channel":
        return message.channel
    value = _lookup(message.body, column)
    if value is _MISSING and column == "customer":
        value = _lookup(message.body, "customer_name")
    return None if value is _MISSING else value


def _lookup(body: Mapping[str, Any], path: str) -> Any:
    """``body[path]``, else a dotted walk through mappings and list indices, else ``_MISSING``."""
    if path in body:
        return body[path]
    current: Any = body
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif (isinstance(current, Sequence) and not isinstance(current, str | bytes)
              and part.isdigit() and int(part) < len(current)):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def cell(value: Any) -> Any:
    """A JSON-ready cell: None -> "", bool and numbers kept, containers -> compact JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool | int | Decimal | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return jsoncodec.dumps(value)
    return str(value)


__all__ = ["cell", "column_value", "row"]
