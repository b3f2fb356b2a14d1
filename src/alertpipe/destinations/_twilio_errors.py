"""Twilio's error answers mapped onto alertpipe's errors (the table in :mod:`.twilio_sms`).

Twilio's error body is ``{"code", "message", "more_info", "status"}``; the message is kept (it
never holds a credential), the ``code`` decides: 429/20429 retryable with ``Retry-After``, the
recipient/sender codes of :data:`PERMANENT_CODES` permanent, 5xx retryable and ambiguous,
401/20003 permanent (authentication), any other 4xx permanent.
"""

from __future__ import annotations

import httpx

from alertpipe.destinations._http import json_body, parse_retry_after
from alertpipe.errors import PermanentError, RetryableError

#: Twilio error codes about the recipient or sender that no retry can fix.
PERMANENT_CODES = frozenset({21211, 21408, 21606, 21608, 21610, 21612, 21614})


def status_error(response: httpx.Response) -> RetryableError | PermanentError:
    """The error for a non-2xx answer of the Messages API (the table in :mod:`.twilio_sms`)."""
    status = response.status_code
    body = json_body(response)
    raw_code = body.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    detail = " ".join(str(body.get("message") or response.reason_phrase).split())[:300]
    text = f"Twilio {code}: {detail}" if code else f"Twilio HTTP {status}: {detail}"
    if status == 429 or code == 20429:
        return RetryableError(text, code=code or status, throttled=True,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    if code in PERMANENT_CODES:
        return PermanentError(text, code=code)
    if status >= 500:
        return RetryableError(text, code=code or status, ambiguous=True,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    if status == 401 or code == 20003:
        return PermanentError(f"Twilio authentication failed: {text}", code=code or status)
    return PermanentError(text, code=code or status)


__all__ = ["PERMANENT_CODES", "status_error"]
