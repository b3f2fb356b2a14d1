"""JSON encoding that keeps money exact.

``Decimal`` is written as a JSON number literal with every digit and read back as ``Decimal``;
datetimes are written as ISO 8601 strings. Used for the store and for outbound API bodies.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import simplejson


def _default(o: Any) -> Any:
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """Serialise ``obj`` compactly; ``Decimal`` values keep every digit; NaN is refused."""
    return simplejson.dumps(  # type: ignore[no-any-return]
        obj, use_decimal=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        default=_default,
    )


def loads(text: str | bytes) -> Any:
    """Parse JSON written by :func:`dumps`; non-integral numbers come back as ``Decimal``."""
    return simplejson.loads(text, use_decimal=True)
