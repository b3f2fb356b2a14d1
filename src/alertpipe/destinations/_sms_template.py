"""The text of a Twilio alert: ``template.format_map(fields)``, missing fields rendering as "".

The fields are the message body plus ``message_id`` and ``channel``; a missing (or null) field
renders as "" even with a format spec or an index (``{billing[phone]}``). :func:`check_template`
rejects at construction a template that cannot render (a ``ConfigError`` on ``template``);
:func:`render` truncates to Twilio's 1600-character limit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from alertpipe.errors import ConfigError, PermanentError
from alertpipe.message import Message

MAX_BODY = 1600
_SAMPLE = {"order_id": "A-1", "customer_name": "Ada", "customer": "Ada", "amount": Decimal("1.00"),
           "currency": "USD", "high_value": True, "message_id": "m", "channel": "c"}
_FORMAT_ERRORS = (ValueError, KeyError, IndexError, AttributeError, TypeError)


class _Empty:
    """A missing template field: renders as "" whatever the format spec, index or attribute."""

    def __format__(self, spec: str) -> str:
        return ""

    def __repr__(self) -> str:
        return ""

    __str__ = __repr__

    def __getattr__(self, name: str) -> _Empty:
        return self

    def __getitem__(self, key: Any) -> _Empty:
        return self


_EMPTY = _Empty()


class _Blank(dict[str, Any]):
    """Template fields (``str.format_map``): a missing field renders as the empty string."""

    def __missing__(self, key: str) -> _Empty:
        return _EMPTY


def check_template(template: str) -> None:
    """Raise ``ConfigError`` when ``template`` cannot render a sample order or an empty one."""
    try:
        template.format_map(_Blank(_SAMPLE))
        template.format_map(_Blank())
    except _FORMAT_ERRORS as exc:
        raise ConfigError(f"twilio_sms: template is not a valid format string "
                          f"({type(exc).__name__}: {exc})", key="template") from exc


def render(template: str, message: Message) -> str:
    """The SMS text for ``message``, truncated to Twilio's 1600-character limit."""
    fields = _Blank({k: _EMPTY if v is None else v for k, v in message.body.items()
                     if isinstance(k, str)})
    fields.update(message_id=message.id, channel=message.channel)
    try:
        text = template.format_map(fields)
    except _FORMAT_ERRORS as exc:
        raise PermanentError(f"twilio_sms: template cannot render this message "
                             f"({type(exc).__name__})") from exc
    return text[:MAX_BODY]


__all__ = ["MAX_BODY", "check_template", "render"]
