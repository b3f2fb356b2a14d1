"""Sources: one file each, holding its config spec, class and registration."""

from __future__ import annotations

from alertpipe.sources.base import SOURCES, Source, SourceConfig, register


def load_builtins() -> None:
    """Import the built-in sources so that they register themselves."""
    from alertpipe.sources import (  # noqa: F401
        http_json,
        shopify,
        signed_webhook,
        woocommerce,
    )


__all__ = ["SOURCES", "Source", "SourceConfig", "load_builtins", "register"]
