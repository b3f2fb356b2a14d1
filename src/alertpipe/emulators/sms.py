"""SMS helpers of the Twilio emulator: segment counting and the Messages list page.

Segments follow GSM 03.38: 160 GSM-7 characters in one segment, 153 per segment when
concatenated (extension characters such as ``€`` count twice); any other character switches the
message to UCS-2: 70 per segment, 67 when concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

__all__ = ["MAX_BODY", "list_messages", "segments"]

MAX_BODY = 1600
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(body: str) -> int:
    """How many SMS segments ``body`` needs (at least 1)."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENDED for char in body):
        length = sum(2 if char in _GSM_EXTENDED else 1 for char in body)
        single, multi = 160, 153
    else:
        length = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if length <= single else math.ceil(length / multi)


def _parse_when(value: str, name: str) -> datetime | date:
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            moment = parse(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        if isinstance(moment, datetime) and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment
    raise ValueError(f"Invalid {name}: {value}")


def _matches(sent: datetime, bound: datetime | date, op: str) -> bool:
    if isinstance(bound, datetime):
        return {"=": sent == bound, "<": sent <= bound, ">": sent >= bound}[op]
    day = sent.date()
    return {"=": day == bound, "<": day <= bound, ">": day >= bound}[op]


def list_messages(messages: list[dict[str, Any]], path: str,
                  query: Mapping[str, str]) -> dict[str, Any]:
    """Filter by ``To``, ``From``, ``DateSent``, ``DateSent<``, ``DateSent>`` (inclusive bounds,
    ``YYYY-MM-DD`` or ISO 8601 times, UTC) and page with ``PageSize`` (default 50, max 1000) and
    ``Page``. Messages carry their send time in the private ``_sent_at`` key."""
    selected = [m for m in messages
                if query.get("To") in (None, m["to"]) and query.get("From") in (None, m["from"])]
    for key, op in (("DateSent", "="), ("DateSent<", "<"), ("DateSent>", ">")):
        if key in query:
            bound = _parse_when(query[key], key)
            selected = [m for m in selected if _matches(m["_sent_at"], bound, op)]
    selected.sort(key=lambda m: m["_sent_at"], reverse=True)
    try:
        size = min(int(query.get("PageSize", "50")), 1000)
        page = int(query.get("Page", "0"))
    except ValueError as exc:
        raise ValueError("PageSize and Page must be integers") from exc
    if size < 1 or page < 0:
        raise ValueError("PageSize must be positive and Page non-negative")
    filters = {k: v for k, v in query.items() if k not in ("PageSize", "Page", "PageToken")}

    def uri(number: int) -> str:
        return f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': number})}"

    start = page * size
    chunk = selected[start:start + size]
    return {
        "messages": chunk,
        "page": page,
        "page_size": size,
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + size < len(selected) else None,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "uri": uri(page),
        "start": start,
        "end": start + max(len(chunk), 1) - 1,
    }
