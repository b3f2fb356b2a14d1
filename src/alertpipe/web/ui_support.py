"""The dashboard's plumbing: templates, HTML answers with their security headers, form bodies,
and the log-in state of a request."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import simplejson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from alertpipe.web.redact import redact

MAX_FORM_BYTES = 64 * 1024

# No script runs on these pages; styles and images come from the engine itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

__all__ = ["FormError", "html", "read_form", "redirect", "templates"]


def when(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    return str(o)


def pretty(value: Any) -> str:
    """Indented JSON, with secret-looking fields redacted (autoescaped by the template)."""
    return str(simplejson.dumps(redact(value), use_decimal=True, indent=2, ensure_ascii=False,
                                default=_default, sort_keys=False))


def scalar(value: Any) -> str:
    """A field's value as JSON writes it: null, true, false, or the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def duration(start: datetime, end: datetime) -> str:
    ms = (end - start).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, scalar) for each leaf of a JSON-like value: the parsed fields."""
    if isinstance(value, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list | tuple):
        return [pair for i, v in enumerate(value) for pair in flatten(v, f"{prefix}.{i}")]
    return [(prefix, value)]


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("alertpipe.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, age=age, pretty=pretty, pct=pct, scalar=scalar)
    env.globals.update(duration=duration)
    return env


templates = _environment()


def html(name: str, context: Mapping[str, Any], status: int = 200,
         headers: Mapping[str, str] | None = None) -> HTMLResponse:
    body = templates.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS,
                                                           **(headers or {})})


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


class FormError(Exception):
    pass


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (first value of each field); FormError if it is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise FormError("expected a form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    return {k: v[0] for k, v in fields.items()}
