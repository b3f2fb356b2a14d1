"""Destinations: one file each, holding its config spec, class and registration."""

from __future__ import annotations

from alertpipe.destinations.base import Delivery, Destination, DestinationConfig, Outcome, Sent

REGISTRY: dict[str, type[Destination]] = {}


def register(cls: type[Destination]) -> type[Destination]:
    """Class decorator: make a destination available under its ``type_name``."""
    REGISTRY[cls.type_name] = cls
    return cls


def load_builtins() -> None:
    """Import the built-in destinations so that they register themselves."""
    from alertpipe.destinations import google_sheets, twilio_sms, webhook  # noqa: F401


__all__ = ["REGISTRY", "Delivery", "Destination", "DestinationConfig", "Outcome", "Sent",
           "load_builtins", "register"]
