"""Reading ``application/x-www-form-urlencoded`` bodies without python-multipart.

Both the Google token endpoint and the Twilio API take url-encoded forms; Starlette's
``Request.form()`` would need the optional python-multipart package for that.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

__all__ = ["read_form"]


async def read_form(request: Request) -> dict[str, str]:
    """The form fields (first value of each); empty for any other content type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    form: dict[str, str] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(key, value)
    return form
