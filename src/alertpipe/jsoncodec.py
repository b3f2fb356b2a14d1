"""JSON encoding that keeps money exact.

``Decimal`` is written as a JSON number literal with every digit and read back as ``Decimal``;
datetimes are written as ISO 8601 strings. Used for the store and for outbound API bodies.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
import simplejson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        if not o.is_finite():
            raise TypeError(f"{o} is not a JSON number")
        return orjson.Fragment(str(o))  # the digits as they are: 12.50 stays 12.50
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _fallback_default(o: Any) -> Any:
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """Serialise ``obj`` compactly; ``Decimal`` values keep every digit; NaN is refused.

    orjson writes it; what orjson cannot (an integer beyond 64 bits) goes through simplejson,
    which writes the same text more slowly."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return simplejson.dumps(  # type: ignore[no-any-return]
            obj, use_decimal=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
            default=_fallback_default,
        )


def loads(text: str | bytes) -> Any:
    """Parse JSON written by :func:`dumps`; non-integral numbers come back as ``Decimal``."""
    return simplejson.loads(text, use_decimal=True)
