"""Message schemas, by name, for the ``validate:`` step of a channel.

A channel config says ``validate: order``; the step looks the name up in :data:`SCHEMAS` and
calls the validator on the parsed body. Every validator has one calling convention: it takes the
parsed mapping and returns the normalised ``dict``, or raises
:class:`~alertpipe.errors.ValidationFailed` listing every field at fault.

The pydantic models (``Order``, ``OrderItem``) are exported too, for OpenAPI documentation
(``Order.model_json_schema()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from alertpipe.errors import ConfigError
from alertpipe.schemas.order import ACTIVE_CURRENCIES, Order, OrderItem, validate_order

Validator = Callable[[Mapping[str, Any]], dict[str, Any]]

SCHEMAS: dict[str, Validator] = {"order": validate_order}
"""Schema name (as written in a config) to its validator."""


def get_schema(name: str) -> Validator:
    """Return the validator registered as ``name``; a :class:`ConfigError` names the choices."""
    try:
        return SCHEMAS[name]
    except KeyError:
        known = ", ".join(sorted(SCHEMAS))
        raise ConfigError(f"unknown schema {name!r} (known: {known})", key="validate") from None


__all__ = [
    "ACTIVE_CURRENCIES",
    "SCHEMAS",
    "Order",
    "OrderItem",
    "Validator",
    "get_schema",
    "validate_order",
]
