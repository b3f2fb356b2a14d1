"""HTTP helpers shared by the destinations (private: import from the destination modules).

- :func:`parse_retry_after`: a ``Retry-After`` header (delta-seconds or HTTP date) in seconds.
- :func:`transport_error`: an ``httpx`` transport failure translated at the boundary; a request
  that never reached the server (connect, pool) is not ambiguous, anything later may have taken
  effect and is.
- :func:`keep_ambiguous`: the rule that an unresolved ambiguity survives a failed attempt. The
  engine remembers only the *last* attempt's ``ambiguous`` flag, so an attempt that set out to
  look up an ambiguous earlier attempt and then failed (a read-back 503, a lookup 429, a recipient
  cap) must report ``ambiguous=True`` again, or the next attempt would skip the look-up and could
  send twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from alertpipe.errors import DeliveryError, RetryableError

_E = TypeVar("_E", bound=DeliveryError)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def transport_error(exc: httpx.HTTPError, service: str) -> RetryableError:
    """Never reached ``service`` (connect, pool) -> not ambiguous; anything later -> ambiguous."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return RetryableError(f"{service} request failed: {type(exc).__name__}",
                          ambiguous=not unsent)


def json_body(response: httpx.Response) -> Mapping[str, Any]:
    """The response's JSON object, or ``{}`` when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def keep_ambiguous(exc: _E, ambiguous: bool) -> _E:
    """Mark ``exc`` ambiguous when the attempt began with an unresolved ambiguity; return it."""
    if ambiguous:
        exc.ambiguous = True
    return exc


__all__ = ["json_body", "keep_ambiguous", "parse_retry_after", "transport_error"]
