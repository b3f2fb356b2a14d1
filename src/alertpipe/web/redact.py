"""Redaction for display: a message's meta may carry request headers, and a body may carry a
field a client should not have sent. Anything whose name looks secret is shown as
``[redacted]``, however deep it sits; so is a string value that is itself a credential
(``Bearer …``, ``Basic …``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

_SECRET_NAME = re.compile(
    r"(^|[-_.])(authorization|auth|cookie|set-cookie|password|passwd|secret|token|"
    r"api-?key|apikey|access-key|private-key|session|credentials?|hmac|signature)($|[-_.])"
    r"|^x-.*-signature(-\d+)?$|^x-.*-hmac(-sha\d+)?$|hmac-sha\d+$|auth-?token$",
    re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^\s*(bearer|basic|digest|token)\s+\S+", re.IGNORECASE)

__all__ = ["REDACTED", "is_secret_name", "redact"]


def is_secret_name(name: str) -> bool:
    """Does a field or header called ``name`` hold a secret (by its name)?"""
    return bool(_SECRET_NAME.search(name.strip().replace("_", "-").lower()))


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: mappings, lists, scalars) with secrets replaced."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_name(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return REDACTED
    return value
